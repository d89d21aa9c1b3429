/**
 * The agent client against small scripted agents on a unix socket: agents
 * that drop or refuse certificates (the warning must name them), replies cut
 * into single bytes, oversized and unexpected replies, silence, hang-ups.
 * What a real OpenSSH agent does is in agent.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import {
  AgentClient,
  AgentError,
  describeAgent,
  parseAgentReply,
  SSH_AGENT_FAILURE,
  SSH_AGENT_IDENTITIES_ANSWER,
  SSH_AGENT_SUCCESS,
  SSH_AGENTC_ADD_ID_CONSTRAINED,
  SSH_AGENTC_ADD_IDENTITY,
  SSH_AGENTC_REQUEST_IDENTITIES,
} from '../../src/client/agent.js';
import { WireReader, WireWriter } from '../../src/sshwire/index.js';
import { tempDir } from '../helpers/tools.js';
import { certify, keyPair } from '../sshconn/fixtures.js';

const tmp = tempDir('agent-proto');
after(() => tmp.cleanup());

/** Decides the reply (type byte + contents) to one request; undefined = say nothing. */
type Handler = (msg: Buffer, conn: Socket) => Buffer | undefined;

interface FakeAgent {
  sock: string;
  requests: Buffer[];
  stop(): Promise<void>;
}

