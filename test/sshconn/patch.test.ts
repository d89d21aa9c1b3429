/**
 * The ssh2 certificate patch is in place: patch-package's file matches the
 * installed sources hunk by hunk (so a version bump or a skipped postinstall
 * fails here first, with the fix in the message), and the patched behaviours
 * the other tests rely on are there.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { REPO, requireTool, run, tempDir } from '../helpers/tools.js';
import { assertSsh2Patched, clientHostKeyAlgorithms, SSH2_PATCH_MARKER } from '../../src/sshconn/index.js';
import { ssh2PatchProblems, unpatchedError, type Ssh2Modules } from '../../src/sshconn/patch.js';
import { encodeCertificateLine } from '../../src/sshcert/index.js';
import { certify, keyPair } from './fixtures.js';

const PATCH_FILE = join(REPO, 'patches', 'ssh2+1.17.0.patch');
const REINSTALL = 'run npm ci (patch-package applies patches/ssh2+1.17.0.patch)';

interface Hunk {
  file: string;
  /** The hunk's lines as they must read after patching (context and added lines). */
  after: string[];
  added: number;
}

/** Splits a unified diff (patch-package's format) into per-file hunks. */
function parsePatch(text: string): Hunk[] {
  const hunks: Hunk[] = [];
  let file = '';
  let cur: Hunk | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('diff --git ')) {
      cur = undefined;
      continue;
    }
    if (line.startsWith('+++ b/')) {
      file = line.slice('+++ b/'.length);
      continue;
    }
    if (line.startsWith('--- ') || line.startsWith('index ')) continue;
    if (line.startsWith('@@')) {
      cur = { file, after: [], added: 0 };
      hunks.push(cur);
      continue;
    }
    if (!cur) continue;
    if (line.startsWith('+')) {
      cur.after.push(line.slice(1));
      cur.added++;
    } else if (line.startsWith(' ')) cur.after.push(line.slice(1));
    else if (line === '\\ No newline at end of file' || line.startsWith('-')) continue;
  }
  return hunks;
}

