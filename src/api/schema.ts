/**
 * The proxy's HTTPS API shapes, declared once with valibot: the client parses
 * every answer with them, the server parses the login start request with
 * them, and the TypeScript types in api/types.ts are derived from them
 * (`v.InferOutput`). Field names are snake_case on the wire. Objects are not
 * strict (a newer server may add fields) but unknown fields are dropped from
 * the parsed value, so nothing unchecked travels further.
 *
 * The character rules are in api/names.ts; this file only says which rule
 * each field follows and how long things may be.
 */
import * as v from 'valibot';
import { isClusterName, isPlainHostName, isPlainHostPort, isPlainToken } from './names.js';
import { isHostname } from '../shared/address.js';
import { isLabelName } from '../shared/labels.js';

/** A node name: the same rule as the static inventory's (config nodes[].name, shared/address.ts isHostname). */
export function isNodeName(text: string): boolean {
  return isHostname(text) && !text.endsWith('.');
}

/** Longest ttl_seconds a client may ask for (the server's roles cap it far lower). */
export const MAX_TTL_REQUEST_SECONDS = 365 * 24 * 3600;
/** Most host CA keys one answer may carry (a rotation has two). */
export const MAX_HOST_CA_KEYS = 16;
/** Most node names one login answer may carry. */
export const MAX_NODE_NAMES = 10_000;
/** Most logins or roles one login answer may carry. */
export const MAX_TOKENS = 256;
/** Longest OpenSSH key or certificate line accepted (an RSA-16384 certificate is under 8 KiB). */
export const MAX_KEY_LINE = 16_384;

const plainHost = v.pipe(v.string('expected a host name'), v.check(isPlainHostName, 'not a plain host name (letters, digits, "-" and "." like a DNS name, or an IP address)'));
/** One PEM certificate (RFC 7468), at most MAX_TLS_CERT_PEM characters. */
export const MAX_TLS_CERT_PEM = 8 * 1024;
const pemCertificate = v.pipe(
  v.string('expected a PEM certificate'),
  v.maxLength(MAX_TLS_CERT_PEM, `expected a PEM certificate of at most ${MAX_TLS_CERT_PEM} characters`),
  v.regex(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE-----\n?$/, 'not one PEM certificate'),
);
const hostPort = v.pipe(v.string('expected host:port'), v.check(isPlainHostPort, 'not host:port with a plain host name and a port from 1 to 65535'));
const clusterName = v.pipe(
  v.string('expected a cluster name'),
  v.check(isClusterName, 'not a cluster name tsh can scope ssh by: a DNS name of at least two labels (like example.com), no wildcard, IP address or unsafe character'),
);
const token = v.pipe(v.string('expected a name'), v.check(isPlainToken, 'not a plain name (letters, digits, "._@-", at most 128, not starting with "-" or ".")'));
const keyLine = v.pipe(
  v.string('expected an OpenSSH public key line'),
  v.maxLength(MAX_KEY_LINE, `longer than ${MAX_KEY_LINE} characters`),
  v.regex(/^[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( [ -~]*)?$/, 'not one OpenSSH key line ("type base64 [comment]", printable characters only)'),
);
const base64url32 = (what: string) => v.pipe(v.string(what), v.regex(/^[A-Za-z0-9_-]{43}$/, 'expected 32 bytes, base64url without padding'));
const isoTime = v.pipe(
  v.string('expected an ISO time'),
  v.regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/, 'not an ISO 8601 time like 2026-01-02T03:04:05Z'),
  v.check((s) => Number.isFinite(Date.parse(s)), 'not a real date'),
);
const httpUrl = v.pipe(
  v.string('expected a URL'),
  v.maxLength(8192, 'longer than 8192 characters'),
  v.check((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'https:' || u.protocol === 'http:') && !/[\x00-\x20\x7f]/.test(s);
    } catch {
      return false;
    }
  }, 'not an http(s) URL'),
);

