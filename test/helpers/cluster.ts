/**
 * The real `jumpgate start` (dist/) on loopback for end-to-end tests: writes
 * the config into `dir`, starts the server, waits for its `ready web=… ssh=…`
 * line, and gives the ports, the server's log and its audit events.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/config/index.js';
import { builtProgram } from './tools.js';

export interface Cluster {
  dir: string;
  configFile: string;
  dataDir: string;
  webPort: number;
  sshPort: number;
  /** Everything the server wrote to stderr so far. */
  log(): string;
  /** The audit log's events, in order. */
  audit(): Array<Record<string, unknown>>;
  /** The server's process id (fault tests kill it). */
  pid: number;
  /** Resolves when the server process has exited, with its signal or code. */
  exited: Promise<string>;
  stop(): Promise<void>;
}

/** Starts `jumpgate start --config <dir>/jumpgate.yaml` with `yaml` as the config. */
export async function startCluster(dir: string, yaml: string, opts: { env?: NodeJS.ProcessEnv; args?: string[] } = {}): Promise<Cluster> {
  const configFile = join(dir, 'jumpgate.yaml');
  writeFileSync(configFile, yaml);
  const dataDir = loadServerConfig(configFile).dataDir;
  const env = { ...(opts.env ?? process.env) };
  if (!opts.env) for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy']) delete env[k];
  const child = spawn(process.execPath, [builtProgram('jumpgate'), 'start', '--config', configFile, ...(opts.args ?? [])], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<string>((r) => child.once('exit', (code, signal) => r(signal ?? String(code))));
  const deadline = Date.now() + 20_000;
  let m: RegExpExecArray | null;
  while (!(m = /^ready web=(\d+) ssh=(\d+)$/m.exec(out))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`jumpgate start did not become ready (exit ${child.exitCode}):\n${out}\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    dir,
    configFile,
    dataDir,
    webPort: Number(m[1]),
    sshPort: Number(m[2]),
    log: () => err,
    audit: () => readAudit(join(dataDir, 'audit.log')),
    pid: child.pid!,
    exited,
    stop: () => stopChild(child),
  };
}

function readAudit(file: string): Array<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
