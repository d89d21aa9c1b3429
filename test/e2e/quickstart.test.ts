/**
 * The README's first command, as a newcomer runs it: the quickstart cluster
 * comes up, `tsh login` works against its development IdP in a real browser,
 * plain `ssh` reaches the local OpenSSH node through the proxy, and Ctrl-C
 * leaves no process behind. A second run reuses the same CA.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { launchBrowser } from '../helpers/browser.js';
import { tshLoginWithBrowser } from '../helpers/tsh-login.js';
import { freePort } from '../helpers/sshd.js';
import { startSshAgent } from '../helpers/ssh-agent.js';
import { REPO, requireTool, run, tempDir } from '../helpers/tools.js';

interface Quickstart {
  child: ChildProcess;
  ports: { web: number; node: number };
  err: () => string;
}

async function startQuickstart(dir: string, ports: number[]): Promise<Quickstart> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'scripts', 'quickstart.ts')], {
    cwd: REPO,
    env: { ...process.env, QUICKSTART_DIR: dir, QUICKSTART_PORTS: ports.join(',') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const deadline = Date.now() + 60_000;
  let m: RegExpMatchArray | null;
  while (!(m = /quickstart ready web=(\d+) ssh=\d+ idp=\d+ node=(\d+)/.exec(out))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the quickstart did not come up:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, ports: { web: Number(m[1]), node: Number(m[2]) }, err: () => err };
}

async function stop(q: Quickstart): Promise<number | null> {
  if (q.child.exitCode !== null) return q.child.exitCode;
  const exited = new Promise<number | null>((r) => q.child.once('exit', (code) => r(code)));
  q.child.kill('SIGINT');
  return exited;
}

/** Processes whose command line mentions the quickstart directory (jumpgate, sshd). */
async function leftovers(dir: string): Promise<string> {
  const r = await run('pgrep', ['-af', dir]);
  return r.stdout.split('\n').filter((l) => l.trim() && !l.includes('pgrep')).join('\n');
}

describe('npm run quickstart', () => {
  const tmp = tempDir('quickstart');
  const qsDir = join(tmp.dir, 'qs');
  after(() => tmp.cleanup());

  test('comes up, tsh login works against the development IdP, plain ssh reaches node1, Ctrl-C leaves nothing running, a rerun keeps the CA', async () => {
    requireTool('sshd', 'apt-get install -y openssh-server');
    requireTool('pgrep', 'apt-get install -y procps');
    const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const qs = await startQuickstart(qsDir, ports);
    const browser = await launchBrowser();
    const agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
    try {
      assert.match(qs.err(), /development-only identity provider/);
      const home = join(tmp.dir, 'home');
      mkdirSync(home);
      const env = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: agent.sock };
      const login = await tshLoginWithBrowser({ proxy: `localhost:${qs.ports.web}`, login: 'demo', browser, env });
      assert.match(login.page, /You are logged in/);
      assert.equal(login.code, 0, login.stderr);

      // Plain OpenSSH with only what tsh login wrote (ssh reads ~/.ssh from the passwd entry, so -F names it),
      // by the short name, the long name the block routes, and in capitals (ssh lower-cases it).
      for (const host of ['node1', 'node1.quickstart.test', 'NODE1.Quickstart.Test']) {
        const ssh = await run(
          'ssh',
          ['-F', join(home, '.ssh', 'config'), '-o', 'BatchMode=yes', `${userInfo().username}@${host}`, 'echo hello from $(hostname) as $(id -un)'],
          { env, timeoutMs: 90_000 },
        );
        assert.equal(ssh.code, 0, `ssh ${host}: ${ssh.stderr}\n--- quickstart ---\n${qs.err()}`);
        assert.match(ssh.stdout, new RegExp(`hello from .* as ${userInfo().username}`));
      }
    } finally {
      await browser.close();
      await agent.stop();
      const code = await stop(qs);
      assert.equal(code, 0, qs.err());
    }
    assert.match(qs.err(), /stopped; nothing is left running/);
    assert.equal(await leftovers(qsDir), '', 'no jumpgate or sshd process is left');

    // A second run reuses the config and the CA.
    const caBefore = readFileSync(join(qsDir, 'data', 'ca', 'user', 'ca.json'), 'utf8');
    const again = await startQuickstart(qsDir, ports);
    try {
      assert.match(again.err(), /reusing .*jumpgate\.yaml/);
      assert.equal(readFileSync(join(qsDir, 'data', 'ca', 'user', 'ca.json'), 'utf8'), caBefore);
    } finally {
      assert.equal(await stop(again), 0);
    }
    assert.equal(await leftovers(qsDir), '');
  });
});
