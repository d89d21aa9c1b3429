/**
 * `jumpgate node start`: the agent that runs beside a node's OpenSSH sshd. A
 * separate program on the node: it imports only the shared modules (api/,
 * sshcert/, shared/, util/), never the proxy or the state store.
 *
 *   <data-dir>/            0700
 *     host_key             0600  made here; only its public half is ever sent
 *     host_key-cert.pub    0644  HostCertificate (principals: name, name.<cluster>, addr host)
 *     user_ca.pub          0644  TrustedUserCAKeys (every trusted user CA key)
 *     revoked.krl          0644  RevokedKeys (PROTOCOL.krl)
 *     credential.json      0600  the node credential: restarts need no token
 *
 * Each file is written beside its target, fsynced and renamed over it
 * (util/atomic-write.ts stageFile): sshd never reads a half-written file. Every
 * file of one change is staged before any of them is renamed.
 *
 * Loop: a heartbeat (name, addr, labels: --labels and the --label-cmd
 * outputs, refreshed every LABEL_REFRESH_MS) that the proxy holds until the
 * user CA keys or the KRL change, or the heartbeat interval passes (a long
 * poll: a rotation reaches the node within about a second, with one request
 * per interval, cheaper than polling every few seconds); the host certificate
 * renewed at two thirds of its life (a new credential with it). After a
 * change: the reload (default SIGHUP to the pid in sshd's PidFile; or
 * --reload, run without a shell), then a check that sshd answers with the
 * current host certificate (`ssh-keyscan -c` against --addr).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as v from 'valibot';
import {
  NodeHeartbeatResponseSchema,
  NodeJoinResponseSchema,
  NodeRenewResponseSchema,
  parseShape,
} from '../../api/schema.js';
import { API } from '../../api/types.js';
import { UserError } from '../../errors.js';
import { formatHostPort, parseHostPort, type HostPort } from '../../shared/address.js';
import { parseKrl } from '../../sshcert/krl.js';
import { encodeOpenSSHPrivateKey, formatPublicKeyLine, generateKeyPair, parseCertificateLine, parseOpenSSHPrivateKey, type Certificate, type PublicKey } from '../../sshcert/index.js';
import type { Env } from '../../net/index.js';
import { stageFile } from '../../util/atomic-write.js';
import { printable } from '../../util/printable.js';
import { ensurePrivateDir } from '../../util/private-dir.js';

import { NodeRefusedError, ProxyClient, proxyUnreachable } from './proxy-client.js';

const run = promisify(execFile);

/** How often --label-cmd commands run again. */
export const LABEL_REFRESH_MS = 60_000;
/** Longest a --label-cmd may run. */
export const LABEL_CMD_TIMEOUT_MS = 5_000;
/** How long sshd has to show the new host certificate after a reload. */
export const RELOAD_CHECK_MS = 10_000;

export const FILES = {
  hostKey: 'host_key',
  hostCert: 'host_key-cert.pub',
  userCa: 'user_ca.pub',
  krl: 'revoked.krl',
  credential: 'credential.json',
} as const;

export interface NodeAgentOptions {
  /** A join token; used only when the data directory holds no credential yet. */
  token?: string;
  /** The proxy's HTTPS address. */
  proxy: HostPort;
  name: string;
  /** What the proxy dials: this node's sshd. */
  addr: HostPort;
  dataDir: string;
  labels: Record<string, string>;
  /** Command labels: name → argv (run without a shell), refreshed every LABEL_REFRESH_MS. */
  labelCommands: Record<string, string[]>;
  /** argv run after a change (no shell); default SIGHUP to the pid in `sshdPidFile`. */
  reload?: string[];
  /** sshd's PidFile (default /run/sshd.pid). */
  sshdPidFile: string;
  /** Accept any TLS certificate from the proxy (self-signed test setups). */
  insecure: boolean;
  /** --ca-file: the proxy's certificate must chain to these PEM CA certificates (read at start; `file` names it in errors). */
  ca?: { file: string; pem: string };
  /** ssh-keyscan to check sshd's host certificate (default from PATH). */
  sshKeyscan?: string;
}

export interface NodeAgentDeps {
  /** Human log lines (stderr). */
  log: (line: string) => void;
  /** The sshd_config lines (stdout: data). */
  out: (text: string) => void;
  clock: () => Date;
  /** Aborted on SIGTERM/SIGINT. */
  signal: AbortSignal;
  /** The environment: HTTPS_PROXY/NO_PROXY reach the proxy through an HTTP CONNECT proxy (net/). */
  env: Env;
}

