import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { WireError, WireWriter } from '../../src/sshwire/index.js';
import {
  CertError,
  CertRequest,
  encodeCertificateLine,
  FOREVER,
  parseCertificate,
  parseCertificateLine,
  signCertificate,
  STANDARD_USER_EXTENSIONS,
  verifyCertificate,
  type CertType,
  type Certificate,
  type VerifyOptions,
} from '../../src/sshcert/index.js';
import { KINDS, keyPair, NOW, NOW_S, rawCert, codeOf } from './fixtures.js';


function userRequest(overrides: Partial<ConstructorParameters<typeof CertRequest>[0]> = {}): CertRequest {
  return new CertRequest({
    publicKey: keyPair('ed25519').publicKey,
    type: 'user',
    keyId: 'alice',
    principals: ['alice', 'root'],
    ttlSeconds: 3600,
    extensions: Object.fromEntries(STANDARD_USER_EXTENSIONS.map((e) => [e, ''])),
    ...overrides,
  });
}

function verifyOpts(over: Partial<VerifyOptions> = {}): VerifyOptions {
  return { trustedCAs: [keyPair('ed25519').publicKey], now: NOW, type: 'user', ...over };
}

// ---- round trips -----------------------------------------------------------

for (const caKind of KINDS) {
  for (const type of ['user', 'host'] as CertType[]) {
    test(`a ${type} certificate signed by a ${caKind} CA survives sign -> line -> parse -> verify`, () => {
      const ca = keyPair(caKind);
      const subject = keyPair(caKind === 'ed25519' ? 'ecdsa-p256' : 'ed25519').publicKey;
      const req = new CertRequest({
        publicKey: subject,
        type,
        keyId: type === 'user' ? 'alice' : 'node1',
        principals: type === 'user' ? ['alice', 'root'] : ['node1', 'node1.example.test'],
        ttlSeconds: 24 * 3600,
        ...(type === 'user'
          ? { criticalOptions: { 'source-address': '10.0.0.0/8', 'force-command': '/bin/true' }, extensions: { 'permit-pty': '', 'jumpgate-roles@example.test': 'admin,user' } }
          : {}),
      });
      const cert = signCertificate(req, ca, NOW);
      const line = encodeCertificateLine(cert, 'my comment');
      assert.match(line, new RegExp(`^${subject.type}-cert-v01@openssh\\.com [A-Za-z0-9+/=]+ my comment$`));
      const { cert: back, comment } = parseCertificateLine(line);
      assert.equal(comment, 'my comment');
      assert.deepEqual(back.blob, cert.blob);
      assert.deepEqual(back.signedBytes, cert.signedBytes);
      assert.deepEqual(back.signature, cert.signature);
      assert.equal(back.signatureAlgorithm, cert.signatureAlgorithm);
      assert.equal(back.serial, cert.serial);
      assert.equal(back.type, type);
      assert.deepEqual(back.principals, req.principals);
      assert.deepEqual(back.key.blob, subject.blob);
      assert.deepEqual(back.signatureKey.blob, ca.publicKey.blob);
      assert.deepEqual([...back.criticalOptions], [...cert.criticalOptions]);
      assert.deepEqual([...back.extensions], [...cert.extensions]);
      assert.equal(back.validAfter, NOW_S - 60n);
      assert.equal(back.validBefore, NOW_S + 24n * 3600n);
      verifyCertificate(back, { trustedCAs: [ca.publicKey], now: NOW, type, principal: req.principals[1]!, clientAddress: '10.1.2.3' });
    });
  }
}

test('an RSA CA can sign with rsa-sha2-256 and the result verifies', () => {
  const ca = keyPair('rsa-3072');
  const cert = signCertificate(userRequest(), ca, NOW, { rsaAlgorithm: 'rsa-sha2-256' });
  assert.equal(cert.signatureAlgorithm, 'rsa-sha2-256');
  verifyCertificate(parseCertificate(cert.blob), verifyOpts({ trustedCAs: [ca.publicKey] }));
});

