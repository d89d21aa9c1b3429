/**
 * Feeds at least 50,000 mutated agent byte streams to the reply reader
 * (AgentFrameDecoder, then parseAgentReply on every message it yields).
 * Every failure must be an AgentError or a WireError; anything else fails
 * with the seed, the iteration and the input in hex. FUZZ_SEED and
 * FUZZ_COUNT override the defaults.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentError, AgentFrameDecoder, parseAgentReply, SSH_AGENT_IDENTITIES_ANSWER } from '../../src/client/agent.js';
import { signData } from '../../src/sshcert/index.js';
import { WireError, WireWriter } from '../../src/sshwire/index.js';
import { fuzz } from '../helpers/fuzz.js';
import { certify, keyPair } from '../sshconn/fixtures.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261122);
const COUNT = Number(process.env['FUZZ_COUNT'] ?? 50_000);

function framed(...msgs: Buffer[]): Buffer {
  const w = new WireWriter();
  for (const m of msgs) w.string(m);
  return Buffer.from(w.finish());
}

function corpus(): Buffer[] {
  const ca = keyPair('ed25519', 'fuzz-ca');
  const ed = keyPair('ed25519', 'fuzz-user');
  const ec = keyPair('ecdsa-p256', 'fuzz-user');
  const edCert = certify(ca, ed.publicKey, { type: 'user', principals: ['alice', 'root'] });
  const ecCert = certify(ca, ec.publicKey, { type: 'user', principals: ['bob'] });
  const ids = new WireWriter().u8(SSH_AGENT_IDENTITIES_ANSWER).u32(4);
  for (const [blob, comment] of [
    [edCert.blob, 'jumpgate:jump.example.test/alice'],
    [ed.publicKey.blob, 'alice@laptop'],
    [ecCert.blob, ''],
    [ec.publicKey.blob, 'ecdsa \u00e9'],
  ] as const) {
    ids.string(blob).string(comment);
  }
  const identities = Buffer.from(ids.finish());
  const empty = Buffer.from(new WireWriter().u8(SSH_AGENT_IDENTITIES_ANSWER).u32(0).finish());
  const sign = (k: typeof ed) => Buffer.from(new WireWriter().u8(14).string(signData(k.privateKey, Buffer.from('data'))).finish());
  return [
    framed(identities),
    framed(empty),
    framed(sign(ed)),
    framed(sign(ec)),
    framed(Buffer.of(6)),
    framed(Buffer.of(5)),
    framed(Buffer.of(6), identities, sign(ed)),
    framed(Buffer.of(30), empty),
  ];
}

const seeds = corpus();

function target(input: Buffer): void {
  const dec = new AgentFrameDecoder();
  for (const msg of dec.push(input)) parseAgentReply(msg);
}

const expected = (err: unknown): boolean => err instanceof AgentError || err instanceof WireError;

test('every corpus stream decodes unmutated, also when fed one byte at a time', () => {
  for (const s of seeds) {
    target(s);
    const dec = new AgentFrameDecoder();
    let n = 0;
    for (const b of s) n += dec.push(Buffer.of(b)).length;
    assert.ok(n >= 1);
    assert.equal(dec.pending, 0);
  }
});

test(`reads ${COUNT} mutated agent replies (seed ${SEED}) throwing only AgentError or WireError`, (t) => {
  const stats = fuzz({ corpus: seeds, count: COUNT, seed: SEED, target, expected });
  const top = Object.entries(stats.codes).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  t.diagnostic(
    `fuzz: ${stats.count} inputs in ${(stats.elapsedMs / 1000).toFixed(1)} s; ${stats.accepted} accepted, ${stats.rejected} rejected (${top}); ` +
      `slowest ${stats.slowestMs.toFixed(2)} ms at iteration ${stats.slowestIteration}`,
  );
  assert.equal(stats.count, COUNT);
  assert.ok(stats.accepted > 0 && stats.rejected > 0, 'the mutants exercise both outcomes');
  assert.ok(stats.slowestMs < 250, `slowest single input took ${stats.slowestMs} ms (iteration ${stats.slowestIteration})`);
});
