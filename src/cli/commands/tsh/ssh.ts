import { UsageError } from '../../../errors.js';
import { TshPaths } from '../../../client/paths.js';
import { checkLogin, credentialsFor, defaultLogin } from '../../../client/proxy-conn.js';
import { profileNameFor, proxyAddrFor } from '../../../client/proxy-addr.js';
import { parseDestination, parseForwardSpec, runSshSession, type ForwardSpec } from '../../../client/ssh-session.js';
import { ExitStatus } from '../../errors.js';
import type { Deps } from '../../deps.js';
import { credentialOptions } from './client-context.js';

export interface SshOptions {
  destination: string;
  command: string[];
  /** -p: the node's port; 0 = its inventory port. */
  port: number;
  /** -l: the login (user@ in the destination wins, as in ssh). */
  login?: string;
  localForwards: ForwardSpec[];
  remoteForwards: ForwardSpec[];
  forwardAgent: boolean;
  tty: 'auto' | 'force' | 'no';
  proxy?: string;
}

/** What `tsh ssh --help` prints (the options are parsed by hand, see parseSshArgs). */
export const SSH_USAGE = `Usage: tsh ssh [options] [user@]host [command...]

Open a shell or run a command on a node, through the Jumpgate proxy.
The remote command's exit status is tsh's exit status.

Options (before the host; everything after it is the remote command):
  -p <port>          the node's SSH port (default: its port in the inventory)
  -l <login>         the login on the node (default: user@ of the destination, your
                     local user name when your certificate carries it, else its first login)
  -L <spec>          local forwarding: [bind_address:]port:host:hostport
  -R <spec>          remote forwarding: [bind_address:]port:host:hostport
  -A                 forward your ssh-agent (only when your roles allow it)
  -t                 force a terminal (PTY)
  -T                 no terminal
  --proxy <host[:port]>  the cluster's proxy (default: $TSH_PROXY, or the current profile)
  -h, --help         this help

Examples:
  $ tsh ssh node1
  $ tsh ssh alice@node1 uname -a
  $ tsh ssh -L 8080:localhost:80 node1
`;

/**
 * Parses `tsh ssh` arguments the way ssh(1) does: options up to the first
 * operand (the destination), everything after it is the remote command,
 * untouched (`tsh ssh node1 ls -l /tmp` must not read -l as a login).
 * Returns undefined for --help.
 */
export function parseSshArgs(args: string[]): SshOptions | undefined {
  const o: SshOptions = { destination: '', command: [], port: 0, localForwards: [], remoteForwards: [], forwardAgent: false, tty: 'auto' };
  let i = 0;
  const value = (flag: string, inline: string): string => {
    if (inline !== '') return inline;
    const v = args[++i];
    if (v === undefined) throw new UsageError('USAGE_MISSING_VALUE', `${flag} needs a value`);
    return v;
  };
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (a === '-h' || a === '--help') return undefined;
    if (a === '--proxy' || a.startsWith('--proxy=')) {
      o.proxy = a.startsWith('--proxy=') ? a.slice('--proxy='.length) : value('--proxy', '');
      continue;
    }
    if (a === '--debug') continue; // the program's own flag, already seen by execute()
    if (a.startsWith('--')) {
      const name = a.split('=')[0]!;
      const near = ['--proxy', '--help', '--debug'].find((known) => editDistance(name, known) <= 2);
      throw new UsageError('USAGE_UNKNOWN_OPTION', `unknown option ${name} for tsh ssh${near ? ` (did you mean ${near}?)` : ''}`, { hint: 'see tsh ssh --help' });
    }
    if (!a.startsWith('-') || a === '-') break;
    // A cluster of single-letter flags, the last of which may take a value (-tA, -p2222).
    for (let j = 1; j < a.length; j++) {
      const f = a[j]!;
      const rest = a.slice(j + 1);
      if (f === 'A') o.forwardAgent = true;
      else if (f === 't') o.tty = 'force';
      else if (f === 'T') o.tty = 'no';
      else if (f === 'p' || f === 'l' || f === 'L' || f === 'R') {
        const v = value(`-${f}`, rest);
        if (f === 'p') {
          if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new UsageError('USAGE_BAD_PORT', `-p ${v}: not a port number`);
          o.port = Number(v);
        } else if (f === 'l') o.login = v;
        else if (f === 'L') o.localForwards.push(parseForwardSpec('-L', v));
        else o.remoteForwards.push(parseForwardSpec('-R', v));
        break;
      } else {
        throw new UsageError('USAGE_UNKNOWN_OPTION', `unknown option -${f} for tsh ssh`, { hint: 'see tsh ssh --help' });
      }
    }
  }
  const dest = args[i];
  if (dest === undefined) throw new UsageError('USAGE_MISSING_DESTINATION', 'tsh ssh needs a destination: tsh ssh [user@]host [command...]');
  o.destination = dest;
  o.command = args.slice(i + 1);
  return o;
}

/** Levenshtein distance, for "did you mean" on tsh ssh's hand-parsed long options. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** `tsh ssh`: a shell or a command on a node; throws ExitStatus with the remote exit status when it is not 0. */
export async function run(opts: SshOptions, deps: Deps): Promise<void> {
  const { user, host } = parseDestination(opts.destination);
  const paths = new TshPaths(deps);
  const creds = await credentialsFor(paths, profileNameFor(opts.proxy, deps.env), deps.clock(), { ...credentialOptions(deps), proxyAddr: proxyAddrFor(opts.proxy, deps.env) });
  const login = user ?? opts.login ?? defaultLogin(creds, deps.env);
  checkLogin(creds, login);
  const status = await runSshSession({
    creds,
    paths,
    env: deps.env,
    now: deps.clock,
    login,
    host,
    port: opts.port,
    command: opts.command,
    tty: opts.tty,
    localForwards: opts.localForwards,
    remoteForwards: opts.remoteForwards,
    forwardAgent: opts.forwardAgent,
    io: deps.io,
    ...(deps.debug ? { log: (l: string) => deps.io.stderr.write(`tsh: ${l}\n`) } : {}),
  });
  if (status !== 0) throw new ExitStatus(status);
}
