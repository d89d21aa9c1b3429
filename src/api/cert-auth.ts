/**
 * Authenticating an HTTPS API request with the user's SSH certificate (the
 * same certificate and key `tsh ssh` uses; nothing new is issued):
 *
 *   Authorization: Jumpgate-SSH-Cert cert=<base64 certificate blob>, ts=<ms since epoch>, nonce=<32 hex>, sig=<base64 SSH signature>
 *
 * The signature (RFC 8709 / RFC 5656 / RFC 8332 signature blob, sshcert
 * signData) is over `certAuthPayload`: a fixed label, the method, the
 * request target (path and query), the time and the nonce, one per line.
 * The server checks the certificate against the user CA (type, validity,
 * source-address against the TCP peer), the signature with the certified
 * key, the time within CERT_AUTH_MAX_SKEW_MS of its clock and the nonce
 * unused within that window. A signed header is worth one request to one
 * path for at most that long, and travels only inside TLS.
 *
 * Shared by both sides (tsh signs, the proxy verifies).
 */

/** The Authorization scheme. */
export const CERT_AUTH_SCHEME = 'Jumpgate-SSH-Cert';
/** How far a request's time may be from the server's clock, either way. */
export const CERT_AUTH_MAX_SKEW_MS = 60_000;
/** Longest Authorization header accepted (an RSA-16384 certificate is under 8 KiB, base64 grows it by a third). */
export const CERT_AUTH_MAX_HEADER = 14_000;

const LABEL = 'jumpgate-api-request-v1';

/** The signed request fields. */
export interface CertAuthFields {
  method: string;
  /** Path and query as sent (`/v1/recordings/abc`). */
  target: string;
  /** Milliseconds since the epoch. */
  ts: number;
  /** 16 random bytes as 32 lower-case hex digits. */
  nonce: string;
}

/** The bytes that are signed. */
export function certAuthPayload(f: CertAuthFields): Buffer {
  return Buffer.from(`${LABEL}\n${f.method}\n${f.target}\n${f.ts}\n${f.nonce}\n`, 'utf8');
}

/** The Authorization header value. */
export function formatCertAuth(f: { cert: Buffer; ts: number; nonce: string; sig: Buffer }): string {
  return `${CERT_AUTH_SCHEME} cert=${f.cert.toString('base64')}, ts=${f.ts}, nonce=${f.nonce}, sig=${f.sig.toString('base64')}`;
}

/** Parses the Authorization header value; undefined when it is not this scheme in exactly this shape. */
export function parseCertAuth(header: string | undefined): { cert: Buffer; ts: number; nonce: string; sig: Buffer } | undefined {
  if (header === undefined || header.length > CERT_AUTH_MAX_HEADER) return undefined;
  const m = /^Jumpgate-SSH-Cert cert=([A-Za-z0-9+/]+={0,2}), ts=(\d{1,16}), nonce=([0-9a-f]{32}), sig=([A-Za-z0-9+/]+={0,2})$/.exec(header);
  if (!m) return undefined;
  return { cert: Buffer.from(m[1]!, 'base64'), ts: Number(m[2]), nonce: m[3]!, sig: Buffer.from(m[4]!, 'base64') };
}
