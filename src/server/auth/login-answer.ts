/**
 * The answer a login seals to tsh (api/schema.ts LoginResultSchema), built
 * in one place for the browser login (login.ts) and the headless login
 * (headless-login.ts), so tsh checks and stores both the same way.
 */
import type { LoginResult } from '../../api/types.js';
import { formatHostPort } from '../../shared/address.js';
import { formatPublicKeyLine, type Certificate } from '../../sshcert/index.js';
import { inventoryNodes, type ServerRuntime } from '../runtime.js';
import { nodeAllowed, type Access } from './roles.js';
import { issueClientCertificate } from './x509-ca.js';
import type { CaStore } from './ca.js';

/** Every trusted host CA key as an OpenSSH public key line (clients scope them in known_hosts). */
export function hostCaLines(rt: ServerRuntime): string[] {
  return rt.ca.get('host').trusted.map((k) => formatPublicKeyLine(k.publicKey, `jumpgate host CA ${rt.config.clusterName}`));
}

/**
 * The X.509 client certificate (x509-ca.ts) for the same key and identity,
 * signed by the X.509 key of the SSH certificate's own CA generation, and
 * whether the web port routes SSH.
 */
function tlsPart(rt: ServerRuntime, cert: Certificate): Pick<LoginResult, 'tls_cert' | 'tls_routing'> {
  const tlsCert = clientCertificateFor(rt.ca, rt.config.clusterName, cert);
  return { ...(tlsCert ? { tls_cert: tlsCert } : {}), tls_routing: rt.config.proxy.tlsRouting };
}

/**
 * The PEM X.509 client certificate (x509-ca.ts) for a user certificate just
 * signed: same key, identity and validity, signed by the X.509 key of the
 * SSH certificate's own user CA generation; undefined when that generation is
 * no longer trusted. Used by logins and `tctl auth sign --user`.
 */
export function clientCertificateFor(ca: CaStore, clusterName: string, cert: Certificate): string | undefined {
  const signer = ca.get('user').trusted.find((k) => k.publicKey.blob.equals(cert.signatureKey.blob));
  return signer ? issueClientCertificate(signer, clusterName, cert) : undefined;
}

/**
 * LoginResult v1 for `username`'s certificate: its principals as the logins,
 * the roles and nodes of the one `Access` that signed it, every trusted host
 * CA key, the proxy's public addresses, and tsh's nonce echoed back.
 */
export function loginAnswer(rt: ServerRuntime, addrs: { web: string; ssh: string }, issued: { cert: Certificate; access: Access }, username: string, clientNonce: string): LoginResult {
  const { cert, access } = issued;
  const nodes = inventoryNodes(rt).filter((n) => nodeAllowed(access, n));
  return {
    v: 1,
    client_nonce: clientNonce,
    certificate: `${cert.algorithm} ${cert.blob.toString('base64')} ${username}`,
    cluster_name: rt.config.clusterName,
    username,
    logins: cert.principals,
    roles: access.roles,
    valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    host_ca: hostCaLines(rt),
    ssh_public_addr: addrs.ssh,
    web_public_addr: addrs.web,
    nodes: nodes.map((n) => n.name),
    node_addrs: nodes.map((n) => formatHostPort(n.addr)),
    ...tlsPart(rt, cert),
  };
}
