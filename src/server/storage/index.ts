/**
 * Opens the state store named by the config's `storage:` (backend.ts has the
 * interface and its rules): `dir` (default) → the data directory;
 * `postgres` → the database (./postgres/).
 */
import type { ServerConfig } from '../../config/index.js';
import type { BackendOptions, StateBackend } from './backend.js';
import { DirBackend } from './dir/index.js';
import { openPostgresBackend } from './postgres/index.js';

export * from './backend.js';

/**
 * The backend of `config.storage`, ready to use.
 * @throws StoreUnavailableError naming the store's location when it cannot be reached (postgres);
 *   UserError WRITE_DENIED etc. when the data directory cannot be created (dir).
 */
export async function openStateBackend(config: ServerConfig, opts: BackendOptions): Promise<StateBackend> {
  if (config.storage.type === 'postgres') return openPostgresBackend(config.storage, opts, config.recordings.dir);
  return new DirBackend(config.dataDir, opts, config.recordings.dir);
}
