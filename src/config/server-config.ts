/**
 * The server configuration (`jumpgate start --config FILE`, also read by tctl):
 * schema, defaults and validation. The keys are fixed by CONTRACT.md.
 *
 * Validation reads the YAML syntax tree rather than the plain object so every
 * problem can name its line. It does not stop at the first problem: all of them
 * are collected and thrown as one `ServerConfigError`, so an admin fixes the whole
 * file in one pass instead of restarting the server once per typo.
 *
 * Relative paths (`data_dir`, `tls_cert_file`, `tls_key_file`, `client_secret_file`)
 * are resolved against the directory of the config file, not the working
 * directory, so `jumpgate start` from a systemd unit, `tctl` from a shell in $HOME
 * and a test runner in the repo all reach the same data directory.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { ConfigError, type ErrorDetails } from '../errors.js';
import {
  AddressError,
  formatHostPort,
  isHostname,
  isLoopbackHost,
  isUnspecifiedHost,
  parseHostPort,
  type HostPort,
  type ParseHostPortOptions,
} from './address.js';
import { DurationError, formatDuration, parseDuration } from './duration.js';
import { LoginTemplateError, parseLoginTemplate } from './login-template.js';

export type { HostPort } from './address.js';

/** The whole server configuration, with defaults applied and paths absolute. */
export interface ServerConfig {
  /** Absolute path of the config file. */
  file: string;
  clusterName: string;
  /** Absolute; a relative `data_dir` is resolved against the config file's directory. */
  dataDir: string;
  proxy: ProxyConfig;
  auth: AuthConfig;
  roles: Map<string, RoleConfig>;
  nodes: NodeConfig[];
  /**
   * Things that are allowed but probably wrong (present only when there are any);
   * the server prints them at start. Example: a claims_to_roles rule naming a role
   * that is not defined (CONTRACT.md's own example does this): logins that match
   * it are refused, so it fails closed.
   */
  warnings?: ConfigProblem[];
}

export interface ProxyConfig {
  webListenAddr: HostPort;
  /** What clients use for HTTPS; defaults to `webListenAddr`. */
  publicAddr: HostPort;
  sshListenAddr: HostPort;
  /** What clients use for SSH; defaults to `sshListenAddr`. */
  sshPublicAddr: HostPort;
  /** Absolute; both or neither. Without them the server generates a self-signed certificate. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** What one user may make the SSH proxy and the nodes hold (`proxy.limits`). */
  limits: ProxyLimits;
}

/**
 * `proxy.limits`: caps on what one authenticated user can make the proxy and
 * the nodes hold; see server/proxy/session-limits.ts for how each is counted.
 */
export interface ProxyLimits {
  /** Authenticated SSH connections to the proxy per user (`max_connections_per_user`). */
  maxConnectionsPerUser: number;
  /** Open channels (session and direct-tcpip, used or not) on one SSH connection (`max_channels_per_connection`). */
  maxChannelsPerConnection: number;
  /** Node sessions (relays, and dials on their way) per user, over all connections (`max_sessions_per_user`). */
  maxSessionsPerUser: number;
  /** One user's node connections that may still be authenticating at one node (`max_concurrent_node_dials_per_user`). */
  maxNodeDialsPerUser: number;
  /** All users' node connections that may still be authenticating at one node (`max_concurrent_node_dials_per_node`). */
  maxNodeDialsPerNode: number;
  /** How long a node connection counts as possibly unauthenticated: the nodes' sshd LoginGraceTime (`node_login_grace_time`). */
  nodeLoginGraceSeconds: number;
}

export interface AuthConfig {
  /** Default TTL of user certificates (`auth.cert_ttl`, default 24h). */
  certTtlSeconds: number;
  /** How long a browser login may take from `tsh login` to the IdP's answer (`auth.login_timeout`, default and maximum 10m). */
  loginTimeoutSeconds: number;
  /** Absent: no browser login; tctl still signs certificates. */
  oidc?: OidcConfig;
}

export interface ClaimRule {
  claim: string;
  value: string | boolean;
  roles: string[];
}

export interface OidcConfig {
  /** Exactly as written: OIDC compares it byte for byte with the `iss` the IdP reports. */
  issuer: string;
  clientId: string;
  /** Exactly one of clientSecret and clientSecretFile is set. */
  clientSecret?: string;
  /** Absolute; read by the server when it starts, not here. */
  clientSecretFile?: string;
  scopes: string[];
  usernameClaim: string;
  /** First match wins; no match means the login is refused. */
  claimsToRoles: ClaimRule[];
  /**
   * Set (to true) only when the issuer is a plain-http URL on a loopback host, which the
   * validation allows for development IdPs; the OIDC client must then opt into http.
   * Not a config key: it follows from the issuer.
   */
  insecureAllowHttpLoopback?: boolean;
}

export interface RoleConfig {
  name: string;
  /** Login templates, see login-template.ts. */
  logins: string[];
  /** Label selector; `{}` (the default) grants no nodes, `{"*": "*"}` grants all. */
  nodeLabels: Record<string, string | string[]>;
  /** Caps the certificate TTL; defaults to auth.cert_ttl. */
  maxSessionTtlSeconds: number;
  permitPty: boolean;
  forwardAgent: boolean;
  portForwarding: boolean;
  x11Forwarding: boolean;
  permitUserRc: boolean;
}