test('signing sorts options by name and writes valued options as a string inside a string', () => {
  const cert = signCertificate(
    userRequest({ extensions: { 'permit-pty': '', 'aaa@x': 'v', 'permit-X11-forwarding': '' }, criticalOptions: { 'source-address': '1.2.3.4', 'force-command': 'ls' } }),
    keyPair('ed25519'),
    NOW,
  );
  assert.deepEqual([...cert.extensions.keys()], ['aaa@x', 'permit-X11-forwarding', 'permit-pty']);
  assert.deepEqual([...cert.criticalOptions.keys()], ['force-command', 'source-address']);
  const hexBlob = cert.blob.toString('hex');
  // "aaa@x", then data = string(string("v")): 00000005 00000001 76
  assert.ok(hexBlob.includes(Buffer.from('aaa@x').toString('hex') + '00000005' + '00000001' + '76'));
  // flag: name then an empty data string.
  assert.ok(hexBlob.includes(Buffer.from('permit-pty').toString('hex') + '00000000'));
});

test('the parsed certificate exposes the exact bytes the signature covers', () => {
  const ca = keyPair('ed25519');
  const cert = parseCertificate(rawCert({ ca }));
  assert.equal(cert.signedBytes.length + 4 + cert.signature.length, cert.blob.length);
  assert.ok(cert.blob.subarray(0, cert.signedBytes.length).equals(cert.signedBytes));
});

// ---- verification failures, in verifyCertificate's order ---------------------

test('rejects a host certificate where a user certificate is expected', () => {
  const cert = parseCertificate(rawCert({ type: 2 }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_WRONG_TYPE');
  assert.throws(() => verifyCertificate(cert, verifyOpts()), /this is a host certificate, not a user certificate/);
});

test('rejects a user certificate where a host certificate is expected', () => {
  const cert = parseCertificate(rawCert({ type: 1 }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ type: 'host' }))), 'CERT_WRONG_TYPE');
});

test('rejects a certificate signed by a CA that is not trusted, naming its fingerprint', () => {
  const other = keyPair('ecdsa-p256');
  const cert = parseCertificate(rawCert({ ca: other }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_UNTRUSTED_CA');
  assert.throws(() => verifyCertificate(cert, verifyOpts()), /signed by CA SHA256:[A-Za-z0-9+/]{43},/);
});

test('rejects a certificate signed by a rotated-out CA once only the new CA is trusted', () => {
  const oldCa = keyPair('ed25519');
  const newCa = keyPair('ecdsa-p384');
  const cert = signCertificate(userRequest(), oldCa, NOW);
  verifyCertificate(cert, verifyOpts({ trustedCAs: [newCa.publicKey, oldCa.publicKey] }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ trustedCAs: [newCa.publicKey] }))), 'CERT_UNTRUSTED_CA');
});

test('rejects a certificate whose principals were tampered with after signing', () => {
  const good = signCertificate(userRequest({ principals: ['alice'] }), keyPair('ed25519'), NOW);
  const blob = Buffer.from(good.blob);
  const at = blob.indexOf(Buffer.from('alice'), blob.indexOf(Buffer.from('alice')) + 5); // the principal, after the key id
  assert.ok(at > 0);
  blob[at] = 'b'.charCodeAt(0); // "blice"
  const cert = parseCertificate(blob);
  assert.deepEqual(cert.principals, ['blice']);
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_BAD_SIGNATURE');
});

test('rejects a certificate with a signature from another key of the same type', () => {
  const cert = parseCertificate(rawCert({ signature: rawSignature('ssh-ed25519', sign(null, Buffer.from('x'), keyPair('ed25519').privateKey)) }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_BAD_SIGNATURE');
});

test('rejects a certificate whose CA signature uses SHA-1 ssh-rsa, saying how to re-sign', () => {
  const ca = keyPair('rsa-3072');
  const unsigned = rawCert({ ca });
  // Re-sign the same bytes with a legacy SHA-1 signature.
  const parsed = parseCertificate(unsigned);
  const sha1 = rawSignature('ssh-rsa', sign('sha1', parsed.signedBytes, ca.privateKey));
  const cert = parseCertificate(Buffer.concat([parsed.signedBytes, new WireWriter().string(sha1).finish()]));
  assert.equal(cert.signatureAlgorithm, 'ssh-rsa');
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ trustedCAs: [ca.publicKey] }))), 'CERT_UNSUPPORTED_ALGORITHM');
  assert.throws(() => verifyCertificate(cert, verifyOpts({ trustedCAs: [ca.publicKey] })), /SHA-1.*rsa-sha2-512/);
});

