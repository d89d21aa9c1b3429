/**
 * Login templates: the `logins` of a role, e.g. `["{{username}}", "deploy"]`.
 *
 * Two variables exist, in the spirit of Teleport's role templates:
 *   {{username}}          the user's name (the OIDC `username_claim`, or tctl's --user)
 *   {{external.CLAIM}}    every value of the IdP claim CLAIM (a string, a whole number, or
 *                         a list of them: see claimValues); a dotted CLAIM such as `realm_access.roles` walks
 *                         nested objects when no top-level claim has that exact name
 * Spaces inside the braces are allowed (`{{ username }}`). Anything else inside
 * `{{ }}` is refused when the config is loaded, so a typo never becomes a literal login.
 * A template may mix text and variables (`{{username}}-admin`); several multi-valued
 * variables expand to every combination. A claim that is missing expands to nothing
 * (the template grants no login), as in Teleport; what other values give is
 * `claimValues`.
 */

/** One piece of a parsed template. */
export type LoginTemplatePart =
  | { kind: 'literal'; text: string }
  | { kind: 'username' }
  | { kind: 'external'; claim: string };

/** A template that does not parse; the message names the bad piece and what is allowed. */
export class LoginTemplateError extends Error {
  constructor(
    readonly template: string,
    reason: string,
  ) {
    super(reason);
    this.name = 'LoginTemplateError';
  }
}

/**
 * What a Unix login may look like here: POSIX portable characters (letters, digits,
 * `.`, `_`, `-`), not starting with `-` or `.` (ssh would read `-x` as an option), not
 * all digits (a number is taken as a uid), at most 32 characters (the utmp limit).
 * Commas, spaces and `@` are refused: they would corrupt certificate principal lists
 * and `AuthorizedPrincipalsFile` lines.
 */
export function isValidLogin(login: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(login) && !/^\d+$/.test(login);
}

/**
 * Parses a template into literal text and variables.
 * @throws LoginTemplateError for an unknown variable, an unclosed `{{`, or text that can never be a valid login.
 */
export function parseLoginTemplate(template: string): LoginTemplatePart[] {
  const parts: LoginTemplatePart[] = [];
  let rest = template;
  while (rest !== '') {
    const open = rest.indexOf('{{');
    if (open < 0) {
      parts.push({ kind: 'literal', text: rest });
      break;
    }
    if (open > 0) parts.push({ kind: 'literal', text: rest.slice(0, open) });
    const close = rest.indexOf('}}', open + 2);
    if (close < 0) {
      throw new LoginTemplateError(template, `${JSON.stringify(template)} has a "{{" without a closing "}}"`);
    }
    const inner = rest.slice(open + 2, close).trim();
    const external = /^external\.([^\s{}]+)$/.exec(inner);
    if (inner === 'username') parts.push({ kind: 'username' });
    else if (external) parts.push({ kind: 'external', claim: external[1]! });
    else {
      throw new LoginTemplateError(
        template,
        `${JSON.stringify(template)} uses the unknown variable {{${inner}}}; the variables are {{username}} and {{external.CLAIM}}`,
      );
    }
    rest = rest.slice(close + 2);
  }
  // Check the literal text now: with every variable replaced by a harmless value,
  // the result must be a valid login, or no user could ever get it.
  const sample = parts.map((p) => (p.kind === 'literal' ? p.text : 'a')).join('');
  if (!isValidLogin(sample)) {
    const hasVariables = parts.some((p) => p.kind !== 'literal');
    throw new LoginTemplateError(
      template,
      `${JSON.stringify(template)} is not a valid ${hasVariables ? 'login template' : 'login'}: ` +
        'use letters, digits, ".", "_" and "-", at most 32 characters, not starting with "-" or "."',
    );
  }
  return parts;
}

/**
 * Looks a claim up by name; a dotted name walks nested objects
 * (`realm_access.roles`) when no top-level claim has that exact name.
 * Only own properties are read, so `__proto__` and friends are never claims.
 */
export function lookupClaim(claims: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  let value: unknown = claims;
  for (const step of name.split('.')) {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, step)) {
      return undefined;
    }
    value = (value as Record<string, unknown>)[step];
  }
  return value;
}

/** A claim a template reads has a value that cannot become a login; `claim` names it. */
export class ClaimValueError extends Error {
  constructor(
    readonly claim: string,
    reason: string,
  ) {
    super(reason);
    this.name = 'ClaimValueError';
  }
}

/** Most logins one template may expand to (OpenSSH's limit on a certificate's principals). */
export const MAX_TEMPLATE_LOGINS = 256;

function describeValue(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : `the ${typeof value} ${JSON.stringify(value)}`;
}

function scalarValue(claim: string, value: unknown, where: string): string | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  const hint =
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? `; name a field inside it with a dotted name ({{external.${claim}.FIELD}})`
      : '';
  throw new ClaimValueError(claim, `the claim "${claim}" has ${describeValue(value)}${where}, which cannot be a login: {{external.${claim}}} takes a string, a whole number or a list of them${hint}`);
}

/**
 * The values of a claim for `{{external.CLAIM}}`, in order:
 *   a string is one value; a whole number its decimal text; a list contributes
 *   each of its elements by the same rule; a missing claim, null, "" (and such
 *   list elements) give nothing.
 * @throws ClaimValueError for a boolean, a fraction, an object, or a list inside a list:
 *   silently dropping them would hide a misconfigured IdP or role.
 */
export function claimValues(claim: string, value: unknown): string[] {
  if (Array.isArray(value)) {
    const out: string[] = [];
    value.forEach((el, i) => {
      const s = scalarValue(claim, el, ` at position ${i}`);
      if (s !== undefined) out.push(s);
    });
    return out;
  }
  const s = scalarValue(claim, value, '');
  return s === undefined ? [] : [s];
}

/** The claims a parsed template reads, in order, without duplicates. */
export function templateClaims(parts: readonly LoginTemplatePart[]): string[] {
  return [...new Set(parts.flatMap((p) => (p.kind === 'external' ? [p.claim] : [])))];
}

/**
 * Expands a parsed template for one user. Returns every combination of the
 * variables' values (none when a claim gives no value). Does not check the
 * results: the caller decides what an invalid login means.
 * @throws ClaimValueError for a claim value `claimValues` refuses, or when the
 *   combinations would exceed MAX_TEMPLATE_LOGINS (checked before they are built).
 */
export function expandLoginTemplate(
  parts: readonly LoginTemplatePart[],
  username: string,
  claims: Record<string, unknown> = {},
): string[] {
  let results = [''];
  for (const part of parts) {
    const values =
      part.kind === 'literal'
        ? [part.text]
        : part.kind === 'username'
          ? [username]
          : claimValues(part.claim, lookupClaim(claims, part.claim));
    if (results.length * values.length > MAX_TEMPLATE_LOGINS) {
      const claim = part.kind === 'external' ? part.claim : 'username';
      throw new ClaimValueError(claim, `the claim "${claim}" has ${values.length} values: the template would give more than ${MAX_TEMPLATE_LOGINS} logins`);
    }
    results = results.flatMap((prefix) => values.map((v) => prefix + v));
  }
  return results;
}
