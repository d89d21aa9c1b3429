/** A private OpenSSH ssh-agent for the client tests: `ssh-agent -D -a SOCK`. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireTool } from './tools.js';

export interface SshAgent {
  sock: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `ssh-agent -D -a SOCK` and waits for the socket to appear. */
export async function startSshAgent(sock: string): Promise<SshAgent> {
  const bin = requireTool('ssh-agent', 'apt-get install -y openssh-client');
  const child = spawn(bin, ['-D', '-a', sock], { stdio: 'ignore' });
  const deadline = Date.now() + 5_000;
  while (!existsSync(sock)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ssh-agent did not create ${sock}`);
    }
    await sleep(20);
  }
  return {
    sock,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
