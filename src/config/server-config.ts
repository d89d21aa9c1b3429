/**
 * The server configuration (`jumpgate start --config FILE`, also read by tctl):
 * types, defaults and the schema that checks a file against them.
 *
 * The file is read into plain values by yaml-tree.ts (which keeps every value's
 * line) and checked by one valibot schema, one entry per key, below. Nothing
 * stops at the first problem: every issue becomes a `file:line: key: reason`
 * problem with the fix, and all of them are thrown as one `ServerConfigError`,
 * so an admin fixes the whole file in one pass instead of restarting the
 * server once per typo.
 *
 * Relative paths (`data_dir`, `tls_cert_file`, `tls_key_file`, `client_secret_file`)
 * are resolved against the directory of the config file, not the working
 * directory, so `jumpgate start` from a systemd unit, `tctl` from a shell in $HOME
 * and a test runner in the repo all reach the same data directory.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import * as v from 'valibot';
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
} from '../shared/address.js';
import { DurationError, formatDuration, parseDuration } from '../shared/duration.js';
import { printable } from '../util/printable.js';
import { parseAddressRange, type AddressRange } from '../util/ip.js';
import { LoginTemplateError, parseLoginTemplate } from './login-template.js';
import { describe, formatPath, quoteHint, readYamlTree, YamlNumber, type PathKey, type YamlTree } from './yaml-tree.js';

export type { HostPort } from '../shared/address.js';

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
  /** Where the cluster's shared state lives (`storage`; server/storage/). */
  storage: StorageConfig;
  /**
   * Things that are allowed but probably wrong (present only when there are any);
   * the server prints them at start. Example: a claims_to_roles rule naming a role
   * that is not defined (the documented example config does this): logins that match
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
  /** What one user may make the SSH proxy hold (`proxy.limits`). */
  limits: ProxyLimits;
  /**
   * TCP load balancers whose connections start with a PROXY protocol header
   * naming the real client (`proxy_protocol_from`; server/proxy/proxy-protocol.ts).
   * Empty: the PROXY protocol is off.
   */
  proxyProtocolFrom: AddressRange[];
}

/**
 * `proxy.limits`: caps on what one authenticated user may make the proxy and
 * the nodes hold (README "SSH proxy limits"; server/proxy/session-limits.ts).
 */
export interface ProxyLimits {
  /** Signed-in SSH connections of one user (`max_connections_per_user`). */
  maxConnectionsPerUser: number;
  /** Open channels on one connection, unused session channels included (`max_channels_per_connection`). */
  maxChannelsPerConnection: number;
  /** One user's node sessions over all connections (`max_sessions_per_user`). */
  maxSessionsPerUser: number;
  /** One user's node connections still logging in at one node (`max_concurrent_node_dials_per_user`); below sshd's MaxStartups 10. */
  maxNodeDialsPerUser: number;
  /** Every user's node connections still logging in at one node (`max_concurrent_node_dials_per_node`). */
  maxNodeDialsPerNode: number;
  /** How long a node connection counts as still logging in, seconds (`node_login_grace_time`, sshd's LoginGraceTime). */
  nodeLoginGraceSeconds: number;
}

/**
 * `storage`: `dir` keeps everything under data_dir (one process); `postgres`
 * shares it between several `jumpgate start` processes (server/storage/backend.ts).
 */
export type StorageConfig =
  | { type: 'dir' }
  | {
      type: 'postgres';
      /** Exactly one of connString and connStringFile is set (the file is read at start, not here). */
      connString?: string;
      /** Absolute. */
      connStringFile?: string;
      /** Absolute: 32 random bytes, base64; encrypts the CA private keys (and pending logins) in the database. */
      encryptionKeyFile: string;
      /** Absolute: keys used before a rotation of the encryption key, still read (`tctl storage rekey` rewrites with the current one). */
      previousEncryptionKeyFiles: string[];
      /** Pool size per process (`max_connections`, default 10). */
      maxConnections: number;
    };

export interface AuthConfig {
  /** Default TTL of user certificates (`auth.cert_ttl`, default 24h). */
  certTtlSeconds: number;
  /** How long a browser login may take from `tsh login` to the IdP's answer (`auth.login_timeout`, default and maximum 10m). */
  loginTimeoutSeconds: number;
  /** Absent: no browser login; tctl still signs certificates. */
  oidc?: OidcConfig;
  /**
   * `auth.session_recording` (default `off`): `proxy` makes the SSH proxy end
   * every node session itself, record it and open its own session to the node
   * with a per-session certificate (server/proxy/recording-proxy.ts).
   */
  sessionRecording: SessionRecordingMode;
}

