/**
 * A whole cluster for the "several proxies" tests and benchmarks, on
 * loopback, in one of three set-ups:
 *
 *   proxies  storage   in front
 *   1        dir       nothing, or HAProxy
 *   1        postgres  nothing, or HAProxy
 *   2        postgres  HAProxy (test/helpers/haproxy.ts)
 *
 * Every proxy is the real `jumpgate start` (dist/) with its own data_dir and
 * ports, the same TLS certificate and key files, and (postgres) the same
 * database and encryption key file; public_addr / ssh_public_addr name the
 * entry point (HAProxy's ports when it is in front). One private OpenSSH
 * node serves every inventory name. Everything the node and the clients need
 * from the CAs comes from `tctl` run against the cluster's store, exactly as
 * an admin would do it (`tctl auth sign --host`, `tctl auth export`,
 * `tctl auth sign --user`): the same code works on either backend.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevIdp, type DevAccount, type DevIdp } from '../../scripts/dev-idp.js';
import { startCluster, type Cluster } from './cluster.js';
import { startHaproxy, type Haproxy } from './haproxy.js';
import { startPostgres, type TestPostgres } from './postgres.js';
import { freePort, startSshd, type SshdNode } from './sshd.js';
import { requireTool, run, runProgram, type RunResult } from './tools.js';

export const HA_OIDC_SECRET = 'ha-secret';

/** The IdP account whose login is `root` (sshd here runs as root and can log in only as existing users). */
export const ROOT_ACCOUNT: DevAccount = { login: 'root', claims: { preferred_username: 'root', email: 'root@example.test', email_verified: true } };

export interface HaClusterOptions {
  /** A fresh directory (tempDir()). */
  dir: string;
  proxies: 1 | 2;
  storage: 'dir' | 'postgres';
  /** HAProxy in front (required with two proxies). */
  haproxy: boolean;
  /** HAProxy connects from each client's own address (`usesrc clientip`; benchmarks: see haproxy.ts). */
  preserveClientAddr?: boolean;
  /** Start the development IdP with these accounts and configure auth.oidc. */
  oidc?: { accounts: DevAccount[] };
  /** Inventory names, all on the one sshd (default node1). */
  nodes?: string[];
  /** Extra sshd_config lines for the node. */
  sshdExtra?: string[];
  /** Extra lines under `proxy:` (indented two spaces), e.g. limits. */
  proxyExtra?: string[];
  /** An already running PostgreSQL to use (a fresh database is made on it); default: start one. */
  pg?: TestPostgres;
}

export interface HaCluster {
  dir: string;
  pg?: TestPostgres;
  /** The cluster's database on `pg` (postgres storage; startHaCluster makes a fresh one). */
  database?: string;
  haproxy?: Haproxy;
  idp?: DevIdp;
  node: SshdNode;
  /** The running proxies (index = HAProxy's jumpgate1, jumpgate2, ...). */
  proxies: Cluster[];
  /** Where clients connect: HAProxy's ports, or the one proxy's. */
  webPort: number;
  sshPort: number;
  /** The config tctl uses (the same store as the proxies). */
  tctlConfig: string;
  /** `tctl --config <tctlConfig> ...args`. */
  tctl(args: string[]): Promise<RunResult>;
  /** A user certificate for login root, role user, made by `tctl auth sign --user` (PATH and PATH-cert.pub). */
  userKeyFile: string;
  /** `@cert-authority * <host CA>` lines from `tctl auth export --type=host`. */
  knownHostsFile: string;
  /** sshd's TrustedUserCAKeys file; `refreshUserCa()` rewrites it from `tctl auth export --type=user`. */
  userCaFile: string;
  refreshUserCa(): Promise<void>;
  /**
   * An ssh_config for plain OpenSSH: `ssh -F <file> node1 CMD` goes through
   * `jump` (the entry SSH port, ProxyJump = direct-tcpip through Jumpgate)
   * with the tctl-made certificate, checking host certificates against the host CA.
   */
  sshConfigFile: string;
  /** The same for one proxy's own SSH port (bypassing HAProxy): host alias `jump<i+1>`. */
  jumpAlias(i: number): string;
  /** Starts proxy i again (same config) after a kill. */
  restartProxy(i: number): Promise<Cluster>;
  stop(): Promise<void>;
}

