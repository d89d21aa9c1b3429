/**
 * Every fuzz target by name, with its corpus, mutator and the errors it may
 * throw. The CI-size tests (test/fuzz/*.test.ts, test/sshcert/fuzz.test.ts,
 * test/client/agent-fuzz.test.ts) and the long runs (`npm run fuzz --
 * --target NAME --count N --seed S`, bench/fuzz.ts) share them, so a seed
 * that fails in one reproduces in the other.
 *
 * | target      | what is fed                        | may throw / answer                 |
 * |-------------|------------------------------------|------------------------------------|
 * | certs       | mutated OpenSSH certificates       | CertError, WireError               |
 * | agent       | mutated ssh-agent reply streams    | AgentError, WireError              |
 * | noproxy     | mutated NO_PROXY values            | nothing: warnings only             |
 * | config      | mutated server YAML                | ConfigError only                   |
 * | login-start | mutated JSON to LoginService.start | ApiRequestError (4xx) only         |
 * | web         | mutated raw HTTP/1.1 requests      | 2xx/3xx/4xx with the headers; no 5xx |
 * | login-answer| mutated sealed login answers (JSON) through tsh's checks and the ssh_config / known_hosts renderers | UserError only; output scoped to the cluster (login-answer.ts) |
 * | cast        | mutated asciicast v2 recordings through tsh play's parser and text form | Error "line N: …" only; the text holds no control character but newline |
 */
import { connect as tlsConnect } from 'node:tls';
import { ConfigError } from '../../src/errors.js';
import { parseServerConfig, SAMPLE_CONFIG } from '../../src/config/index.js';
import { findNoProxyMatch, matchesNoProxy, parseNoProxy } from '../../src/net/no-proxy.js';
import { ApiRequestError, type LoginService } from '../../src/server/auth/login.js';
import { SECURITY_HEADERS } from '../../src/server/proxy/web.js';
import { mutate, mutateText, type Rng } from '../helpers/fuzz.js';
import { certCorpus, certFuzzTarget, isExpectedCertError } from '../sshcert/fuzz-corpus.js';
import { agentCorpus, agentFuzzTarget, isExpectedAgentError } from './agent-corpus.js';
import { loginAnswerTarget } from './login-answer.js';
import { parseCast } from '../../src/shared/asciicast.js';
import { castText } from '../../src/client/replay.js';

/** A target whose inputs are checked in-process, one at a time. */
export interface SyncTarget {
  kind: 'sync';
  corpus(): Buffer[];
  mutator: (input: Buffer, rng: Rng) => Buffer;
  target(input: Buffer): void;
  expected(err: unknown): boolean;
}

/** A target that needs something running (a LoginService, an HTTPS server): `open` gives the target. */
export interface AsyncTarget<Ctx> {
  kind: 'async';
  corpus(): Buffer[];
  mutator: (input: Buffer, rng: Rng) => Buffer;
  target(ctx: Ctx, input: Buffer): Promise<void>;
  expected(err: unknown): boolean;
}

/** Raised by a target when an input broke a rule (never an expected error). */
export class FuzzViolation extends Error {
  override name = 'FuzzViolation';
}

/** An answer the target counts as a rejection (its status as the code), not a failure. */
class Refused extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

// --- certs and agent: the existing corpora ---------------------------------

export const certsTarget: SyncTarget = { kind: 'sync', corpus: certCorpus, mutator: mutate, target: certFuzzTarget, expected: isExpectedCertError };
export const agentTarget: SyncTarget = { kind: 'sync', corpus: agentCorpus, mutator: mutate, target: agentFuzzTarget, expected: isExpectedAgentError };

// --- NO_PROXY ---------------------------------------------------------------

const NOPROXY_CORPUS = [
  '',
  '*',
  'localhost,127.0.0.1,::1',
  '.example.com,*.example.org:3023,10.0.0.0/8,[fd00::1]:22,fd00::/8',
  'jump.example.org:3023, bücher.example, EXAMPLE.Org.',
  ' a , ,b.c:1,[::1],::ffff:10.1.2.3,192.168.1.0/24,0.0.0.0/0,::1/128',
  'host:99999,http://x,a b,10.0.0.0/33,*.*.x,[::1,2.3,*:22',
];
const NOPROXY_DICT = [',', ':', '.', '*', '*.', '[', ']', '/', '::', '%', '0', '22', '65535', '65536', '99999', '-', '_', '#', '?', '@', 'http://',
  'localhost', '255.255.255.255', '::ffff:', '1.2.3.4', '/0', '/32', '/33', '/128', '/129', 'ü', 'xn--', '..', '\u3002', '\uff0e', '%2e', ' '];
