/**
 * A client for the SSH agent protocol (RFC 9987, formerly draft-miller-ssh-agent;
 * OpenSSH's PROTOCOL.agent), enough for `tsh login` / `tsh logout`: list
 * identities, add a certificate (or a plain key) with a lifetime, remove, sign.
 *
 * The wire side is split in two so it can be fuzzed without a socket:
 * `AgentFrameDecoder` cuts the byte stream into length-bounded messages and
 * `parseAgentReply` decodes one message. `AgentClient` does the I/O, one
 * request at a time (the protocol has no request ids: replies come in order).
 *
 * Private key material is taken from DER exports (PKCS#8, SEC1, PKCS#1), never
 * from `KeyObject.export({ format: 'jwk' })`: on Node 20 a JWK export of an
 * Ed25519 key made by generateKeyPairSync was seen deadlocking against the
 * key generation job's destructor during GC.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { UserError, type ErrorDetails } from '../errors.js';
import { WireError, WireReader, WireWriter } from '../sshwire/index.js';
import { curveByNodeName, parseCertificate, type Certificate, type Curve } from '../sshcert/index.js';

// RFC 9987 §6.1 message numbers.
export const SSH_AGENT_FAILURE = 5;
export const SSH_AGENT_SUCCESS = 6;
export const SSH_AGENTC_REQUEST_IDENTITIES = 11;
export const SSH_AGENT_IDENTITIES_ANSWER = 12;
export const SSH_AGENTC_SIGN_REQUEST = 13;
export const SSH_AGENT_SIGN_RESPONSE = 14;
export const SSH_AGENTC_ADD_IDENTITY = 17;
export const SSH_AGENTC_REMOVE_IDENTITY = 18;
export const SSH_AGENTC_ADD_ID_CONSTRAINED = 25;
/** Failure codes older agents send (OpenSSH's agent_failed() accepts all three). */
const SSH2_AGENT_FAILURE = 30;
const SSH_COM_AGENT2_FAILURE = 102;
/** RFC 9987 §6.3 key constraints. */
export const SSH_AGENT_CONSTRAIN_LIFETIME = 1;
export const SSH_AGENT_CONSTRAIN_CONFIRM = 2;
/** RFC 9987 §6.4 signature flags (RSA only). */
export const SSH_AGENT_RSA_SHA2_256 = 2;
export const SSH_AGENT_RSA_SHA2_512 = 4;

/** Longest reply accepted: OpenSSH's own agent caps messages at 256 KiB (AGENT_MAX_LEN). */
export const MAX_AGENT_REPLY = 256 * 1024;
/** Where Windows' OpenSSH agent service listens when SSH_AUTH_SOCK is unset. */
export const WINDOWS_AGENT_PIPE = '\\\\.\\pipe\\openssh-ssh-agent';

/**
 * How to start an SSH agent, for hints: on Windows the OpenSSH agent service
 * (disabled by default; enabling it needs an administrator's PowerShell),
 * elsewhere OpenSSH's ssh-agent in the current shell.
 */
export function startAgentHint(platform: NodeJS.Platform): string {
  return platform === 'win32'
    ? 'start the OpenSSH agent service (in PowerShell as administrator: `Get-Service ssh-agent | Set-Service -StartupType Automatic; Start-Service ssh-agent`)'
    : 'start one with `eval "$(ssh-agent)"`';
}
const DEFAULT_TIMEOUT_MS = 10_000;

export type AgentErrorCode =
  | 'AGENT_NOT_RUNNING'
  | 'AGENT_UNREACHABLE'
  | 'AGENT_REFUSED'
  | 'AGENT_PROTOCOL'
  | 'AGENT_TIMEOUT'
  | 'AGENT_CLOSED'
  | 'AGENT_KEY_UNSUPPORTED';

/** Anything that went wrong talking to the SSH agent; `code` says what. */
export class AgentError extends UserError {
  declare readonly code: AgentErrorCode;

  constructor(code: AgentErrorCode, message: string, details: ErrorDetails = {}) {
    super(code, message, details);
  }
}

/** One identity the agent holds: the public key or certificate blob and its comment. */
export interface AgentIdentity {
  blob: Buffer;
  comment: string;
}

