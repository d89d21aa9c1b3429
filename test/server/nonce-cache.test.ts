/**
 * The recordings API's replay cache (server/proxy/request-auth.ts NonceCache):
 * a nonce is single use within its window, and one user filling the cache
 * is refused alone (429) while every other user is still served. The HTTPS
 * path through it is covered by test/server/recordings-api.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NonceCache } from '../../src/server/proxy/request-auth.js';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return 'none';
};

describe('NonceCache', () => {
  test('a nonce is refused again within its window, accepted after it', () => {
    const c = new NonceCache(10, 10);
    assert.equal(c.use('n1', 'alice', 1_000, 61_000), true);
    assert.equal(c.use('n1', 'alice', 60_000, 120_000), false);
    assert.equal(c.use('n1', 'bob', 60_000, 120_000), false);
    assert.equal(c.use('n1', 'alice', 61_000, 121_000), true);
  });

  test('one user flooding signed requests is refused (429) while another user still gets in; expiry makes room', () => {
    const c = new NonceCache(100, 10);
    for (let i = 0; i < 10; i++) assert.equal(c.use(`a${i}`, 'mallory', 1_000, 61_000), true);
    assert.equal(code(() => c.use('a10', 'mallory', 1_000, 61_000)), 'RATE_LIMITED');
    assert.equal(c.use('b0', 'alice', 1_000, 61_000), true);
    assert.equal(c.use('a11', 'mallory', 61_000, 121_000), true); // the first ten expired
  });

  test('a full cache refuses everyone (503, never a hole) until entries expire', () => {
    const c = new NonceCache(4, 2);
    for (const [n, u] of [['1', 'a'], ['2', 'a'], ['3', 'b'], ['4', 'b']]) c.use(n!, u!, 0, 10);
    assert.equal(code(() => c.use('5', 'c', 5, 15)), 'BUSY');
    assert.equal(c.use('5', 'c', 10, 20), true);
  });
});