const NOPROXY_HOSTS = ['jump.example.org', 'example.com', 'a.b.example.org', '10.1.2.3', '::1', '[::1]', 'fd00::1', '[fd00::1]', 'bücher.example', 'xn--bcher-kva.example', '', '.', '[', ']', '*', '::', '0.0.0.0'];

/** NO_PROXY: parseNoProxy never throws; every rule matches what it names; matching any host never throws. */
export const noproxyTarget: SyncTarget = {
  kind: 'sync',
  corpus: () => NOPROXY_CORPUS.map((s) => Buffer.from(s)),
  mutator: (input, rng) => mutateText(input, rng, NOPROXY_DICT),
  target(input) {
    const text = input.toString('utf8');
    const { rules, warnings } = parseNoProxy(text, 'NO_PROXY');
    if (!warnings.every((w) => typeof w === 'string' && w.startsWith('ignoring NO_PROXY entry'))) throw new FuzzViolation(`odd warning: ${warnings.join(' | ')}`);
    const entries = text.split(',').map((e) => e.trim()).filter(Boolean);
    if (rules.length + warnings.length !== entries.length) throw new FuzzViolation(`${entries.length} entries became ${rules.length} rules and ${warnings.length} warnings`);
    for (const rule of rules) {
      // A rule must match the destination it names (ranges: their network address).
      const host = rule.kind === 'domain' ? rule.domain : rule.kind === 'ip' ? rule.address : rule.kind === 'cidr' ? rule.network : 'anything.test';
      const port = rule.kind === 'domain' || rule.kind === 'ip' ? (rule.port ?? 22) : 22;
      if (findNoProxyMatch([rule], host, port) !== rule) throw new FuzzViolation(`rule ${JSON.stringify(rule)} does not match ${host}:${port}`);
    }
    for (const host of [...NOPROXY_HOSTS, ...entries.slice(0, 8)]) {
      for (const port of [22, 3023]) matchesNoProxy(rules, host, port);
    }
  },
  expected: () => false,
};

// --- recordings: what tsh play reads ------------------------------------------

const CAST_CORPUS = [
  '{"version":2,"width":80,"height":24,"timestamp":1764489600,"env":{"TERM":"xterm"},"title":"alice@node1"}\n[0.1,"o","$ "]\n[0.5,"i","l"]\n[1,"r","100x30"]\n[1.2,"o","\\u001b[31mred\\u001b[0m\\r\\n"]\n[2,"m","marker"]\n',
  '{"version":2,"width":80,"height":24}\n[0.1,"o","\\u001b]0;title\\u0007\\u009b31m\\u202e€\\r\\n"]\n[0.3,"o","torn',
];
const CAST_DICT = ['\\u001b[', '\\u001b]', '\\u0007', '\\u009b', '\\u2028', '\\r\\n', '"o"', '"i"', '"r"', '[', ']', '{', '}', ',', '\n', '-1', '1e308', '"version":2', '\\ud800'];

/** tsh play parses a recording from the proxy: only a located parse error, and a text form with no control character but newline. */
export const castTarget: SyncTarget = {
  kind: 'sync',
  corpus: () => CAST_CORPUS.map((s) => Buffer.from(s)),
  mutator: (input, rng) => mutateText(input, rng, CAST_DICT),
  target(input) {
    const text = castText(parseCast(input.toString('utf8')));
    // eslint-disable-next-line no-control-regex
    const bad = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.exec(text);
    if (bad) throw new FuzzViolation(`the text form holds U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0')}`);
  },
  expected: (err) => err instanceof Error && /^line \d+: /.test(err.message),
};

// --- server config ----------------------------------------------------------

