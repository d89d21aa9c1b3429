/**
 * Wine for the end-to-end test of the real Windows executables
 * (test/wine/): finds wine64 (or fails with the install command), keeps one
 * Wine prefix per Wine version under dist/.wine-prefix/ (made once: about a
 * minute; reused after that), runs programs in it with stdout and stderr
 * going to FILES (Node's stdio set-up fails with EBADF on a Linux pipe under
 * Wine: FACTS.md), and hands an exact command line to CreateProcessW.
 *
 * The environment of every Windows program is built here, from nothing but
 * what Wine needs: SSH_AUTH_SOCK, HTTPS_PROXY, TSH_HOME and the like from the
 * test runner's environment never leak into the Windows programs.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { REPO, type RunResult } from './tools.js';

/** How to get Wine on Debian/Ubuntu (Debian 12 ships Wine 8). */
export const WINE_INSTALL = 'apt-get install -y wine64';

const WINE64_CANDIDATES = ['/usr/lib/wine/wine64', '/usr/bin/wine64', '/usr/local/bin/wine64', '/opt/wine-stable/bin/wine64'];

/** The wine64 loader and wineserver, or an Error that says how to install them (tests fail, never skip). */
export function requireWine(where: { candidates?: string[]; path?: string } = {}): { wine64: string; wineserver: string; version: string } {
  const fromPath = (where.path ?? process.env['PATH'] ?? '').split(':').filter(Boolean).map((d) => join(d, 'wine64'));
  const wine64 = [...(where.candidates ?? WINE64_CANDIDATES), ...fromPath].find((p) => existsSync(p));
  if (!wine64) throw new Error(`wine64 is not installed; install it with: ${WINE_INSTALL}`);
  const wineserver = [join(wine64, '..', 'wineserver'), '/usr/lib/wine/wineserver', '/usr/bin/wineserver'].find((p) => existsSync(p));
  if (!wineserver) throw new Error(`wine64 is at ${wine64} but wineserver is missing; reinstall with: ${WINE_INSTALL}`);
  const v = spawnSync(wine64, ['--version'], { encoding: 'utf8', env: baseEnv('/nonexistent') });
  const version = /wine-[0-9][\w.~+-]*/.exec(v.stdout ?? '')?.[0];
  if (!version) throw new Error(`${wine64} --version said ${JSON.stringify(v.stdout + v.stderr)}; reinstall with: ${WINE_INSTALL}`);
  return { wine64, wineserver, version };
}

/** All a Windows program gets from the Unix side. WINEDLLOVERRIDES skips the Mono and Gecko installers' dialogs. */
function baseEnv(prefix: string): NodeJS.ProcessEnv {
  const user = userInfo().username;
  return {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env['HOME'] ?? '/root',
    USER: user,
    LOGNAME: user,
    LANG: 'C.UTF-8',
    WINEPREFIX: prefix,
    WINEDEBUG: '-all',
    WINEDLLOVERRIDES: 'mscoree,mshtml=',
  };
}

export interface WineProcess {
  /** What the program wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the Windows exit code once the program ends. */
  exited: Promise<number | null>;
  kill(): void;
}

export interface Wine {
  prefix: string;
  version: string;
  /** The Windows user's profile directory (%USERPROFILE%) as a Unix path: <prefix>/drive_c/users/<user>. */
  profileDir: string;
  /** True when this call made the prefix (false: reused from the cache). */
  prefixCreated: boolean;
  /** How long making (or checking) the prefix took, in seconds. */
  prefixSeconds: number;
  /** `C:/Program Files/x.exe` → the Unix path inside the prefix's drive_c. */
  unixPath(windowsPath: string): string;
  /** A Unix path as Windows programs see it through Wine's Z: drive. */
  windowsPath(unixPath: string): string;
  /** Starts a Windows program; stdin is empty, stdout and stderr go to files. */
  start(program: string, args: string[], opts?: { env?: Record<string, string> }): WineProcess;
  /** Runs a Windows program to its end (killed after timeoutMs, default 60 s). */
  run(program: string, args: string[], opts?: { env?: Record<string, string>; timeoutMs?: number }): Promise<RunResult>;
  /**
   * Hands `commandLine` unchanged to CreateProcessW(NULL, commandLine, ...)
   * (WScript.Shell's Exec does exactly that; Wine's cscript runs it) and says
   * whether Windows accepted it. The started program runs on by itself.
   */
  createProcess(commandLine: string): Promise<{ ok: true } | { ok: false; error: string }>;
  /** Stops the prefix's wineserver and every Windows program still running in it. */
  stop(): Promise<void>;
}

/**
 * Opens (or first makes) the cached prefix for this Wine version under
 * `cacheRoot` (default dist/.wine-prefix): `wineboot -i`, then Windows 10
 * (`winecfg /v win10`: Node 22 refuses older Windows), then a marker file;
 * a prefix without the marker (an interrupted first run) is made again.
 * Keeps a wineserver running (`-p`) so each program starts in about 3 s
 * instead of 7. `scratch` holds the stdout/stderr files.
 */
