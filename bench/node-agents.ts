/**
 * `npm run load -- --agents 1000`: what joined nodes cost the proxy.
 *
 * The real `jumpgate start` (dist/, its own process, so its CPU time and RSS
 * can be read from /proc/<pid>) with `node_agent.heartbeat_ttl` (default the
 * production default, 90s: one heartbeat per node every 30 s). AGENTS
 * simulated node agents in this process, over real HTTPS with the agent's
 * protocol (api/schema.ts): each makes its host key, joins with one reusable
 * token (tctl tokens add), then heartbeats in a loop (the long poll the real
 * agent runs), from 50 loopback source addresses (127.0.3.1-50; the proxy
 * caps connections and joins per source).
 *
 * Phases: the proxy's RSS after start (baseline) → joins → one heartbeat
 * interval to settle → the measured window of WINDOW seconds: the proxy's
 * CPU time (utime+stime) over it, as a share of one core, and its RSS at the
 * end minus the baseline. Any refused heartbeat or join makes the exit code 1.
 *
 * Usage: npm run load -- --agents 1000 [--window 60 --heartbeat-ttl 90s]
 */
import { Agent, request } from 'node:https';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { startCluster } from '../test/helpers/cluster.js';
import { freePort } from '../test/helpers/sshd.js';
import { runProgram, tempDir } from '../test/helpers/tools.js';
import { formatPublicKeyLine, generateKeyPair } from '../src/sshcert/index.js';
import { API } from '../src/api/types.js';

interface Opts {
  agents: number;
  windowSeconds: number;
  heartbeatTtl: string;
}

function parse(argv: string[]): Opts {
  const get = (k: string) => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return { agents: Number(get('--agents') ?? 1000), windowSeconds: Number(get('--window') ?? 60), heartbeatTtl: get('--heartbeat-ttl') ?? '90s' };
}

/** utime and stime (fields 14, 15 of /proc/.../stat) in seconds. */
function cpuOf(statFile: string): { user: number; system: number } {
  const stat = readFileSync(statFile, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

interface ProcSample {
  cpuSeconds: number;
  userSeconds: number;
  rssMiB: number;
  /** CPU seconds by thread: `main` (the event loop), else by /proc/<pid>/task/<tid>/comm (Node 20 names its V8 and libuv helper threads `node` too). */
  threads: Map<string, number>;
}

function procStat(pid: number): ProcSample {
  const { user, system } = cpuOf(`/proc/${pid}/stat`);
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))!;
  const threads = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = tid === String(pid) ? 'main' : readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const c = cpuOf(`/proc/${pid}/task/${tid}/stat`);
      threads.set(name, (threads.get(name) ?? 0) + c.user + c.system);
    } catch {
      // the thread ended
    }
  }
  return { cpuSeconds: user + system, userSeconds: user, rssMiB: Number(rss[1]) / 1024, threads };
}