/** CONTRACT.md's example, the sample from `jumpgate configure`, and shapes the YAML reader must survive. */
const CONFIG_CORPUS = [
  SAMPLE_CONFIG,
  `cluster_name: example.test
data_dir: ./data
proxy:
  web_listen_addr: 127.0.0.1:3080
  public_addr: localhost:3080
  ssh_listen_addr: 127.0.0.1:3023
  ssh_public_addr: localhost:3023
  tls_cert_file: /path/cert.pem
  tls_key_file: /path/key.pem
auth:
  cert_ttl: 24h
  oidc:
    issuer: https://idp.example.test/realms/x
    client_id: jumpgate
    client_secret: s3cret
    scopes: [openid, email, profile]
    username_claim: preferred_username
    claims_to_roles:
      - { claim: groups, value: admins, roles: [admin] }
      - { claim: email_verified, value: true, roles: [user] }
roles:
  user:
    logins: ["{{username}}"]
    node_labels: { env: "*" }
    max_session_ttl: 24h
nodes:
  - { name: node1, addr: 127.0.0.1:2222, labels: { env: test } }
`,
  'cluster_name: a.test\n',
  `cluster_name: anchors.test
proxy:
  web_listen_addr: "0.0.0.0:3080"
  public_addr: jump.anchors.test:443
roles:
  base:
    logins: &logins ["{{username}}", "{{external.unix_logins}}", root]
    node_labels: &all { "*": "*" }
    permit_pty: true
    forward_agent: false
  ops:
    logins: *logins
    node_labels: { env: [prod, staging], team: db }
    port_forwarding: true
    x11_forwarding: true
    max_session_ttl: 1h30m
nodes:
  - name: db1
    addr: "[::1]:22"
    labels: { env: prod, team: db }
`,
  `cluster_name: secrets.test
auth:
  login_timeout: 90s
  oidc:
    issuer: http://127.0.0.1:5556
    client_id: "jumpgate"
    client_secret_file: ./secret
    claims_to_roles:
      - claim: groups
        value: "admins"
        roles: [admin, user]
roles: { admin: { logins: [root] }, user: { logins: ["{{username}}"] } }
`,
];
const CONFIG_DICT = [': ', ':', '- ', '-', '{', '}', '[', ']', '"', "'", ',', '&a ', '*a', '<<: *a', '<<: ', '!!binary ', '!!int ', '!!str ', '!!map ', '!!set ', '? ', '|', '>-', '#', '---\n', '...\n', '\t', '\n', '  ', 'null', '~', 'true', 'yes', 'no',
  '1e400', '0x10', '0o7', '-1', '.inf', '.nan', '99999999999999999999', '{{username}}', '{{external.x.y}}', '{{', '}}', '24h', '0s', '7d', '1h30m', '25x', '999999999h', '65536', '0.0.0.0:0', '[::]:80', '[::1]', '~/x', '../', '%YAML 1.1\n', '%TAG ! tag:x,2000:\n',
  'cluster_name', 'data_dir', 'proxy', 'auth', 'roles', 'nodes', 'oidc', 'logins', 'node_labels', 'claims_to_roles', 'max_session_ttl', 'web_listen_addr', 'issuer', 'client_secret', 'client_secret_file', 'addr', 'labels', '__proto__', 'constructor'];

/** Server config: parseServerConfig throws ConfigError (ServerConfigError, ConfigProblem) and nothing else. */
export const configTarget: SyncTarget = {
  kind: 'sync',
  corpus: () => CONFIG_CORPUS.map((s) => Buffer.from(s)),
  mutator: (input, rng) => mutateText(input, rng, CONFIG_DICT),
  target(input) {
    parseServerConfig(input.toString('utf8'), '/etc/jumpgate/jumpgate.yaml');
  },
  expected: (err) => err instanceof ConfigError,
};

// --- login start body (LoginService.start, no HTTP) -------------------------

