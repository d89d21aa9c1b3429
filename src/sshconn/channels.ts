/**
 * Channel openings ssh2 1.17 has no public call for, needed by the recording
 * proxy (server/proxy/recording-proxy.ts), which relays requests one by one:
 * - a session channel with `subsystem NAME` on a Client (ssh2 only offers
 *   `sftp()`, which wraps the channel in its own SFTP parser);
 * - an `auth-agent@openssh.com` channel from a Server connection to its
 *   client (RFC 4254 has no agent channel; OpenSSH PROTOCOL §2.1; ssh2's
 *   server can open only forwarded-tcpip, x11 and streamlocal channels).
 * Both use the same ssh2 internals its own public calls use (the channel
 * manager and the protocol writer); the ssh2 version is pinned and patched
 * (patches/), and test/e2e/session-recording.test.ts (sftp, ssh -A through
 * the recording proxy) fails if these stop working.
 */
import type { Client, ClientChannel, Connection, ServerChannel } from 'ssh2';

interface ChanMgr {
  add(wrapper: unknown): number;
}
interface Internals {
  _chanMgr: ChanMgr;
  _protocol: {
    session(chan: number, initWindow: number, maxPacket: number): void;
    subsystem(chan: number, name: string, wantReply: boolean): void;
    env(chan: number, key: string, value: string, wantReply: boolean): void;
    openssh_authAgent(chan: number, initWindow: number, maxPacket: number): void;
  };
  _sock?: { writable?: boolean };
}
interface ChannelInternals {
  outgoing: { id: number; state: string };
  _callbacks: Array<(hadErr: unknown) => void>;
  subtype?: string;
}

/** ssh2's channel window and packet size (lib/Channel.js MAX_WINDOW, PACKET_SIZE). */
const MAX_WINDOW = 2 * 1024 * 1024;
const PACKET_SIZE = 32 * 1024;

function openWith<T>(owner: Internals, type: string, send: (localChan: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const wrapper = (err: Error | undefined, chan: T) => (err ? reject(err) : resolve(chan));
    wrapper.type = type;
    const local = owner._chanMgr.add(wrapper);
    if (local === -1) return reject(new Error('no free channels on this connection'));
    send(local);
  });
}

/**
 * Opens a session channel on `client`, sends `env` (no reply asked, as
 * ssh2's exec does) and `subsystem NAME`; resolves with the channel once the
 * server accepted the subsystem, rejects (closing the channel) when it refused.
 */
export async function openSubsystem(client: Client, name: string, env: Record<string, string> = {}): Promise<ClientChannel> {
  const c = client as unknown as Internals;
  const chan = await openWith<ClientChannel>(c, 'session', (local) => c._protocol.session(local, MAX_WINDOW, PACKET_SIZE));
  const ci = chan as unknown as ChannelInternals;
  for (const [k, v] of Object.entries(env)) c._protocol.env(ci.outgoing.id, k, v, false);
  await new Promise<void>((resolve, reject) => {
    ci._callbacks.push((hadErr) => {
      if (hadErr) {
        chan.close();
        return reject(new Error(`the node refused the subsystem ${JSON.stringify(name)}`));
      }
      ci.subtype = 'subsystem';
      resolve();
    });
    c._protocol.subsystem(ci.outgoing.id, name, true);
  });
  return chan;
}

/**
 * Opens an `auth-agent@openssh.com` channel from an ssh2 server connection
 * to its client (whose ssh forwards it to the user's agent). Only for a
 * client that asked for agent forwarding (`auth-agent-req@openssh.com`).
 */
export function openAgentChannel(conn: Connection): Promise<ServerChannel> {
  const c = conn as unknown as Internals;
  return openWith<ServerChannel>(c, 'auth-agent@openssh.com', (local) => c._protocol.openssh_authAgent(local, MAX_WINDOW, PACKET_SIZE));
}

/**
 * Rejects a channel open with a description the user sees (OpenSSH prints
 * "open failed: administratively prohibited: <reason>"). ssh2's `reject()`
 * always sends an empty description and picks the reason code itself, so the
 * one protocol call it makes is wrapped for the duration of the call.
 */
export function rejectWithReason(conn: Connection, reject: () => void, description: string): void {
  const proto = (conn as unknown as { _protocol: { channelOpenFail(recipient: number, reason: number, desc: string): void } })._protocol;
  const original = proto.channelOpenFail;
  proto.channelOpenFail = function (recipient: number) {
    original.call(this, recipient, 1 /* SSH_OPEN_ADMINISTRATIVELY_PROHIBITED, RFC 4254 §5.1 */, description);
  };
  try {
    reject();
  } finally {
    proto.channelOpenFail = original;
  }
}
