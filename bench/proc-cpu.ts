/**
 * CPU time per process while a benchmark runs: utime + stime from
 * /proc/<pid>/stat (proc(5), fields 14 and 15, in clock ticks) of every
 * descendant of this process, polled every POLL_MS and once at the end, so a
 * process that exits between polls loses at most POLL_MS of its time (and
 * one that lives less than POLL_MS may be missed: start-up helpers, not the
 * data path). Linux only; elsewhere the result is empty.
 *
 * Each process is named by its role: `jumpgate` and `tsh` from their command
 * line (both are `node`), else its comm (sshd, ssh, head, cat...). Several
 * processes of one role add up (ProxyJump's jump and node sshd are both `sshd`).
 */
import { readdirSync, readFileSync } from 'node:fs';

const POLL_MS = 100;
/** USER_HZ: clock ticks per second of /proc/<pid>/stat times (100 on every Linux build this runs on). */
const TICKS_PER_SECOND = 100;

interface Seen {
  role: string;
  comm: string;
  ticks: number;
}

function readStat(pid: number): { comm: string; ppid: number; ticks: number } | undefined {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined; // gone
  }
  const close = s.lastIndexOf(')');
  const f = s.slice(close + 2).split(' ');
  return { comm: s.slice(s.indexOf('(') + 1, close), ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
}

function roleOf(pid: number, comm: string): string {
  if (comm !== 'node' && comm !== 'MainThread') return comm;
  let cmd = '';
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
  } catch {
    return comm;
  }
  return /bin\/tsh\0|tsh\.cjs/.test(cmd) ? 'tsh' : /bin\/jumpgate\0|jumpgate\.cjs/.test(cmd) ? 'jumpgate' : comm;
}

/**
 * Starts polling; `stop()` returns CPU seconds by role spent between start
 * and stop (processes already running at start count only their time after it).
 */
export function trackCpu(): { stop: () => Record<string, number> } {
  if (process.platform !== 'linux') return { stop: () => ({}) };
  const start = new Map<number, Seen>();
  const now = new Map<number, Seen>();
  const foreign = new Set<number>();
  const scan = (into: Map<number, Seen>) => {
    let pids: number[];
    try {
      pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
    } catch {
      return;
    }
    const stats = new Map<number, { comm: string; ppid: number; ticks: number }>();
    for (const pid of pids) {
      if (foreign.has(pid) || pid === process.pid) continue;
      const st = readStat(pid);
      if (st) stats.set(pid, st);
    }
    for (const [pid, st] of stats) {
      // Ours when the parent chain reaches this process (or we already knew it: its parent may have exited since).
      let mine = into.has(pid) || now.has(pid);
      for (let p = st.ppid, hops = 0; !mine && p > 1 && hops < 32; hops++) {
        if (p === process.pid) mine = true;
        else p = stats.get(p)?.ppid ?? 0;
      }
      if (!mine) {
        foreign.add(pid);
        continue;
      }
      const prev = into.get(pid);
      // exec() changes comm (bash → ssh, sh → node): name it again.
      const role = prev && prev.comm === st.comm ? prev.role : roleOf(pid, st.comm);
      into.set(pid, { role, comm: st.comm, ticks: st.ticks });
    }
  };
  scan(start);
  const timer = setInterval(() => scan(now), POLL_MS);
  return {
    stop: () => {
      clearInterval(timer);
      scan(now);
      const out: Record<string, number> = {};
      for (const [pid, s] of now) {
        const before = start.get(pid);
        const ticks = s.ticks - (before && before.comm === s.comm ? before.ticks : 0);
        if (ticks > 0) out[s.role] = (out[s.role] ?? 0) + ticks / TICKS_PER_SECOND;
      }
      return out;
    },
  };
}
