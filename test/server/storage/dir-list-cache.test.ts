/**
 * The dir backend's list keeps parsed files and re-reads only those whose
 * stat changed (storage/dir/items.ts): it must still see every write, every
 * removal and a hand-edited file, and hand out copies the caller may change.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirItems } from '../../../src/server/storage/dir/items.js';
import { tempDir } from '../../helpers/tools.js';

describe('dir backend: list re-reads only changed files', () => {
  const tmp = tempDir('dir-list-cache');
  after(() => tmp.cleanup());
  const items = new DirItems(tmp.dir, () => new Date());
  const values = async () => (await items.list<{ n: string }>('node')).map((i) => `${i.key}=${i.value.n}`);

  test('a rewrite of the same size, a removal and a file changed behind its back all show in the next list', async () => {
    await items.put('node', 'a', { n: '1' });
    await items.put('node', 'b', { n: '1' });
    assert.deepEqual(await values(), ['a=1', 'b=1']);
    await items.put('node', 'a', { n: '2' }); // same size: a new file (inode) all the same
    assert.deepEqual(await values(), ['a=2', 'b=1']);
    assert.ok(await items.delete('node', 'b'));
    assert.deepEqual(await values(), ['a=2']);
    const dir = join(tmp.dir, 'state', 'node');
    const file = join(dir, readdirSync(dir).find((f) => f.endsWith('.json'))!);
    writeFileSync(file, JSON.stringify({ key: 'a', value: { n: '3' }, revision: '0123456789abcdef' }) + '\n'); // in place: same inode
    assert.deepEqual(await values(), ['a=3']);
  });

  test('a listed value changed by the caller does not change the next list', async () => {
    const [first] = await items.list<{ n: string }>('node');
    first!.value.n = 'changed';
    assert.deepEqual(await values(), ['a=3']);
  });
});
