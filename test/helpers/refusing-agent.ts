/**
 * A scripted SSH agent that holds a fixed list of identities, removes plain
 * keys when asked but refuses to remove certificates (as some agents do).
 * For the removal paths a real OpenSSH ssh-agent never takes.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { SSH_AGENT_FAILURE, SSH_AGENT_IDENTITIES_ANSWER, SSH_AGENT_SUCCESS, SSH_AGENTC_REMOVE_IDENTITY, SSH_AGENTC_REQUEST_IDENTITIES } from '../../src/client/agent.js';
import { parseCertificate } from '../../src/sshcert/index.js';
import { WireReader, WireWriter } from '../../src/sshwire/index.js';

export interface RefusingAgent {
  sock: string;
  /** What it holds now (shrinks as plain keys are removed). */
  held: { blob: Buffer; comment: string }[];
  /** Every blob a REMOVE_IDENTITY named, in order. */
  removals: Buffer[];
  stop(): Promise<void>;
}

const isCert = (blob: Buffer): boolean => {
  try {
    parseCertificate(blob);
    return true;
  } catch {
    return false;
  }
};

/** Starts the agent on `sock` holding `held`. */
export async function startRefusingAgent(sock: string, held: { blob: Buffer; comment: string }[]): Promise<RefusingAgent> {
  mkdirSync(dirname(sock), { recursive: true });
  const removals: Buffer[] = [];
  const conns: Socket[] = [];
  const server = createServer((c: Socket) => {
    conns.push(c);
    c.on('error', () => {});
    let buf = Buffer.alloc(0);
    c.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const msg = buf.subarray(4, 4 + buf.readUInt32BE(0));
        buf = buf.subarray(4 + msg.length);
        let reply: Buffer;
        if (msg[0] === SSH_AGENTC_REQUEST_IDENTITIES) {
          const w = new WireWriter().u8(SSH_AGENT_IDENTITIES_ANSWER).u32(held.length);
          for (const id of held) w.string(id.blob).string(id.comment);
          reply = Buffer.from(w.finish());
        } else if (msg[0] === SSH_AGENTC_REMOVE_IDENTITY) {
          const blob = Buffer.from(new WireReader(msg.subarray(1)).string());
          removals.push(blob);
          const i = isCert(blob) ? -1 : held.findIndex((id) => id.blob.equals(blob));
          if (i >= 0) held.splice(i, 1);
          reply = Buffer.of(i >= 0 ? SSH_AGENT_SUCCESS : SSH_AGENT_FAILURE);
        } else reply = Buffer.of(SSH_AGENT_FAILURE);
        const framed = Buffer.concat([Buffer.alloc(4), reply]);
        framed.writeUInt32BE(reply.length, 0);
        c.write(framed);
      }
    });
  });
  await new Promise<void>((r) => server.listen(sock, r));
  return {
    sock,
    held,
    removals,
    stop: async () => {
      for (const c of conns) c.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
