/**
 * Reads an SFTP v3 conversation (draft-ietf-secsh-filexfer-02) passing
 * through the recording proxy and turns it into file operations for the
 * audit log: which file was opened with which flags and how many bytes were
 * read from it or written to it, removes, renames, mkdir/rmdir, setstat,
 * symlink. It only reads copies of the bytes; the relay forwards them
 * unchanged.
 *
 * Both directions are needed: the client's OPEN carries the path, the
 * node's HANDLE answer (same request id) the handle later READ/WRITE/CLOSE
 * requests name, and the node's DATA answers the bytes a download got.
 *
 * Strict bounds (a hostile client or node must not make the proxy hold
 * more): a packet is at most MAX_SFTP_PACKET bytes (OpenSSH's sftp-server
 * refuses more: SFTP_MAX_MSG_LENGTH, 256 KiB); of each packet only the first
 * MAX_SFTP_HEAD bytes are kept (paths, handles; WRITE data is counted, not
 * copied); at most MAX_SFTP_HANDLES open file handles and
 * MAX_SFTP_PENDING requests waiting for an answer are tracked. A stream that
 * breaks a bound or is not SFTP throws SftpAuditError: the proxy then ends
 * the session, since it could no longer say what happened in it.
 */
import { WireReader } from '../../sshwire/index.js';

/** Longest SFTP packet accepted (OpenSSH sftp-common.h SFTP_MAX_MSG_LENGTH). */
export const MAX_SFTP_PACKET = 256 * 1024;
/** Bytes of each packet kept for parsing: type, id, handle, paths (PATH_MAX is 4096 on Linux; two paths + attrs). */
export const MAX_SFTP_HEAD = 16 * 1024;
/** Open file handles tracked (sftp-server's own limit is lower: it refuses more). */
export const MAX_SFTP_HANDLES = 1_024;
/** Requests waiting for the node's answer that the auditor remembers (OPEN, READ). */
export const MAX_SFTP_PENDING = 4_096;

// Packet types, draft-ietf-secsh-filexfer-02 §3.
const FXP_INIT = 1;
const FXP_VERSION = 2;
const FXP_OPEN = 3;
const FXP_CLOSE = 4;
const FXP_READ = 5;
const FXP_WRITE = 6;
const FXP_SETSTAT = 9;
const FXP_REMOVE = 13;
const FXP_MKDIR = 14;
const FXP_RMDIR = 15;
const FXP_RENAME = 18;
const FXP_SYMLINK = 20;
const FXP_HANDLE = 102;
const FXP_DATA = 103;
const FXP_EXTENDED = 200;

/** SSH_FXF_* open flags (§6.3), by name as the audit log writes them. */
const OPEN_FLAGS: Array<[number, string]> = [
  [0x01, 'read'],
  [0x02, 'write'],
  [0x04, 'append'],
  [0x08, 'creat'],
  [0x10, 'trunc'],
  [0x20, 'excl'],
];

/** One audited file operation (becomes a `session.sftp` event). */
export interface SftpOperation {
  action: 'open' | 'remove' | 'rename' | 'mkdir' | 'rmdir' | 'setstat' | 'symlink';
  path: string;
  target?: string;
  flags?: string[];
  bytes_read?: number;
  bytes_written?: number;
}

/** The stream is not SFTP, or it broke one of the bounds above. */
export class SftpAuditError extends Error {
  readonly code = 'SFTP_AUDIT';
}

/** Splits a byte stream into SFTP packets, keeping each packet's head only (bounded memory). */
class PacketSplitter {
  private lenBuf = Buffer.alloc(4);
  private lenHave = 0;
  private remaining = 0;
  private total = 0;
  private head: Buffer[] = [];
  private headLen = 0;

  constructor(
    private readonly what: string,
    private readonly onPacket: (head: Buffer, length: number) => void,
  ) {}

  push(data: Buffer): void {
    let p = 0;
    while (p < data.length) {
      if (this.remaining === 0) {
        const take = Math.min(4 - this.lenHave, data.length - p);
        data.copy(this.lenBuf, this.lenHave, p, p + take);
        this.lenHave += take;
        p += take;
        if (this.lenHave < 4) return;
        this.lenHave = 0;
        const len = this.lenBuf.readUInt32BE(0);
        if (len === 0 || len > MAX_SFTP_PACKET) throw new SftpAuditError(`${this.what} sent an SFTP packet of ${len} bytes (at most ${MAX_SFTP_PACKET})`);
        this.remaining = this.total = len;
        this.head = [];
        this.headLen = 0;
        continue;
      }
      const take = Math.min(this.remaining, data.length - p);
      const keep = Math.min(take, MAX_SFTP_HEAD - this.headLen);
      if (keep > 0) {
        this.head.push(data.subarray(p, p + keep));
        this.headLen += keep;
      }
      p += take;
      this.remaining -= take;
      if (this.remaining === 0) this.onPacket(Buffer.concat(this.head, this.headLen), this.total);
    }
  }
}

interface OpenFile {
  path: string;
  flags: string[];
  read: number;
  written: number;
}

/**
 * Feed it copies of both directions (`fromClient`, `fromNode`); it calls
 * `emit` once per file operation. `end()` reports files still open when the
 * session ends. Throws SftpAuditError (see the module comment).
 */
