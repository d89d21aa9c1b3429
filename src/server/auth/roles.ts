/**
 * Roles → access: which logins a user's certificate carries, which nodes they
 * may reach, how long the certificate lives and what it permits. Pure: the
 * config and the IdP's claims in, an `Access` out.
 *
 * Semantics (to match Teleport where the contract is silent):
 * - Logins are the union over the roles, in role order, duplicates dropped.
 * - A node is reachable when at least one role's `node_labels` selects it:
 *   every key of the selector must match (AND); a list value matches any of its
 *   values (OR); the value "*" matches any value but the label must exist;
 *   `{"*": "*"}` matches every node, even one without labels; an empty selector
 *   (the default) matches none.
 * - The certificate TTL is the smallest of the request, every role's
 *   max_session_ttl and auth.cert_ttl.
 * - The permit-* extensions are the union: one role allowing agent forwarding is enough.
 */
import { AuthError, UserError } from '../../errors.js';
import type { NodeConfig, OidcConfig, RoleConfig, ServerConfig } from '../../config/index.js';
import {
  ClaimValueError,
  claimValues,
  expandLoginTemplate,
  isValidLogin,
  lookupClaim,
  MAX_TEMPLATE_LOGINS,
  parseLoginTemplate,
  templateClaims,
} from '../../config/index.js';

/** Longest claim value quoted in an error message (the value came from the IdP). */
const QUOTE_MAX = 64;
const quote = (s: string): string => JSON.stringify(s.length > QUOTE_MAX ? `${s.slice(0, QUOTE_MAX)}…` : s);

/** What a set of roles grants one user. */
export interface Access {
  /** The roles, deduplicated, in the order given. */
  roles: string[];
  /** Unix logins = the certificate's principals; never empty. */
  logins: string[];
  /** One label selector per role; a node must match at least one. */
  nodeLabelSets: Record<string, string | string[]>[];
  maxSessionTtlSeconds: number;
  /** OpenSSH permit-* extensions (empty values) that at least one role allows, sorted by name. */
  extensions: Record<string, string>;
  /**
   * The IdP claims the roles' `{{external.CLAIM}}` templates read, by claim
   * name, with the values they gave (certificate extension traits@jumpgate.dev).
   * A claim that gave nothing is absent.
   */
  traits: Record<string, string[]>;
}

/**
 * Resolves role names to the access they grant `username`.
 * `claims` feeds `{{external.CLAIM}}` templates (absent for tctl: such templates then grant nothing).
 * @throws UserError ROLE_UNKNOWN for a role the config does not define;
 *   AuthError ROLE_BAD_LOGIN when a template expands to something that is not a valid Unix login;
 *   AuthError ACCESS_NO_LOGINS when the roles grant no login at all.
 */
