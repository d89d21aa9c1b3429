/**
 * `+last-route` (paths.ts): which path a profile's last connection to a node
 * took, for `tsh status`. Kept apart from node-route.ts so `tsh status`
 * loads no dialer.
 */
import { readFileSync } from 'node:fs';
import * as v from 'valibot';
import { writeFileAtomic } from '../util/atomic-write.js';
import type { Credentials } from './credentials.js';
import type { TshPaths } from './paths.js';

/** The two ways to a node: `tls` (the web port, TLS routing) or `ssh` (the SSH proxy port). */
export type RoutePath = 'tls' | 'ssh';

const LastRouteSchema = v.object({ path: v.picklist(['tls', 'ssh']), node: v.pipe(v.string(), v.maxLength(253)), at: v.pipe(v.string(), v.maxLength(40)) });

/** What `+last-route` holds: the path of the profile's last connection, to which node, when (ISO). */
export type LastRoute = v.InferOutput<typeof LastRouteSchema>;

/**
 * Records the path of a connection; a failure to write is not the
 * connection's problem (ignored). Runs on every `ssh node1` before the first
 * byte flows, so it is NOT fsynced (`durable: false`: two fsyncs cost 5-50 ms
 * here): a temp file renamed over the old one, so a reader
 * sees the old or the new record; after a crash the file may be empty or
 * old, which readLastRoute treats as none (a status hint, not state).
 */
export function recordRoute(paths: TshPaths, creds: Credentials, path: RoutePath, node: string, now: Date): void {
  try {
    writeFileAtomic(paths.lastRoute(creds.profile.name), JSON.stringify({ path, node, at: now.toISOString() }) + '\n', 0o600, { durable: false });
  } catch {
    // a read-only TSH_HOME: tsh status then shows nothing
  }
}

/** The profile's last connection path, or undefined (none yet, or unreadable). */
export function readLastRoute(paths: TshPaths, profile: string): LastRoute | undefined {
  try {
    const r = v.safeParse(LastRouteSchema, JSON.parse(readFileSync(paths.lastRoute(profile), 'utf8')));
    return r.success ? r.output : undefined;
  } catch {
    return undefined;
  }
}
