/**
 * Which of the ssh-agent's identities belong to a tsh profile, and taking
 * them out (tsh logout; tsh login replacing an earlier login's entries).
 *
 * An entry belongs to profile P when any of these holds:
 *   - its comment is P's marker, `jumpgate:P USER@CLUSTER` (agentComment), or
 *     the `jumpgate USER@P` earlier tsh versions wrote: this finds entries of
 *     logins whose key files are gone or were overwritten;
 *   - its blob is a public key P recorded (keys/P/+agent-keys: every key a login
 *     of P loaded), or a certificate certifying such a key: this finds entries
 *     added under another comment (`ssh-add ~/.tsh/keys/P/USER`), plain keys
 *     without their certificate included.
 * The comment identifies the profile; the blobs are what is removed
 * (SSH_AGENTC_REMOVE_IDENTITY takes the key or certificate blob, RFC 9987
 * §4.4; OpenSSH's agent matches it exactly, so a certificate and its plain key
 * are two removals). Another profile's entries never match: profile names are
 * compared whole, and keys are never shared between logins.
 */
import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { parseCertificate, parsePublicKeyBlob, parsePublicKeyLine } from '../sshcert/index.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { printable } from '../util/printable.js';
import { AgentError, describeAgent, type AgentClient, type AgentIdentity } from './agent.js';
import type { TshPaths } from './paths.js';

const MARK = 'jumpgate:';
/** Keys remembered per profile; older ones are forgotten (their certificates expired long ago). */
export const MAX_RECORDED_KEYS = 32;

/** Comment text for people, without spaces or control characters (the marker is split on the first space). */
function word(text: string): string {
  return printable(text, 64).replace(/\s/g, '_');
}

/** The comment tsh gives a profile's agent entries: `jumpgate:PROFILE USER@CLUSTER` (what `ssh-add -l` shows). */
export function agentComment(profile: string, username: string, cluster: string): string {
  return `${MARK}${profile} ${word(username)}@${word(cluster)}`;
}

/** Whether an agent comment marks an entry of `profile` (this version's marker, or the `jumpgate USER@PROFILE` of earlier ones). */
export function isProfileComment(comment: string, profile: string): boolean {
  if (comment === `${MARK}${profile}` || comment.startsWith(`${MARK}${profile} `)) return true;
  return comment.startsWith('jumpgate ') && comment.endsWith(`@${profile}`) && !comment.slice('jumpgate '.length).includes(' ');
}

/**
 * The public key blobs a profile recorded (keys/PROFILE/+agent-keys, one
 * base64 blob a line). A missing file is []; lines that are not a public key
 * are skipped (the file is ours, but a damaged line must not stop a logout).
 */
export function readRecordedKeys(paths: TshPaths, profile: string): Buffer[] {
  let text: string;
  try {
    text = readFileSync(paths.agentKeys(profile), 'utf8');
  } catch {
    return [];
  }
  const out: Buffer[] = [];
  for (const line of text.split('\n').slice(0, MAX_RECORDED_KEYS * 2)) {
    const t = line.trim();
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t)) continue;
    try {
      out.push(parsePublicKeyBlob(Buffer.from(t, 'base64')).blob);
    } catch {
      // not a key: skipped
    }
  }
  return out;
}

/** Adds a key to the profile's record (atomic, 0600; keeps the newest MAX_RECORDED_KEYS). Call under the TSH_HOME lock. */
export function recordKey(paths: TshPaths, profile: string, keyBlob: Buffer): void {
  const keys = readRecordedKeys(paths, profile).filter((k) => !k.equals(keyBlob));
  keys.push(keyBlob);
  const kept = keys.slice(-MAX_RECORDED_KEYS);
  writeFileAtomic(paths.agentKeys(profile), kept.map((k) => k.toString('base64')).join('\n') + '\n', 0o600);
}

/**
 * Every key of a profile tsh can find on disk: the record, and each user's
 * `<user>.pub` and `<user>-cert.pub` under keys/PROFILE (unreadable files skipped).
 */
export function profileKeys(paths: TshPaths, profile: string, users: readonly string[]): Buffer[] {
  const keys = readRecordedKeys(paths, profile);
  for (const user of users) {
    try {
      keys.push(parsePublicKeyLine(readFileSync(paths.publicKey(profile, user), 'utf8')).key.blob);
    } catch {
      // missing or damaged: the record and the comment still find its entries
    }
    try {
      keys.push(parseCertificate(Buffer.from(readFileSync(paths.certificate(profile, user), 'utf8').trim().split(/\s+/)[1] ?? '', 'base64')).key.blob);
    } catch {
      // same
    }
  }
  return keys;
}

