/**
 * What starting tsh costs, against `node -e 0` in the same run:
 *
 * - `tsh version` and `tsh status` (a logged-in TSH_HOME, so status reads and
 *   parses the profile and certificate), through bin/tsh under this Node and
 *   as the linux single executable (npm run build:bin) when this machine can run it;
 * - `tsh proxy ssh --check-login`, the ssh_config block's `Match exec`: what
 *   `--relogin=auto` adds to every `ssh node1` (a second, short tsh run);
 * - `tsh proxy ssh` set-up, what every `ssh node1` pays first: from starting
 *   the ProxyCommand until the node's sshd banner comes out of its stdout
 *   (credentials, the proxy's SSH handshake with the user certificate, the
 *   node channel), against a running cluster and a private sshd.
 *
 * Every command runs RUNS times, round-robin (so a noisy machine hits all
 * alike); the figures are medians. Also reported: which modules each command
 * evaluates (an instrumented build of dist/tsh.cjs whose esbuild module
 * wrappers record their first call), the audit behind the target.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { startProxyCluster } from '../test/helpers/proxy-cluster.js';
import { fakeLogin } from '../test/helpers/tsh-home.js';
import { REPO, builtProgram, run, tempDir } from '../test/helpers/tools.js';
import { median } from './login.js';

export interface StartupRow {
  what: string;
  ms: number[];
}

export interface StartupResult {
  baseline: StartupRow;
  rows: StartupRow[];
  proxySetup: StartupRow[];
  /** Per command: modules evaluated, their bytes in the bundle, and the packages among them. */
  modules: Array<{ command: string; count: number; kib: number; packages: string[] }>;
  load: [number, number];
  seaNote?: string;
}

/** The target from issue 6: `tsh status` at most this many times `node -e 0`. */
export const STATUS_TARGET = 1.5;
/** The target from issue 14: `tsh proxy ssh` on the TLS route until the node's banner, single executable, at most this many times `node -e 0`. */
export const TLS_PROXY_TARGET = 1.5;