const CredentialFileSchema = v.object({
  v: v.literal(1),
  name: v.string(),
  cluster: v.string(),
  credential: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/)),
});
type CredentialFile = v.InferOutput<typeof CredentialFileSchema>;


/** Runs the agent until `deps.signal` aborts. @throws UserError (bad token, removed node, unreadable data dir) */
export async function runNodeAgent(opts: NodeAgentOptions, deps: NodeAgentDeps): Promise<void> {
  const agent = new NodeAgent(opts, deps);
  try {
    await agent.run();
  } finally {
    agent.close();
  }
}

class NodeAgent {
  private readonly client: ProxyClient;
  private hostKey!: { publicKey: PublicKey };
  private cred!: CredentialFile;
  private cert!: Certificate;
  private state = '';
  private labels: Record<string, string> = {};
  private labelsAt = 0;

  constructor(
    private readonly opts: NodeAgentOptions,
    private readonly deps: NodeAgentDeps,
  ) {
    this.client = new ProxyClient({ proxy: opts.proxy, insecure: opts.insecure, ...(opts.ca ? { ca: opts.ca } : {}), env: deps.env, signal: deps.signal, log: deps.log });
  }

  close(): void {
    this.client.close();
  }

  private path(f: keyof typeof FILES): string {
    return join(this.opts.dataDir, FILES[f]);
  }

  async run(): Promise<void> {
    ensurePrivateDir(this.opts.dataDir);
    this.hostKey = this.loadOrMakeHostKey();
    const saved = this.loadCredential();
    // A saved credential that the proxy refuses (the node was removed with `tctl nodes rm`) is replaced by joining with
    // --token when one is given, once; without a token the refusal names the file to remove.
    let tokenLeft = saved !== undefined && this.opts.token !== undefined;
    if (saved) {
      this.cred = saved;
      this.cert = parseCertificateLine(readFileSync(this.path('hostCert'), 'utf8')).cert;
      this.deps.log(`node ${this.opts.name}: using the credential in ${this.path('credential')} (no token needed)`);
    } else {
      if (!this.opts.token) {
        throw new UserError('NODE_NO_TOKEN', `${this.path('credential')} does not exist, so this node has not joined yet`, { hint: 'give --token=TOKEN (make one with `tctl tokens add --type=node` on the proxy)' });
      }
      await this.join(this.opts.token);
    }
    this.printSshdConfig();
    while (!this.deps.signal.aborted) {
      try {
        if (this.renewDue()) await this.renew();
        await this.heartbeat();
      } catch (err) {
        if (this.deps.signal.aborted) break;
        if (err instanceof NodeRefusedError && err.serverCode === 'NODE_CREDENTIAL_REFUSED' && saved) {
          if (tokenLeft) {
            tokenLeft = false;
            this.deps.log(`node ${this.opts.name}: the proxy refused the credential in ${this.path('credential')} (was the node removed with \`tctl nodes rm\`?); joining with the given token`);
            await this.join(this.opts.token!);
            continue;
          }
          throw new NodeRefusedError('NODE_REFUSED', err.message, { hint: `remove ${this.path('credential')} (this node's saved credential) and start again with --token=TOKEN from \`tctl tokens add --type=node\`` });
        }
        if (err instanceof NodeRefusedError) throw err;
        this.deps.log(`node ${this.opts.name}: ${(err as Error).message}; retrying in 2 s`);
        await sleep(2_000, this.deps.signal);
      }
    }
  }

  private loadOrMakeHostKey(): { publicKey: PublicKey } {
    const file = this.path('hostKey');
    if (existsSync(file)) return parseOpenSSHPrivateKey(readFileSync(file, 'utf8'));
    const k = generateKeyPair('ed25519');
    stageFile(file, encodeOpenSSHPrivateKey(k.privateKey, `jumpgate-node ${this.opts.name}`), 0o600).commit();
    this.deps.log(`node ${this.opts.name}: made the host key ${file}`);
    return k;
  }

  private loadCredential(): CredentialFile | undefined {
    const file = this.path('credential');
    if (!existsSync(file)) return undefined;
    const p = parseShape(CredentialFileSchema, JSON.parse(readFileSync(file, 'utf8')) as unknown);
    if (!p.ok) throw new UserError('NODE_BAD_CREDENTIAL_FILE', `${file}: ${p.field}: ${p.reason}`, { hint: `remove ${file} and join again with a new token` });
    if (p.value.name !== this.opts.name) {
      throw new UserError('NODE_NAME_CHANGED', `${file} belongs to node "${printable(p.value.name)}", not --name=${this.opts.name}`, { hint: 'use the name it joined with, or another --data-dir to join under a new name' });
    }
    return p.value;
  }

