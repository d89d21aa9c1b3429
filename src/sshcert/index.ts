/**
 * OpenSSH keys and certificates: encode, parse, sign, verify. Pure: no I/O,
 * no clock (callers pass `now`), node:crypto only.
 * Formats: PROTOCOL.certkeys, PROTOCOL.key, RFC 4253 §6.6, RFC 5656, RFC 8332, RFC 8709.
 */
export * from './errors.js';
export * from './keys.js';
export * from './signature.js';
export * from './privatekey.js';
export * from './extensions.js';
export * from './certificate.js';
export * from './request.js';
export * from './sign.js';
export * from './verify.js';
export * from './source-address.js';
export * from './krl.js';