export async function benchStartup(opts: { runs?: number } = {}): Promise<StartupResult> {
  const runs = opts.runs ?? 20;
  const tsh = builtProgram('tsh');
  const tmp = tempDir('bench-startup');
  const cluster = await startProxyCluster(tmp.dir);
  try {
    const user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home'), username: 'root', roles: ['user'] });
    const env = user.env;
    const proxyArgs = ['proxy', 'ssh', `--proxy=localhost:${cluster.webPort}`, 'root@node1:22'];
    // The same user logged in with TLS routing: `tsh proxy ssh` then takes the TLS route on the web port (node-route.ts).
    const tlsUser = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-tls'), username: 'root', roles: ['user'], tlsRouting: true });

    const sea = await seaTsh();
    const commands: Array<{ what: string; cmd: string; args: string[]; until?: RegExp; env?: NodeJS.ProcessEnv }> = [
      { what: '`node -e 0`', cmd: process.execPath, args: ['-e', '0'] },
      { what: '`tsh version` (bin/tsh, this Node)', cmd: process.execPath, args: [tsh, 'version'] },
      { what: '`tsh status` (bin/tsh, this Node)', cmd: process.execPath, args: [tsh, 'status'] },
      ...(sea.exe
        ? [
            { what: '`tsh version` (single executable)', cmd: sea.exe, args: ['version'] },
            { what: '`tsh status` (single executable)', cmd: sea.exe, args: ['status'] },
          ]
        : []),
      // What the block's `Match exec` adds to every ssh to a node (--relogin=auto), with a valid login.
      { what: '`tsh proxy ssh --check-login` (the block\'s Match exec; bin/tsh)', cmd: process.execPath, args: [tsh, 'proxy', 'ssh', '--check-login', '--relogin=auto', `--tsh-home=${user.paths.home}`, `--proxy=localhost:${cluster.webPort}`] },
      { what: '`tsh proxy ssh` until the node\'s SSH banner (bin/tsh)', cmd: process.execPath, args: [tsh, ...proxyArgs], until: /^SSH-2\.0-/m },
      ...(sea.exe ? [{ what: '`tsh proxy ssh` until the node\'s SSH banner (single executable)', cmd: sea.exe, args: proxyArgs, until: /^SSH-2\.0-/m }] : []),
      { what: '`tsh proxy ssh` on the TLS route (web port, mutual TLS) until the node\'s SSH banner (bin/tsh)', cmd: process.execPath, args: [tsh, ...proxyArgs], until: /^SSH-2\.0-/m, env: tlsUser.env },
      ...(sea.exe ? [{ what: '`tsh proxy ssh` on the TLS route until the node\'s SSH banner (single executable)', cmd: sea.exe, args: proxyArgs, until: /^SSH-2\.0-/m, env: tlsUser.env }] : []),
      // NODE_EXTRA_CA_CERTS (set here to the whole system bundle) is parsed at start by Node 20, `node -e 0` included, and at the
      // first TLS context by Node 22 (the single executable): the same rows without it, each compared with `node -e 0` without it.
      ...(env['NODE_EXTRA_CA_CERTS'] !== undefined
        ? [
            { what: '`node -e 0`, NODE_EXTRA_CA_CERTS unset', cmd: process.execPath, args: ['-e', '0'], env: withoutExtraCa(env) },
            { what: '`tsh proxy ssh` on the TLS route until the node\'s SSH banner (bin/tsh, NODE_EXTRA_CA_CERTS unset)', cmd: process.execPath, args: [tsh, ...proxyArgs], until: /^SSH-2\.0-/m, env: withoutExtraCa(tlsUser.env) },
            ...(sea.exe ? [{ what: '`tsh proxy ssh` on the TLS route until the node\'s SSH banner (single executable, NODE_EXTRA_CA_CERTS unset)', cmd: sea.exe, args: proxyArgs, until: /^SSH-2\.0-/m, env: withoutExtraCa(tlsUser.env) }] : []),
          ]
        : []),
    ];
    const times = commands.map(() => [] as number[]);
    // Warm-up: page cache, the cluster's and sshd's first connection.
    for (const c of commands) await timed(c.cmd, c.args, c.env ?? env, c.until);
    const load0 = loadavg()[0]!;
    for (let i = 0; i < runs; i++) {
      for (const [k, c] of commands.entries()) times[k]!.push(await timed(c.cmd, c.args, c.env ?? env, c.until));
    }
    const load1 = loadavg()[0]!;
    const rows = commands.map((c, k) => ({ what: c.what, ms: times[k]!, proxy: Boolean(c.until) }));
    return {
      baseline: rows[0]!,
      rows: rows.slice(1).filter((r) => !r.proxy),
      proxySetup: rows.filter((r) => r.proxy),
      modules: await auditModules(env, proxyArgs, tlsUser.env),
      load: [load0, load1],
      ...(sea.note ? { seaNote: sea.note } : {}),
    };
  } finally {
    await cluster.stop();
    tmp.cleanup();
  }
}

function withoutExtraCa(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const e = { ...env };
  delete e['NODE_EXTRA_CA_CERTS'];
  return e;
}