const PUBLIC_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
const START_BODIES = [
  { public_key: PUBLIC_KEY, callback_url: 'http://127.0.0.1:43210/0123456789abcdef0123456789abcdef/callback', client_key: 'A'.repeat(43), client_nonce: 'B'.repeat(43) },
  { public_key: `${PUBLIC_KEY} alice@laptop`, callback_url: 'http://[::1]:9/cb', ttl_seconds: 3600, client_key: 'Cc-_'.repeat(10) + 'abc', client_nonce: 'x'.repeat(43), login_hint: 'alice' },
  { public_key: PUBLIC_KEY, callback_url: 'http://localhost:1/', client_key: 'A'.repeat(43), client_nonce: 'B'.repeat(43), ttl_seconds: 31536000 },
].map((b) => JSON.stringify(b));
const JSON_DICT = ['{', '}', '[', ']', '"', ':', ',', 'null', 'true', 'false', '0', '-0', '1e309', '-1', '3.5', '9007199254740993', '31536001', '""', '"\\u0000"', '"\\ud800"', '\\"', '\\\\',
  '"__proto__"', '"constructor"', '"public_key"', '"callback_url"', '"ttl_seconds"', '"client_key"', '"client_nonce"', '"login_hint"',
  'http://127.0.0.1:1/', 'http://localhost:0/', 'http://[::1]:65535/', 'http://[::ffff:127.0.0.1]:80/', 'http://127.1:80/', 'http://0x7f.1:80/', 'http://evil.test:80/', 'http://a@127.0.0.1:1/', 'https://127.0.0.1:1/', 'javascript:', '#frag', '%00',
  'ssh-ed25519 ', 'ssh-rsa ', 'ecdsa-sha2-nistp256 ', 'ssh-ed25519-cert-v01@openssh.com ', 'AAAA', '=', '+/', '-_'];

/** The login start body, parsed as JSON and handed to LoginService.start: only ApiRequestError (a 4xx) may come back. */
export const loginStartTarget: AsyncTarget<{ login: LoginService }> = {
  kind: 'async',
  corpus: () => START_BODIES.map((s) => Buffer.from(s)),
  mutator: (input, rng) => mutateText(input, rng, JSON_DICT),
  async target(ctx, input) {
    let body: unknown;
    try {
      body = JSON.parse(input.toString('utf8'));
    } catch {
      throw new Refused('NOT_JSON'); // the HTTP layer answers 400 BAD_JSON before start() sees it
    }
    try {
      const r = await ctx.login.start(body, '127.0.0.1');
      if (typeof r.login_url !== 'string' || typeof r.request_id !== 'string') throw new FuzzViolation(`odd answer ${JSON.stringify(r)}`);
    } catch (err) {
      if (err instanceof ApiRequestError && err.status >= 400 && err.status < 500) throw new Refused(err.code);
      throw err;
    }
  },
  expected: (err) => err instanceof Refused,
};

// --- the HTTPS API, raw HTTP/1.1 over TLS -------------------------------------

const HTTP_DICT = ['\r\n', '\r\n\r\n', '\n', ': ', ':', ' ', '\t', 'content-length: ', 'Content-Length: 0\r\n', 'content-length: 99999999999999999999\r\n', 'content-length: -1\r\n', 'transfer-encoding: chunked\r\n', 'Transfer-Encoding: gzip, chunked\r\n',
  'content-type: application/json\r\n', 'content-type: application/json; charset=utf-16\r\n', 'content-type: text/plain\r\n', 'connection: keep-alive\r\n', 'connection: upgrade\r\nupgrade: websocket\r\n', 'expect: 100-continue\r\n', 'host: \r\n',
  'GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'PRI', 'DELETE', '*', '//', '/../', '/./', '%00', '%2f', '%', '?', '#', '&', '=', '&state=', '&code=', '&error=', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1',
  '/v1/ping', '/v1/login/start', '/v1/login/oidc/callback', 'http://evil.test', '0\r\n\r\n', 'ffffffff\r\n', ...JSON_DICT];

function rawRequest(method: string, target: string, headers: string[], body = ''): string {
  return `${method} ${target} HTTP/1.1\r\nhost: 127.0.0.1\r\n${headers.map((h) => `${h}\r\n`).join('')}connection: close\r\n${body ? `content-length: ${Buffer.byteLength(body)}\r\n` : ''}\r\n${body}`;
}

const WEB_CORPUS = [
  ...START_BODIES.map((b) => rawRequest('POST', '/v1/login/start', ['content-type: application/json', 'accept: application/json'], b)),
  rawRequest('GET', '/v1/ping', ['accept: application/json']),
  rawRequest('GET', '/v1/login/oidc/callback?code=abc&state=0123456789&iss=http%3A%2F%2F127.0.0.1%3A5556', []),
  rawRequest('GET', '/v1/login/oidc/callback?error=access_denied&error_description=no&state=x', []),
  `POST /v1/login/start HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n10\r\n{"public_key":1}\r\n0\r\n\r\n`,
];

