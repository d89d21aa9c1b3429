/**
 * The web UI end to end: the real built `jumpgate start` with a real
 * OpenSSH node (proxy-cluster.ts), the real development IdP
 * (oidc-provider), real headless Chromium driven by playwright-core. Only
 * the person's typing and clicks are automated. One cluster and one browser
 * for the whole file.
 *
 * Screenshots at 1280x800 and 390x844 go to artifacts/screenshots/ (CI keeps
 * that directory; README shows copies from docs/screenshots/).
 *
 * The cluster records sessions (auth.session_recording: proxy) and allows one
 * node session per user (proxy.limits.max_sessions_per_user: 1), so the web
 * terminal's recording, the recordings page and player, and NodeAccess's
 * limits are checked on the same cluster.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import WebSocket from 'ws';
import { startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { launchBrowser } from '../helpers/browser.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { freePort } from '../helpers/sshd.js';
import { REPO, runProgram, tempDir, waitFor } from '../helpers/tools.js';
import { request } from '../helpers/web-api.js';

const SECRET = 'web-e2e-secret';
/** sshd runs as root in the tests and logs in as anyone: the IdP user is `root`, whose role's login is {{username}}. */
const ROOT = { login: 'root', claims: { preferred_username: 'root', email: 'root@example.test', email_verified: true, groups: ['auditors'] } };
/** A user with the plain `user` role: no review_sessions. */
const BOB = { login: 'bob', claims: { preferred_username: 'bob', email: 'bob@example.test', email_verified: true } };
const SCREENSHOTS = join(REPO, 'artifacts', 'screenshots');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/** Polls an async condition every 50 ms (waitFor's shape, for conditions that need a browser round trip). */
async function waitForAsync(fn: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the web UI in Chromium', () => {
  const tmp = tempDir('web-e2e');
  let idp: DevIdp;
  let cluster: ProxyCluster;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const cspViolations: string[] = [];
  let base: string;

  before(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    const webPort = await freePort();
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: SECRET, redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`], accounts: [ROOT, BOB] });
    cluster = await startProxyCluster(tmp.dir, {
      webPort,
      oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: SECRET },
      authYaml: ['  session_recording: proxy'],
      proxyYaml: ['  limits:', '    max_sessions_per_user: 1'],
      rolesYaml: ['  auditor:', '    logins: ["{{username}}"]', '    node_labels: { env: test }', '    review_sessions: true'],
      claimsToRolesYaml: ['{ claim: groups, value: auditors, roles: [user, auditor] }'],
      nodes: [
        { name: 'node1', env: 'test' },
        { name: 'node2', env: 'test' },
        { name: 'secret1', env: 'prod' },
      ],
    });
    base = `https://localhost:${cluster.webPort}`;
    browser = await launchBrowser();
    context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: DESKTOP });
    page = await context.newPage();
    page.on('console', (m) => {
      if (/Content.Security.Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
    });
  });

  after(async () => {
    await browser?.close();
    await cluster?.stop();
    await idp?.close();
    tmp.cleanup();
  });

  /** What the terminal shows, row by row (xterm.js's DOM renderer). */
  const screenText = async () => (await page.locator('.xterm-rows > div').allTextContents()).join('\n');
  /** What a person does at /web: Sign in with SSO, the IdP's login form (unless it remembers them) and consent, back on the node list. */
  const signIn = async (p: Page = page, account = 'root') => {
    await p.goto(`${base}/web`);
    await p.getByRole('link', { name: 'Sign in with SSO' }).click();
    await p.waitForLoadState();
    if (await p.locator('input[name="login"]').count()) {
      await p.fill('input[name="login"]', account);
      await p.fill('input[name="password"]', 'any-password');
      await Promise.all([p.waitForLoadState(), p.click('button[type="submit"]')]);
    }
    const consent = p.locator('button[type="submit"]:has-text("Continue")');
    if (await consent.count()) await consent.first().click();
    await p.getByRole('heading', { name: 'Nodes' }).waitFor();
  };
  /** The signed-in session's cookie header and CSRF token in `ctx`. */
  const credentials = async (ctx: BrowserContext = context) => {
    const cookie = (await ctx.cookies(base)).find((c) => c.name === '__Host-jumpgate_session')!;
    const headers = { cookie: `${cookie.name}=${cookie.value}` };
    const me = JSON.parse((await request(cluster.webPort, { path: '/web/api/me', headers })).body) as { csrf_token: string };
    return { headers, csrf: me.csrf_token };
  };
  /** Opens a web terminal outside the page and answers its first control message (ready or end). */
  const startTerminal = async (node: string, login = 'root') => {
    const { headers, csrf } = await credentials();
    return new Promise<{ type: string; reason?: string; message?: string }>((resolve, reject) => {
      const ws = new WebSocket(`wss://127.0.0.1:${cluster.webPort}/web/api/terminal`, { origin: `https://127.0.0.1:${cluster.webPort}`, rejectUnauthorized: false, headers });
      ws.once('open', () => ws.send(JSON.stringify({ type: 'start', csrf, node, login, cols: 80, rows: 24 })));
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        ws.close();
        resolve(JSON.parse(String(data)) as { type: string });
      });
      ws.once('error', reject);
    });
  };
  /** The marker the first terminal echoed (the recording must show it). */
  let marker = '';
  /** What the player shows, row by row. */
  const playerText = async (p: Page = page) => (await p.locator('#player .xterm-rows > div').allTextContents()).join('\n');
  const seekPlayer = (to: 'start' | 'end') =>
    page.locator('#play-seek').evaluate((el, where) => {
      const input = el as unknown as { value: string; max: string };
      input.value = where === 'end' ? input.max : '0';
      el.dispatchEvent(new Event('input', { bubbles: true }));
    }, to);
  /** Resolves when a terminal row shows `text`. */
  const onScreen = (text: string | RegExp) => page.locator('.xterm-rows > div', { hasText: text }).first().waitFor();
  const typeLine = async (line: string) => {
    await page.keyboard.type(line);
    await page.keyboard.press('Enter');
  };

  test('signs in through the IdP and sets a __Host- session cookie: HttpOnly, Secure, SameSite=Strict, no longer than cert_ttl', async () => {
    await signIn();
    const cookie = (await context.cookies(base)).find((c) => c.name === '__Host-jumpgate_session');
    assert.ok(cookie, 'the session cookie is set');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.secure, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.path, '/');
    assert.ok(cookie.expires > Date.now() / 1000 && cookie.expires <= Date.now() / 1000 + 24 * 3600 + 5, `expires within cert_ttl (24h): ${cookie.expires}`);
    assert.ok(!(await context.cookies(base)).some((c) => c.name === '__Host-jumpgate_login'), 'the sign-in binding cookie is cleared');
    const login = cluster.audit().find((e) => e['event'] === 'web.login');
    assert.equal(login?.['user'], 'root');
  });

  test('lists the nodes the user may reach with their labels, filters them, and works at 1280x800 and 390x844', async () => {
    const names = await page.locator('table.nodes tbody th').allTextContents();
    assert.deepEqual(names, ['node1', 'node2'], 'secret1 (env=prod) is not reachable with the user role');
    assert.match((await page.locator('table.nodes tbody tr').first().textContent()) ?? '', /env=test/);
    await page.getByLabel('Filter').fill('node2');
    assert.deepEqual(await page.locator('table.nodes tbody th').allTextContents(), ['node2']);
    await page.getByLabel('Filter').fill('env=test');
    assert.deepEqual(await page.locator('table.nodes tbody th').allTextContents(), ['node1', 'node2']);
    await page.screenshot({ path: join(SCREENSHOTS, 'web-nodes-1280x800.png') });
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: join(SCREENSHOTS, 'web-nodes-390x844.png') });
    // Nothing overflows sideways on a phone.
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px at 390 px`);
    await page.setViewportSize(DESKTOP);
    // Keyboard: Tab from the filter reaches the login select, then the first Connect.
    await page.getByLabel('Filter').fill('');
    await page.getByLabel('Filter').focus();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate<string>('document.activeElement.id'), 'login');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate<string>("document.activeElement.getAttribute('aria-label')"), 'Connect to node1');
  });

  test('opens a terminal on node1: echo of a random marker appears on screen, UTF-8 survives, a resize reaches the shell', async () => {
    await page.getByRole('link', { name: 'Connect to node1' }).click();
    await page.waitForSelector('body[data-terminal="ready"]');
    await page.locator('.xterm').click();
    marker = randomBytes(6).toString('hex');
    await typeLine(`echo M-${marker}-$((6*7))`);
    await onScreen(`M-${marker}-42`);
    await typeLine('printf "U=\\342\\234\\223=U\\n"');
    await onScreen('U=✓=U');
    const size = async () => {
      const tag = randomBytes(3).toString('hex');
      await typeLine(`echo S${tag}=$(stty size | tr ' ' x)=`);
      await onScreen(new RegExp(`S${tag}=\\d+x\\d+=`));
      const m = new RegExp(`S${tag}=(\\d+)x(\\d+)=`).exec(await screenText());
      return { rows: Number(m![1]), cols: Number(m![2]) };
    };
    const wide = await size();
    assert.ok(wide.cols > 100, `a 1280 px window gives a wide terminal: ${JSON.stringify(wide)}`);
    await page.screenshot({ path: join(SCREENSHOTS, 'web-terminal-1280x800.png') });
    await page.setViewportSize(PHONE);
    // xterm.js re-fits when its container shrinks (ResizeObserver) and tells the proxy; wait for the narrower screen.
    await waitForAsync(async () => ((await page.locator('.xterm-screen').boundingBox())?.width ?? 1e9) < PHONE.width, 'the terminal to shrink');
    const narrow = await size();
    assert.ok(narrow.cols < wide.cols && narrow.cols < 60, `the shell sees the phone-sized terminal: ${JSON.stringify(narrow)} after ${JSON.stringify(wide)}`);
    await page.screenshot({ path: join(SCREENSHOTS, 'web-terminal-390x844.png') });
    await page.setViewportSize(DESKTOP);
    const start = cluster.audit().find((e) => e['event'] === 'session.start' && e['via'] === 'web');
    assert.ok(start, 'session.start is audited with via=web');
    assert.equal(start['user'], 'root');
    assert.equal(start['login'], 'root');
    assert.equal(start['node'], 'node1');
    assert.match(String(start['session_id']), /^[0-9a-f-]{36}$/);
    await cluster.node.waitForLog(/Accepted publickey for root from 127\.0\.0\.1 port \d+ ssh2: ED25519-CERT .*ID root\/session\//);
  });

  test('web terminals go through NodeAccess: proxy.limits.max_sessions_per_user counts them, a node outside the roles is refused and audited as access.denied', async () => {
    // node1's terminal (previous test) is still open: a second session is one over the limit of 1.
    const second = await startTerminal('node2');
    assert.equal(second.type, 'end');
    assert.match(String(second.message), /limit 1, proxy\.limits\.max_sessions_per_user/);
    const secret = await startTerminal('secret1');
    assert.equal(secret.type, 'end');
    await waitFor(() => cluster.audit().some((e) => e['event'] === 'access.denied' && e['node'] === 'secret1' && e['user'] === 'root' && e['login'] === 'root'), 'access.denied for secret1');
    const badLogin = await startTerminal('node1', 'nobody');
    assert.match(String(badLogin.message), /do not allow the login "nobody"/);
    assert.ok(cluster.audit().some((e) => e['event'] === 'access.denied' && e['code'] === 'LOGIN_DENIED' && e['login'] === 'nobody'));
  });

  test('the session ends with a clear message when the shell exits, and session.end is audited', async () => {
    await typeLine('exit 3');
    await page.waitForSelector('body[data-terminal="ended-exit"]');
    assert.match((await page.locator('#term-status').textContent()) ?? '', /ended \(exit status 3\)/);
    await waitFor(() => cluster.audit().some((e) => e['event'] === 'session.end' && e['node'] === 'node1'), 'session.end');
  });

  test('records the web terminal: session.start/end name the recording, the recordings page lists it, the player shows the marker with seek and speed', async () => {
    const start = cluster.audit().find((e) => e['event'] === 'session.start' && e['via'] === 'web' && e['node'] === 'node1')!;
    const id = String(start['session_id']);
    assert.equal(start['recording'], `${id}.cast`);
    const end = cluster.audit().find((e) => e['event'] === 'session.end' && e['session_id'] === id)!;
    assert.equal(end['recording'], `${id}.cast`);
    await page.getByRole('link', { name: 'Recordings' }).click();
    await page.getByRole('heading', { name: 'Recordings' }).waitFor();
    const row = page.locator('table.recordings tbody tr', { hasText: 'root@node1' });
    assert.equal(await row.count(), 1);
    await row.getByRole('link', { name: /^Play the session of root as root@node1/ }).click();
    await page.getByRole('heading', { name: 'Recording' }).waitFor();
    await page.waitForSelector('body[data-player="playing"]');
    // Seek to the end: everything is drawn at once, the marker included.
    await seekPlayer('end');
    await page.waitForSelector('body[data-player="ended"]');
    await page.locator('#player .xterm-rows > div', { hasText: `M-${marker}-42` }).first().waitFor();
    const markerRows = () => page.locator('#player .xterm-rows > div', { hasText: `M-${marker}-42` }).count();
    assert.equal(await markerRows(), 1, 'the session is drawn once (a seek resets before it redraws)');
    await page.screenshot({ path: join(SCREENSHOTS, 'web-player-1280x800.png') });
    // Back to the start: the screen is redrawn from nothing.
    await seekPlayer('start');
    await waitForAsync(async () => !(await playerText()).includes(marker), 'the player to clear on a seek to the start');
    assert.match((await page.locator('#play-time').textContent()) ?? '', /^0:00 \//);
    // Play at 8x to the end: the marker appears by playing, not seeking.
    await page.getByLabel('Speed').selectOption('8');
    await page.getByRole('button', { name: 'Play' }).click();
    await page.waitForSelector('body[data-player="ended"]', { timeout: 15_000 });
    assert.match(await playerText(), new RegExp(`M-${marker}-42`));
    assert.equal(await markerRows(), 1);
    // Keyboard: space on the player toggles play.
    await page.locator('#player').focus();
    await page.keyboard.press(' ');
    await page.waitForSelector('body[data-player="playing"]');
    await page.keyboard.press(' ');
    await page.setViewportSize(PHONE);
    await seekPlayer('end');
    await page.locator('#player .xterm-rows > div', { hasText: `M-${marker}-42` }).first().waitFor();
    // The recording ends at the 1280 px terminal's width (over 100 columns): the font shrinks until it fits the phone.
    const box = (await page.locator('#player .xterm-screen').boundingBox())!;
    assert.ok(box.x + box.width <= PHONE.width, `the recorded columns fit the phone's width: ${JSON.stringify(box)}`);
    await page.screenshot({ path: join(SCREENSHOTS, 'web-player-390x844.png') });
    await page.setViewportSize(DESKTOP);
    await waitFor(() => cluster.audit().some((e) => e['event'] === 'recording.read' && e['session_id'] === id && e['via'] === 'web' && e['user'] === 'root' && e['owner'] === 'root'), 'recording.read via web');
    assert.deepEqual(cspViolations, [], 'the player broke no CSP rule');
  });

  test('a user without review_sessions does not see another user\'s recording and gets the same answer for it as for an unknown id', async () => {
    const bobContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: DESKTOP });
    try {
      const bobPage = await bobContext.newPage();
      await signIn(bobPage, 'bob');
      await bobPage.getByRole('link', { name: 'Recordings' }).click();
      await bobPage.getByRole('heading', { name: 'Recordings' }).waitFor();
      assert.match((await bobPage.locator('#rec-count').textContent()) ?? '', /No recordings you may see/);
      const { headers } = await credentials(bobContext);
      const list = JSON.parse((await request(cluster.webPort, { path: '/web/api/recordings', headers })).body) as { recordings: unknown[] };
      assert.deepEqual(list.recordings, []);
      const rootsId = String(cluster.audit().find((e) => e['event'] === 'session.start' && e['via'] === 'web' && e['node'] === 'node1')!['session_id']);
      const theirs = await request(cluster.webPort, { path: `/web/api/recordings/${rootsId}`, headers });
      const unknown = await request(cluster.webPort, { path: `/web/api/recordings/${randomUUID()}`, headers });
      assert.equal(theirs.status, 404);
      assert.equal(unknown.status, 404);
      assert.equal(theirs.body, unknown.body);
      await bobPage.goto(`${base}/web#/play/${rootsId}`);
      assert.match((await bobPage.locator('#play-error').textContent()) ?? '', /no recording of that session that you may read/);
      assert.ok(!cluster.audit().some((e) => e['event'] === 'recording.read' && e['user'] === 'bob'), 'nothing was read');
      // Without a session: 401, as for every /web/api call.
      assert.equal((await request(cluster.webPort, { path: `/web/api/recordings/${rootsId}` })).status, 401);
    } finally {
      await bobContext.close();
    }
  });

  test('every page has a strict CSP (no inline script or style, frame-ancestors none) and the page broke none of it', async () => {
    const page1 = await request(cluster.webPort, { path: '/web' });
    const csp = String(page1.headers['content-security-policy']);
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const js = /src="(\/web\/assets\/[^"]+\.js)"/.exec(page1.body)![1]!;
    const css = /href="(\/web\/assets\/[^"]+\.css)"/.exec(page1.body)![1]!;
    for (const path of [js, css, '/web/api/me', '/web/api/nodes', '/web/login', '/web/nope', '/web/assets/nope.js']) {
      const r = await request(cluster.webPort, { path });
      assert.match(String(r.headers['content-security-policy']), /frame-ancestors 'none'/, path);
      assert.doesNotMatch(String(r.headers['content-security-policy']), /unsafe-inline|unsafe-eval/, path);
    }
    assert.doesNotMatch(page1.body, /<script>|<style|style="/, 'no inline script or style in the page');
    assert.deepEqual(cspViolations, []);
  });

  test('API calls without a session get 401 JSON', async () => {
    for (const path of ['/web/api/me', '/web/api/nodes', '/web/api/audit', '/web/api/recordings']) {
      const r = await request(cluster.webPort, { path });
      assert.equal(r.status, 401, path);
      assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'NOT_SIGNED_IN');
    }
    const r = await request(cluster.webPort, { method: 'POST', path: '/web/api/logout', headers: { origin: `https://127.0.0.1:${cluster.webPort}` } });
    assert.equal(r.status, 401);
  });

  test('back-pressure: a browser sending 64 MiB to a node that does not read is held back by pausing the WebSocket (the proxy holds about one SSH window), and resumed when the node reads', async () => {
    const { headers, csrf } = await credentials();
    const ws = new WebSocket(`wss://127.0.0.1:${cluster.webPort}/web/api/terminal`, { origin: `https://127.0.0.1:${cluster.webPort}`, rejectUnauthorized: false, headers });
    let out = '';
    let control: { type: string; session_id?: string } | undefined;
    ws.on('message', (data, isBinary) => {
      if (isBinary) out += String(data);
      else control ??= JSON.parse(String(data)) as { type: string; session_id?: string };
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(JSON.stringify({ type: 'start', csrf, node: 'node2', login: 'root', cols: 80, rows: 24 }));
    await waitFor(() => control !== undefined, 'the terminal ready');
    assert.equal(control!.type, 'ready', JSON.stringify(control));
    const sessionId = control!.session_id!;
    // The shell reads nothing for 2 s (raw tty, no echo), then reads 8 MiB (more than the SSH window plus the
    // channel's buffer: the proxy must have resumed reading the browser) and exits, which ends the terminal.
    const READ = 8 * 1024 * 1024;
    ws.send(Buffer.from(`stty raw -echo; sleep 2; exec head -c ${READ} >/dev/null\r`), { binary: true });
    await waitFor(() => out.includes('exec head'), 'the command echoed');
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const TOTAL = 64 * 1024 * 1024;
    // The test's own client keeps one message in flight: what piles up is the proxy's doing, not ours. It stops when the terminal ends.
    for (let sent = 0; sent < TOTAL && ws.readyState === ws.OPEN; sent += chunk.length) {
      if (!(await new Promise<boolean>((resolve) => ws.send(chunk, { binary: true }, (err) => resolve(!err))))) break;
    }
    const line = new RegExp(`web terminal ${sessionId} ended: held at most (\\d+) bytes for the node and (\\d+) for the browser`);
    await waitFor(() => line.test(cluster.log()), 'the terminal\'s end in the server log', 30_000);
    ws.terminate();
    const held = Number(line.exec(cluster.log())![1]);
    // ssh2's channel buffer (high-water mark 2 MiB) plus one message: without back-pressure this is most of the 64 MiB.
    assert.ok(held <= 2 * 1024 * 1024 + 64 * 1024, `the proxy held ${held} bytes for a node that did not read`);
    await waitFor(() => cluster.audit().some((e) => e['event'] === 'session.end' && e['session_id'] === sessionId), 'session.end');
    const end = cluster.audit().find((e) => e['event'] === 'session.end' && e['session_id'] === sessionId)!;
    assert.ok(Number(end['bytes_to_node']) >= READ, `the node got what it read once it read: ${String(end['bytes_to_node'])}`);
  });

  test('back-pressure the other way: a browser that stops reading makes the proxy pause the shell (about 1 MiB held for it), and all the output arrives once it reads', async () => {
    const { headers, csrf } = await credentials();
    const ws = new WebSocket(`wss://127.0.0.1:${cluster.webPort}/web/api/terminal`, { origin: `https://127.0.0.1:${cluster.webPort}`, rejectUnauthorized: false, headers });
    let got = 0;
    const controls: Array<{ type: string; session_id?: string }> = [];
    ws.on('message', (data, isBinary) => {
      if (isBinary) got += (data as Buffer).length;
      else controls.push(JSON.parse(String(data)) as { type: string; session_id?: string });
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(JSON.stringify({ type: 'start', csrf, node: 'node2', login: 'root', cols: 80, rows: 24 }));
    await waitFor(() => controls.length > 0, 'the terminal ready');
    assert.equal(controls[0]!.type, 'ready', JSON.stringify(controls[0]));
    const sessionId = controls[0]!.session_id!;
    const OUT = 16 * 1024 * 1024; // well past what the loopback socket buffers take
    ws.send(Buffer.from(`head -c ${OUT} /dev/zero; exit\r`), { binary: true });
    ws.pause(); // this browser stops reading
    // Nothing the test can watch says "the proxy has stopped the shell" (that is the point): give the node time to print it all.
    await new Promise((r) => setTimeout(r, 2_000));
    ws.resume();
    await waitFor(() => controls.some((m) => m.type === 'end'), 'the terminal ending after the output', 30_000);
    assert.ok(got >= OUT, `all the output arrived: ${got} bytes`);
    const line = new RegExp(`web terminal ${sessionId} ended: held at most (\\d+) bytes for the node and (\\d+) for the browser`);
    await waitFor(() => line.test(cluster.log()), 'the terminal\'s end in the server log');
    const held = Number(line.exec(cluster.log())![2]);
    // MAX_BUFFERED_BYTES (1 MiB) plus what one read from the SSH channel adds: without the pause this is most of the 16 MiB.
    assert.ok(held <= 1024 * 1024 + 128 * 1024, `the proxy held ${held} bytes for a browser that did not read`);
    ws.terminate();
  });

  test('a foreign Origin is refused on a POST and on the WebSocket upgrade, even with the session cookie and CSRF token', async () => {
    const cookie = (await context.cookies(base)).find((c) => c.name === '__Host-jumpgate_session')!;
    const headers = { cookie: `${cookie.name}=${cookie.value}` };
    const me = JSON.parse((await request(cluster.webPort, { path: '/web/api/me', headers })).body) as { csrf_token: string; review_sessions: boolean };
    const post = await request(cluster.webPort, { method: 'POST', path: '/web/api/logout', headers: { ...headers, origin: 'https://evil.example', 'x-csrf-token': me.csrf_token } });
    assert.equal(post.status, 403);
    const noToken = await request(cluster.webPort, { method: 'POST', path: '/web/api/logout', headers: { ...headers, origin: `https://127.0.0.1:${cluster.webPort}` } });
    assert.equal(noToken.status, 403, 'the right Origin without the CSRF token is refused too');
    const upgrade = (origin: string, withCookie: boolean) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`wss://127.0.0.1:${cluster.webPort}/web/api/terminal`, { origin, rejectUnauthorized: false, headers: withCookie ? headers : {} });
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('open', () => {
          ws.close();
          resolve(101);
        });
        ws.once('error', reject);
      });
    assert.equal(await upgrade('https://evil.example', true), 403);
    assert.equal(await upgrade(`https://127.0.0.1:${cluster.webPort}`, false), 401);
    assert.equal(await upgrade(`https://127.0.0.1:${cluster.webPort}`, true), 101, 'the same request from this origin is upgraded');
    // The session is still there: the refused POST changed nothing.
    assert.equal((await request(cluster.webPort, { path: '/web/api/me', headers })).status, 200);
    assert.equal(me.review_sessions, true);
  });

  test('shows the audit log to a review_sessions role: the web sign-in and the web terminal session are there', async () => {
    await page.goto(`${base}/web#/audit`);
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
    const rows = await page.locator('table.audit tbody tr').allTextContents();
    assert.ok(rows.some((r) => r.includes('web.login') && r.includes('root')), 'web.login is listed');
    assert.ok(rows.some((r) => r.includes('session.start') && r.includes('via=web')), 'the web session is listed');
    await page.screenshot({ path: join(SCREENSHOTS, 'web-audit-1280x800.png') });
  });

  test('a lock on the user ends their running web terminal with the lock\'s message, and ends their web session', async () => {
    await page.goto(`${base}/web#/terminal/node2`);
    await page.waitForSelector('body[data-terminal="ready"]');
    const cookie = (await context.cookies(base)).find((c) => c.name === '__Host-jumpgate_session')!;
    const add = await runProgram('tctl', ['lock', 'add', '--user=root', '--message=laptop stolen, call IT', '--config', cluster.configFile]);
    assert.equal(add.code, 0, add.stderr);
    await page.waitForSelector('body[data-terminal="ended-locked"]', { timeout: 10_000 });
    assert.match((await page.locator('#term-status').textContent()) ?? '', /access locked \(user=root.*laptop stolen, call IT/);
    await waitFor(() => cluster.audit().some((e) => e['event'] === 'session.end' && e['node'] === 'node2' && e['reason'] === 'locked'), 'session.end reason=locked');
    const me = await request(cluster.webPort, { path: '/web/api/me', headers: { cookie: `${cookie.name}=${cookie.value}` } });
    assert.equal(me.status, 401, 'the locked user is signed out');
    const id = /\b([0-9a-f-]{8,})\b/.exec(add.stdout)![1]!;
    const rm = await runProgram('tctl', ['lock', 'rm', id, '--config', cluster.configFile]);
    assert.equal(rm.code, 0, rm.stderr);
  });

  test('signs out: the session is deleted on the server, the cookie cleared, the page shows the sign-in again', async () => {
    // The proxy sees the lock's removal within LOCK_POLL_MS (2 s); a sign-in before that is refused ("Access locked").
    await signIn().catch(async () => signIn());
    const cookie = (await context.cookies(base)).find((c) => c.name === '__Host-jumpgate_session')!;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.ok(!(await context.cookies(base)).some((c) => c.name === '__Host-jumpgate_session'), 'the cookie is cleared');
    const old = await request(cluster.webPort, { path: '/web/api/me', headers: { cookie: `${cookie.name}=${cookie.value}` } });
    assert.equal(old.status, 401, 'the old cookie no longer works anywhere');
    assert.ok(cluster.audit().some((e) => e['event'] === 'web.logout' && e['user'] === 'root'));
  });
});
