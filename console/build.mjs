// Builds the agent console: console/src/main.ts and app.css with the repo's esbuild into
// public/console/ (index.html, app.js, app.css), served by the Worker at /console/.
//
//   node console/build.mjs            one production build (minified); exits 1 over budget
//   node console/build.mjs --watch    rebuild on change (development; not minified)
//
// Budgets (gzip -9): app.js 45 KB, app.css 10 KB. PARLEY_CONSOLE_BUDGET_SCALE scales them.
//
// No framework: plain TypeScript with small DOM helpers. esbuild strips types; it does not
// type-check.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const KB = 1024;
const BUDGETS = { 'app.js': 45 * KB, 'app.css': 10 * KB };
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
export const OUT_DIR = join(ROOT, 'public', 'console');

const common = {
  bundle: true,
  logLevel: 'warning',
  legalComments: 'none',
  target: ['chrome100', 'firefox100', 'safari15.4', 'edge100'],
};

function hash(bytes) {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 10);
}

/** One build; returns sizes of the outputs { file: { raw, gzip } }. */
export async function buildConsole({ minify = true } = {}) {
  mkdirSync(OUT_DIR, { recursive: true });
  const js = await esbuild.build({
    ...common,
    entryPoints: [join(HERE, 'src', 'main.ts')],
    format: 'iife',
    minify,
    sourcemap: false,
    write: false,
    define: { 'process.env.NODE_ENV': minify ? '"production"' : '"development"' },
  });
  const css = await esbuild.build({
    ...common,
    entryPoints: [join(HERE, 'src', 'app.css')],
    loader: { '.css': 'css' },
    minify,
    write: false,
  });
  const jsBytes = js.outputFiles[0].contents;
  const cssBytes = css.outputFiles[0].contents;
  writeFileSync(join(OUT_DIR, 'app.js'), jsBytes);
  writeFileSync(join(OUT_DIR, 'app.css'), cssBytes);
  // Cache-busting query strings so a new deploy is picked up without a hard reload.
  const html = readFileSync(join(HERE, 'index.html'), 'utf8')
    .replace('__CSS_HASH__', hash(cssBytes))
    .replace('__JS_HASH__', hash(jsBytes));
  writeFileSync(join(OUT_DIR, 'index.html'), html);
  const scale = Number(process.env.PARLEY_CONSOLE_BUDGET_SCALE || 1);
  const sizes = {};
  for (const [name, bytes] of [['app.js', jsBytes], ['app.css', cssBytes], ['index.html', Buffer.from(html)]]) {
    const gzip = gzipSync(bytes, { level: 9 }).length;
    const budget = BUDGETS[name] ? Math.floor(BUDGETS[name] * scale) : null;
    sizes[name] = { raw: bytes.length, gzip, budget, ok: budget === null || gzip <= budget };
  }
  return sizes;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const watch = process.argv.includes('--watch');
  const report = (sizes) => {
    const parts = Object.entries(sizes).map(([f, s]) =>
      `${f} ${s.raw} B (gzip ${s.gzip} B${s.budget ? ` of ${s.budget}${s.ok ? '' : ' OVER BUDGET'}` : ''})`);
    console.log(`[parley] console built into public/console: ${parts.join(', ')}`);
    return Object.values(sizes).every((s) => s.ok);
  };
  try {
    const ok = report(await buildConsole({ minify: !watch }));
    if (!ok && !watch) {
      console.error('[parley] console: over its size budget');
      process.exit(1);
    }
  } catch (e) {
    console.error(`[parley] console build failed: ${e.message}`);
    process.exit(1);
  }
  if (watch) {
    const { watch: fsWatch } = await import('node:fs');
    let timer;
    fsWatch(HERE, { recursive: true }, (_event, file) => {
      if (!file || file.startsWith('node_modules')) return;
      clearTimeout(timer);
      timer = setTimeout(() => buildConsole({ minify: false }).then(report, (e) => console.error(e.message)), 100);
    });
  }
}
