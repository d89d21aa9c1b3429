/**
 * Logging in again from inside plain ssh: `tsh proxy ssh --relogin=auto`
 * (the ProxyCommand) and `tsh proxy ssh --check-login` (the ssh_config
 * block's `Match exec`, which runs before ssh reads the identity files).
 *
 * When the credentials are refused for a reason a new login fixes (no
 * profile, no certificate, an expired one, the key gone from the keystore
 * or not matching the certificate, a damaged profile), exactly ONE process
 * per TSH_HOME runs the browser login: it holds `.relogin.lock` (a
 * heartbeat keeps it fresh; a lock whose process is gone, kill -9, is taken
 * over at once). The others wait on the lock, then load the credentials the
 * winner stored. If that login failed, they do not start another: they fail
 * with the `tsh login ...` line (the outcome is kept in `relogin-result`).
 *
 * Kept light (the `Match exec` check runs before every ssh to a node): no
 * undici, no ssh2; the login itself is imported only when one runs.
 */
import { readFileSync } from 'node:fs';
import { AuthError, UserError } from '../../../errors.js';
import { credentialsFor, type Credentials } from '../../../client/credentials.js';
import { TshPaths } from '../../../client/paths.js';
import { ProfileStore } from '../../../client/profile.js';
import { profileNameFor, proxyAddrFor } from '../../../client/proxy-addr.js';
import type { Deps } from '../../deps.js';
import { browserSystem, canOpenBrowser } from '../../ui.js';
import { credentialOptions } from './client-context.js';
import { writeFileAtomic } from '../../../util/atomic-write.js';
import { withLockFileAsync } from '../../../util/lockfile.js';
import { printable } from '../../../util/printable.js';

/** `--relogin`: `auto` logs in through the browser when it can, `never` prints the `tsh login` line (exit 4). */
export type ReloginMode = 'auto' | 'never';

/**
 * The refusals of loadCredentials (client/credentials.ts) a new login fixes.
 * Not in the list: CERT_NOT_YET_VALID (this machine's clock is behind: a new
 * certificate would be refused the same way), LOGIN_NOT_ALLOWED (roles),
 * PROFILE_UNREADABLE (file permissions), a keychain that does not answer.
 */
export const FIXED_BY_LOGIN: ReadonlySet<string> = new Set(['NOT_LOGGED_IN', 'CERT_MISSING', 'CERT_EXPIRED', 'KEY_MISSING', 'CERT_KEY_MISMATCH', 'PROFILE_CORRUPT']);

/**
 * How long a process waits for another one's login: the client's browser
 * login wait (client/login.ts LOGIN_WAIT_MS, 3 minutes) plus a minute for
 * the proxy's answer and the keystore/agent writes.
 */
export const RELOGIN_LOCK_WAIT_MS = 4 * 60_000;

/** The lock's heartbeat, and after how long without one it counts as left behind. */
export const RELOGIN_HEARTBEAT_MS = 2_000;
export const RELOGIN_STALE_MS = 15_000;

/**
 * A failed login this recent is not retried: the ProxyCommand started right
 * after the `Match exec` check whose login failed (the same ssh) says so
 * instead of opening the browser a second time.
 */
export const RECENT_FAILURE_MS = 10_000;

/** Whether a refusal is one a new login fixes (FIXED_BY_LOGIN). */
export function fixedByLogin(err: unknown): err is UserError {
  return err instanceof UserError && FIXED_BY_LOGIN.has(err.code);
}

/** What the last automatic login ended with (`relogin-result`). */
export interface ReloginResult {
  outcome: 'ok' | 'failed';
  /** ms since the epoch. */
  at: number;
  /** Why it failed: one escaped line. */
  reason?: string;
}

/** The recorded outcome, or undefined when there is none or it is not one (the file is outside input: a wrong shape counts as none). */
export function readReloginResult(paths: Pick<TshPaths, 'reloginResult'>): ReloginResult | undefined {
  try {
    const j = JSON.parse(readFileSync(paths.reloginResult(), 'utf8')) as unknown;
    if (typeof j !== 'object' || j === null) return undefined;
    const { outcome, at, reason } = j as Record<string, unknown>;
    if ((outcome !== 'ok' && outcome !== 'failed') || typeof at !== 'number' || !Number.isFinite(at)) return undefined;
    return { outcome, at, ...(typeof reason === 'string' ? { reason: printable(reason, 200) } : {}) };
  } catch {
    return undefined;
  }
}

export interface ReloginOptions {
  mode: ReloginMode;
  /** Whether a browser can be shown to the user here (cli/ui.ts canOpenBrowser). */
  canOpenBrowser: boolean;
  paths: Pick<TshPaths, 'reloginLock' | 'reloginResult'>;
  /** Loads the credentials (credentialsFor); throws loadCredentials' AuthErrors. */
  load: () => Promise<Credentials>;
  /** Runs the browser login (`tsh login` with the profile's remembered settings); writes only to stderr. */
  login: () => Promise<void>;
  /** ms since the epoch (deps.clock). */
  now: () => number;
  /** One line for the user, on stderr. */
  say: (line: string) => void;
  /** Creates TSH_HOME (0700) before the lock goes there: a first login has none yet. */
  ensureHome?: () => void;
}

/**
 * The credentials, logging in again first when `mode` is `auto`, a browser
 * can be opened and the refusal is one a login fixes; one login per
 * TSH_HOME at a time (see the module comment).
 * @throws the refusal itself (AuthError, exit 4, hint = the `tsh login` line)
 *   with `never`, without a browser, or when it is not fixed by a login;
 *   AuthError RELOGIN_FAILED (same hint) when the login, ours or the one
 *   waited for, failed or was cancelled, or the wait ran out.
 */
