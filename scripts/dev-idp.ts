/**
 * A DEVELOPMENT-ONLY OpenID Connect provider (oidc-provider, OpenID-certified)
 * for the quickstart and the end-to-end tests. It accepts any password for
 * the accounts it knows, uses throwaway signing keys, and refuses to listen
 * anywhere but loopback. Never point a real cluster at it.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export interface DevAccount {
  /** What is typed in the login form (oidc-provider's dev login page). */
  login: string;
  claims: Record<string, unknown>;
}

export interface DevIdpOptions {
  /** 127.0.0.1, ::1 or localhost only. */
  host?: string;
  /** 0 = any free port. */
  port?: number;
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  accounts: DevAccount[];
}

export interface DevIdp {
  issuer: string;
  port: number;
  close(): Promise<void>;
}

/** The demo users: alice is an admin, bob a user, mallory is known but mapped to no role. */
export const DEMO_ACCOUNTS: DevAccount[] = [
  { login: 'alice', claims: { preferred_username: 'alice', name: 'Alice Admin', email: 'alice@example.test', email_verified: true, groups: ['admins', 'devs'] } },
  { login: 'bob', claims: { preferred_username: 'bob', name: 'Bob User', email: 'bob@example.test', email_verified: true, groups: ['devs'] } },
  { login: 'mallory', claims: { preferred_username: 'mallory', name: 'Mallory', email: 'mallory@example.test', email_verified: false, groups: [] } },
];

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Starts the development IdP; resolves once it listens. */
export async function startDevIdp(opts: DevIdpOptions): Promise<DevIdp> {
  const host = opts.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host)) throw new Error(`the development IdP listens on loopback only, not ${host}`);
  // The issuer URL must be known before the provider exists: bind first, then attach.
  const { createServer } = await import('node:http');
  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  // JWK straight from the generator (no later export: see sshcert/keys.ts on the Node 20 deadlock).
  const { privateKey: signingJwk } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { format: 'jwk' } as never,
  }) as unknown as { privateKey: Record<string, string> };
  const accounts = new Map(opts.accounts.map((a) => [a.login, a]));
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: opts.clientId,
        client_secret: opts.clientSecret,
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [{ ...signingJwk, kid: 'dev', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      // unix_logins: for roles' {{external.unix_logins}} login templates (test/e2e/claims.test.ts).
      profile: ['preferred_username', 'name', 'groups', 'unix_logins'],
    },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    conformIdTokenClaims: false,
    async findAccount(_ctx: unknown, sub: string) {
      // A login the IdP does not know still signs in, with only a subject: mapped to no role.
      const account = accounts.get(sub);
      return { accountId: sub, claims: async () => ({ sub, ...(account?.claims ?? { preferred_username: sub }) }) };
    },
  } as never);
  const callback = provider.callback();
  server.on('request', callback);
  return {
    issuer,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
