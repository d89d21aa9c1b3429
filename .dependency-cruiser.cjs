/**
 * Import direction (ARCHITECTURE.md): cli → client → shared, cli → server → shared.
 * `npm run lint:deps` checks it; `npm test` runs it before the tests.
 * The shared layers are everything under src/ except cli/, client/ and server/.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'server-not-client',
      comment: 'server/ never imports client/ or cli/: the two sides meet only in the shared modules (shared/, api/, ...)',
      severity: 'error',
      from: { path: '^src/server/' },
      to: { path: '^src/(client|cli)/' },
    },
    {
      name: 'client-not-server',
      comment: 'client/ never imports server/ or cli/: move what both sides need to src/shared/ (or api/)',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { path: '^src/(server|cli)/' },
    },
    {
      name: 'shared-not-sides',
      comment: 'the shared modules never import cli/, client/ or server/',
      severity: 'error',
      from: { path: '^src/(shared|sshcert|sshwire|sshconn|net|config|api|util)/|^src/errors\\.ts$' },
      to: { path: '^src/(cli|client|server)/' },
    },
    {
      name: 'client-net-not-config',
      comment: 'client/ and net/ never import config/ (the server config): parsers both sides use live in src/shared/',
      severity: 'error',
      from: { path: '^src/(client|net)/' },
      to: { path: '^src/config/' },
    },
    {
      name: 'webui-alone',
      comment: 'the browser front end (src/webui) imports only itself and browser packages: nothing of the server or tsh reaches the page',
      severity: 'error',
      from: { path: '^src/webui/' },
      to: { path: '^src/(?!webui/)' },
    },
    {
      name: 'no-circular',
      comment: 'no import cycles: split the module or move the shared part down a layer',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import that resolves to nothing (a typo, or a package missing from package.json)',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
