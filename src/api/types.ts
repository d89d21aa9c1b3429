/**
 * The proxy's HTTPS API as both sides see it: paths and JSON shapes. Field
 * names are snake_case on the wire.
 */

export const API = {
  ping: '/v1/ping',
  loginStart: '/v1/login/start',
  oidcCallback: '/v1/login/oidc/callback',
} as const;

/** GET /v1/ping: what a client needs to know before logging in. */
export interface PingResponse {
  cluster_name: string;
  server_version: string;
  proxy: {
    /** host:port of the HTTPS API, as clients should use it. */
    web_public_addr: string;
    /** host:port of the SSH proxy. */
    ssh_public_addr: string;
  };
  /** Every trusted host CA key (during a rotation: new and old), one OpenSSH public key line each. */
  host_ca: string[];
  auth: { type: 'oidc'; issuer: string } | { type: 'none' };
}

/** POST /v1/login/start */
export interface LoginStartRequest {
  /** The user's public key, one OpenSSH line (only the key is certified, never sent back). */
  public_key: string;
  /** Where the browser is sent at the end: http://127.0.0.1|localhost|[::1]:PORT/... only. */
  callback_url: string;
  /** Requested certificate TTL in seconds; the server caps it. */
  ttl_seconds?: number;
  /** tsh's one-time X25519 public key (base64url, 32 bytes) for sealing the response. */
  client_key: string;
  /** A secret (base64url, 32 bytes) the server echoes inside the sealed response. */
  client_nonce: string;
  /** Passed to the IdP as OIDC login_hint (tsh login --user). */
  login_hint?: string;
}

export interface LoginStartResponse {
  request_id: string;
  /** Where the browser goes next: the IdP's authorization URL. */
  login_url: string;
  /** ISO time after which the request is void. */
  expires_at: string;
}

/** The sealed payload tsh receives at its loopback listener (`response=` parameter). */
export interface LoginResult {
  v: 1;
  client_nonce: string;
  /** The user certificate, one OpenSSH line. */
  certificate: string;
  cluster_name: string;
  username: string;
  logins: string[];
  roles: string[];
  valid_before: string;
  host_ca: string[];
  ssh_public_addr: string;
  web_public_addr: string;
  /** Names of the nodes these roles reach, for the ssh_config Host patterns. */
  nodes: string[];
  /**
   * host:port of each of those nodes (same order; `[v6]:port`), so that the
   * address forms `tsh ls` shows work with plain ssh and `ssh -J` too.
   * Optional: an older proxy does not send it.
   */
  node_addrs?: string[];
}

/** Query parameters of the loopback callback when the login failed. */
export interface LoginCallbackError {
  error: string;
  error_description: string;
}

/** Errors from the API: JSON with a stable code. */
export interface ApiError {
  error: { code: string; message: string };
}