/** A decoded reply (RFC 9987 §3). */
export type AgentReply =
  | { type: 'success' }
  | { type: 'failure' }
  | { type: 'identities'; identities: AgentIdentity[] }
  | { type: 'sign'; signature: Buffer };

function protocolError(message: string, cause?: unknown): AgentError {
  return new AgentError('AGENT_PROTOCOL', `the SSH agent sent a malformed reply: ${message}`, cause === undefined ? {} : { cause });
}

/**
 * Cuts an agent byte stream into messages (RFC 9987 §3: uint32 length, then
 * that many bytes). A length of zero or above MAX_AGENT_REPLY is AGENT_PROTOCOL
 * before anything is buffered for it, so a hostile agent cannot make us hold
 * more than 256 KiB.
 */
export class AgentFrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  /** Adds bytes and returns every message now complete (each without its length prefix). */
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len === 0) throw protocolError('an empty message');
      if (len > MAX_AGENT_REPLY) throw protocolError(`a ${len}-byte message, more than the ${MAX_AGENT_REPLY} allowed`);
      if (this.buf.length < 4 + len) break;
      // Copy: the caller may keep the message while later chunks arrive.
      out.push(Buffer.from(this.buf.subarray(4, 4 + len)));
      this.buf = this.buf.subarray(4 + len);
    }
    return out;
  }

  /** Bytes of an incomplete message still buffered. */
  get pending(): number {
    return this.buf.length;
  }
}

/**
 * Decodes one agent message (type byte + contents, RFC 9987 §3 and §4).
 * Malformed contents are AGENT_PROTOCOL with the WireError as cause; an
 * unknown message type is AGENT_PROTOCOL too.
 */
export function parseAgentReply(msg: Buffer): AgentReply {
  try {
    const r = new WireReader(msg);
    const type = r.u8();
    switch (type) {
      case SSH_AGENT_SUCCESS:
        // Contents are ignored, as OpenSSH's client does (extensions may append data).
        return { type: 'success' };
      case SSH_AGENT_FAILURE:
      case SSH2_AGENT_FAILURE:
      case SSH_COM_AGENT2_FAILURE:
        return { type: 'failure' };
      case SSH_AGENT_IDENTITIES_ANSWER: {
        const n = r.u32();
        // Each identity takes at least two length fields: a count the rest cannot hold is a lie.
        if (n > r.remaining / 8) throw protocolError(`it announces ${n} identities in ${r.remaining} bytes`);
        const identities: AgentIdentity[] = [];
        for (let i = 0; i < n; i++) {
          const blob = Buffer.from(r.string());
          if (blob.length === 0) throw protocolError(`identity ${i} has an empty key blob`);
          // Comments are free text chosen by whoever added the key; not necessarily UTF-8.
          const comment = r.string().toString('utf8');
          identities.push({ blob, comment });
        }
        // Trailing bytes are tolerated, as OpenSSH's ssh_fetch_identitylist does.
        return { type: 'identities', identities };
      }
      case SSH_AGENT_SIGN_RESPONSE: {
        const signature = Buffer.from(r.string());
        const sr = new WireReader(signature);
        sr.utf8(64);
        sr.string();
        sr.end();
        return { type: 'sign', signature };
      }
      default:
        throw protocolError(`unexpected message type ${type}`);
    }
  } catch (err) {
    if (err instanceof AgentError) throw err;
    if (err instanceof WireError) throw protocolError(err.message, err);
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Key material from DER (no JWK exports: see the header).

interface Der {
  tag: number;
  /** Contents (a view). */
  body: Buffer;
  /** Offset just past this element. */
  next: number;
}

function derRead(buf: Buffer, pos: number): Der {
  if (pos + 2 > buf.length) throw new RangeError('truncated DER');
  const tag = buf[pos]!;
  let len = buf[pos + 1]!;
  let at = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || at + n > buf.length) throw new RangeError('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[at + i]!;
    at += n;
  }
  if (at + len > buf.length) throw new RangeError('truncated DER');
  return { tag, body: buf.subarray(at, at + len), next: at + len };
}

/** The INTEGERs inside a top-level DER SEQUENCE, as unsigned magnitudes. */
function derIntegers(der: Buffer): Buffer[] {
  const seq = derRead(der, 0);
  if (seq.tag !== 0x30) throw new RangeError('expected a DER SEQUENCE');
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < seq.body.length) {
    const el = derRead(seq.body, pos);
    if (el.tag !== 0x02) break;
    out.push(el.body);
    pos = el.next;
  }
  return out;
}

