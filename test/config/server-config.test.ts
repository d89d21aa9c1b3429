import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.js';
import {
  ConfigProblem,
  loadServerConfig,
  parseServerConfig,
  SAMPLE_CONFIG,
  ServerConfigError,
  suggest,
  type ServerConfig,
} from '../../src/config/index.js';

const FILE = '/etc/jumpgate/jumpgate.yaml';

/** The example from CONTRACT.md, verbatim. */
const CONTRACT_EXAMPLE = `cluster_name: example.test
data_dir: ./data                      # CA keys (0600), state, audit log; created if absent
proxy:
  web_listen_addr: 127.0.0.1:3080     # HTTPS (login API)
  public_addr: localhost:3080         # what clients use for HTTPS
  ssh_listen_addr: 127.0.0.1:3023     # SSH proxy (proxy subsystem + direct-tcpip)
  ssh_public_addr: localhost:3023
  tls_cert_file: /path/cert.pem       # optional: without them a self-signed cert is generated once and kept
  tls_key_file: /path/key.pem
auth:
  cert_ttl: 24h                       # default TTL of user certificates
  oidc:
    issuer: https://idp.example.test/realms/x
    client_id: jumpgate
    client_secret: s3cret             # or client_secret_file
    scopes: [openid, email, profile]
    username_claim: preferred_username
    claims_to_roles:                  # first match wins; no match = login refused
      - { claim: groups, value: admins, roles: [admin] }
      - { claim: email_verified, value: true, roles: [user] }
roles:
  user:
    logins: ["{{username}}"]          # {{username}} = the username claim
    node_labels: { env: "*" }         # label selector a node must match
    max_session_ttl: 24h              # caps the certificate TTL
nodes:                                # static inventory (OpenSSH nodes)
  - { name: node1, addr: 127.0.0.1:2222, labels: { env: test } }
`;

/** Parses and returns the problems as `line: key: reason` strings (line `-` when unknown). */
function problemsOf(text: string, file = FILE): string[] {
  try {
    parseServerConfig(text, file);
  } catch (err) {
    assert.ok(err instanceof ServerConfigError, `expected ServerConfigError, got ${String(err)}`);
    return err.problems.map((p) => `${p.line ?? '-'}: ${p.key}: ${p.reason}`);
  }
  assert.fail('expected the config to be refused');
}

/** Asserts that exactly one problem matches line, key and reason. */
function assertProblem(text: string, line: number | '-', key: string, reason: RegExp): void {
  const found = problemsOf(text);
  const hits = found.filter((p) => p.startsWith(`${line}: ${key}: `) && reason.test(p.slice(`${line}: ${key}: `.length)));
  assert.equal(hits.length, 1, `expected one problem at ${line}: ${key}: ${reason}; got:\n${found.join('\n')}`);
}

const role = (body: string) => `cluster_name: example.test\nroles:\n  user:\n${body}`;

test('the example config from CONTRACT.md parses to the expected object', () => {
  const config = parseServerConfig(CONTRACT_EXAMPLE, FILE);
  const expected: ServerConfig = {
    file: FILE,
    clusterName: 'example.test',
    dataDir: '/etc/jumpgate/data',
    storage: { type: 'dir' },
    proxy: {
      webListenAddr: { host: '127.0.0.1', port: 3080 },
      publicAddr: { host: 'localhost', port: 3080 },
      sshListenAddr: { host: '127.0.0.1', port: 3023 },
      sshPublicAddr: { host: 'localhost', port: 3023 },
      tlsCertFile: '/path/cert.pem',
      tlsKeyFile: '/path/key.pem',
      limits: { maxConnectionsPerUser: 32, maxChannelsPerConnection: 10, maxSessionsPerUser: 64, maxNodeDialsPerUser: 8, maxNodeDialsPerNode: 32, nodeLoginGraceSeconds: 120 },
      proxyProtocolFrom: [],
    },
    auth: {
      certTtlSeconds: 86_400,
      loginTimeoutSeconds: 600,
      oidc: {
        issuer: 'https://idp.example.test/realms/x',
        clientId: 'jumpgate',
        clientSecret: 's3cret',
        scopes: ['openid', 'email', 'profile'],
        usernameClaim: 'preferred_username',
        claimsToRoles: [
          { claim: 'groups', value: 'admins', roles: ['admin'] },
          { claim: 'email_verified', value: true, roles: ['user'] },
        ],
      },
      sessionRecording: 'off',
    },
    roles: new Map([
      [
        'user',
        {
          name: 'user',
          logins: ['{{username}}'],
          nodeLabels: { env: '*' },
          maxSessionTtlSeconds: 86_400,
          permitPty: true,
          forwardAgent: false,
          portForwarding: true,
          x11Forwarding: false,
          permitUserRc: false,
          reviewSessions: false,
          recordInput: false,
        },
      ],
    ]),
    nodes: [{ name: 'node1', addr: { host: '127.0.0.1', port: 2222 }, labels: { env: 'test' } }],
  };
  const { warnings, ...rest } = config;
  assert.deepEqual(rest, expected);
  // The contract's claims_to_roles names a role `admin` the example never defines.
  // Refusing the contract's own example would be wrong, and a login matching that
  // rule is refused anyway: a warning with the line, not an error.
  assert.deepEqual(
    warnings?.map((w) => w.message),
    ['/etc/jumpgate/jumpgate.yaml:19: auth.oidc.claims_to_roles[0].roles[0]: role "admin" is not defined under roles; logins that match this rule will be refused'],
  );
});