export interface NodeConfig {
  name: string;
  /** The node's sshd; the port defaults to 22. */
  addr: HostPort;
  labels: Record<string, string>;
}

/** The defaults, in one place so the README and the sample can quote them. */
export const CONFIG_DEFAULTS = {
  dataDir: './data',
  webListenAddr: '127.0.0.1:3080',
  sshListenAddr: '127.0.0.1:3023',
  certTtl: '24h',
  scopes: ['openid', 'email', 'profile'],
  usernameClaim: 'preferred_username',
  nodePort: 22,
  permitPty: true,
  portForwarding: true,
  forwardAgent: false,
  x11Forwarding: false,
  permitUserRc: false,
  // proxy.limits: below sshd's MaxStartups 10 for one user at one node; MaxSessions 10 per connection.
  maxConnectionsPerUser: 32,
  maxChannelsPerConnection: 10,
  maxSessionsPerUser: 64,
  maxNodeDialsPerUser: 8,
  maxNodeDialsPerNode: 32,
  nodeLoginGraceTime: '2m',
} as const;

/** One problem in a config file, located by key path and, when known, line. */
export class ConfigProblem extends ConfigError {
  constructor(
    file: string,
    key: string,
    readonly reason: string,
    /** 1-based line in the file, when the YAML node has a position. */
    readonly line: number | undefined,
    details: ErrorDetails = {},
  ) {
    super(file, key, reason, details);
    // Compiler style (`file:line: key: reason`) so editors and terminals can jump to it.
    this.message = `${file}${line === undefined ? '' : `:${line}`}: ${key ? `${key}: ` : ''}${reason}`;
  }
}

/**
 * Every problem found in a config file, thrown as one error. The message lists
 * them one per line in file order; `problems` has them individually.
 */
export class ServerConfigError extends ConfigError {
  readonly problems: readonly ConfigProblem[];

  constructor(file: string, problems: readonly ConfigProblem[]) {
    const first = problems[0];
    const single = problems.length === 1 && first !== undefined;
    super(file, single ? first.key : '', single ? first.reason : `${problems.length} problems`, {
      hint: single ? first.hint : 'fix every problem listed, then run the command again',
      cause: single ? first.cause : undefined,
    });
    this.problems = problems;
    this.message = single
      ? first.message
      : [`${file} has ${problems.length} problems:`, ...problems.map((p) => p.message)].join('\n');
  }
}

/**
 * Reads and validates a config file.
 * @throws ConfigError when the file cannot be read (with how to create one), ServerConfigError when it is invalid.
 */
export function loadServerConfig(file: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory, not a file'
            : `cannot be read (${(err as Error).message})`;
    const hint =
      code === 'EACCES' || code === 'EPERM'
        ? 'run as a user that can read it (it holds secrets: keep it 0600 and owned by the server user)'
        : 'create it from the annotated sample: `jumpgate configure > FILE` prints one, or pass --config with the right path';
    throw new ConfigError(file, '', reason, { hint, cause: err });
  }
  return parseServerConfig(text, file);
}

/**
 * Validates config text; `file` names it in messages and anchors relative paths.
 * Pure apart from path resolution: reads no other files.
 * @throws ServerConfigError listing every problem.
 */
export function parseServerConfig(text: string, file: string): ServerConfig {
  const lines = new LineCounter();
  let doc: ReturnType<typeof parseDocument>;
  try {
    // uniqueKeys off: duplicates are detected below, where the key path is known.
    doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false, version: '1.2' });
  } catch (err) {
    // The yaml package recurses per nesting level: thousands of levels overflow the stack (found by test/fuzz/config.test.ts).
    if (err instanceof RangeError) throw new ServerConfigError(file, [new ConfigProblem(file, '', 'YAML: nested too deeply to read; a config needs a few levels', undefined, { cause: err })]);
    throw err;
  }
  const c = new Checker(file, doc, lines);
  // Errors at the very end (an unclosed quote or bracket) point past the last line: clamp.
  const lastLine = lines.linePos(text.trimEnd().length).line;
  for (const e of [...doc.errors, ...doc.warnings]) {
    const message =
      e.code === 'MULTIPLE_DOCS'
        ? 'the file must hold one YAML document; remove the "---" line and merge what follows'
        : e.message.replace(/\s*at line \d+, column \d+:?[\s\S]*$/, '');
    c.problemAt(Math.min(lines.linePos(e.pos[0]).line, lastLine), '', `YAML: ${message}`);
  }
  if (c.problems.length > 0) throw c.error();

  const config = readConfig(c, resolve(file));
  if (c.problems.length > 0 || config === undefined) throw c.error();
  return config;
}

// ---------------------------------------------------------------------------
// The schema, top-down. Each reader reports problems and returns undefined (or a
// placeholder) for what it could not read, and carries on, so one run finds all.

const TOP_KEYS = ['cluster_name', 'data_dir', 'proxy', 'auth', 'roles', 'nodes'] as const;
const PROXY_KEYS = ['web_listen_addr', 'public_addr', 'ssh_listen_addr', 'ssh_public_addr', 'tls_cert_file', 'tls_key_file', 'limits'] as const;
const LIMIT_KEYS = [
  'max_connections_per_user',
  'max_channels_per_connection',
  'max_sessions_per_user',
  'max_concurrent_node_dials_per_user',
  'max_concurrent_node_dials_per_node',
  'node_login_grace_time',
] as const;
const AUTH_KEYS = ['cert_ttl', 'login_timeout', 'oidc'] as const;
const OIDC_KEYS = ['issuer', 'client_id', 'client_secret', 'client_secret_file', 'scopes', 'username_claim', 'claims_to_roles'] as const;
const RULE_KEYS = ['claim', 'value', 'roles'] as const;
const ROLE_KEYS = ['logins', 'node_labels', 'max_session_ttl', 'permit_pty', 'forward_agent', 'port_forwarding', 'x11_forwarding', 'permit_user_rc'] as const;
const NODE_KEYS = ['name', 'addr', 'labels'] as const;

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const ROLE_NAME = /^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$/;
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9_./-]{0,252})?$/;

