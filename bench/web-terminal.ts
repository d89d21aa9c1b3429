/**
 * Keystroke-to-echo latency through the web terminal against plain ssh
 * through the proxy, in one run on this machine (target: web <= 1.5x ssh).
 *
 * - web: signed in through the dev IdP in real Chromium; then a WebSocket
 *   client (ws) with that session's cookie and Origin speaks the page's own
 *   protocol to /web/api/terminal (start message with the CSRF token, binary
 *   keystrokes): one byte sent, the time until it comes back measured in Node.
 * - ssh: `ssh -tt` with the generated config (ProxyCommand tsh proxy ssh →
 *   jumpgate → sshd), one byte written to its stdin, the time until it comes
 *   back on its stdout measured in Node.
 *
 * Both run `stty raw -echo; exec cat` on the node, so each byte is echoed by
 * cat through the node's PTY, immediately and exactly once; the runs alternate.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { startDevIdp } from '../scripts/dev-idp.js';
import { launchBrowser } from '../test/helpers/browser.js';
import { startProxyCluster } from '../test/helpers/proxy-cluster.js';
import { freePort } from '../test/helpers/sshd.js';
import { fakeLogin } from '../test/helpers/tsh-home.js';
import { requireTool, tempDir } from '../test/helpers/tools.js';
import WebSocket from 'ws';
import { request } from '../test/helpers/web-api.js';
import { median } from './login.js';

export interface WebTerminalBenchResult {
  webMs: number[];
  sshMs: number[];
}

const RAW_CAT = 'stty raw -echo; exec cat\n';

export async function benchWebTerminal(opts: { rounds?: number; perRound?: number } = {}): Promise<WebTerminalBenchResult> {
  const rounds = opts.rounds ?? 5;
  const perRound = opts.perRound ?? 40;
  const ssh = requireTool('ssh', 'apt-get install -y openssh-client');
  const tmp = tempDir('bench-web');
  const webPort = await freePort();
  const secret = 'bench-secret';
  const idp = await startDevIdp({
    clientId: 'jumpgate',
    clientSecret: secret,
    redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`],
    accounts: [{ login: 'root', claims: { preferred_username: 'root', email_verified: true } }],
  });
  const cluster = await startProxyCluster(tmp.dir, { webPort, oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: secret } });
  const browser = await launchBrowser();
  const webMs: number[] = [];
  const sshMs: number[] = [];
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(`https://localhost:${webPort}/web/login`);
    await page.fill('input[name="login"]', 'root');
    await page.fill('input[name="password"]', 'any');
    await Promise.all([page.waitForLoadState(), page.click('button[type="submit"]')]);
    const consent = page.locator('button[type="submit"]:has-text("Continue")');
    if (await consent.count()) await consent.first().click();
    await page.getByRole('heading', { name: 'Nodes' }).waitFor();
    const cookie = (await context.cookies()).find((c) => c.name === '__Host-jumpgate_session')!;
    const web = { port: cluster.webPort, cookie: `${cookie.name}=${cookie.value}` };
    const user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home'), username: 'root', roles: ['user'] });
    for (let r = 0; r < rounds; r++) {
      webMs.push(...(await webEcho(web, perRound)));
      sshMs.push(...(await sshEcho(ssh, ['-tt', '-F', user.sshConfigFile, '-o', 'BatchMode=yes', 'root@node1'], user.env, perRound)));
    }
  } finally {
    await browser.close();
    await cluster.stop();
    await idp.close();
    tmp.cleanup();
  }
  return { webMs, sshMs };
}

/** The web terminal's protocol (server/web/terminal.ts) from Node: `n` one-byte round trips from send to the echo's frame. */
async function webEcho(web: { port: number; cookie: string }, n: number): Promise<number[]> {
  const origin = `https://127.0.0.1:${web.port}`;
  const me = (await (await fetchJson(web, '/web/api/me')) as { csrf_token: string; logins: string[] });
  const ws = new WebSocket(`wss://127.0.0.1:${web.port}/web/api/terminal`, { origin, headers: { cookie: web.cookie }, rejectUnauthorized: false });
  let seen = '';
  let waiting: { want: string; resolve: () => void } | undefined;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return;
    seen += data.toString('latin1');
    if (waiting && seen.includes(waiting.want)) {
      const w = waiting;
      waiting = undefined;
      w.resolve();
    }
  });
  const until = (want: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`web terminal: ${JSON.stringify(want)} did not come back within 20 s; saw ${JSON.stringify(seen.slice(-200))}`)), 20_000);
      waiting = { want, resolve: () => (clearTimeout(timer), resolve()) };
      if (seen.includes(want)) {
        waiting = undefined;
        clearTimeout(timer);
        resolve();
      }
    });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'start', csrf: me.csrf_token, node: 'node1', login: me.logins[0], cols: 80, rows: 24 }));
  ws.send(Buffer.from(RAW_CAT));
  ws.send(Buffer.from('READY!'));
  await until('READY!');
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = String.fromCharCode(97 + (i % 26));
    seen = '';
    const t0 = process.hrtime.bigint();
    ws.send(Buffer.from(c));
    await until(c);
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ws.close();
  return out;
}