/**
 * Wall time from spawning the command to its exit (or, with `until`, to that
 * text on its stdout; then it is killed). Fails on a non-zero exit: a bench of
 * a command that errors out early would flatter it.
 */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, until?: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let done = false;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString('latin1');
      if (until && !done && until.test(out)) {
        done = true;
        resolve(Number(process.hrtime.bigint() - t0) / 1e6);
        child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (done) return;
      if (code === 0 && !until) resolve(Number(process.hrtime.bigint() - t0) / 1e6);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}${until ? ` before printing ${until}` : ''}:\n${out}\n${err}`));
    });
  });
}

/** This machine's single-executable tsh, built (or found up to date) by build-bin, if pkg.config.json has a target for it. */
export async function seaTsh(): Promise<{ exe?: string; note?: string }> {
  const target = `${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;
  const config = JSON.parse(readFileSync(join(REPO, 'pkg.config.json'), 'utf8')) as { targets: Record<string, { suffix?: string }> };
  if (!config.targets[target]) return { note: `no ${target} target in pkg.config.json: single-executable rows left out` };
  const r = await run(process.execPath, [join(REPO, 'scripts', 'build-bin.mjs'), `--target=${target}`, '--program=tsh'], { cwd: REPO, timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`build-bin failed:\n${r.stderr}`);
  return { exe: join(REPO, 'dist', 'bin', target, `tsh${config.targets[target]!.suffix ?? ''}`) };
}

/**
 * Which modules `tsh version`, `tsh status` and `tsh proxy ssh` evaluate: a
 * copy of dist/tsh.cjs built with a metafile, whose esbuild wrappers
 * (`__esm` for lazily imported ES modules, `__commonJS` for CommonJS ones)
 * record their first call. Modules outside any wrapper run at load.
 */
async function auditModules(env: NodeJS.ProcessEnv, proxyArgs: string[], tlsEnv: NodeJS.ProcessEnv): Promise<StartupResult['modules']> {
  // A plain .mjs build script (no types): imported by a computed name so tsc does not look for declarations.
  const bundleScript = '../scripts/build-bundle.mjs';
  const { bundleOptions } = (await import(bundleScript)) as { bundleOptions: (n: string, o: object) => object };
  // Next to dist/tsh.cjs, so its require('./vendor/...') finds the same chunks.
  const file = join(REPO, 'dist', '.startup-audit-tsh.cjs');
  const seen = join(REPO, 'dist', '.startup-audit-seen.json');
  try {
    const r = await build({ ...bundleOptions('tsh', { outfile: file, metafile: true }), sourcemap: false, logLevel: 'error' } as Parameters<typeof build>[0]);
    const inputs = Object.values((r.metafile as Metafile).outputs).find((o) => o.entryPoint)!.inputs;
    let text = readFileSync(file, 'utf8');
    const wrapped = new Set([...text.matchAll(/= __(?:esm|commonJS)\(\{\n\s*"([^"]+)"/g)].map((m) => m[1]!));
    const inline = Object.keys(inputs).filter((k) => !wrapped.has(k));
    const hook = 'var __export = ';
    if (!text.includes(hook) || !text.includes('var __esm = ') || !text.includes('var __commonJS = ')) throw new Error('esbuild\'s module helpers changed shape: update auditModules');
    text = text.replace(
      hook,
      `var __jgSeen = [];
process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(seen)}, JSON.stringify(__jgSeen)));
for (const [name, orig] of [['esm', __esm], ['cjs', __commonJS]]) {
  const wrap = (cb, ...rest) => { const id = __getOwnPropNames(cb)[0]; const init = orig(cb, ...rest); let first = true; return function () { if (first) { first = false; __jgSeen.push(id); } return init(); }; };
  if (name === 'esm') __esm = wrap; else __commonJS = wrap;
}
${hook}`,
    );
    writeFileSync(file, text);
    const out: StartupResult['modules'] = [];
    const runs: Array<{ args: string[]; env: NodeJS.ProcessEnv; label?: string }> = [
      { args: ['version'], env },
      { args: ['status'], env },
      { args: proxyArgs, env, label: 'tsh proxy ssh (SSH port)' },
      { args: proxyArgs, env: tlsEnv, label: 'tsh proxy ssh (TLS route)' },
    ];
    for (const { args, env: runEnv, label } of runs) {
      rmSync(seen, { force: true });
      // proxy ssh is stopped after its set-up (stdin closed); the exit hook still writes what ran.
      await run(process.execPath, ['-e', `require(${JSON.stringify(file)}).main(${JSON.stringify(args)})`], { env: runEnv, timeoutMs: 30_000 });
      if (!existsSync(seen)) throw new Error(`the instrumented tsh ${args[0]} wrote no module list`);
      const all = [...inline, ...(JSON.parse(readFileSync(seen, 'utf8')) as string[])];
      const chunks = all.map((k) => /^vendor-chunk:([^/]+)/.exec(k)?.[1]).filter((c): c is string => Boolean(c));
      const bytes = all.reduce((a, k) => a + (inputs[k]?.bytesInOutput ?? 0), 0) + [...new Set(chunks)].reduce((a, c) => a + statSync(join(REPO, 'dist', 'vendor', `${c}.cjs`)).size, 0);
      const packages = [...new Set(all.map((k) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(k)?.[1] ?? (/^vendor-chunk:([^/]+)/.exec(k)?.[1] ? `vendor chunk ${/^vendor-chunk:([^/]+)/.exec(k)![1]}` : '')).filter(Boolean))];
      out.push({ command: label ?? `tsh ${args.slice(0, 2).join(' ')}`, count: all.length, kib: bytes / 1024, packages: packages.sort() });
    }
    return out;
  } finally {
    rmSync(file, { force: true });
    rmSync(seen, { force: true });
  }
}

/** The BENCHMARKS.md section. */
export function formatStartupBench(r: StartupResult): string {
  const base = median(r.baseline.ms);
  const f = (n: number) => n.toFixed(0);
  const lines = [
    `| command (median of ${r.baseline.ms.length}, wall time from spawn) | ms | vs \`node -e 0\` |`,
    '|---|---|---|',
    `| ${r.baseline.what} | ${f(base)} | 1.00x |`,
  ];
  // A row run without NODE_EXTRA_CA_CERTS is compared with `node -e 0` run without it (same environment on both sides).
  const unsetBase = [...r.rows, ...r.proxySetup].find((row) => /^`node -e 0`, NODE_EXTRA_CA_CERTS unset/.test(row.what));
  const baseOf = (what: string) => (/NODE_EXTRA_CA_CERTS unset/.test(what) && unsetBase ? median(unsetBase.ms) : base);
  for (const row of r.rows) {
    const ratio = median(row.ms) / (row === unsetBase ? base : baseOf(row.what));
    const target = /tsh status/.test(row.what) ? ` (target <= ${STATUS_TARGET}x: ${ratio <= STATUS_TARGET ? 'meets' : 'MISSES'})` : '';
    lines.push(`| ${row.what} | ${f(median(row.ms))} | ${ratio.toFixed(2)}x${target} |`);
  }
  for (const row of r.proxySetup) {
    const ratio = median(row.ms) / baseOf(row.what);
    // Issue 14's target: `tsh proxy ssh` on the TLS route to the node's banner, as the single executable.
    const target = /TLS route/.test(row.what) && /single executable/.test(row.what) ? ` (target <= ${TLS_PROXY_TARGET}x: ${ratio <= TLS_PROXY_TARGET ? 'meets' : 'MISSES'})` : '';
    lines.push(`| ${row.what} | ${f(median(row.ms))} | ${ratio.toFixed(2)}x${target} |`);
  }
  lines.push('', '| command | modules evaluated | KiB of JavaScript evaluated (bundle + chunks) | third-party packages evaluated |', '|---|---|---|---|');
  for (const m of r.modules) lines.push(`| \`${m.command}\` | ${m.count} | ${f(m.kib)} | ${m.packages.join(', ') || 'none'} |`);
  lines.push(
    '',
    'undici, ssh2 and node-forge live in chunks of their own (dist/vendor/, single-executable assets), parsed only by',
    'the commands that use them: V8 pre-parses every byte of a file it loads, and they were 1.7 MB of the 2.2 MB tsh',
    'bundle. The `tsh proxy ssh` set-up is tsh\'s start, its SSH handshake with the proxy (user certificate), and the',
    'node channel up to the node\'s banner: what every `ssh node1` waits for before its own handshake.',
    'The single executable carries V8\'s code cache of its script for its own platform (build-bin.mjs codeCacheFor). Node 20',
    'parses NODE_EXTRA_CA_CERTS (set on this machine to the whole system bundle) at start, in every process, `node -e 0`',
    'included; Node 22 (the single executable) parses it at the first TLS context, which the TLS route makes. The rows marked',
    '"unset" run without it and are compared with `node -e 0` without it (ratio column): the same environment on both sides.',
    `1-minute load average ${r.load[0].toFixed(1)} before, ${r.load[1].toFixed(1)} after (2 cores): other work on the machine moves these figures.`,
  );
  if (r.seaNote) lines.push('', r.seaNote);
  return lines.join('\n');
}
