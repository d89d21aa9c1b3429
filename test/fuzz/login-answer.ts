/**
 * Fuzz target `login-answer`: the client side of a hostile proxy's login
 * answer. Each input is the JSON a proxy seals to tsh; it goes through what
 * `tsh login` does before saving anything (checkLoginResult, then
 * claimClusterScope against another profile), and, when accepted, through
 * both renderers. Then the same raw values go straight into the renderers,
 * bypassing every earlier check, to prove their own guards.
 *
 * Invariant: a clean refusal (a UserError) or output in which every Host
 * pattern and known_hosts pattern is within the cluster's own names (or is
 * the proxy's own address), and no line holds an unsafe character.
 */
import { randomBytes } from 'node:crypto';
import { UserError } from '../../src/errors.js';
import { isClusterPattern, isPrivateIpLiteral } from '../../src/api/names.js';
import { checkLoginResult } from '../../src/client/login.js';
import { claimClusterScope } from '../../src/client/cluster-scope.js';
import { formatHostCaLines, knownHostsPatterns } from '../../src/client/known-hosts.js';
import { renderSshConfigBlock, type SshConfigBlockInput } from '../../src/client/ssh-config.js';
import type { Profile } from '../../src/client/profile.js';
import { CertRequest, encodeCertificateLine, formatPublicKeyLine, generateKeyPair, parsePublicKeyLine, signCertificate } from '../../src/sshcert/index.js';
import { mutateText, type Rng } from '../helpers/fuzz.js';
import type { SyncTarget } from './targets.js';

const PROXY_HOST = 'jump.example.test';
const NONCE = randomBytes(32).toString('base64url');
const user = generateKeyPair('ed25519');
const ca = generateKeyPair('ed25519');
const CERT = encodeCertificateLine(
  signCertificate(new CertRequest({ publicKey: user.publicKey, type: 'user', keyId: 'alice', principals: ['alice'], ttlSeconds: 3600 }), ca, new Date()),
  'alice',
);
const CA_LINE = formatPublicKeyLine(ca.publicKey, 'host CA');

/** Another profile on the laptop: its node1 and its cluster must never be taken. */
const OTHER: Profile = {
  version: 1,
  name: 'jump.other.test',
  webProxyAddr: 'jump.other.test:3080',
  sshProxyAddr: 'jump.other.test:3023',
  clusterName: 'other.test',
  username: 'alice',
  logins: ['alice'],
  roles: ['user'],
  validBefore: '2026-12-01T00:00:00.000Z',
  keystore: 'file',
  insecure: false,
  nodeNames: ['node1', 'shared'],
};

const honest = {
  v: 1,
  client_nonce: NONCE,
  certificate: CERT,
  cluster_name: 'example.test',
  username: 'alice',
  logins: ['alice', 'deploy'],
  roles: ['user'],
  valid_before: '2026-12-01T00:00:00.000Z',
  host_ca: [CA_LINE],
  ssh_public_addr: `${PROXY_HOST}:3023`,
  web_public_addr: `${PROXY_HOST}:3080`,
  nodes: ['node2', 'db-1', 'web.example.test'],
};

const CORPUS = [
  honest,
  { ...honest, nodes: ['node1', 'shared', 'mine'] },
  { ...honest, nodes: ['*', '!x', 'a b', 'github.com', '*.com'] },
  { ...honest, cluster_name: 'com' },
  { ...honest, cluster_name: 'example.test\nMatch exec "touch /tmp/pwned"' },
  { ...honest, cluster_name: 'other.test' },
  { ...honest, ssh_public_addr: 'github.com:22' },
  { ...honest, ssh_public_addr: `[::1]:22`, nodes: ['10.0.0.1', PROXY_HOST, 'example.test'] },
].map((c) => JSON.stringify(c));

const DICT = ['*', '?', '!', ' ', ',', '"', '\\"', '\\n', '\\r', '\\t', '\\u0000', '\\u001b', '\\u2028', '-', '-o', '.', '..', '%', '%h', '=', '#', '[', ']', ':', '::1', '[::1]:22', ':22', ':0', ':65536',
  'github.com', '.com', 'com', 'test', 'example.test', 'other.test', '*.test', 'node1', 'shared', 'Host ', 'Match exec ', 'ProxyCommand ', '@cert-authority ', 'localhost', '127.0.0.1', '10.0.0.1', PROXY_HOST,
  '"nodes"', '"cluster_name"', '"ssh_public_addr"', '"host_ca"', '"username"', '"logins"', '[]', '{}', 'null', '1', 'true', 'x'.repeat(70)];

