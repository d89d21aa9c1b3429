/**
 * Login benchmarks, each against OpenSSH doing the nearest job in the same run:
 *  - the machine time of one `tsh login` (tsh start to certificate in the
 *    agent, browser step automated with headless Chromium) vs `ssh-keygen -t`
 *    + `ssh-keygen -s` + `ssh-add` of a certificate (the manual CA workflow);
 *  - the server's issuance rate for concurrent logins, the whole flow over
 *    HTTP without a browser (login start, IdP login and consent, proxy
 *    callback, sealed answer opened) vs `ssh-keygen -s` signing one after another.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO_ACCOUNTS, startDevIdp } from '../scripts/dev-idp.js';
import { launchBrowser, loginInBrowser } from '../test/helpers/browser.js';
import { startCluster } from '../test/helpers/cluster.js';
import { headlessLogin, loopbackDispatcher } from '../test/helpers/headless-login.js';
import { freePort } from '../test/helpers/sshd.js';
import { startSshAgent } from '../test/helpers/ssh-agent.js';
import { builtProgram } from '../test/helpers/tools.js';
import { atConcurrency } from './ssh-session.js';

export interface LoginBench {
  loginMs: number[];
  opensshManualMs: number[];
  flowsPerSec: number;
  concurrency: number;
  flows: number;
  sshKeygenSignPerSec: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export { median };

export async function benchLogin(opts: { logins?: number; flows?: number; concurrency?: number } = {}): Promise<LoginBench> {
  const dir = mkdtempSync(join(tmpdir(), 'jumpgate-bench-login-'));
  const webPort = await freePort();
  const idp = await startDevIdp({
    clientId: 'jumpgate',
    clientSecret: 'bench-secret',
    redirectUris: [`https://127.0.0.1:${webPort}/v1/login/oidc/callback`],
    accounts: DEMO_ACCOUNTS,
  });
  const cluster = await startCluster(
    dir,
    `cluster_name: bench.test
data_dir: ./data
proxy: { web_listen_addr: "127.0.0.1:${webPort}", ssh_listen_addr: "127.0.0.1:0" }
auth:
  oidc:
    issuer: ${idp.issuer}
    client_id: jumpgate
    client_secret: bench-secret
    claims_to_roles: [{ claim: email_verified, value: true, roles: [user] }]
roles:
  user: { logins: ["{{username}}"], node_labels: { "*": "*" } }
`,
  );
  const agent = await startSshAgent(join(dir, 'agent.sock'));
  const browser = await launchBrowser();
  try {
    const loginMs: number[] = [];
    for (let i = 0; i < (opts.logins ?? 7); i++) loginMs.push(await oneTshLogin(dir, i, cluster.webPort, agent.sock, browser));
    const opensshManualMs = manualOpenSshCertificate(dir, agent.sock, opts.logins ?? 7);
    const flows = opts.flows ?? 200;
    const concurrency = opts.concurrency ?? 8;
    const { perSec: flowsPerSec } = await loginIssuanceRate(cluster.webPort, { flows, concurrency });
    return { loginMs, opensshManualMs, flowsPerSec, concurrency, flows, sshKeygenSignPerSec: sshKeygenSignRate(dir, 100) };
  } finally {
    await browser.close();
    await Promise.all([cluster.stop(), idp.close(), agent.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Whole logins over HTTP through the server at `webPort` (login start, IdP
 * login and consent, proxy callback, sealed answer opened: headlessLogin),
 * `concurrency` at once, `flows` in all, after one warm-up login. Login
 * starts are rate-limited per client address (burst 20): each flow comes
 * from one of 32 loopback addresses (127.0.0.10-41). Throws on the first
 * failed login (a failure is a finding, not a slower rate).
 */
export async function loginIssuanceRate(webPort: number, o: { flows: number; concurrency: number; login?: string }): Promise<{ perSec: number }> {
  const dispatchers = Array.from({ length: 32 }, (_, i) => loopbackDispatcher(10 + i));
  try {
    await headlessLogin(webPort, dispatchers[0]!, o.login); // warm-up: IdP discovery, JIT
    const r = await atConcurrency(o.flows, o.concurrency, async (i) => void (await headlessLogin(webPort, dispatchers[i % dispatchers.length]!, o.login)));
    if (r.failed > 0) throw new Error(`${r.failed} of ${o.flows} logins failed: ${r.errors.join('; ')}`);
    return { perSec: r.perSec };
  } finally {
    await Promise.all(dispatchers.map((d) => d.close()));
  }
}

async function oneTshLogin(dir: string, i: number, webPort: number, sock: string, browser: Awaited<ReturnType<typeof launchBrowser>>): Promise<number> {
  const home = join(dir, `home${i}`);
  mkdirSync(home);
  const t0 = performance.now();
  const child = spawn(process.execPath, [builtProgram('tsh'), 'login', `--proxy=127.0.0.1:${webPort}`, '--insecure', '--browser=none', '--keystore=file'], {
    env: { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: sock },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const done = new Promise<number | null>((r) => child.on('exit', r));
  let m: RegExpMatchArray | null;
  while (!(m = /^(http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32})$/m.exec(err))) await new Promise((r) => setTimeout(r, 5));
  await loginInBrowser(browser, { url: m[1]!, login: 'alice' });
  if ((await done) !== 0) throw new Error(`tsh login failed:\n${err}`);
  return performance.now() - t0;
}

/** What an admin does by hand with OpenSSH: key, signature, agent. */
function manualOpenSshCertificate(dir: string, sock: string, n: number): number[] {
  const ca = join(dir, 'manual-ca');
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const key = join(dir, `manual-${i}`);
    const t0 = performance.now();
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    spawnSync('ssh-keygen', ['-q', '-s', ca, '-I', 'alice', '-n', 'alice', '-V', '+24h', `${key}.pub`]);
    const add = spawnSync('ssh-add', ['-q', '-t', '86400', key], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
    if (add.status !== 0) throw new Error(`ssh-add failed: ${add.stderr}`);
    out.push(performance.now() - t0);
  }
  return out;
}

function sshKeygenSignRate(dir: string, n: number): number {
  const ca = join(dir, 'manual-ca');
  const key = join(dir, 'manual-0');
  const t0 = performance.now();
  for (let i = 0; i < n; i++) spawnSync('ssh-keygen', ['-q', '-s', ca, '-I', 'alice', '-n', 'alice', '-V', '+24h', `${key}.pub`]);
  return n / ((performance.now() - t0) / 1000);
}