/** GET /v1/ping: what a client needs to know before logging in. */
export const PingResponseSchema = v.object({
  cluster_name: clusterName,
  server_version: v.pipe(v.string('expected a version'), v.regex(/^[A-Za-z0-9._+-]{1,64}$/, 'not a version like 1.2.3')),
  proxy: v.object({
    /** host:port of the HTTPS API, as clients should use it. */
    web_public_addr: hostPort,
    /** host:port of the SSH proxy. */
    ssh_public_addr: hostPort,
  }),
  /** Every trusted host CA key (during a rotation: new and old), one OpenSSH public key line each. */
  host_ca: v.pipe(v.array(keyLine, 'expected a list of key lines'), v.minLength(1, 'is empty'), v.maxLength(MAX_HOST_CA_KEYS, `has more than ${MAX_HOST_CA_KEYS} keys`)),
  auth: v.variant(
    'type',
    [v.object({ type: v.literal('oidc'), issuer: httpUrl }), v.object({ type: v.literal('none') })],
    'expected {"type": "oidc" | "none"}',
  ),
  /** The web port also carries SSH (TLS routing, ALPN TLS_ROUTE_ALPN). Absent (an older proxy): false. */
  tls_routing: v.optional(v.boolean('expected true or false')),
});

/** POST /v1/login/start */
export const LoginStartRequestSchema = v.object(
  {
    /** The user's public key, one OpenSSH line (only the key is certified, never sent back). */
    public_key: v.pipe(v.string('expected an OpenSSH public key line'), v.maxLength(MAX_KEY_LINE, 'expected an OpenSSH public key line')),
    /** Where the browser is sent at the end: http://127.0.0.1|localhost|[::1]:PORT/... only (checked by the server). */
    callback_url: v.pipe(v.string('expected a URL'), v.maxLength(2048, 'expected a URL of at most 2048 characters')),
    /** Requested certificate TTL in seconds; the server caps it. */
    ttl_seconds: v.optional(
      v.pipe(
        v.number('expected a whole number of seconds between 1 and one year'),
        v.integer('expected a whole number of seconds between 1 and one year'),
        v.minValue(1, 'expected a whole number of seconds between 1 and one year'),
        v.maxValue(MAX_TTL_REQUEST_SECONDS, 'expected a whole number of seconds between 1 and one year'),
      ),
    ),
    /** tsh's one-time X25519 public key (base64url, 32 bytes) for sealing the response. */
    client_key: base64url32('expected 32 bytes, base64url without padding'),
    /** A secret (base64url, 32 bytes) the server echoes inside the sealed response. */
    client_nonce: base64url32('expected 32 bytes, base64url without padding'),
    /** Passed to the IdP as OIDC login_hint (tsh login --user). */
    login_hint: v.optional(v.pipe(v.string('expected a string of at most 256 characters'), v.maxLength(256, 'expected a string of at most 256 characters'))),
  },
  'expected a JSON object',
);

export const LoginStartResponseSchema = v.object({
  request_id: v.pipe(v.string('expected a request id'), v.regex(/^[A-Za-z0-9_-]{1,128}$/, 'not a request id (base64url, at most 128)')),
  /** Where the browser goes next: the IdP's authorization URL. */
  login_url: httpUrl,
  /** ISO time after which the request is void. */
  expires_at: isoTime,
});