export interface WebFuzzContext {
  port: number;
  /** Longest a request may take before the server must have answered or closed. */
  deadlineMs: number;
}

/**
 * Raw HTTP/1.1 over TLS to a real startWebApi: every answer is 2xx, 3xx or
 * 4xx with the security headers; a 4xx is JSON with an error code (or the
 * callback's HTML page); the server answers or closes within the deadline.
 */
export const webTarget: AsyncTarget<WebFuzzContext> = {
  kind: 'async',
  corpus: () => WEB_CORPUS.map((s) => Buffer.from(s)),
  mutator: (input, rng) => mutateText(input, rng, HTTP_DICT),
  async target(ctx, input) {
    const raw = await exchange(ctx.port, input, ctx.deadlineMs);
    if (raw === undefined) throw new FuzzViolation(`no answer and no close within ${ctx.deadlineMs} ms`);
    if (raw.length === 0) throw new Refused('CLOSED'); // e.g. a request the parser gave up on after the client's bytes ran out
    const answer = parseAnswer(raw);
    if (!answer) throw new FuzzViolation(`not an HTTP answer: ${JSON.stringify(raw.subarray(0, 200).toString('latin1'))}`);
    const { status, headers, body } = answer;
    if (status >= 500) throw new FuzzViolation(`HTTP ${status}: ${body.slice(0, 200)}`);
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) if (headers[k] !== v) throw new FuzzViolation(`HTTP ${status} without ${k}`);
    if (status >= 400) {
      const type = headers['content-type'] ?? '';
      if (type.startsWith('application/json')) {
        let code: unknown;
        try {
          code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
        } catch {
          code = undefined;
        }
        if (typeof code !== 'string' && headers['content-length'] === String(Buffer.byteLength(body))) throw new FuzzViolation(`HTTP ${status} without an error code: ${body.slice(0, 200)}`);
        throw new Refused(`HTTP_${status}`);
      }
      if (type.startsWith('text/html') && status === 400 && /This login link is no longer valid/.test(body)) throw new Refused('HTTP_400_PAGE');
      throw new FuzzViolation(`HTTP ${status} with content-type ${type}`);
    }
  },
  expected: (err) => err instanceof Refused,
};

let tlsSession: Buffer | undefined;

/** Sends `bytes` on a fresh TLS connection; resolves with the first complete answer, what came before the close, or undefined at the deadline. */
function exchange(port: number, bytes: Buffer, deadlineMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(tlsSession ? { session: tlsSession } : {}) });
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (v: Buffer | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), deadlineMs);
    s.on('session', (sess: Buffer) => (tlsSession = sess));
    s.on('secureConnect', () => s.write(bytes, () => {}));
    s.on('data', (b: Buffer) => {
      chunks.push(b);
      const all = Buffer.concat(chunks);
      if (parseAnswer(all, true)) done(all);
    });
    s.on('error', () => {});
    s.on('close', () => done(Buffer.concat(chunks)));
  });
}

/** Parses the first final (non-1xx) answer; with `complete`, only when its body has fully arrived. */
function parseAnswer(raw: Buffer, complete = false): { status: number; headers: Record<string, string>; body: string } | undefined {
  let text = raw.toString('latin1');
  for (;;) {
    const end = text.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const lines = text.slice(0, end).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] ?? '');
    if (!m) return undefined;
    const status = Number(m[1]);
    if (status >= 100 && status < 200) {
      text = text.slice(end + 4);
      continue;
    }
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const rest = Buffer.from(text.slice(end + 4), 'latin1');
    const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
    if (complete && (length === undefined || rest.length < length)) return undefined;
    return { status, headers, body: rest.subarray(0, length ?? rest.length).toString('utf8') };
  }
}

/** The names `npm run fuzz -- --target NAME` accepts. */
export const SYNC_TARGETS = { certs: certsTarget, agent: agentTarget, noproxy: noproxyTarget, config: configTarget, 'login-answer': loginAnswerTarget, cast: castTarget } as const;
export const ASYNC_TARGET_NAMES = ['login-start', 'web'] as const;
