import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { writeError } from './atomic-write.js';

/**
 * Creates a directory 0700 (with its parents), or tightens an existing one
 * that others can read. Windows has no such modes: nothing is chmod'ed there.
 */
export function ensurePrivateDir(dir: string, platform: NodeJS.Platform = process.platform): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (platform !== 'win32' && (statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  } catch (err) {
    throw writeError(dir, err);
  }
}
