/**
 * The `postgres` storage backend (placeholder until it is built: see backend.ts).
 */
import type { StorageConfig } from '../../../config/index.js';
import type { StateBackend } from '../backend.js';

/** What a backend needs from the process that opens it. */
export interface BackendOptions {
  /** The writer's id stamped on audit events: a proxy's server_id, or tctl@<host>. */
  serverId: string;
  clock: () => Date;
  /** Warnings an admin must see (server log / tctl stderr). */
  warn: (line: string) => void;
}

/**
 * Connects to the database named by `storage`, applies the schema migrations
 * under an advisory lock and starts listening for changes.
 * @throws StoreUnavailableError naming the address when the database cannot be reached.
 */
export async function openPostgresBackend(_storage: Extract<StorageConfig, { type: 'postgres' }>, _opts: BackendOptions): Promise<StateBackend> {
  throw new Error('the postgres backend is not built yet');
}
