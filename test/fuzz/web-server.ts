/**
 * What the login-start and web fuzz targets run against: the development IdP
 * and the HTTPS API in-process (test/helpers/web-api.ts) with a real
 * LoginService, short request timeouts (so a mutant that leaves a request
 * unfinished costs a fraction of a second) and no practical rate limit.
 */
import { DEMO_ACCOUNTS, startDevIdp } from '../../scripts/dev-idp.js';
import { freePort } from '../helpers/sshd.js';
import { tempDir } from '../helpers/tools.js';
import { request, startTestWebApi, WEB_TEST_SECRET, type TestWebApi } from '../helpers/web-api.js';
import type { WebFuzzContext } from './targets.js';

export interface WebFuzzServer {
  api: TestWebApi;
  web: WebFuzzContext;
  /** What went wrong on the server side: 500s in its log, a dead or slow listener. */
  problems(): Promise<string[]>;
  close(): Promise<void>;
}

export const FUZZ_WEB_LIMITS = {
  tlsHandshakeTimeoutMs: 2_000,
  headersTimeoutMs: 300,
  requestTimeoutMs: 600,
  keepAliveTimeoutMs: 300,
  timeoutCheckIntervalMs: 50,
};

export async function startWebFuzzServer(): Promise<WebFuzzServer> {
  const tmp = tempDir('fuzz-web');
  const port = await freePort();
  const idp = await startDevIdp({
    clientId: 'jumpgate',
    clientSecret: WEB_TEST_SECRET,
    redirectUris: [`https://127.0.0.1:${port}/v1/login/oidc/callback`],
    accounts: DEMO_ACCOUNTS,
  });
  const api = await startTestWebApi({ dir: tmp.dir, issuer: idp.issuer, port, limits: FUZZ_WEB_LIMITS, loginRate: { perMinute: 1e9, burst: 1e9 } });
  return {
    api,
    // Timeouts plus the check interval plus a busy machine.
    web: { port: api.port, deadlineMs: FUZZ_WEB_LIMITS.requestTimeoutMs + 3_000 },
    async problems() {
      const out = api.logs.filter((l) => /^WARN web: .* failed: /.test(l)).map((l) => l.split('\n')[0]!);
      const t0 = performance.now();
      const ping = await request(api.port).catch((e: Error) => ({ status: 0, body: e.message }));
      if (ping.status !== 200) out.push(`GET /v1/ping after the run: ${ping.status} ${ping.body}`);
      else if (performance.now() - t0 > 2_000) out.push(`GET /v1/ping after the run took ${(performance.now() - t0).toFixed(0)} ms`);
      return out;
    },
    async close() {
      await api.close();
      await idp.close();
      tmp.cleanup();
    },
  };
}