/** The SSH agent's private key fields for one key (RFC 9987 §4.2.x), without the type string. */
interface KeyMaterial {
  /** ssh-ed25519, ecdsa-sha2-nistp256, ... */
  type: string;
  /** The plain public key blob (RFC 4253 §6.6 / RFC 5656 / RFC 8709). */
  publicBlob: Buffer;
  /** Writes the fields that follow the public part, for a plain key. */
  writePlain(w: WireWriter): void;
  /** Writes the fields that follow the certificate blob, for a certificate. */
  writeCertPrivate(w: WireWriter): void;
  /** Zeroes the buffers that held secrets. */
  wipe(): void;
}

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function keyMaterial(privateKey: KeyObject): KeyMaterial {
  if (privateKey.type !== 'private') throw new RangeError('the agent needs a private key');
  const unsupported = (what: string): AgentError =>
    new AgentError('AGENT_KEY_UNSUPPORTED', `cannot add ${what} keys to the SSH agent; use ed25519, ECDSA (P-256/384/521) or RSA`);
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  switch (privateKey.asymmetricKeyType) {
    case 'ed25519': {
      const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
      if (pkcs8.length !== 48 || !pkcs8.subarray(0, 16).equals(ED25519_PKCS8_PREFIX)) throw unsupported('this Ed25519 encoding of');
      if (spki.length !== 44 || !spki.subarray(0, 12).equals(ED25519_SPKI_PREFIX)) throw unsupported('this Ed25519 encoding of');
      const pk = spki.subarray(12);
      // RFC 8709 / OpenSSH: the 64-byte "secret key" is seed || public key.
      const sk = Buffer.concat([pkcs8.subarray(16), pk]);
      const publicBlob = new WireWriter(64).string('ssh-ed25519').string(pk).finish();
      return {
        type: 'ssh-ed25519',
        publicBlob: Buffer.from(publicBlob),
        writePlain: (w) => void w.string(pk).string(sk),
        writeCertPrivate: (w) => void w.string(pk).string(sk),
        wipe: () => {
          pkcs8.fill(0);
          sk.fill(0);
        },
      };
    }
    case 'ec': {
      const curve: Curve | undefined = curveByNodeName(privateKey.asymmetricKeyDetails?.namedCurve);
      if (!curve) throw unsupported(`EC ${privateKey.asymmetricKeyDetails?.namedCurve ?? ''}`);
      if (!spki.subarray(0, curve.spkiPrefix.length).equals(curve.spkiPrefix)) throw unsupported('this EC encoding of');
      const q = spki.subarray(curve.spkiPrefix.length);
      // SEC1 ECPrivateKey (RFC 5915): SEQUENCE { INTEGER 1, OCTET STRING d, ... }.
      const sec1 = privateKey.export({ format: 'der', type: 'sec1' });
      const seq = derRead(sec1, 0);
      const version = derRead(seq.body, 0);
      const d = derRead(seq.body, version.next);
      if (seq.tag !== 0x30 || version.tag !== 0x02 || d.tag !== 0x04) throw unsupported('this EC encoding of');
      const publicBlob = new WireWriter(160).string(curve.algorithm).string(curve.ident).string(q).finish();
      return {
        type: curve.algorithm,
        publicBlob: Buffer.from(publicBlob),
        // RFC 9987 §4.2.2: string curve, string Q, mpint d; certificates carry only d.
        writePlain: (w) => void w.string(curve.ident).string(q).mpint(d.body),
        writeCertPrivate: (w) => void w.mpint(d.body),
        wipe: () => sec1.fill(0),
      };
    }
    case 'rsa': {
      // PKCS#1 RSAPrivateKey (RFC 8017 A.1.2): version, n, e, d, p, q, dP, dQ, qInv.
      const pkcs1 = privateKey.export({ format: 'der', type: 'pkcs1' });
      const ints = derIntegers(pkcs1);
      if (ints.length < 9) throw unsupported('this RSA encoding of');
      const [, n, e, d, p, q, , , iqmp] = ints as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer, Buffer, Buffer, Buffer];
      const publicBlob = new WireWriter(600).string('ssh-rsa').mpint(e).mpint(n).finish();
      return {
        type: 'ssh-rsa',
        publicBlob: Buffer.from(publicBlob),
        // RFC 9987 §4.2.1: mpint n, e, d, iqmp, p, q; certificates carry d, iqmp, p, q.
        writePlain: (w) => void w.mpint(n).mpint(e).mpint(d).mpint(iqmp).mpint(p).mpint(q),
        writeCertPrivate: (w) => void w.mpint(d).mpint(iqmp).mpint(p).mpint(q),
        wipe: () => pkcs1.fill(0),
      };
    }
    default:
      throw unsupported(privateKey.asymmetricKeyType ?? 'these');
  }
}

