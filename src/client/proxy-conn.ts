/**
 * tsh's SSH connection to the proxy: TCP through the network layer (so
 * HTTPS_PROXY/NO_PROXY apply), ssh2 with the user certificate, the proxy's
 * host certificate checked against the cluster's host CA from tsh's
 * known_hosts. On top of it: a channel to a node's sshd (subsystem
 * `proxy:HOST:PORT`) and the list of reachable nodes (`nodes@jumpgate.dev`).
 */
import ssh2 from 'ssh2';
import ssh2Crypto from 'ssh2/lib/protocol/crypto.js';
import type { ClientChannel, PublicKeyAuthMethod } from 'ssh2';
import { AuthError, UserError } from '../errors.js';
// Not the net/ barrel: it re-exports http.ts, whose undici (1 MB) the ProxyCommand path never uses.
import { dial } from '../net/connect.js';
import type { Env } from '../net/proxy-env.js';
import { certIdentity, clientHostKeyAlgorithms, hostCertVerifier, type CertKey } from '../sshconn/index.js';
import { NODES_SUBSYSTEM, PROXY_SUBSYSTEM } from '../shared/wire-names.js';
import { printable } from '../util/printable.js';
import type { Credentials } from './credentials.js';
import { readClusterHostCAs } from './known-hosts.js';
import type { TshPaths } from './paths.js';
import { refusalHint } from './refusal-hint.js';

/**
 * Cipher preference for tsh's SSH hops. With ssh2's native binding,
 * chacha20-poly1305 first (fastest through ssh2, FACTS.md). Without it (a
 * build without the addon), AES-GCM through node:crypto, and no chacha20 at
 * all: ssh2 1.17's JavaScript chacha20-poly1305 client was seen to send a
 * packet OpenSSH 9.2 rejects right after the key exchange ("incomplete message").
 */
export const CLIENT_CIPHERS: string[] = ssh2Crypto.bindingAvailable
  ? ['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes256-ctr']
  : ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes256-ctr'];

/** How long connecting, key exchange and authentication may take per hop. */
export const SSH_READY_TIMEOUT_MS = 20_000;

// Lives with loadCredentials, so the ProxyCommand's `Match exec` check loads it without ssh2.
export { credentialsFor } from './credentials.js';

// Live with loadCredentials too: `tsh proxy ssh` on the TLS route decides the login without loading ssh2.
export { checkLogin, defaultLogin } from './credentials.js';

export interface ProxyConnectOptions {
  creds: Credentials;
  paths: TshPaths;
  env: Env;
  /** The SSH user name at the proxy: one of the certificate's logins (the proxy checks it like sshd would). */
  login: string;
  now: () => Date;
  /** --debug lines. */
  log?: (line: string) => void;
}

/** The user's certificate as an ssh2 identity. */
export function identityOf(creds: Credentials): CertKey {
  return certIdentity(creds.privateKey, creds.cert.blob);
}

/** The host CA keys tsh trusts for a cluster; an error naming `tsh login` when there are none. */
export function clusterHostCAs(paths: TshPaths, creds: Credentials) {
  const keys = readClusterHostCAs(paths.knownHosts(), creds.profile.clusterName);
  if (keys.length === 0) {
    throw new AuthError('HOST_CA_MISSING', `${paths.knownHosts()} has no host CA for cluster ${creds.profile.clusterName}`, {
      hint: `run \`${creds.relogin}\` to fetch it`,
    });
  }
  return keys;
}

/** Connects and authenticates to the proxy's SSH service; the caller ends the client. */
export async function connectProxy(opts: ProxyConnectOptions): Promise<ssh2.Client> {
  const { profile } = opts.creds;
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(profile.sshProxyAddr) ?? /^([^:]+):(\d+)$/.exec(profile.sshProxyAddr);
  if (!m) throw new UserError('PROFILE_CORRUPT', `the profile ${profile.name} has no usable SSH proxy address ("${profile.sshProxyAddr}")`, { hint: `run \`${opts.creds.relogin}\`` });
  const host = m[1]!;
  const port = Number(m[2]);
  const cas = clusterHostCAs(opts.paths, opts.creds);
  const sock = await dial({ host, port }, { env: opts.env, scheme: 'ssh', ...(opts.log ? { log: opts.log } : {}) });
  return sshOver(sock, {
    what: `the proxy ${host}:${port}`,
    hostname: host,
    login: opts.login,
    identity: identityOf(opts.creds),
    cas: () => cas,
    now: opts.now,
    webProxyAddr: profile.webProxyAddr,
    relogin: opts.creds.relogin,
    clockLeewaySeconds: opts.creds.clockLeewaySeconds,
    ...(opts.log ? { log: opts.log } : {}),
  });
}

