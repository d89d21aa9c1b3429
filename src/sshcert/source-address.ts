/**
 * The `source-address` critical option of user certificates
 * (PROTOCOL.certkeys): "comma-separated list of source addresses from which
 * this certificate is accepted for authentication. Addresses are specified in
 * CIDR format (nn.nn.nn.nn/nn or hhhh::hhhh/nn). If this option is not
 * present, the certificate may be presented from any source address."
 *
 * Parsed as OpenSSH's addr_match_cidr_list (addr.c, match.c) does for a
 * certificate, and refused where it refuses ("Certificate source-address
 * contents invalid"): an empty list or entry, characters other than hex
 * digits, '.', ':' and '/', an entry longer than 49 characters, a prefix
 * beyond the family's bits, or an address with bits set past its prefix
 * ("10.1.2.3/8"). An entry without a prefix is one address. Stricter than
 * OpenSSH in one place: IPv4 must be four decimal parts (getaddrinfo also
 * takes "10.1"), so an odd spelling is refused, never read differently.
 * Pure: no I/O, no DNS.
 */
import { inRange, ipBytes } from '../util/ip.js';
import { CertError } from './errors.js';
import { OPT_SOURCE_ADDRESS } from './extensions.js';

/** One entry of a source-address list: a network and its prefix length in bits. */
export interface SourceRange {
  /** As written in the certificate, for messages. */
  entry: string;
  /** 4 (IPv4) or 16 (IPv6) bytes. */
  network: number[];
  prefix: number;
}

/** INET6_ADDRSTRLEN (46) + 3 for "/nn", OpenSSH's bound on one entry. */
const MAX_ENTRY_LENGTH = 49;

function invalid(list: string, why: string): CertError {
  return new CertError(
    'CERT_MALFORMED',
    `the certificate's ${OPT_SOURCE_ADDRESS} ${JSON.stringify(list.slice(0, 200))} is invalid (${why}), so the certificate cannot be used (OpenSSH refuses it too); ` +
      're-issue it with a comma-separated list of CIDR ranges such as 10.0.0.0/8,2001:db8::/32',
  );
}

/**
 * Parses a source-address value into ranges.
 * @throws CertError CERT_MALFORMED naming the bad entry.
 */
export function parseSourceAddressList(list: string): SourceRange[] {
  if (list === '') throw invalid(list, 'the list is empty');
  return list.split(',').map((entry) => {
    if (entry === '') throw invalid(list, 'an entry is empty');
    if (entry.length > MAX_ENTRY_LENGTH) throw invalid(list, `entry ${JSON.stringify(entry.slice(0, 60))} is too long`);
    if (!/^[0-9a-fA-F.:/]+$/.test(entry)) throw invalid(list, `entry ${JSON.stringify(entry)} has characters other than hex digits, ".", ":" and "/"`);
    const [addr = '', bits, extra] = entry.split('/');
    if (extra !== undefined) throw invalid(list, `entry ${JSON.stringify(entry)} has two "/"`);
    const network = ipBytes(addr.toLowerCase());
    if (network === undefined) throw invalid(list, `${JSON.stringify(addr)} is not an IP address`);
    const max = network.length * 8;
    if (bits !== undefined && !/^\d{1,3}$/.test(bits)) throw invalid(list, `entry ${JSON.stringify(entry)}: the prefix length must be a number`);
    const prefix = bits === undefined ? max : Number(bits);
    if (prefix > max) throw invalid(list, `entry ${JSON.stringify(entry)}: the prefix length is more than ${max}`);
    for (let bit = prefix; bit < max; bit++) {
      if (network[bit >> 3]! & (0x80 >> bit % 8)) throw invalid(list, `entry ${JSON.stringify(entry)} has address bits set past its /${prefix} prefix`);
    }
    return { entry, network, prefix };
  });
}

/**
 * The address a connection really came from, as OpenSSH compares it: an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack listener
 * reports for an IPv4 client) becomes the IPv4 address (sshd's
 * ipv64_normalise_mapped). Undefined when the text is not an IP literal.
 */
export function clientAddressBytes(address: string): number[] | undefined {
  const bytes = ipBytes(address.toLowerCase());
  if (bytes?.length === 16 && bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return bytes.slice(12);
  return bytes;
}

/**
 * Checks a certificate's source-address value against the client's address.
 * @throws CertError CERT_MALFORMED for an invalid list, CERT_SOURCE_ADDRESS
 *   when the address is not in it (or is not an IP address).
 */
export function checkSourceAddress(list: string, clientAddress: string): void {
  const ranges = parseSourceAddressList(list);
  const ip = clientAddressBytes(clientAddress);
  if (ip !== undefined && ranges.some((r) => inRange(ip, r.network, r.prefix))) return;
  throw new CertError(
    'CERT_SOURCE_ADDRESS',
    `this certificate may only be used from ${list.slice(0, 200)} (its ${OPT_SOURCE_ADDRESS}), and this connection comes from ${clientAddress.slice(0, 64)}; ` +
      'connect from an allowed address, or get a certificate without that restriction',
  );
}