export async function credentialsWithRelogin(o: ReloginOptions): Promise<Credentials> {
  let refused: UserError;
  try {
    return await o.load();
  } catch (err) {
    if (o.mode === 'never' || !o.canOpenBrowser || !fixedByLogin(err)) throw err;
    refused = err;
  }
  const wanted = o.now();
  o.ensureHome?.();
  const failed = (why: string, cause?: unknown) =>
    new AuthError('RELOGIN_FAILED', `${refused.message}, and logging in again failed (${why})`, { ...(cause !== undefined ? { cause } : {}), ...(refused.hint ? { hint: refused.hint } : {}) });
  try {
    return await withLockFileAsync(
      o.paths.reloginLock(),
      { what: 'the automatic login', waitMs: RELOGIN_LOCK_WAIT_MS, staleMs: RELOGIN_STALE_MS, heartbeatMs: RELOGIN_HEARTBEAT_MS, sameMachine: true },
      async () => {
        // Another ssh's login may have finished while this one waited.
        try {
          return await o.load();
        } catch (err) {
          if (!fixedByLogin(err)) throw err;
          refused = err;
        }
        const last = readReloginResult(o.paths);
        if (last?.outcome === 'failed' && last.at >= wanted - RECENT_FAILURE_MS) throw failed(last.reason ?? 'no reason recorded');
        o.say(`tsh: ${refused.message}; logging in again through the browser (--relogin=auto)`);
        try {
          await o.login();
        } catch (err) {
          const reason = printable(err instanceof Error ? err.message : String(err), 200);
          record(o.paths, { outcome: 'failed', at: o.now(), reason });
          throw failed(reason, err);
        }
        record(o.paths, { outcome: 'ok', at: o.now() });
        return o.load();
      },
    );
  } catch (err) {
    if (err instanceof UserError && err.code === 'LOCKED') throw failed('another ssh is still logging in; gave up waiting', err);
    throw err;
  }
}

function record(paths: Pick<TshPaths, 'reloginResult'>, r: ReloginResult): void {
  try {
    writeFileAtomic(paths.reloginResult(), JSON.stringify(r) + '\n', 0o600);
  } catch {
    // Only an optimisation for the waiters: they then try a login themselves.
  }
}

export interface CheckLoginOptions {
  proxy?: string;
  relogin: ReloginMode;
}

/**
 * `tsh proxy ssh --check-login`: what the ssh_config block's `Match exec`
 * runs before ssh reads the identity files, so a relogin there leaves ssh
 * reading the NEW certificate (a relogin in the ProxyCommand alone comes too
 * late: ssh has read the files by then). Logs in again like the
 * ProxyCommand would (`--relogin=auto`), then always returns (exit 0): the
 * `Match exec` section is empty, and the ProxyCommand that runs next prints
 * the one line about whatever is still wrong. Never touches stdout.
 */
export async function runCheckLogin(opts: CheckLoginOptions, deps: Deps): Promise<void> {
  try {
    await proxyCredentials(opts, new TshPaths(deps), deps);
  } catch {
    // the ProxyCommand says it, once
  }
}

/** The credentials for `tsh proxy ssh` (`--proxy`, TSH_PROXY or the current profile), logging in again first when --relogin=auto allows it (credentialsWithRelogin). */
export function proxyCredentials(opts: { proxy?: string; relogin?: ReloginMode }, paths: TshPaths, deps: Deps): Promise<Credentials> {
  const profile = profileNameFor(opts.proxy, deps.env);
  const load = () => credentialsFor(paths, profile, deps.clock(), { ...credentialOptions(deps), proxyAddr: proxyAddrFor(opts.proxy, deps.env) });
  return credentialsWithRelogin({
    mode: opts.relogin ?? 'never',
    canOpenBrowser: canOpenBrowser(browserSystem(deps)),
    paths,
    load,
    login: () => browserRelogin(opts.proxy, profile, paths, deps),
    now: () => deps.clock().getTime(),
    say: (line) => deps.io.stderr.write(`${line}\n`),
    ensureHome: () => new ProfileStore(paths).ensureDirs(),
  });
}

/**
 * The same browser login `tsh login` runs, with the profile's remembered
 * settings (proxy, --insecure, --user, keystore, agent): stdout is ssh's
 * transport, so everything the login says goes to stderr, which ssh shows.
 * The ssh_config block is left as it is (it is what runs us; `tsh login`
 * rewrites it).
 */
async function browserRelogin(proxyFlag: string | undefined, profileName: string | undefined, paths: TshPaths, deps: Deps): Promise<void> {
  const [login, ui] = await Promise.all([import('./login.js'), import('../../ui.js')]);
  let remembered;
  try {
    remembered = new ProfileStore(paths).load(profileName);
  } catch {
    remembered = undefined; // damaged: the login replaces it
  }
  const proxy = proxyFlag ?? remembered?.webProxyAddr;
  const quiet: Deps = { ...deps, io: { ...deps.io, stdout: deps.io.stderr, stdoutIsTTY: deps.io.stderrIsTTY } };
  await login.run(
    { ...(proxy !== undefined ? { proxy } : {}), browser: 'default', keystore: remembered?.keystore ?? 'auto', sshConfig: false },
    quiet,
    { openBrowser: (url) => ui.openBrowser(url, ui.browserSystem(quiet)) },
  );
}