async function fetchJson(web: { port: number; cookie: string }, path: string): Promise<unknown> {
  const r = await request(web.port, { path, headers: { cookie: web.cookie } });
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as unknown;
}

/** `ssh -tt` running cat in raw mode: `n` one-byte round trips timed from its stdin to its stdout. */
async function sshEcho(ssh: string, args: string[], env: NodeJS.ProcessEnv, n: number): Promise<number[]> {
  const child = spawn(ssh, args, { env, stdio: ['pipe', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
  let seen = '';
  let waiting: { want: string; resolve: () => void } | undefined;
  child.stdout.on('data', (b: Buffer) => {
    seen += b.toString('latin1');
    if (waiting && seen.includes(waiting.want)) {
      const w = waiting;
      waiting = undefined;
      w.resolve();
    }
  });
  const until = (want: string) =>
    new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`ssh exited (${code}) before ${JSON.stringify(want)} came back`)));
      const timer = setTimeout(() => reject(new Error(`ssh: ${JSON.stringify(want)} did not come back within 20 s; saw ${JSON.stringify(seen.slice(-200))}`)), 20_000);
      waiting = { want, resolve: () => (clearTimeout(timer), resolve()) };
      if (seen.includes(want)) {
        waiting = undefined;
        resolve();
      }
    });
  try {
    child.stdin.write(RAW_CAT);
    child.stdin.write('READY!');
    await until('READY!');
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const c = String.fromCharCode(97 + (i % 26));
      seen = '';
      const t0 = process.hrtime.bigint();
      child.stdin.write(c);
      await until(c);
      out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return out;
  } finally {
    child.kill();
  }
}

/** The BENCHMARKS.md section body. */
export function formatWebTerminalBench(r: WebTerminalBenchResult): string {
  const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
  const ratio = median(r.webMs) / median(r.sshMs);
  const ms = (x: number) => `${x.toFixed(2)} ms`;
  return [
    '| path | keystrokes | median | p90 | p99 |',
    '|---|---|---|---|---|',
    `| web terminal: WebSocket (the page's protocol) → jumpgate (ws, ssh2 client, per-session certificate) → sshd | ${r.webMs.length} | ${ms(median(r.webMs))} | ${ms(p(r.webMs, 0.9))} | ${ms(p(r.webMs, 0.99))} |`,
    `| plain ssh through the proxy: ssh → ProxyCommand tsh proxy ssh → jumpgate (relay) → sshd | ${r.sshMs.length} | ${ms(median(r.sshMs))} | ${ms(p(r.sshMs, 0.9))} | ${ms(p(r.sshMs, 0.99))} |`,
    '',
    `Web / ssh median: ${ratio.toFixed(2)}x: ${ratio <= 1.5 ? 'meets' : 'MISSES'} the 1.5x target. Each keystroke is one byte echoed by \`cat\` in raw mode`,
    'through the node\'s PTY; both are timed in Node (the WebSocket client\'s send to its message; the ssh process\'s stdin to',
    'its stdout). The sign-in that made the web session ran in Chromium; the runs alternate, in rounds.',
  ].join('\n');
}
