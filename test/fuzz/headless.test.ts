/**
 * Headless login bodies under mutated input, straight into the real
 * HeadlessLoginService (the state store, the audit log, the dev IdP's
 * discovery): start and poll refuse with a 4xx ApiRequestError (or answer
 * properly), never anything else. FUZZ_SEED / FUZZ_COUNT override the size.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { newEnvelopeKey } from '../../src/api/envelope.js';
import { ApiRequestError } from '../../src/server/auth/login.js';
import { formatPublicKeyLine, generateKeyPair } from '../../src/sshcert/index.js';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { fuzzAsync, fuzzSummary, mutateText } from '../helpers/fuzz.js';
import { startHeadlessServer, type HeadlessServer } from '../helpers/headless-server.js';
import { freePort } from '../helpers/sshd.js';
import { tempDir } from '../helpers/tools.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261130);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 600);

class Refused extends Error {}

const DICT = ['{', '}', '[', ']', '"', ':', ',', 'null', 'true', 'false', '0', '-1', '1e309', '3.5', '""', '"\\u0000"', '"\\ud800"', '\\"',
  '"__proto__"', '"constructor"', '"public_key"', '"client_key"', '"client_nonce"', '"ttl_seconds"', '"login_hint"', '"request_id"', '"poll_secret"',
  'ssh-ed25519 ', 'ssh-rsa ', 'AAAA', '=', '+/', '-_', 'A'.repeat(43), 'A'.repeat(22), '<script>', '\n', '\u2028'];

describe('headless login fuzzing (in-process service, dev IdP)', () => {
  const tmp = tempDir('headless-fuzz');
  let idp: DevIdp;
  let srv: HeadlessServer;
  let corpus: Buffer[];

  before(async () => {
    const port = await freePort();
    idp = await startDevIdp({ clientId: 'jumpgate', clientSecret: 's', redirectUris: [`https://127.0.0.1:${port}/v1/login/oidc/callback`], accounts: DEMO_ACCOUNTS });
    srv = await startHeadlessServer(tmp.dir, `cluster_name: fuzz.test
data_dir: ./data
proxy: { web_listen_addr: "127.0.0.1:${port}", ssh_listen_addr: "127.0.0.1:0" }
auth:
  oidc: { issuer: "${idp.issuer}", client_id: jumpgate, client_secret: s, claims_to_roles: [{ claim: email_verified, value: true, roles: [user] }] }
roles: { user: { logins: ["{{username}}"] } }
`);
    const { publicKey } = generateKeyPair('ed25519');
    const start = { public_key: formatPublicKeyLine(publicKey), client_key: newEnvelopeKey().publicRaw.toString('base64url'), client_nonce: 'n'.repeat(43), ttl_seconds: 3600, login_hint: 'alice' };
    const real = await srv.headless.start(start, '127.0.0.1');
    corpus = [start, { request_id: real.request_id, poll_secret: real.poll_secret }, { request_id: real.request_id, poll_secret: 'x'.repeat(43) }].map((b) => Buffer.from(JSON.stringify(b)));
  });

  after(async () => {
    await srv?.stop();
    await idp?.close();
    tmp.cleanup();
  });

  test(`start and poll take ${COUNT} mutated bodies each (seed ${SEED}) and refuse with 4xx only`, async (ctx) => {
    // Every mutant from a new source: the per-source limits would otherwise answer most of them with 429 before the parser runs.
    let n = 0;
    const addr = () => `10.${(++n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
    for (const which of ['start', 'poll'] as const) {
      const stats = await fuzzAsync({
        corpus: corpus,
        count: COUNT,
        seed: SEED,
        mutator: (input, rng) => mutateText(input, rng, DICT),
        target: async (input) => {
          let body: unknown;
          try {
            body = JSON.parse(input.toString('utf8'));
          } catch {
            throw new Refused('NOT_JSON');
          }
          try {
            const r = which === 'start' ? await srv.headless.start(body, addr()) : await srv.headless.poll(body, addr());
            assert.equal(typeof r, 'object');
          } catch (err) {
            if (err instanceof ApiRequestError && err.status >= 400 && err.status < 500) throw new Refused(err.code);
            throw err;
          }
        },
        expected: (err) => err instanceof Refused,
        concurrency: 4,
      });
      ctx.diagnostic(`fuzz headless ${which}: ${fuzzSummary(stats)}`);
      assert.ok(stats.accepted > 0 && stats.rejected > 0, `${which}: the mutants exercise both outcomes`);
    }
  });
});