export interface SshOverOptions {
  /** For messages: "the proxy localhost:3023", "node1". */
  what: string;
  /** The name the host certificate must list (compared lower-case, as ssh does). */
  hostname: string;
  login: string;
  identity: CertKey;
  cas: () => ReturnType<typeof readClusterHostCAs>;
  now: () => Date;
  webProxyAddr: string;
  /** The `tsh login` command for hints (Credentials.relogin); default `tsh login --proxy=<webProxyAddr>`. */
  relogin?: string;
  /** How far a host certificate may start in this machine's future (Credentials.clockLeewaySeconds). Default 0. */
  clockLeewaySeconds?: number;
  agent?: string;
  log?: (line: string) => void;
}

/** Runs an ssh2 Client over an open stream (a socket, or a channel through the proxy) with host-certificate verification. */
export function sshOver(sock: NodeJS.ReadWriteStream, o: SshOverOptions): Promise<ssh2.Client> {
  // As ssh does: the name is lower-cased before it is checked against the
  // certificate's principals (which tctl signs lower-case), so every spelling
  // of a node name that routes also verifies.
  const verifier = hostCertVerifier({ trustedHostCAs: o.cas, hostname: o.hostname.toLowerCase().replace(/\.$/, ''), now: o.now, notBeforeLeewaySeconds: o.clockLeewaySeconds ?? 0 });
  const client = new ssh2.Client();
  // An explicit list: only the certificate, never the agent's other keys.
  const auth: PublicKeyAuthMethod = { type: 'publickey', username: o.login, key: o.identity };
  return new Promise((resolve, reject) => {
    client.once('ready', () => {
      client.removeAllListeners('error');
      client.on('error', (err) => o.log?.(`ssh: ${o.what}: ${err.message}`));
      resolve(client);
    });
    // `on`, not `once`: ssh2 can emit a second error for the same failure
    // ("Connection lost before handshake"), and an error with no listener
    // would crash tsh. Only the first one decides the outcome.
    let failed = false;
    // The proxy says in an authentication banner why it refused (expired, source-address, a limit): keep it for the error.
    let banner = '';
    client.on('banner', (message: string) => {
      if (banner.length < 4096) banner += message;
    });
    client.on('error', (err: Error & { level?: string }) => {
      if (failed) return;
      failed = true;
      client.end();
      if (verifier.error) return reject(verifier.error);
      if (err.level === 'client-authentication') {
        const said = banner
          .split(/\r?\n/)
          .map((l) => printable(l.trim(), 1000))
          .filter((l) => l !== '')
          .join('; ');
        if (said) return reject(new AuthError('SSH_AUTH_REFUSED', `${o.what} refused the login "${o.login}": ${said}`, { cause: err }));
        return reject(
          new AuthError('SSH_AUTH_REFUSED', `${o.what} refused your certificate for the login "${o.login}"`, {
            cause: err,
            // The certificate was checked here before (credentials.ts): a refusal without a reason
            // is the far sshd's, and logging in again rarely helps; say what to check there.
            hint:
              `the certificate is valid here, so check on ${o.what} that the account "${o.login}" exists and that its sshd trusts ` +
              `the cluster's user CA (TrustedUserCAKeys; with LogLevel VERBOSE its log says why); after a CA rotation, ` +
              `\`${o.relogin ?? `tsh login --proxy=${o.webProxyAddr}`}\` gets a fresh certificate`,
          }),
        );
      }
      reject(new UserError('SSH_CONNECT_FAILED', `cannot open an SSH connection to ${o.what}: ${err.message}`, { cause: err }));
    });
    client.connect({
      sock: sock as unknown as import('node:stream').Readable,
      username: o.login,
      authHandler: [auth],
      hostVerifier: verifier,
      algorithms: { serverHostKey: clientHostKeyAlgorithms(), cipher: CLIENT_CIPHERS as ssh2.CipherAlgorithm[] },
      readyTimeout: SSH_READY_TIMEOUT_MS,
      keepaliveInterval: 30_000,
      ...(o.agent ? { agent: o.agent, agentForward: true } : {}),
      ...(o.log ? { debug: (line: string) => o.log!(`ssh2: ${line}`) } : {}),
    });
  });
}