/** The sealed payload tsh receives at its loopback listener (`response=` parameter). */
export const LoginResultSchema = v.object({
  v: v.literal(1, 'expected version 1'),
  client_nonce: base64url32('expected the client nonce'),
  /** The user certificate, one OpenSSH line (tsh then parses it and checks it is for its key). */
  certificate: keyLine,
  cluster_name: clusterName,
  username: token,
  logins: v.pipe(v.array(token, 'expected a list of logins'), v.maxLength(MAX_TOKENS, `has more than ${MAX_TOKENS} entries`)),
  roles: v.pipe(v.array(token, 'expected a list of roles'), v.maxLength(MAX_TOKENS, `has more than ${MAX_TOKENS} entries`)),
  valid_before: isoTime,
  host_ca: v.pipe(v.array(keyLine, 'expected a list of key lines'), v.minLength(1, 'is empty'), v.maxLength(MAX_HOST_CA_KEYS, `has more than ${MAX_HOST_CA_KEYS} keys`)),
  ssh_public_addr: hostPort,
  web_public_addr: hostPort,
  /** Names of the nodes these roles reach, for the ssh_config Host patterns. */
  nodes: v.pipe(v.array(plainHost, 'expected a list of node names'), v.maxLength(MAX_NODE_NAMES, `has more than ${MAX_NODE_NAMES} names`)),
  /**
   * host:port of each of those nodes (same order; `[v6]:port`), for the
   * address forms `tsh ls` shows. Optional: an older proxy does not send it.
   * tsh routes an address host only when it is one of the cluster's own names.
   */
  node_addrs: v.optional(v.pipe(v.array(hostPort, 'expected a list of host:port'), v.maxLength(MAX_NODE_NAMES, `has more than ${MAX_NODE_NAMES} addresses`))),
  /**
   * The X.509 client certificate for the same key (PEM, one certificate),
   * for mutual TLS on the TLS route. Optional: an older proxy does not send it.
   */
  tls_cert: v.optional(pemCertificate),
  /** The proxy routes SSH through its web port (ping's tls_routing, remembered with the login). */
  tls_routing: v.optional(v.boolean('expected true or false')),
});

/**
 * Headless login (tsh login --headless, RFC 8628's device flow shape): the
 * short code a person compares between the terminal and the approval page.
 * Eight letters of a 20-letter alphabet with no vowels and no look-alikes
 * (RFC 8628 §6.1: about 34.5 bits), written `WDJB-MJHT`.
 */
export const HEADLESS_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
export const HEADLESS_CODE_RE = /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/;
/** Longest poll interval a server may ask for (seconds). */
export const MAX_POLL_INTERVAL_SECONDS = 60;

const requestId = v.pipe(v.string('expected a request id'), v.regex(/^[A-Za-z0-9_-]{22}$/, 'not a request id (16 bytes, base64url)'));
const pollInterval = v.pipe(
  v.number('expected a poll interval in seconds'),
  v.integer('expected a whole number of seconds'),
  v.minValue(1, 'expected at least 1 second'),
  v.maxValue(MAX_POLL_INTERVAL_SECONDS, `expected at most ${MAX_POLL_INTERVAL_SECONDS} seconds`),
);

/** POST /v1/login/headless/start: what tsh sends (no callback: nothing listens on tsh's side). */
export const HeadlessStartRequestSchema = v.object(
  {
    public_key: LoginStartRequestSchema.entries.public_key,
    ttl_seconds: LoginStartRequestSchema.entries.ttl_seconds,
    client_key: LoginStartRequestSchema.entries.client_key,
    client_nonce: LoginStartRequestSchema.entries.client_nonce,
    /** tsh login --user: a hint for the identity provider on the approving device (the certificate is for whoever signs in). */
    login_hint: LoginStartRequestSchema.entries.login_hint,
  },
  'expected a JSON object',
);

export const HeadlessStartResponseSchema = v.object({
  request_id: requestId,
  /** Only tsh knows it: polls must carry it (the request id travels in the URL a person opens). */
  poll_secret: base64url32('expected the poll secret (32 bytes, base64url)'),
  /** What the person opens on any device: https://<proxy public address>/web/headless/<request_id>. */
  url: httpUrl,
  /** The short code the approval page shows, to compare with the terminal's. */
  code: v.pipe(v.string('expected a code'), v.regex(HEADLESS_CODE_RE, 'not a code like WDJB-MJHT')),
  expires_at: isoTime,
  /** Seconds to wait between polls. */
  interval_seconds: pollInterval,
});

