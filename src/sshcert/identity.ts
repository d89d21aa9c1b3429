/**
 * The identity a Jumpgate user certificate carries, encoded and decoded in ONE
 * module (the shape of Teleport's `lib/sshca.Identity`), so the issuer that
 * writes it and the proxy that routes on it cannot disagree:
 *
 *   key id                  the username (the OIDC username_claim, or tctl's --user)
 *   principals              the Unix logins the roles grant (never empty)
 *   roles@jumpgate.dev      the roles, comma-separated, in the order resolved
 *   traits@jumpgate.dev     the IdP claims the roles' `{{external.CLAIM}}` templates
 *                           read, as JSON `{"CLAIM": ["value", ...]}` (absent when none)
 *   permit-*                OpenSSH's flag extensions the roles allow
 *
 * Custom extension names are `name@domain` (PROTOCOL.certkeys); sshd ignores
 * extensions it does not know and `ssh-keygen -L` shows them as unknown.
 * Pure: no I/O. A certificate is outside input: decoding checks every field
 * against one declared shape (valibot) and throws IdentityError naming the field.
 */
import * as v from 'valibot';
import type { Certificate } from './certificate.js';
import { MAX_PRINCIPALS } from './certificate.js';
import { ROLES_EXTENSION } from '../shared/wire-names.js';

/** The extension that carries a user's roles, comma-separated. */
export { ROLES_EXTENSION };
/** The extension that carries the external traits (IdP claims) the roles' templates used, as JSON. */
export const TRAITS_EXTENSION = 'traits@jumpgate.dev';

/** At most this many roles, traits, and values per trait: bounds what a certificate (and a decoder) carries. */
export const MAX_IDENTITY_ROLES = 64;
export const MAX_TRAITS = 64;
export const MAX_TRAIT_VALUES = MAX_PRINCIPALS;
/** Longest traits extension accepted, in bytes of JSON. */
export const MAX_TRAITS_BYTES = 16 * 1024;

/** What a Jumpgate user certificate says about its holder. */
export interface UserIdentity {
  /** The key id. */
  username: string;
  /** Unix logins, in order, no duplicates. */
  principals: string[];
  /** Role names, in order, no duplicates. */
  roles: string[];
  /** Claim name → the string values templates used (claims that gave no value are absent). */
  traits: Record<string, string[]>;
  /** OpenSSH flag extensions (permit-pty, ...), sorted by name. */
  permits: string[];
}

/** A certificate whose Jumpgate identity fields are missing or malformed; `field` names which. */
export class IdentityError extends Error {
  readonly code = 'CERT_IDENTITY_INVALID';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'IdentityError';
  }
}

// Role names as the config allows them (config/server-config.ts ROLE_NAME): no comma can hide inside one.
const RoleName = v.pipe(v.string(), v.regex(/^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$/, 'is not a role name'));
const Roles = v.pipe(v.array(RoleName), v.maxLength(MAX_IDENTITY_ROLES, `more than ${MAX_IDENTITY_ROLES} roles`));
const TraitValues = v.pipe(v.array(v.pipe(v.string(), v.maxLength(1024, 'a value is longer than 1024 characters'))), v.maxLength(MAX_TRAIT_VALUES, `more than ${MAX_TRAIT_VALUES} values`));
const Traits = v.pipe(
  v.record(v.pipe(v.string(), v.minLength(1, 'a claim name is empty'), v.maxLength(256, 'a claim name is longer than 256 characters')), TraitValues),
  v.maxEntries(MAX_TRAITS, `more than ${MAX_TRAITS} traits`),
);

function issueText(issues: readonly v.BaseIssue<unknown>[]): string {
  const first = issues[0]!;
  const path = first.path?.map((p) => String(p.key)).join('.') ?? '';
  return path ? `${path}: ${first.message}` : first.message;
}

/**
 * The certificate fields of an identity, for `CertRequest`: key id, principals
 * and the extensions (permits as flags, roles, traits when there are any).
 * @throws IdentityError when a role name could not be decoded again (a comma, too many).
 */
export function encodeIdentity(id: UserIdentity): { keyId: string; principals: string[]; extensions: Record<string, string> } {
  const roles = v.safeParse(Roles, id.roles);
  if (!roles.success) throw new IdentityError(ROLES_EXTENSION, `cannot encode the roles: ${issueText(roles.issues)}`);
  const traits = v.safeParse(Traits, id.traits);
  if (!traits.success) throw new IdentityError(TRAITS_EXTENSION, `cannot encode the traits: ${issueText(traits.issues)}`);
  // valibot's record() drops "__proto__", "constructor" and "prototype": such a claim could not be decoded again.
  const dropped = Object.keys(id.traits).find((k) => !Object.hasOwn(traits.output, k));
  if (dropped !== undefined) throw new IdentityError(TRAITS_EXTENSION, `cannot encode the trait ${JSON.stringify(dropped)}: that name is reserved`);
  const extensions: Record<string, string> = {};
  for (const p of id.permits) extensions[p] = '';
  extensions[ROLES_EXTENSION] = id.roles.join(',');
  const used = Object.entries(id.traits).filter(([, values]) => values.length > 0);
  if (used.length > 0) {
    const json = JSON.stringify(Object.fromEntries(used));
    if (Buffer.byteLength(json) > MAX_TRAITS_BYTES) throw new IdentityError(TRAITS_EXTENSION, `the traits take more than ${MAX_TRAITS_BYTES} bytes`);
    extensions[TRAITS_EXTENSION] = json;
  }
  return { keyId: id.username, principals: [...id.principals], extensions };
}

/**
 * Reads the identity back from a user certificate (the inverse of
 * `encodeIdentity`). A certificate without the roles extension decodes with
 * no roles (the caller refuses it); a malformed roles or traits extension is
 * an IdentityError naming the extension.
 */
export function decodeIdentity(cert: Pick<Certificate, 'keyId' | 'principals' | 'extensions'>): UserIdentity {
  const rolesText = cert.extensions.get(ROLES_EXTENSION) ?? '';
  const named = rolesText.split(',').map((r) => r.trim()).filter((r) => r !== '');
  const roles = v.safeParse(Roles, [...new Set(named)]);
  if (!roles.success) throw new IdentityError(ROLES_EXTENSION, `the certificate's ${ROLES_EXTENSION} extension is malformed: ${issueText(roles.issues)}`);
  let traits: Record<string, string[]> = {};
  const traitsText = cert.extensions.get(TRAITS_EXTENSION);
  if (traitsText !== undefined) {
    let json: unknown;
    try {
      if (Buffer.byteLength(traitsText) > MAX_TRAITS_BYTES) throw new Error(`longer than ${MAX_TRAITS_BYTES} bytes`);
      json = JSON.parse(traitsText);
    } catch (err) {
      throw new IdentityError(TRAITS_EXTENSION, `the certificate's ${TRAITS_EXTENSION} extension is not JSON: ${(err as Error).message}`);
    }
    const parsed = v.safeParse(Traits, json);
    if (!parsed.success) throw new IdentityError(TRAITS_EXTENSION, `the certificate's ${TRAITS_EXTENSION} extension is malformed: ${issueText(parsed.issues)}`);
    // A null-prototype copy: claim names such as "__proto__" stay plain keys.
    traits = Object.assign(Object.create(null) as Record<string, string[]>, parsed.output);
  }
  const permits = [...cert.extensions.keys()].filter((k) => k.startsWith('permit-')).sort();
  return { username: cert.keyId, principals: [...cert.principals], roles: roles.output, traits, permits };
}
