/**
 * A YAML file read into plain values for the config schema (schema.ts), with the
 * line of every value kept aside so a schema problem at `roles.user.logins[0]`
 * can name its line. What a schema cannot see is checked here, on the YAML
 * syntax tree: syntax errors, several documents, duplicate keys (the plain
 * value would silently keep one), keys that are not text, and the keys
 * `__proto__`, `prototype` and `constructor`, which valibot's object and record
 * schemas skip without a word (a skipped node_labels key would widen a role's
 * reach).
 *
 * Plain values: mappings → objects, sequences → arrays, aliases followed,
 * strings, booleans, null, and numbers as `YamlNumber` (value + source text),
 * so `rack: 012` can be kept as written and messages quote what was typed.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';

/** A number as YAML read it, with the text it was written as. */
export class YamlNumber {
  constructor(
    readonly value: number,
    readonly source: string,
  ) {}
}

/** One step of a key path: a mapping key or a list index. */
export type PathKey = string | number;

/** `roles.user.logins[0]` from its steps: the key path messages show. */
export function formatPath(path: readonly PathKey[]): string {
  let out = '';
  for (const k of path) out = typeof k === 'number' ? `${out}[${k}]` : out ? `${out}.${k}` : k;
  return out;
}

/** A problem the tree itself found; `line` is 1-based. */
export interface TreeProblem {
  path: string;
  line: number | undefined;
  reason: string;
}

export interface YamlTree {
  /** The document as plain values; undefined for an empty file or one with syntax errors. */
  value: unknown;
  /** Line of the value at a key path (`formatPath`), else of its key; undefined when unknown. */
  lineOf(path: string): number | undefined;
  /** Line of the key at a key path (for a list item: the item). */
  keyLineOf(path: string): number | undefined;
  /** Syntax, duplicate and reserved-key problems: when any, `value` must not be trusted. */
  problems: TreeProblem[];
}

/** Limits on what a config may expand to (aliases included). */
const MAX_VALUES = 100_000;
const MAX_DEPTH = 64;

/** Keys valibot's object/record schemas skip silently (prototype pollution guards). */
const RESERVED_KEYS = new Set(['__proto__', 'prototype', 'constructor']);

/**
 * Parses YAML 1.2 text into a `YamlTree`. Never throws for bad input: every
 * problem is in `problems` (a document nested thousands deep is one problem,
 * the yaml package recursing per level).
 */