/** POST /v1/login/headless/poll */
export const HeadlessPollRequestSchema = v.object(
  {
    request_id: requestId,
    poll_secret: base64url32('expected 32 bytes, base64url without padding'),
  },
  'expected a JSON object',
);

/**
 * The poll's answer: still `pending` (wait `interval_seconds`), `slow_down`
 * (polled too early: the interval grew, RFC 8628 §3.5), `approved` with the
 * sealed LoginResult (api/envelope.ts, additional data = the request id),
 * `denied`, `failed` (approved but no certificate could be issued: why), or
 * `expired` (unknown, expired or already picked up).
 */
export const HeadlessPollResponseSchema = v.variant(
  'status',
  [
    v.object({ status: v.literal('pending'), interval_seconds: pollInterval }),
    v.object({ status: v.literal('slow_down'), interval_seconds: pollInterval }),
    v.object({ status: v.literal('approved'), response: v.pipe(v.string('expected a sealed response'), v.maxLength(256 * 1024, 'longer than 256 KiB'), v.regex(/^[A-Za-z0-9_-]+$/, 'not base64url')) }),
    v.object({ status: v.literal('denied') }),
    v.object({ status: v.literal('failed'), message: v.pipe(v.string('expected a message'), v.maxLength(2000, 'longer than 2000 characters')) }),
    v.object({ status: v.literal('expired') }),
  ],
  'expected {"status": "pending" | "slow_down" | "approved" | "denied" | "failed" | "expired"}',
);

/** Most recordings one list answer carries (the newest). */
export const MAX_RECORDINGS_LISTED = 10_000;
/** A session id as the recording API names it (a UUID fits). */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{1,100}$/;
const sessionId = v.pipe(v.string('expected a session id'), v.regex(SESSION_ID_PATTERN, 'not a session id (letters, digits, "-", "_", at most 100)'));
/** Names that came from a certificate or the config: text (escaped before display), bounded. */
const shortText = v.pipe(v.string('expected text'), v.maxLength(1024, 'longer than 1024 characters'));
const count = v.pipe(v.number('expected a number'), v.integer('expected a whole number'), v.minValue(0, 'negative'), v.maxValue(Number.MAX_SAFE_INTEGER, 'too large'));

/** One recording in GET /v1/recordings. */
export const RecordingSummarySchema = v.object({
  session_id: sessionId,
  user: shortText,
  login: shortText,
  node: shortText,
  start: isoTime,
  /** Absent while the session runs (or when its proxy died during it). */
  end: v.optional(isoTime),
  duration_ms: v.optional(count),
  /** Bytes stored now. */
  size: count,
  truncated: v.boolean('expected true or false'),
});

/** GET /v1/recordings: the caller's recordings (everyone's with review_sessions), newest first. */
export const RecordingListResponseSchema = v.object({
  recordings: v.pipe(v.array(RecordingSummarySchema), v.maxLength(MAX_RECORDINGS_LISTED, `more than ${MAX_RECORDINGS_LISTED} recordings`)),
});

/** Errors from the API: JSON with a stable code. */
export const ApiErrorSchema = v.object({
  error: v.object({
    code: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/)),
    message: v.pipe(v.string(), v.maxLength(2000)),
  }),
});

/** The first problem valibot found, as `field.path[index]` and a reason (the field is `body` for the value itself). */
export function firstIssue(issues: readonly v.BaseIssue<unknown>[]): { field: string; reason: string } {
  const issue = issues[0];
  if (!issue) return { field: 'body', reason: 'invalid' };
  let field = '';
  for (const item of issue.path ?? []) {
    const key = (item as { key?: unknown }).key;
    field += typeof key === 'number' ? `[${key}]` : `${field ? '.' : ''}${String(key)}`;
  }
  return { field: field || 'body', reason: issue.message };
}

/**
 * Parses `value` with `schema`; on failure returns the first problem as
 * `{ field, reason }` (never throws). Callers turn it into their own error
 * kind (ApiRequestError on the server, UserError/AuthError in tsh).
 */
