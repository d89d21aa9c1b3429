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

/**
 * `npm run dev-idp -- --port 5556 --redirect https://localhost:3080/v1/login/oidc/callback [--redirect ...]
 *   [--client-id jumpgate-dev] [--client-secret-file FILE]`: the same development IdP for a cluster you run by
 * hand (several proxies behind a balancer: pass the callback on the balancer's public address). Prints the
 * auth.oidc block to paste into the config; the client secret goes to the file (0600), never to argv or stdout.
 */
async function cli(argv: string[]): Promise<void> {
  const { parseArgs } = await import('node:util');
  const { writeFileSync } = await import('node:fs');
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', default: '5556' },
      redirect: { type: 'string', multiple: true },
      'client-id': { type: 'string', default: 'jumpgate-dev' },
      'client-secret-file': { type: 'string', default: './dev-idp.secret' },
      help: { type: 'boolean' },
    },
  });
  if (values.help || !values.redirect?.length) {
    process.stderr.write(
      'usage: npm run dev-idp -- --redirect https://<public_addr>/v1/login/oidc/callback [--redirect ...] [--port 5556]\n' +
        '       [--client-id jumpgate-dev] [--client-secret-file ./dev-idp.secret]\n' +
        'A DEVELOPMENT-ONLY OIDC provider on 127.0.0.1 (any password; accounts alice = admins, bob = devs, mallory = no role).\n',
    );
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: ${values.port} is not a port number`);
  for (const r of values.redirect) if (!/^https:\/\/[^/\s]+\/v1\/login\/oidc\/callback$/.test(r)) throw new Error(`--redirect: ${r} is not https://HOST:PORT/v1/login/oidc/callback`);
  const secret = randomBytes(24).toString('base64url');
  writeFileSync(values['client-secret-file']!, `${secret}\n`, { mode: 0o600 });
  const idp = await startDevIdp({ port, clientId: values['client-id']!, clientSecret: secret, redirectUris: values.redirect, accounts: DEMO_ACCOUNTS });
  process.stdout.write(
    [
      'auth:',
      '  oidc:',
      `    issuer: ${idp.issuer}`,
      `    client_id: ${values['client-id']}`,
      `    client_secret_file: ${values['client-secret-file']}`,
      '    claims_to_roles:',
      '      - { claim: groups, value: admins, roles: [admin] }',
      '      - { claim: groups, value: devs, roles: [user] }',
      '',
    ].join('\n'),
  );
  process.stderr.write(`development IdP at ${idp.issuer} (Ctrl-C stops it); redirect URIs: ${values.redirect.join(', ')}\n`);
  const stop = () => void idp.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && /dev-idp\.ts$/.test(process.argv[1])) {
  cli(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`dev-idp: ${err.message}\n`);
    process.exitCode = 1;
  });
}