/** `auth.session_recording`: where sessions are recorded (`off`: nowhere; `proxy`: at the proxy, Teleport's recording proxy mode). */
export type SessionRecordingMode = 'off' | 'proxy';

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
  /** `review_sessions`: may list and replay every user's recordings (others: only their own). */
  reviewSessions: boolean;
  /** `record_input`: recordings of this role's sessions also keep what the user typed (passwords typed at a prompt included: off by default). */
  recordInput: boolean;
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
  reviewSessions: false,
  recordInput: false,
  sessionRecording: 'off',
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
    // Keys and values come from the file: control characters are escaped for the terminal.
    this.message = printable(`${file}${line === undefined ? '' : `:${line}`}: ${key ? `${key}: ` : ''}${reason}`, 2000);
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
  const absFile = resolve(file);
  const tree = readYamlTree(text);
  const problems: ConfigProblem[] = tree.problems.map((p) => new ConfigProblem(file, p.path, p.reason, p.line));
  if (tree.value === undefined) throw configError(file, problems);
  if (tree.value === null) {
    problems.push(new ConfigProblem(file, '', 'the file is empty; it needs at least cluster_name (see the annotated sample from `jumpgate configure`)', undefined));
    throw configError(file, problems);
  }
  const warnings: ConfigProblem[] = [];
  const ctx: SchemaContext = {
    baseDir: dirname(absFile),
    lineOf: tree.lineOf,
    warn: (path, reason) => warnings.push(new ConfigProblem(file, formatPath(path), reason, tree.lineOf(formatPath(path)))),
  };
  const result = v.safeParse(configSchema(ctx), tree.value);
  for (const issue of result.issues ?? []) problems.push(problemOf(file, tree, issue));
  if (problems.length > 0 || !result.success) throw configError(file, problems);
  const config: ServerConfig = { file: absFile, ...result.output };
  if (warnings.length > 0) config.warnings = warnings.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  return config;
}

/** Every problem in file order (problems without a line first), as one error. */
function configError(file: string, problems: ConfigProblem[]): ServerConfigError {
  const sorted = problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.line ?? 0) - (b.p.line ?? 0) || a.i - b.i)
    .map(({ p }) => p);
  return new ServerConfigError(file, sorted);
}

/**
 * A valibot issue as `file:line: key: reason`. The line is the value's; for an
 * unknown or badly named key, the key's; for a missing key, the line of the
 * mapping that should hold it (none at the top level).
 */
function problemOf(file: string, tree: YamlTree, issue: v.BaseIssue<unknown>): ConfigProblem {
  const steps = (issue.path ?? []).map((p) => p.key as PathKey);
  const path = formatPath(steps);
  const parent = formatPath(steps.slice(0, -1));
  const last = issue.path?.[issue.path.length - 1];
  if (issue.message.startsWith(UNKNOWN_KEY)) {
    const allowed = issue.message.slice(UNKNOWN_KEY.length).split(',');
    const guess = suggest(String(last?.key), allowed);
    const reason = guess ? `unknown key; did you mean \`${guess}\`?` : `unknown key; the keys here are ${allowed.join(', ')}`;
    return new ConfigProblem(file, path, reason, tree.keyLineOf(path));
  }
  if (last?.origin === 'key') return new ConfigProblem(file, path, issue.message, tree.keyLineOf(path) ?? tree.keyLineOf(parent));
  return new ConfigProblem(file, path, issue.message, tree.lineOf(path) ?? (steps.length > 0 ? tree.keyLineOf(parent) : undefined));
}

// ---------------------------------------------------------------------------
// The schema: one entry per key, top-down (valibot). Values arrive as plain YAML
// values (yaml-tree.ts: numbers as YamlNumber); each entry checks one key and
// turns it into its ServerConfig form, with the message and fix for a bad value.
// To add a key: one entry in its section, one field in the interface above.
// Numbers arrive as YamlNumber (source text kept); a count reads
// `v.pipe(v.instance(YamlNumber, not('a whole number')), v.transform((n) => n.value), v.integer(...), v.minValue(...))`.

/** What the schema needs from the file it checks. */
interface SchemaContext {
  /** The config file's directory: relative paths resolve against it. */
  baseDir: string;
  lineOf(path: string): number | undefined;
  /** A problem that does not stop the server (ServerConfig.warnings). */
  warn(path: PathKey[], reason: string): void;
}

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const ROLE_NAME = /^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$/;
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9_./-]{0,252})?$/;

