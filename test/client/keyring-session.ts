/**
 * Runs a script inside a private D-Bus session with an unlocked
 * gnome-keyring-daemon: a real Secret Service (and, with the `ssh` component,
 * gnome-keyring's SSH agent). HOME and XDG_RUNTIME_DIR point at a fresh temp
 * directory, so the user's real keyring is never touched.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, requireTool, run, tempDir, type RunResult } from '../helpers/tools.js';

const INSTALL = 'apt-get install -y gnome-keyring libsecret-tools dbus';

export function requireKeyringTools(): void {
  requireTool('dbus-run-session', INSTALL);
  requireTool('gnome-keyring-daemon', INSTALL);
  requireTool('secret-tool', INSTALL);
}

/**
 * Runs `node --import tsx SCRIPT ARGS...` in the session; the parent's agent
 * and bus are not inherited (`env` adds variables, e.g. an agent of the test's own).
 */
export async function runInKeyringSession(
  script: string,
  opts: { components: 'secrets' | 'ssh' | 'secrets,ssh'; args?: string[]; timeoutMs?: number; env?: Record<string, string> },
): Promise<RunResult> {
  requireKeyringTools();
  const tmp = tempDir('keyring');
  try {
    const home = join(tmp.dir, 'home');
    const runtime = join(tmp.dir, 'run');
    mkdirSync(home, { mode: 0o700 });
    mkdirSync(runtime, { mode: 0o700 });
    const quoted = [process.execPath, '--import', 'tsx', script, ...(opts.args ?? [])].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // gnome-keyring-daemon prints SSH_AUTH_SOCK=... (with the ssh component) for eval; a non-empty password unlocks the new login keyring.
    const inner = `eval "$(printf pw | gnome-keyring-daemon --unlock --components=${opts.components})" && export SSH_AUTH_SOCK && exec ${quoted}`;
    return await run('dbus-run-session', ['--', 'bash', '-c', inner], {
      cwd: REPO,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, XDG_RUNTIME_DIR: runtime, TSH_HOME: join(home, '.tsh'), ...opts.env },
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
  } finally {
    tmp.cleanup();
  }
}

/** The last line of stdout that parses as JSON, or a failure that shows everything the run printed. */
export function lastJsonLine<T>(r: RunResult): T {
  const line = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (r.code !== 0 || !line) throw new Error(`the keyring session failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(line) as T;
}