  private async join(token: string): Promise<void> {
    this.labels = await this.currentLabels(true);
    const res = await this.call(API.nodeJoin, NodeJoinResponseSchema, {
      token,
      name: this.opts.name,
      addr: formatHostPort(this.opts.addr),
      labels: this.labels,
      public_key: formatPublicKeyLine(this.hostKey.publicKey),
    });
    const cert = this.checkCert(res.host_certificate);
    this.cred = { v: 1, name: this.opts.name, cluster: res.cluster_name, credential: res.credential };
    this.write({ credential: JSON.stringify(this.cred) + '\n', hostCert: res.host_certificate + '\n', userCa: res.user_ca.join('\n') + '\n', krl: this.krl(res.krl) });
    this.cert = cert;
    this.state = res.state;
    this.deps.log(`node ${this.opts.name}: joined cluster ${printable(res.cluster_name)}; host certificate serial ${cert.serial} valid until ${certExpiry(cert)}`);
    await this.reloadAndCheck();
  }

  private renewDue(): boolean {
    const after = Number(this.cert.validAfter) * 1000;
    const before = Number(this.cert.validBefore) * 1000;
    return this.deps.clock().getTime() >= after + ((before - after) * 2) / 3;
  }

  private async renew(): Promise<void> {
    const res = await this.call(API.nodeRenew, NodeRenewResponseSchema, { name: this.opts.name, public_key: formatPublicKeyLine(this.hostKey.publicKey) });
    const cert = this.checkCert(res.host_certificate);
    this.cred = { ...this.cred, credential: res.credential };
    this.write({ credential: JSON.stringify(this.cred) + '\n', hostCert: res.host_certificate + '\n' });
    this.cert = cert;
    this.deps.log(`node ${this.opts.name}: renewed the host certificate: serial ${cert.serial} valid until ${certExpiry(cert)}`);
    await this.reloadAndCheck();
  }

  private async heartbeat(): Promise<void> {
    const labels = await this.currentLabels(false);
    // Never held past the renewal time.
    const untilRenew = Number(this.cert.validAfter) * 1000 + ((Number(this.cert.validBefore) - Number(this.cert.validAfter)) * 2000) / 3 - this.deps.clock().getTime();
    const res = await this.call(
      API.nodeHeartbeat,
      NodeHeartbeatResponseSchema,
      { name: this.opts.name, addr: formatHostPort(this.opts.addr), labels, state: this.state },
      { holdMs: Math.max(0, untilRenew) },
    );
    if (!res) return; // cut short for the renewal
    if (res.state === this.state || !res.user_ca || res.krl === undefined) return;
    this.write({ userCa: res.user_ca.join('\n') + '\n', krl: this.krl(res.krl) });
    this.state = res.state;
    this.deps.log(`node ${this.opts.name}: the user CA keys or the revocation list changed (${res.user_ca.length} CA keys); reloading sshd`);
    await this.reloadAndCheck();
  }

  private krl(b64: string): Buffer {
    const krl = Buffer.from(b64, 'base64');
    try {
      parseKrl(krl); // sshd refuses every key with a RevokedKeys file it cannot read
    } catch (err) {
      throw new UserError('NODE_BAD_KRL', `the proxy sent a revocation list that is not an OpenSSH KRL (${(err as Error).message}); kept the old one`);
    }
    return krl;
  }

  /** Checks a host certificate from the proxy: for our key, a host certificate, naming us. */
  private checkCert(line: string): Certificate {
    const { cert } = parseCertificateLine(line);
    if (cert.type !== 'host' || !cert.key.blob.equals(this.hostKey.publicKey.blob) || !cert.principals.includes(this.opts.name.toLowerCase())) {
      throw new UserError('NODE_BAD_CERT', 'the proxy sent a host certificate that is not for this node\'s key and name; nothing was written');
    }
    return cert;
  }

  /** Stages every file, then renames them in place (credential first): a crash leaves whole files. */
  private write(files: Partial<Record<Exclude<keyof typeof FILES, 'hostKey'>, string | Buffer>>): void {
    const modes: Record<string, number> = { credential: 0o600, hostCert: 0o644, userCa: 0o644, krl: 0o644 };
    const staged = Object.entries(files).map(([k, data]) => stageFile(this.path(k as keyof typeof FILES), data!, modes[k]));
    for (const s of staged) s.commit();
  }