export function resolveAccess(
  config: ServerConfig,
  username: string,
  roleNames: readonly string[],
  claims: Record<string, unknown> = {},
): Access {
  const roles: RoleConfig[] = [];
  for (const name of new Set(roleNames)) {
    const role = config.roles.get(name);
    if (!role) {
      const known = [...config.roles.keys()];
      throw new UserError('ROLE_UNKNOWN', `role ${JSON.stringify(name)} is not defined in ${config.file}`, {
        hint: known.length > 0 ? `the roles are: ${known.join(', ')}` : 'define roles under `roles:` in the server configuration',
      });
    }
    roles.push(role);
  }
  if (roles.length === 0) {
    throw new AuthError('ACCESS_NO_ROLES', `${username} has no roles`, {
      hint: 'grant at least one role (auth.oidc.claims_to_roles, or --roles for tctl)',
    });
  }

  const logins: string[] = [];
  const traits: Record<string, string[]> = {};
  const missing: string[] = [];
  for (const role of roles) {
    for (const template of role.logins) {
      const parts = parseLoginTemplate(template);
      let expanded: string[];
      try {
        for (const claim of templateClaims(parts)) {
          const values = claimValues(claim, lookupClaim(claims, claim));
          // defineProperty: a claim named "__proto__" stays a plain key.
          if (values.length > 0) Object.defineProperty(traits, claim, { value: values, enumerable: true, writable: true, configurable: true });
          else if (!missing.includes(claim)) missing.push(claim);
        }
        expanded = expandLoginTemplate(parts, username, claims);
      } catch (err) {
        if (!(err instanceof ClaimValueError)) throw err;
        throw new AuthError('ROLE_BAD_CLAIM', `role ${JSON.stringify(role.name)} cannot use ${JSON.stringify(template)} for ${quote(username)}: ${err.message}; the login is refused`, {
          cause: err,
          hint: `fix the claim "${err.claim}" at the identity provider, or the role's logins in the server configuration`,
        });
      }
      for (const login of expanded) {
        // Refuse rather than drop: a silently missing login shows up later as a
        // baffling "Permission denied" from sshd, while this names the role and the value.
        if (!isValidLogin(login)) {
          const claimsUsed = templateClaims(parts);
          const from = claimsUsed.length > 0 ? `from ${JSON.stringify(template)} and the claim${claimsUsed.length > 1 ? 's' : ''} ${claimsUsed.map((c) => `"${c}"`).join(', ')}` : `from ${JSON.stringify(template)}`;
          throw new AuthError(
            'ROLE_BAD_LOGIN',
            `role ${JSON.stringify(role.name)} gives ${quote(username)} the login ${quote(login)} (${from}), which is not a valid Unix login; the login is refused`,
            {
              hint:
                claimsUsed.length > 0
                  ? 'logins use letters, digits, ".", "_" and "-" (at most 32, not all digits); fix the value at the identity provider or the role\'s logins'
                  : 'logins use letters, digits, ".", "_" and "-" (at most 32); change the role\'s logins or auth.oidc.username_claim',
            },
          );
        }
        if (!logins.includes(login)) logins.push(login);
      }
    }
  }
  if (logins.length > MAX_TEMPLATE_LOGINS) {
    throw new AuthError('ACCESS_TOO_MANY_LOGINS', `the roles ${roles.map((r) => r.name).join(', ')} give ${quote(username)} ${logins.length} logins, more than the ${MAX_TEMPLATE_LOGINS} a certificate can carry; the login is refused`, {
      hint: 'check the claims the roles\' {{external.CLAIM}} templates read',
    });
  }
  // A certificate without principals is valid for EVERY login (PROTOCOL.certkeys:
  // "empty means valid for any principal"), so no logins must never reach the signer.
  if (logins.length === 0) {
    const why =
      missing.length > 0
        ? `: the identity has no value for the claim${missing.length > 1 ? 's' : ''} ${missing.map((c) => `"${c}"`).join(', ')} that {{external.${missing[0]}}} needs`
        : '';
    throw new AuthError('ACCESS_NO_LOGINS', `the roles ${roles.map((r) => r.name).join(', ')} grant ${quote(username)} no logins${why}`, {
      hint:
        missing.length > 0
          ? `ask the identity provider's admin to send the claim "${missing[0]}" (and its scope), or give these roles a login that does not depend on it`
          : "check the roles' logins; an {{external.CLAIM}} template grants nothing when the IdP does not send CLAIM",
    });
  }

  const extensions: Record<string, string> = {};
  // Sorted by name: the order OpenSSH writes certificate extensions in.
  const flags: [string, (r: RoleConfig) => boolean][] = [
    ['permit-X11-forwarding', (r) => r.x11Forwarding],
    ['permit-agent-forwarding', (r) => r.forwardAgent],
    ['permit-port-forwarding', (r) => r.portForwarding],
    ['permit-pty', (r) => r.permitPty],
    ['permit-user-rc', (r) => r.permitUserRc],
  ];
  for (const [name, allowed] of flags) {
    if (roles.some(allowed)) extensions[name] = '';
  }

  return {
    roles: roles.map((r) => r.name),
    logins,
    nodeLabelSets: roles.map((r) => r.nodeLabels),
    maxSessionTtlSeconds: Math.min(...roles.map((r) => r.maxSessionTtlSeconds)),
    extensions,
    traits,
  };
}

/**
 * The TTL of a user certificate: the request (default auth.cert_ttl), capped by the
 * roles' max_session_ttl and by auth.cert_ttl.
 * @throws UserError TTL_INVALID for a request that is not a positive whole number of seconds.
 */
export function certTtlSeconds(config: ServerConfig, access: Access, requestedSeconds?: number): number {
  if (requestedSeconds !== undefined && !(Number.isSafeInteger(requestedSeconds) && requestedSeconds > 0)) {
    throw new UserError('TTL_INVALID', `a certificate TTL must be a positive number of seconds, not ${requestedSeconds}`);
  }
  const cap = config.auth.certTtlSeconds;
  return Math.min(requestedSeconds ?? cap, access.maxSessionTtlSeconds, cap);
}

/** Whether one label selector matches a node's labels (semantics at the top of this file). */
export function matchLabels(selector: Record<string, string | string[]>, labels: Record<string, string>): boolean {
  const keys = Object.keys(selector);
  if (keys.length === 0) return false;
  if (selector['*'] === '*') return true;
  return keys.every((key) => {
    if (!Object.hasOwn(labels, key)) return false;
    const want = selector[key]!;
    const values = Array.isArray(want) ? want : [want];
    return values.includes('*') || values.includes(labels[key]!);
  });
}

/** Whether the access lets the user reach the node: some role's selector matches it. */
export function nodeAllowed(access: Access, node: NodeConfig): boolean {
  return access.nodeLabelSets.some((selector) => matchLabels(selector, node.labels));
}

/**
 * The roles the IdP's claims earn, by auth.oidc.claims_to_roles: the first rule
 * that matches wins; [] when none does (the login is then refused).
 * A rule matches when the claim equals the value, or, for a list claim such as
 * `groups`, contains it. A boolean rule value also matches the strings
 * "true"/"false", which some IdPs send. Dotted claim names reach nested claims.
 */
export function mapClaimsToRoles(oidc: OidcConfig, claims: Record<string, unknown>): string[] {
  for (const rule of oidc.claimsToRoles) {
    const claim = lookupClaim(claims, rule.claim);
    const wanted = typeof rule.value === 'boolean' ? [rule.value, String(rule.value)] : [rule.value];
    const matches = (v: unknown) => wanted.includes(v as string | boolean);
    if (Array.isArray(claim) ? claim.some(matches) : matches(claim)) return [...rule.roles];
  }
  return [];
}
