/**
 * What every program does the same way: --version, suggestions for mistyped
 * commands and options (on subcommands too), colour only where it is wanted,
 * and a closed pipe ending the program quietly.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { execute, exitQuietlyOnClosedPipe, EXIT_CLOSED_PIPE } from '../../src/cli/main.js';
import { buildTsh } from '../../src/cli/tsh.js';
import { buildTctl } from '../../src/cli/tctl.js';
import { buildJumpgate } from '../../src/cli/jumpgate.js';
import { colorLevel, makeColors } from '../../src/cli/color.js';
import { formatError } from '../../src/cli/errors.js';
import { UserError } from '../../src/errors.js';
import { VERSION } from '../../src/version.js';
import { testDeps } from '../helpers/deps.js';

const programs = [
  ['tsh', buildTsh],
  ['tctl', buildTctl],
  ['jumpgate', buildJumpgate],
] as const;

async function runIt(build: (typeof programs)[number][1], argv: string[], over: Parameters<typeof testDeps>[0] = {}) {
  const deps = testDeps({ env: {}, ...over });
  const code = await execute(build, argv, deps);
  return { code, out: deps.out(), err: deps.err() };
}

describe('--version', () => {
  for (const [name, build] of programs) {
    test(`${name} --version prints the same one line as ${name} version`, async () => {
      const flag = await runIt(build, ['--version']);
      const cmd = await runIt(build, ['version']);
      assert.equal(flag.code, 0);
      assert.equal(flag.out, `${name} ${VERSION}\n`);
      assert.equal(flag.out, cmd.out);
      assert.equal(flag.err, '');
    });
  }
});

describe('suggestions for mistyped commands and options', () => {
  const table: [(typeof programs)[number][1], string[], RegExp][] = [
    [buildTsh, ['logn'], /Did you mean login\?/],
    [buildTsh, ['status', '--formt=json'], /unknown option '--formt'\n\(Did you mean --format\?\)/],
    [buildTsh, ['status', '--formt', 'json'], /Did you mean --format\?/],
    [buildTsh, ['login', '--insecur'], /Did you mean --insecure\?/],
    [buildTsh, ['login', '--proxyy=localhost:3080'], /Did you mean --proxy\?/],
    [buildTsh, ['ls', '--fromat=json'], /Did you mean --format\?/],
    [buildTsh, ['proxy', 'ssh', '--proxi=x', 'node1'], /Did you mean --proxy\?/],
    [buildTsh, ['ssh', '--proxyy=x', 'node1'], /did you mean --proxy\?/],
    [buildTctl, ['auth', 'export', '--typ=user'], /Did you mean --type\?/],
    [buildTctl, ['auht'], /Did you mean auth\?/],
    [buildJumpgate, ['strat'], /Did you mean start\?/],
    [buildJumpgate, ['start', '--confg=x.yaml'], /Did you mean --config\?/],
  ];
  for (const [build, argv, want] of table) {
    test(`${argv.join(' ')} is a usage error with a suggestion`, async () => {
      const r = await runIt(build, argv);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, want);
      assert.equal(r.out, '');
    });
  }
});

describe('colour', () => {
  test('NO_COLOR, FORCE_COLOR, TERM=dumb and pipes decide the level as Node does', () => {
    const table: [Record<string, string>, boolean, number][] = [
      [{}, false, 0],
      [{}, true, 1],
      [{ TERM: 'xterm-256color' }, true, 2],
      [{ COLORTERM: 'truecolor' }, true, 3],
      [{ TERM: 'dumb' }, true, 0],
      [{ NO_COLOR: '1' }, true, 0],
      [{ NO_COLOR: '' }, true, 1],
      [{ FORCE_COLOR: '1' }, false, 1],
      [{ FORCE_COLOR: '' }, false, 1],
      [{ FORCE_COLOR: '3' }, false, 3],
      [{ FORCE_COLOR: '0' }, true, 0],
      [{ FORCE_COLOR: 'false' }, true, 0],
      [{ FORCE_COLOR: '1', NO_COLOR: '1' }, false, 1],
    ];
    for (const [env, tty, want] of table) assert.equal(colorLevel(env, tty), want, `${JSON.stringify(env)} tty=${tty}`);
  });

  test('errors are red only when stderr may have colour', async () => {
    const err = new UserError('X', 'it broke', { hint: 'fix it' });
    assert.equal(formatError(err, false, makeColors({}, { stdout: false, stderr: false }).err), 'error: it broke\nhint: fix it\n');
    assert.match(formatError(err, false, makeColors({ FORCE_COLOR: '1' }, { stdout: false, stderr: false }).err), /^\x1b\[31merror:\x1b\[39m it broke\n/);
    const piped = await runIt(buildTsh, ['logn']);
    assert.doesNotMatch(piped.err, /\x1b\[/, 'no escape codes when stderr is not a terminal');
    const forced = await runIt(buildTsh, ['logn'], { colors: makeColors({ FORCE_COLOR: '1' }, { stdout: false, stderr: false }) });
    assert.match(forced.err, /^\x1b\[31merror:\x1b\[39m unknown command 'logn'/);
  });
});

describe('a closed pipe', () => {
  test('EPIPE on a stream ends with 141 (128 + SIGPIPE) and nothing printed; other errors are not hidden', () => {
    const s = new PassThrough();
    const codes: number[] = [];
    exitQuietlyOnClosedPipe(s, (c) => codes.push(c));
    s.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    assert.deepEqual(codes, [EXIT_CLOSED_PIPE]);
    assert.equal(EXIT_CLOSED_PIPE, 141);
    assert.throws(() => s.emit('error', Object.assign(new Error('write EIO'), { code: 'EIO' })), /EIO/);
  });
});