describe('the ssh2 certificate patch', () => {
  test('is applied: assertSsh2Patched passes and the marker matches', () => {
    assert.doesNotThrow(() => assertSsh2Patched());
    const constants = readFileSync(join(REPO, 'node_modules/ssh2/lib/protocol/constants.js'), 'utf8');
    assert.ok(constants.includes(`CERT_PATCH: '${SSH2_PATCH_MARKER}'`), `marker ${SSH2_PATCH_MARKER} missing: ${REINSTALL}`);
  });

  test('every hunk of patches/ssh2+1.17.0.patch is present in node_modules/ssh2', () => {
    const hunks = parsePatch(readFileSync(PATCH_FILE, 'utf8'));
    assert.ok(hunks.length >= 10, `expected the patch to have hunks, found ${hunks.length}`);
    const files = new Set(hunks.map((h) => h.file));
    for (const f of ['lib/protocol/kex.js', 'lib/protocol/constants.js', 'lib/protocol/Protocol.js', 'lib/protocol/keyParser.js', 'lib/agent.js']) {
      assert.ok(files.has(`node_modules/ssh2/${f}`), `the patch no longer touches ${f}`);
    }
    for (const h of hunks) {
      const installed = readFileSync(join(REPO, h.file), 'utf8');
      assert.ok(installed.includes(h.after.join('\n')), `${h.file}: a hunk of the patch is not applied (${h.after.find((l, i) => i > 2 && l.trim()) ?? ''}): ${REINSTALL}`);
    }
  });

  test('is pinned: exact ssh2 1.17.0 in package.json and node_modules, and postinstall applies it', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; scripts: Record<string, string> };
    assert.equal(pkg.dependencies['ssh2'], '1.17.0', 'the patch is for ssh2 1.17.0 exactly; regenerate it (npx patch-package ssh2) before changing the version');
    assert.equal(pkg.scripts['postinstall'], 'patch-package --error-on-fail');
    const installed = JSON.parse(readFileSync(join(REPO, 'node_modules/ssh2/package.json'), 'utf8')) as { version: string };
    assert.equal(installed.version, '1.17.0', REINSTALL);
  });

  test('ssh2 parses a certificate as a certificate: its algorithm, the whole blob, and the certified key', () => {
    const ca = keyPair('ed25519', 'patch-ca');
    for (const kind of ['ed25519', 'ecdsa-p256', 'rsa-3072'] as const) {
      const kp = keyPair(kind, 'patch-user');
      const cert = certify(ca, kp.publicKey, { type: 'user', principals: ['alice'] });
      for (const input of [encodeCertificateLine(cert, 'c'), cert.blob]) {
        const parsed = ssh2.utils.parseKey(input);
        assert.ok(!(parsed instanceof Error) && !Array.isArray(parsed), `${kind}: ${String(parsed)}`);
        assert.equal(parsed.type, cert.algorithm);
        assert.ok(parsed.getPublicSSH().equals(cert.blob), `${kind}: getPublicSSH() is not the certificate blob`);
        // Unpatched ssh2 read the nonce as the key: the PEM would differ.
        assert.equal(parsed.getPublicPEM().trim(), kp.publicKey.key.export({ format: 'pem', type: 'spki' }).toString().trim());
      }
    }
  });

  test('ssh2 accepts certificate host key algorithms in a client config', () => {
    const algos: string[] = clientHostKeyAlgorithms();
    assert.equal(algos[0], 'ssh-ed25519-cert-v01@openssh.com');
    assert.ok(algos.includes('rsa-sha2-512-cert-v01@openssh.com'));
    assert.ok(!algos.includes('ssh-rsa-cert-v01@openssh.com'), 'SHA-1 certificates are not offered');
    // Unpatched, ssh2 throws "Unsupported algorithm" for these names when building the client.
    const c = new ssh2.Client();
    c.on('error', () => {});
    assert.doesNotThrow(() => c.connect({ host: '127.0.0.1', port: 9, username: 'nobody', algorithms: { serverHostKey: clientHostKeyAlgorithms() } }));
    c.end();
  });

  test('reverses cleanly to pristine ssh2 1.17.0, which the guard refuses with the fix; applying it again satisfies the guard', async () => {
    const patchTool = requireTool('patch', 'apt-get install -y patch');
    const tmp = tempDir('ssh2-pristine');
    try {
      // A private copy of ssh2; its dependencies are linked to the installed ones.
      cpSync(join(REPO, 'node_modules/ssh2'), join(tmp.dir, 'node_modules/ssh2'), { recursive: true });
      const deps = JSON.parse(readFileSync(join(REPO, 'node_modules/ssh2/package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
      for (const dep of Object.keys({ ...deps['dependencies'], ...deps['optionalDependencies'] })) {
        const real = join(REPO, 'node_modules', dep);
        if (existsSync(real) && !existsSync(join(tmp.dir, 'node_modules/ssh2/node_modules', dep))) {
          mkdirSync(join(tmp.dir, 'node_modules'), { recursive: true });
          symlinkSync(real, join(tmp.dir, 'node_modules', dep));
        }
      }
      const load = (): Ssh2Modules => {
        const req = createRequire(join(tmp.dir, 'probe.js'));
        for (const k of Object.keys(req.cache)) if (k.startsWith(tmp.dir)) delete req.cache[k];
        return { ssh2: req('ssh2') as Ssh2Modules['ssh2'], constants: req('ssh2/lib/protocol/constants.js') as Ssh2Modules['constants'] };
      };
      const patchArgs = ['-p1', '--no-backup-if-mismatch', '-d', tmp.dir, '-i', PATCH_FILE];

      const reversed = await run(patchTool, ['-R', ...patchArgs]);
      assert.equal(reversed.code, 0, `the patch does not reverse cleanly, so node_modules/ssh2 differs from it:\n${reversed.stdout}${reversed.stderr}\n${REINSTALL}`);
      const problems = ssh2PatchProblems(load());
      assert.equal(problems.length, 2, problems.join('; '));
      assert.match(unpatchedError(problems).message, /run npm ci \(patch-package applies patches\/ssh2\+1\.17\.0\.patch\)/);

      const applied = await run(patchTool, patchArgs);
      assert.equal(applied.code, 0, applied.stdout + applied.stderr);
      assert.deepEqual(ssh2PatchProblems(load()), []);
    } finally {
      tmp.cleanup();
    }
  });
});