/** A pending login is a bearer of the right to a certificate: keep it short-lived. */
export const MAX_LOGIN_TIMEOUT_SECONDS = 600;

/** Marks the issue of an unknown key; problemOf turns it into "did you mean". */
const UNKNOWN_KEY = '\u0000unknown key:';
/** The value a required key gets when absent, so its own message can say what it is for. */
const MISSING = Symbol('missing');

/** `must be WHAT, not the number 42`: the message for a value of the wrong kind. */
const not =
  (what: string, withQuoteHint = false) =>
  (issue: v.BaseIssue<unknown>): string =>
    `must be ${what}, not ${describe(issue.input)}${withQuoteHint ? quoteHint(issue.input) : ''}`;

/** Runs a parser that throws DurationError, AddressError or LoginTemplateError; its reason becomes the issue. */
function parsed<I, O>(parse: (input: I) => O) {
  return v.rawTransform<I, O>(({ dataset, addIssue, NEVER }) => {
    try {
      return parse(dataset.value);
    } catch (err) {
      if (err instanceof DurationError || err instanceof AddressError) addIssue({ message: err.reason });
      else if (err instanceof LoginTemplateError) addIssue({ message: err.message });
      else throw err;
      return NEVER;
    }
  });
}

/** A mapping with known keys; any other key is reported (with a did-you-mean). `key:` with nothing after it is `{}`. */
function section<const E extends v.ObjectEntries>(entries: E) {
  const keys = Object.keys(entries);
  const kind = isMapping(not(`a mapping (key: value), with keys such as ${keys.slice(0, 3).join(', ')}`));
  return orEmpty(v.pipe(kind, v.objectWithRest(entries, v.custom<never>(() => false, `${UNKNOWN_KEY}${keys.join(',')}`))), {});
}

/** valibot's object and record schemas take arrays too (typeof 'object'): check first. */
const isMapping = (message: (issue: v.BaseIssue<unknown>) => string) =>
  v.custom<Record<string, unknown>>((x) => typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof YamlNumber), message);

/** A mapping with free-form keys (role names, labels). */
function mapping<K extends v.GenericSchema<string, string>, V extends v.GenericSchema>(key: K, value: V) {
  return orEmpty(v.pipe(isMapping(not('a mapping (key: value)')), v.record(key, value)), {});
}

/** A list; `key:` with nothing after it is `[]`. `emptyMessage` refuses an empty one. */
function list<T extends v.GenericSchema>(item: T, emptyMessage?: string) {
  const array = v.array(item, not('a list'));
  return orEmpty(emptyMessage ? v.pipe(array, v.minLength(1, emptyMessage)) : array, []);
}

/** `key:` with no value (null) read as `empty`. */
function orEmpty<T extends v.GenericSchema>(schema: T, empty: unknown) {
  return v.pipe(
    v.unknown(),
    v.transform((x) => (x === null ? empty : x)),
    schema,
  );
}

/** A key that must be there; `message` says what it is for. */
function required<T extends v.GenericSchema>(schema: T, message: string) {
  return v.optional(v.pipe(v.custom<unknown>((x) => x !== MISSING, message), schema), MISSING);
}

const text = () => v.pipe(v.string(not('text', true)), v.check((s) => s.trim() !== '', 'is empty'));

/** A file or directory path, absolute or relative to the config file's directory; `~` is refused because nothing here expands it. */
const path = (ctx: SchemaContext) =>
  v.pipe(
    text(),
    v.check((p) => !p.startsWith('~'), (i) => `${JSON.stringify(i.input)}: "~" is not expanded here; write an absolute path, or one relative to the config file's directory`),
    v.check((p) => !p.includes('\0'), 'contains a NUL character'),
    v.transform((p) => resolve(ctx.baseDir, p)),
  );

const flag = () => v.boolean(not('true or false'));

/** Seconds, from `24h`, `90m`, `1h30m`, `7d` (shared/duration.ts). */
const duration = () =>
  v.pipe(
    v.union([v.string(), v.instance(YamlNumber)], not('a duration such as 24h, 90m or 1h30m')),
    parsed((d: string | YamlNumber) => parseDuration(typeof d === 'string' ? d : d.source, '')),
  );

const address = (options: ParseHostPortOptions = {}) =>
  v.pipe(
    v.string(not('host:port, e.g. 127.0.0.1:3080')),
    parsed((s: string) => parseHostPort(s, options)),
  );

