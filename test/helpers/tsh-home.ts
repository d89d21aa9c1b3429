/**
 * What `tsh login` leaves behind, made without a browser: the profile, the
 * key (file keystore), the certificate signed through the same issuer as a
 * login (issueUserCertificate on the server's data directory), tsh's
 * known_hosts with the host CA, and optionally the ~/.ssh/config block.
 * For end-to-end tests of everything after the login.
 */
import { join } from 'node:path';
import type { ServerConfig } from '../../src/config/index.js';
import { formatHostPort } from '../../src/shared/address.js';
import { openDirState } from './runtime.js';
import { issueUserCertificate } from '../../src/server/auth/issuer.js';
import { nodeAllowed, resolveAccess } from '../../src/server/auth/roles.js';
import { TshPaths } from '../../src/client/paths.js';
import { ProfileStore, type Profile } from '../../src/client/profile.js';
import { FileStore, openKeyStore } from '../../src/client/keystore.js';
import { AgentClient } from '../../src/client/agent.js';
import { knownHostsPatterns, writeClusterHostCAs } from '../../src/client/known-hosts.js';
import { installSshConfigBlock, renderSshConfigBlock, sshConfigInput } from '../../src/client/ssh-config.js';
import { encodeCertificateLine, encodeOpenSSHPrivateKey, formatPublicKeyLine, generateKeyPair, type Certificate } from '../../src/sshcert/index.js';
import { writeFileAtomic } from '../../src/util/atomic-write.js';
import { REPO } from './tools.js';

export interface FakeLoginOptions {
  /** The server's config (its data directory holds the CAs). */
  config: ServerConfig;
  /** The user's home: TSH_HOME is <home>/.tsh, the ssh config <home>/.ssh/config. */
  home: string;
  username: string;
  roles: string[];
  ttlSeconds?: number;
  /** host:port clients use; default: the config's public addresses. */
  webProxyAddr?: string;
  sshProxyAddr?: string;
  /** Sign as of this time (in the past for an expired certificate). Default: now. */
  signedAt?: Date;
  /** Write the block into <home>/.ssh/config, as a login does. Default true. */
  sshConfig?: boolean;
  /** How the block's ProxyCommand runs tsh. Default: this Node and the repository's bin/tsh. */
  selfCommand?: string[];
  /** TSH_HOME. Default <home>/.tsh. */
  tshHome?: string;
  /** Where the private key goes, as `tsh login --keystore=`. Default file; keychain needs a real Secret Service. */
  keystore?: 'file' | 'keychain';
  /** Loads key + certificate into the agent at this socket, as tsh login does. Default: no agent. */
  agentSock?: string;
  /** What the login remembers for the block's `tsh proxy ssh --relogin=` (a login that could open a browser: auto). Default: not set (never). */
  relogin?: 'auto' | 'never';
}

export interface FakeLogin {
  paths: TshPaths;
  profile: Profile;
  cert: Certificate;
  /** Environment for tsh and ssh: TSH_HOME and HOME set, no proxy variables, no agent. */
  env: NodeJS.ProcessEnv;
  /** <home>/.ssh/config (holds the managed block when sshConfig was not false). */
  sshConfigFile: string;
}

/** Produces exactly the files a successful `tsh login` writes (default `--keystore=file`, no agent). */
export async function fakeLogin(o: FakeLoginOptions): Promise<FakeLogin> {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: o.home, TSH_HOME: o.tshHome ?? join(o.home, '.tsh') };
  for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'SSH_AUTH_SOCK', 'TSH_PROXY']) delete env[k];
  const paths = new TshPaths({ env, homedir: o.home, platform: process.platform });
  const clock = () => o.signedAt ?? new Date();
  const state = await openDirState(o.config.dataDir, { clock });
  const { ca, audit } = state;
  const kp = generateKeyPair('ed25519');
  let cert: Certificate;
  try {
    cert = await issueUserCertificate(
      { username: o.username, roles: o.roles, publicKey: kp.publicKey, via: 'test-fake-login', ...(o.ttlSeconds ? { requestedTtlSeconds: o.ttlSeconds } : {}) },
      { config: o.config, ca, audit, clock, store: state.store },
    );
  } finally {
    await state.close();
  }
  const access = resolveAccess(o.config, o.username, o.roles);
  const p = o.config.proxy;
  const webProxyAddr = o.webProxyAddr ?? `${p.publicAddr.host}:${p.publicAddr.port}`;
  const sshProxyAddr = o.sshProxyAddr ?? `${p.sshPublicAddr.host}:${p.sshPublicAddr.port}`;
  const profile: Profile = {
    version: 1,
    name: webProxyAddr.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1'),
    webProxyAddr,
    sshProxyAddr,
    clusterName: o.config.clusterName,
    username: o.username,
    logins: cert.principals,
    roles: access.roles,
    validBefore: new Date(Number(cert.validBefore) * 1000).toISOString(),
    keystore: o.keystore ?? 'file',
    insecure: true,
    ...(o.relogin ? { relogin: o.relogin } : {}),
    nodeNames: o.config.nodes.filter((n) => nodeAllowed(access, n)).map((n) => n.name),
    nodeAddrs: o.config.nodes.filter((n) => nodeAllowed(access, n)).map((n) => formatHostPort(n.addr)),
  };
  const store = new ProfileStore(paths);
  await store.locked(async () => {
    store.ensureDirs(profile.name);
    const keystore = o.keystore === 'keychain' ? await openKeyStore('keychain', { paths, notice: () => undefined }) : new FileStore(paths);
    await keystore.save(profile.name, profile.username, encodeOpenSSHPrivateKey(kp.privateKey, `${o.username}@${profile.name}`));
    writeFileAtomic(paths.publicKey(profile.name, profile.username), formatPublicKeyLine(kp.publicKey, o.username) + '\n', 0o644);
    writeFileAtomic(paths.certificate(profile.name, profile.username), encodeCertificateLine(cert, o.username) + '\n', 0o644);
    store.save(profile);
    writeClusterHostCAs(paths.knownHosts(), {
      clusterName: profile.clusterName,
      proxyHost: profile.name,
      nodeNames: profile.nodeNames,
      patterns: knownHostsPatterns({ clusterName: profile.clusterName, nodeNames: profile.nodeNames, sshProxyAddr, nodeAddrs: profile.nodeAddrs ?? [] }),
      caKeys: ca.get('host').trusted.map((k) => k.publicKey),
    });
  });
  if (o.agentSock) {
    const agent = await AgentClient.connect({ socketPath: o.agentSock, env: {}, platform: process.platform });
    try {
      const res = await agent.addCertificateAndVerify({
        privateKey: kp.privateKey,
        certBlob: cert.blob,
        comment: `jumpgate ${o.username}@${profile.name}`,
        lifetimeSeconds: 3600,
      });
      if (res.warning) throw new Error(res.warning);
    } finally {
      agent.close();
    }
  }
  if (o.sshConfig !== false) {
    const block = renderSshConfigBlock(sshConfigInput(profile, paths, o.selfCommand ?? [process.execPath, join(REPO, 'bin', 'tsh')]));
    installSshConfigBlock(paths, profile.name, block);
  }
  return { paths, profile, cert, env, sshConfigFile: paths.sshConfig() };
}