/** Key constraints (RFC 9987 §4.2.6). */
export interface AgentConstraints {
  /** The agent forgets the identity after this many seconds (1 .. 2^32-1). */
  lifetimeSeconds?: number;
  /** The agent asks the user before every signature (ssh-askpass). */
  confirm?: boolean;
}

function writeConstraints(w: WireWriter, c: AgentConstraints): void {
  if (c.lifetimeSeconds !== undefined) {
    const s = c.lifetimeSeconds;
    if (!Number.isInteger(s) || s < 1 || s > 0xffffffff) throw new RangeError(`agent lifetime must be 1..4294967295 seconds, not ${s}`);
    w.u8(SSH_AGENT_CONSTRAIN_LIFETIME).u32(s);
  }
  if (c.confirm) w.u8(SSH_AGENT_CONSTRAIN_CONFIRM);
}

function hasConstraints(c: AgentConstraints): boolean {
  return c.lifetimeSeconds !== undefined || c.confirm === true;
}

/**
 * Builds an add-identity request (RFC 9987 §4.2) for a certificate and its
 * private key: string cert algorithm, string certificate, the key's private
 * fields, string comment, then constraints (ADD_ID_CONSTRAINED) if any.
 * Returns the framed message; the caller wipes it after sending.
 */
export function encodeAddCertificate(opts: { privateKey: KeyObject; certBlob: Buffer; comment: string } & AgentConstraints): Buffer {
  let cert: Certificate;
  try {
    cert = parseCertificate(opts.certBlob);
  } catch (err) {
    throw new AgentError('AGENT_KEY_UNSUPPORTED', `cannot add the certificate to the SSH agent: ${(err as Error).message}`, { cause: err });
  }
  const km = keyMaterial(opts.privateKey);
  try {
    if (!km.publicBlob.equals(cert.key.blob)) {
      throw new AgentError('AGENT_KEY_UNSUPPORTED', 'the certificate does not certify this private key (their public keys differ)');
    }
    const w = new WireWriter(opts.certBlob.length + 1024);
    const mark = w.openString();
    w.u8(hasConstraints(opts) ? SSH_AGENTC_ADD_ID_CONSTRAINED : SSH_AGENTC_ADD_IDENTITY);
    w.string(cert.algorithm).string(opts.certBlob);
    km.writeCertPrivate(w);
    w.string(opts.comment);
    writeConstraints(w, opts);
    return w.closeString(mark).finish();
  } finally {
    km.wipe();
  }
}

/** Builds an add-identity request (RFC 9987 §4.2) for a plain private key. */
export function encodeAddKey(opts: { privateKey: KeyObject; comment: string } & AgentConstraints): Buffer {
  const km = keyMaterial(opts.privateKey);
  try {
    const w = new WireWriter(1024);
    const mark = w.openString();
    w.u8(hasConstraints(opts) ? SSH_AGENTC_ADD_ID_CONSTRAINED : SSH_AGENTC_ADD_IDENTITY);
    w.string(km.type);
    km.writePlain(w);
    w.string(opts.comment);
    writeConstraints(w, opts);
    return w.closeString(mark).finish();
  } finally {
    km.wipe();
  }
}

/** The plain public key blob of a private key, as the agent lists it after `addKey`. */
export function agentPublicBlob(privateKey: KeyObject): Buffer {
  const km = keyMaterial(privateKey);
  km.wipe();
  return km.publicBlob;
}