test('a minimal config gets every default', () => {
  const config = parseServerConfig('cluster_name: example.test\n', FILE);
  assert.deepEqual(config, {
    file: FILE,
    clusterName: 'example.test',
    dataDir: '/etc/jumpgate/data',
    proxy: {
      webListenAddr: { host: '127.0.0.1', port: 3080 },
      publicAddr: { host: '127.0.0.1', port: 3080 },
      sshListenAddr: { host: '127.0.0.1', port: 3023 },
      sshPublicAddr: { host: '127.0.0.1', port: 3023 },
      limits: { maxConnectionsPerUser: 32, maxChannelsPerConnection: 10, maxSessionsPerUser: 64, maxNodeDialsPerUser: 8, maxNodeDialsPerNode: 32, nodeLoginGraceSeconds: 120 },
      proxyProtocolFrom: [],
    },
    auth: { certTtlSeconds: 86_400, loginTimeoutSeconds: 600, sessionRecording: 'off' },
    roles: new Map(),
    nodes: [],
    storage: { type: 'dir' },
  });
});

test('OIDC and role defaults: scopes, username claim, TTL from cert_ttl, permit flags', () => {
  const config = parseServerConfig(
    `cluster_name: example.test
auth:
  cert_ttl: 12h
  oidc:
    issuer: https://idp.example.test
    client_id: jumpgate
    client_secret_file: secrets/oidc
    claims_to_roles: [{ claim: groups, value: dev, roles: [user] }]
roles:
  user:
    logins: [ubuntu]
nodes:
  - { name: n1, addr: 10.0.0.1 }
`,
    FILE,
  );
  assert.deepEqual(config.auth.oidc?.scopes, ['openid', 'email', 'profile']);
  assert.equal(config.auth.oidc?.usernameClaim, 'preferred_username');
  assert.equal(config.auth.oidc?.clientSecretFile, '/etc/jumpgate/secrets/oidc');
  assert.equal(config.auth.oidc?.clientSecret, undefined);
  assert.equal(config.auth.oidc?.insecureAllowHttpLoopback, undefined);
  assert.deepEqual(config.roles.get('user'), {
    name: 'user',
    logins: ['ubuntu'],
    nodeLabels: {},
    maxSessionTtlSeconds: 43_200,
    permitPty: true,
    forwardAgent: false,
    portForwarding: true,
    x11Forwarding: false,
    permitUserRc: false,
    reviewSessions: false,
    recordInput: false,
  });
  assert.deepEqual(config.nodes[0]?.addr, { host: '10.0.0.1', port: 22 });
});

test('role flags, list selectors and a max_session_ttl longer than cert_ttl are kept as written', () => {
  const config = parseServerConfig(
    role(`    logins: ["{{username}}", "{{external.unix_login}}", "{{ username }}-adm", root]
    node_labels: { env: [dev, staging], team: "*" }
    max_session_ttl: 7d
    permit_pty: false
    forward_agent: true
    port_forwarding: false
    x11_forwarding: true
    permit_user_rc: true
    review_sessions: true
    record_input: true
`),
    FILE,
  );
  assert.deepEqual(config.roles.get('user'), {
    name: 'user',
    logins: ['{{username}}', '{{external.unix_login}}', '{{ username }}-adm', 'root'],
    nodeLabels: { env: ['dev', 'staging'], team: '*' },
    maxSessionTtlSeconds: 604_800,
    permitPty: false,
    forwardAgent: true,
    portForwarding: false,
    x11Forwarding: true,
    permitUserRc: true,
    reviewSessions: true,
    recordInput: true,
  });
});

test('auth.session_recording takes off (default) or proxy; anything else names the two', () => {
  assert.equal(parseServerConfig('cluster_name: example.test\nauth:\n  session_recording: proxy\n', FILE).auth.sessionRecording, 'proxy');
  assert.equal(parseServerConfig('cluster_name: example.test\nauth:\n  session_recording: off\n', FILE).auth.sessionRecording, 'off');
  assert.throws(
    () => parseServerConfig('cluster_name: example.test\nauth:\n  session_recording: node\n', FILE),
    (err: unknown) => err instanceof ConfigError && /:3: auth\.session_recording: must be off or proxy, not the text "node"/.test(err.message),
  );
});

test('public addresses default to the listen addresses and keep IPv6 hosts unbracketed', () => {
  const config = parseServerConfig(
    `cluster_name: example.test
proxy:
  web_listen_addr: "[::1]:4080"
  ssh_listen_addr: localhost:4023
`,
    FILE,
  );
  assert.deepEqual(config.proxy.publicAddr, { host: '::1', port: 4080 });
  assert.deepEqual(config.proxy.sshPublicAddr, { host: 'localhost', port: 4023 });
});

test('listen port 0 (a free port, for tests) is accepted and copied to the default public address', () => {
  const config = parseServerConfig('cluster_name: t\nproxy: { web_listen_addr: "127.0.0.1:0", ssh_listen_addr: "127.0.0.1:0" }\n', FILE);
  assert.equal(config.proxy.webListenAddr.port, 0);
  assert.equal(config.proxy.publicAddr.port, 0);
});