/** Where the proxy listens: an IP address (or localhost); port 0 picks a free port (tests). */
const listenAddress = () =>
  v.pipe(
    address({ allowPortZero: true }),
    v.check(
      (a) => isIP(a.host) !== 0 || a.host === 'localhost',
      (i) => `${JSON.stringify(formatHostPort(i.input))}: a listen address needs an IP address (or localhost), e.g. 0.0.0.0:${i.input.port} for every interface; put the name clients use in the public address`,
    ),
  );

/** What clients dial: never 0.0.0.0 or ::. */
const publicAddress = () =>
  v.pipe(
    address(),
    v.check(
      (a) => !isUnspecifiedHost(a.host),
      (i) => `${JSON.stringify(formatHostPort(i.input))} is not an address clients can reach; use the host name they connect to, e.g. proxy.example.com:${i.input.port}`,
    ),
  );

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isHostPort = (x: unknown): x is HostPort => isObject(x) && 'port' in x && 'host' in x;

/** A path item for an issue about one key of the object being checked. */
const at = (input: unknown, key: string): [v.ObjectPathItem] => [{ type: 'object', origin: 'value', input: input as Record<string, unknown>, key, value: undefined }];

/** sshd's default MaxStartups begins dropping unauthenticated connections at 10. */
const SSHD_MAX_STARTUPS = 10;
/** Upper bound of every proxy.limits count: a typo of extra zeros is refused, not obeyed. */
const MAX_LIMIT = 1_000_000;

/** A count from 1 to MAX_LIMIT. */
const count = () => {
  const what = `a whole number from 1 to ${MAX_LIMIT}`;
  const bad = (issue: v.BaseIssue<unknown>) => `must be ${what}, not the number ${String(issue.input)}`;
  return v.pipe(v.instance(YamlNumber, not(what)), v.transform((n) => n.value), v.integer(bad), v.minValue(1, bad), v.maxValue(MAX_LIMIT, bad));
};

function limitsSchema(ctx: SchemaContext) {
  return v.pipe(
    section({
      max_connections_per_user: v.optional(count()),
      max_channels_per_connection: v.optional(count()),
      max_sessions_per_user: v.optional(count()),
      max_concurrent_node_dials_per_user: v.optional(count()),
      max_concurrent_node_dials_per_node: v.optional(count()),
      node_login_grace_time: v.optional(
        v.pipe(duration(), v.check((s) => s >= 1 && s <= 3600, "must be from 1s to 1h: set it to the nodes' sshd LoginGraceTime (default 2m)")),
      ),
    }),
    v.transform((l): ProxyLimits => {
      const limits: ProxyLimits = {
        maxConnectionsPerUser: l.max_connections_per_user ?? CONFIG_DEFAULTS.maxConnectionsPerUser,
        maxChannelsPerConnection: l.max_channels_per_connection ?? CONFIG_DEFAULTS.maxChannelsPerConnection,
        maxSessionsPerUser: l.max_sessions_per_user ?? CONFIG_DEFAULTS.maxSessionsPerUser,
        maxNodeDialsPerUser: l.max_concurrent_node_dials_per_user ?? CONFIG_DEFAULTS.maxNodeDialsPerUser,
        maxNodeDialsPerNode: l.max_concurrent_node_dials_per_node ?? CONFIG_DEFAULTS.maxNodeDialsPerNode,
        nodeLoginGraceSeconds: l.node_login_grace_time ?? parseDuration(CONFIG_DEFAULTS.nodeLoginGraceTime, 'proxy.limits.node_login_grace_time'),
      };
      if (limits.maxNodeDialsPerUser >= SSHD_MAX_STARTUPS) {
        ctx.warn(
          ['proxy', 'limits', 'max_concurrent_node_dials_per_user'],
          `${limits.maxNodeDialsPerUser} lets one user fill a node's sshd MaxStartups (default 10:30:100), which then drops other users' connections; keep it below the nodes' MaxStartups`,
        );
      }
      return limits;
    }),
  );
}

/** An address or CIDR range of a trusted TCP load balancer (`proxy.proxy_protocol_from`). */
const balancerRange = () =>
  v.pipe(
    v.string(not('an IP address or CIDR range of your load balancer, e.g. 10.0.0.5 or 10.0.0.0/24', true)),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const range = parseAddressRange(dataset.value.trim());
      if (typeof range === 'string') {
        addIssue({ message: range });
        return NEVER;
      }
      return range;
    }),
    v.check(
      (r) => r.prefix >= (r.network.length === 4 ? 8 : 32),
      (i) => `${JSON.stringify(i.input.entry)} trusts too many addresses: every host in it could claim any client address; list only your balancers (e.g. 10.0.0.5, or their /24)`,
    ),
  );

