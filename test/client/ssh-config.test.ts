import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { TshPaths } from '../../src/client/paths.js';
import {
  commandWord,
  configPath,
  installSshConfigBlock,
  renderSshConfigBlock,
  replaceManagedBlock,
  overriddenBlockWarning,
  unreadConfigWarning,
  type SshConfigBlockInput,
} from '../../src/client/ssh-config.js';
import { writeError, writeFileAtomic } from '../../src/util/atomic-write.js';
import { requireTool, run, tempDir } from '../helpers/tools.js';

const base: SshConfigBlockInput = {
  profileName: 'jump.example.org',
  clusterName: 'example.org',
  webProxyAddr: 'jump.example.org:3080',
  sshProxyAddr: 'jump.example.org:3023',
  nodeNames: ['node1', 'db-2'],
  nodeAddrs: ['10.0.0.5:22', '127.0.0.1:2222', '[fd00::7]:2200', '140.82.112.3:22', '[2001:db8::1]:22'],
  keystore: 'file',
  tshHome: '/home/al/.tsh',
  knownHostsFile: '/home/al/.tsh/known_hosts',
  identityFile: '/home/al/.tsh/keys/jump.example.org/al',
  certificateFile: '/home/al/.tsh/keys/jump.example.org/al-cert.pub',
  tshCommand: ['/usr/local/bin/tsh'],
  platform: 'linux',
};

