/**
 * The server as an OpenID Connect relying party (openid-client): discovery,
 * authorization code flow with PKCE S256, state and nonce, a confidential
 * client (client_secret_basic), ID token validation, userinfo. Every call to
 * the IdP goes through the project's network layer, so HTTPS_PROXY/NO_PROXY
 * apply.
 */
import { readFileSync } from 'node:fs';
import * as oidc from 'openid-client';
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import { ConfigError, UserError } from '../../errors.js';
import type { OidcConfig } from '../../config/index.js';
import { unwrapFetchError } from '../../net/index.js';

/** The checks one login carries from the authorization request to the callback. */
export interface OidcChecks {
  state: string;
  nonce: string;
  codeVerifier: string;
}

export class OidcConnector {
  private discovered: Promise<oidc.Configuration> | undefined;
  private readonly clientSecret: string;

  constructor(
    readonly cfg: OidcConfig,
    private readonly opts: { configFile: string; dispatcher: Dispatcher; redirectUri: () => string; timeoutSeconds?: number },
  ) {
    this.clientSecret = cfg.clientSecret ?? readSecret(opts.configFile, cfg.clientSecretFile!);
  }

  /** Fresh random checks for one login. */
  static newChecks(): OidcChecks {
    return { state: oidc.randomState(), nonce: oidc.randomNonce(), codeVerifier: oidc.randomPKCECodeVerifier() };
  }

  /** The IdP's authorization URL for one login. Discovers the IdP on first use (and again after a failure). */
  async authorizationUrl(checks: OidcChecks, loginHint?: string): Promise<URL> {
    const config = await this.configuration();
    return oidc.buildAuthorizationUrl(config, {
      ...(loginHint ? { login_hint: loginHint } : {}),
      redirect_uri: this.opts.redirectUri(),
      scope: this.cfg.scopes.join(' '),
      state: checks.state,
      nonce: checks.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(checks.codeVerifier),
      code_challenge_method: 'S256',
    });
  }

  /**
   * Finishes a login from the IdP's redirect: exchanges the code (PKCE,
   * state, nonce and the ID token are checked) and returns the ID token's
   * claims merged with the userinfo claims (ID token wins on conflicts).
   */
  async finish(callbackUrl: URL, checks: OidcChecks): Promise<Record<string, unknown>> {
    const config = await this.configuration();
    let tokens;
    try {
      tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: checks.codeVerifier,
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      throw idpError('IDP_LOGIN_FAILED', `the identity provider did not confirm the login: ${describe(err)}`, err);
    }
    const idClaims = tokens.claims() as Record<string, unknown> | undefined;
    if (!idClaims) throw idpError('IDP_LOGIN_FAILED', 'the identity provider returned no ID token', undefined);
    let userinfo: Record<string, unknown> = {};
    if (config.serverMetadata().userinfo_endpoint) {
      try {
        userinfo = (await oidc.fetchUserInfo(config, tokens.access_token, String(idClaims['sub']))) as Record<string, unknown>;
      } catch (err) {
        throw idpError('IDP_LOGIN_FAILED', `the identity provider's userinfo endpoint failed: ${describe(err)}`, err);
      }
    }
    return { ...userinfo, ...idClaims };
  }

  private configuration(): Promise<oidc.Configuration> {
    if (!this.discovered) {
      this.discovered = this.discover();
      // A failed discovery (IdP down) is retried at the next login, not cached.
      this.discovered.catch(() => (this.discovered = undefined));
    }
    return this.discovered;
  }

  private async discover(): Promise<oidc.Configuration> {
    const dispatcher = this.opts.dispatcher;
    const customFetch = ((url: string, init: Record<string, unknown>) =>
      undiciFetch(url, { ...(init as object), dispatcher } as Parameters<typeof undiciFetch>[1])) as unknown as oidc.CustomFetch;
    try {
      return await oidc.discovery(new URL(this.cfg.issuer), this.cfg.clientId, undefined, oidc.ClientSecretBasic(this.clientSecret), {
        [oidc.customFetch]: customFetch,
        timeout: this.opts.timeoutSeconds ?? 15,
        ...(this.cfg.insecureAllowHttpLoopback ? { execute: [oidc.allowInsecureRequests] } : {}),
      });
    } catch (err) {
      throw new UserError('IDP_UNREACHABLE', `cannot reach the identity provider at ${this.cfg.issuer}: ${describe(err)}`, {
        cause: err,
        hint: 'check that the IdP is up and auth.oidc.issuer is right; behind a proxy, check HTTPS_PROXY/NO_PROXY for the server',
      });
    }
  }
}

function readSecret(configFile: string, path: string): string {
  try {
    const s = readFileSync(path, 'utf8').trim();
    if (s === '') throw new Error('the file is empty');
    return s;
  } catch (err) {
    throw new ConfigError(configFile, 'auth.oidc.client_secret_file', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function idpError(code: string, message: string, cause: unknown): UserError {
  return new UserError(code, message, { cause, hint: 'run tsh login again; if it keeps failing, an admin should check the server log' });
}

/** A one-line reason from an openid-client or network error, without secrets. */
function describe(err: unknown): string {
  const inner = unwrapFetchError(err);
  if (inner instanceof UserError) return inner.message;
  const e = inner as { message?: string; error?: string; error_description?: string; cause?: unknown; code?: string };
  if (e?.error) return e.error_description ? `${e.error}: ${e.error_description}` : e.error;
  const cause = (e?.cause as { code?: string; message?: string } | undefined) ?? undefined;
  const base = e?.message ?? String(inner);
  return cause?.code ? `${base} (${cause.code})` : cause?.message && cause.message !== base ? `${base} (${cause.message})` : base;
}
