import { UserError, type ErrorDetails } from '../errors.js';

/** Stable codes for malformed SSH wire data (RFC 4251 §5). */
export type WireErrorCode = 'WIRE_TRUNCATED' | 'WIRE_TRAILING_BYTES' | 'WIRE_TOO_LONG' | 'WIRE_BAD_VALUE';

/**
 * Bytes that do not decode as RFC 4251 §5 data types. Callers that know what
 * the bytes were meant to be (a certificate, an agent message) rethrow it as
 * their own error with this one as `cause`.
 */
export class WireError extends UserError {
  declare readonly code: WireErrorCode;

  constructor(code: WireErrorCode, message: string, details: ErrorDetails = {}) {
    super(code, message, details);
  }
}
