// The web UI's front end (src/webui/) for the browser: one esbuild bundle of
// main.ts (xterm.js included) and its CSS, with content-hashed names in
// dist/webui/assets/, and dist/webui/index.html naming them. The proxy
// serves them at /web (src/server/web/app.ts). Kept apart from the programs'
// bundles (scripts/build-bundle.mjs): nothing of it reaches tsh.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

/** Builds dist/webui; resolves with the asset names. */
export async function buildWebUi({ outdir = 'dist/webui' } = {}) {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(`${outdir}/assets`, { recursive: true });
  const result = await build({
    entryPoints: ['src/webui/main.ts'],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: ['chrome110', 'firefox110', 'safari16'],
    minify: true,
    sourcemap: false,
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    outdir: `${outdir}/assets`,
    metafile: true,
    logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
  const js = outputs.find((n) => n.endsWith('.js'));
  const css = outputs.find((n) => n.endsWith('.css'));
  if (!js || !css) throw new Error(`the web UI bundle is missing its ${js ? 'CSS' : 'script'}: ${outputs.join(', ')}`);
  const html = readFileSync('src/webui/index.html', 'utf8').replace('{{JS}}', js).replace('{{CSS}}', css);
  writeFileSync(`${outdir}/index.html`, html);
  return { js, css };
}