export function readYamlTree(text: string): YamlTree {
  const lines = new LineCounter();
  const valueLines = new Map<string, number>();
  const keyLines = new Map<string, number>();
  const problems: TreeProblem[] = [];
  const tree: YamlTree = {
    value: undefined,
    lineOf: (path) => valueLines.get(path) ?? keyLines.get(path),
    keyLineOf: (path) => keyLines.get(path),
    problems,
  };
  let doc: Document;
  try {
    // uniqueKeys off: duplicates are reported below, where the key path is known.
    doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false, version: '1.2' });
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    problems.push({ path: '', line: undefined, reason: 'YAML: nested too deeply to read; a config needs a few levels' });
    return tree;
  }
  // Errors at the very end (an unclosed quote or bracket) point past the last line: clamp.
  const lastLine = lines.linePos(text.trimEnd().length).line;
  for (const e of [...doc.errors, ...doc.warnings]) {
    const message =
      e.code === 'MULTIPLE_DOCS'
        ? 'the file must hold one YAML document; remove the "---" line and merge what follows'
        : e.message.replace(/\s*at line \d+, column \d+:?[\s\S]*$/, '');
    problems.push({ path: '', line: Math.min(lines.linePos(e.pos[0]).line, lastLine), reason: `YAML: ${message}` });
  }
  if (problems.length > 0) return tree;

  const lineAt = (node: unknown): number | undefined => {
    const range = (node as { range?: [number, number, number] | null } | null | undefined)?.range;
    return range ? lines.linePos(range[0]).line : undefined;
  };
  // Alias.resolve searches the whole document each time: once per alias is enough.
  const anchors = new Map<unknown, unknown>();
  const deref = (node: unknown): unknown => {
    if (!isAlias(node)) return node;
    if (!anchors.has(node)) anchors.set(node, node.resolve(doc));
    return anchors.get(node);
  };
  const setLine = (map: Map<string, number>, path: string, node: unknown) => {
    const line = lineAt(node);
    if (line !== undefined) map.set(path, line);
  };

  // Aliases are expanded: bound the work, or nine aliases of nine aliases ("billion
  // laughs") would make a few hundred bytes into 9^9 values. Far above any real config.
  let values = 0;
  let tooBig = false;
  const plain = (raw: unknown, at: string, depth: number): unknown => {
    if (++values > MAX_VALUES || depth > MAX_DEPTH) {
      if (!tooBig) {
        tooBig = true;
        problems.push({
          path: at,
          line: lineAt(raw),
          reason: `too many values or levels once aliases are expanded (at most ${MAX_VALUES} values, ${MAX_DEPTH} levels); a config needs far fewer`,
        });
      }
      return null;
    }
    const node = deref(raw);
    setLine(valueLines, at, raw);
    if (isMap(node)) {
      const out: Record<string, unknown> = {};
      const firstLine = new Map<string, number | undefined>();
      for (const pair of node.items) {
        const k = deref(pair.key);
        if (!isScalar(k) || (typeof k.value !== 'string' && typeof k.value !== 'number' && typeof k.value !== 'boolean')) {
          const what = isMap(k) ? 'a mapping' : isSeq(k) ? 'a list' : k === null || (isScalar(k) && k.value === null) ? 'empty' : 'an unsupported value';
          problems.push({ path: at, line: lineAt(pair.key), reason: `keys must be plain text, not ${what}` });
          continue;
        }
        const key = String(k.value);
        const keyPath = at ? `${at}.${key}` : key;
        if (firstLine.has(key)) {
          const first = firstLine.get(key);
          problems.push({ path: keyPath, line: lineAt(pair.key), reason: `duplicate key${first ? `; the first is on line ${first}` : ''}: keep one` });
          continue;
        }
        firstLine.set(key, lineAt(pair.key));
        if (RESERVED_KEYS.has(key)) {
          problems.push({ path: keyPath, line: lineAt(pair.key), reason: `${JSON.stringify(key)} cannot be used as a key here; rename it` });
          continue;
        }
        setLine(keyLines, keyPath, pair.key);
        // defineProperty: a plain assignment would treat some names specially.
        Object.defineProperty(out, key, { value: plain(pair.value, keyPath, depth + 1), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
    if (isSeq(node)) {
      return node.items.map((item, i) => {
        setLine(keyLines, `${at}[${i}]`, item);
        return plain(item, `${at}[${i}]`, depth + 1);
      });
    }
    if (isScalar(node)) {
      const v = node.value;
      if (typeof v === 'number' || typeof v === 'bigint') return new YamlNumber(Number(v), node.source ?? String(v));
      if (typeof v === 'string' || typeof v === 'boolean' || v === null) return v;
    }
    // Unsupported scalars (binary, dates with custom tags, ...): described as such by the schema.
    return node === null || node === undefined ? null : Symbol('unsupported');
  };
  tree.value = plain(doc.contents, '', 0);
  return tree;
}

/** How a plain value reads in a message: `the number 42`, `a list`, `empty`. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof YamlNumber) return `the number ${value.source}`;
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return `the text ${JSON.stringify(value)}`;
  if (typeof value === 'object') return 'a mapping';
  return 'an unsupported value';
}

/** For a number or boolean where text was expected: how to write it as text. */
export function quoteHint(value: unknown): string {
  if (value instanceof YamlNumber) return `; put it in quotes if you mean the text: "${value.source}"`;
  if (typeof value === 'boolean') return `; put it in quotes if you mean the text: "${value}"`;
  return '';
}