describe('renderSshConfigBlock', () => {
  test('file keystore on Linux: the whole block', () => {
    assert.equal(
      renderSshConfigBlock(base),
      `# BEGIN Jumpgate jump.example.org
# Cluster example.org through the proxy jump.example.org:3080. Written by tsh; \`tsh login\` rewrites it: edit outside it.
Match host node1,db-2,*.example.org,10.0.0.5,fd00::7,!jump.example.org
    UserKnownHostsFile "/home/al/.tsh/known_hosts"
    StrictHostKeyChecking yes
    IdentityFile "/home/al/.tsh/keys/jump.example.org/al"
    CertificateFile "/home/al/.tsh/keys/jump.example.org/al-cert.pub"
    IdentitiesOnly yes
    ProxyCommand /usr/local/bin/tsh proxy ssh --relogin=never --tsh-home=/home/al/.tsh --proxy=jump.example.org:3080 %r@%h:%p
Match host jump.example.org
    UserKnownHostsFile ~/.ssh/known_hosts ~/.ssh/known_hosts2 "/home/al/.tsh/known_hosts"
    IdentityFile "/home/al/.tsh/keys/jump.example.org/al"
    CertificateFile "/home/al/.tsh/keys/jump.example.org/al-cert.pub"
    IdentitiesOnly yes
# Ends the Host section above, so the lines after this block apply to every host again.
Host *
# END Jumpgate jump.example.org
`,
    );
  });

  test('keychain keystore: the certificate names the identity, so ssh offers only the agent\'s certificate, for nodes and the proxy', () => {
    const block = renderSshConfigBlock({ ...base, keystore: 'keychain' });
    const sections = block.split(/^Match host /m).slice(1);
    assert.equal(sections.length, 2);
    for (const section of sections) {
      assert.match(section, /^ {4}IdentityFile "\/home\/al\/\.tsh\/keys\/jump\.example\.org\/al-cert\.pub"$/m);
      assert.match(section, /^ {4}CertificateFile "\/home\/al\/\.tsh\/keys\/jump\.example\.org\/al-cert\.pub"$/m);
      assert.match(section, /^ {4}IdentitiesOnly yes$/m);
    }
    assert.doesNotMatch(block, /IdentityFile "[^"]*\/al"$/m, 'no private key file is named: with the keychain there is none');
  });

  test('node names are matched lower-case (ssh lower-cases the host name Match host sees); address hosts only when they are the cluster\'s names', () => {
    const block = renderSshConfigBlock({ ...base, nodeNames: ['WebServer01', 'node1'], nodeAddrs: ['Web-01.Example.ORG:22', 'Web-01.Internal:22', 'localhost:2222'], clusterName: 'Example.ORG', sshProxyAddr: 'Jump.Example.org:3023' });
    assert.match(block, /^Match host webserver01,node1,\*\.example\.org,web-01\.example\.org,!jump\.example\.org$/m, 'localhost and an address host outside the cluster are never routed');
    assert.match(block, /^Match host jump\.example\.org$/m);
  });

  test('Windows: forward slashes everywhere, the program path unquoted unless it has a space', () => {
    const win: SshConfigBlockInput = {
      ...base,
      platform: 'win32',
      tshHome: 'C:\\Users\\al\\.tsh',
      knownHostsFile: 'C:\\Users\\al\\.tsh\\known_hosts',
      identityFile: 'C:\\Users\\al\\.tsh\\keys\\jump.example.org\\al',
      certificateFile: 'C:\\Users\\al\\.tsh\\keys\\jump.example.org\\al-cert.pub',
      tshCommand: ['C:\\Users\\al\\AppData\\Local\\Programs\\jumpgate\\tsh.exe'],
    };
    const block = renderSshConfigBlock(win);
    assert.match(block, /^ {4}ProxyCommand C:\/Users\/al\/AppData\/Local\/Programs\/jumpgate\/tsh\.exe proxy ssh --relogin=never --tsh-home=C:\/Users\/al\/\.tsh --proxy=jump\.example\.org:3080 %r@%h:%p$/m);
    assert.match(block, /^ {4}UserKnownHostsFile "C:\/Users\/al\/\.tsh\/known_hosts"$/m);
    assert.match(block, /^ {4}IdentityFile "C:\/Users\/al\/\.tsh\/keys\/jump\.example\.org\/al"$/m);
    const spaced = renderSshConfigBlock({ ...win, tshCommand: ['C:\\Program Files\\nodejs\\node.exe', 'C:\\Program Files\\Jumpgate\\bin\\tsh'] });
    assert.match(spaced, /^ {4}ProxyCommand "C:\/Program Files\/nodejs\/node\.exe" "C:\/Program Files\/Jumpgate\/bin\/tsh" proxy ssh /m);
  });

  const words: Array<[string, boolean, string]> = [
    ['/usr/bin/tsh', false, '/usr/bin/tsh'],
    ['/opt/my tools/tsh', false, "'/opt/my tools/tsh'"],
    ["/opt/it's/tsh", false, "'/opt/it'\\''s/tsh'"],
    ['/opt/100%/tsh', false, '/opt/100%%/tsh'],
    ['/opt/$HOME/tsh', false, "'/opt/$HOME/tsh'"],
    ['--proxy=[::1]:3080', false, "'--proxy=[::1]:3080'"],
    ['C:\\tools\\tsh.exe', true, 'C:/tools/tsh.exe'],
    ['C:\\my tools\\tsh.exe', true, '"C:/my tools/tsh.exe"'],
    ['C:\\100%\\tsh.exe', true, 'C:/100%%/tsh.exe'],
  ];
  for (const [word, windows, want] of words) {
    test(`ProxyCommand word ${JSON.stringify(word)} on ${windows ? 'Windows' : 'POSIX'} → ${want}`, () => {
      assert.equal(commandWord(word, windows), want);
    });
  }

  test('paths that cannot be written into ssh_config are refused with a fix', () => {
    assert.throws(() => configPath('/home/a"b/.tsh/known_hosts', false), /cannot be written into an ssh_config file/);
    assert.throws(() => commandWord('/opt/a\nb', false), /cannot be written into a ProxyCommand/);
    assert.equal(configPath('/home/100%/x', false), '"/home/100%%/x"');
  });

  test('OpenSSH reads the block back as written: paths with spaces, quotes and % survive (ssh -G, and the ProxyCommand run by sh)', async () => {
    const ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    const tmp = tempDir('ssh-config-G');
    try {
      const odd = join(tmp.dir, "it's 100% odd");
      mkdirSync(odd);
      const argsFile = join(tmp.dir, 'args');
      const fake = join(odd, 'fake tsh');
      writeFileSync(fake, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > '${argsFile}'\n`);
      chmodSync(fake, 0o755);
      const input: SshConfigBlockInput = {
        ...base,
        nodeNames: ['node1', 'db-2', 'WebServer01'],
        tshHome: odd,
        knownHostsFile: join(odd, 'known_hosts'),
        identityFile: join(odd, 'key'),
        certificateFile: join(odd, 'key-cert.pub'),
        tshCommand: [fake],
        webProxyAddr: '[::1]:3080',
      };
      const cfg = join(tmp.dir, 'config');
      writeFileSync(cfg, renderSshConfigBlock(input));
      const g = await run(ssh, ['-F', cfg, '-G', 'al@node1']);
      assert.equal(g.code, 0, g.stderr);
      assert.match(g.stdout, new RegExp(`^userknownhostsfile ${escapeRe(join(odd, 'known_hosts'))}$`, 'm'));
      assert.match(g.stdout, /^stricthostkeychecking true$/m);
      // Every spelling of a node name takes the block (Host patterns would be case-sensitive).
      for (const spelling of ['WebServer01', 'webserver01', 'WEBSERVER01', 'NODE1.Example.Org', 'db-2.example.org']) {
        const gs = await run(ssh, ['-F', cfg, '-G', spelling]);
        assert.match(gs.stdout, /^proxycommand /m, `${spelling} is routed through the proxy`);
        assert.match(gs.stdout, /^identitiesonly yes$/m);
      }
      // The proxy host keeps the user's own known_hosts and gains tsh's.
      const gp = await run(ssh, ['-F', cfg, '-G', 'jump.example.org']);
      assert.match(gp.stdout, new RegExp(`^userknownhostsfile \\S+/\\.ssh/known_hosts \\S+/\\.ssh/known_hosts2 ${escapeRe(join(odd, 'known_hosts'))}$`, 'm'));
      assert.doesNotMatch(gp.stdout, /^proxycommand /m);
      // Lines after the block apply to every host again.
      writeFileSync(cfg, renderSshConfigBlock(input) + 'User after-block\n');
      assert.match((await run(ssh, ['-F', cfg, '-G', 'elsewhere.test'])).stdout, /^user after-block$/m);
      // ssh runs the ProxyCommand through the shell: the fake tsh sees exactly the intended argv.
      const r = await run(ssh, ['-v', '-F', cfg, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', 'al@node1', 'true'], { timeoutMs: 15_000 });
      assert.equal(r.code, 255);
      // ssh -G prints IdentityFile/CertificateFile before %-expansion; -v shows the files ssh really tries.
      assert.match(r.stderr, new RegExp(`^debug1: identity file ${escapeRe(join(odd, 'key'))} type -1\r?$`, 'm'));
      assert.match(r.stderr, new RegExp(`^debug1: certificate file ${escapeRe(join(odd, 'key-cert.pub'))} type -1\r?$`, 'm'));
      assert.deepEqual(readFileSync(argsFile, 'utf8').split('\n').slice(0, -1), ['proxy', 'ssh', '--relogin=never', `--tsh-home=${odd}`, '--proxy=[::1]:3080', 'al@node1:22']);
    } finally {
      tmp.cleanup();
    }
  });

  test('--relogin=auto: a Match exec runs `tsh proxy ssh --check-login` before ssh reads the key files, odd paths intact; the proxy host does not run it', async () => {
    const ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    const tmp = tempDir('ssh-config-exec');
    try {
      const odd = join(tmp.dir, "it's 100% odd");
      mkdirSync(odd);
      const log = join(tmp.dir, 'calls');
      const fake = join(odd, 'fake tsh');
      // Each call appends its argv (one word a line) and a separator.
      writeFileSync(fake, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done >> '${log}'\necho --- >> '${log}'\n`);
      chmodSync(fake, 0o755);
      const input: SshConfigBlockInput = {
        ...base,
        tshHome: odd,
        knownHostsFile: join(odd, 'known_hosts'),
        identityFile: join(odd, 'key'),
        certificateFile: join(odd, 'key-cert.pub'),
        tshCommand: [fake],
        webProxyAddr: '[::1]:3080',
        relogin: 'auto',
      };
      const block = renderSshConfigBlock(input);
      assert.match(block, /^ {4}ProxyCommand .* proxy ssh --relogin=auto /m);
      const cfg = join(tmp.dir, 'config');
      writeFileSync(cfg, block);
      const r = await run(ssh, ['-v', '-F', cfg, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', 'al@node1', 'true'], { timeoutMs: 15_000 });
      assert.equal(r.code, 255);
      const calls = readFileSync(log, 'utf8').split('---\n').filter((c) => c !== '').map((c) => c.split('\n').slice(0, -1));
      assert.deepEqual(calls[0], ['proxy', 'ssh', '--check-login', '--relogin=auto', `--tsh-home=${odd}`, '--proxy=[::1]:3080']);
      assert.deepEqual(calls.at(-1), ['proxy', 'ssh', '--relogin=auto', `--tsh-home=${odd}`, '--proxy=[::1]:3080', 'al@node1:22']);
      // The order that makes it work: the check, then the ProxyCommand, then the key files.
      const at = (re: RegExp) => r.stderr.search(re);
      const exec = at(/^debug1: Executing command: /m);
      const proxy = at(/^debug1: Executing proxy command: /m);
      const identity = at(/^debug1: identity file /m);
      assert.ok(exec >= 0 && exec < proxy && proxy < identity, r.stderr);
      // ssh -J to the proxy's own host: no check (only the nodes pay for it).
      writeFileSync(log, '');
      await run(ssh, ['-F', cfg, '-G', 'jump.example.org']);
      assert.equal(readFileSync(log, 'utf8'), '');
    } finally {
      tmp.cleanup();
    }
  });

  test('--relogin=never writes no Match exec; on Windows the exec is left out where a path needs double quotes', () => {
    assert.doesNotMatch(renderSshConfigBlock({ ...base, relogin: 'never' }), /exec/);
    const win: SshConfigBlockInput = { ...base, platform: 'win32', relogin: 'auto', tshHome: 'C:\\Users\\al\\.tsh', tshCommand: ['C:\\tools\\tsh.exe'] };
    assert.match(renderSshConfigBlock(win), /^Match host \S+ exec "C:\/tools\/tsh\.exe proxy ssh --check-login --relogin=auto --tsh-home=C:\/Users\/al\/\.tsh --proxy=jump\.example\.org:3080"$/m);
    const spaced = renderSshConfigBlock({ ...win, tshCommand: ['C:\\Program Files\\Jumpgate\\tsh.exe'] });
    assert.doesNotMatch(spaced, /exec/);
    assert.match(spaced, /^ {4}ProxyCommand "C:\/Program Files\/Jumpgate\/tsh\.exe" proxy ssh --relogin=auto /m);
  });
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('replaceManagedBlock', () => {
  const block = (v: string) => `# BEGIN Jumpgate p\nHost n\n    User ${v}\n# END Jumpgate p\n`;
  const cases: Array<{ name: string; before: string; after: string }> = [
    { name: 'an empty file gets just the block', before: '', after: block('new') },
    {
      name: 'a file without a block gets it at the top, a blank line before the old content',
      before: 'Host mine\n    User me\n',
      after: `${block('new')}\nHost mine\n    User me\n`,
    },
    {
      name: 'an old block is replaced in place; the lines around it are untouched',
      before: `Host a\n    User x\n\n${block('old')}Host b\n    User y\n`,
      after: `Host a\n    User x\n\n${block('new')}Host b\n    User y\n`,
    },
    {
      name: 'duplicated blocks (tsh config >> plus a login) become one, at the first place',
      before: `${block('old1')}Host a\n${block('old2')}Host b\n`,
      after: `${block('new')}Host a\nHost b\n`,
    },
    {
      name: 'another profile’s block is left alone',
      before: `# BEGIN Jumpgate other\nHost o\n# END Jumpgate other\n`,
      after: `${block('new')}\n# BEGIN Jumpgate other\nHost o\n# END Jumpgate other\n`,
    },
    {
      name: 'markers with surrounding spaces still match; a marker that is only a prefix does not',
      before: `  # BEGIN Jumpgate p  \nHost n\n# END Jumpgate p\n# BEGIN Jumpgate p2\n# END Jumpgate p2\n`,
      after: `${block('new')}# BEGIN Jumpgate p2\n# END Jumpgate p2\n`,
    },
    {
      name: 'a file without a final newline keeps its content',
      before: 'Host mine\n    User me',
      after: `${block('new')}\nHost mine\n    User me\n`,
    },
    {
      name: 'CRLF files stay CRLF',
      before: `Host a\r\n${block('old').replace(/\n/g, '\r\n')}`,
      after: `Host a\r\n${block('new').replace(/\n/g, '\r\n')}`,
    },
  ];
  for (const c of cases) {
    test(c.name, () => assert.equal(replaceManagedBlock(c.before, 'p', block('new')), c.after));
  }

  test('replacing twice gives the same file (idempotent)', () => {
    const once = replaceManagedBlock('Host a\n', 'p', block('new'));
    assert.equal(replaceManagedBlock(once, 'p', block('new')), once);
  });

  test('a BEGIN without END is refused, naming the line, rather than eating the rest of the file', () => {
    assert.throws(() => replaceManagedBlock('Host a\n# BEGIN Jumpgate p\nHost b\n', 'p', block('new'), '/home/al/.ssh/config'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SSH_CONFIG_UNBALANCED');
      assert.match(err.message, /^\/home\/al\/\.ssh\/config:2: "# BEGIN Jumpgate p" has no matching "# END Jumpgate p" line$/);
      return true;
    });
  });
});

describe('installSshConfigBlock', () => {
  const tmp = tempDir('ssh-config-install');
  after(() => tmp.cleanup());
  let n = 0;
  const pathsIn = (home: string) => new TshPaths({ env: { TSH_HOME: join(home, '.tsh') }, homedir: home, platform: 'linux' });
  const freshHome = () => {
    const home = join(tmp.dir, `home${++n}`);
    mkdirSync(home);
    return home;
  };
  const block = renderSshConfigBlock(base);

  test('creates ~/.ssh (0700) and the config (0600) when absent; no backup of nothing', () => {
    const home = freshHome();
    const r = installSshConfigBlock(pathsIn(home), base.profileName, block);
    assert.equal(r.changed, true);
    assert.equal(r.backup, undefined);
    assert.equal(readFileSync(join(home, '.ssh', 'config'), 'utf8'), block);
    assert.equal(lstatSync(join(home, '.ssh')).mode & 0o777, 0o700);
    assert.equal(lstatSync(join(home, '.ssh', 'config')).mode & 0o777, 0o600);
  });

  test('backs up the original once, keeps its mode, and never touches the other lines', () => {
    const home = freshHome();
    mkdirSync(join(home, '.ssh'), { mode: 0o700 });
    const file = join(home, '.ssh', 'config');
    const original = 'Host mine\n    User me\n    Port 2200\n';
    writeFileSync(file, original, { mode: 0o644 });
    chmodSync(file, 0o644);
    const paths = pathsIn(home);
    const first = installSshConfigBlock(paths, base.profileName, block);
    assert.equal(first.backup, join(home, '.ssh', 'config.jumpgate-backup'));
    assert.equal(readFileSync(first.backup!, 'utf8'), original);
    assert.equal(readFileSync(file, 'utf8'), `${block}\n${original}`);
    assert.equal(lstatSync(file).mode & 0o777, 0o644, 'mode kept');
    const again = installSshConfigBlock(paths, base.profileName, block);
    assert.equal(again.changed, false, 'same block: file not rewritten');
    const other = installSshConfigBlock(paths, base.profileName, renderSshConfigBlock({ ...base, nodeNames: ['node3'] }));
    assert.equal(other.changed, true);
    assert.equal(other.backup, undefined, 'the backup is made once');
    assert.equal(readFileSync(first.backup!, 'utf8'), original, 'and never overwritten');
    assert.equal(readFileSync(file, 'utf8').split('# BEGIN Jumpgate').length, 2, 'one block');
    assert.ok(readFileSync(file, 'utf8').endsWith(`\n${original}`));
  });

  test('writes through a symlinked config (dotfile managers) instead of replacing the link', () => {
    const home = freshHome();
    mkdirSync(join(home, '.ssh'));
    const target = join(home, 'dotfiles-ssh-config');
    writeFileSync(target, 'Host x\n');
    symlinkSync(target, join(home, '.ssh', 'config'));
    const r = installSshConfigBlock(pathsIn(home), base.profileName, block);
    assert.equal(r.path, target);
    assert.ok(lstatSync(join(home, '.ssh', 'config')).isSymbolicLink());
    assert.equal(readFileSync(target, 'utf8'), `${block}\nHost x\n`);
  });

  const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

  test('a full disk (injected ENOSPC at the config write) leaves the old file intact and says so', () => {
    const home = freshHome();
    mkdirSync(join(home, '.ssh'));
    const file = join(home, '.ssh', 'config');
    writeFileSync(file, 'Host keep\n');
    const failing: typeof writeFileAtomic = (path, data, mode) => {
      if (path === file) throw writeError(path, enospc());
      writeFileAtomic(path, data, mode);
    };
    assert.throws(() => installSshConfigBlock(pathsIn(home), base.profileName, block, { write: failing }), /the disk is full; the previous file is unchanged/);
    assert.equal(readFileSync(file, 'utf8'), 'Host keep\n');
  });

  test('a really full file system (a 64 KiB tmpfs) leaves the old file intact and no temp file behind', () => {
    const home = freshHome();
    // Mounting needs root (CI runs as root); elsewhere the same failure is injected into the real writer's first write.
    const mounted = process.getuid?.() === 0 && tryMount(home);
    try {
      mkdirSync(join(home, '.ssh'));
      const file = join(home, '.ssh', 'config');
      const original = `Host keep\n${'    # padding\n'.repeat(200)}`;
      writeFileSync(file, original);
      writeFileSync(join(home, '.ssh', 'config.jumpgate-backup'), original);
      let write: typeof writeFileAtomic | undefined;
      if (mounted) {
        const filler = join(home, 'filler');
        for (const size of [1024, 1]) {
          try {
            for (;;) writeFileSync(filler, Buffer.alloc(size), { flag: 'a' });
          } catch (err) {
            assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
          }
        }
      } else {
        write = (path) => {
          throw writeError(path, enospc());
        };
      }
      assert.throws(() => installSshConfigBlock(pathsIn(home), base.profileName, block, write ? { write } : {}), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'DISK_FULL');
        return true;
      });
      assert.equal(readFileSync(file, 'utf8'), original);
      assert.deepEqual(readdirSync(join(home, '.ssh')).sort(), ['config', 'config.jumpgate-backup']);
    } finally {
      if (mounted) execFileSync('umount', [home]);
    }
  });
});

function tryMount(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    return existsSync(dir);
  } catch {
    return false;
  }
}

describe('unreadConfigWarning: the file tsh writes vs the one OpenSSH reads', () => {
  test('OpenSSH takes ~/.ssh/config from the passwd entry, not $HOME (the premise, with real ssh -G)', async () => {
    const ssh = requireTool('ssh', 'apt-get install -y openssh-client');
    const tmp = tempDir('ssh-config-home');
    try {
      mkdirSync(join(tmp.dir, '.ssh'));
      writeFileSync(join(tmp.dir, '.ssh', 'config'), 'Host probe-host\n    User from-home-env\n');
      const g = await run(ssh, ['-G', 'probe-host'], { env: { ...process.env, HOME: tmp.dir } });
      assert.equal(g.code, 0, g.stderr);
      assert.doesNotMatch(g.stdout, /^user from-home-env$/m);
    } finally {
      tmp.cleanup();
    }
  });

  test('HOME elsewhere than the passwd home: a warning naming both files and the fix', () => {
    const tmp = tempDir('ssh-config-warn');
    try {
      const paths = new TshPaths({ env: {}, homedir: tmp.dir, platform: 'linux' });
      const account = userInfo().homedir;
      const w = unreadConfigWarning(paths, account);
      assert.ok(w);
      assert.ok(w.includes(join(tmp.dir, '.ssh', 'config')), w);
      assert.ok(w.includes(`OpenSSH reads ${join(account, '.ssh', 'config')}`), w);
      assert.match(w, /-F |Include /);
    } finally {
      tmp.cleanup();
    }
  });

  test('no warning when HOME is the passwd home (also through a symlink), on Windows, or when the passwd home is unknown', () => {
    const tmp = tempDir('ssh-config-same');
    try {
      const real = join(tmp.dir, 'real');
      mkdirSync(real);
      symlinkSync(real, join(tmp.dir, 'link'));
      assert.equal(unreadConfigWarning(new TshPaths({ env: {}, homedir: real, platform: 'linux' }), real), undefined);
      assert.equal(unreadConfigWarning(new TshPaths({ env: {}, homedir: join(tmp.dir, 'link'), platform: 'linux' }), real), undefined);
      assert.equal(unreadConfigWarning(new TshPaths({ env: {}, homedir: 'C:\\Users\\al', platform: 'win32' }), '/root'), undefined);
      assert.equal(unreadConfigWarning(new TshPaths({ env: {}, homedir: real, platform: 'linux' }), undefined), undefined);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('overriddenBlockWarning: OpenSSH (ssh -G) must see the block', () => {
  const cases: Array<[string, string, RegExp | undefined]> = [
    ['the block alone takes effect', '', undefined],
    ['a Host * section with ProxyCommand before the block wins', 'Host *\n    ProxyCommand none\n', /its ProxyCommand is "none"/],
    ['an earlier IdentitiesOnly no wins', 'Match all\n    IdentitiesOnly no\n', /IdentitiesOnly is off/],
    ['a section for other hosts does not matter', 'Host other.test\n    ProxyCommand none\n', undefined],
  ];
  for (const [name, before, want] of cases) {
    test(name, () => {
      const ssh = requireTool('ssh', 'apt-get install -y openssh-client');
      const tmp = tempDir('ssh-config-override');
      try {
        const cfg = join(tmp.dir, 'config');
        writeFileSync(cfg, before + renderSshConfigBlock(base));
        const w = overriddenBlockWarning(base, { env: process.env, ssh, args: ['-F', cfg] });
        if (want === undefined) assert.equal(w, undefined);
        else {
          assert.match(w ?? '', want);
          assert.match(w ?? '', /ssh -G jumpgate-probe\.example\.org/);
        }
      } finally {
        tmp.cleanup();
      }
    });
  }

  test('no ssh installed: nothing to warn about', () => {
    assert.equal(overriddenBlockWarning(base, { env: process.env, ssh: '/nonexistent/ssh' }), undefined);
  });
});