/** What decides membership: the profile name and the public key blobs it is known to have used. */
export interface ProfileEntries {
  profile: string;
  keys: readonly Buffer[];
}

/** The certified key of a certificate blob, or undefined for a plain key (or anything unreadable). */
function certifiedKey(blob: Buffer): Buffer | undefined {
  try {
    return parseCertificate(blob).key.blob;
  } catch {
    return undefined;
  }
}

/** Whether an agent identity belongs to the profile (rules at the top of this file). */
export function belongsToProfile(id: AgentIdentity, p: ProfileEntries): boolean {
  if (isProfileComment(id.comment, p.profile)) return true;
  const key = certifiedKey(id.blob) ?? id.blob;
  return p.keys.some((k) => k.equals(key));
}

/** What `removeProfileEntries` did. */
export interface RemovalResult {
  removed: number;
  /** The profile's entries the agent still lists afterwards (it refused to remove them). */
  left: AgentIdentity[];
  /** One paragraph for stderr when `left` is not empty: which agent, what stays, how to fix it. */
  warning?: string;
}

/**
 * Removes every identity of the profile from the agent, except those whose
 * blob (or certified key) is in `keep` (a new login's own entry). A refused
 * certificate removal is retried with the certified plain key (agents that
 * index by key); then the agent is listed again, and whatever of the profile
 * it still holds is returned in `left` with a warning: some agents cannot
 * remove certificates, and the user must know their login is still loaded.
 * @throws AgentError for a broken connection (not for a refused removal).
 */
export async function removeProfileEntries(agent: AgentClient, p: ProfileEntries, keep: readonly Buffer[] = []): Promise<RemovalResult> {
  const kept = (id: AgentIdentity) => keep.some((k) => k.equals(id.blob) || k.equals(certifiedKey(id.blob) ?? id.blob));
  const mine = (ids: AgentIdentity[]) => ids.filter((id) => belongsToProfile(id, p) && !kept(id));
  let removed = 0;
  for (const id of mine(await agent.list())) {
    try {
      await agent.remove(id.blob);
      removed++;
    } catch (err) {
      if (!(err instanceof AgentError && err.code === 'AGENT_REFUSED')) throw err;
      const key = certifiedKey(id.blob);
      if (key) await agent.remove(key).catch((e: unknown) => {
        if (!(e instanceof AgentError && e.code === 'AGENT_REFUSED')) throw e;
      });
    }
  }
  const left = mine(await agent.list());
  if (left.length === 0) return { removed, left };
  const name = describeAgent(agent.socketPath);
  const what = left.map((id) => `"${printable(id.comment, 80)}"`).join(', ');
  return {
    removed,
    left,
    warning:
      `${name} (${agent.socketPath}) did not remove ${left.length} of this profile's entries (${what}); ` +
      'they stay usable until their lifetime ends. Remove them with `ssh-add -D` (removes every identity in that agent) or restart the agent.',
  };
}

/**
 * Puts a profile's key and certificate back into the agent when the agent
 * no longer holds that certificate (an agent restarted, `ssh-add -D`, a
 * lifetime cut short), with the certificate's remaining validity as its
 * lifetime (seconds, at least 1). With the keychain keystore the ssh_config
 * block's identity is the certificate FILE and only the agent can sign, so
 * without this plain ssh says "Permission denied (publickey)" while the
 * certificate is still valid. ssh asks the agent at authentication time,
 * after it started the ProxyCommand, so the ProxyCommand can do it.
 * @returns true when it added the certificate, false when the agent already held it
 * @throws AgentError when the agent cannot be reached or refuses
 */
export async function restoreAgentEntry(
  agent: AgentClient,
  entry: { privateKey: KeyObject; certBlob: Buffer; comment: string; lifetimeSeconds: number },
): Promise<boolean> {
  if ((await agent.list()).some((id) => id.blob.equals(entry.certBlob))) return false;
  await agent.addCertificate({ privateKey: entry.privateKey, certBlob: entry.certBlob, comment: entry.comment, lifetimeSeconds: Math.max(1, Math.floor(entry.lifetimeSeconds)) });
  return true;
}
