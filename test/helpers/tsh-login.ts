import { spawn } from 'node:child_process';
import type { Browser } from 'playwright-core';
import { loginInBrowser, type LoginInBrowserOptions } from './browser.js';
import { builtProgram } from './tools.js';

export interface TshLoginRun {
  code: number | null;
  stderr: string;
  /** The text of the last page the browser showed. */
  page: string;
}

export interface TshLoginOptions {
  /** --proxy value, e.g. localhost:3080. */
  proxy: string;
  /** The account to type into the IdP's login page. */
  login: string;
  browser: Browser;
  env: NodeJS.ProcessEnv;
  /** Extra tsh login flags (--keystore=file, ...). --insecure and --browser=none are always given. */
  args?: string[];
  /** The tsh program to run: default the built bin/tsh through this Node. */
  command?: string[];
  browserOptions?: Omit<LoginInBrowserOptions, 'url' | 'login'>;
  /** Runs after tsh printed its URL, before the browser opens it. */
  beforeBrowser?: () => Promise<void>;
  /** Stops tsh once the browser is done (for logins that cannot complete). */
  killAfterPage?: boolean;
}

/**
 * `tsh login --browser=none`, with the person's part done by a real browser:
 * waits for the loopback URL on stderr, signs in on the IdP's page, and
 * returns tsh's exit code, stderr and the final page.
 */
export async function tshLoginWithBrowser(o: TshLoginOptions): Promise<TshLoginRun> {
  const [cmd, ...pre] = o.command ?? [process.execPath, builtProgram('tsh')];
  const child = spawn(cmd!, [...pre, 'login', `--proxy=${o.proxy}`, '--insecure', '--browser=none', ...(o.args ?? [])], {
    env: o.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  child.stdout.resume();
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  let m: RegExpMatchArray | null;
  while (!(m = /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})$/m.exec(stderr))) {
    if (child.exitCode !== null) return { code: child.exitCode, stderr, page: '' };
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`tsh login printed no URL within 20 s:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await o.beforeBrowser?.();
  const page = await loginInBrowser(o.browser, { url: m[1]!, login: o.login, ...o.browserOptions });
  if (o.killAfterPage) child.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
  if (code === null && child.exitCode === null) child.kill('SIGKILL');
  return { code, stderr, page };
}