const FIELDS = ['cluster_name', 'ssh_public_addr', 'username', 'nodes', 'nodes', 'nodes', 'logins', 'host_ca'] as const;
/** The dictionary as decoded string values (`\\n` becomes a line break). */
const VALUES = DICT.map((d) => {
  try {
    return JSON.parse(`"${d}"`) as string;
  } catch {
    return d;
  }
});

/** Structure-aware: one string field (or one list item) of the JSON gets a hostile edit, so most mutants stay JSON. */
function mutateField(input: Buffer, rng: Rng): Buffer {
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(input.toString('utf8')) as Record<string, unknown>;
  } catch {
    return mutateText(input, rng, DICT);
  }
  if (body === null || typeof body !== 'object') return mutateText(input, rng, DICT);
  const field = rng.pick(FIELDS);
  const edit = (v: string): string => {
    const w = rng.pick(VALUES);
    switch (rng.int(4)) {
      case 0: return w;
      case 1: return v + w;
      case 2: return w + v;
      default: {
        const at = rng.int(v.length + 1);
        return v.slice(0, at) + w + v.slice(at);
      }
    }
  };
  const cur = body[field];
  if (Array.isArray(cur)) {
    const list = [...cur] as unknown[];
    if (list.length === 0 || rng.chance(0.3)) list.push(rng.pick(VALUES));
    else {
      const i = rng.int(list.length);
      list[i] = edit(String(list[i]));
    }
    body[field] = list;
  } else {
    body[field] = edit(typeof cur === 'string' ? cur : '');
  }
  return Buffer.from(JSON.stringify(body));
}

/** Raised for an input the client refused cleanly (a UserError): counted as a rejection. */
export class Refused extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

/** Raised when an output broke the invariant. */
export class LoginAnswerViolation extends Error {
  override name = 'LoginAnswerViolation';
}

const UNSAFE = /[\x00-\x1f\x7f\u2028\u2029]/;

/**
 * A host name the login may route or trust its CA for: the proxy's own host
 * (the profile's), `*.<cluster>`, a name under the cluster, or a node name
 * the scope gave this profile (`owned`), or a private IP address (a node
 * address form; never a public one). Only cluster patterns qualify otherwise.
 */
function inScope(h: string, cluster: string, owned: Set<string>): boolean {
  if (h === PROXY_HOST || isPrivateIpLiteral(h)) return true;
  const l = h.toLowerCase();
  const c = cluster.toLowerCase();
  return isClusterPattern(h, cluster) && (l === `*.${c}` || l.endsWith(`.${c}`) || owned.has(l));
}

/** Checks a rendered block: only scoped `Match host` patterns (a `!` only before the proxy) and the block's closing `Host *`; no other Match; nothing unsafe. */
function checkBlock(block: string, cluster: string, owned: Set<string>): void {
  const lines = block.replace(/\n$/, '').split('\n');
  for (const [i, line] of lines.entries()) {
    if (UNSAFE.test(line)) throw new LoginAnswerViolation(`unsafe character in line ${JSON.stringify(line)}`);
    const words = line.trim().split(/\s+/);
    const word = words[0]!.toLowerCase();
    if (word === 'include') throw new LoginAnswerViolation(`an include line: ${JSON.stringify(line)}`);
    // The block's sections are `Match host <patterns>`: any other Match criterion (exec, all, ...) is a violation.
    if (word === 'match' && (words.length !== 3 || words[1]!.toLowerCase() !== 'host')) throw new LoginAnswerViolation(`a match line other than one "Match host": ${JSON.stringify(line)}`);
    if (word !== 'host' && word !== 'match') continue;
    const patterns = word === 'match' ? words[2]!.split(',') : words.slice(1);
    if (patterns.length === 1 && patterns[0] === '*') {
      // The closing section: only comments may follow it, then the END marker.
      if (!lines.slice(i + 1).every((l) => l.startsWith('#'))) throw new LoginAnswerViolation('Host * carries settings');
      continue;
    }
    for (const p of patterns) {
      if (!inScope(p.startsWith('!') ? p.slice(1) : p, cluster, owned)) throw new LoginAnswerViolation(`Host pattern ${JSON.stringify(p)} is outside ${cluster}`);
    }
  }
}

/** Checks known_hosts lines: every pattern scoped (`[host]:port` for the proxy off port 22), one line per key, nothing unsafe. */
function checkKnownHosts(lines: string[], cluster: string, owned: Set<string>): void {
  for (const line of lines) {
    if (UNSAFE.test(line)) throw new LoginAnswerViolation(`unsafe character in ${JSON.stringify(line)}`);
    const m = /^@cert-authority (\S+) (\S+ \S+) jumpgate-cluster=(\S+)$/.exec(line);
    if (!m || m[3] !== cluster) throw new LoginAnswerViolation(`not one scoped @cert-authority line: ${JSON.stringify(line)}`);
    for (const p of m[1]!.split(',')) {
      const host = /^\[(.+)\]:\d+$/.exec(p)?.[1] ?? p;
      if (!inScope(host, cluster, owned)) throw new LoginAnswerViolation(`known_hosts pattern ${JSON.stringify(p)} is outside ${cluster}`);
    }
  }
}

