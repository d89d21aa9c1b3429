/**
 * `{{external.CLAIM}}` login templates end to end: the real oidc-provider
 * (scripts/dev-idp.ts) sends a `unix_logins` claim, the real `jumpgate start`
 * signs, the real `tsh login --browser=none` stores the certificate, and
 * ssh-keygen -L reads its principals. The browser's part is the HTTP walk
 * through the IdP's forms (test/e2e/login.test.ts does it in Chromium).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDevIdp, type DevIdp } from '../../scripts/dev-idp.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { loopbackDispatcher, tshEnv, tshLoginOverHttp } from '../helpers/headless-login.js';
import { freePort } from '../helpers/sshd.js';
import { builtProgram, requireTool, run, tempDir } from '../helpers/tools.js';

const SECRET = 'claims-secret';

function yaml(webPort: number, issuer: string): string {
  return `cluster_name: claims.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:${webPort}
  ssh_listen_addr: 127.0.0.1:0
auth:
  oidc:
    issuer: ${issuer}
    client_id: jumpgate
    client_secret: ${SECRET}
    username_claim: preferred_username
    claims_to_roles:
      - { claim: groups, value: ops, roles: [ops] }
      - { claim: groups, value: svc, roles: [svc] }
roles:
  ops:
    logins: ["{{external.unix_logins}}", "{{username}}-ops"]
    node_labels: { env: prod }
  svc:
    logins: ["{{external.unix_logins}}"]
    node_labels: { env: prod }
nodes:
  - { name: db1, addr: "127.0.0.1:2223", labels: { env: prod } }
`;
}

describe('{{external.CLAIM}} logins reach the certificate (real IdP, jumpgate, tsh, ssh-keygen)', () => {
  const tmp = tempDir('claims-e2e');
  const insecure = loopbackDispatcher(31);
  let idp: DevIdp;
  let cluster: Cluster;
  let homes = 0;

  before(async () => {
    requireTool('ssh-keygen', 'apt-get install -y openssh-client');
    builtProgram('tsh');
    const webPort = await freePort();
    idp = await startDevIdp({
      clientId: 'jumpgate',
      clientSecret: SECRET,
      redirectUris: [`https://127.0.0.1:${webPort}/v1/login/oidc/callback`],
      accounts: [
        { login: 'alice', claims: { preferred_username: 'alice', groups: ['ops'], unix_logins: ['deploy', 'oncall'] } },
        { login: 'svc', claims: { preferred_username: 'svc', groups: ['svc'], unix_logins: 'deploy' } },
        { login: 'nolist', claims: { preferred_username: 'nolist', groups: ['svc'] } },
        { login: 'badval', claims: { preferred_username: 'badval', groups: ['ops'], unix_logins: ['deploy', 'root; reboot'] } },
      ],
    });
    mkdirSync(join(tmp.dir, 'cluster'));
    cluster = await startCluster(join(tmp.dir, 'cluster'), yaml(webPort, idp.issuer));
  });

  after(async () => {
    await cluster?.stop();
    await idp?.close();
    await insecure.close();
    tmp.cleanup();
  });

  /** `tsh login --browser=none` in a fresh home, the browser's part walked over HTTP as `account`. */
  async function tshLogin(account: string): Promise<{ code: number | null; stderr: string; home: string }> {
    const home = join(tmp.dir, `home${++homes}`);
    mkdirSync(home);
    const r = await tshLoginOverHttp({ proxy: `127.0.0.1:${cluster.webPort}`, env: tshEnv(home), args: ['--keystore=file', '--no-ssh-config'], account, dispatcher: insecure });
    return { ...r, home };
  }

  async function principals(home: string, user: string): Promise<{ principals: string[]; text: string }> {
    const r = await run('ssh-keygen', ['-L', '-f', join(home, '.tsh', 'keys', '127.0.0.1', `${user}-cert.pub`)]);
    assert.equal(r.code, 0, r.stderr);
    return { principals: /Principals:\s*\n((?:\s{16}\S+\n)+)/.exec(r.stdout)?.[1]!.trim().split(/\s+/) ?? [], text: r.stdout };
  }

  test('a list claim beside {{username}}: the certificate carries deploy, oncall and alice-ops', async () => {
    const r = await tshLogin('alice');
    assert.equal(r.code, 0, r.stderr);
    const p = await principals(r.home, 'alice');
    assert.deepEqual(p.principals, ['deploy', 'oncall', 'alice-ops']);
    assert.match(p.text, /roles@jumpgate\.dev/);
    assert.match(p.text, /traits@jumpgate\.dev/);
    assert.match(r.stderr, /Logins: deploy, oncall, alice-ops\./);
  });

  test('a role with only an external template signs the claim (a string claim)', async () => {
    const r = await tshLogin('svc');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await principals(r.home, 'svc')).principals, ['deploy']);
  });

  test('without the claim the login is refused (exit 4) with a message naming it', async () => {
    const r = await tshLogin('nolist');
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /no value for the claim "unix_logins"/);
  });

  test('a claim value that is not a Unix login refuses the login and says so', async () => {
    const r = await tshLogin('badval');
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /"root; reboot".*not a valid Unix login; the login is refused/);
  });
});
