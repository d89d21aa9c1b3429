import { chromium, type Browser, type Page } from 'playwright-core';
import { requireTool } from './tools.js';

/** Flags that keep Chromium quiet on a machine with no network but loopback (FACTS.md). */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // The test proxy's certificate is self-signed (what `tsh login --insecure` is for). Playwright's
  // ignoreHTTPSErrors does not cover a request continued with another URL, this flag does.
  '--ignore-certificate-errors',
];

/** Starts the real headless Chromium from Debian (never a downloaded browser). */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = requireTool('chromium', 'apt-get install -y chromium');
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
}

export interface LoginInBrowserOptions {
  /** The URL tsh printed (its loopback listener). */
  url: string;
  login: string;
  password?: string;
  /**
   * Lets a test change a request on its way out (e.g. tamper with the IdP's
   * callback): return the URL to send instead, or undefined to keep it.
   */
  rewriteRequest?: (url: URL) => URL | undefined;
  /** Every URL the browser navigated to, for replay tests. */
  visited?: string[];
}

/**
 * What a person does after `tsh login`: opens the URL, signs in on the IdP's
 * page, confirms the consent page, and ends on tsh's page. Returns that page's text.
 */
export async function loginInBrowser(browser: Browser, opts: LoginInBrowserOptions): Promise<string> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true }); // the proxy's self-signed certificate
  const page = await context.newPage();
  try {
    page.on('request', (req) => {
      if (req.isNavigationRequest()) opts.visited?.push(req.url());
    });
    if (opts.rewriteRequest) await rewriteRequests(page, opts.rewriteRequest);
    await page.goto(opts.url);
    await page.fill('input[name="login"]', opts.login);
    await page.fill('input[name="password"]', opts.password ?? 'any-password');
    await Promise.all([page.waitForLoadState(), page.click('button[type="submit"]')]);
    await clickThroughConsent(page);
    return (await page.textContent('body')) ?? '';
  } finally {
    await context.close();
  }
}

/**
 * Playwright's page.route never sees a request that is a redirect target, and
 * every hop of a login is one. Chrome's Fetch domain pauses those requests
 * too; continuing with another URL changes what the server receives. (A 3xx
 * fulfilled at the response stage with a new Location is ignored by Chrome.)
 */
async function rewriteRequests(page: Page, rewrite: (url: URL) => URL | undefined): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern: '*', requestStage: 'Request' }] });
  cdp.on('Fetch.requestPaused', (ev) => {
    const next = rewrite(new URL(ev.request.url));
    cdp.send('Fetch.continueRequest', { requestId: ev.requestId, ...(next ? { url: next.toString() } : {}) }).catch(() => {
      // the page went away mid-request
    });
  });
}

async function clickThroughConsent(page: Page): Promise<void> {
  // oidc-provider's dev consent page has one "Continue" submit button.
  const consent = page.locator('button[type="submit"]:has-text("Continue")');
  if (await consent.count()) {
    await Promise.all([page.waitForLoadState(), consent.first().click()]);
  }
  await page.waitForLoadState('load');
}