/** The proxy refused to open a node channel; `exitCode` is the proxy's exit-status. */
export class ProxyRefusal extends UserError {}

/**
 * Opens a channel to a node's sshd through the proxy (subsystem
 * `proxy:HOST:PORT`). Resolves once the node's first bytes (its SSH
 * banner) arrive, so a refusal becomes an error carrying the proxy's reason
 * instead of a stream that just ends. Later stderr from the proxy goes to `stderr`.
 */
export function openNodeChannel(client: ssh2.Client, host: string, port: number, stderr: (text: string) => void, relogin = 'tsh login'): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    client.subsys(PROXY_SUBSYSTEM(host, port), (err, ch) => {
      if (err) return reject(new UserError('PROXY_SUBSYSTEM_REFUSED', `the proxy refused to open a channel to ${host}: ${err.message}`, { cause: err }));
      let errText = '';
      let code: number | undefined;
      let settled = false;
      const onErr = (b: Buffer) => {
        if (settled) return stderr(printable(b.toString('utf8'), 4096).replace(/\\x0a/g, '\n'));
        errText += b.toString('utf8');
      };
      ch.stderr.on('data', onErr);
      const onExit = (c: number | null) => (code = c ?? undefined);
      const onData = (b: Buffer) => {
        settled = true;
        cleanup();
        ch.pause();
        ch.unshift(b);
        resolve(ch);
      };
      const onClose = () => {
        if (settled) return;
        settled = true;
        cleanup();
        const reason = printable(errText.trim().replace(/^jumpgate proxy: /, ''), 1000) || `the proxy closed the channel to ${host}`;
        const Kind = code === 4 ? AuthError : ProxyRefusal;
        reject(new Kind('PROXY_REFUSED', reason, code === 4 ? { hint: refusalHint('PROXY_REFUSED', reason, relogin, `run \`${relogin}\` again if your roles changed`) } : {}));
      };
      const cleanup = () => {
        ch.removeListener('data', onData);
        ch.removeListener('exit', onExit);
        ch.removeListener('close', onClose);
      };
      ch.on('data', onData);
      ch.on('exit', onExit);
      ch.on('close', onClose);
    });
  });
}

/** A node as `tsh ls` shows it. */
export interface NodeEntry {
  name: string;
  addr: string;
  labels: Record<string, string>;
}

/** Asks the proxy for the nodes the certificate may reach (`nodes@jumpgate.dev`). */
export function listNodes(client: ssh2.Client): Promise<NodeEntry[]> {
  return new Promise((resolve, reject) => {
    client.subsys(NODES_SUBSYSTEM, (err, ch) => {
      if (err) return reject(new UserError('PROXY_SUBSYSTEM_REFUSED', `the proxy does not list nodes: ${err.message}`, { cause: err }));
      const out: Buffer[] = [];
      let errText = '';
      ch.on('data', (b: Buffer) => out.push(b));
      ch.stderr.on('data', (b: Buffer) => (errText += b.toString()));
      ch.on('close', () => {
        try {
          resolve(parseNodeList(Buffer.concat(out).toString('utf8'), errText));
        } catch (e) {
          reject(e);
        }
      });
    });
  });
}

/**
 * The proxy's node list (`{"cluster", "nodes": [{name, addr, labels}]}`, the
 * same JSON on the SSH port's nodes@jumpgate.dev and the TLS route's `ls`).
 * @throws UserError PROXY_BAD_ANSWER naming what is wrong (and `errText`, the proxy's stderr).
 */
export function parseNodeList(text: string, errText: string): NodeEntry[] {
  try {
    const parsed = JSON.parse(text) as { nodes?: unknown };
    if (!Array.isArray(parsed.nodes)) throw new Error('no node list');
    return parsed.nodes.map((n: Partial<NodeEntry>) => ({
      name: String(n.name ?? ''),
      addr: String(n.addr ?? ''),
      labels: Object.fromEntries(Object.entries(n.labels ?? {}).map(([k, v]) => [String(k), String(v)])),
    }));
  } catch (e) {
    throw new UserError('PROXY_BAD_ANSWER', `the proxy's node list is unreadable (${(e as Error).message})${errText ? `: ${printable(errText)}` : ''}`);
  }
}
