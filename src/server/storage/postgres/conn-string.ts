/**
 * The connection string of `storage:` (conn_string, or conn_string_file read at
 * open) and the `location` shown in messages: postgres://user@host:port/db,
 * never the password.
 */
import { readFileSync, statSync } from 'node:fs';
import { UserError } from '../../../errors.js';

export interface ConnTarget {
  connString: string;
  /** postgres://user@host:port/db: no password, no query parameters. */
  location: string;
  /** The password in the string, if any (scrubbed from every message that could echo it). */
  secrets: string[];
}

/**
 * Reads the connection string: `connString`, or the content of `connStringFile`
 * (trimmed); `warn`s when that file is readable by group or others (it usually
 * carries the password).
 * @throws UserError STORE_CONFIG naming storage.conn_string_file when it cannot be read or is empty.
 */
export function readConnTarget(
  storage: { connString?: string; connStringFile?: string },
  warn: (line: string) => void,
  platform: NodeJS.Platform = process.platform,
): ConnTarget {
  let text = storage.connString;
  if (text === undefined) {
    const file = storage.connStringFile;
    if (file === undefined) throw new UserError('STORE_CONFIG', 'storage: set conn_string or conn_string_file', { hint: 'name the PostgreSQL database, e.g. conn_string_file: /etc/jumpgate/pg.conn' });
    try {
      const st = statSync(file);
      if (platform !== 'win32' && (st.mode & 0o077) !== 0) {
        warn(`storage.conn_string_file: ${file} is readable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); it holds the database password: chmod 600 ${file}`);
      }
      text = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new UserError('STORE_CONFIG', `storage.conn_string_file: ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
        cause: err,
        hint: 'check the path and that the server user may read it',
      });
    }
    if (text === '') throw new UserError('STORE_CONFIG', `storage.conn_string_file: ${file} is empty`, { hint: 'write the connection string into it: postgres://USER:PASSWORD@HOST:PORT/DB' });
  }
  return { connString: text, ...describe(text) };
}

/** location + secrets of a URL (postgres://…) or key=value (host=… user=…) connection string. */
function describe(text: string): { location: string; secrets: string[] } {
  if (/^postgres(ql)?:\/\//i.test(text)) {
    try {
      const u = new URL(text);
      const user = decodeURIComponent(u.username);
      const password = decodeURIComponent(u.password);
      const host = u.hostname || u.searchParams.get('host') || 'localhost';
      const port = u.port || '5432';
      const db = decodeURIComponent(u.pathname.replace(/^\//, '')) || user;
      const pw = u.searchParams.get('password');
      return {
        location: `postgres://${user ? `${user}@` : ''}${host}:${port}/${db}`,
        secrets: [password, u.password, pw ?? ''].filter((s) => s !== ''),
      };
    } catch {
      return { location: 'postgres://(unparsable connection string)', secrets: [text] };
    }
  }
  const kv = new Map<string, string>();
  for (const m of text.matchAll(/(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)/g)) kv.set(m[1]!.toLowerCase(), m[2]!.replace(/^'(.*)'$/s, '$1').replace(/\\(.)/g, '$1'));
  const user = kv.get('user') ?? '';
  const pw = kv.get('password');
  return {
    location: `postgres://${user ? `${user}@` : ''}${kv.get('host') ?? 'localhost'}:${kv.get('port') ?? '5432'}/${kv.get('dbname') ?? (user || 'postgres')}`,
    secrets: pw ? [pw] : [],
  };
}

/** `text` with every secret replaced by "***" (pg's messages do not carry the password; this makes sure). */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('***');
  return out;
}