function blockInput(clusterName: string, sshProxyAddr: string, nodeNames: string[], nodeAddrs: string[] = []): SshConfigBlockInput {
  return {
    profileName: PROXY_HOST,
    clusterName,
    webProxyAddr: `${PROXY_HOST}:3080`,
    sshProxyAddr,
    nodeNames,
    nodeAddrs,
    keystore: 'file',
    tshHome: '/home/al/.tsh',
    knownHostsFile: '/home/al/.tsh/known_hosts',
    identityFile: `/home/al/.tsh/keys/${PROXY_HOST}/alice`,
    certificateFile: `/home/al/.tsh/keys/${PROXY_HOST}/alice-cert.pub`,
    tshCommand: ['/usr/local/bin/tsh'],
    platform: 'linux',
  };
}

/** Runs `fn`; a UserError becomes a Refused, so only a broken invariant or a crash escapes. */
function refusedOr<T>(fn: () => T): T | Refused {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UserError) return new Refused(err.code);
    throw err;
  }
}

/** The hostile values as they came, without any check (for the renderers' own guards). */
function raw(body: unknown): { cluster: string; ssh: string; nodes: string[] } | undefined {
  if (body === null || typeof body !== 'object') return undefined;
  const b = body as Record<string, unknown>;
  if (typeof b['cluster_name'] !== 'string' || typeof b['ssh_public_addr'] !== 'string' || !Array.isArray(b['nodes'])) return undefined;
  return { cluster: b['cluster_name'], ssh: b['ssh_public_addr'], nodes: b['nodes'].filter((n): n is string => typeof n === 'string') };
}

export const loginAnswerTarget: SyncTarget = {
  kind: 'sync',
  corpus: () => CORPUS.map((s) => Buffer.from(s)),
  mutator: (input, rng) => (rng.chance(0.3) ? mutateText(input, rng, DICT) : mutateField(input, rng)),
  target(input) {
    let body: unknown;
    try {
      body = JSON.parse(input.toString('utf8'));
    } catch {
      throw new Refused('NOT_JSON'); // tsh refuses it as LOGIN_RESPONSE_TAMPERED
    }
    // 1. The renderers alone, fed the raw values: refusal or scoped output.
    const r = raw(body);
    if (r) {
      const owned = new Set(r.nodes.map((n) => n.toLowerCase()));
      const block = refusedOr(() => renderSshConfigBlock(blockInput(r.cluster, r.ssh, r.nodes, r.nodes.map((n) => `${n}:22`))));
      if (!(block instanceof Refused)) checkBlock(block, r.cluster, owned);
      const lines = refusedOr(() => formatHostCaLines(r.cluster, knownHostsPatterns({ clusterName: r.cluster, nodeNames: r.nodes, sshProxyAddr: r.ssh }), [ca.publicKey], { proxyHost: PROXY_HOST, nodeNames: r.nodes }));
      if (!(lines instanceof Refused)) checkKnownHosts(lines, r.cluster, owned);
    }
    // 2. What tsh login does before it saves anything.
    const checked = checkLoginResult(body, NONCE, user.publicKey);
    if (checked instanceof UserError) throw new Refused(checked.code);
    const res = checked.result;
    const scope = refusedOr(() => claimClusterScope({ profileName: PROXY_HOST, proxyHost: PROXY_HOST, clusterName: res.cluster_name, sshProxyAddr: res.ssh_public_addr, nodeNames: res.nodes }, [OTHER]));
    if (scope instanceof Refused) throw scope;
    const owned = new Set(scope.nodeNames.map((n) => n.toLowerCase()));
    for (const n of owned) if (OTHER.nodeNames.includes(n)) throw new LoginAnswerViolation(`took ${n} from another profile`);
    const block = renderSshConfigBlock(blockInput(res.cluster_name, res.ssh_public_addr, scope.nodeNames));
    checkBlock(block, res.cluster_name, owned);
    const caLines = formatHostCaLines(res.cluster_name, knownHostsPatterns({ clusterName: res.cluster_name, nodeNames: scope.nodeNames, sshProxyAddr: res.ssh_public_addr }), res.host_ca.map((l) => parsePublicKeyLine(l).key), { proxyHost: PROXY_HOST, nodeNames: scope.nodeNames });
    checkKnownHosts(caLines, res.cluster_name, owned);
  },
  expected: (err) => err instanceof Refused,
};
