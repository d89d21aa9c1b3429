import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  expandLoginTemplate,
  isValidLogin,
  ClaimValueError,
  LoginTemplateError,
  MAX_TEMPLATE_LOGINS,
  lookupClaim,
  parseLoginTemplate,
} from '../../src/config/login-template.js';

const expansions: [string, string, Record<string, unknown>, string[]][] = [
  ['root', 'alice', {}, ['root']],
  ['{{username}}', 'alice', {}, ['alice']],
  ['{{ username }}', 'alice', {}, ['alice']],
  ['{{username}}-adm', 'alice', {}, ['alice-adm']],
  ['{{external.login}}', 'alice', { login: 'al' }, ['al']],
  ['{{external.logins}}', 'alice', { logins: ['a1', 'a2'] }, ['a1', 'a2']],
  ['{{external.logins}}', 'alice', { logins: ['a1', 7, null, ''] }, ['a1', '7']],
  ['{{external.missing}}', 'alice', {}, []],
  ['{{external.n}}', 'alice', { n: null }, []],
  ['{{external.n}}', 'alice', { n: '' }, []],
  ['u{{external.n}}', 'alice', { n: 1000 }, ['u1000']],
  ['{{external.realm_access.roles}}', 'alice', { realm_access: { roles: ['r1'] } }, ['r1']],
  ['{{external.a.b}}', 'alice', { 'a.b': 'flat', a: { b: 'nested' } }, ['flat']],
  ['{{external.x}}_{{external.y}}', 'alice', { x: ['a', 'b'], y: ['1', '2'] }, ['a_1', 'a_2', 'b_1', 'b_2']],
];
for (const [template, username, claims, expected] of expansions) {
  test(`expands ${template} for ${JSON.stringify(claims)} to ${JSON.stringify(expected)}`, () => {
    assert.deepEqual(expandLoginTemplate(parseLoginTemplate(template), username, claims), expected);
  });
}

const refused: [string, RegExp][] = [
  ['{{user}}', /unknown variable \{\{user\}\}/],
  ['{{internal.logins}}', /unknown variable/],
  ['{{external.}}', /unknown variable/],
  ['{{external.a b}}', /unknown variable/],
  ['{{username', /without a closing "\}\}"/],
  ['', /not a valid login/],
  ['-root', /not a valid login/],
  ['a b', /not a valid login/],
  ['a,b', /not a valid login/],
  ['user@host', /not a valid login/],
  ['{{username}}}', /not a valid login template/],
  ['{{username}} ', /not a valid login template/],
  ['123', /not a valid login/],
];
for (const [template, message] of refused) {
  test(`refuses the login template ${JSON.stringify(template)}`, () => {
    assert.throws(() => parseLoginTemplate(template), (err: unknown) => err instanceof LoginTemplateError && message.test(err.message));
  });
}

test('valid Unix logins: portable characters, not starting with - or ., not all digits, at most 32', () => {
  for (const ok of ['root', 'alice', 'a.b', 'svc_web', 'web-1', '_apt', 'Alice', 'x'.repeat(32), '1a']) assert.ok(isValidLogin(ok), ok);
  for (const bad of ['', '-a', '.a', 'a b', 'a,b', 'a@b', 'a/b', '1000', 'x'.repeat(33), 'ä', 'a\n']) assert.ok(!isValidLogin(bad), bad);
});

test('claim lookup never reads inherited properties', () => {
  assert.equal(lookupClaim({}, 'constructor'), undefined);
  assert.equal(lookupClaim({}, '__proto__'), undefined);
  assert.equal(lookupClaim({ a: {} }, 'a.constructor'), undefined);
  assert.equal(lookupClaim({ a: ['x'] }, 'a.0'), undefined);
});

const badValues: [unknown, RegExp][] = [
  [true, /the boolean true/],
  [false, /the boolean false/],
  [2.5, /the number 2\.5/],
  [2 ** 60, /the number/],
  [{ a: 1 }, /an object.*\{\{external\.c\.FIELD\}\}/],
  [['ok', ['nested']], /a list at position 1/],
  [['ok', { a: 1 }], /an object at position 1/],
];
for (const [value, message] of badValues) {
  test(`a claim value ${JSON.stringify(value)} is refused (ClaimValueError naming the claim), not silently dropped`, () => {
    assert.throws(
      () => expandLoginTemplate(parseLoginTemplate('{{external.c}}'), 'alice', { c: value }),
      (err: unknown) => err instanceof ClaimValueError && err.claim === 'c' && message.test(err.message),
    );
  });
}

test(`combinations beyond ${MAX_TEMPLATE_LOGINS} are refused before they are built`, () => {
  const values = Array.from({ length: 20 }, (_, i) => `v${i}`);
  assert.equal(expandLoginTemplate(parseLoginTemplate('{{external.x}}'), 'a', { x: values }).length, 20);
  assert.throws(
    () => expandLoginTemplate(parseLoginTemplate('{{external.x}}{{external.y}}'), 'a', { x: values, y: values }),
    (err: unknown) => err instanceof ClaimValueError && err.claim === 'y' && /more than 256 logins/.test(err.message),
  );
});
