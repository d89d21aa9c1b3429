/**
 * Things for people on stderr: a spinner while waiting (only on a terminal),
 * opening the browser. Heavy modules load only when used.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, readFileSync, realpathSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { shellWord } from '../client/proxy-addr.js';
import type { Deps } from './deps.js';

/**
 * How a hint tells people to run tsh so the command works as printed: `tsh`
 * when the `tsh` found on PATH is this very program, else this program's
 * absolute path (the script or the single executable; e.g. the quickstart's
 * bin/tsh, which is not on PATH).
 */
export function tshProgram(deps: Pick<Deps, 'selfCommand' | 'env' | 'platform'>): string {
  const self = deps.selfCommand[deps.selfCommand.length - 1];
  if (!self) return 'tsh';
  const found = onPath(deps.platform === 'win32' ? 'tsh.exe' : 'tsh', deps.env);
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  if (found && real(found) === real(self)) return 'tsh';
  return shellWord(self);
}

/** Shows `text` with a spinner on a terminal, or as one plain line otherwise; returns the stop function. */
export function waitingIndicator(text: string, deps: Deps): () => void {
  if (!deps.io.stderrIsTTY || deps.debug || deps.env['CI']) {
    deps.io.stderr.write(`${text}\n`);
    return () => {};
  }
  let stopped = false;
  let spinner: { stop(): void } | undefined;
  void import('ora').then(({ default: ora }) => {
    if (stopped) return;
    spinner = ora({ text, stream: deps.io.stderr as NodeJS.WriteStream, discardStdin: false }).start();
  });
  return () => {
    stopped = true;
    spinner?.stop();
  };
}

/** What opening a browser depends on, so tests can pin the platform, PATH and what runs. */
export interface BrowserSystem {
  platform: NodeJS.Platform;
  env: Record<string, string | undefined>;
  /** The kernel's release string (/proc/sys/kernel/osrelease), or undefined where there is none. */
  osRelease: () => string | undefined;
  /** Starts a program without waiting for it; rejects when it cannot be started. */
  spawn: (cmd: string, args: string[]) => Promise<void>;
  /** The `open` package: macOS `open`, Linux xdg-open, Windows Start-Process. */
  openDefault: (url: string) => Promise<void>;
}

/** The real system, with the environment and platform a command got in its deps. */
export function browserSystem(from: { env: Record<string, string | undefined>; platform: NodeJS.Platform } = { env: process.env, platform: process.platform }): BrowserSystem {
  return {
    platform: from.platform,
    env: from.env,
    osRelease: () => {
      try {
        return readFileSync('/proc/sys/kernel/osrelease', 'utf8');
      } catch {
        return undefined;
      }
    },
    spawn: (cmd, args) =>
      new Promise((resolve, reject) => {
        const child = spawn(cmd, args, { detached: true, stdio: 'ignore', env: from.env as NodeJS.ProcessEnv });
        child.once('error', reject);
        child.once('spawn', () => {
          child.unref();
          resolve();
        });
      }),
    openDefault: async (url) => {
      const { default: open } = await import('open');
      const child = await open(url, { wait: false });
      child.on('error', () => {});
    },
  };
}

/**
 * Linux under WSL (1 or 2): WSL sets WSL_DISTRO_NAME in every shell, and its
 * kernels call themselves "…microsoft…" (WSL 2: "-microsoft-standard-WSL2",
 * WSL 1: "-Microsoft").
 */
export function isWsl(sys: Pick<BrowserSystem, 'platform' | 'env' | 'osRelease'>): boolean {
  if (sys.platform !== 'linux') return false;
  if (sys.env['WSL_DISTRO_NAME']) return true;
  return /microsoft|wsl/i.test(sys.osRelease() ?? '');
}

/**
 * Whether tsh can show the user a browser here, the one rule `tsh login`
 * (what the ssh_config block it writes says: `--relogin=auto|never`) and
 * `tsh proxy ssh --relogin=auto` decide by: BROWSER set (xdg-open and tsh's
 * users both honour it) or Windows or WSL (the Windows browser): yes;
 * macOS: yes unless logged in over SSH (SSH_CONNECTION: `open` would show
 * the page on the Mac's own screen, not the user's); other Unix: only with a
 * display (DISPLAY or WAYLAND_DISPLAY; X forwarding over SSH sets DISPLAY).
 */
export function canOpenBrowser(sys: Pick<BrowserSystem, 'platform' | 'env' | 'osRelease'>): boolean {
  const env = sys.env;
  if (env['BROWSER']) return true;
  if (sys.platform === 'win32' || isWsl(sys)) return true;
  if (sys.platform === 'darwin') return !env['SSH_CONNECTION'];
  return Boolean(env['DISPLAY'] || env['WAYLAND_DISPLAY']);
}

/** The first executable called `name` on PATH. */
export function onPath(name: string, env: Record<string, string | undefined>): string | undefined {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/**
 * A URL as one word for cmd.exe: every character cmd treats specially
 * outside quotes (& | < > ( ) ^) escaped with ^. Not quoted, because WSL's
 * interop passes an argument to a Windows program unquoted unless it holds a
 * space, and `new URL` has already percent-encoded spaces and quotes.
 */
export function cmdEscapeUrl(url: string): string {
  return url.replace(/[&|<>()^]/g, '^$&');
}

/**
 * How to open `url`: on WSL the Windows browser, through `wslview` (wslu)
 * when it is on PATH, else `cmd.exe /d /c start "" URL` (the empty title keeps
 * start from taking the URL as the window title; /d skips cmd's AutoRun);
 * everywhere else the `open` package. Only http and https URLs are opened.
 */
export function browserCommand(url: string, sys: Pick<BrowserSystem, 'platform' | 'env' | 'osRelease'>): { cmd: string; args: string[] } | 'default' {
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`refusing to open ${parsed.protocol} URLs in a browser`);
  const href = parsed.href;
  if (!isWsl(sys)) return 'default';
  const wslview = onPath('wslview', sys.env);
  if (wslview) return { cmd: wslview, args: [href] };
  // The empty argument reaches cmd as the "" title (microsoft/WSL#4981 shows this form working from WSL).
  return { cmd: 'cmd.exe', args: ['/d', '/c', 'start', '', cmdEscapeUrl(href)] };
}

/** Opens a URL in the user's default browser (on WSL: the Windows one). */
export async function openBrowser(url: string, sys: BrowserSystem = browserSystem()): Promise<void> {
  const how = browserCommand(url, sys);
  if (how === 'default') return sys.openDefault(new URL(url).href);
  await sys.spawn(how.cmd, how.args);
}
