/**
 * The SSH proxy against OpenSSH ProxyJump, in one run on this machine:
 *
 * - throughput: 1 GiB from `head -c 1G /dev/zero` through `ssh node1 'cat > /dev/null'`
 *   (a) with only the generated config (ProxyCommand tsh proxy ssh → jumpgate → sshd), and
 *   (b) with ProxyJump through a second sshd acting as jump host;
 * - set-up: `ssh node1 true`, median of RUNS, same two paths.
 *
 * Both paths use the same key, certificate, node and OpenSSH defaults; they
 * alternate run by run so drift on a noisy machine hits both alike.
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startProxyCluster } from '../test/helpers/proxy-cluster.js';
import { startSshd } from '../test/helpers/sshd.js';
import { fakeLogin } from '../test/helpers/tsh-home.js';
import { REPO, requireTool, tempDir } from '../test/helpers/tools.js';
import { seaTsh } from './startup.js';
import { trackCpu } from './proc-cpu.js';

export interface ProxyBenchResult {
  bytes: number;
  proxyMBps: number[];
  jumpMBps: number[];
  proxySetupMs: number[];
  jumpSetupMs: number[];
  /** `ssh -J user@proxy:port node1` through Jumpgate's direct-tcpip (no tsh in the path), for comparison. */
  dashJMBps: number[];
  dashJSetupMs: number[];
  /** The TLS route on the web port (generated config, profile with TLS routing): the same ssh through `tsh proxy ssh` over mutual TLS. */
  tlsMBps: number[];
  tlsSetupMs: number[];
  /** The TLS route with the linux single executable as the ProxyCommand (what release users run); empty when this machine has no target for it. */
  tlsSeaSetupMs: number[];
  /** The TLS route (bin/tsh) with NODE_EXTRA_CA_CERTS unset; empty when the environment does not set it. */
  tlsNoExtraCaSetupMs: number[];
  /** Why tlsSeaSetupMs is empty, when it is. */
  seaNote?: string;
  /** ssh straight to the node's sshd: the limit. */
  directMBps: number[];
  directSetupMs: number[];
  /**
   * CPU seconds per GiB by process role (bench/proc-cpu.ts: jumpgate, tsh,
   * sshd, ssh, head, cat...), one record per throughput run, for the TLS
   * route, ProxyJump and direct paths.
   */
  cpu: { tls: Record<string, number>[]; jump: Record<string, number>[]; direct: Record<string, number>[] };
  /** 1-minute load average before and after: the figures are only as steady as the machine was quiet. */
  load: [number, number];
}

const GIB = 1024 ** 3;

/**
 * `recording: true` runs the same comparison with `auth.session_recording:
 * proxy` (the proxy ends each session, records it and opens its own to the
 * node: server/proxy/recording-proxy.ts).
 */
