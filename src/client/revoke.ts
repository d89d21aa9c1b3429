/**
 * `tsh logout --revoke`: asks the proxy, over an SSH connection made with the
 * profile's own certificate, to lock that certificate (subsystem
 * revoke@jumpgate.dev, server/proxy/ssh-proxy.ts revokeOwnCertificate).
 */
import type ssh2 from 'ssh2';
import { UserError } from '../errors.js';
import { REVOKE_SUBSYSTEM } from '../shared/wire-names.js';
import { printable } from '../util/printable.js';
import { parseRevokeAnswer, type RevokeAnswer } from './revoke-answer.js';

export type { RevokeAnswer } from './revoke-answer.js';

/**
 * Locks the certificate `client` authenticated with.
 * @throws UserError REVOKE_FAILED with the proxy's reason (escaped) when it refused or answered something else.
 */
export function revokeOwnCertificate(client: ssh2.Client): Promise<RevokeAnswer> {
  return new Promise((resolve, reject) => {
    client.subsys(REVOKE_SUBSYSTEM, (err, ch) => {
      if (err) return reject(new UserError('REVOKE_FAILED', `the proxy does not revoke certificates: ${err.message}`, { cause: err, hint: 'ask an administrator for `tctl lock add --user=YOU`' }));
      const out: Buffer[] = [];
      let errText = '';
      let size = 0;
      ch.on('data', (b: Buffer) => {
        size += b.length;
        if (size <= 4096) out.push(b);
      });
      ch.stderr.on('data', (b: Buffer) => {
        if (errText.length < 4096) errText += b.toString('utf8');
      });
      ch.on('close', () => {
        const said = printable(errText.trim().replace(/^jumpgate proxy: /, ''), 1000);
        try {
          resolve(parseRevokeAnswer(Buffer.concat(out).toString('utf8'), said));
        } catch (e) {
          reject(e as Error);
        }
      });
    });
  });
}