/** Starts the database (when postgres), HAProxy, the IdP, the node and the proxies; stops what started on failure. */
export async function startHaCluster(o: HaClusterOptions): Promise<HaCluster> {
  if (o.proxies > 1 && !o.haproxy) throw new Error('startHaCluster: two proxies need HAProxy in front');
  if (o.proxies > 1 && o.storage !== 'postgres') throw new Error('startHaCluster: two proxies share state only on postgres');
  const openssl = requireTool('openssl', 'apt-get install -y openssl');
  const cleanups: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    const nodeNames = o.nodes ?? ['node1'];
    // The storage block every process (proxies and tctl) shares.
    let storage: string[] = [];
    let pg: TestPostgres | undefined;
    let database: string | undefined;
    if (o.storage === 'postgres') {
      pg = o.pg;
      if (!pg) {
        const own = await startPostgres();
        cleanups.push(() => own.stop());
        pg = own;
      }
      database = `jg_${randomBytes(4).toString('hex')}`;
      const conn = await pg.createDatabase(database);
      const keyFile = join(o.dir, 'storage.key');
      writeFileSync(keyFile, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
      storage = ['storage:', '  type: postgres', `  conn_string: "${conn}"`, `  encryption_key_file: ${keyFile}`];
    }
    // One TLS certificate for every proxy: clients behind HAProxy see one certificate.
    const tlsCert = join(o.dir, 'tls-cert.pem');
    const tlsKey = join(o.dir, 'tls-key.pem');
    const made = await run(openssl, [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', tlsKey, '-out', tlsCert,
    ]);
    if (made.code !== 0) throw new Error(`openssl req failed: ${made.stderr}`);

    const ports = await Promise.all(Array.from({ length: o.proxies }, async () => ({ web: await freePort(), ssh: await freePort() })));
    let haproxy: Haproxy | undefined;
    if (o.haproxy) {
      const hdir = join(o.dir, 'haproxy');
      mkdirSync(hdir);
      const h = await startHaproxy({ dir: hdir, web: ports.map((p) => p.web), ssh: ports.map((p) => p.ssh), ...(o.preserveClientAddr ? { preserveClientAddr: true } : {}) });
      cleanups.push(() => h.stop());
      haproxy = h;
    }
    const webPort = haproxy?.webPort ?? ports[0]!.web;
    const sshPort = haproxy?.sshPort ?? ports[0]!.ssh;

    let idp: DevIdp | undefined;
    if (o.oidc) {
      const i = await startDevIdp({ clientId: 'jumpgate', clientSecret: HA_OIDC_SECRET, redirectUris: [`https://127.0.0.1:${webPort}/v1/login/oidc/callback`], accounts: o.oidc.accounts });
      cleanups.push(() => i.close());
      idp = i;
    }

    const proxyDir = (i: number) => join(o.dir, `proxy${i + 1}`);
    const yaml = (dataDir: string, own: { web: number; ssh: number }, nodePort: number) =>
      [
        'cluster_name: ha.test',
        `data_dir: ${dataDir}`,
        'proxy:',
        `  web_listen_addr: 127.0.0.1:${own.web}`,
        `  public_addr: 127.0.0.1:${webPort}`,
        `  ssh_listen_addr: 127.0.0.1:${own.ssh}`,
        `  ssh_public_addr: 127.0.0.1:${sshPort}`,
        `  tls_cert_file: ${tlsCert}`,
        `  tls_key_file: ${tlsKey}`,
        ...(o.proxyExtra ?? []).map((l) => `  ${l}`),
        ...(idp
          ? [
              'auth:',
              '  oidc:',
              `    issuer: ${idp.issuer}`,
              '    client_id: jumpgate',
              `    client_secret: ${HA_OIDC_SECRET}`,
              '    claims_to_roles: [{ claim: email_verified, value: true, roles: [user] }]',
            ]
          : []),
        ...storage,
        'roles:',
        '  user: { logins: ["{{username}}"], node_labels: { env: test } }',
        'nodes:',
        ...nodeNames.map((n) => `  - { name: ${n}, addr: "127.0.0.1:${nodePort}", labels: { env: test } }`),
        '',
      ].join('\n');

    // tctl: on dir it works on the first proxy's data directory; on postgres, on the database (own data_dir).
    for (let i = 0; i < o.proxies; i++) mkdirSync(proxyDir(i));
    const tctlConfig = join(o.dir, 'tctl.yaml');
    const tctlDataDir = o.storage === 'dir' ? join(proxyDir(0), 'data') : join(o.dir, 'tctl-data');
    writeFileSync(tctlConfig, yaml(tctlDataDir, ports[0]!, 22));
    const tctl = (args: string[]) => runProgram('tctl', ['--config', tctlConfig, ...args], { timeoutMs: 30_000 });
    const must = async (args: string[]) => {
      const r = await tctl(args);
      if (r.code !== 0) throw new Error(`tctl ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
      return r.stdout;
    };

    const hostKeyFile = join(o.dir, 'node_host_key');
    await must(['auth', 'sign', `--host=${[...nodeNames, '127.0.0.1'].join(',')}`, '--format=openssh', `--out=${hostKeyFile}`]);
    const userCaFile = join(o.dir, 'user_ca.pub');
    const refreshUserCa = async () => writeFileSync(userCaFile, await must(['auth', 'export', '--type=user']));
    await refreshUserCa();
    const knownHostsFile = join(o.dir, 'known_hosts');
    writeFileSync(knownHostsFile, await must(['auth', 'export', '--type=host']));
    const userKeyFile = join(o.dir, 'user_key');
    await must(['auth', 'sign', '--user=root', '--roles=user', '--format=openssh', `--out=${userKeyFile}`]);

    const nodeDir = join(o.dir, 'node');
    mkdirSync(nodeDir);
    const node = await startSshd({ dir: nodeDir, hostKey: hostKeyFile, hostCertificate: `${hostKeyFile}-cert.pub`, trustedUserCaKeys: userCaFile, extra: o.sshdExtra ?? [] });
    cleanups.push(() => node.stop());

    const proxies: Cluster[] = [];
    const startProxy = async (i: number) => {
      const c = await startCluster(proxyDir(i), yaml(join(proxyDir(i), 'data'), ports[i]!, node.port));
      cleanups.push(() => c.stop());
      proxies[i] = c;
      return c;
    };
    // One at a time: on postgres the first applies the schema migrations (the second would wait on the advisory lock anyway).
    for (let i = 0; i < o.proxies; i++) await startProxy(i);
    if (haproxy) {
      for (let i = 0; i < o.proxies; i++) {
        await haproxy.waitForStatus('web', `jumpgate${i + 1}`, 'UP');
        await haproxy.waitForStatus('ssh', `jumpgate${i + 1}`, 'UP');
      }
    }

    const sshConfigFile = join(o.dir, 'ssh_config');
    writeFileSync(
      sshConfigFile,
      [
        'Host jump',
        '    HostName 127.0.0.1',
        `    Port ${sshPort}`,
        ...ports.flatMap((p, i) => [`Host jump${i + 1}`, '    HostName 127.0.0.1', `    Port ${p.ssh}`]),
        `Host ${nodeNames.join(' ')}`,
        '    ProxyJump jump',
        'Host *',
        '    User root',
        `    IdentityFile ${userKeyFile}`,
        `    CertificateFile ${userKeyFile}-cert.pub`,
        '    IdentitiesOnly yes',
        `    UserKnownHostsFile ${knownHostsFile}`,
        '    GlobalKnownHostsFile /dev/null',
        '    StrictHostKeyChecking yes',
        '    BatchMode yes',
        '    ConnectTimeout 10',
        // A session whose proxy died mid-way ends within seconds instead of waiting for TCP to give up.
        '    ServerAliveInterval 2',
        '    ServerAliveCountMax 3',
        '    LogLevel ERROR',
        '',
      ].join('\n'),
    );

    return {
      dir: o.dir,
      ...(pg ? { pg } : {}),
      ...(database ? { database } : {}),
      ...(haproxy ? { haproxy } : {}),
      ...(idp ? { idp } : {}),
      node,
      proxies,
      webPort,
      sshPort,
      tctlConfig,
      tctl,
      userKeyFile,
      knownHostsFile,
      userCaFile,
      refreshUserCa,
      sshConfigFile,
      jumpAlias: (i) => `jump${i + 1}`,
      restartProxy: startProxy,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Plain OpenSSH with the cluster's ssh_config: `ssh -F CONFIG [-J JUMP] root@NODE CMD`. */
export function sshArgs(c: HaCluster, node: string, command: string[], jump?: string): string[] {
  return ['-F', c.sshConfigFile, ...(jump ? ['-J', jump] : []), `root@${node}`, ...command];
}

/**
 * A short plain-OpenSSH session that runs no shell: `ssh -s root@NODE sftp`
 * with stdin closed (sshd's internal-sftp starts and ends at once; exit 0).
 * Through the proxy and the node exactly as `ssh node1 true`, without the
 * login shell: root's ~/.bashrc takes about 2.7 s on the test machines,
 * which would make every session cost that.
 */
export function sshShortArgs(c: HaCluster, node: string, jump?: string): string[] {
  return ['-F', c.sshConfigFile, ...(jump ? ['-J', jump] : []), '-s', `root@${node}`, 'sftp'];
}