function readConfig(c: Checker, absFile: string): ServerConfig | undefined {
  const baseDir = dirname(absFile);
  const root: Slot = { path: '', node: c.doc.contents, at: c.doc.contents };
  if (c.isEmpty(root.node)) {
    c.report(root, 'the file is empty; it needs at least cluster_name (see the annotated sample from `jumpgate configure`)');
    return undefined;
  }
  const top = c.map(root, TOP_KEYS);
  if (!top) return undefined;

  const clusterSlot = top.get('cluster_name');
  let clusterName = '';
  if (!clusterSlot) c.missing(root, 'cluster_name', 'is required: the name of this cluster, e.g. example.com');
  else {
    const name = c.text(clusterSlot);
    if (name !== undefined && !DNS_NAME.test(name)) {
      c.report(clusterSlot, `${JSON.stringify(name)} is not a valid cluster name: use lower-case letters, digits, "-" and ".", like a DNS name`);
    }
    clusterName = name ?? '';
  }

  const dataDirText = optional(top.get('data_dir'), (s) => c.path(s)) ?? CONFIG_DEFAULTS.dataDir;
  const dataDir = resolve(baseDir, dataDirText);

  const proxy = readProxy(c, top.get('proxy'), baseDir);
  const certTtlSeconds = readAuthTtl(c, top.get('auth'));
  const loginTimeoutSeconds = readLoginTimeout(c, top.get('auth'));
  const roles = readRoles(c, top.get('roles'), certTtlSeconds);
  const oidc = readOidc(c, top.get('auth'), baseDir, roles);
  const nodes = readNodes(c, top.get('nodes'));

  const auth: AuthConfig = { certTtlSeconds, loginTimeoutSeconds };
  if (oidc) auth.oidc = oidc;
  const config: ServerConfig = { file: absFile, clusterName, dataDir, proxy, auth, roles, nodes };
  if (c.warnings.length > 0) config.warnings = [...c.warnings].sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  return config;
}

function readProxy(c: Checker, slot: Slot | undefined, baseDir: string): ProxyConfig {
  const fields = slot ? c.map(slot, PROXY_KEYS) : undefined;
  const get = (key: string) => fields?.get(key);
  const listen = (key: string, fallback: string): HostPort => {
    const s = get(key);
    const addr = s ? c.address(s, { allowPortZero: true }) : undefined;
    if (s && addr && isIP(addr.host) === 0 && addr.host !== 'localhost') {
      c.report(s, `${JSON.stringify(formatHostPort(addr))}: a listen address needs an IP address (or localhost), e.g. 0.0.0.0:${addr.port} for every interface; put the name clients use in the public address`);
    }
    return addr ?? parseHostPort(fallback);
  };
  const publicOf = (key: string, listenKey: string, listenAddr: HostPort): HostPort => {
    const s = get(key);
    if (s) {
      const addr = c.address(s);
      if (addr && isUnspecifiedHost(addr.host)) {
        c.report(s, `${JSON.stringify(formatHostPort(addr))} is not an address clients can reach; use the host name they connect to, e.g. proxy.example.com:${addr.port}`);
      }
      return addr ?? listenAddr;
    }
    if (isUnspecifiedHost(listenAddr.host)) {
      // 0.0.0.0 is fine to bind, but clients and certificates need a real name.
      c.missing(slot ?? root(c), key, `is required when proxy.${listenKey} listens on every interface (${formatHostPort(listenAddr)}): set the name clients use, e.g. proxy.example.com:${listenAddr.port}`);
    }
    // Port 0 (tests) is copied as is: the server substitutes the port it bound.
    return listenAddr;
  };

  const webListenAddr = listen('web_listen_addr', CONFIG_DEFAULTS.webListenAddr);
  const sshListenAddr = listen('ssh_listen_addr', CONFIG_DEFAULTS.sshListenAddr);
  const sshListenSlot = get('ssh_listen_addr');
  if (
    webListenAddr.port !== 0 &&
    webListenAddr.port === sshListenAddr.port &&
    (webListenAddr.host === sshListenAddr.host || isUnspecifiedHost(webListenAddr.host) || isUnspecifiedHost(sshListenAddr.host))
  ) {
    c.report(sshListenSlot ?? get('web_listen_addr') ?? slot ?? root(c), `port ${sshListenAddr.port} is used by both proxy.web_listen_addr and proxy.ssh_listen_addr; give each its own port`, sshListenSlot ? undefined : 'proxy.ssh_listen_addr');
  }
  const proxy: ProxyConfig = {
    webListenAddr,
    publicAddr: publicOf('public_addr', 'web_listen_addr', webListenAddr),
    sshListenAddr,
    sshPublicAddr: publicOf('ssh_public_addr', 'ssh_listen_addr', sshListenAddr),
    limits: readLimits(c, get('limits')),
  };
  const cert = get('tls_cert_file');
  const key = get('tls_key_file');
  const certPath = cert ? c.path(cert) : undefined;
  const keyPath = key ? c.path(key) : undefined;
  if (cert && !key) c.missing(slot!, 'tls_key_file', 'is required with tls_cert_file: give both, or neither for a generated self-signed certificate');
  if (key && !cert) c.missing(slot!, 'tls_cert_file', 'is required with tls_key_file: give both, or neither for a generated self-signed certificate');
  if (certPath !== undefined) proxy.tlsCertFile = resolve(baseDir, certPath);
  if (keyPath !== undefined) proxy.tlsKeyFile = resolve(baseDir, keyPath);
  return proxy;
}