function proxySchema(ctx: SchemaContext) {
  return v.pipe(
    section({
      limits: v.optional(limitsSchema(ctx), {}),
      web_listen_addr: v.optional(listenAddress(), CONFIG_DEFAULTS.webListenAddr),
      public_addr: v.optional(publicAddress()),
      ssh_listen_addr: v.optional(listenAddress(), CONFIG_DEFAULTS.sshListenAddr),
      ssh_public_addr: v.optional(publicAddress()),
      tls_cert_file: v.optional(path(ctx)),
      tls_key_file: v.optional(path(ctx)),
      proxy_protocol_from: v.optional(list(balancerRange()), []),
    }),
    v.rawCheck(({ dataset, addIssue }) => {
      // Checks run even when the section had problems (to report everything): look before reading.
      if (!isObject(dataset.value)) return;
      const p = dataset.value;
      const both = 'give both, or neither for a generated self-signed certificate';
      if ('tls_cert_file' in p && !('tls_key_file' in p)) addIssue({ message: `is required with tls_cert_file: ${both}`, path: at(p, 'tls_key_file') });
      if ('tls_key_file' in p && !('tls_cert_file' in p)) addIssue({ message: `is required with tls_key_file: ${both}`, path: at(p, 'tls_cert_file') });
      for (const [key, listenKey] of [['public_addr', 'web_listen_addr'], ['ssh_public_addr', 'ssh_listen_addr']] as const) {
        const listen = p[listenKey];
        // 0.0.0.0 is fine to bind, but clients and certificates need a real name.
        if (!(key in p) && isHostPort(listen) && isUnspecifiedHost(listen.host)) {
          addIssue({
            message: `is required when proxy.${listenKey} listens on every interface (${formatHostPort(listen)}): set the name clients use, e.g. proxy.example.com:${listen.port}`,
            path: at(p, key),
          });
        }
      }
      const web = p['web_listen_addr'];
      const ssh = p['ssh_listen_addr'];
      if (
        isHostPort(web) &&
        isHostPort(ssh) &&
        web.port !== 0 &&
        web.port === ssh.port &&
        (web.host === ssh.host || isUnspecifiedHost(web.host) || isUnspecifiedHost(ssh.host))
      ) {
        addIssue({ message: `port ${ssh.port} is used by both proxy.web_listen_addr and proxy.ssh_listen_addr; give each its own port`, path: at(p, 'ssh_listen_addr') });
      }
    }),
    v.transform((p): ProxyConfig => {
      // Port 0 (tests) is copied as is: the server substitutes the port it bound.
      const proxy: ProxyConfig = {
        webListenAddr: p.web_listen_addr,
        publicAddr: p.public_addr ?? p.web_listen_addr,
        sshListenAddr: p.ssh_listen_addr,
        sshPublicAddr: p.ssh_public_addr ?? p.ssh_listen_addr,
        limits: p.limits,
        proxyProtocolFrom: p.proxy_protocol_from,
      };
      if (p.tls_cert_file !== undefined) proxy.tlsCertFile = p.tls_cert_file;
      if (p.tls_key_file !== undefined) proxy.tlsKeyFile = p.tls_key_file;
      return proxy;
    }),
  );
}

/** The issuer, exactly as written (OIDC compares it byte for byte), and whether it is the allowed plain-http loopback case. */
const issuer = () =>
  v.pipe(
    text(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const s = dataset.value;
      const example = 'e.g. https://idp.example.com/realms/main';
      let url: URL;
      try {
        url = new URL(s);
      } catch {
        addIssue({ message: `${JSON.stringify(s)} is not a URL; ${example}` });
        return NEVER;
      }
      let ok = true;
      const refuse = (message: string) => {
        addIssue({ message });
        ok = false;
      };
      if (url.username || url.password) refuse('must not contain a user name or password');
      if (url.search || url.hash) refuse("must not have a query (?) or fragment (#): it is compared exactly with the IdP's `iss`");
      // Plain http only to this machine: the development IdP (and the e2e tests) run on
      // http://127.0.0.1, where nothing crosses the network. Anywhere else http would
      // let anyone on the path forge ID tokens' keys.
      const insecure = url.protocol === 'http:' && isLoopbackHost(url.hostname);
      if (url.protocol !== 'https:' && !insecure) {
        refuse(
          url.protocol === 'http:'
            ? `${JSON.stringify(s)} must use https; plain http is allowed only for an IdP on this machine (localhost, 127.0.0.1, [::1])`
            : `${JSON.stringify(s)} must be an https URL; ${example}`,
        );
      }
      return ok ? { issuer: s, insecure } : NEVER;
    }),
  );

