/**
 * BENCHMARKS.md sections: each benchmark's result sits between
 * `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` and carries the date and
 * the machine it was measured on. Shared by `npm run bench` and `npm run load`.
 */
import { cpus, totalmem, type as osType, release } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const BENCHMARKS_FILE = join(import.meta.dirname, '..', 'BENCHMARKS.md');

/** "2 × <CPU model>, 24 GiB RAM, Linux <release>, Node v20.x". */
export function machine(): string {
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${osType()} ${release()}, Node ${process.version}`;
}

/** A section's Markdown: its title, when and where it was measured, the body. */
export function formatSection(title: string, body: string, when = new Date()): string {
  return `### ${title}\n\nMeasured ${when.toISOString().slice(0, 10)} on ${machine()}.\n\n${body}\n`;
}

/** Replaces the section `name` in a BENCHMARKS.md text (or appends it when it is not there yet). */
export function replaceSection(doc: string, name: string, section: string): string {
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const block = `${start}\n${section}${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  return i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
}

/** Writes sections into BENCHMARKS.md in one read and one write. */
export function writeSections(sections: Array<{ name: string; section: string }>, file = BENCHMARKS_FILE): void {
  let doc = readFileSync(file, 'utf8');
  for (const s of sections) doc = replaceSection(doc, s.name, s.section);
  writeFileSync(file, doc);
}