  private printSshdConfig(): void {
    this.deps.out(
      [
        `# sshd_config lines for this node (files kept current by jumpgate node start):`,
        `HostKey ${this.path('hostKey')}`,
        `HostCertificate ${this.path('hostCert')}`,
        `TrustedUserCAKeys ${this.path('userCa')}`,
        `RevokedKeys ${this.path('krl')}`,
        '',
      ].join('\n'),
    );
  }

  private async currentLabels(force: boolean): Promise<Record<string, string>> {
    const now = this.deps.clock().getTime();
    if (!force && now - this.labelsAt < LABEL_REFRESH_MS && this.labelsAt !== 0) return this.labels;
    const out: Record<string, string> = { ...this.opts.labels };
    for (const [name, argv] of Object.entries(this.opts.labelCommands)) {
      try {
        const r = await run(argv[0]!, argv.slice(1), { timeout: LABEL_CMD_TIMEOUT_MS, maxBuffer: 64 * 1024 });
        const value = r.stdout.split('\n')[0]!.trim().replace(/[^ -~]/g, '?').slice(0, 256);
        if (value) out[name] = value;
      } catch (err) {
        this.deps.log(`node ${this.opts.name}: --label-cmd ${name} failed (label left out): ${(err as Error).message.split('\n')[0]}`);
      }
    }
    this.labels = out;
    this.labelsAt = now;
    return out;
  }

  /** Reloads sshd (--reload, or SIGHUP to its PidFile's pid), then checks it presents the current host certificate. */
  private async reloadAndCheck(): Promise<void> {
    try {
      if (this.opts.reload) {
        await run(this.opts.reload[0]!, this.opts.reload.slice(1), { timeout: 30_000 });
      } else {
        if (!existsSync(this.opts.sshdPidFile)) {
          this.deps.log(`node ${this.opts.name}: ${this.opts.sshdPidFile} does not exist: sshd not running yet? start it with the lines above (or give --sshd-pid-file / --reload)`);
          return;
        }
        const pid = Number(readFileSync(this.opts.sshdPidFile, 'utf8').trim());
        if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${this.opts.sshdPidFile} holds no pid`);
        process.kill(pid, 'SIGHUP');
      }
    } catch (err) {
      this.deps.log(`node ${this.opts.name}: reloading sshd failed: ${(err as Error).message}`);
      return;
    }
    const want = this.cert.blob.toString('base64');
    const deadline = Date.now() + RELOAD_CHECK_MS;
    let seen = '';
    while (Date.now() < deadline && !this.deps.signal.aborted) {
      seen = await this.presentedCert();
      if (seen === want) {
        this.deps.log(`node ${this.opts.name}: sshd at ${formatHostPort(this.opts.addr)} presents host certificate serial ${this.cert.serial}`);
        return;
      }
      await sleep(200, this.deps.signal);
    }
    this.deps.log(`node ${this.opts.name}: WARNING: sshd at ${formatHostPort(this.opts.addr)} does not present the new host certificate (${seen ? 'another one' : 'no answer'}); is it configured with the lines above?`);
  }

  /** The base64 of the host certificate sshd at --addr presents ('' when none). */
  private async presentedCert(): Promise<string> {
    try {
      const r = await run(this.opts.sshKeyscan ?? 'ssh-keyscan', ['-c', '-T', '3', '-p', String(this.opts.addr.port), this.opts.addr.host], { timeout: 5_000 });
      // With -c the certificate lines carry no host name: "<type> <base64>".
      for (const line of r.stdout.split('\n')) {
        const f = line.trim().split(/\s+/);
        const i = f.findIndex((x) => x.endsWith('-cert-v01@openssh.com'));
        if (i >= 0 && f[i + 1]) return f[i + 1]!;
      }
    } catch {
      // not answering (yet)
    }
    return '';
  }

  /** POST `path` to the proxy (proxy-client.ts ProxyClient.call) with the credential once joined. */
  private call<S extends v.GenericSchema>(path: string, schema: S, body: unknown): Promise<v.InferOutput<S>>;
  private call<S extends v.GenericSchema>(path: string, schema: S, body: unknown, o: { holdMs: number }): Promise<v.InferOutput<S> | undefined>;
  private call<S extends v.GenericSchema>(path: string, schema: S, body: unknown, o?: { holdMs: number }): Promise<v.InferOutput<S> | undefined> {
    return o ? this.client.call(path, schema, body, this.cred?.credential, o) : this.client.call(path, schema, body, this.cred?.credential);
  }
}

function certExpiry(cert: Certificate): string {
  return new Date(Number(cert.validBefore) * 1000).toISOString();
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export { parseHostPort, NodeRefusedError, proxyUnreachable };