/** sshd's default MaxStartups begins dropping unauthenticated connections at 10. */
const SSHD_MAX_STARTUPS = 10;
/** Upper bound of every proxy.limits count: a typo of extra zeros is refused, not obeyed. */
const MAX_LIMIT = 1_000_000;

function readLimits(c: Checker, slot: Slot | undefined): ProxyLimits {
  const fields = slot && !c.isEmpty(slot.node) ? c.map(slot, LIMIT_KEYS) : undefined;
  const count = (key: string, fallback: number): number => {
    const s = fields?.get(key);
    return (s ? c.count(s, MAX_LIMIT) : undefined) ?? fallback;
  };
  const limits: ProxyLimits = {
    maxConnectionsPerUser: count('max_connections_per_user', CONFIG_DEFAULTS.maxConnectionsPerUser),
    maxChannelsPerConnection: count('max_channels_per_connection', CONFIG_DEFAULTS.maxChannelsPerConnection),
    maxSessionsPerUser: count('max_sessions_per_user', CONFIG_DEFAULTS.maxSessionsPerUser),
    maxNodeDialsPerUser: count('max_concurrent_node_dials_per_user', CONFIG_DEFAULTS.maxNodeDialsPerUser),
    maxNodeDialsPerNode: count('max_concurrent_node_dials_per_node', CONFIG_DEFAULTS.maxNodeDialsPerNode),
    nodeLoginGraceSeconds: parseDuration(CONFIG_DEFAULTS.nodeLoginGraceTime, 'proxy.limits.node_login_grace_time'),
  };
  const dials = fields?.get('max_concurrent_node_dials_per_user');
  if (dials && limits.maxNodeDialsPerUser >= SSHD_MAX_STARTUPS) {
    c.warn(dials, `${limits.maxNodeDialsPerUser} lets one user fill a node's sshd MaxStartups (default 10:30:100), which then drops other users' connections; keep it below the nodes' MaxStartups`);
  }
  const grace = fields?.get('node_login_grace_time');
  const seconds = grace ? c.duration(grace) : undefined;
  if (grace && seconds !== undefined) {
    if (seconds < 1 || seconds > 3600) c.report(grace, 'must be from 1s to 1h: set it to the nodes\' sshd LoginGraceTime (default 2m)');
    else limits.nodeLoginGraceSeconds = seconds;
  }
  return limits;
}

function readAuthTtl(c: Checker, slot: Slot | undefined): number {
  const fields = slot ? c.map(slot, AUTH_KEYS) : undefined;
  const ttl = fields?.get('cert_ttl');
  return (ttl ? c.duration(ttl) : undefined) ?? parseDuration(CONFIG_DEFAULTS.certTtl, 'auth.cert_ttl');
}

/** A pending login is a bearer of the right to a certificate: keep it short-lived. */
export const MAX_LOGIN_TIMEOUT_SECONDS = 600;

function readLoginTimeout(c: Checker, slot: Slot | undefined): number {
  // map() on auth again would report its problems twice: read the entries silently.
  const s = slot ? c.entries(slot)?.get('login_timeout') : undefined;
  const seconds = s ? c.duration(s) : undefined;
  if (s && seconds !== undefined && seconds > MAX_LOGIN_TIMEOUT_SECONDS) {
    c.report(s, `${formatDuration(seconds)} is longer than the 10m a pending login may live; use 10m or less`);
    return MAX_LOGIN_TIMEOUT_SECONDS;
  }
  return seconds ?? MAX_LOGIN_TIMEOUT_SECONDS;
}