export function parseShape<S extends v.GenericSchema>(schema: S, value: unknown): { ok: true; value: v.InferOutput<S> } | { ok: false; field: string; reason: string } {
  const r = v.safeParse(schema, value);
  return r.success ? { ok: true, value: r.output } : { ok: false, ...firstIssue(r.issues) };
}

/*
 * Nodes that join (`jumpgate node start`, server/nodes/): join with a token,
 * then heartbeat and renew with the node credential. The agent parses every
 * answer with these too.
 */

/** Most labels a node may send (token labels included). */
export const MAX_NODE_LABELS = 32;
/** Longest label value. */
export const MAX_LABEL_VALUE = 256;
/** Longest revocation list a node accepts (base64 of the KRL: sshd reads it at every connection). */
export const MAX_KRL_BYTES = 1024 * 1024;
/** Most user CA keys one answer may carry. */
export const MAX_USER_CA_KEYS = 16;
/** Longest time the server holds a heartbeat waiting for a change (seconds). */
export const MAX_HEARTBEAT_WAIT_SECONDS = 1200;

const nodeName = v.pipe(
  v.string('expected a node name'),
  v.check(isNodeName, 'not a node name: letters, digits, "-" and "." like a host name (at most 253), not all digits'),
);
const labelMap = v.pipe(
  v.record(
    v.pipe(v.string(), v.check(isLabelName, 'not a label name: letters, digits, "-", "_", "." and "/"')),
    v.pipe(
      v.string('expected a label value'),
      v.minLength(1, 'is empty'),
      v.maxLength(MAX_LABEL_VALUE, `longer than ${MAX_LABEL_VALUE} characters`),
      v.regex(/^[ -~]+$/, 'not printable ASCII'),
    ),
    'expected a mapping of label names to values',
  ),
  v.check((m) => Object.keys(m).length <= MAX_NODE_LABELS, `has more than ${MAX_NODE_LABELS} labels`),
);
/** The node credential: 32 random bytes, base64url (the server keeps only its SHA-256). */
const nodeCredential = base64url32('expected the node credential (32 bytes, base64url)');
const keyLines = (max: number) => v.pipe(v.array(keyLine, 'expected a list of key lines'), v.minLength(1, 'is empty'), v.maxLength(max, `has more than ${max} keys`));
const krlBase64 = v.pipe(
  v.string('expected a base64 KRL'),
  v.maxLength(Math.ceil(MAX_KRL_BYTES / 3) * 4, `longer than ${MAX_KRL_BYTES} bytes`),
  v.regex(/^[A-Za-z0-9+/]*={0,2}$/, 'not base64'),
);

/** POST /v1/nodes/join: a node's first call, with a join token (tctl tokens add). */
export const NodeJoinRequestSchema = v.object(
  {
    token: v.pipe(v.string('expected a join token'), v.regex(/^[A-Za-z0-9_-]{16,128}$/, 'not a join token (as printed by tctl tokens add)')),
    name: nodeName,
    /** host:port the proxy dials (the node's sshd). */
    addr: hostPort,
    labels: labelMap,
    /** The node's host public key, made on the node; its private half never leaves it. */
    public_key: keyLine,
  },
  'expected a JSON object',
);

/** What a node needs to keep its sshd current, in every join, renew and (when changed) heartbeat answer. */
const nodeTrust = {
  /** Every trusted user CA key (during a rotation: new and old): sshd's TrustedUserCAKeys. */
  user_ca: keyLines(MAX_USER_CA_KEYS),
  /** The current key revocation list (PROTOCOL.krl), base64: sshd's RevokedKeys. */
  krl: krlBase64,
  /** Changes whenever user_ca or krl does; the agent sends it back in its heartbeat. */
  state: v.pipe(v.string('expected a state'), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'not a state id')),
};