test('rejects a certificate whose signature algorithm does not fit the CA key', () => {
  const cert = parseCertificate(rawCert({ signature: rawSignature('ecdsa-sha2-nistp256', Buffer.alloc(64)) }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_UNSUPPORTED_ALGORITHM');
});

test('rejects an expired certificate with the expiry time, the current time and what to do', () => {
  const cert = parseCertificate(rawCert({ validAfter: NOW_S - 7200n, validBefore: NOW_S - 3600n }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_EXPIRED');
  assert.throws(
    () => verifyCertificate(cert, verifyOpts()),
    { message: 'certificate expired at 2026-11-21T09:00:00Z (now 2026-11-21T10:00:00Z); run `tsh login` to get a new one' },
  );
});

test('treats validBefore as exclusive and validAfter as inclusive, in whole seconds, like OpenSSH', () => {
  const cert = parseCertificate(rawCert({ validAfter: NOW_S, validBefore: NOW_S + 1n }));
  verifyCertificate(cert, verifyOpts({ now: new Date(NOW.getTime() + 999) }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ now: new Date(NOW.getTime() + 1000) }))), 'CERT_EXPIRED');
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ now: new Date(NOW.getTime() - 1) }))), 'CERT_NOT_YET_VALID');
});

test('rejects a certificate that is not yet valid', () => {
  const cert = parseCertificate(rawCert({ validAfter: NOW_S + 600n }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_NOT_YET_VALID');
  assert.throws(() => verifyCertificate(cert, verifyOpts()), /not valid until 2026-11-21T10:10:00Z \(now 2026-11-21T10:00:00Z\)/);
});

test('accepts a certificate valid forever', () => {
  const cert = parseCertificate(rawCert({ validAfter: 0n, validBefore: FOREVER }));
  verifyCertificate(cert, verifyOpts({ now: new Date('2999-01-01T00:00:00Z') }));
});

test('rejects a user certificate with an unknown critical option, naming it', () => {
  const cert = parseCertificate(rawCert({ critical: [['no-such-option@example.test', 'x']] }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_UNKNOWN_CRITICAL_OPTION');
  assert.throws(() => verifyCertificate(cert, verifyOpts()), /"no-such-option@example\.test"/);
  verifyCertificate(cert, verifyOpts({ knownCriticalOptions: ['no-such-option@example.test'] }));
});

test('accepts force-command and a source-address the client address matches on a user certificate', () => {
  const cert = parseCertificate(rawCert({ critical: [['force-command', 'ls'], ['source-address', '10.0.0.1']] }));
  verifyCertificate(cert, verifyOpts({ clientAddress: '10.0.0.1' }));
  verifyCertificate(cert, verifyOpts({ clientAddress: '::ffff:10.0.0.1' }));
  assert.equal(cert.criticalOptions.get('force-command'), 'ls');
});

test('refuses a source-address the client address does not match, or that cannot be checked (no client address)', () => {
  const cert = parseCertificate(rawCert({ critical: [['source-address', '10.9.9.9/32']] }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ clientAddress: '127.0.0.1' }))), 'CERT_SOURCE_ADDRESS');
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_UNKNOWN_CRITICAL_OPTION');
  const bad = parseCertificate(rawCert({ critical: [['source-address', '10.0.0.0/33']] }));
  assert.equal(codeOf(() => verifyCertificate(bad, verifyOpts({ clientAddress: '10.0.0.1' }))), 'CERT_MALFORMED');
});

test('refuses verify-required: it needs a FIDO key, which sshd also demands', () => {
  const cert = parseCertificate(rawCert({ critical: [['verify-required', undefined]] }));
  assert.equal(cert.criticalOptions.get('verify-required'), '');
  assert.throws(() => verifyCertificate(cert, verifyOpts()), /verify-required.*security key/);
});

test('rejects a host certificate with any critical option by default, as ssh does', () => {
  const cert = parseCertificate(rawCert({ type: 2, principals: ['node1'], critical: [['force-command', 'ls']] }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ type: 'host' }))), 'CERT_UNKNOWN_CRITICAL_OPTION');
});

test('ignores unknown extensions, as sshd does', () => {
  verifyCertificate(parseCertificate(rawCert({ extensions: [['whatever@example.test', 'v'], ['permit-pty', undefined]] })), verifyOpts());
});

test('rejects a login that is not among the principals, naming it and the allowed ones', () => {
  const cert = parseCertificate(rawCert({ principals: ['alice', 'deploy'] }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ principal: 'root' }))), 'CERT_PRINCIPAL_MISMATCH');
  assert.throws(() => verifyCertificate(cert, verifyOpts({ principal: 'root' })), /login "root" is not allowed by this certificate \(allowed: alice, deploy\)/);
  verifyCertificate(cert, verifyOpts({ principal: 'deploy' }));
});