/** A scripted agent on `<tmp>/<rel>`; with `bytewise` every reply is written one byte at a time. */
async function fakeAgent(rel: string, handler: Handler, opts: { bytewise?: boolean; onConnect?: (c: Socket) => void } = {}): Promise<FakeAgent> {
  const sock = join(tmp.dir, rel);
  mkdirSync(dirname(sock), { recursive: true });
  const requests: Buffer[] = [];
  const conns: Socket[] = [];
  const server: Server = createServer((c) => {
    conns.push(c);
    c.on('error', () => {});
    opts.onConnect?.(c);
    let buf = Buffer.alloc(0);
    c.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const msg = buf.subarray(4, 4 + buf.readUInt32BE(0));
        buf = buf.subarray(4 + msg.length);
        requests.push(Buffer.from(msg));
        const reply = handler(msg, c);
        if (!reply) continue;
        const framed = Buffer.concat([Buffer.alloc(4), reply]);
        framed.writeUInt32BE(reply.length, 0);
        if (opts.bytewise) for (const b of framed) c.write(Buffer.of(b));
        else c.write(framed);
      }
    });
  });
  await new Promise<void>((r) => server.listen(sock, r));
  return {
    sock,
    requests,
    stop: async () => {
      for (const c of conns) c.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const success = (): Buffer => Buffer.of(SSH_AGENT_SUCCESS);
const failure = (): Buffer => Buffer.of(SSH_AGENT_FAILURE);
function identities(ids: { blob: Buffer; comment: string }[]): Buffer {
  const w = new WireWriter().u8(SSH_AGENT_IDENTITIES_ANSWER).u32(ids.length);
  for (const id of ids) w.string(id.blob).string(id.comment);
  return Buffer.from(w.finish());
}

function connectTo(sock: string, timeoutMs?: number): Promise<AgentClient> {
  return AgentClient.connect({ env: { SSH_AUTH_SOCK: sock }, platform: 'linux', ...(timeoutMs ? { timeoutMs } : {}) });
}

const userCA = keyPair('ed25519', 'proto-ca');
const kp = keyPair('ed25519', 'proto-user');
const cert = certify(userCA, kp.publicKey, { type: 'user', principals: ['alice'] });

function isAgentError(code: string) {
  return (e: unknown): boolean => e instanceof AgentError && e.code === code;
}

describe('agents that lose certificates', () => {
  test("an agent that says SUCCESS but never lists the certificate is named in the warning (gnome-keyring's socket)", async () => {
    const agent = await fakeAgent('keyring/ssh', (msg) => (msg[0] === SSH_AGENTC_REQUEST_IDENTITIES ? identities([]) : success()));
    const client = await connectTo(agent.sock);
    try {
      const r = await client.addCertificateAndVerify({
        privateKey: kp.privateKey,
        certBlob: cert.blob,
        comment: 'jumpgate',
        lifetimeSeconds: 3600,
        files: { key: '/home/a/.tsh/keys/p/alice', cert: '/home/a/.tsh/keys/p/alice-cert.pub' },
      });
      assert.equal(r.status, 'dropped');
      assert.equal(r.agentName, "gnome-keyring's SSH agent");
      const w = r.warning ?? '';
      assert.ok(w.startsWith(`gnome-keyring's SSH agent (${agent.sock}) accepted the certificate but does not list it`), w);
      assert.match(w, /eval "\$\(ssh-agent\)"/);
      assert.match(w, /`tsh ssh`/);
      assert.match(w, /IdentityFile \/home\/a\/\.tsh\/keys\/p\/alice` and `CertificateFile \/home\/a\/\.tsh\/keys\/p\/alice-cert\.pub`/);
      assert.equal(agent.requests.length, 2, 'one add, one list');
    } finally {
      client.close();
      await agent.stop();
    }
  });

  test("on Windows the warning says how to start Windows' OpenSSH agent service and names %USERPROFILE%\\.ssh\\config, never eval \"$(ssh-agent)\"", async () => {
    const agent = await fakeAgent('pageant.sock', (msg) => (msg[0] === SSH_AGENTC_REQUEST_IDENTITIES ? identities([]) : failure()));
    const client = await AgentClient.connect({ env: { SSH_AUTH_SOCK: agent.sock }, platform: 'win32' });
    try {
      const r = await client.addCertificateAndVerify({
        privateKey: kp.privateKey,
        certBlob: cert.blob,
        comment: 'jumpgate',
        files: { key: 'C:\\Users\\al\\.tsh\\keys\\p\\alice', cert: 'C:\\Users\\al\\.tsh\\keys\\p\\alice-cert.pub', sshConfig: '%USERPROFILE%\\.ssh\\config' },
      });
      const w = r.warning ?? '';
      assert.match(w, /^PuTTY's Pageant \(.*\) refused the certificate/);
      assert.match(w, /Start-Service ssh-agent/);
      assert.match(w, /clear SSH_AUTH_SOCK/);
      assert.match(w, /to the Host block in %USERPROFILE%\\\.ssh\\config/);
      assert.doesNotMatch(w, /eval|~\//);
    } finally {
      client.close();
      await agent.stop();
    }
  });

  test('an agent that refuses the certificate gets a warning, not an exception', async () => {
    const agent = await fakeAgent('.1password/agent.sock', (msg) => (msg[0] === SSH_AGENTC_REQUEST_IDENTITIES ? identities([]) : failure()));
    const client = await connectTo(agent.sock);
    try {
      const r = await client.addCertificateAndVerify({ privateKey: kp.privateKey, certBlob: cert.blob, comment: 'jumpgate' });
      assert.equal(r.status, 'refused');
      assert.match(r.warning ?? '', /^1Password's SSH agent \(.*agent\.sock\) refused the certificate, so plain ssh cannot use it\. To fix: /);
      assert.doesNotMatch(r.warning ?? '', /IdentityFile/, 'no file advice without files (keychain store: there is no key file)');
      // addCertificate on its own does throw.
      await assert.rejects(client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: 'x' }), isAgentError('AGENT_REFUSED'));
    } finally {
      client.close();
      await agent.stop();
    }
  });

  test('describeAgent names the agents people run', () => {
    const table: [string, string][] = [
      ['/tmp/ssh-XXXXabcd/agent.1234', "OpenSSH's ssh-agent"],
      ['/run/user/1000/keyring/ssh', "gnome-keyring's SSH agent"],
      ['/run/user/1000/gcr/ssh', "GNOME's gcr-ssh-agent"],
      ['/home/a/.1password/agent.sock', "1Password's SSH agent"],
      ['/Users/a/Library/Group Containers/2BUA8C4S2C.com.1password/t/agent.sock', "1Password's SSH agent"],
      ['/Users/a/Library/Containers/com.maxgoedjen.Secretive.SecretAgent/Data/socket.ssh', 'Secretive'],
      ['/run/user/1000/gnupg/S.gpg-agent.ssh', "GnuPG's gpg-agent"],
      ['/private/tmp/com.apple.launchd.abc/Listeners', "macOS's OpenSSH ssh-agent"],
      ['\\\\.\\pipe\\openssh-ssh-agent', "Windows' OpenSSH agent service"],
      ['/home/a/.keepassxc/agent', "KeePassXC's SSH agent"],
      ['/somewhere/else', 'the SSH agent at /somewhere/else'],
    ];
    for (const [path, name] of table) assert.equal(describeAgent(path), name, path);
  });
});

describe('what goes on the wire', () => {
  test('an ed25519 certificate with a lifetime: ADD_ID_CONSTRAINED, cert, ENC(A), k||ENC(A), comment, lifetime', async () => {
    const agent = await fakeAgent('wire/a.sock', () => success());
    const client = await connectTo(agent.sock);
    try {
      await client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: 'c1', lifetimeSeconds: 86400, confirm: true });
      await client.addCertificate({ privateKey: kp.privateKey, certBlob: cert.blob, comment: 'c2' });
      const [constrained, plain] = agent.requests as [Buffer, Buffer];

      const r = new WireReader(constrained);
      assert.equal(r.u8(), SSH_AGENTC_ADD_ID_CONSTRAINED);
      assert.equal(r.utf8(), 'ssh-ed25519-cert-v01@openssh.com');
      assert.deepEqual(r.string(), cert.blob);
      const pk = r.string();
      assert.deepEqual(pk, kp.publicKey.blob.subarray(4 + 11 + 4));
      const sk = r.string();
      assert.equal(sk.length, 64);
      assert.deepEqual(sk.subarray(32), pk, 'the secret key is seed || public key');
      assert.equal(r.utf8(), 'c1');
      assert.equal(r.u8(), 1, 'SSH_AGENT_CONSTRAIN_LIFETIME');
      assert.equal(r.u32(), 86400);
      assert.equal(r.u8(), 2, 'SSH_AGENT_CONSTRAIN_CONFIRM');
      r.end();

      const p = new WireReader(plain);
      assert.equal(p.u8(), SSH_AGENTC_ADD_IDENTITY, 'no constraints: plain ADD_IDENTITY');
      p.utf8();
      p.string();
      p.string();
      p.string();
      assert.equal(p.utf8(), 'c2');
      p.end();
    } finally {
      client.close();
      await agent.stop();
    }
  });
});

describe('a robust reader', () => {
  test('replies cut into single bytes, with several requests queued at once, come back in order', async () => {
    let count = 0;
    const agent = await fakeAgent('bytes/a.sock', () => identities([{ blob: Buffer.from(`key-${++count}`), comment: `reply ${count}` }]), { bytewise: true });
    const client = await connectTo(agent.sock);
    try {
      const got = await Promise.all([client.list(), client.list(), client.list(), client.list()]);
      assert.deepEqual(got.map((ids) => ids[0]!.comment), ['reply 1', 'reply 2', 'reply 3', 'reply 4']);
    } finally {
      client.close();
      await agent.stop();
    }
  });

  test('a reply longer than 256 KiB is AGENT_PROTOCOL and ends the connection', async () => {
    const agent = await fakeAgent('big/a.sock', (_m, c) => {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(256 * 1024 + 1, 0);
      head[4] = SSH_AGENT_IDENTITIES_ANSWER;
      c.write(head);
      return undefined;
    });
    const client = await connectTo(agent.sock);
    try {
      await assert.rejects(client.list(), (e: unknown) => isAgentError('AGENT_PROTOCOL')(e) && /262145-byte message/.test((e as Error).message));
      await assert.rejects(client.list(), isAgentError('AGENT_PROTOCOL'), 'the connection is not used after a protocol error');
    } finally {
      client.close();
      await agent.stop();
    }
  });

  test('an unexpected message type, or SUCCESS where identities were asked for, is AGENT_PROTOCOL', async () => {
    const replies = [Buffer.of(99), success()];
    const agent = await fakeAgent('odd/a.sock', () => replies.shift());
    try {
      for (const want of [/unexpected message type 99/, /answered the request for identities with a success message/]) {
        const client = await connectTo(agent.sock);
        await assert.rejects(client.list(), (e: unknown) => isAgentError('AGENT_PROTOCOL')(e) && want.test((e as Error).message));
        client.close();
      }
    } finally {
      await agent.stop();
    }
  });

  test('a reply nobody asked for poisons the connection', async () => {
    const agent = await fakeAgent('unsolicited/a.sock', () => success(), {
      onConnect: (c) => c.write(Buffer.from([0, 0, 0, 1, SSH_AGENT_SUCCESS])),
    });
    const client = await connectTo(agent.sock);
    try {
      await new Promise((r) => setTimeout(r, 50));
      await assert.rejects(client.list(), (e: unknown) => isAgentError('AGENT_PROTOCOL')(e) && /nobody asked for/.test((e as Error).message));
    } finally {
      client.close();
      await agent.stop();
    }
  });

  test('an agent that never answers is AGENT_TIMEOUT after timeoutMs', async () => {
    const agent = await fakeAgent('silent/a.sock', () => undefined);
    const client = await connectTo(agent.sock, 300);
    try {
      const t0 = Date.now();
      await assert.rejects(client.list(), (e: unknown) => isAgentError('AGENT_TIMEOUT')(e) && /did not answer .* within 300 ms/.test((e as Error).message));
      assert.ok(Date.now() - t0 < 10_000, 'the 300 ms limit applied, not the 10 s default');
    } finally {
      client.close();
      await agent.stop();
    }
  });

  test('an agent that hangs up mid-request is AGENT_CLOSED; close() fails queued requests', async () => {
    const agent = await fakeAgent('hangup/a.sock', (_m, c) => {
      c.destroy();
      return undefined;
    });
    const client = await connectTo(agent.sock);
    try {
      await assert.rejects(client.list(), isAgentError('AGENT_CLOSED'));
    } finally {
      client.close();
      await agent.stop();
    }

    const silent = await fakeAgent('hangup/b.sock', () => undefined);
    const c2 = await connectTo(silent.sock);
    const pending = [c2.list(), c2.list()];
    c2.close();
    for (const p of pending) await assert.rejects(p, isAgentError('AGENT_CLOSED'));
    await silent.stop();
  });
});

describe('parseAgentReply', () => {
  test('decodes identities, signatures and the three failure codes; refuses lies', () => {
    const ids = parseAgentReply(identities([{ blob: Buffer.from('k1'), comment: 'one' }, { blob: Buffer.from('k2'), comment: '\u00e9' }]));
    assert.deepEqual(ids, { type: 'identities', identities: [{ blob: Buffer.from('k1'), comment: 'one' }, { blob: Buffer.from('k2'), comment: '\u00e9' }] });
    for (const t of [5, 30, 102]) assert.deepEqual(parseAgentReply(Buffer.of(t)), { type: 'failure' });
    const sig = Buffer.from(new WireWriter().string('ssh-ed25519').string(Buffer.alloc(64, 7)).finish());
    assert.deepEqual(parseAgentReply(Buffer.concat([Buffer.of(14), new WireWriter().string(sig).finish()])), { type: 'sign', signature: sig });

    const lie = Buffer.from(new WireWriter().u8(SSH_AGENT_IDENTITIES_ANSWER).u32(1_000_000).finish());
    assert.throws(() => parseAgentReply(lie), (e: unknown) => isAgentError('AGENT_PROTOCOL')(e) && /1000000 identities/.test((e as Error).message));
    const truncated = identities([{ blob: Buffer.from('k1'), comment: 'one' }]).subarray(0, 14);
    assert.throws(() => parseAgentReply(truncated), (e: unknown) => isAgentError('AGENT_PROTOCOL')(e) && (e as Error).cause !== undefined);
    assert.throws(() => parseAgentReply(Buffer.alloc(0)), isAgentError('AGENT_PROTOCOL'));
  });
});