export const NodeJoinResponseSchema = v.object({
  cluster_name: clusterName,
  /** The host certificate for the sent key (principals: the name, name.<cluster>, the address's host). */
  host_certificate: keyLine,
  /** The node credential for every later call (Authorization: Bearer); renewed with the host certificate. */
  credential: nodeCredential,
  /** Seconds between heartbeats (a third of node_agent.heartbeat_ttl). */
  heartbeat_interval_seconds: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_HEARTBEAT_WAIT_SECONDS)),
  ...nodeTrust,
});

/** POST /v1/nodes/heartbeat (Authorization: Bearer <credential>): alive, and what changed since `state`. */
export const NodeHeartbeatRequestSchema = v.object(
  {
    name: nodeName,
    addr: hostPort,
    labels: labelMap,
    /** The state of the last answer ('' = none): the server holds the request until it changes or the interval passes. */
    state: v.pipe(v.string('expected a state'), v.regex(/^[A-Za-z0-9_-]{0,64}$/, 'not a state id')),
  },
  'expected a JSON object',
);

/** Either nothing changed (`state` only), or the new trust material. */
export const NodeHeartbeatResponseSchema = v.object({
  state: nodeTrust.state,
  user_ca: v.optional(nodeTrust.user_ca),
  krl: v.optional(nodeTrust.krl),
  heartbeat_interval_seconds: NodeJoinResponseSchema.entries.heartbeat_interval_seconds,
});

/** POST /v1/nodes/renew (Authorization: Bearer <credential>): a new host certificate and a new credential. */
export const NodeRenewRequestSchema = v.object(
  {
    name: nodeName,
    public_key: keyLine,
  },
  'expected a JSON object',
);

export const NodeRenewResponseSchema = v.object({
  host_certificate: keyLine,
  credential: nodeCredential,
});
/**
 * The TLS route's request line (shared/wire-names.ts TLS_ROUTE_ALPN): after
 * the mutual-TLS handshake tsh sends one JSON object and "\n". `node`: join
 * this stream to HOST:PORT's sshd as LOGIN (port 0 = the inventory port);
 * `ls`: the nodes the certificate reaches (the `nodes@jumpgate.dev` JSON);
 * `revoke`: lock this certificate (`tsh logout --revoke`; answer: revoke.ts RevokeAnswerSchema).
 */
export const TlsRouteRequestSchema = v.variant(
  'op',
  [
    v.object({
      v: v.literal(1, 'expected version 1'),
      op: v.literal('node'),
      host: v.pipe(v.string('expected a host'), v.minLength(1, 'is empty'), v.maxLength(253, 'is longer than 253'), v.regex(/^[^\s\x00-\x1f\x7f]+$/, 'has spaces or control characters')),
      port: v.pipe(v.number('expected a port'), v.integer('expected a port'), v.minValue(0, 'expected a port from 0 to 65535'), v.maxValue(65535, 'expected a port from 0 to 65535')),
      login: token,
    }),
    v.object({ v: v.literal(1, 'expected version 1'), op: v.literal('ls'), login: token }),
    v.object({ v: v.literal(1, 'expected version 1'), op: v.literal('revoke'), login: token }),
  ],
  'expected {"op": "node" | "ls" | "revoke", ...}',
);

/** The TLS route's answer line: accepted (the stream is the node's from the next byte on), or refused with the reason. */
export const TlsRouteAnswerSchema = v.variant(
  'ok',
  [
    v.object({ ok: v.literal(true) }),
    v.object({
      ok: v.literal(false),
      code: v.pipe(v.string('expected a code'), v.regex(/^[A-Z0-9_]{1,64}$/, 'not a code')),
      message: v.pipe(v.string('expected a message'), v.maxLength(2000, 'is longer than 2000')),
      /** 4: a new login may help (the certificate's roles); 2: the request was malformed; else 1. */
      exit: v.optional(v.picklist([1, 2, 4])),
    }),
  ],
  'expected {"ok": true | false, ...}',
);