function readOidc(c: Checker, authSlot: Slot | undefined, baseDir: string, roles: Map<string, RoleConfig>): OidcConfig | undefined {
  // map() on auth again would report its problems twice: read the entries silently.
  const slot = authSlot ? c.entries(authSlot)?.get('oidc') : undefined;
  if (!slot || c.isEmpty(slot.node)) return undefined;
  const fields = c.map(slot, OIDC_KEYS);
  if (!fields) return undefined;

  let issuer = '';
  let insecure = false;
  const issuerSlot = fields.get('issuer');
  if (!issuerSlot) c.missing(slot, 'issuer', "is required: the IdP's issuer URL, e.g. https://idp.example.com/realms/main");
  else {
    const text = c.text(issuerSlot);
    if (text !== undefined) {
      issuer = text;
      insecure = checkIssuer(c, issuerSlot, text);
    }
  }

  const clientIdSlot = fields.get('client_id');
  let clientId = '';
  if (!clientIdSlot) c.missing(slot, 'client_id', 'is required: the client ID registered for Jumpgate at the IdP');
  else clientId = c.text(clientIdSlot) ?? '';

  const secretSlot = fields.get('client_secret');
  const secretFileSlot = fields.get('client_secret_file');
  const oidc: OidcConfig = { issuer, clientId, scopes: [], usernameClaim: '', claimsToRoles: [] };
  if (secretSlot && secretFileSlot) {
    c.report(secretFileSlot, 'give client_secret or client_secret_file, not both');
  } else if (!secretSlot && !secretFileSlot) {
    c.missing(slot, 'client_secret', 'is required (or client_secret_file, a file holding it): the client secret registered at the IdP');
  }
  if (secretSlot) {
    const secret = c.text(secretSlot);
    if (secret !== undefined) oidc.clientSecret = secret;
  }
  if (secretFileSlot) {
    const p = c.path(secretFileSlot);
    if (p !== undefined) oidc.clientSecretFile = resolve(baseDir, p);
  }

  const scopesSlot = fields.get('scopes');
  oidc.scopes = scopesSlot ? (c.textList(scopesSlot) ?? []) : [...CONFIG_DEFAULTS.scopes];
  if (scopesSlot && c.textList(scopesSlot, true) && !oidc.scopes.includes('openid')) {
    c.report(scopesSlot, 'must include openid: without it the IdP does not return an ID token');
  }

  const usernameSlot = fields.get('username_claim');
  oidc.usernameClaim = (usernameSlot ? c.text(usernameSlot) : undefined) ?? CONFIG_DEFAULTS.usernameClaim;

  const rulesSlot = fields.get('claims_to_roles');
  if (!rulesSlot) {
    c.missing(slot, 'claims_to_roles', 'is required: without a rule nobody can log in, e.g. - { claim: groups, value: admins, roles: [admin] }');
  } else {
    const items = c.list(rulesSlot);
    if (items && items.length === 0) c.report(rulesSlot, 'is empty: without a rule nobody can log in');
    for (const item of items ?? []) {
      const rule = readRule(c, item, roles);
      if (rule) oidc.claimsToRoles.push(rule);
    }
  }
  if (insecure) oidc.insecureAllowHttpLoopback = true;
  return oidc;
}

/** Returns true when the issuer is an allowed plain-http loopback URL. */
function checkIssuer(c: Checker, slot: Slot, text: string): boolean {
  const example = 'e.g. https://idp.example.com/realms/main';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    c.report(slot, `${JSON.stringify(text)} is not a URL; ${example}`);
    return false;
  }
  if (url.username || url.password) c.report(slot, 'must not contain a user name or password');
  if (url.search || url.hash) c.report(slot, 'must not have a query (?) or fragment (#): it is compared exactly with the IdP\'s `iss`');
  if (url.protocol === 'https:') return false;
  // Plain http only to this machine: the development IdP (and the e2e tests) run on
  // http://127.0.0.1, where nothing crosses the network. Anywhere else http would
  // let anyone on the path forge ID tokens' keys.
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return true;
  c.report(
    slot,
    url.protocol === 'http:'
      ? `${JSON.stringify(text)} must use https; plain http is allowed only for an IdP on this machine (localhost, 127.0.0.1, [::1])`
      : `${JSON.stringify(text)} must be an https URL; ${example}`,
  );
  return false;
}

