/**
 * The hint under a proxy's refusal of a connection. Most refusals that exit 4
 * are fixed by logging in again; a lock is not (the next login is refused
 * too, README "Locks"), so telling the user to log in sends them in a circle.
 */

/** A lock's refusal as the proxy words it (server/auth/locks.ts lockedMessage): `access locked (user=alice, lock 3f2a…): <message>`. */
const LOCKED = /^access locked \([^)]*\block ([0-9a-f]{16})\)/;

/**
 * The hint for a refusal: `code` is the proxy's error code (e.g. `ACCESS_LOCKED`),
 * `message` its escaped text, `relogin` the profile's exact `tsh login ...` command.
 * A lock gets what to ask an administrator for, with the lock id when the
 * message names it; anything else `otherwise` (default: run the login command).
 */
export function refusalHint(code: string, message: string, relogin: string, otherwise = `run \`${relogin}\``): string {
  const m = LOCKED.exec(message);
  if (code !== 'ACCESS_LOCKED' && !m) return otherwise;
  const rm = m ? `tctl lock rm ${m[1]}` : 'tctl lock rm ID';
  return `an administrator locked this access, and a new login is refused too until the lock ends: ask them to remove it (\`${rm}\`), or wait for it to expire (\`tctl lock ls\` shows when)`;
}
