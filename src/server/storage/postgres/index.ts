/**
 * The `postgres` storage backend (placeholder until it is built: see backend.ts).
 */
import type { StorageConfig } from '../../../config/index.js';
import type { BackendOptions, StateBackend } from '../backend.js';

/**
 * Connects to the database named by `storage`, applies the schema migrations
 * under an advisory lock and starts listening for changes.
 * @throws StoreUnavailableError naming the address when the database cannot be reached.
 */
export async function openPostgresBackend(_storage: Extract<StorageConfig, { type: 'postgres' }>, _opts: BackendOptions): Promise<StateBackend> {
  throw new Error('the postgres backend is not built yet');
}