function frame(type: number, body?: (w: WireWriter) => void): Buffer {
  const w = new WireWriter(256);
  const mark = w.openString();
  w.u8(type);
  body?.(w);
  return w.closeString(mark).finish();
}

// ---------------------------------------------------------------------------
// Naming the agent, for warnings a user can act on.

/**
 * A human name for the agent behind a socket path, guessed from where
 * well-known agents put their sockets ("the SSH agent at PATH" otherwise).
 */
export function describeAgent(socketPath: string): string {
  const p = socketPath.toLowerCase();
  if (p.includes('openssh-ssh-agent')) return "Windows' OpenSSH agent service";
  if (p.includes('pageant')) return "PuTTY's Pageant";
  if (p.includes('1password')) return "1Password's SSH agent";
  if (p.includes('secretive')) return 'Secretive';
  if (p.includes('keepassxc')) return "KeePassXC's SSH agent";
  if (p.includes('gpg-agent') || p.includes('gnupg')) return "GnuPG's gpg-agent";
  if (p.includes('yubikey-agent')) return 'yubikey-agent';
  if (p.includes('gcr/ssh')) return "GNOME's gcr-ssh-agent";
  if (p.includes('keyring')) return "gnome-keyring's SSH agent";
  if (p.includes('com.apple.launchd')) return "macOS's OpenSSH ssh-agent";
  if (/\/agent\.\d+$/.test(p) || /\/ssh-[^/]+\/agent/.test(p) || p.includes('ssh-agent')) return "OpenSSH's ssh-agent";
  return `the SSH agent at ${socketPath}`;
}

export type AddCertificateStatus = 'listed' | 'dropped' | 'refused';

/** What `addCertificateAndVerify` found. `warning` is set unless the certificate is listed. */
export interface AddCertificateResult {
  status: AddCertificateStatus;
  /** From `describeAgent`. */
  agentName: string;
  /** One paragraph for stderr: what happened, which agent, what to do. */
  warning?: string;
}

// ---------------------------------------------------------------------------
// The client.

export interface AgentConnectOptions {
  /** Overrides SSH_AUTH_SOCK. */
  socketPath?: string;
  env: Record<string, string | undefined>;
  platform: NodeJS.Platform;
  /** Bounds the connection and every request; default 10 s. */
  timeoutMs?: number;
}

interface Pending {
  resolve: (msg: Buffer) => void;
  reject: (err: Error) => void;
}

/**
 * A connection to the user's SSH agent (RFC 9987). Requests are queued and
 * sent one at a time; every request has a deadline; a protocol error or a
 * timeout closes the connection (the stream can no longer be trusted to be
 * in step).
 */
export class AgentClient {
  private readonly decoder = new AgentFrameDecoder();
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private failure: AgentError | undefined;