function post(agent: Agent, port: number, path: string, body: unknown, credential?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: '127.0.0.1', port, method: 'POST', path, headers: { 'content-type': 'application/json', 'content-length': data.length, ...(credential ? { authorization: `Bearer ${credential}` } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown> }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

export async function main(argv: string[]): Promise<void> {
  const o = parse(argv);
  const tmp = tempDir('node-agents-load');
  const webPort = await freePort();
  const cluster = await startCluster(
    tmp.dir,
    [
      'cluster_name: load.test',
      `data_dir: ${join(tmp.dir, 'data')}`,
      'proxy:',
      `  web_listen_addr: 127.0.0.1:${webPort}`,
      `  ssh_listen_addr: 127.0.0.1:${await freePort()}`,
      'node_agent:',
      `  heartbeat_ttl: ${o.heartbeatTtl}`,
      '',
    ].join('\n'),
  );
  let stop = false;
  let failures = 0;
  let reconnects = 0;
  let heartbeats = 0;
  try {
    const t = await runProgram('tctl', ['--config', cluster.configFile, 'tokens', 'add', '--type=node', '--reusable', '--ttl=1h', '--format=json']);
    const token = (JSON.parse(t.stdout) as { token: string }).token;
    await new Promise((r) => setTimeout(r, 2_000));
    const base = procStat(cluster.pid);
    console.error(`proxy pid ${cluster.pid}: baseline RSS ${base.rssMiB.toFixed(1)} MiB; joining ${o.agents} agents`);
    const sources = Array.from({ length: 50 }, (_, i) => new Agent({ keepAlive: true, rejectUnauthorized: false, localAddress: `127.0.3.${i + 1}`, maxSockets: Infinity }));
    const joinStart = Date.now();
    const joined: Array<{ name: string; addr: string; labels: Record<string, string>; credential: string; agent: Agent; state: string; interval: number }> = [];
    for (let batch = 0; batch < o.agents; batch += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, o.agents - batch) }, async (_, j) => {
          const i = batch + j;
          const name = `sim${i}`;
          const agent = sources[i % sources.length]!;
          const key = generateKeyPair('ed25519');
          // The real agent sends the same --addr and labels in its join and every heartbeat (agent.ts).
          const addr = `10.${(i >> 8) & 255}.${i & 255}.1:22`;
          const labels = { env: 'load', n: String(i) };
          const body = { token, name, addr, labels, public_key: formatPublicKeyLine(key.publicKey) };
          // A kept-alive connection the server closed (keepAliveTimeout) as the request went out: retried after 2 s,
          // as a restarted agent would; counted.
          let r: Awaited<ReturnType<typeof post>> | undefined;
          for (let attempt = 0; !r; attempt++) {
            try {
              r = await post(agent, webPort, API.nodeJoin, body);
            } catch (err) {
              reconnects++;
              if (attempt >= 3) throw err;
              await new Promise((res) => setTimeout(res, 2_000));
            }
          }
          if (r.status !== 200) {
            failures++;
            console.error(`join ${name}: ${r.status} ${JSON.stringify(r.json)}`);
            return;
          }
          // From now on one kept-alive connection per node, like the real agent.
          joined.push({ name, addr, labels, interval: r.json['heartbeat_interval_seconds'] as number, credential: r.json['credential'] as string, agent: new Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false, localAddress: `127.0.3.${(i % 50) + 1}` }), state: r.json['state'] as string });
        }),
      );
    }
    for (const s of sources) s.destroy();
    const afterJoins = procStat(cluster.pid);
    console.error(`${joined.length} joined in ${((Date.now() - joinStart) / 1000).toFixed(1)} s; proxy RSS ${afterJoins.rssMiB.toFixed(1)} MiB`);
    // The interval the proxy told the agents (join answer heartbeat_interval_seconds): how long it holds a heartbeat.
    const interval = joined[0]?.interval ?? 1;
    const loops = joined.map(async (n, i) => {
      // Agents start at different times: the first round spread over one interval (1,000 TLS handshakes at
      // once overflow the listen backlog and reset connections).
      await new Promise((r) => setTimeout(r, (i * interval * 1000) / joined.length));
      while (!stop) {
        try {
          const r = await post(n.agent, webPort, API.nodeHeartbeat, { name: n.name, addr: n.addr, labels: n.labels, state: n.state }, n.credential);
          if (r.status !== 200) {
            failures++;
            console.error(`heartbeat ${n.name}: ${r.status} ${JSON.stringify(r.json)}`);
            await new Promise((res) => setTimeout(res, 5_000));
            continue;
          }
          heartbeats++;
          n.state = r.json['state'] as string;
        } catch (err) {
          // A kept-alive socket the server closed as the request went out: retry once at once, as HTTP clients do.
          if (!stop) {
            reconnects++;
            if (reconnects <= 5) console.error(`heartbeat ${n.name}: ${(err as Error).message} (retrying in 2 s, as the agent does)`);
            await new Promise((res) => setTimeout(res, 2_000));
          }
        }
      }
    });
    await new Promise((r) => setTimeout(r, (interval + 5) * 1000));
    const a = procStat(cluster.pid);
    const hb0 = heartbeats;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, o.windowSeconds * 1000));
    const b = procStat(cluster.pid);
    const hb1 = heartbeats;
    const secs = (Date.now() - t0) / 1000;
    const cpuPct = ((b.cpuSeconds - a.cpuSeconds) / secs) * 100;
    const rssDelta = b.rssMiB - base.rssMiB;
    const nodesLs = await runProgram('tctl', ['--config', cluster.configFile, 'nodes', 'ls', '--format=json']);
    const online = (JSON.parse(nodesLs.stdout) as Array<{ status?: string }>).filter((n) => n.status === 'online').length;
    console.log(
      [
        `agents: ${joined.length} joined, ${online} online in tctl nodes ls; heartbeat_ttl ${o.heartbeatTtl} (one heartbeat per node every ${interval} s)`,
        `heartbeats in the ${secs.toFixed(0)} s window: ${hb1 - hb0} (${((hb1 - hb0) / secs).toFixed(1)}/s)`,
        `proxy CPU: ${cpuPct.toFixed(2)}% of one core (user ${(((b.userSeconds - a.userSeconds) / secs) * 100).toFixed(2)}%, system ${(((b.cpuSeconds - b.userSeconds - (a.cpuSeconds - a.userSeconds)) / secs) * 100).toFixed(2)}%; by thread: ${[...b.threads].map(([k, v]) => `${k} ${(((v - (a.threads.get(k) ?? 0)) / secs) * 100).toFixed(2)}%`).join(', ')}); ${(((b.cpuSeconds - a.cpuSeconds) * 1000) / Math.max(1, hb1 - hb0)).toFixed(2)} ms per answered heartbeat`,
        `1-minute load average: ${loadavg()[0]!.toFixed(2)} at the end of the window`,
        `proxy RSS: ${base.rssMiB.toFixed(1)} MiB before joins, ${afterJoins.rssMiB.toFixed(1)} MiB after them (no connection held), ${b.rssMiB.toFixed(1)} MiB with ${joined.length} nodes: +${rssDelta.toFixed(1)} MiB (${((rssDelta * 1000) / Math.max(1, joined.length)).toFixed(1)} MiB per 1,000 nodes)`,
        `failures: ${failures}; reconnects (connection reset, retried): ${reconnects}`,
      ].join('\n'),
    );
    stop = true;
    for (const n of joined) n.agent.destroy();
    await Promise.race([Promise.allSettled(loops), new Promise((r) => setTimeout(r, 2_000))]);
    if (failures > 0 || online < joined.length) process.exitCode = 1;
    if (reconnects > 0 || failures > 0) console.error(`--- proxy log (last lines) ---\n${cluster.log().split('\n').slice(-15).join('\n')}`);
  } finally {
    stop = true;
    await cluster.stop();
    tmp.cleanup();
  }
}
