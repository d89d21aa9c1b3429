/**
 * The handful of error kinds every layer throws. Each carries a stable `code`
 * (for tests and scripts), the original error as `cause`, and a `hint` that
 * tells the user what to do next. `cli/errors.ts` maps kinds to exit codes.
 */

export interface ErrorDetails {
  cause?: unknown;
  /** One sentence telling the user how to fix it. */
  hint?: string;
}

/** Base class: something the user can act on. Exit code 1. */
export class UserError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = details.hint;
  }
}

/** Wrong flags or arguments. Exit code 2. */
export class UsageError extends UserError {}

/** Missing, expired or refused credentials; a denied login. Exit code 4. */
export class AuthError extends UserError {}

/** A configuration file that cannot be used: names the file, the key and the fix. Exit code 1. */
export class ConfigError extends UserError {
  constructor(
    readonly file: string,
    readonly key: string,
    reason: string,
    details: ErrorDetails = {},
  ) {
    super('CONFIG_INVALID', `${file}: ${key ? `${key}: ` : ''}${reason}`, details);
  }
}