test('an http issuer on a loopback host is allowed and flagged for the OIDC client', () => {
  for (const issuer of ['http://127.0.0.1:9000/', 'http://localhost:9000', 'http://[::1]:9000']) {
    const config = parseServerConfig(
      `cluster_name: t
auth:
  oidc: { issuer: "${issuer}", client_id: c, client_secret: s, claims_to_roles: [{ claim: a, value: b, roles: [r] }] }
roles: { r: { logins: [root] } }
`,
      FILE,
    );
    assert.equal(config.auth.oidc?.issuer, issuer, 'kept byte for byte');
    assert.equal(config.auth.oidc?.insecureAllowHttpLoopback, true);
  }
});

test('relative paths resolve against the config file directory, not the working directory', () => {
  const config = parseServerConfig(
    `cluster_name: t
data_dir: ../state
proxy: { tls_cert_file: tls/cert.pem, tls_key_file: /abs/key.pem }
`,
    '/srv/jumpgate/conf/jumpgate.yaml',
  );
  assert.equal(config.dataDir, '/srv/jumpgate/state');
  assert.equal(config.proxy.tlsCertFile, '/srv/jumpgate/conf/tls/cert.pem');
  assert.equal(config.proxy.tlsKeyFile, '/abs/key.pem');
  assert.equal(parseServerConfig('cluster_name: t\ndata_dir: /var/lib/jumpgate\n', FILE).dataDir, '/var/lib/jumpgate');
});

test('a relative config file name is made absolute', () => {
  const config = parseServerConfig('cluster_name: t\n', 'jumpgate.yaml');
  assert.equal(config.file, join(process.cwd(), 'jumpgate.yaml'));
  assert.equal(config.dataDir, join(process.cwd(), 'data'));
});

test('YAML anchors and aliases are followed', () => {
  const config = parseServerConfig(
    'cluster_name: t\nroles:\n  a: { logins: &l [root, admin] }\n  b: { logins: *l }\n',
    FILE,
  );
  assert.deepEqual(config.roles.get('b')?.logins, ['root', 'admin']);
});

test('the annotated SAMPLE_CONFIG parses cleanly', () => {
  const config = parseServerConfig(SAMPLE_CONFIG, FILE);
  assert.equal(config.clusterName, 'example.com');
  assert.ok(config.auth.oidc);
  assert.ok(config.roles.size >= 2);
  assert.ok(config.nodes.length >= 1);
});

// ---------------------------------------------------------------------------
// One row per kind of problem: [behaviour, yaml, line, key, reason].

