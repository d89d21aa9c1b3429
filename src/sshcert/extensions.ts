/**
 * Names of the certificate options OpenSSH defines (PROTOCOL.certkeys,
 * "Critical options" and "Extensions").
 */

export const EXT_PERMIT_X11_FORWARDING = 'permit-X11-forwarding';
export const EXT_PERMIT_AGENT_FORWARDING = 'permit-agent-forwarding';
export const EXT_PERMIT_PORT_FORWARDING = 'permit-port-forwarding';
export const EXT_PERMIT_PTY = 'permit-pty';
export const EXT_PERMIT_USER_RC = 'permit-user-rc';
export const EXT_NO_TOUCH_REQUIRED = 'no-touch-required';

/** The five flags `ssh-keygen -s` sets on a user certificate by default. */
export const STANDARD_USER_EXTENSIONS: readonly string[] = [
  EXT_PERMIT_X11_FORWARDING,
  EXT_PERMIT_AGENT_FORWARDING,
  EXT_PERMIT_PORT_FORWARDING,
  EXT_PERMIT_PTY,
  EXT_PERMIT_USER_RC,
];

export const OPT_FORCE_COMMAND = 'force-command';
export const OPT_SOURCE_ADDRESS = 'source-address';
export const OPT_VERIFY_REQUIRED = 'verify-required';

/**
 * Critical options a user certificate may carry by default (verifyCertificate):
 * source-address, checked against `clientAddress`, and force-command, which
 * the node's sshd enforces (the proxy runs no command of its own). sshd also
 * knows verify-required, but it needs a FIDO (sk-*) key, which Jumpgate does
 * not support: sshd refuses it on any other key ("user verification
 * requirement not met"), and so does verifyCertificate. Any other name is
 * refused, as sshd does (auth-options.c).
 */
export const DEFAULT_KNOWN_CRITICAL_OPTIONS: readonly string[] = [OPT_FORCE_COMMAND, OPT_SOURCE_ADDRESS];

/**
 * How OpenSSH's auth-options.c reads each option it knows: flags must carry
 * no data and valued options exactly one string, or sshd refuses the
 * certificate ("corrupt (extra data)" / "Unable to parse"). Unknown names are
 * not checked here: their data is the issuer's business.
 */
export const CRITICAL_OPTION_SHAPES: ReadonlyMap<string, 'flag' | 'value'> = new Map([
  [OPT_FORCE_COMMAND, 'value'],
  [OPT_SOURCE_ADDRESS, 'value'],
  [OPT_VERIFY_REQUIRED, 'flag'],
]);

export const EXTENSION_SHAPES: ReadonlyMap<string, 'flag' | 'value'> = new Map([
  [EXT_NO_TOUCH_REQUIRED, 'flag'],
  [EXT_PERMIT_X11_FORWARDING, 'flag'],
  [EXT_PERMIT_AGENT_FORWARDING, 'flag'],
  [EXT_PERMIT_PORT_FORWARDING, 'flag'],
  [EXT_PERMIT_PTY, 'flag'],
  [EXT_PERMIT_USER_RC, 'flag'],
]);