export class SftpAuditor {
  private readonly client: PacketSplitter;
  private readonly node: PacketSplitter;
  /** OPEN requests (by id) waiting for their HANDLE, with the path and flags. */
  private readonly pendingOpens = new Map<number, { path: string; flags: string[] }>();
  /** READ requests (by id) waiting for their DATA, with the handle read. */
  private readonly pendingReads = new Map<number, string>();
  private readonly files = new Map<string, OpenFile>();

  constructor(private readonly emit: (op: SftpOperation) => void) {
    this.client = new PacketSplitter('the client', (head) => this.onClient(head));
    this.node = new PacketSplitter('the node', (head) => this.onNode(head));
  }

  fromClient(data: Buffer): void {
    this.client.push(data);
  }

  fromNode(data: Buffer): void {
    this.node.push(data);
  }

  /** Files still open when the session ended (the client never sent CLOSE): reported as they are. */
  end(): void {
    for (const f of this.files.values()) this.emit(fileEvent(f));
    this.files.clear();
  }

  private onClient(head: Buffer): void {
    const r = new WireReader(head);
    const type = r.u8();
    if (type === FXP_INIT) return;
    try {
      const id = r.u32();
      switch (type) {
        case FXP_OPEN: {
          const path = text(r.string());
          const pflags = r.u32();
          this.remember(this.pendingOpens, id, { path, flags: OPEN_FLAGS.filter(([bit]) => pflags & bit).map(([, n]) => n) });
          return;
        }
        case FXP_READ: {
          const handle = r.string().toString('hex');
          if (this.files.has(handle)) this.remember(this.pendingReads, id, handle);
          return;
        }
        case FXP_WRITE: {
          const handle = r.string().toString('hex');
          r.u64();
          const len = r.u32();
          const f = this.files.get(handle);
          if (f) f.written += len;
          return;
        }
        case FXP_CLOSE: {
          const handle = r.string().toString('hex');
          const f = this.files.get(handle);
          if (f) {
            this.files.delete(handle);
            this.emit(fileEvent(f));
          }
          return;
        }
        case FXP_REMOVE:
          return this.emit({ action: 'remove', path: text(r.string()) });
        case FXP_MKDIR:
          return this.emit({ action: 'mkdir', path: text(r.string()) });
        case FXP_RMDIR:
          return this.emit({ action: 'rmdir', path: text(r.string()) });
        case FXP_SETSTAT:
          return this.emit({ action: 'setstat', path: text(r.string()) });
        case FXP_RENAME: {
          const path = text(r.string());
          return this.emit({ action: 'rename', path, target: text(r.string()) });
        }
        case FXP_SYMLINK: {
          // OpenSSH sends (targetpath, linkpath), the reverse of the draft; both are written.
          const path = text(r.string());
          return this.emit({ action: 'symlink', path, target: text(r.string()) });
        }
        case FXP_EXTENDED: {
          const name = text(r.string());
          if (name === 'posix-rename@openssh.com') {
            const path = text(r.string());
            return this.emit({ action: 'rename', path, target: text(r.string()) });
          }
          return;
        }
        default:
          return; // stat, readdir, realpath...: reads of metadata, not file operations
      }
    } catch (err) {
      if (err instanceof SftpAuditError) throw err;
      throw new SftpAuditError(`the client sent a malformed SFTP packet (type ${type}): ${(err as Error).message}`);
    }
  }

  private onNode(head: Buffer): void {
    const r = new WireReader(head);
    const type = r.u8();
    if (type === FXP_VERSION) return;
    try {
      const id = r.u32();
      if (type === FXP_HANDLE) {
        const open = this.pendingOpens.get(id);
        if (!open) return;
        this.pendingOpens.delete(id);
        if (this.files.size >= MAX_SFTP_HANDLES) throw new SftpAuditError(`more than ${MAX_SFTP_HANDLES} files open at once`);
        this.files.set(r.string().toString('hex'), { ...open, read: 0, written: 0 });
        return;
      }
      if (type === FXP_DATA) {
        const handle = this.pendingReads.get(id);
        if (handle === undefined) return;
        this.pendingReads.delete(id);
        const f = this.files.get(handle);
        if (f) f.read += r.u32();
        return;
      }
      // STATUS and the rest: the request is answered; a failed OPEN never gets a handle.
      this.pendingOpens.delete(id);
      this.pendingReads.delete(id);
    } catch (err) {
      if (err instanceof SftpAuditError) throw err;
      throw new SftpAuditError(`the node sent a malformed SFTP packet (type ${type}): ${(err as Error).message}`);
    }
  }

  private remember<T>(map: Map<number, T>, id: number, value: T): void {
    if (map.size >= MAX_SFTP_PENDING && !map.has(id)) throw new SftpAuditError(`more than ${MAX_SFTP_PENDING} SFTP requests waiting for an answer`);
    map.set(id, value);
  }
}

function fileEvent(f: OpenFile): SftpOperation {
  return { action: 'open', path: f.path, flags: f.flags, bytes_read: f.read, bytes_written: f.written };
}

/** SFTP v3 paths are bytes; UTF-8 on every system that matters (the audit log escapes what is not printable). */
function text(b: Buffer): string {
  return b.toString('utf8');
}