  private constructor(
    private readonly socket: Socket,
    /** The socket or pipe path in use. */
    readonly socketPath: string,
    private readonly timeoutMs: number,
    /** For hints that differ per OS (how to start an agent). */
    private readonly platform: NodeJS.Platform,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new AgentError('AGENT_CLOSED', `the SSH agent at ${socketPath} failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new AgentError('AGENT_CLOSED', `the SSH agent at ${socketPath} closed the connection`)));
  }

  /** The socket path tsh would use: SSH_AUTH_SOCK, or the Windows service pipe; AGENT_NOT_RUNNING if there is none. */
  static resolveSocketPath(opts: Pick<AgentConnectOptions, 'socketPath' | 'env' | 'platform'>): string {
    const p = opts.socketPath ?? opts.env['SSH_AUTH_SOCK'];
    if (p) return p;
    if (opts.platform === 'win32') return WINDOWS_AGENT_PIPE;
    throw new AgentError('AGENT_NOT_RUNNING', 'no SSH agent is running (SSH_AUTH_SOCK is not set)', {
      hint: `${startAgentHint(opts.platform)} and run the command again`,
    });
  }

  /** Connects to the agent; AGENT_NOT_RUNNING / AGENT_UNREACHABLE / AGENT_TIMEOUT with a hint on failure. */
  static async connect(opts: AgentConnectOptions): Promise<AgentClient> {
    const path = AgentClient.resolveSocketPath(opts);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const socket = netConnect({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new AgentError('AGENT_TIMEOUT', `the SSH agent at ${path} did not accept a connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        reject(unreachable(path, err, opts.platform));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new AgentClient(socket, path, timeoutMs, opts.platform));
      });
    });
  }

  private onData(chunk: Buffer): void {
    let msgs: Buffer[];
    try {
      msgs = this.decoder.push(chunk);
    } catch (err) {
      this.fail(err as AgentError);
      return;
    }
    for (const msg of msgs) {
      const p = this.pending;
      if (!p) {
        this.fail(protocolError('a reply nobody asked for'));
        return;
      }
      this.pending = undefined;
      p.resolve(msg);
    }
  }

  private fail(err: AgentError): void {
    if (!this.failure) this.failure = err;
    this.socket.destroy();
    const p = this.pending;
    this.pending = undefined;
    p?.reject(err);
  }

  /** Sends one framed request and waits for its reply, after every earlier request. */
  private request(msg: Buffer, what: string, wipe = false): Promise<AgentReply> {
    const run = (): Promise<AgentReply> =>
      new Promise<Buffer>((resolve, reject) => {
        if (this.failure) {
          if (wipe) msg.fill(0);
          reject(this.failure);
          return;
        }
        const timer = setTimeout(() => {
          this.fail(new AgentError('AGENT_TIMEOUT', `the SSH agent at ${this.socketPath} did not answer ${what} within ${this.timeoutMs} ms`));
        }, this.timeoutMs);
        this.pending = {
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        };
        this.socket.write(msg, () => {
          if (wipe) msg.fill(0);
        });
      }).then(parseAgentReply);
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async expectSuccess(msg: Buffer, what: string, wipe = false): Promise<void> {
    const reply = await this.request(msg, what, wipe);
    if (reply.type === 'success') return;
    if (reply.type === 'failure') throw new AgentError('AGENT_REFUSED', `the SSH agent (${describeAgent(this.socketPath)}) refused ${what}`);
    throw protocolError(`it answered ${what} with a ${reply.type} message`);
  }

  /** The identities the agent holds (SSH_AGENTC_REQUEST_IDENTITIES). */
  async list(): Promise<AgentIdentity[]> {
    const reply = await this.request(frame(SSH_AGENTC_REQUEST_IDENTITIES), 'the request for its identities');
    if (reply.type === 'identities') return reply.identities;
    if (reply.type === 'failure') throw new AgentError('AGENT_REFUSED', `the SSH agent (${describeAgent(this.socketPath)}) refused to list its identities`);
    throw protocolError(`it answered the request for identities with a ${reply.type} message`);
  }

  /** Adds a certificate with its private key (RFC 9987 §4.2; formats of PROTOCOL.certkeys). */
  async addCertificate(opts: { privateKey: KeyObject; certBlob: Buffer; comment: string; lifetimeSeconds?: number; confirm?: boolean }): Promise<void> {
    const msg = encodeAddCertificate(opts);
    await this.expectSuccess(msg, 'the certificate', true);
  }

  /** Adds a plain private key (what `ssh-add` does before adding its certificate). */
  async addKey(privateKey: KeyObject, comment: string, lifetimeSeconds?: number): Promise<void> {
    const msg = encodeAddKey(lifetimeSeconds === undefined ? { privateKey, comment } : { privateKey, comment, lifetimeSeconds });
    await this.expectSuccess(msg, 'the key', true);
  }

  /** Removes one identity by its blob (SSH_AGENTC_REMOVE_IDENTITY); AGENT_REFUSED if the agent does not hold it. */
  async remove(blob: Buffer): Promise<void> {
    await this.expectSuccess(frame(SSH_AGENTC_REMOVE_IDENTITY, (w) => void w.string(blob)), 'to remove an identity');
  }

  /** Removes every identity the predicate picks; returns how many were removed. */
  async removeMatching(predicate: (id: AgentIdentity) => boolean): Promise<number> {
    let n = 0;
    for (const id of await this.list()) {
      if (!predicate(id)) continue;
      try {
        await this.remove(id.blob);
        n++;
      } catch (err) {
        // Gone in between (a lifetime ran out): that is what we wanted.
        if (!(err instanceof AgentError && err.code === 'AGENT_REFUSED')) throw err;
      }
    }
    return n;
  }

  /** Asks the agent to sign `data` (SSH_AGENTC_SIGN_REQUEST); returns the SSH signature blob. */
  async sign(blob: Buffer, data: Buffer, flags = 0): Promise<Buffer> {
    const reply = await this.request(
      frame(SSH_AGENTC_SIGN_REQUEST, (w) => void w.string(blob).string(data).u32(flags)),
      'a signature request',
    );
    if (reply.type === 'sign') return reply.signature;
    if (reply.type === 'failure') throw new AgentError('AGENT_REFUSED', `the SSH agent (${describeAgent(this.socketPath)}) refused to sign`);
    throw protocolError(`it answered a signature request with a ${reply.type} message`);
  }

  /**
   * Adds the certificate, then lists the identities to check it is really
   * there: gnome-keyring's agent and some others refuse certificates or
   * accept and silently drop them, and plain `ssh` then cannot log in.
   * A refusal or a drop is returned with a warning naming the agent and the
   * fix, not thrown: the login itself succeeded and `tsh ssh` still works.
   */
  async addCertificateAndVerify(opts: {
    privateKey: KeyObject;
    certBlob: Buffer;
    comment: string;
    lifetimeSeconds?: number;
    confirm?: boolean;
    /**
     * Where the key and certificate files are, for the IdentityFile/CertificateFile
     * advice (file keystore only), and the ssh config as the user writes its path.
     */
    files?: { key: string; cert: string; sshConfig?: string };
  }): Promise<AddCertificateResult> {
    const agentName = describeAgent(this.socketPath);
    let status: AddCertificateStatus = 'listed';
    try {
      await this.addCertificate(opts);
    } catch (err) {
      if (!(err instanceof AgentError && err.code === 'AGENT_REFUSED')) throw err;
      status = 'refused';
    }
    if (status === 'listed') {
      const ids = await this.list();
      if (!ids.some((id) => id.blob.equals(opts.certBlob))) status = 'dropped';
    }
    if (status === 'listed') return { status, agentName };
    const what =
      status === 'refused'
        ? `${agentName} (${this.socketPath}) refused the certificate`
        : `${agentName} (${this.socketPath}) accepted the certificate but does not list it (it drops OpenSSH certificates)`;
    const fixes = [
      this.platform === 'win32'
        ? `${startAgentHint('win32')}, clear SSH_AUTH_SOCK so that tsh and ssh use it, and log in again`
        : 'start OpenSSH\'s agent with `eval "$(ssh-agent)"` and log in again',
      'or use `tsh ssh`, which does not need the agent',
    ];
    if (opts.files) {
      fixes.push(`or add \`IdentityFile ${opts.files.key}\` and \`CertificateFile ${opts.files.cert}\` to the Host block in ${opts.files.sshConfig ?? (this.platform === 'win32' ? '%USERPROFILE%\\.ssh\\config' : '~/.ssh/config')}`);
    }
    return { status, agentName, warning: `${what}, so plain ssh cannot use it. To fix: ${fixes.join('; ')}.` };
  }

  /** Closes the connection; queued requests fail with AGENT_CLOSED. */
  close(): void {
    this.fail(new AgentError('AGENT_CLOSED', 'the SSH agent connection was closed'));
  }
}

function unreachable(path: string, err: NodeJS.ErrnoException, platform: NodeJS.Platform): AgentError {
  const why =
    err.code === 'ENOENT'
      ? 'no such socket'
      : err.code === 'ECONNREFUSED'
        ? 'connection refused: the agent is gone'
        : err.code === 'EACCES'
          ? 'permission denied'
          : err.message;
  const hint =
    platform === 'win32' && path === WINDOWS_AGENT_PIPE
      ? `${startAgentHint('win32')} and run the command again`
      : `SSH_AUTH_SOCK points at an agent that is not running; ${startAgentHint(platform)} and run the command again`;
  return new AgentError('AGENT_UNREACHABLE', `cannot reach the SSH agent at ${path} (${why})`, { cause: err, hint });
}