const problems: [string, string, number | '-', string, RegExp][] = [
  // The file as a whole
  ['reports a YAML syntax error with its line', 'cluster_name: t\nproxy:\n  web_listen_addr: "127.0.0.1:3080\n', 3, '', /^YAML: /],
  ['refuses several YAML documents in one file', 'cluster_name: t\n---\ncluster_name: u\n', 2, '', /one YAML document/],
  ['reports an unknown YAML tag', 'cluster_name: !secret t\n', 1, '', /^YAML: .*!secret/],
  ['refuses an empty file', '', '-', '', /the file is empty/],
  ['refuses a file that is only comments', '# nothing yet\n', '-', '', /the file is empty/],
  ['refuses a top level that is not a mapping', '- cluster_name: t\n', 1, '', /must be a mapping .* not a list/],
  ['refuses a top level that is plain text', 'hello\n', 1, '', /must be a mapping/],
  // Unknown and duplicate keys
  ['suggests the closest key for a typo', 'cluster_name: t\ncluser_nme: x\n', 2, 'cluser_nme', /^unknown key; did you mean `cluster_name`\?/],
  ['suggests snake_case for a camelCase key', 'cluster_name: t\nauth:\n  certTtl: 1h\n', 3, 'auth.certTtl', /did you mean `cert_ttl`\?/],
  ['suggests a key two edits away', 'cluster_name: t\nproxy:\n  web_lisen_adr: 1.2.3.4:1\n', 3, 'proxy.web_lisen_adr', /did you mean `web_listen_addr`\?/],
  ['lists the valid keys when nothing is close', 'cluster_name: t\nauth:\n  banana: 1\n', 3, 'auth.banana', /unknown key; the keys here are cert_ttl, login_timeout, oidc, session_recording$/],
  ['rejects unknown keys inside a role', role('    logins: [a]\n    max_ttl: 1h\n'), 5, 'roles.user.max_ttl', /^unknown key/],
  ['rejects unknown keys inside a node', 'cluster_name: t\nnodes:\n  - { name: a, addr: b, label: {} }\n', 3, 'nodes[0].label', /did you mean `labels`\?/],
  ['rejects a duplicate top-level key, naming the first line', 'cluster_name: t\ndata_dir: a\ndata_dir: b\n', 3, 'data_dir', /^duplicate key; the first is on line 2/],
  ['rejects a duplicate role', role('    logins: [a]\n  user:\n    logins: [b]\n'), 5, 'roles.user', /^duplicate key; the first is on line 3/],
  ['rejects a duplicate key inside a flow mapping', 'cluster_name: t\nnodes:\n  - { name: a, name: b, addr: c }\n', 3, 'nodes[0].name', /duplicate key/],
  // cluster_name and data_dir
  ['requires cluster_name', 'data_dir: x\n', '-', 'cluster_name', /is required/],
  ['refuses a cluster_name that is not DNS-like', 'cluster_name: My_Cluster\n', 1, 'cluster_name', /not a valid cluster name/],
  ['refuses a cluster_name that is a number', 'cluster_name: 42\n', 1, 'cluster_name', /must be text, not the number 42; put it in quotes/],
  ['refuses a data_dir starting with ~', 'cluster_name: t\ndata_dir: ~/jumpgate\n', 2, 'data_dir', /"~" is not expanded/],
  ['refuses an empty data_dir', 'cluster_name: t\ndata_dir: ""\n', 2, 'data_dir', /is empty/],
  // Addresses
  ['refuses a port above 65535', 'cluster_name: t\nproxy:\n  web_listen_addr: 127.0.0.1:70000\n', 3, 'proxy.web_listen_addr', /port must be a number from 0 to 65535/],
  ['refuses a public port 0', 'cluster_name: t\nproxy:\n  public_addr: localhost:0\n', 3, 'proxy.public_addr', /from 1 to 65535/],
  ['refuses an address without a port', 'cluster_name: t\nproxy:\n  public_addr: proxy.example.test\n', 3, 'proxy.public_addr', /has no port/],
  ['asks for brackets around IPv6', 'cluster_name: t\nproxy:\n  ssh_listen_addr: "::1:3023"\n', 3, 'proxy.ssh_listen_addr', /brackets/],
  ['requires an IP literal or localhost to listen on', 'cluster_name: t\nproxy:\n  web_listen_addr: proxy.example.test:3080\n', 3, 'proxy.web_listen_addr', /needs an IP address \(or localhost\)/],
  ['refuses an address given as a number', 'cluster_name: t\nproxy:\n  web_listen_addr: 3080\n', 3, 'proxy.web_listen_addr', /must be host:port.*not the number 3080/],
  ['requires public_addr when listening on every interface', 'cluster_name: t\nproxy:\n  web_listen_addr: 0.0.0.0:3080\n', 2, 'proxy.public_addr', /required when proxy.web_listen_addr listens on every interface/],
  ['requires ssh_public_addr when the SSH proxy listens on [::]', 'cluster_name: t\nproxy:\n  ssh_listen_addr: "[::]:3023"\n', 2, 'proxy.ssh_public_addr', /required when proxy.ssh_listen_addr/],
  ['refuses 0.0.0.0 as a public address', 'cluster_name: t\nproxy:\n  public_addr: 0.0.0.0:3080\n', 3, 'proxy.public_addr', /not an address clients can reach/],
  ['refuses the same listen port for HTTPS and SSH', 'cluster_name: t\nproxy:\n  web_listen_addr: 127.0.0.1:3080\n  ssh_listen_addr: 0.0.0.0:3080\n  ssh_public_addr: a:1\n', 4, 'proxy.ssh_listen_addr', /port 3080 is used by both/],
  ['requires tls_key_file with tls_cert_file', 'cluster_name: t\nproxy:\n  tls_cert_file: cert.pem\n', 2, 'proxy.tls_key_file', /is required with tls_cert_file/],
  ['requires tls_cert_file with tls_key_file', 'cluster_name: t\nproxy:\n  tls_key_file: key.pem\n', 2, 'proxy.tls_cert_file', /is required with tls_key_file/],
  ['refuses a proxy section that is a list', 'cluster_name: t\nproxy: [a]\n', 2, 'proxy', /must be a mapping/],
  // auth and durations
  ['reports a bad duration with its key and line', 'cluster_name: t\nauth:\n  cert_ttl: 25x\n', 3, 'auth.cert_ttl', /^"25x" is not a duration; use a number with a unit, e.g. 24h, 90m or 1h30m/],
  ['refuses a duration without a unit', 'cluster_name: t\nauth:\n  cert_ttl: 3600\n', 3, 'auth.cert_ttl', /has no unit; write 3600s/],
  ['refuses a duration of zero', 'cluster_name: t\nauth:\n  cert_ttl: 0s\n', 3, 'auth.cert_ttl', /longer than zero/],
  // OIDC
  ['requires the issuer', 'cluster_name: t\nauth:\n  oidc:\n    client_id: c\n    client_secret: s\n    claims_to_roles: [{claim: a, value: b, roles: [r]}]\nroles: { r: { logins: [a] } }\n', 3, 'auth.oidc.issuer', /is required/],
  ['refuses a plain-http issuer on another host', 'cluster_name: t\nauth:\n  oidc:\n    issuer: http://idp.example.test\n', 4, 'auth.oidc.issuer', /must use https; plain http is allowed only for an IdP on this machine/],
  ['refuses an issuer that is not a URL', 'cluster_name: t\nauth:\n  oidc:\n    issuer: idp.example.test\n', 4, 'auth.oidc.issuer', /is not a URL/],
  ['refuses an issuer that is not http(s)', 'cluster_name: t\nauth:\n  oidc:\n    issuer: ftp://idp.example.test\n', 4, 'auth.oidc.issuer', /must be an https URL/],
  ['refuses an issuer with a query', 'cluster_name: t\nauth:\n  oidc:\n    issuer: https://idp.example.test/?a=b\n', 4, 'auth.oidc.issuer', /query/],
  ['requires client_id', 'cluster_name: t\nauth:\n  oidc:\n    issuer: https://i.test\n', 3, 'auth.oidc.client_id', /is required/],
  ['requires a client secret or a secret file', 'cluster_name: t\nauth:\n  oidc:\n    issuer: https://i.test\n', 3, 'auth.oidc.client_secret', /is required \(or client_secret_file/],
  ['refuses both client_secret and client_secret_file', 'cluster_name: t\nauth:\n  oidc:\n    client_secret: s\n    client_secret_file: f\n', 5, 'auth.oidc.client_secret_file', /not both/],
  ['requires openid among the scopes', 'cluster_name: t\nauth:\n  oidc:\n    scopes: [email, profile]\n', 4, 'auth.oidc.scopes', /must include openid/],
  ['refuses scopes that are not a list', 'cluster_name: t\nauth:\n  oidc:\n    scopes: openid email\n', 4, 'auth.oidc.scopes', /must be a list/],
  ['requires claims_to_roles', 'cluster_name: t\nauth:\n  oidc:\n    issuer: https://i.test\n', 3, 'auth.oidc.claims_to_roles', /without a rule nobody can log in/],
  ['refuses an empty claims_to_roles', 'cluster_name: t\nauth:\n  oidc:\n    claims_to_roles: []\n', 4, 'auth.oidc.claims_to_roles', /is empty/],
  ['requires a claim in each rule', 'cluster_name: t\nauth:\n  oidc:\n    claims_to_roles:\n      - { value: a, roles: [r] }\n', 5, 'auth.oidc.claims_to_roles[0].claim', /is required/],
  ['requires a value in each rule', 'cluster_name: t\nauth:\n  oidc:\n    claims_to_roles:\n      - { claim: a, roles: [r] }\n', 5, 'auth.oidc.claims_to_roles[0].value', /is required/],
  ['refuses a numeric rule value', 'cluster_name: t\nauth:\n  oidc:\n    claims_to_roles:\n      - { claim: a, value: 7, roles: [r] }\n', 5, 'auth.oidc.claims_to_roles[0].value', /must be text or true\/false, not the number 7; put it in quotes/],
  ['refuses a rule without roles', 'cluster_name: t\nauth:\n  oidc:\n    claims_to_roles:\n      - { claim: a, value: b, roles: [] }\n', 5, 'auth.oidc.claims_to_roles[0].roles', /is empty/],
  // Roles
  ['refuses a role name that is not DNS-label-like', 'cluster_name: t\nroles:\n  Dev Ops:\n    logins: [a]\n', 3, 'roles.Dev Ops', /not a valid role name/],
  ['requires logins in a role', role('    max_session_ttl: 1h\n'), 3, 'roles.user.logins', /is required/],
  ['refuses an empty logins list', role('    logins: []\n'), 4, 'roles.user.logins', /is empty/],
  ['refuses an unknown template variable', role('    logins: ["{{user}}"]\n'), 4, 'roles.user.logins[0]', /unknown variable \{\{user\}\}; the variables are \{\{username\}\} and \{\{external.CLAIM\}\}/],
  ['refuses an unclosed template', role('    logins: [a, "{{username"]\n'), 4, 'roles.user.logins[1]', /without a closing/],
  ['refuses a literal login that is not a valid Unix login', role('    logins: ["-oProxyCommand=x"]\n'), 4, 'roles.user.logins[0]', /not a valid login/],
  ['refuses template text that can never be a valid login', role('    logins: ["{{username}} x"]\n'), 4, 'roles.user.logins[0]', /not a valid login template/],
  ['reports a bad max_session_ttl with its line', role('    logins: [a]\n    max_session_ttl: 25x\n'), 5, 'roles.user.max_session_ttl', /"25x" is not a duration/],
  ['refuses yes as a boolean (YAML 1.2)', role('    logins: [a]\n    permit_pty: yes\n'), 5, 'roles.user.permit_pty', /must be true or false, not the text "yes"/],
  ['refuses a partial wildcard in a label value', role('    logins: [a]\n    node_labels: { env: "prod-*" }\n'), 5, 'roles.user.node_labels.env', /only a whole "\*" is a wildcard/],
  ['refuses the "*" key with a value other than "*"', role('    logins: [a]\n    node_labels: { "*": prod }\n'), 5, 'roles.user.node_labels.*', /only takes the value "\*"/],
  ['refuses an empty list of label values', role('    logins: [a]\n    node_labels: { env: [] }\n'), 5, 'roles.user.node_labels.env', /matches no node/],
  ['refuses a label value that is a mapping', role('    logins: [a]\n    node_labels: { env: { a: b } }\n'), 5, 'roles.user.node_labels.env', /must be text, not a mapping/],
  ['refuses a role that is not a mapping', 'cluster_name: t\nroles:\n  user: [a]\n', 3, 'roles.user', /must be a mapping/],
  // Nodes
  ['refuses nodes that are not a list', 'cluster_name: t\nnodes: { a: b }\n', 2, 'nodes', /must be a list/],
  ['requires a node name', 'cluster_name: t\nnodes:\n  - { addr: 10.0.0.1:22 }\n', 3, 'nodes[0].name', /is required/],
  ['requires a node addr', 'cluster_name: t\nnodes:\n  - { name: a }\n', 3, 'nodes[0].addr', /is required/],
  ['refuses a duplicate node name, ignoring case', 'cluster_name: t\nnodes:\n  - { name: web, addr: a }\n  - { name: WEB, addr: b }\n', 4, 'nodes[1].name', /already used by another node \(line 3\)/],
  ['refuses a node name that is not a host name', 'cluster_name: t\nnodes:\n  - { name: "web 1", addr: a }\n', 3, 'nodes[0].name', /not a valid node name/],
  ['refuses a bad node address', 'cluster_name: t\nnodes:\n  - { name: a, addr: "10.0.0.1:0" }\n', 3, 'nodes[0].addr', /from 1 to 65535/],
  ['refuses a label name with spaces', 'cluster_name: t\nnodes:\n  - { name: a, addr: b, labels: { "my env": x } }\n', 3, 'nodes[0].labels.my env', /not a valid label name/],
  ['refuses a label value that is a list', 'cluster_name: t\nnodes:\n  - { name: a, addr: b, labels: { env: [x] } }\n', 3, 'nodes[0].labels.env', /must be text, not a list/],
];

for (const [behaviour, yaml, line, key, reason] of problems) {
  test(behaviour, () => assertProblem(yaml, line, key, reason));
}

test('warns (with rule index, line and a suggestion) about a rule naming an undefined role', () => {
  const config = parseServerConfig(
    'cluster_name: t\nauth:\n  oidc:\n    issuer: https://i.test\n    client_id: c\n    client_secret: s\n    claims_to_roles:\n      - { claim: a, value: b, roles: [user] }\n      - { claim: a, value: c, roles: [user, admn] }\nroles:\n  user: { logins: [a] }\n  admin: { logins: [root] }\n',
    FILE,
  );
  assert.deepEqual(
    config.warnings?.map((w) => [w.line, w.key, w.reason]),
    [[9, 'auth.oidc.claims_to_roles[1].roles[1]', 'role "admn" is not defined under roles (did you mean `admin`?); logins that match this rule will be refused']],
  );
  assert.deepEqual(config.auth.oidc?.claimsToRoles[1]?.roles, ['user', 'admn']);
});

test('a valid config has no warnings property', () => {
  assert.equal('warnings' in parseServerConfig('cluster_name: t\n', FILE), false);
});

test('node label values written as numbers or booleans are kept as written', () => {
  const config = parseServerConfig('cluster_name: t\nnodes:\n  - { name: a, addr: b, labels: { rack: 012, gpu: true } }\n', FILE);
  assert.deepEqual(config.nodes[0]?.labels, { rack: '012', gpu: 'true' });
});

test('collects every problem into one ConfigError, one per line, in file order', () => {
  const text = `cluster_name: t
auth:
  cert_ttl: forever
roles:
  user:
    logins: ["{{nope}}"]
    max_session_ttl: 25x
proxy:
  web_listen_addr: 127.0.0.1:99999
`;
  let error: unknown;
  try {
    parseServerConfig(text, '/etc/jumpgate.yaml');
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ServerConfigError);
  assert.ok(error instanceof ConfigError, 'a ConfigError, so the CLI maps it like any config error');
  assert.equal(error.code, 'CONFIG_INVALID');
  assert.equal(error.file, '/etc/jumpgate.yaml');
  assert.equal(error.problems.length, 4);
  assert.ok(error.problems.every((p) => p instanceof ConfigProblem && p instanceof ConfigError));
  assert.deepEqual(error.message.split('\n'), [
    '/etc/jumpgate.yaml has 4 problems:',
    '/etc/jumpgate.yaml:3: auth.cert_ttl: "forever" is not a duration; use a number with a unit, e.g. 24h, 90m or 1h30m',
    '/etc/jumpgate.yaml:6: roles.user.logins[0]: "{{nope}}" uses the unknown variable {{nope}}; the variables are {{username}} and {{external.CLAIM}}',
    '/etc/jumpgate.yaml:7: roles.user.max_session_ttl: "25x" is not a duration; use a number with a unit, e.g. 24h, 90m or 1h30m (units: d, h, m, s)',
    '/etc/jumpgate.yaml:9: proxy.web_listen_addr: "127.0.0.1:99999": the port must be a number from 0 to 65535',
  ]);
});

test('a single problem is the whole message, in file:line: key: reason form', () => {
  assert.throws(
    () => parseServerConfig('cluster_name: t\nroles:\n  user:\n    logins: [a]\n    max_session_ttl: 25x\n', '/etc/jumpgate.yaml'),
    (err: unknown) => {
      assert.ok(err instanceof ServerConfigError);
      assert.equal(err.key, 'roles.user.max_session_ttl');
      assert.match(err.message, /^\/etc\/jumpgate\.yaml:5: roles\.user\.max_session_ttl: "25x" is not a duration; /);
      return true;
    },
  );
});

test('loads a config file from disk and resolves data_dir next to it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'jumpgate-config-'));
  try {
    const file = join(dir, 'jumpgate.yaml');
    writeFileSync(file, 'cluster_name: t\ndata_dir: state\n');
    const config = loadServerConfig(file);
    assert.equal(config.file, file);
    assert.equal(config.dataDir, join(dir, 'state'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing config file is a ConfigError that names the file and how to create one', () => {
  const file = join(tmpdir(), 'jumpgate-does-not-exist', 'jumpgate.yaml');
  assert.throws(
    () => loadServerConfig(file),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.file, file);
      assert.match(err.message, /no such file/);
      assert.match(err.hint ?? '', /sample/);
      return true;
    },
  );
});

test('a directory given as the config file is a ConfigError', () => {
  assert.throws(() => loadServerConfig(tmpdir()), (err: unknown) => err instanceof ConfigError && /directory/.test(err.message));
});

test('did-you-mean suggests only close candidates', () => {
  assert.equal(suggest('cert_tll', ['cert_ttl', 'oidc']), 'cert_ttl');
  assert.equal(suggest('CERT-TTL', ['cert_ttl', 'oidc']), 'cert_ttl');
  assert.equal(suggest('banana', ['cert_ttl', 'oidc']), undefined);
});

describe('auth.login_timeout', () => {
  const base = 'cluster_name: a.test\nroles:\n  user:\n    logins: [x]\n';
  test('defaults to the 10 minute maximum and accepts shorter values', () => {
    assert.equal(parseServerConfig(base, '/etc/j.yaml').auth.loginTimeoutSeconds, 600);
    assert.equal(parseServerConfig(base + 'auth:\n  login_timeout: 2s\n', '/etc/j.yaml').auth.loginTimeoutSeconds, 2);
  });
  test('refuses more than 10 minutes, naming the key', () => {
    assert.throws(() => parseServerConfig(base + 'auth:\n  login_timeout: 11m\n', '/etc/j.yaml'), /auth\.login_timeout: 11m is longer than the 10m/);
  });
});

describe('every outside key and value is checked, none silently dropped', () => {
  test('two unknown keys in one section are both reported (valibot strictObject stops at the first)', () => {
    const found = problemsOf('cluster_name: t\nproxy:\n  web_listen_adr: 127.0.0.1:1\n  ssh_listn_addr: 127.0.0.1:2\n');
    assert.deepEqual(found, [
      '3: proxy.web_listen_adr: unknown key; did you mean `web_listen_addr`?',
      '4: proxy.ssh_listn_addr: unknown key; did you mean `ssh_listen_addr`?',
    ]);
  });

  test('a section with an unknown key, a bad value and a missing partner reports all three', () => {
    const found = problemsOf('cluster_name: t\nproxy:\n  tls_cert_file: c.pem\n  public_addr: "x:0"\n  web_listen_adr: 1.2.3.4:5\n');
    assert.deepEqual(found, [
      '2: proxy.tls_key_file: is required with tls_cert_file: give both, or neither for a generated self-signed certificate',
      '4: proxy.public_addr: "x:0": the port must be a number from 1 to 65535',
      '5: proxy.web_listen_adr: unknown key; did you mean `web_listen_addr`?',
    ]);
  });

  for (const key of ['constructor', 'prototype', '__proto__']) {
    test(`a "${key}" key is refused where valibot would skip it (a dropped node_labels key would widen a role)`, () => {
      assertProblem(role(`    logins: [a]\n    node_labels: { env: prod, ${key}: x }\n`), 5, `roles.user.node_labels.${key}`, /cannot be used as a key here; rename it/);
      assertProblem(`cluster_name: t\nroles:\n  ${key}: { logins: [a] }\n`, 3, `roles.${key}`, /cannot be used as a key here/);
      assertProblem(`cluster_name: t\n${key}: x\n`, 2, key, /cannot be used as a key here/);
    });
  }

  test('lists and text where a mapping belongs are refused (valibot objects take arrays)', () => {
    assertProblem(role('    logins: [a]\n    node_labels: [env]\n'), 5, 'roles.user.node_labels', /must be a mapping \(key: value\), not a list/);
    assertProblem('cluster_name: t\nauth: [cert_ttl]\n', 2, 'auth', /must be a mapping .*with keys such as cert_ttl, login_timeout, oidc, not a list/);
    assertProblem('cluster_name: t\nnodes:\n  - [a, b]\n', 3, 'nodes[0]', /must be a mapping/);
    assertProblem('cluster_name: t\nproxy: text\n', 2, 'proxy', /must be a mapping .* not the text "text"/);
  });

  test('numbers are quoted back as written', () => {
    assertProblem('cluster_name: 1.50\n', 1, 'cluster_name', /must be text, not the number 1\.50; put it in quotes if you mean the text: "1\.50"/);
    assertProblem('cluster_name: t\nauth:\n  cert_ttl: 0x10\n', 3, 'auth.cert_ttl', /"0x10" is not a duration/);
  });

  test('aliases that expand to millions of values are refused at once ("billion laughs")', () => {
    let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x]\n';
    for (let i = 1; i <= 8; i++) text += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]\n`;
    const found = problemsOf(`cluster_name: t\nroles:\n  user:\n    logins: [a]\n    node_labels:\n${text.replace(/^/gm, '      ').trimEnd()}\n`);
    assert.ok(found.some((p) => /too many values or levels once aliases are expanded/.test(p)), found.join('\n'));
  });

  test('a key that is a list or mapping is named, with its line', () => {
    assertProblem('cluster_name: t\n? [a, b]\n: x\n', 2, '', /keys must be plain text, not a list/);
  });
});

test('control characters from the file are escaped in messages (keys and values reach a terminal)', () => {
  assert.throws(
    () => parseServerConfig('cluster_name: t\n"evil\\e[2J": 1\nroles:\n  user: { logins: ["a\\u009b1m"] }\n', FILE),
    (err: unknown) => {
      assert.ok(err instanceof ServerConfigError);
      assert.doesNotMatch(err.message, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
      assert.match(err.message, /evil\\x1b\[2J: unknown key/);
      assert.match(err.message, /a\\x9b1m/);
      return true;
    },
  );
});
describe('proxy.limits', () => {
  const base = 'cluster_name: a.test\nroles:\n  user:\n    logins: [x]\n';
  test('defaults keep one user below sshd MaxStartups 10 at one node and MaxSessions 10 per connection', () => {
    const l = parseServerConfig(base, '/etc/j.yaml').proxy.limits;
    assert.ok(l.maxNodeDialsPerUser < 10);
    assert.ok(l.maxChannelsPerConnection <= 10);
    assert.equal(l.nodeLoginGraceSeconds, 120);
  });
  test('reads every key', () => {
    const text = `${base}proxy:\n  limits:\n    max_connections_per_user: 3\n    max_channels_per_connection: 4\n    max_sessions_per_user: 5\n    max_concurrent_node_dials_per_user: 2\n    max_concurrent_node_dials_per_node: 6\n    node_login_grace_time: 30s\n`;
    assert.deepEqual(parseServerConfig(text, '/etc/j.yaml').proxy.limits, {
      maxConnectionsPerUser: 3,
      maxChannelsPerConnection: 4,
      maxSessionsPerUser: 5,
      maxNodeDialsPerUser: 2,
      maxNodeDialsPerNode: 6,
      nodeLoginGraceSeconds: 30,
    });
  });
  test('refuses zero, fractions, text, unknown keys and a grace time beyond an hour, each with its line', () => {
    const text = `${base}proxy:\n  limits:\n    max_connections_per_user: 0\n    max_channels_per_connection: 2.5\n    max_sessions_per_user: lots\n    max_chanels: 3\n    node_login_grace_time: 2h\n`;
    assertProblem(text, 7, 'proxy.limits.max_connections_per_user', /must be a whole number from 1 to 1000000, not the number 0/);
    assertProblem(text, 8, 'proxy.limits.max_channels_per_connection', /whole number/);
    assertProblem(text, 9, 'proxy.limits.max_sessions_per_user', /whole number.*the text "lots"/);
    assertProblem(text, 10, 'proxy.limits.max_chanels', /unknown key; the keys here are max_connections_per_user, max_channels_per_connection/);
    assertProblem(text, 11, 'proxy.limits.node_login_grace_time', /from 1s to 1h/);
  });
  test('warns when one user may fill a default MaxStartups', () => {
    const c = parseServerConfig(`${base}proxy:\n  limits:\n    max_concurrent_node_dials_per_user: 12\n`, '/etc/j.yaml');
    assert.match(c.warnings?.map((w) => w.message).join('\n') ?? '', /max_concurrent_node_dials_per_user: 12 lets one user fill a node's sshd MaxStartups/);
  });
});

describe('proxy.proxy_protocol_from', () => {
  const base = 'cluster_name: a.test\n';
  test('is off (empty) by default', () => {
    assert.deepEqual(parseServerConfig(base, '/etc/j.yaml').proxy.proxyProtocolFrom, []);
  });
  test('reads addresses and CIDR ranges of both families, as written', () => {
    const c = parseServerConfig(`${base}proxy:\n  proxy_protocol_from: [10.0.0.5, 10.1.0.0/16, "2001:db8::/48", "::1"]\n`, '/etc/j.yaml');
    assert.deepEqual(
      c.proxy.proxyProtocolFrom.map((r) => [r.entry, r.network.length, r.prefix]),
      [['10.0.0.5', 4, 32], ['10.1.0.0/16', 4, 16], ['2001:db8::/48', 16, 48], ['::1', 16, 128]],
    );
  });
  test('refuses host names, bad prefixes, host bits, too-wide ranges and non-lists, each with its line and the fix', () => {
    const text = `${base}proxy:\n  proxy_protocol_from:\n    - lb.example.com\n    - 10.0.0.0/33\n    - 10.1.2.3/8\n    - 0.0.0.0/0\n    - "::/0"\n    - 10.0.0.1/\n    - 7\n`;
    assertProblem(text, 4, 'proxy.proxy_protocol_from[0]', /"lb.example.com" is not an IP address \(host names are not allowed here/);
    assertProblem(text, 5, 'proxy.proxy_protocol_from[1]', /prefix length after "\/" must be a number from 0 to 32/);
    assertProblem(text, 6, 'proxy.proxy_protocol_from[2]', /host bits set below \/8; write the network address \(e.g. "10.0.0.0\/8"\)/);
    assertProblem(text, 7, 'proxy.proxy_protocol_from[3]', /trusts too many addresses/);
    assertProblem(text, 8, 'proxy.proxy_protocol_from[4]', /trusts too many addresses/);
    assertProblem(text, 9, 'proxy.proxy_protocol_from[5]', /prefix length/);
    assertProblem(text, 10, 'proxy.proxy_protocol_from[6]', /must be an IP address or CIDR range of your load balancer/);
    assertProblem(`${base}proxy:\n  proxy_protocol_from: 10.0.0.5\n`, 3, 'proxy.proxy_protocol_from', /must be a list/);
  });
});
