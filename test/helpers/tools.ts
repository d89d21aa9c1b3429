import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { connect as netConnect } from 'node:net';

const SEARCH_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * Finds a real program the tests need, or throws a message that says which
 * package installs it. Tests never skip for a missing tool: they fail.
 */
export function requireTool(name: string, install: string): string {
  for (const dir of [...(process.env['PATH'] ?? '').split(':'), ...SEARCH_PATH]) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  throw new Error(`${name} is not installed; install it with: ${install}`);
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion with a deadline; never throws on a non-zero exit. */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    // A program that exits without reading its input closes the pipe first: not an error.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** The repository root (tests run from anywhere). */
export const REPO = resolve(import.meta.dirname, '..', '..');

/** Path of a built program; fails with the fix when dist/ is missing. */
export function builtProgram(name: 'tsh' | 'tctl' | 'jumpgate'): string {
  if (!existsSync(join(REPO, 'dist', `${name}.cjs`))) {
    throw new Error(`dist/${name}.cjs is missing; run \`npm run build\` first (npm test does it)`);
  }
  return join(REPO, 'bin', name);
}

/** Runs one of the project's programs through its bin shim, as a user would. */
export function runProgram(name: 'tsh' | 'tctl' | 'jumpgate', args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  return run(process.execPath, [builtProgram(name), ...args], opts);
}

/** A fresh temp directory and its cleanup. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `jumpgate-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Waits until `fn` is true, polling every 50 ms, for at most `ms` (an audit
 * event is written when the proxy sees the connection close, which can come
 * after the client has exited); fails naming `what`.
 */
export async function waitFor(fn: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`${what} never happened (waited ${ms} ms)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` now. */
export function acceptsTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Sends `text` to 127.0.0.1:`port` (a forwarded port: ssh -L, tsh ssh -L)
 * and waits for it to come back from an echo server at the far end,
 * retrying while the forward is not up yet; throws after `ms` with `diag()`
 * (e.g. the forwarding client's stderr) in the message.
 */
export async function echoesThrough(port: number, text: string, diag: () => string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const answer = await new Promise<string>((done) => {
      const c = netConnect({ host: '127.0.0.1', port });
      let got = '';
      c.on('connect', () => c.write(text));
      c.on('data', (b: Buffer) => {
        got += b.toString();
        if (got.length >= text.length) c.end();
      });
      c.on('close', () => done(got));
      c.on('error', () => setTimeout(() => done(''), 100));
    });
    if (answer === text) return;
    if (Date.now() > deadline) throw new Error(`no echo of ${JSON.stringify(text)} through port ${port} within ${ms} ms:\n${diag()}`);
  }
}
