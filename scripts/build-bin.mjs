// npm run build:bin [-- --target=linux-x64,win-x64] [--program=tsh] [--strict]
//
// Single executables of tsh, tctl and jumpgate (Node "single executable
// applications"), driven by pkg.config.json:
//   1. bundle each program into one CommonJS file, and the big third-party
//      packages into chunks the executable carries as assets and compiles on
//      first use (scripts/build-bundle.mjs, sea mode);
//   2. fetch each target's Node binary from the npm registry (`npm pack
//      <package>@<nodeVersion>`, cached in dist/.node-cache) and the target's
//      keychain addon (@napi-rs/keyring-<target>, the version package-lock.json
//      pins, checked against the lock's integrity);
//   3. make the SEA blob with `node --experimental-sea-config` run by a Node of
//      exactly that version (this one when it matches, else the registry's build
//      of it for this machine): a blob only runs in the Node that made it;
//   4. inject it with postject into a copy of the target's Node binary
//      (child processes, two at a time: LIEF in WebAssembly takes ~0.7 GB each);
//      a Windows binary loses Node's Authenticode signature there, so its stale
//      certificate-table entry is cleared (an unsigned, re-signable .exe);
//      postject itself strips the Mach-O signature;
//   5. write dist/bin/<target>/<program>[.exe] and dist/bin/SHA256SUMS.
// An executable whose blob and Node binary are unchanged is not injected again.
// A target whose Node build is not on the registry is skipped and reported
// loudly (--strict makes that an error).
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const REPO = join(fileURLToPath(import.meta.url), '..', '..');
/** Node's SEA fuse (single-executable-applications.md); postject flips its last character to 1. */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** LIEF's notes about Node's own binaries that mean nothing for the result. */
const LIEF_NOISE = [/^warning: Can't find string offset for section name/, /^warning: The signature seems corrupted!/];

if (process.argv[2] === '--inject') {
  await injectOne(process.argv[3], process.argv[4], process.argv[5]);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}

async function main(argv) {
  const started = Date.now();
  process.chdir(REPO);
  const config = JSON.parse(readFileSync('pkg.config.json', 'utf8'));
  const opts = parseArgs(argv, config);
  const phase = timer();

  const { bundlePrograms, vendorChunksUsedBy } = await import('./build-bundle.mjs');
  await bundlePrograms({ sea: true, programs: opts.programs });
  // The third-party chunks each program's script loads on first use travel as assets too.
  const vendorAssets = Object.fromEntries(
    opts.programs.map((p) => [p, Object.fromEntries(vendorChunksUsedBy(readFileSync(`dist/sea/${p}.cjs`, 'utf8')).map((c) => [`vendor/${c}.cjs`, join(REPO, 'dist', 'sea', 'vendor', `${c}.cjs`)]))]),
  );
  phase('bundle');

  const cache = join(REPO, config.cache);
  mkdirSync(cache, { recursive: true });
  const keyringVersion = JSON.parse(readFileSync('node_modules/@napi-rs/keyring/package.json', 'utf8')).version;
  const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
  const needsKeyring = opts.programs.some((p) => config.assets?.[p]);
  // Downloads run side by side: they wait on the network, not the CPU.
  const fetched = await Promise.all(
    opts.targets.map(async (name) => {
      const target = config.targets[name];
      const nodeVersion = target.nodeVersion ?? config.nodeVersion;
      const [node, keyring] = await Promise.all([
        fetchPackageFile(cache, target.node, nodeVersion, (pkg) => pkg.bin?.node ?? pkg.bin),
        needsKeyring ? fetchKeyring(cache, target.keyring, keyringVersion, lock) : undefined,
      ]);
      return { name, target, nodeVersion, node, keyring };
    }),
  );
  const gaps = fetched.filter((f) => !f.node.ok).map((f) => ({ target: f.name, why: f.node.why }));
  const plans = fetched.filter((f) => f.node.ok);
  phase('fetch');

  // Blobs: one per (target, program); a program without assets has the same blob for every target of a Node version.
  const seaDir = join(REPO, 'dist', 'sea');
  const jobs = [];
  for (const plan of plans) {
    const builder = await blobBuilder(cache, config, plan.nodeVersion);
    const dir = join(seaDir, plan.name);
    mkdirSync(dir, { recursive: true });
    for (const program of opts.programs) {
      const assets = {
        ...vendorAssets[program],
        ...Object.fromEntries(Object.entries(config.assets?.[program] ?? {}).map(([asset, field]) => [asset, field === 'keyring' ? plan.keyring.file : field])),
      };
      const blob = join(dir, `${program}.blob`);
      const seaConfig = join(dir, `${program}.sea.json`);
      writeFileSync(
        seaConfig,
        JSON.stringify({ main: join(seaDir, `${program}.cjs`), output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: codeCacheFor(plan.name), assets }, null, 2),
      );
      execFileSync(builder, ['--experimental-sea-config', seaConfig], { stdio: 'pipe' });
      const out = join(REPO, config.out, plan.name, `${program}${plan.target.suffix ?? ''}`);
      const stampFile = join(dir, `${program}.stamp`);
      const stamp = sha256(JSON.stringify({ blob: sha256(readFileSync(blob)), node: plan.node.sha256, postject: postjectVersion(), format: plan.target.format }));
      const fresh = existsSync(out) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === `${stamp} ${sha256(readFileSync(out))}`;
      jobs.push({ plan, program, blob, out, stamp, stampFile, fresh });
    }
  }
  phase('blobs');

  const todo = jobs.filter((j) => !j.fresh);
  const parallel = Math.max(1, Math.min(todo.length, availableParallelism(), 2));
  await runPool(todo, parallel, async (job) => {
    mkdirSync(join(job.out, '..'), { recursive: true });
    const partial = `${job.out}.partial`;
    writeFileSync(partial, readFileSync(job.plan.node.file));
    await runInject(partial, job.blob, job.plan.target.format);
    const info = describeExecutable(readFileSync(partial));
    if (info.format !== job.plan.target.format || info.arch !== job.plan.target.arch || !info.seaFuseSet) {
      throw new Error(`${job.plan.name}/${job.program}: the result is ${JSON.stringify(info)}, expected ${job.plan.target.format} ${job.plan.target.arch} with the SEA fuse set`);
    }
    chmodSync(partial, 0o755);
    renameSync(partial, job.out);
    writeFileSync(job.stampFile, `${job.stamp} ${sha256(readFileSync(job.out))}`);
  });
  phase(`inject ×${todo.length} (${parallel} at a time)`);

  // A full build leaves no binary of a target it could not build: SHA256SUMS must never vouch for a stale one.
  if (opts.all) for (const g of gaps) rmSync(join(REPO, config.out, g.target), { recursive: true, force: true });
  const sums = writeChecksums(join(REPO, config.out));
  phase('SHA256SUMS');

  report({ config, jobs, gaps, sums, phases: phase.list, seconds: (Date.now() - started) / 1000 });
  return gaps.length > 0 && opts.strict ? 1 : 0;
}

/**
 * Whether a target's blob carries V8's code cache of the main script
 * (`useCodeCache`): only for this machine's own target, whose blob the
 * target's own Node makes. Node's docs (single-executable-applications.md)
 * require it off for a blob made for another platform: the cache only loads
 * on the platform that compiled it, and such an executable "might crash on
 * startup". It holds the main script's eagerly compiled code (the top level),
 * not what runs later. Measured for linux-x64 in BENCHMARKS.md "tsh start-up".
 */
export function codeCacheFor(target) {
  return target === `${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;
}

function parseArgs(argv, config) {
  const all = Object.keys(config.targets);
  let targets = all;
  let programs = config.programs;
  let strict = false;
  let explicitTargets = false;
  for (const arg of argv) {
    const [k, v] = arg.split('=', 2);
    if (k === '--target' && v) {
      targets = v.split(',');
      explicitTargets = true;
    } else if (k === '--program' && v) programs = v.split(',');
    else if (k === '--strict') strict = true;
    else throw new Error(`unknown argument ${arg}; usage: build-bin.mjs [--target=${all.join(',')}] [--program=${config.programs.join(',')}] [--strict]`);
  }
  for (const t of targets) if (!config.targets[t]) throw new Error(`unknown target ${t}; pkg.config.json has ${all.join(', ')}`);
  for (const p of programs) if (!config.programs.includes(p)) throw new Error(`unknown program ${p}; pkg.config.json has ${config.programs.join(', ')}`);
  return { targets, programs, strict, all: !explicitTargets && programs.length === config.programs.length };
}

function timer() {
  let last = Date.now();
  const list = [];
  const phase = (name) => {
    const now = Date.now();
    list.push(`${name} ${((now - last) / 1000).toFixed(1)} s`);
    last = now;
  };
  phase.list = list;
  return phase;
}

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

function postjectVersion() {
  return JSON.parse(readFileSync(join(REPO, 'node_modules/postject/package.json'), 'utf8')).version;
}

/**
 * One file out of an npm package, cached under `cache`: `pick(packageJson, fileList)`
 * names it. Returns { ok, file, sha256, integrity } or { ok: false, why } when
 * the registry has no such version (any other npm failure throws).
 */
async function fetchPackageFile(cache, pkg, version, pick) {
  const dir = join(cache, `${pkg.replace('/', '+')}@${version}`);
  const metaFile = join(dir, 'source.json');
  if (existsSync(metaFile)) {
    const meta = JSON.parse(readFileSync(metaFile, 'utf8'));
    if (existsSync(meta.file) && statSync(meta.file).size === meta.size) return { ok: true, ...meta };
  }
  const tmp = mkdtempSync(join(tmpdir(), 'jumpgate-build-bin-'));
  try {
    let packed;
    try {
      const { stdout } = await execFileAsync('npm', ['pack', `${pkg}@${version}`, '--pack-destination', tmp, '--json', '--silent'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      packed = JSON.parse(stdout)[0];
    } catch (err) {
      const text = `${err.stdout ?? ''}${err.stderr ?? ''}`;
      if (/E404|ETARGET|No match(ing)? (found for )?version|is not in this registry/.test(text)) {
        return { ok: false, why: `${pkg}@${version} is not on the npm registry${availableVersions(pkg, version)}` };
      }
      throw new Error(`npm pack ${pkg}@${version} failed:\n${text}`);
    }
    const tgz = join(tmp, packed.filename);
    const x = join(tmp, 'x');
    mkdirSync(x);
    await execFileAsync('tar', ['-xzf', tgz, '-C', x, 'package/package.json']);
    const pkgJson = JSON.parse(readFileSync(join(x, 'package', 'package.json'), 'utf8'));
    const list = (await execFileAsync('tar', ['-tzf', tgz], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })).stdout.split('\n');
    const inner = pick(pkgJson, list);
    if (typeof inner !== 'string') throw new Error(`${pkg}@${version}: cannot tell which file to take from the package`);
    await execFileAsync('tar', ['-xzf', tgz, '-C', x, `package/${inner.replace(/^\.\//, '')}`]);
    mkdirSync(dir, { recursive: true });
    const file = join(dir, inner.split('/').pop());
    const bytes = readFileSync(join(x, 'package', inner));
    writeFileSync(file, bytes, { mode: 0o755 });
    const meta = { file, size: bytes.length, sha256: sha256(bytes), integrity: packed.integrity, spec: `${pkg}@${version}` };
    writeFileSync(metaFile, JSON.stringify(meta, null, 2) + '\n');
    console.error(`fetched ${meta.spec} (${mb(bytes.length)}, ${packed.integrity.slice(0, 22)}…)`);
    return { ok: true, ...meta };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** For the gap report: which versions of the package the registry does have, near the one asked for. */
function availableVersions(pkg, version) {
  try {
    const all = JSON.parse(execFileSync('npm', ['view', pkg, 'versions', '--json', '--silent'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const major = version.split('.')[0];
    const same = [].concat(all).filter((v) => v.split('.')[0] === major);
    return same.length ? ` (it has ${major}.x: ${same.slice(-5).join(', ')})` : ` (newest: ${[].concat(all).slice(-3).join(', ')})`;
  } catch {
    return ' (the package itself is unknown)';
  }
}

/** The target's keychain addon: the lock file's version and integrity, not whatever the registry says today. */
async function fetchKeyring(cache, pkg, version, lock) {
  const locked = lock.packages?.[`node_modules/${pkg}`];
  if (!locked || locked.version !== version) {
    throw new Error(`package-lock.json pins no ${pkg}@${version} (the @napi-rs/keyring ${version} build for this target); run npm install`);
  }
  const got = await fetchPackageFile(cache, pkg, version, (_json, list) => list.find((f) => /^package\/[^/]+\.node$/.test(f))?.slice('package/'.length));
  if (!got.ok) throw new Error(got.why);
  if (got.integrity !== locked.integrity) throw new Error(`${pkg}@${version}: the registry's tarball (${got.integrity}) is not the one package-lock.json pins (${locked.integrity})`);
  return got;
}

/** A Node of exactly `version` for this machine, to run --experimental-sea-config. */
async function blobBuilder(cache, config, version) {
  if (process.versions.node === version) return process.execPath;
  const host = `${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;
  const target = config.targets[host];
  if (!target) throw new Error(`the SEA blob must be made by Node ${version}, this is ${process.version}, and pkg.config.json has no ${host} target to fetch it from`);
  const got = await fetchPackageFile(cache, target.node, version, (pkg) => pkg.bin?.node ?? pkg.bin);
  if (!got.ok) throw new Error(`the SEA blob must be made by Node ${version}: ${got.why}`);
  return got.file;
}

function runPool(items, n, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  return Promise.all(Array.from({ length: n }, worker));
}

/** Runs `--inject` in a child (LIEF's memory goes away with it), passing on all but LIEF's known noise. */
function runInject(exe, blob, format) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--inject', exe, blob, format], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    child.on('error', reject);
    child.on('close', (code) => {
      const rest = out.split('\n').filter((l) => l.trim() && !LIEF_NOISE.some((re) => re.test(l)));
      if (code === 0) {
        if (rest.length) console.error(rest.join('\n'));
        resolve();
      } else reject(new Error(`postject failed on ${exe} (exit ${code}):\n${rest.join('\n')}`));
    });
  });
}

/** Child side: the injection itself (Node's documented postject invocation), then the Windows signature entry. */
async function injectOne(exe, blob, format) {
  const { inject } = await import('postject');
  await inject(exe, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SEA_FUSE, machoSegmentName: 'NODE_SEA' });
  if (format === 'pe') clearAuthenticodeEntry(exe);
}

/**
 * After injection a Windows binary's Authenticode signature is gone (LIEF
 * rebuilt the file; the certificate table entry still points at where the
 * certificate used to be, now resource data). Clearing the entry leaves a
 * cleanly unsigned executable that signtool can sign (PE format,
 * "Optional Header Data Directories": entry 4 is the certificate table).
 */
export function clearAuthenticodeEntry(file) {
  const b = readFileSync(file);
  const pe = b.readUInt32LE(0x3c);
  const opt = pe + 24;
  const dirs = opt + (b.readUInt16LE(opt) === 0x20b ? 112 : 96);
  const entry = dirs + 4 * 8;
  if (b.readUInt32LE(entry) === 0 && b.readUInt32LE(entry + 4) === 0) return;
  b.writeUInt32LE(0, entry);
  b.writeUInt32LE(0, entry + 4);
  writeFileSync(file, b);
}

/**
 * What an executable is, from its headers: format (elf, macho, pe), CPU
 * (x64, arm64), whether the SEA fuse is set, and whether it carries a code
 * signature (Mach-O LC_CODE_SIGNATURE, PE certificate table).
 */
export function describeExecutable(b) {
  const seaFuseSet = b.includes(`${SEA_FUSE}:1`);
  if (b.length >= 64 && b.readUInt32BE(0) === 0x7f454c46) {
    const machine = b.readUInt16LE(18);
    return { format: 'elf', arch: { 62: 'x64', 183: 'arm64' }[machine] ?? `machine ${machine}`, seaFuseSet, signed: false };
  }
  if (b.length >= 32 && b.readUInt32LE(0) === 0xfeedfacf) {
    const cpu = b.readUInt32LE(4);
    let signed = false;
    for (let i = 0, off = 32; i < b.readUInt32LE(16); i++, off += b.readUInt32LE(off + 4)) if (b.readUInt32LE(off) === 0x1d) signed = true;
    return { format: 'macho', arch: { 0x01000007: 'x64', 0x0100000c: 'arm64' }[cpu] ?? `cpu ${cpu.toString(16)}`, seaFuseSet, signed };
  }
  if (b.length >= 64 && b.toString('latin1', 0, 2) === 'MZ') {
    const pe = b.readUInt32LE(0x3c);
    if (b.toString('latin1', pe, pe + 4) === 'PE\0\0') {
      const machine = b.readUInt16LE(pe + 4);
      const opt = pe + 24;
      const cert = opt + (b.readUInt16LE(opt) === 0x20b ? 112 : 96) + 4 * 8;
      return { format: 'pe', arch: { 0x8664: 'x64', 0xaa64: 'arm64' }[machine] ?? `machine ${machine.toString(16)}`, seaFuseSet, signed: b.readUInt32LE(cert + 4) !== 0 };
    }
  }
  return { format: 'unknown', arch: 'unknown', seaFuseSet, signed: false };
}

/** dist/bin/SHA256SUMS for every executable under dist/bin (`sha256sum -c SHA256SUMS` in dist/bin checks them). */
function writeChecksums(outDir) {
  const lines = [];
  if (existsSync(outDir)) {
    for (const t of readdirSync(outDir).sort()) {
      const dir = join(outDir, t);
      if (!statSync(dir).isDirectory()) continue;
      for (const f of readdirSync(dir).sort()) {
        if (f.endsWith('.partial')) continue;
        lines.push({ path: `${t}/${f}`, sha: sha256(readFileSync(join(dir, f))), size: statSync(join(dir, f)).size });
      }
    }
  }
  writeFileSync(join(outDir, 'SHA256SUMS'), lines.map((l) => `${l.sha}  ${l.path}\n`).join(''));
  return lines;
}

function mb(n) {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function report({ config, jobs, gaps, sums, phases, seconds }) {
  const out = relative(REPO, join(REPO, config.out));
  const lines = ['', `Single executables in ${out}/ (Node ${config.nodeVersion}, ${seconds.toFixed(1)} s: ${phases.join(', ')}):`];
  for (const j of jobs) {
    const rel = relative(join(REPO, config.out), j.out);
    const sum = sums.find((s) => s.path === rel);
    lines.push(`  ${rel.padEnd(24)} ${mb(sum?.size ?? 0).padStart(10)}  ${j.fresh ? 'up to date' : 'built'}  ${j.plan.nodeVersion !== config.nodeVersion ? `Node ${j.plan.nodeVersion}  ` : ''}sha256 ${sum?.sha.slice(0, 16)}…`);
  }
  lines.push(`  ${out}/SHA256SUMS lists ${sums.length} file(s); check with: (cd ${out} && sha256sum -c --ignore-missing SHA256SUMS)`);
  const built = new Set(jobs.map((j) => j.plan.target.format));
  const darwin = jobs.find((j) => j.plan.target.format === 'macho');
  if (darwin) {
    lines.push('', 'macOS: the darwin executables are UNSIGNED (injection removes Node\'s signature); macOS kills an unsigned arm64 binary.');
    lines.push(`  On a Mac, before running or shipping one: codesign --sign - --force ${relative(REPO, darwin.out)}   (ad hoc; or --sign "Developer ID Application: …" --options runtime, then notarize)`);
  }
  if (built.has('pe')) {
    lines.push('', 'Windows: the .exe files carry NO Authenticode signature (injection invalidates Node\'s; the stale entry was cleared).');
    lines.push('  They run, but SmartScreen may warn. To sign: signtool sign /fd SHA256 /tr http://timestamp.digicert.com /td SHA256 /f cert.pfx tsh.exe');
  }
  if (gaps.length) {
    const bar = '!'.repeat(78);
    lines.push('', bar, `!! NOT BUILT: ${gaps.length} target(s) have no Node ${config.nodeVersion} binary on the npm registry`);
    for (const g of gaps) lines.push(`!!   ${g.target}: ${g.why}`);
    lines.push('!! A SEA blob runs only in the Node version that made it. Either wait for the package, or pin that');
    lines.push('!! target to a version the registry has with "nodeVersion" in pkg.config.json (it will then ship an');
    lines.push('!! older Node, without the security fixes of the newer one).', bar);
  }
  console.error(lines.join('\n'));
}