const claimRule = () =>
  section({
    claim: required(text(), 'is required: the ID token claim to look at, e.g. groups'),
    value: required(v.union([v.string(), v.boolean()], not('text or true/false', true)), 'is required: the claim value that grants the roles (text, or true/false)'),
    roles: required(list(text(), 'is empty: name at least one role'), 'is required: the roles this rule grants, e.g. [user]'),
  });

function oidcSchema(ctx: SchemaContext) {
  return v.pipe(
    section({
      issuer: required(issuer(), "is required: the IdP's issuer URL, e.g. https://idp.example.com/realms/main"),
      client_id: required(text(), 'is required: the client ID registered for Jumpgate at the IdP'),
      client_secret: v.optional(text()),
      client_secret_file: v.optional(path(ctx)),
      scopes: v.optional(
        v.pipe(
          list(text()),
          v.check((s) => s.includes('openid'), 'must include openid: without it the IdP does not return an ID token'),
        ),
        () => [...CONFIG_DEFAULTS.scopes],
      ),
      username_claim: v.optional(text(), CONFIG_DEFAULTS.usernameClaim),
      claims_to_roles: required(
        list(claimRule(), 'is empty: without a rule nobody can log in'),
        'is required: without a rule nobody can log in, e.g. - { claim: groups, value: admins, roles: [admin] }',
      ),
    }),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!isObject(dataset.value)) return;
      const o = dataset.value;
      if ('client_secret' in o && 'client_secret_file' in o) addIssue({ message: 'give client_secret or client_secret_file, not both', path: at(o, 'client_secret_file') });
      if (!('client_secret' in o) && !('client_secret_file' in o)) {
        addIssue({ message: 'is required (or client_secret_file, a file holding it): the client secret registered at the IdP', path: at(o, 'client_secret') });
      }
    }),
    v.transform((o): OidcConfig => {
      const oidc: OidcConfig = {
        issuer: o.issuer.issuer,
        clientId: o.client_id,
        scopes: o.scopes,
        usernameClaim: o.username_claim,
        claimsToRoles: o.claims_to_roles,
      };
      if (o.client_secret !== undefined) oidc.clientSecret = o.client_secret;
      if (o.client_secret_file !== undefined) oidc.clientSecretFile = o.client_secret_file;
      if (o.issuer.insecure) oidc.insecureAllowHttpLoopback = true;
      return oidc;
    }),
  );
}

/** Default `storage.max_connections`: connections one process may open to the database. */
export const DEFAULT_STORAGE_MAX_CONNECTIONS = 10;

function storageSchema(ctx: SchemaContext) {
  return v.pipe(
    section({
      type: v.optional(v.picklist(['dir', 'postgres'], not('dir or postgres')), 'dir'),
      conn_string: v.optional(
        v.pipe(
          text(),
          v.check((s) => /^postgres(ql)?:\/\//.test(s), 'must be a postgres:// URL, e.g. postgres://jumpgate@db.example.com:5432/jumpgate?sslmode=verify-full'),
        ),
      ),
      conn_string_file: v.optional(path(ctx)),
      encryption_key_file: v.optional(path(ctx)),
      previous_encryption_key_files: v.optional(list(path(ctx)), []),
      max_connections: v.optional(v.pipe(v.instance(YamlNumber, not('a whole number')), v.transform((n) => n.value), v.integer('must be a whole number'), v.minValue(2, 'must be at least 2 (one connection listens for changes)'), v.maxValue(1000, 'must be at most 1000'))),
    }),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!isObject(dataset.value)) return;
      const o = dataset.value;
      if (o.type !== 'postgres') {
        for (const k of ['conn_string', 'conn_string_file', 'encryption_key_file']) {
          if (k in o) addIssue({ message: 'is used only with type: postgres', path: at(o, k) });
        }
        return;
      }
      if ('conn_string' in o && 'conn_string_file' in o) addIssue({ message: 'give conn_string or conn_string_file, not both', path: at(o, 'conn_string_file') });
      if (!('conn_string' in o) && !('conn_string_file' in o)) {
        addIssue({ message: 'is required with type: postgres (or conn_string_file, a file holding it), e.g. postgres://jumpgate@127.0.0.1:5432/jumpgate', path: at(o, 'conn_string') });
      }
      if (!('encryption_key_file' in o)) {
        addIssue({
          message: 'is required with type: postgres: a file holding 32 random bytes in base64, the same on every proxy (make one with: openssl rand -base64 32 > storage.key; chmod 600 storage.key)',
          path: at(o, 'encryption_key_file'),
        });
      }
    }),
    v.transform((o): StorageConfig => {
      if (o.type === 'dir') return { type: 'dir' };
      return {
        type: 'postgres',
        ...(o.conn_string !== undefined ? { connString: o.conn_string } : {}),
        ...(o.conn_string_file !== undefined ? { connStringFile: o.conn_string_file } : {}),
        encryptionKeyFile: o.encryption_key_file!,
        previousEncryptionKeyFiles: o.previous_encryption_key_files,
        maxConnections: o.max_connections ?? DEFAULT_STORAGE_MAX_CONNECTIONS,
      };
    }),
  );
}

