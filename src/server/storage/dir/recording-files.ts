/**
 * Recordings' bytes as files (`recordings.dir`, default <data_dir>/recordings
 * with storage.type dir; also used with postgres when `recordings.dir` is set):
 *
 *   <recordings.dir>/     0700
 *   └── <name>            0600  the asciicast file as written (e.g. <session id>.cast)
 *
 * `append` opens with O_APPEND, writes, fdatasyncs and closes: the writer
 * (server/recording/recorder.ts) calls it about once a second per session,
 * so a file is never held open between flushes and a crash loses at most
 * what was not yet flushed.
 */
import { createReadStream } from 'node:fs';
import { open, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { writeError } from '../../../util/atomic-write.js';
import { ensurePrivateDir } from '../../../util/private-dir.js';
import { checkRecordingName, type RecordingBackend } from '../backend.js';

/** Largest chunk `read` yields. */
export const READ_CHUNK_BYTES = 1 << 20;

export class DirRecordings implements RecordingBackend {
  private made = false;

  constructor(readonly dir: string) {}

  async append(name: string, data: Buffer): Promise<void> {
    const path = this.path(name);
    if (!this.made) {
      ensurePrivateDir(this.dir);
      this.made = true;
    }
    let fh;
    try {
      fh = await open(path, 'a', 0o600);
      await fh.write(data);
      await fh.datasync();
    } catch (err) {
      throw writeError(path, err);
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }

  async size(name: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(name))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async *read(name: string, offset = 0): AsyncIterable<Buffer> {
    const path = this.path(name);
    if ((await this.size(name)) === undefined) return;
    const stream = createReadStream(path, { start: offset, highWaterMark: READ_CHUNK_BYTES });
    for await (const chunk of stream) yield chunk as Buffer;
  }

  async delete(name: string): Promise<boolean> {
    try {
      await unlink(this.path(name));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  private path(name: string): string {
    checkRecordingName(name);
    return join(this.dir, name);
  }
}