function readRule(c: Checker, slot: Slot, roles: Map<string, RoleConfig>): ClaimRule | undefined {
  const fields = c.map(slot, RULE_KEYS);
  if (!fields) return undefined;
  const claimSlot = fields.get('claim');
  const valueSlot = fields.get('value');
  const rolesSlot = fields.get('roles');
  if (!claimSlot) c.missing(slot, 'claim', 'is required: the ID token claim to look at, e.g. groups');
  if (!valueSlot) c.missing(slot, 'value', 'is required: the claim value that grants the roles (text, or true/false)');
  if (!rolesSlot) c.missing(slot, 'roles', 'is required: the roles this rule grants, e.g. [user]');
  const claim = claimSlot ? c.text(claimSlot) : undefined;
  let value: string | boolean | undefined;
  if (valueSlot) {
    const node = c.deref(valueSlot.node);
    if (isScalar(node) && (typeof node.value === 'string' || typeof node.value === 'boolean')) value = node.value;
    else c.report(valueSlot, `must be text or true/false, not ${c.describe(node)}${c.quoteHint(node)}`);
  }
  const roleNames: string[] = [];
  if (rolesSlot) {
    const items = c.list(rolesSlot);
    if (items && items.length === 0) c.report(rolesSlot, 'is empty: name at least one role');
    for (const item of items ?? []) {
      const name = c.text(item);
      if (name === undefined) continue;
      if (!roles.has(name)) {
        // A warning, not an error: the contract's example config names a role it
        // does not define, and a matching login is refused anyway (fails closed).
        const guess = suggest(name, [...roles.keys()]);
        c.warn(
          item,
          `role ${JSON.stringify(name)} is not defined under roles${guess ? ` (did you mean \`${guess}\`?)` : ''}; logins that match this rule will be refused`,
        );
      }
      roleNames.push(name);
    }
  }
  if (claim === undefined || value === undefined || roleNames.length === 0) return undefined;
  return { claim, value, roles: roleNames };
}

function readRoles(c: Checker, slot: Slot | undefined, certTtlSeconds: number): Map<string, RoleConfig> {
  const roles = new Map<string, RoleConfig>();
  const entries = slot && !c.isEmpty(slot.node) ? c.map(slot, null) : undefined;
  for (const [name, roleSlot] of entries ?? []) {
    if (!ROLE_NAME.test(name)) {
      c.reportKey(roleSlot, `${JSON.stringify(name)} is not a valid role name: use lower-case letters, digits, "-" and "_", at most 63 characters`);
    }
    const fields = c.map(roleSlot, ROLE_KEYS);
    if (!fields) continue;
    const role: RoleConfig = {
      name,
      logins: [],
      nodeLabels: {},
      maxSessionTtlSeconds: certTtlSeconds,
      permitPty: CONFIG_DEFAULTS.permitPty,
      forwardAgent: CONFIG_DEFAULTS.forwardAgent,
      portForwarding: CONFIG_DEFAULTS.portForwarding,
      x11Forwarding: CONFIG_DEFAULTS.x11Forwarding,
      permitUserRc: CONFIG_DEFAULTS.permitUserRc,
    };
    const loginsSlot = fields.get('logins');
    if (!loginsSlot) c.missing(roleSlot, 'logins', 'is required: the Unix logins this role grants, e.g. ["{{username}}"]');
    else {
      const items = c.list(loginsSlot);
      if (items && items.length === 0) c.report(loginsSlot, 'is empty: list at least one login, e.g. ["{{username}}"]');
      for (const item of items ?? []) {
        const template = c.text(item);
        if (template === undefined) continue;
        try {
          parseLoginTemplate(template);
          role.logins.push(template);
        } catch (err) {
          if (!(err instanceof LoginTemplateError)) throw err;
          c.report(item, err.message);
        }
      }
    }
    const labelsSlot = fields.get('node_labels');
    if (labelsSlot) role.nodeLabels = readSelector(c, labelsSlot);
    const ttlSlot = fields.get('max_session_ttl');
    if (ttlSlot) role.maxSessionTtlSeconds = c.duration(ttlSlot) ?? certTtlSeconds;
    const flag = (key: string, fallback: boolean): boolean => {
      const s = fields.get(key);
      return (s ? c.boolean(s) : undefined) ?? fallback;
    };
    role.permitPty = flag('permit_pty', role.permitPty);
    role.forwardAgent = flag('forward_agent', role.forwardAgent);
    role.portForwarding = flag('port_forwarding', role.portForwarding);
    role.x11Forwarding = flag('x11_forwarding', role.x11Forwarding);
    role.permitUserRc = flag('permit_user_rc', role.permitUserRc);
    roles.set(name, role);
  }
  return roles;
}

/** node_labels: key → value or list of values; "*" as a value means "any value, label present". */
function readSelector(c: Checker, slot: Slot): Record<string, string | string[]> {
  const selector: Record<string, string | string[]> = {};
  if (c.isEmpty(slot.node)) return selector;
  const entries = c.map(slot, null);
  for (const [key, s] of entries ?? []) {
    if (key !== '*' && !LABEL_KEY.test(key)) {
      c.reportKey(s, `${JSON.stringify(key)} is not a valid label name: use letters, digits, "-", "_", "." and "/"`);
      continue;
    }
    const node = c.deref(s.node);
    let values: string[] | undefined;
    if (isSeq(node)) {
      values = c.textList(s);
      if (values && values.length === 0) c.report(s, 'is an empty list, which matches no node; list values or use "*"');
    } else {
      const v = c.text(s);
      values = v === undefined ? undefined : [v];
    }
    if (!values) continue;
    let ok = true;
    for (const v of values) {
      if (v !== '*' && v.includes('*')) {
        c.report(s, `${JSON.stringify(v)}: only a whole "*" is a wildcard (any value); partial patterns are not supported`);
        ok = false;
      }
    }
    if (key === '*' && !(values.length === 1 && values[0] === '*')) {
      c.report(s, 'the key "*" only takes the value "*" (every node)');
      ok = false;
    }
    if (ok) selector[key] = isSeq(node) ? values : values[0]!;
  }
  return selector;
}

function readNodes(c: Checker, slot: Slot | undefined): NodeConfig[] {
  const nodes: NodeConfig[] = [];
  if (!slot || c.isEmpty(slot.node)) return nodes;
  const seen = new Map<string, number | undefined>();
  for (const item of c.list(slot) ?? []) {
    const fields = c.map(item, NODE_KEYS);
    if (!fields) continue;
    const nameSlot = fields.get('name');
    const addrSlot = fields.get('addr');
    if (!nameSlot) c.missing(item, 'name', 'is required: the name users type, as in `ssh user@NAME`');
    if (!addrSlot) c.missing(item, 'addr', "is required: the node's sshd address, e.g. 10.0.0.5:22");
    const name = nameSlot ? c.text(nameSlot) : undefined;
    if (nameSlot && name !== undefined) {
      if (!isHostname(name)) {
        c.report(nameSlot, `${JSON.stringify(name)} is not a valid node name: use letters, digits, "-" and ".", like a host name`);
      }
      const key = name.toLowerCase();
      if (seen.has(key)) {
        const line = seen.get(key);
        c.report(nameSlot, `${JSON.stringify(name)} is already used by another node${line ? ` (line ${line})` : ''}; node names must be unique`);
      } else seen.set(key, c.lineOf(nameSlot));
    }
    const addr = addrSlot ? c.address(addrSlot, { defaultPort: CONFIG_DEFAULTS.nodePort }) : undefined;
    const labels: Record<string, string> = {};
    const labelsSlot = fields.get('labels');
    if (labelsSlot && !c.isEmpty(labelsSlot.node)) {
      for (const [key, s] of c.map(labelsSlot, null) ?? []) {
        if (!LABEL_KEY.test(key)) {
          c.reportKey(s, `${JSON.stringify(key)} is not a valid label name: use letters, digits, "-", "_", "." and "/"`);
          continue;
        }
        const v = c.text(s, true);
        if (v !== undefined) labels[key] = v;
      }
    }
    if (name !== undefined && addr !== undefined) nodes.push({ name, addr, labels });
  }
  return nodes;
}

function optional<T>(slot: Slot | undefined, read: (s: Slot) => T | undefined): T | undefined {
  return slot ? read(slot) : undefined;
}

function root(c: Checker): Slot {
  return { path: '', node: c.doc.contents, at: c.doc.contents };
}

// ---------------------------------------------------------------------------
// The checker: typed reads of YAML nodes that report problems with key path and line.

/** A value in the tree: its dotted key path, its node, and the node whose line to report. */
interface Slot {
  path: string;
  node: unknown;
  at: unknown;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

class Checker {
  readonly problems: ConfigProblem[] = [];
  readonly warnings: ConfigProblem[] = [];

  constructor(
    readonly file: string,
    readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  error(): ServerConfigError {
    // File order, so the list reads top to bottom; problems without a line first.
    const sorted = this.problems
      .map((p, i) => ({ p, i }))
      .sort((a, b) => (a.p.line ?? 0) - (b.p.line ?? 0) || a.i - b.i)
      .map(({ p }) => p);
    return new ServerConfigError(this.file, sorted);
  }

  lineOf(slot: Slot): number | undefined {
    for (const n of [slot.node, slot.at]) {
      const range = (n as { range?: [number, number, number] | null } | null | undefined)?.range;
      if (range) return this.lines.linePos(range[0]).line;
    }
    return undefined;
  }

  report(slot: Slot, reason: string, path = slot.path): void {
    this.problems.push(new ConfigProblem(this.file, path, reason, this.lineOf(slot)));
  }

  /** A problem with a key itself (a role or label name): reported at the key's line. */
  reportKey(slot: Slot, reason: string): void {
    this.report({ ...slot, node: slot.at }, reason);
  }

  warn(slot: Slot, reason: string): void {
    this.warnings.push(new ConfigProblem(this.file, slot.path, reason, this.lineOf(slot)));
  }

  problemAt(line: number | undefined, path: string, reason: string): void {
    this.problems.push(new ConfigProblem(this.file, path, reason, line));
  }

  /** A required key is absent: report it at the line of the mapping that should hold it. */
  missing(parent: Slot, key: string, reason: string): void {
    const line = parent.path === '' ? undefined : this.lineOf({ ...parent, node: parent.at });
    this.problemAt(line, join(parent.path, key), reason);
  }

  deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  /** `key:` with nothing after it, or a missing document. */
  isEmpty(node: unknown): boolean {
    const n = this.deref(node);
    return n === null || n === undefined || (isScalar(n) && n.value === null);
  }

  describe(node: unknown): string {
    const n = this.deref(node);
    if (isMap(n)) return 'a mapping';
    if (isSeq(n)) return 'a list';
    if (this.isEmpty(n)) return 'empty';
    if (isScalar(n)) {
      if (typeof n.value === 'number' || typeof n.value === 'bigint') return `the number ${n.source ?? String(n.value)}`;
      if (typeof n.value === 'boolean') return `${n.value}`;
      if (typeof n.value === 'string') return `the text ${JSON.stringify(n.value)}`;
    }
    return 'an unsupported value';
  }

  /** For a number or boolean where text was expected: how to write it as text. */
  quoteHint(node: unknown): string {
    const n = this.deref(node);
    if (isScalar(n) && (typeof n.value === 'number' || typeof n.value === 'boolean')) {
      return `; put it in quotes if you mean the text: "${n.source ?? String(n.value)}"`;
    }
    return '';
  }

  /** Entries of a mapping without any checks (for a second look at an already checked mapping). */
  entries(slot: Slot): Map<string, Slot> | undefined {
    const n = this.deref(slot.node);
    if (!isMap(n)) return undefined;
    const out = new Map<string, Slot>();
    for (const pair of n.items) {
      const k = this.deref(pair.key);
      if (isScalar(k) && typeof k.value === 'string' && !out.has(k.value)) {
        out.set(k.value, { path: join(slot.path, k.value), node: pair.value, at: pair.key });
      }
    }
    return out;
  }

  /**
   * Reads a mapping with string keys. `allowed` = the known keys (others are
   * reported with a did-you-mean), or null for free-form keys (role names, labels).
   * Duplicate keys are reported with the line of the first.
   */
  map(slot: Slot, allowed: readonly string[] | null): Map<string, Slot> | undefined {
    const n = this.deref(slot.node);
    if (this.isEmpty(n) && allowed !== null) return new Map();
    if (!isMap(n)) {
      const example = allowed ? `, with keys such as ${allowed.slice(0, 3).join(', ')}` : '';
      this.report(slot, `must be a mapping (key: value)${example}, not ${this.describe(n)}`);
      return undefined;
    }
    const out = new Map<string, Slot>();
    for (const pair of n.items) {
      const k = this.deref(pair.key);
      const keySlot: Slot = { path: slot.path, node: pair.key, at: pair.key };
      if (!isScalar(k) || (typeof k.value !== 'string' && typeof k.value !== 'number' && typeof k.value !== 'boolean')) {
        this.report(keySlot, `keys must be plain text, not ${this.describe(k)}`);
        continue;
      }
      const key = String(k.value);
      const entry: Slot = { path: join(slot.path, key), node: pair.value, at: pair.key };
      const first = out.get(key);
      if (first) {
        const line = this.lineOf({ ...first, node: first.at });
        this.report({ ...entry, node: pair.key }, `duplicate key${line ? `; the first is on line ${line}` : ''}: keep one`);
        continue;
      }
      if (allowed !== null && !allowed.includes(key)) {
        const guess = suggest(key, allowed);
        this.report(
          { ...entry, node: pair.key },
          guess ? `unknown key; did you mean \`${guess}\`?` : `unknown key; the keys here are ${allowed.join(', ')}`,
        );
        continue;
      }
      out.set(key, entry);
    }
    return out;
  }

  list(slot: Slot): Slot[] | undefined {
    const n = this.deref(slot.node);
    if (this.isEmpty(n)) return [];
    if (!isSeq(n)) {
      this.report(slot, `must be a list, not ${this.describe(n)}`);
      return undefined;
    }
    return n.items.map((item, i) => ({ path: `${slot.path}[${i}]`, node: item, at: item }));
  }

  /** Non-empty text. `lenient` also takes numbers and booleans, as written (for label values). */
  text(slot: Slot, lenient = false): string | undefined {
    const n = this.deref(slot.node);
    if (isScalar(n) && typeof n.value === 'string') {
      if (n.value.trim() === '') {
        this.report(slot, 'is empty');
        return undefined;
      }
      return n.value;
    }
    if (lenient && isScalar(n) && (typeof n.value === 'number' || typeof n.value === 'boolean')) {
      // Label values like `rack: 12` or `gpu: true`: the text as written is what users mean.
      return n.source ?? String(n.value);
    }
    this.report(slot, `must be text, not ${this.describe(n)}${this.quoteHint(n)}`);
    return undefined;
  }

  /** A list of non-empty texts. With `silent`, only says whether it is one, without reporting. */
  textList(slot: Slot, silent = false): string[] | undefined {
    if (silent) {
      const n = this.deref(slot.node);
      if (!isSeq(n)) return undefined;
      const out: string[] = [];
      for (const item of n.items) {
        const v = this.deref(item);
        if (!isScalar(v) || typeof v.value !== 'string') return undefined;
        out.push(v.value);
      }
      return out;
    }
    const items = this.list(slot);
    if (!items) return undefined;
    const out: string[] = [];
    let ok = true;
    for (const item of items) {
      const v = this.text(item);
      if (v === undefined) ok = false;
      else out.push(v);
    }
    return ok ? out : undefined;
  }

  boolean(slot: Slot): boolean | undefined {
    const n = this.deref(slot.node);
    if (isScalar(n) && typeof n.value === 'boolean') return n.value;
    this.report(slot, `must be true or false, not ${this.describe(n)}`);
    return undefined;
  }

  /** A whole number from 1 to `max`. */
  count(slot: Slot, max: number): number | undefined {
    const n = this.deref(slot.node);
    if (isScalar(n) && typeof n.value === 'number' && Number.isInteger(n.value) && n.value >= 1 && n.value <= max) return n.value;
    this.report(slot, `must be a whole number from 1 to ${max}, not ${this.describe(n)}`);
    return undefined;
  }

  duration(slot: Slot): number | undefined {
    const n = this.deref(slot.node);
    if (isScalar(n) && (typeof n.value === 'string' || typeof n.value === 'number')) {
      try {
        return parseDuration(typeof n.value === 'string' ? n.value : (n.source ?? String(n.value)), slot.path);
      } catch (err) {
        if (!(err instanceof DurationError)) throw err;
        this.report(slot, err.reason);
        return undefined;
      }
    }
    this.report(slot, `must be a duration such as 24h, 90m or 1h30m, not ${this.describe(n)}`);
    return undefined;
  }

  address(slot: Slot, options: ParseHostPortOptions = {}): HostPort | undefined {
    const n = this.deref(slot.node);
    if (!isScalar(n) || typeof n.value !== 'string') {
      this.report(slot, `must be host:port, e.g. 127.0.0.1:3080, not ${this.describe(n)}`);
      return undefined;
    }
    try {
      return parseHostPort(n.value, options);
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      this.report(slot, err.reason);
      return undefined;
    }
  }

  /** A file or directory path; `~` is refused because nothing here expands it. */
  path(slot: Slot): string | undefined {
    const p = this.text(slot);
    if (p === undefined) return undefined;
    if (p.startsWith('~')) {
      this.report(slot, `${JSON.stringify(p)}: "~" is not expanded here; write an absolute path, or one relative to the config file's directory`);
      return undefined;
    }
    if (p.includes('\0')) {
      this.report(slot, 'contains a NUL character');
      return undefined;
    }
    return p;
  }
}

// ---------------------------------------------------------------------------

/**
 * The closest candidate for a mistyped key: same letters ignoring case, `_` and `-`
 * (`certTtl` → `cert_ttl`), else the nearest within an edit distance of 2.
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, '');
  const same = candidates.find((c) => norm(c) === norm(word));
  if (same) return same;
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Edit distance (insertions, deletions, substitutions), two-row dynamic programming. */
export function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