const labelName = (allowStar: boolean) =>
  v.pipe(
    v.string(),
    v.check(
      (k) => (allowStar && k === '*') || LABEL_KEY.test(k),
      (i) => `${JSON.stringify(i.input)} is not a valid label name: use letters, digits, "-", "_", "." and "/"`,
    ),
  );

/** A selector value: text or a list of texts; only a whole "*" is a wildcard. */
const selectorText = () =>
  v.pipe(
    text(),
    v.check((s) => s === '*' || !s.includes('*'), (i) => `${JSON.stringify(i.input)}: only a whole "*" is a wildcard (any value); partial patterns are not supported`),
  );

/** node_labels: key → value or list of values; "*" as a value means "any value, label present"; {"*": "*"} every node. */
const selector = () =>
  v.pipe(
    mapping(
      labelName(true),
      v.lazy((x) => (Array.isArray(x) ? v.pipe(v.array(selectorText()), v.minLength(1, 'is an empty list, which matches no node; list values or use "*"')) : selectorText())),
    ),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!isObject(dataset.value)) return;
      const s = dataset.value;
      const star = s['*'];
      if (star !== undefined && star !== '*' && !(Array.isArray(star) && star.length === 1 && star[0] === '*')) {
        addIssue({ message: 'the key "*" only takes the value "*" (every node)', path: at(s, '*') });
      }
    }),
  );

const roleSchema = () =>
  section({
    logins: required(
      list(
        v.pipe(
          text(),
          parsed((t: string) => (parseLoginTemplate(t), t)),
        ),
        'is empty: list at least one login, e.g. ["{{username}}"]',
      ),
      'is required: the Unix logins this role grants, e.g. ["{{username}}"]',
    ),
    node_labels: v.optional(selector(), {}),
    max_session_ttl: v.optional(duration()),
    permit_pty: v.optional(flag(), CONFIG_DEFAULTS.permitPty),
    forward_agent: v.optional(flag(), CONFIG_DEFAULTS.forwardAgent),
    port_forwarding: v.optional(flag(), CONFIG_DEFAULTS.portForwarding),
    x11_forwarding: v.optional(flag(), CONFIG_DEFAULTS.x11Forwarding),
    permit_user_rc: v.optional(flag(), CONFIG_DEFAULTS.permitUserRc),
    review_sessions: v.optional(flag(), CONFIG_DEFAULTS.reviewSessions),
    record_input: v.optional(flag(), CONFIG_DEFAULTS.recordInput),
  });

const roleName = () =>
  v.pipe(
    v.string(),
    v.check((n) => ROLE_NAME.test(n), (i) => `${JSON.stringify(i.input)} is not a valid role name: use lower-case letters, digits, "-" and "_", at most 63 characters`),
  );

/** Label values written as numbers or booleans (`rack: 012`, `gpu: true`) are kept as written. */
const labelValue = () =>
  v.pipe(
    v.union([v.string(), v.instance(YamlNumber), v.boolean()], not('text')),
    v.transform((x) => (x instanceof YamlNumber ? x.source : String(x))),
    v.check((s) => s.trim() !== '', 'is empty'),
  );

