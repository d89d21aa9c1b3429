/**
 * A cluster with a node, on loopback: the CAs made in the data directory, a
 * private OpenSSH node (node1) that trusts the user CA and presents a host
 * certificate, and the real `jumpgate start` routing to it. Shared by the SSH
 * proxy end-to-end tests and bench/proxy.ts.
 *
 * Inventory (default): node1 (env=test) and secret1 (env=prod, same sshd) so a role
 * selecting env=test can be refused secret1. Roles: `user` (env=test) and
 * `agent` (env=test, forward_agent).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadServerConfig, type ServerConfig } from '../../src/config/index.js';
import { openDirState } from './runtime.js';
import { issueHostCertificate } from '../../src/server/auth/issuer.js';
import { encodeCertificateLine, encodeOpenSSHPrivateKey, formatPublicKeyLine, generateKeyPair } from '../../src/sshcert/index.js';
import { startCluster, type Cluster } from './cluster.js';
import { freePort, startSshd, type SshdNode } from './sshd.js';

export interface ProxyCluster extends Cluster {
  config: ServerConfig;
  node: SshdNode;
  /** The node's host key and certificate files (for a second sshd, e.g. a ProxyJump baseline). */
  hostKeyFile: string;
  userCaFile: string;
}

export interface ProxyClusterOptions {
  clusterName?: string;
  sshdExtra?: string[];
  debug?: boolean;
  /** A fixed HTTPS port (e.g. one already registered as a redirect URI at the IdP). */
  webPort?: number;
  /** Single sign-on through this IdP; claims_to_roles maps email_verified=true to `user`. */
  oidc?: { issuer: string; clientId: string; clientSecret: string };
  /** Environment of the `jumpgate start` process (e.g. HTTPS_PROXY for its IdP calls). */
  env?: NodeJS.ProcessEnv;
  /** The inventory, every node on the one sshd. Default node1 (env=test) and secret1 (env=prod). */
  nodes?: Array<{ name: string; env: string }>;
  /** The node sshd's loopback address (default 127.0.0.1; 127.0.0.2 is an address the ssh_config block routes). */
  nodeHost?: string;
  /** The host of both public addresses (default localhost): a second cluster on one machine needs another profile name. */
  publicHost?: string;
  /** More keys under `proxy:`, each line indented by two spaces (e.g. `  proxy_protocol_from: [127.0.0.1]`). */
  proxyYaml?: string[];
  /** More keys under `auth:`, indented by two spaces (e.g. `  session_recording: proxy`). */
  authYaml?: string[];
  /** More roles under `roles:`, indented by two spaces. */
  rolesYaml?: string[];
  /** More claims_to_roles rules (with oidc), checked before email_verified → user, e.g. `{ claim: groups, value: auditors, roles: [auditor, user] }`. */
  claimsToRolesYaml?: string[];
}

export async function startProxyCluster(dir: string, opts: ProxyClusterOptions = {}): Promise<ProxyCluster> {
  const clusterName = opts.clusterName ?? 'e2e.test';
  const nodeHost = opts.nodeHost ?? '127.0.0.1';
  const publicHost = opts.publicHost ?? 'localhost';
  const inventory = opts.nodes ?? [
    { name: 'node1', env: 'test' },
    { name: 'secret1', env: 'prod' },
  ];
  const dataDir = join(dir, 'data');
  const [webPort, sshPort] = [opts.webPort ?? (await freePort()), await freePort()];
  const oidc = opts.oidc
    ? [
        '  oidc:',
        `    issuer: ${opts.oidc.issuer}`,
        `    client_id: ${opts.oidc.clientId}`,
        `    client_secret: ${opts.oidc.clientSecret}`,
        '    claims_to_roles:',
        ...(opts.claimsToRolesYaml ?? []).map((r) => `      - ${r}`),
        '      - { claim: email_verified, value: true, roles: [user] }',
      ]
    : [];
  const yaml = (nodePort: number) =>
    [
      `cluster_name: ${clusterName}`,
      `data_dir: ${dataDir}`,
      'proxy:',
      `  web_listen_addr: 127.0.0.1:${webPort}`,
      `  public_addr: ${publicHost}:${webPort}`,
      `  ssh_listen_addr: 127.0.0.1:${sshPort}`,
      `  ssh_public_addr: ${publicHost}:${sshPort}`,
      ...(opts.proxyYaml ?? []),
      ...(oidc.length > 0 || opts.authYaml ? ['auth:', ...(opts.authYaml ?? []), ...oidc] : []),
      'roles:',
      '  user:',
      '    logins: ["{{username}}"]',
      '    node_labels: { env: test }',
      '  agent:',
      '    logins: ["{{username}}"]',
      '    node_labels: { env: test }',
      '    forward_agent: true',
      ...(opts.rolesYaml ?? []),
      'nodes:',
      ...inventory.map((n) => `  - { name: ${n.name}, addr: "${nodeHost}:${nodePort}", labels: { env: ${n.env} } }`),
      '',
    ].join('\n');
  // The CAs first (the node needs the user CA and a host certificate), then the node, then the server.
  const preFile = join(dir, 'pre.yaml');
  writeFileSync(preFile, yaml(22));
  const pre = loadServerConfig(preFile);
  const state = await openDirState(dataDir);
  const { ca, audit, clock } = state;
  const hostKey = generateKeyPair('ed25519');
  let hostCert;
  try {
    hostCert = await issueHostCertificate(
      // The issuer adds each name's lower-case name.<cluster> form, as for tctl auth sign.
      { names: [...inventory.map((n) => n.name), nodeHost, 'localhost'], publicKey: hostKey.publicKey, ttlSeconds: 24 * 3600, via: 'test' },
      { config: pre, ca, audit, clock },
    );
  } finally {
    await state.close();
  }
  const hostKeyFile = join(dir, 'node_host_key');
  writeFileSync(hostKeyFile, encodeOpenSSHPrivateKey(hostKey.privateKey, 'node1'), { mode: 0o600 });
  writeFileSync(`${hostKeyFile}-cert.pub`, encodeCertificateLine(hostCert, 'node1') + '\n');
  const userCaFile = join(dir, 'user_ca.pub');
  writeFileSync(userCaFile, ca.get('user').trusted.map((k) => formatPublicKeyLine(k.publicKey)).join('\n') + '\n');
  const node = await startSshd({ dir, hostKey: hostKeyFile, hostCertificate: `${hostKeyFile}-cert.pub`, trustedUserCaKeys: userCaFile, extra: opts.sshdExtra ?? [], listenAddress: nodeHost });
  let cluster: Cluster;
  try {
    cluster = await startCluster(dir, yaml(node.port), { ...(opts.debug ? { args: ['--debug'] } : {}), ...(opts.env ? { env: opts.env } : {}) });
  } catch (err) {
    await node.stop();
    throw err;
  }
  return {
    ...cluster,
    config: loadServerConfig(cluster.configFile),
    node,
    hostKeyFile,
    userCaFile,
    stop: async () => {
      await cluster.stop();
      await node.stop();
    },
  };
}
