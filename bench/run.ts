/**
 * `npm run bench`: every benchmark, each compared in the same run against the
 * baseline it must beat. Prints Markdown; with `--write` it also replaces the
 * matching section of BENCHMARKS.md (between `<!-- bench:NAME -->` markers).
 * Usage: npm run bench [-- --only sign|login|proxy|recording|tls-routing|storage|web|startup] [-- --write]
 */
import { benchSigning } from './sign.js';
import { benchLogin, median } from './login.js';
import { benchProxy, formatProxyBench, formatRecordingBench, formatTlsRoutingBench, type ProxyBenchResult } from './proxy.js';
import { benchStartup, formatStartupBench } from './startup.js';
import { benchStorage, formatStorageBench } from './storage.js';
import { benchWebTerminal, formatWebTerminalBench } from './web-terminal.js';
import { BENCHMARKS_FILE, formatSection, writeSections } from './report.js';

interface Section {
  name: string;
  title: string;
  run: () => Promise<string>;
}

/** One proxy run feeds both the `proxy` and the `tls-routing` sections (the same run, the same machine state). */
let proxyRun: Promise<ProxyBenchResult> | undefined;
const proxyResult = () => (proxyRun ??= benchProxy());

const sections: Section[] = [
  {
    name: 'login',
    title: 'Login: tsh login machine time and server issuance under concurrent logins',
    run: async () => {
      const r = await benchLogin();
      const ms = (x: number) => `${Math.round(x)} ms`;
      return [
        '| what | result | OpenSSH doing the nearest job | result |',
        '|---|---|---|---|',
        `| \`tsh login\` start to certificate in ssh-agent, browser automated (median of ${r.loginMs.length}) | ${ms(median(r.loginMs))} | \`ssh-keygen -t\` + \`ssh-keygen -s\` + \`ssh-add\` by hand (median of ${r.opensshManualMs.length}) | ${ms(median(r.opensshManualMs))} |`,
        `| whole logins through the server over HTTP, ${r.concurrency} at once (${r.flows} logins) | ${r.flowsPerSec.toFixed(1)}/s | \`ssh-keygen -s\`, one after another | ${r.sshKeygenSignPerSec.toFixed(1)}/s |`,
        '',
        'The login time includes the browser: Chromium loading three IdP pages and the proxy\'s redirects. The issuance row',
        'is the full server pipeline per login (login start, IdP authorization, code exchange, ID token and userinfo,',
        'role mapping, signing, fsynced audit events, sealing), with oidc-provider on the same two cores.',
      ].join('\n');
    },
  },
  {
    name: 'sign',
    title: 'Certificate signing (ed25519 CA, one process)',
    run: async () => {
      const r = await benchSigning();
      const verdict = r.ratio >= 0.7 ? 'meets' : 'MISSES';
      return [
        '| what | per second |',
        '|---|---|',
        `| raw \`crypto.sign\` (ed25519, 200 bytes) | ${fmt(r.rawSignPerSec)} |`,
        `| \`signCertificate\` (user cert, 1 principal, 5 extensions, 24h) | ${fmt(r.certSignPerSec)} |`,
        '',
        `Ratio ${(r.ratio * 100).toFixed(1)}% of the raw rate: ${verdict} the 70% target.`,
      ].join('\n');
    },
  },
  {
    name: 'proxy',
    title: 'SSH through the proxy vs OpenSSH ProxyJump (plain ssh with the generated config; loopback, private sshd node)',
    run: async () =>
      [
        formatProxyBench(await proxyResult()),
        '',
        'Jumpgate path: ssh → ProxyCommand `tsh proxy ssh` (ssh2, user certificate) → jumpgate (ssh2, relay) → sshd.',
        'Baseline: ssh → ProxyJump via a second sshd (same host certificate, same user certificate) → sshd.',
        'Both carry the end-to-end ssh session inside a second encrypted hop; the runs alternate.',
      ].join('\n'),
  },
  {
    name: 'recording',
    title: 'Session recording (auth.session_recording: proxy) vs OpenSSH ProxyJump, same run',
    run: async () =>
      [
        formatRecordingBench(await benchProxy({ recording: true, bytes: 256 * 1024 ** 2, setupRuns: 10 })),
        '',
        'Jumpgate path: ssh → ProxyCommand `tsh proxy ssh` → jumpgate (ssh2: the outer hop, then an ssh2 server that ends the user\'s',
        'session, records it, and an ssh2 client with a per-session certificate) → sshd. Every byte is decrypted and encrypted once more',
        'than without recording. Baseline: ssh → ProxyJump via a second sshd → sshd; the runs alternate.',
      ].join('\n'),
  },
  {
    name: 'tls-routing',
    title: 'TLS routing: SSH through the web port (mutual TLS) vs OpenSSH ProxyJump and direct ssh (plain ssh with the generated config; loopback)',
    run: async () =>
      [
        formatTlsRoutingBench(await proxyResult()),
        '',
        'TLS path: ssh → ProxyCommand `tsh proxy ssh` (one TLS 1.3 connection, TLS_AES_128_GCM_SHA256, X.509 client certificate) → jumpgate web port (ALPN jumpgate-ssh/1, socket pipe) → sshd.',
        'One encryption layer on the outer hop, done by OpenSSL inside Node; the end-to-end ssh session to the node is unchanged.',
      ].join('\n'),
  },
  {
    name: 'storage',
    title: 'Shared state: login issuance and short SSH sessions per second, one proxy on dir, one on postgres, two on postgres behind HAProxy',
    run: async () => formatStorageBench(await benchStorage()),
  },
  {
    name: 'web',
    title: 'Web terminal: keystroke-to-echo latency against plain ssh through the proxy',
    run: async () => formatWebTerminalBench(await benchWebTerminal()),
  },
  {
    name: 'startup',
    title: 'Start-up: tsh version, tsh status and the tsh proxy ssh set-up against node -e 0',
    run: async () => formatStartupBench(await benchStartup()),
  },
];

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  const write = args.includes('--write');
  const done: Array<{ name: string; section: string }> = [];
  for (const s of sections) {
    if (only && s.name !== only) continue;
    process.stderr.write(`bench: ${s.name}...\n`);
    const section = formatSection(s.title, await s.run());
    process.stdout.write(section + '\n');
    done.push({ name: s.name, section });
  }
  if (write) {
    writeSections(done);
    process.stderr.write(`bench: updated ${BENCHMARKS_FILE}\n`);
  }
}

await main();
