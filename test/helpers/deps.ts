import { Readable, Writable } from 'node:stream';
import { join } from 'node:path';
import type { Deps } from '../../src/cli/deps.js';
import { makeColors } from '../../src/cli/color.js';
import { REPO } from './tools.js';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** Deps with captured stdout/stderr and a pinned clock, for calling commands in-process. */
export function testDeps(over: Partial<Omit<Deps, 'io'>> = {}): Deps & { out: () => string; err: () => string } {
  const stdout = new Capture();
  const stderr = new Capture();
  return {
    io: { stdout, stderr, stdin: Readable.from([]), stderrIsTTY: false, stdoutIsTTY: false },
    colors: makeColors({}, { stdout: false, stderr: false }),
    env: {},
    clock: () => new Date(),
    platform: 'linux',
    homedir: '/nonexistent-home',
    cwd: process.cwd(),
    debug: false,
    selfCommand: [process.execPath, join(REPO, 'bin', 'tsh')],
    // In-process tests never wait for a signal: a long-running command returns at once.
    waitForShutdown: () => Promise.resolve('test'),
    ...over,
    out: () => stdout.text,
    err: () => stderr.text,
  };
}
