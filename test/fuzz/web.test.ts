/**
 * The HTTPS API's request parsing under mutated input, against the real
 * thing in-process (startWebApi + LoginService + the development IdP):
 *  - mutated JSON bodies straight into LoginService.start: only 4xx refusals;
 *  - mutated raw HTTP/1.1 requests (method, target, headers, body, framing)
 *    over TLS: only 2xx/3xx/4xx answers with the security headers and a JSON
 *    error code, never a 500, never a crash, and the server still answers
 *    promptly afterwards.
 * FUZZ_SEED / FUZZ_COUNT override the CI size; `npm run fuzz -- --target web`
 * (or login-start) is the long run.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzzAsync, fuzzSummary } from '../helpers/fuzz.js';
import { loginStartTarget, webTarget } from './targets.js';
import { startWebFuzzServer, type WebFuzzServer } from './web-server.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261203);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 1_200);

describe('web API fuzzing (in-process server, dev IdP)', () => {
  let srv: WebFuzzServer;
  before(async () => {
    srv = await startWebFuzzServer();
  });
  after(async () => {
    await srv?.close();
  });

  test('the corpus requests are answered as a client expects', async () => {
    for (const c of webTarget.corpus()) {
      await webTarget.target(srv.web, c).catch((err: Error & { code?: string }) => {
        assert.ok(webTarget.expected(err), err.message);
        assert.match(err.code ?? '', /^HTTP_400/, `${c.toString().split('\r\n')[0]}: ${err.message}`);
      });
    }
  });

  test(`LoginService.start takes ${COUNT * 2} mutated bodies (seed ${SEED}) and refuses with 4xx only`, async (ctx) => {
    const stats = await fuzzAsync({
      corpus: loginStartTarget.corpus(),
      count: COUNT * 2,
      seed: SEED,
      mutator: loginStartTarget.mutator,
      target: (input) => loginStartTarget.target({ login: srv.api.server.login }, input),
      expected: loginStartTarget.expected,
      concurrency: 4,
    });
    ctx.diagnostic(`fuzz login-start: ${fuzzSummary(stats)}`);
    assert.ok(stats.accepted > 0 && stats.rejected > 0, 'the mutants exercise both outcomes');
  });

  test(`the HTTPS API takes ${COUNT} mutated raw requests (seed ${SEED}): no 5xx, headers on every answer, still responsive`, async (ctx) => {
    const stats = await fuzzAsync({
      corpus: webTarget.corpus(),
      count: COUNT,
      seed: SEED,
      mutator: webTarget.mutator,
      target: (input) => webTarget.target(srv.web, input),
      expected: webTarget.expected,
      concurrency: 16,
    });
    ctx.diagnostic(`fuzz web: ${fuzzSummary(stats)}`);
    assert.deepEqual(await srv.problems(), []);
    assert.ok(stats.accepted > 0 && stats.rejected > 0, 'the mutants exercise both outcomes');
  });
});