test('matches user principals exactly, without wildcards', () => {
  const cert = parseCertificate(rawCert({ principals: ['*'] }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ principal: 'root' }))), 'CERT_PRINCIPAL_MISMATCH');
});

test('matches host names against wildcard host principals', () => {
  const cert = parseCertificate(rawCert({ type: 2, principals: ['*.example.test', 'node?'] }));
  const host = (name: string): string => codeOf(() => verifyCertificate(cert, verifyOpts({ type: 'host', principal: name })));
  assert.equal(host('a.example.test'), 'OK');
  assert.equal(host('node7'), 'OK');
  assert.equal(host('example.test'), 'CERT_PRINCIPAL_MISMATCH');
  assert.equal(host('node10'), 'CERT_PRINCIPAL_MISMATCH');
  assert.equal(host('a.example.test.evil'), 'CERT_PRINCIPAL_MISMATCH');
});

for (const type of ['user', 'host'] as const) {
  test(`rejects a ${type} certificate with no principals instead of treating it as "any"`, () => {
    const cert = parseCertificate(rawCert({ type: type === 'user' ? 1 : 2, principals: [] }));
    assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ type }))), 'CERT_PRINCIPAL_MISMATCH');
    assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ type, principal: 'x' }))), 'CERT_PRINCIPAL_MISMATCH');
  });
}

test('checks the type before the CA and the CA before the signature', () => {
  const other = keyPair('ecdsa-p256');
  const cert = parseCertificate(rawCert({ type: 2, ca: other, validBefore: NOW_S - 1n }));
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts())), 'CERT_WRONG_TYPE');
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ type: 'host' }))), 'CERT_UNTRUSTED_CA');
  assert.equal(codeOf(() => verifyCertificate(cert, verifyOpts({ type: 'host', trustedCAs: [other.publicKey] }))), 'CERT_EXPIRED');
});

// ---- parse failures --------------------------------------------------------

function rawSignature(alg: string, sig: Buffer): Buffer {
  return Buffer.from(new WireWriter().string(alg).string(sig).finish());
}

const malformed: Array<[string, () => Buffer, string]> = [
  ['trailing bytes after the signature', () => rawCert({ trailing: Buffer.of(0) }), 'CERT_MALFORMED'],
  ['certificate type 0', () => rawCert({ type: 0 }), 'CERT_MALFORMED'],
  ['certificate type 3', () => rawCert({ type: 3 }), 'CERT_MALFORMED'],
  ['an algorithm name that does not match the embedded key', () => rawCert({ algorithm: 'ecdsa-sha2-nistp256-cert-v01@openssh.com' }), 'CERT_MALFORMED'],
  ['a plain key instead of a certificate', () => keyPair('ed25519').publicKey.blob, 'CERT_MALFORMED'],
  ['an unsupported certificate algorithm', () => rawCert({ algorithm: 'ssh-dss-cert-v01@openssh.com' }), 'CERT_UNSUPPORTED_ALGORITHM'],
  ['a signature key that is itself a certificate', () => rawCert({ caBlob: rawCert() }), 'CERT_MALFORMED'],
  ['an unsupported signature key type', () => rawCert({ caBlob: Buffer.from(new WireWriter().string('ssh-dss').string('x').finish()) }), 'CERT_UNSUPPORTED_ALGORITHM'],
  ['a principal that is not valid UTF-8', () => rawCert({ principals: [Buffer.from([0xc3, 0x28])] }), 'CERT_MALFORMED'],
  ['a principal with a NUL byte', () => rawCert({ principals: ['al\0ice'] }), 'CERT_MALFORMED'],
  ['a key id with a NUL byte', () => rawCert({ keyId: 'al\0ice' }), 'CERT_MALFORMED'],
  ['a truncated principal inside the principals section', () => rawCert({ principalsRaw: Buffer.from('00000009616c696365', 'hex') }), 'CERT_MALFORMED'],
  ['trailing bytes inside an option value', () => rawCert({ critical: [['force-command', Buffer.from('00000002 6c73 00'.replace(/ /g, ''), 'hex')]] }), 'CERT_MALFORMED'],
  ['an option value that is not a string inside a string', () => rawCert({ extensions: [['x@y', Buffer.from('ab')]] }), 'CERT_MALFORMED'],
  ['a duplicated extension', () => rawCert({ extensions: [['permit-pty', undefined], ['permit-pty', undefined]] }), 'CERT_MALFORMED'],
  ['a duplicated critical option', () => rawCert({ critical: [['force-command', 'a'], ['force-command', 'b']] }), 'CERT_MALFORMED'],
  ['a flag extension that carries data', () => rawCert({ extensions: [['permit-pty', 'yes']] }), 'CERT_MALFORMED'],
  ['force-command without a value', () => rawCert({ critical: [['force-command', undefined]] }), 'CERT_MALFORMED'],
  ['a signature blob with trailing bytes', () => rawCert({ signature: Buffer.concat([rawSignature('ssh-ed25519', Buffer.alloc(64)), Buffer.of(1)]) }), 'CERT_MALFORMED'],
  ['a certified Ed25519 key of 31 bytes', () => rawCert({ key: { ...keyPair('ed25519').publicKey, blob: Buffer.from(new WireWriter().string('ssh-ed25519').string(Buffer.alloc(31)).finish()) } }), 'CERT_MALFORMED'],
];
for (const [name, make, want] of malformed) {
  test(`rejects a certificate with ${name} (${want})`, () => {
    assert.equal(codeOf(() => parseCertificate(make())), want);
  });
}

