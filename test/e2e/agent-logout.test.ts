/**
 * tsh logout and relogin against a real OpenSSH ssh-agent, with real logins
 * (the real oidc-provider, jumpgate start, tsh login --browser=none with the
 * browser's part walked over HTTP) and real ssh through the proxy to an
 * OpenSSH node. Two profiles share the agent: localhost (the cluster e2e.test)
 * and 127.0.0.1 (a second cluster, other.test: one cluster per profile, as
 * tsh's scope rules require).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { DEMO_ACCOUNTS, startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { loopbackDispatcher, tshLoginOverHttp } from '../helpers/headless-login.js';
import { startProxyCluster, type ProxyCluster } from '../helpers/proxy-cluster.js';
import { startSshAgent, type SshAgent } from '../helpers/ssh-agent.js';
import { freePort } from '../helpers/sshd.js';
import { builtProgram, requireTool, run, tempDir } from '../helpers/tools.js';

const SECRET = 'agent-logout-secret';
const LOGIN = userInfo().username; // the node's sshd accepts the account the tests run as

describe('tsh logout / relogin and the ssh-agent (real agent, IdP, jumpgate, sshd)', () => {
  const tmp = tempDir('agent-logout');
  const insecure = loopbackDispatcher(32);
  let idp: DevIdp;
  let cluster: ProxyCluster;
  let other: ProxyCluster;
  let agent: SshAgent;
  let home: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    requireTool('ssh', 'apt-get install -y openssh-client');
    requireTool('ssh-add', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    const webPort = await freePort();
    const otherWebPort = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: SECRET,
      redirectUris: [`https://localhost:${webPort}/v1/login/oidc/callback`, `https://127.0.0.1:${otherWebPort}/v1/login/oidc/callback`],
      accounts: [...DEMO_ACCOUNTS, { login: LOGIN, claims: { preferred_username: LOGIN, email_verified: true } }],
    });
    mkdirSync(join(tmp.dir, 'cluster'));
    cluster = await startProxyCluster(join(tmp.dir, 'cluster'), { webPort, oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: SECRET } });
    mkdirSync(join(tmp.dir, 'other'));
    other = await startProxyCluster(join(tmp.dir, 'other'), {
      clusterName: 'other.test',
      publicHost: '127.0.0.1',
      webPort: otherWebPort,
      nodes: [{ name: 'node2', env: 'test' }],
      oidc: { issuer: idp.issuer, clientId: 'jumpgate', clientSecret: SECRET },
    });
    agent = await startSshAgent(join(tmp.dir, 'agent.sock'));
    home = join(tmp.dir, 'home');
    mkdirSync(home);
    env = { ...process.env, HOME: home, TSH_HOME: join(home, '.tsh'), SSH_AUTH_SOCK: agent.sock };
    for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'TSH_PROXY']) delete env[k];
  });

  after(async () => {
    await Promise.all([cluster?.stop(), other?.stop(), idp?.close(), agent?.stop(), insecure.close()]);
    tmp.cleanup();
  });

  /** `tsh login --browser=none --proxy=HOST:PORT`, the browser's part walked over HTTP. */
  async function tshLogin(host: string, account = LOGIN): Promise<void> {
    const port = host === '127.0.0.1' ? other.webPort : cluster.webPort;
    const { code, stderr } = await tshLoginOverHttp({ proxy: `${host}:${port}`, env, args: ['--keystore=file', '--no-ssh-config'], account, dispatcher: insecure });
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /warning/, stderr);
  }

  /** The base64 certificate blob a profile's login stored. */
  const certBlob = (profile: string) => readFileSync(join(home, '.tsh', 'keys', profile, `${LOGIN}-cert.pub`), 'utf8').split(' ')[1]!;
  const keyFile = (profile: string) => join(home, '.tsh', 'keys', profile, LOGIN);
  const agentList = async () => {
    const r = await run('ssh-add', ['-L'], { env });
    return r.stdout;
  };

  /**
   * Plain ssh to node1 through the proxy's SSH port (ProxyJump) with the
   * agent as the only source of credentials: no tsh involved, so this is
   * what whatever the agent still holds can do.
   */
  function sshWithAgent(): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const cfg = join(tmp.dir, 'ssh_config');
    writeFileSync(
      cfg,
      [
        'Host *',
        `  IdentityAgent ${agent.sock}`,
        '  IdentityFile none',
        `  UserKnownHostsFile ${join(home, '.tsh', 'known_hosts')}`,
        '  StrictHostKeyChecking yes',
        '  BatchMode yes',
        '  ConnectTimeout 10',
        '',
      ].join('\n'),
    );
    return run('ssh', ['-F', cfg, '-J', `${LOGIN}@localhost:${cluster.sshPort}`, `${LOGIN}@node1`, 'echo through'], { env, timeoutMs: 30_000 });
  }

  test("a second login replaces the first one's agent entries; logout removes every entry of the profile and ssh no longer gets through; the other profile stays", async () => {
    await tshLogin('127.0.0.1'); // the other profile
    const otherCert = certBlob('127.0.0.1');
    await tshLogin('localhost');
    const first = certBlob('localhost');
    assert.ok((await agentList()).includes(first));

    await tshLogin('localhost');
    const second = certBlob('localhost');
    assert.notEqual(second, first);
    let listed = await agentList();
    assert.ok(!listed.includes(first), `the first login's certificate left the agent at the second login:\n${listed}`);
    assert.ok(listed.includes(second));
    assert.ok(listed.includes(otherCert), "the other profile's certificate stays");

    // The key file added by hand, as `ssh-add` users do: the key and certificate under a foreign comment.
    const added = await run('ssh-add', [keyFile('localhost')], { env });
    assert.equal(added.code, 0, added.stderr);
    const through = await sshWithAgent();
    assert.equal(through.code, 0, `control: the agent's certificate gets through before logout\n${through.stderr}`);
    assert.equal(through.stdout.trim(), 'through');

    const out = await run(process.execPath, [builtProgram('tsh'), 'logout', `--proxy=localhost:${cluster.webPort}`], { env });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, new RegExp(`Logged out ${LOGIN} from localhost\\.`));
    listed = await agentList();
    for (const gone of [first, second]) assert.ok(!listed.includes(gone), `still in the agent after logout:\n${listed}`);
    const small = (await run('ssh-add', ['-l'], { env })).stdout;
    assert.doesNotMatch(small, /jumpgate:localhost|\.tsh\/keys\/localhost/, small);
    assert.equal(small.trim().split('\n').length, 1, `only the other profile's entry is left:\n${small}`);
    assert.ok(listed.includes(otherCert), "the other profile's certificate stays");
    assert.ok(!existsSync(keyFile('localhost')), 'the key file is gone');

    // Now take the other profile's certificate out too, so the agent holds nothing at all for the check below.
    const otherCertFile = join(tmp.dir, 'other-cert.pub');
    writeFileSync(otherCertFile, `ssh-ed25519-cert-v01@openssh.com ${otherCert}\n`);
    const del = await run('ssh-add', ['-d', otherCertFile], { env });
    assert.equal(del.code, 0, del.stderr);
    assert.equal((await agentList()).trim(), 'The agent has no identities.');
    const after = await sshWithAgent();
    assert.notEqual(after.code, 0, 'nothing of the logged-out profile gets through');
    assert.match(after.stderr, /Permission denied/);
  });

  test("a relogin as another user removes the earlier user's agent entry and key files", async () => {
    await tshLogin('localhost', 'alice');
    const alice = readFileSync(join(home, '.tsh', 'keys', 'localhost', 'alice-cert.pub'), 'utf8').split(' ')[1]!;
    assert.ok((await agentList()).includes(alice));
    await tshLogin('localhost');
    const listed = await agentList();
    assert.ok(!listed.includes(alice), `alice's certificate is still in the agent:\n${listed}`);
    assert.ok(listed.includes(certBlob('localhost')));
    for (const f of ['alice', 'alice.pub', 'alice-cert.pub']) assert.ok(!existsSync(join(home, '.tsh', 'keys', 'localhost', f)), `${f} is left behind`);
    const out = await run(process.execPath, [builtProgram('tsh'), 'logout', `--proxy=localhost:${cluster.webPort}`], { env });
    assert.equal(out.code, 0, out.stderr);
    assert.equal((await agentList()).trim(), 'The agent has no identities.');
  });
});