export async function benchProxy(opts: { bytes?: number; throughputRuns?: number; setupRuns?: number; recording?: boolean } = {}): Promise<ProxyBenchResult> {
  const bytes = opts.bytes ?? GIB;
  const ssh = requireTool('ssh', 'apt-get install -y openssh-client');
  const tmp = tempDir('bench-proxy');
  const cluster = await startProxyCluster(tmp.dir, opts.recording ? { authYaml: ['  session_recording: proxy'] } : {});
  const jumpDir = join(tmp.dir, 'jump');
  mkdirSync(jumpDir);
  const jump = await startSshd({ dir: jumpDir, hostKey: cluster.hostKeyFile, hostCertificate: `${cluster.hostKeyFile}-cert.pub`, trustedUserCaKeys: cluster.userCaFile, extra: ['LogLevel ERROR'] });
  let failed = false;
  try {
    const user = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home'), username: 'root', roles: ['user'] });
    const tlsUser = await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-tls'), username: 'root', roles: ['user'], tlsRouting: true });
    // Set-up only, not with recording: the same TLS route with the single executable as the ProxyCommand, and bin/tsh without NODE_EXTRA_CA_CERTS.
    const sea = opts.recording ? {} : await seaTsh();
    const seaUser = sea.exe ? await fakeLogin({ config: cluster.config, home: join(tmp.dir, 'home-sea'), username: 'root', roles: ['user'], tlsRouting: true, selfCommand: [sea.exe] }) : undefined;
    const noCaEnv = { ...tlsUser.env };
    delete noCaEnv['NODE_EXTRA_CA_CERTS'];
    const withNoCa = !opts.recording && tlsUser.env['NODE_EXTRA_CA_CERTS'] !== undefined;
    const key = user.paths.privateKey(user.profile.name, user.profile.username);
    const baseline = join(tmp.dir, 'proxyjump_config');
    writeFileSync(
      baseline,
      [
        'Host jump',
        '    HostName 127.0.0.1',
        `    Port ${jump.port}`,
        'Host direct',
        '    HostName 127.0.0.1',
        `    Port ${cluster.node.port}`,
        'Host node1',
        '    HostName 127.0.0.1',
        `    Port ${cluster.node.port}`,
        '    ProxyJump jump',
        'Host *',
        '    User root',
        // The jump sshd presents the node's host certificate (principal node1).
        '    HostKeyAlias node1',
        `    IdentityFile ${key}`,
        `    CertificateFile ${key}-cert.pub`,
        '    IdentitiesOnly yes',
        `    UserKnownHostsFile ${user.paths.knownHosts()}`,
        '    StrictHostKeyChecking yes',
        '    BatchMode yes',
        '',
      ].join('\n'),
    );
    const env = user.env;
    const viaProxy = ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', 'root@node1'];
    const viaJump = ['-F', baseline, 'node1'];
    const viaTls = ['-F', tlsUser.sshConfigFile, '-o', 'BatchMode=yes', 'root@node1'];
    const viaDirect = ['-F', baseline, 'direct'];
    const viaSea = seaUser ? ['-F', seaUser.sshConfigFile, '-o', 'BatchMode=yes', 'root@node1'] : undefined;
    const viaDashJ = ['-F', user.sshConfigFile, '-o', 'BatchMode=yes', '-J', `root@localhost:${cluster.sshPort}`, 'root@node1'];
    const timed = async (args: string[], shellPipe?: string, envOf: NodeJS.ProcessEnv = env, cpuInto?: Record<string, number>[]): Promise<number> => {
      const cpu = cpuInto ? trackCpu() : undefined;
      const t0 = process.hrtime.bigint();
      const code = await new Promise<number | null>((resolve, reject) => {
        const child = shellPipe
          ? spawn('bash', ['-c', `${shellPipe} | ${[ssh, ...args].map(q).join(' ')}`], { env: envOf, stdio: ['ignore', 'ignore', 'pipe'] })
          : spawn(ssh, args, { env: envOf, stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
        child.on('error', reject);
        child.on('close', (c) => (c === 0 ? resolve(c) : reject(new Error(`ssh ${args.join(' ')} exited ${c}:\n${err}`))));
      });
      void code;
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (cpu && cpuInto) cpuInto.push(Object.fromEntries(Object.entries(cpu.stop()).map(([role, s]) => [role, s / (bytes / GIB)])));
      return ms;
    };
    // Warm-up: page cache, sshd's first fork, Node's first start.
    await timed([...viaProxy, 'true']);
    await timed([...viaJump, 'true']);

    await timed([...viaDashJ, 'true']);
    await timed([...viaTls, 'true'], undefined, tlsUser.env);
    await timed([...viaDirect, 'true']);
    if (viaSea) await timed([...viaSea, 'true'], undefined, seaUser!.env);
    if (withNoCa) await timed([...viaTls, 'true'], undefined, noCaEnv);
    const r: ProxyBenchResult = {
      bytes,
      proxyMBps: [],
      jumpMBps: [],
      proxySetupMs: [],
      jumpSetupMs: [],
      dashJMBps: [],
      dashJSetupMs: [],
      tlsMBps: [],
      tlsSetupMs: [],
      tlsSeaSetupMs: [],
      tlsNoExtraCaSetupMs: [],
      ...(sea.note ? { seaNote: sea.note } : {}),
      directMBps: [],
      directSetupMs: [],
      cpu: { tls: [], jump: [], direct: [] },
      load: [loadavg()[0]!, 0],
    };
    const tls = (args: string[], pipe?: string, cpuInto?: Record<string, number>[]) => timed([...viaTls, ...args], pipe, tlsUser.env, cpuInto);
    for (let i = 0; i < (opts.setupRuns ?? 15); i++) {
      r.proxySetupMs.push(await timed([...viaProxy, 'true']));
      r.jumpSetupMs.push(await timed([...viaJump, 'true']));
      r.dashJSetupMs.push(await timed([...viaDashJ, 'true']));
      r.tlsSetupMs.push(await tls(['true']));
      if (viaSea) r.tlsSeaSetupMs.push(await timed([...viaSea, 'true'], undefined, seaUser!.env));
      if (withNoCa) r.tlsNoExtraCaSetupMs.push(await timed([...viaTls, 'true'], undefined, noCaEnv));
      r.directSetupMs.push(await timed([...viaDirect, 'true']));
    }
    const source = `head -c ${bytes} /dev/zero`;
    for (let i = 0; i < (opts.throughputRuns ?? 3); i++) {
      r.proxyMBps.push(bytes / 1e6 / ((await timed([...viaProxy, 'cat > /dev/null'], source)) / 1000));
      r.jumpMBps.push(bytes / 1e6 / ((await timed([...viaJump, 'cat > /dev/null'], source, env, r.cpu.jump)) / 1000));
      r.dashJMBps.push(bytes / 1e6 / ((await timed([...viaDashJ, 'cat > /dev/null'], source)) / 1000));
      r.tlsMBps.push(bytes / 1e6 / ((await tls(['cat > /dev/null'], source, r.cpu.tls)) / 1000));
      r.directMBps.push(bytes / 1e6 / ((await timed([...viaDirect, 'cat > /dev/null'], source, env, r.cpu.direct)) / 1000));
    }
    r.load[1] = loadavg()[0]!;
    return r;
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    // What the server said about it (warnings, refused or dropped connections), for a run that failed.
    if (failed) process.stderr.write(`--- jumpgate log ---\n${cluster.log()}\n--- node sshd (tail) ---\n${cluster.node.log().slice(-4000)}\n`);
    await jump.stop();
    await cluster.stop();
    tmp.cleanup();
  }
}

function q(s: string): string {
  return /^[A-Za-z0-9_/.,:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The BENCHMARKS.md section. */
export function formatProxyBench(r: ProxyBenchResult): string {
  const tp = median(r.proxyMBps) / median(r.jumpMBps);
  const su = median(r.proxySetupMs) / median(r.jumpSetupMs);
  const f = (n: number) => n.toFixed(0);
  return [
    '| what | Jumpgate proxy (generated ssh config) | OpenSSH ProxyJump via sshd | ratio | target |',
    '|---|---|---|---|---|',
    `| 1 GiB \`cat > /dev/null\`, MB/s (median of ${r.proxyMBps.length}; runs) | ${f(median(r.proxyMBps))} (${r.proxyMBps.map(f).join(', ')}) | ${f(median(r.jumpMBps))} (${r.jumpMBps.map(f).join(', ')}) | ${tp.toFixed(2)}x | >= 1.0x: ${tp >= 1 ? 'meets' : 'MISSES'} |`,
    `| \`ssh node1 true\`, ms (median of ${r.proxySetupMs.length}) | ${f(median(r.proxySetupMs))} | ${f(median(r.jumpSetupMs))} | ${su.toFixed(2)}x | <= 1.0x: ${su <= 1 ? 'meets' : 'MISSES'} |`,
    '',
    `1-minute load average ${r.load[0].toFixed(1)} before, ${r.load[1].toFixed(1)} after (2 cores): other work on the machine moves these figures by ±30% or more.`,
    '',
    `For comparison, \`ssh -J user@proxy:port node1\` through Jumpgate (direct-tcpip, no tsh in the path): ${f(median(r.dashJMBps))} MB/s (${r.dashJMBps.map(f).join(', ')}), set-up ${f(median(r.dashJSetupMs))} ms.`,
  ].join('\n');
}

/** The BENCHMARKS.md section of recording mode (targets: throughput >= 0.8x ProxyJump, set-up <= 1.2x). */
export function formatRecordingBench(r: ProxyBenchResult): string {
  const tp = median(r.proxyMBps) / median(r.jumpMBps);
  const su = median(r.proxySetupMs) / median(r.jumpSetupMs);
  const f = (n: number) => n.toFixed(0);
  const mib = Math.round(r.bytes / 1024 ** 2);
  return [
    '| what | Jumpgate, recording on (generated ssh config) | OpenSSH ProxyJump via sshd | ratio | target |',
    '|---|---|---|---|---|',
    `| ${mib} MiB \`cat > /dev/null\`, MB/s (median of ${r.proxyMBps.length}; runs) | ${f(median(r.proxyMBps))} (${r.proxyMBps.map(f).join(', ')}) | ${f(median(r.jumpMBps))} (${r.jumpMBps.map(f).join(', ')}) | ${tp.toFixed(2)}x | >= 0.8x: ${tp >= 0.8 ? 'meets' : 'MISSES'} |`,
    `| \`ssh node1 true\`, ms (median of ${r.proxySetupMs.length}) | ${f(median(r.proxySetupMs))} | ${f(median(r.jumpSetupMs))} | ${su.toFixed(2)}x | <= 1.2x: ${su <= 1.2 ? 'meets' : 'MISSES'} |`,
    '',
    `1-minute load average ${r.load[0].toFixed(1)} before, ${r.load[1].toFixed(1)} after (2 cores): other work on the machine moves these figures by ±30% or more.`,
    '',
    `For comparison, \`ssh -J user@proxy:port node1\` with recording on (direct-tcpip): ${f(median(r.dashJMBps))} MB/s (${r.dashJMBps.map(f).join(', ')}), set-up ${f(median(r.dashJSetupMs))} ms.`,
  ].join('\n');
}

/** The BENCHMARKS.md section of TLS routing: the same run's figures, the web port's TLS route against ProxyJump and direct ssh. */
export function formatTlsRoutingBench(r: ProxyBenchResult): string {
  const f = (n: number) => n.toFixed(0);
  const tls = median(r.tlsMBps);
  const jump = median(r.jumpMBps);
  const direct = median(r.directMBps);
  const su = median(r.tlsSetupMs) / median(r.jumpSetupMs);
  return [
    '| what | TLS route (generated ssh config) | OpenSSH ProxyJump via sshd | direct ssh to the node | TLS / ProxyJump | TLS / direct | targets |',
    '|---|---|---|---|---|---|---|',
    `| 1 GiB \`cat > /dev/null\`, MB/s (median of ${r.tlsMBps.length}; runs) | ${f(tls)} (${r.tlsMBps.map(f).join(', ')}) | ${f(jump)} (${r.jumpMBps.map(f).join(', ')}) | ${f(direct)} (${r.directMBps.map(f).join(', ')}) | ${(tls / jump).toFixed(2)}x | ${(tls / direct).toFixed(2)}x | >= 1.3x ProxyJump: ${tls / jump >= 1.3 ? 'meets' : 'MISSES'}; >= 0.8x direct: ${tls / direct >= 0.8 ? 'meets' : 'MISSES'} |`,
    `| \`ssh node1 true\`, ms (median of ${r.tlsSetupMs.length}) | ${f(median(r.tlsSetupMs))} | ${f(median(r.jumpSetupMs))} | ${f(median(r.directSetupMs))} | ${su.toFixed(2)}x | ${(median(r.tlsSetupMs) / median(r.directSetupMs)).toFixed(2)}x | <= 0.8x ProxyJump: ${su <= 0.8 ? 'meets' : 'MISSES'} |`,
    '',
    ...(r.tlsSeaSetupMs.length
      ? [`\`ssh node1 true\` on the TLS route with the linux single executable as the ProxyCommand (what a release user runs; Node ${SEA_NODE}): ${f(median(r.tlsSeaSetupMs))} ms, ${(median(r.tlsSeaSetupMs) / median(r.jumpSetupMs)).toFixed(2)}x ProxyJump (same run, alternating).`]
      : r.seaNote ? [r.seaNote] : []),
    ...(r.tlsNoExtraCaSetupMs.length
      ? [`The same with NODE_EXTRA_CA_CERTS unset (this machine sets it to the whole system bundle, which Node parses in every tsh run on the TLS route: Node 20 when crypto starts, Node 22 at the first TLS context): ${f(median(r.tlsNoExtraCaSetupMs))} ms, ${(median(r.tlsNoExtraCaSetupMs) / median(r.jumpSetupMs)).toFixed(2)}x ProxyJump.`]
      : []),
    `1-minute load average ${r.load[0].toFixed(1)} before, ${r.load[1].toFixed(1)} after (2 cores).`,
    '',
    ...formatCpuTable(r),
  ].join('\n');
}

/** The Node version inside the single executables (pkg.config.json). */
const SEA_NODE = (JSON.parse(readFileSync(join(REPO, 'pkg.config.json'), 'utf8')) as { nodeVersion: string }).nodeVersion;
/**
 * Where the CPU goes: median CPU seconds per GiB of each process role over
 * the throughput runs (bench/proc-cpu.ts), per path. Empty off Linux.
 */
function formatCpuTable(r: ProxyBenchResult): string[] {
  const paths: [string, Record<string, number>[]][] = [
    ['TLS route', r.cpu.tls],
    ['ProxyJump', r.cpu.jump],
    ['direct', r.cpu.direct],
  ];
  const roles = ['jumpgate', 'tsh', 'ssh', 'sshd', 'head', 'cat'];
  if (paths.every(([, runs]) => runs.length === 0)) return [];
  const cell = (runs: Record<string, number>[], role: string) => (runs.some((x) => x[role] !== undefined) ? median(runs.map((x) => x[role] ?? 0)).toFixed(2) : '-');
  const total = (runs: Record<string, number>[]) => median(runs.map((x) => Object.values(x).reduce((a, b) => a + b, 0))).toFixed(2);
  return [
    'CPU seconds per GiB by process (utime + stime from /proc, median of the runs; ssh and sshd add up both hops where there are two):',
    '',
    `| path | ${roles.join(' | ')} | all (incl. others started by the run) |`,
    `|---|${roles.map(() => '---|').join('')}---|`,
    ...paths.map(([name, runs]) => `| ${name} | ${roles.map((role) => cell(runs, role)).join(' | ')} | ${total(runs)} |`),
    ...(r.cpu.tls.length && r.cpu.jump.length && r.cpu.direct.length
      ? [
          '',
          `CPU per GiB of all processes, ProxyJump / TLS route: ${(Number(total(r.cpu.jump)) / Number(total(r.cpu.tls))).toFixed(2)}x; direct / TLS route: ${(Number(total(r.cpu.direct)) / Number(total(r.cpu.tls))).toFixed(2)}x. ` +
            'Where the paths are CPU-bound (2 cores), throughput can at best follow these CPU ratios; under load the MB/s ratios say more about the scheduler than about the paths.',
        ]
      : []),
  ];
}