export async function openWine(opts: { scratch: string; cacheRoot?: string }): Promise<Wine> {
  const { wine64, wineserver, version } = requireWine();
  const prefix = join(opts.cacheRoot ?? join(REPO, 'dist', '.wine-prefix'), version.replace(/[^\w.-]/g, '_'));
  const marker = join(prefix, '.jumpgate-ready');
  const env = baseEnv(prefix);
  const t0 = Date.now();
  let prefixCreated = false;
  if (!existsSync(marker)) {
    rmSync(prefix, { recursive: true, force: true });
    mkdirSync(join(prefix, '..'), { recursive: true });
    mkdirSync(opts.scratch, { recursive: true });
    for (const args of [['wineboot', '-i'], ['winecfg', '/v', 'win10']]) {
      // Output to a file: the wineserver Wine starts inherits stdio, and a pipe would stay open as long as it lives.
      const log = join(opts.scratch, `prefix-${args[0]}.log`);
      const fd = openSync(log, 'w');
      const r = spawnSync(wine64, args, { env, stdio: ['ignore', fd, fd], timeout: 600_000 });
      closeSync(fd);
      if (r.status !== 0) throw new Error(`making the Wine prefix ${prefix}: wine64 ${args.join(' ')} exited ${r.status ?? r.signal}:\n${readFileSync(log, 'utf8')}`);
      spawnSync(wineserver, ['-w'], { env, stdio: 'ignore', timeout: 600_000 });
    }
    const reg = readFileSync(join(prefix, 'system.reg'), 'latin1');
    if (!/"ProductName"="Microsoft Windows 10"/.test(reg)) throw new Error(`the Wine prefix ${prefix} does not say Windows 10 after winecfg /v win10`);
    writeFileSync(marker, JSON.stringify({ version, seconds: (Date.now() - t0) / 1000 }) + '\n');
    prefixCreated = true;
  }
  const prefixSeconds = (Date.now() - t0) / 1000;
  // It forks into the background: with stdio ignored, nothing here waits for it.
  spawnSync(wineserver, ['-p'], { env, stdio: 'ignore', timeout: 60_000 });
  const profileDir = join(prefix, 'drive_c', 'users', userInfo().username);
  mkdirSync(opts.scratch, { recursive: true });
  let n = 0;

  const start: Wine['start'] = (program, args, o = {}) => {
    const id = n++;
    const outFile = join(opts.scratch, `wine-${id}.out`);
    const errFile = join(opts.scratch, `wine-${id}.err`);
    const out = openSync(outFile, 'w');
    const err = openSync(errFile, 'w');
    const child = spawn(wine64, [program, ...args], { env: { ...env, ...o.env }, stdio: ['ignore', out, err] });
    closeSync(out);
    closeSync(err);
    const exited = new Promise<number | null>((resolve) => {
      child.on('error', () => resolve(null));
      child.on('exit', (code) => resolve(code));
    });
    return {
      stdout: () => readFileSync(outFile, 'utf8'),
      stderr: () => readFileSync(errFile, 'utf8'),
      exited,
      kill: () => child.kill('SIGKILL'),
    };
  };

  return {
    prefix,
    version,
    profileDir,
    prefixCreated,
    prefixSeconds,
    unixPath: (p) => {
      const m = /^([cC]):[\\/](.*)$/.exec(p);
      if (!m) throw new Error(`${p} is not a path on drive C:`);
      return join(prefix, 'drive_c', ...m[2]!.split(/[\\/]/));
    },
    windowsPath: (p) => `Z:${p.replace(/\//g, '\\')}`,
    start,
    run: async (program, args, o = {}) => {
      const p = start(program, args, o.env ? { env: o.env } : {});
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([p.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), o.timeoutMs ?? 60_000)))]);
      clearTimeout(timer);
      if (code === 'timeout') {
        p.kill();
        throw new Error(`wine ${program} ${args.join(' ')} did not finish within ${o.timeoutMs ?? 60_000} ms:\n${p.stdout()}\n${p.stderr()}`);
      }
      return { code, signal: null, stdout: p.stdout(), stderr: p.stderr() };
    },
    createProcess: async (commandLine) => {
      const script = join(opts.scratch, `exec-${n++}.js`);
      // JScript: Exec throws with the HRESULT of CreateProcessW's error (0x80070057 = ERROR_INVALID_PARAMETER, 87).
      writeFileSync(
        script,
        [
          'try {',
          '  var e = new ActiveXObject("WScript.Shell").Exec(WScript.Arguments(0));',
          '  WScript.Echo("started " + e.ProcessID);',
          '} catch (x) {',
          '  WScript.Echo("refused 0x" + (x.number >>> 0).toString(16) + " " + x.message);',
          '}',
          '',
        ].join('\r\n'),
      );
      const p = start('cscript', ['//nologo', `Z:${script.replace(/\//g, '\\')}`, commandLine]);
      await p.exited;
      const r = p.stdout();
      if (/^started \d+/m.test(r)) return { ok: true };
      return { ok: false, error: r.trim() || 'cscript printed nothing' };
    },
    stop: async () => {
      spawnSync(wineserver, ['-k'], { env, stdio: 'ignore', timeout: 30_000 });
    },
  };
}

/**
 * ssh's expansion of a ProxyCommand's %-tokens (ssh_config(5) TOKENS: `%%`,
 * `%h`, `%p`, `%r`, `%n`), then the command line Windows' OpenSSH hands to
 * CreateProcessW for it: PowerShell/openssh-portable sshconnect.c
 * `ssh_proxy_connect` passes the whole string as the program with no
 * arguments, and win32compat `build_commandline_string` leaves a string that
 * starts with `"` as it is, else quotes everything up to the first space after
 * `.exe` (or the whole string, retrying without the quotes).
 */
export function win32OpenSshProxyCommandLine(proxyCommand: string, t: { host: string; port: number; user: string }): string {
  const tokens: Record<string, string> = { '%': '%', h: t.host, n: t.host, p: String(t.port), r: t.user };
  const cmd = proxyCommand.replace(/%(.)/g, (m, c: string) => tokens[c] ?? m);
  if (cmd.startsWith('"')) return cmd;
  const exe = cmd.indexOf('.exe');
  const space = exe >= 0 ? cmd.indexOf(' ', exe) : -1;
  return space >= 0 ? `"${cmd.slice(0, space)}"${cmd.slice(space)}` : `"${cmd}"`;
}
