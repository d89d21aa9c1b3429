/**
 * Certificate signing throughput against its ceiling, in one process: raw
 * Ed25519 `crypto.sign` over 200 bytes versus a full `signCertificate` (user
 * certificate, 1 principal, the 5 standard extensions, 24 h). Rounds of the
 * two alternate so machine noise hits both alike; medians are reported.
 */
import { randomBytes, sign } from 'node:crypto';
import { CertRequest, generateKeyPair, signCertificate, STANDARD_USER_EXTENSIONS } from '../src/sshcert/index.js';

export interface SigningResult {
  rawSignPerSec: number;
  certSignPerSec: number;
  /** certSignPerSec / rawSignPerSec */
  ratio: number;
}

/** Runs `fn` in batches for about `ms` milliseconds; returns operations per second. */
function rate(fn: () => void, ms: number): number {
  const batch = 100;
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < batch; i++) fn();
    n += batch;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Measures raw Ed25519 signing and certificate signing; `seconds` is the total measuring time (default 6). */
export async function benchSigning(opts: { seconds?: number } = {}): Promise<SigningResult> {
  const seconds = opts.seconds ?? 6;
  const rounds = 5;
  const slice = (seconds * 1000) / (2 * rounds);

  const ca = generateKeyPair('ed25519');
  const user = generateKeyPair('ed25519');
  const data = randomBytes(200);
  const req = new CertRequest({
    publicKey: user.publicKey,
    type: 'user',
    keyId: 'alice',
    principals: ['alice'],
    ttlSeconds: 24 * 3600,
    extensions: Object.fromEntries(STANDARD_USER_EXTENSIONS.map((e) => [e, ''])),
  });
  const now = new Date();
  const raw = (): void => {
    sign(null, data, ca.privateKey);
  };
  const cert = (): void => {
    signCertificate(req, ca, now);
  };

  // Warm-up: let V8 optimise both paths before anything is counted.
  rate(raw, 300);
  rate(cert, 300);
  await new Promise((r) => setImmediate(r));

  const raws: number[] = [];
  const certs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    raws.push(rate(raw, slice));
    certs.push(rate(cert, slice));
    // Yield between rounds so a caller's timers and GC get a turn.
    await new Promise((r) => setImmediate(r));
  }
  const rawSignPerSec = median(raws);
  const certSignPerSec = median(certs);
  return { rawSignPerSec, certSignPerSec, ratio: certSignPerSec / rawSignPerSec };
}