const nodeSchema = () =>
  v.pipe(
    section({
      name: required(
        v.pipe(text(), v.check(isHostname, (i) => `${JSON.stringify(i.input)} is not a valid node name: use letters, digits, "-" and ".", like a host name`)),
        'is required: the name users type, as in `ssh user@NAME`',
      ),
      addr: required(address({ defaultPort: CONFIG_DEFAULTS.nodePort }), "is required: the node's sshd address, e.g. 10.0.0.5:22"),
      labels: v.optional(mapping(labelName(false), labelValue()), {}),
    }),
    v.transform((n): NodeConfig => ({ name: n.name, addr: n.addr, labels: n.labels })),
  );

const nodesSchema = (ctx: SchemaContext) =>
  v.pipe(
    list(nodeSchema()),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!Array.isArray(dataset.value)) return;
      const nodes: unknown[] = dataset.value;
      const seen = new Map<string, number>();
      nodes.forEach((n, i) => {
        const name = (n as { name?: unknown } | null)?.name;
        if (typeof name !== 'string') return;
        const first = seen.get(name.toLowerCase());
        if (first === undefined) return void seen.set(name.toLowerCase(), i);
        const line = ctx.lineOf(`nodes[${first}].name`);
        addIssue({
          message: `${JSON.stringify(name)} is already used by another node${line ? ` (line ${line})` : ''}; node names must be unique`,
          path: [{ type: 'array', origin: 'value', input: nodes, key: i, value: n }, ...at(n, 'name')],
        });
      });
    }),
  );

function configSchema(ctx: SchemaContext) {
  return v.pipe(
    section({
      cluster_name: required(
        v.pipe(
          text(),
          v.check((n) => DNS_NAME.test(n), (i) => `${JSON.stringify(i.input)} is not a valid cluster name: use lower-case letters, digits, "-" and ".", like a DNS name`),
        ),
        'is required: the name of this cluster, e.g. example.com',
      ),
      data_dir: v.optional(path(ctx), CONFIG_DEFAULTS.dataDir),
      proxy: v.optional(proxySchema(ctx), {}),
      auth: v.optional(
        section({
          cert_ttl: v.optional(duration(), CONFIG_DEFAULTS.certTtl),
          login_timeout: v.optional(
            v.pipe(
              duration(),
              v.check((s) => s <= MAX_LOGIN_TIMEOUT_SECONDS, (i) => `${formatDuration(i.input)} is longer than the 10m a pending login may live; use 10m or less`),
            ),
            '10m',
          ),
          oidc: v.optional(v.nullable(oidcSchema(ctx))),
          session_recording: v.optional(
            v.picklist(['off', 'proxy'], not('off or proxy')),
            CONFIG_DEFAULTS.sessionRecording,
          ),
        }),
        {},
      ),
      roles: v.optional(mapping(roleName(), roleSchema()), {}),
      nodes: v.optional(nodesSchema(ctx), []),
      storage: v.optional(storageSchema(ctx), { type: 'dir' as const }),
    }),
    v.transform((c): Omit<ServerConfig, 'file'> => {
      const certTtlSeconds = c.auth.cert_ttl;
      const roles = new Map<string, RoleConfig>();
      for (const [name, r] of Object.entries(c.roles)) {
        roles.set(name, {
          name,
          logins: r.logins,
          nodeLabels: r.node_labels,
          maxSessionTtlSeconds: r.max_session_ttl ?? certTtlSeconds,
          permitPty: r.permit_pty,
          forwardAgent: r.forward_agent,
          portForwarding: r.port_forwarding,
          x11Forwarding: r.x11_forwarding,
          permitUserRc: r.permit_user_rc,
          reviewSessions: r.review_sessions,
          recordInput: r.record_input,
        });
      }
      const auth: AuthConfig = { certTtlSeconds, loginTimeoutSeconds: c.auth.login_timeout, sessionRecording: c.auth.session_recording };
      if (c.auth.oidc) {
        auth.oidc = c.auth.oidc;
        // A warning, not an error: a rule may name a role that is not defined (fails
        // closed: logins that match it are refused).
        auth.oidc.claimsToRoles.forEach((rule, i) =>
          rule.roles.forEach((role, j) => {
            if (roles.has(role)) return;
            const guess = suggest(role, [...roles.keys()]);
            ctx.warn(
              ['auth', 'oidc', 'claims_to_roles', i, 'roles', j],
              `role ${JSON.stringify(role)} is not defined under roles${guess ? ` (did you mean \`${guess}\`?)` : ''}; logins that match this rule will be refused`,
            );
          }),
        );
      }
      return { clusterName: c.cluster_name, dataDir: c.data_dir, proxy: c.proxy, auth, roles, nodes: c.nodes, storage: c.storage };
    }),
  );
}

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
