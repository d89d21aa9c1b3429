/**
 * The agent reply reader's fuzz corpus and target, shared by
 * test/client/agent-fuzz.test.ts (CI size) and bench/fuzz.ts --target agent.
 * Replies an agent really sends: identities (certificates and plain keys),
 * signatures, success/failure, several messages in one stream.
 */
import { AgentError, AgentFrameDecoder, parseAgentReply, SSH_AGENT_IDENTITIES_ANSWER } from '../../src/client/agent.js';
import { signData } from '../../src/sshcert/index.js';
import { WireError, WireWriter } from '../../src/sshwire/index.js';
import { certify, keyPair } from '../sshconn/fixtures.js';

function framed(...msgs: Buffer[]): Buffer {
  const w = new WireWriter();
  for (const m of msgs) w.string(m);
  return Buffer.from(w.finish());
}

/** Agent byte streams (framed messages) to mutate. */
export function agentCorpus(): Buffer[] {
  const ca = keyPair('ed25519', 'fuzz-ca');
  const ed = keyPair('ed25519', 'fuzz-user');
  const ec = keyPair('ecdsa-p256', 'fuzz-user');
  const edCert = certify(ca, ed.publicKey, { type: 'user', principals: ['alice', 'root'] });
  const ecCert = certify(ca, ec.publicKey, { type: 'user', principals: ['bob'] });
  const ids = new WireWriter().u8(SSH_AGENT_IDENTITIES_ANSWER).u32(4);
  for (const [blob, comment] of [
    [edCert.blob, 'jumpgate:jump.example.test/alice'],
    [ed.publicKey.blob, 'alice@laptop'],
    [ecCert.blob, ''],
    [ec.publicKey.blob, 'ecdsa \u00e9'],
  ] as const) {
    ids.string(blob).string(comment);
  }
  const identities = Buffer.from(ids.finish());
  const empty = Buffer.from(new WireWriter().u8(SSH_AGENT_IDENTITIES_ANSWER).u32(0).finish());
  const sign = (k: typeof ed) => Buffer.from(new WireWriter().u8(14).string(signData(k.privateKey, Buffer.from('data'))).finish());
  return [
    framed(identities),
    framed(empty),
    framed(sign(ed)),
    framed(sign(ec)),
    framed(Buffer.of(6)),
    framed(Buffer.of(5)),
    framed(Buffer.of(6), identities, sign(ed)),
    framed(Buffer.of(30), empty),
  ];
}

/** Decodes frames, then parses every message. */
export function agentFuzzTarget(input: Buffer): void {
  const dec = new AgentFrameDecoder();
  for (const msg of dec.push(input)) parseAgentReply(msg);
}

/** The only errors the reader may throw. */
export const isExpectedAgentError = (err: unknown): boolean => err instanceof AgentError || err instanceof WireError;
