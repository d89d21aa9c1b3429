import assert from 'node:assert/strict';
import { test } from 'node:test';
import { refusalHint } from '../../src/client/refusal-hint.js';

const LOGIN = 'tsh login --proxy=localhost:3080 --insecure';

test('a lock refusal says to ask for the lock to be removed, naming its id, and never to log in again (the login is refused too)', () => {
  const hint = refusalHint('ACCESS_LOCKED', 'access locked (user=demo, lock 31912a102aedf2cb): laptop stolen: call IT', LOGIN);
  assert.match(hint, /tctl lock rm 31912a102aedf2cb/);
  assert.doesNotMatch(hint, /tsh login/);
});

test('a lock refusal from the SSH port (code PROXY_REFUSED) is recognised by its text', () => {
  const hint = refusalHint('PROXY_REFUSED', 'access locked (node=web1, lock 0123456789abcdef): maintenance', LOGIN, 'other');
  assert.match(hint, /tctl lock rm 0123456789abcdef/);
});

test('any other refusal keeps the login hint', () => {
  assert.equal(refusalHint('CERT_EXPIRED', 'the certificate expired', LOGIN), `run \`${LOGIN}\``);
  assert.equal(refusalHint('PROXY_REFUSED', 'no such node', LOGIN, 'other'), 'other');
});
