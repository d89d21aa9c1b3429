/**
 * `tctl storage rekey`: after a rotation of `storage.encryption_key_file`
 * (the new key there, the old one in `previous_encryption_key_files` on every
 * proxy), re-encrypts every sealed value in the database with the new key, in
 * one transaction; then the old key can be removed from the config.
 */
import { UserError } from '../../../errors.js';
import type { StateBackend } from '../../../server/storage/backend.js';
import type { Deps } from '../../deps.js';

/** A store that can re-encrypt what it sealed (the postgres backend). */
interface Rekeyable {
  reencryptAll(): Promise<{ caKeys: number; pending: number }>;
}

/**
 * Re-encrypts and reports how many values were rewritten (stderr).
 * @throws UserError REKEY_NOT_APPLICABLE for a `dir` store (its keys are 0600 files, not encrypted by Jumpgate).
 */
export async function run(ctx: { store: StateBackend }, deps: Deps): Promise<void> {
  const store = ctx.store as StateBackend & Partial<Rekeyable>;
  if (store.kind !== 'postgres' || typeof store.reencryptAll !== 'function') {
    throw new UserError('REKEY_NOT_APPLICABLE', `the state store at ${store.location} is a data directory: its CA keys are 0600 files, not encrypted with a storage key`, {
      hint: 'tctl storage rekey is for storage.type postgres (after changing storage.encryption_key_file)',
    });
  }
  const n = await store.reencryptAll();
  deps.io.stderr.write(`re-encrypted ${n.caKeys} CA key(s) and ${n.pending} pending login(s) in ${store.location} with storage.encryption_key_file; ` + `the keys in previous_encryption_key_files can now be removed from every proxy's config.\n`);
}
