/**
 * `jumpgate node start`: flags → NodeAgentOptions → server/node-agent/agent.ts
 * runNodeAgent until SIGINT/SIGTERM.
 */
import { X509Certificate } from 'node:crypto';
import { closeSync, constants as fsConstants, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from '../../../errors.js';
import { isNodeName } from '../../../api/schema.js';
import { parseHostPort, type HostPort } from '../../../shared/address.js';
import { parseProxyFlag } from '../../../client/proxy-addr.js';
import { isLabelName } from '../../../shared/labels.js';
import { runNodeAgent, type NodeAgentOptions } from '../../../server/node-agent/agent.js';
import { parseLabels } from '../../flags.js';
import type { Deps } from '../../deps.js';
import * as v from 'valibot';
import { readYamlTree, YamlNumber } from '../../../config/yaml-tree.js';
import { firstIssue } from '../../../api/schema.js';
import { ConfigError } from '../../../errors.js';

export interface NodeStartFlags {
  token?: string;
  tokenFile?: string;
  proxy?: string;
  name?: string;
  addr?: string;
  dataDir?: string;
  labels?: string;
  labelCmd?: string[];
  reload?: string;
  sshdPidFile?: string;
  caFile?: string;
  insecure?: boolean;
  config?: string;
}

const text = v.pipe(v.string('expected text'), v.minLength(1, 'is empty'));
/** `jumpgate node start --config FILE`: the flags' keys in YAML (flags given on the command line win). */
const NodeConfigSchema = v.strictObject(
  {
    token: v.optional(text),
    token_file: v.optional(text),
    proxy: v.optional(text),
    name: v.optional(text),
    addr: v.optional(text),
    data_dir: v.optional(text),
    labels: v.optional(v.record(v.string(), v.union([v.string(), v.pipe(v.instance(YamlNumber), v.transform((n) => n.source)), v.pipe(v.boolean(), v.transform(String))]), 'expected a mapping of label: value')),
    label_cmd: v.optional(v.record(v.string(), text, 'expected a mapping of label: command')),
    reload: v.optional(text),
    sshd_pid_file: v.optional(text),
    ca_file: v.optional(text),
    insecure: v.optional(v.boolean('expected true or false')),
  },
  (i) => `unknown key ${i.received}; the keys are token, token_file, proxy, name, addr, data_dir, labels, label_cmd, reload, sshd_pid_file, ca_file, insecure`,
);

/** Reads --config into flags (the command line's own flags win). @throws ConfigError naming the file, line and key */
export function readNodeConfig(file: string): NodeStartFlags {
  const tree = readYamlTree(readFileSync(file, 'utf8'));
  const problem = tree.problems[0];
  if (problem) throw new ConfigError(`${file}:${problem.line ?? '?'}`, problem.path, problem.reason);
  const r = v.safeParse(NodeConfigSchema, tree.value ?? {});
  if (!r.success) {
    const { field, reason } = firstIssue(r.issues);
    throw new ConfigError(`${file}:${tree.lineOf(field) ?? '?'}`, field, reason);
  }
  const c = r.output;
  return {
    ...(c.token !== undefined ? { token: c.token } : {}),
    ...(c.token_file !== undefined ? { tokenFile: resolve(file, '..', c.token_file) } : {}),
    ...(c.proxy !== undefined ? { proxy: c.proxy } : {}),
    ...(c.name !== undefined ? { name: c.name } : {}),
    ...(c.addr !== undefined ? { addr: c.addr } : {}),
    ...(c.data_dir !== undefined ? { dataDir: resolve(file, '..', c.data_dir) } : {}),
    ...(c.labels !== undefined ? { labels: Object.entries(c.labels).map(([k, val]) => `${k}=${val}`).join(',') } : {}),
    ...(c.label_cmd !== undefined ? { labelCmd: Object.entries(c.label_cmd).map(([k, cmd]) => `${k}=${cmd}`) } : {}),
    ...(c.reload !== undefined ? { reload: c.reload } : {}),
    ...(c.sshd_pid_file !== undefined ? { sshdPidFile: resolve(file, '..', c.sshd_pid_file) } : {}),
    ...(c.ca_file !== undefined ? { caFile: resolve(file, '..', c.ca_file) } : {}),
    ...(c.insecure !== undefined ? { insecure: c.insecure } : {}),
  };
}

/** Default sshd PidFile (Debian, RHEL). */
export const DEFAULT_SSHD_PID_FILE = '/run/sshd.pid';
/** Default data directory. */
export const DEFAULT_NODE_DATA_DIR = '/var/lib/jumpgate-node';

/** Checks the flags into agent options. @throws UsageError naming the flag */
export function nodeStartOptions(f: NodeStartFlags, deps: Pick<Deps, 'cwd' | 'env'>): NodeAgentOptions {
  const need = (flag: string, v: string | undefined) => {
    if (v === undefined || v.trim() === '') throw new UsageError('USAGE_NODE_FLAG', `${flag} is required`, { hint: 'see `jumpgate node start --help`; `tctl tokens add --type=node` prints the whole line' });
    return v.trim();
  };
  const addr = (flag: string, v: string, defaultPort?: number): HostPort => {
    try {
      return parseHostPort(v, defaultPort !== undefined ? { defaultPort } : {});
    } catch (err) {
      throw new UsageError('USAGE_NODE_FLAG', `${flag}: ${(err as Error).message}`);
    }
  };
  const name = need('--name', f.name);
  if (!isNodeName(name)) throw new UsageError('USAGE_NODE_FLAG', `--name: ${JSON.stringify(name)} is not a node name: letters, digits, "-" and "." like a host name`);
  let token = f.token ?? deps.env['JUMPGATE_NODE_TOKEN'];
  if (f.tokenFile !== undefined) token = readFileSync(resolve(deps.cwd, f.tokenFile), 'utf8').trim();
  const labelCommands: Record<string, string[]> = {};
  for (const spec of f.labelCmd ?? []) {
    const eq = spec.indexOf('=');
    const key = spec.slice(0, Math.max(0, eq));
    const argv = spec.slice(eq + 1).trim().split(/\s+/).filter(Boolean);
    if (eq < 1 || !isLabelName(key) || argv.length === 0) {
      throw new UsageError('USAGE_NODE_FLAG', `--label-cmd: ${JSON.stringify(spec)} is not NAME=COMMAND`, { hint: "e.g. --label-cmd 'kernel=uname -r' (run without a shell, split on spaces)" });
    }
    labelCommands[key] = argv;
  }
  const reload = f.reload?.trim().split(/\s+/).filter(Boolean);
  if (f.caFile !== undefined && f.insecure === true) throw new UsageError('USAGE_NODE_FLAG', '--ca-file and --insecure contradict each other', { hint: '--ca-file checks the proxy against that CA; --insecure checks nothing: drop --insecure' });
  const ca = f.caFile === undefined ? undefined : readCaFile(resolve(deps.cwd, f.caFile));
  return {
    ...(token ? { token } : {}),
    proxy: (({ host, port }) => ({ host, port }))(parseProxyFlag(need('--proxy', f.proxy), '--proxy', 443)),
    name,
    addr: addr('--addr', need('--addr', f.addr), 22),
    dataDir: resolve(deps.cwd, f.dataDir ?? DEFAULT_NODE_DATA_DIR),
    labels: f.labels === undefined ? {} : parseLabels('--labels', f.labels),
    labelCommands,
    ...(reload && reload.length ? { reload } : {}),
    sshdPidFile: resolve(deps.cwd, f.sshdPidFile ?? DEFAULT_SSHD_PID_FILE),
    insecure: f.insecure === true,
    ...(ca ? { ca } : {}),
  };
}

/** Largest --ca-file read (Debian's whole ca-certificates.crt is about 220 KB). */
export const MAX_CA_FILE_BYTES = 1024 * 1024;

/**
 * Reads --ca-file: one or more PEM certificates (a regular file of at most
 * MAX_CA_FILE_BYTES, opened non-blocking and read through one fd so a FIFO,
 * a device or a growing file is never waited for or read without end; PEM blocks found in one linear pass).
 * @throws UsageError naming the file and what it must hold
 */
export function readCaFile(file: string): { file: string; pem: string } {
  const refuse = (why: string) =>
    new UsageError('USAGE_NODE_FLAG', `--ca-file=${file}: ${why}`, {
      hint: "give a PEM file with the CA certificate that signed the proxy's HTTPS certificate (for a self-signed proxy, its certificate itself)",
    });
  let pem: string;
  let fd: number | undefined;
  try {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer; fstat then refuses it.
    fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const st = fstatSync(fd);
    if (st.isDirectory()) throw refuse('is a directory, not a file');
    if (!st.isFile()) throw refuse('is not a regular file');
    const buf = Buffer.alloc(MAX_CA_FILE_BYTES + 1);
    let got = 0;
    for (let n = 1; n > 0 && got < buf.length; got += n) n = readSync(fd, buf, got, buf.length - got, null);
    if (got > MAX_CA_FILE_BYTES) throw refuse('is larger than 1 MiB (a CA bundle is some 200 KB)');
    pem = buf.subarray(0, got).toString('utf8');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError('USAGE_NODE_FLAG', `--ca-file=${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { hint: "give the path of a PEM file with the CA certificate that signed the proxy's HTTPS certificate" });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  // A private key has no business in the file the agent reads for trust (e.g. a cert+key bundle made for a server).
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(pem)) throw refuse('holds a private key: a CA file holds certificates only (keep the key where it is used)');
  const blocks = pemCertificates(pem);
  const bad = blocks.findIndex((b) => {
    try {
      new X509Certificate(b);
      return false;
    } catch {
      return true;
    }
  });
  if (blocks.length === 0 || bad >= 0) {
    throw refuse(blocks.length === 0 ? 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)' : `certificate ${bad + 1} in it is not a valid X.509 certificate`);
  }
  return { file, pem };
}

/** The `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----` blocks of `text`, in one pass (a BEGIN with no END ends the scan). */
function pemCertificates(text: string): string[] {
  const BEGIN = '-----BEGIN CERTIFICATE-----';
  const END = '-----END CERTIFICATE-----';
  const out: string[] = [];
  for (let at = text.indexOf(BEGIN); at >= 0; ) {
    const end = text.indexOf(END, at + BEGIN.length);
    if (end < 0) break;
    out.push(text.slice(at, end + END.length));
    at = text.indexOf(BEGIN, end + END.length);
  }
  return out;
}

/** Runs the agent until SIGINT/SIGTERM. */
export async function run(given: NodeStartFlags, deps: Deps): Promise<void> {
  const fromFile = given.config !== undefined ? readNodeConfig(resolve(deps.cwd, given.config)) : {};
  const f: NodeStartFlags = { ...fromFile, ...Object.fromEntries(Object.entries(given).filter(([, val]) => val !== undefined && !(Array.isArray(val) && val.length === 0))) };
  const opts = nodeStartOptions(f, deps);
  const stop = new AbortController();
  void deps.waitForShutdown().then(() => stop.abort());
  await runNodeAgent(opts, {
    log: (line) => deps.io.stderr.write(`${deps.clock().toISOString()} ${line}\n`),
    out: (text) => deps.io.stdout.write(text),
    clock: deps.clock,
    signal: stop.signal,
    env: deps.env,
  });
}
