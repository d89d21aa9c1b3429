import { AuthError, type ErrorDetails } from '../errors.js';

/** Stable codes for certificate and key failures; tests and scripts match on these. */
export type CertErrorCode =
  | 'CERT_MALFORMED'
  | 'CERT_BAD_SIGNATURE'
  | 'CERT_EXPIRED'
  | 'CERT_NOT_YET_VALID'
  | 'CERT_WRONG_TYPE'
  | 'CERT_UNTRUSTED_CA'
  | 'CERT_PRINCIPAL_MISMATCH'
  | 'CERT_UNKNOWN_CRITICAL_OPTION'
  | 'CERT_SOURCE_ADDRESS'
  | 'CERT_UNSUPPORTED_ALGORITHM'
  | 'CERT_REQUEST_INVALID'
  | 'KEY_MALFORMED'
  | 'KEY_ENCRYPTED'
  | 'KEY_UNSUPPORTED';

/**
 * A certificate or key that cannot be used. It is an AuthError (exit code 4)
 * because every one of these ends in "you cannot log in with this"; the
 * message says what is wrong and what to do about it.
 */
export class CertError extends AuthError {
  declare readonly code: CertErrorCode;

  constructor(code: CertErrorCode, message: string, details: ErrorDetails = {}) {
    super(code, message, details);
  }
}