test('accepts options in any order, as OpenSSH does, but keeps them as written', () => {
  const cert = parseCertificate(rawCert({ extensions: [['permit-user-rc', undefined], ['permit-pty', undefined], ['a@x', 'v']] }));
  assert.deepEqual([...cert.extensions.keys()], ['permit-user-rc', 'permit-pty', 'a@x']);
  verifyCertificate(cert, verifyOpts());
});

test('accepts a non-empty reserved field and ignores it, as OpenSSH does', () => {
  verifyCertificate(parseCertificate(rawCert({ reserved: Buffer.from('future') })), verifyOpts());
});

test('rejects a certificate truncated at every offset with CERT_MALFORMED wrapping the WireError', () => {
  const blob = signCertificate(userRequest({ criticalOptions: { 'force-command': 'ls' } }), keyPair('ecdsa-p256'), NOW).blob;
  for (let n = 0; n < blob.length; n++) {
    try {
      parseCertificate(blob.subarray(0, n));
      assert.fail(`parsed a certificate truncated to ${n} of ${blob.length} bytes`);
    } catch (err) {
      assert.ok(err instanceof CertError, `offset ${n}: ${String(err)}`);
      assert.equal(err.code, 'CERT_MALFORMED', `offset ${n}: ${err.message}`);
    }
  }
});

test('wraps wire errors as CERT_MALFORMED with the WireError as cause', () => {
  try {
    parseCertificate(rawCert({ trailing: Buffer.of(1, 2) }));
    assert.fail('no throw');
  } catch (err) {
    assert.ok(err instanceof CertError);
    assert.equal(err.code, 'CERT_MALFORMED');
    assert.ok(err.cause instanceof WireError);
    assert.equal((err.cause as WireError).code, 'WIRE_TRAILING_BYTES');
  }
});

const badLines: Array<[string, () => string]> = [
  ['the type word differs from the certificate inside', () => encodeCertificateLine(parseCertificate(rawCert())).replace(/^ssh-ed25519/, 'ecdsa-sha2-nistp256')],
  ['a plain public key line', () => `ssh-ed25519 ${keyPair('ed25519').publicKey.blob.toString('base64')}`],
  ['base64 with a stray character', () => encodeCertificateLine(parseCertificate(rawCert())).replace(/ AAAA/, ' AA*A')],
  ['two lines', () => `${encodeCertificateLine(parseCertificate(rawCert()))}\n${encodeCertificateLine(parseCertificate(rawCert()))}`],
  ['an empty string', () => ''],
];
for (const [name, make] of badLines) {
  test(`parseCertificateLine rejects ${name}`, () => {
    assert.equal(codeOf(() => parseCertificateLine(make())), 'CERT_MALFORMED');
  });
}

test('parseCertificateLine accepts a trailing newline and a line without a comment', () => {
  const line = encodeCertificateLine(parseCertificate(rawCert()));
  assert.equal(parseCertificateLine(line + '\n').comment, '');
  assert.equal(parseCertificateLine(line + ' a b c\r\n').comment, 'a b c');
});

test('a certificate type guard: the Certificate shape carries what others rely on', () => {
  const c: Certificate = signCertificate(userRequest(), keyPair('ed25519'), NOW);
  assert.equal(c.algorithm, 'ssh-ed25519-cert-v01@openssh.com');
  assert.equal(c.nonce.length, 32);
  assert.equal(c.keyId, 'alice');
  assert.ok(c.serial > 0n && c.serial < 1n << 63n);
});
