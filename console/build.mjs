// Builds the agent console: console/src/main.ts and app.css with the repo's esbuild into
// public/console/ (index.html, app.js, chunks/, app.css, pages.css), served by the Worker at /console/.
//
//   node console/build.mjs            one production build (minified); exits 1 over budget
//   node console/build.mjs --watch    rebuild on change (development; not minified)
//
// app.js is an ES module. The pages besides the inbox (search, reports, agents, site
// settings, export; console/src/ui/admin/) are a chunk of their own, loaded with import() the
// first time one is opened, together with their stylesheet (pages.css): every agent loads the
// console at sign-in, few open those pages, and with their strings in two languages they would
// otherwise grow what sign-in loads by ~60%.
//
// Budgets (gzip -9): app.js 45 KB, counted together with the shared chunks it imports (all of
// what sign-in loads); the pages chunk 45 KB; app.css 10 KB; pages.css 10 KB.
// PARLEY_CONSOLE_BUDGET_SCALE scales them.
//
// No framework: plain TypeScript with small DOM helpers. esbuild strips types; it does not
// type-check.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const KB = 1024;
/** Budgets by output name (chunks/<name>-<hash>.js by <name>); app.js includes its static imports. */
const BUDGETS = { 'app.js': 45 * KB, 'chunks/admin': 45 * KB, 'app.css': 10 * KB, 'pages.css': 10 * KB };
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

function budgetFor(name) {
  if (BUDGETS[name]) return BUDGETS[name];
  const chunk = /^chunks\/([a-z]+)-/.exec(name)?.[1];
  return chunk ? BUDGETS[`chunks/${chunk}`] ?? null : null;
}

/** One build; returns sizes of the outputs { file: { raw, gzip, budget, ok } }. */
export async function buildConsole({ minify = true } = {}) {
  mkdirSync(OUT_DIR, { recursive: true });
  const css = async (file) => (await esbuild.build({
    ...common,
    entryPoints: [join(HERE, 'src', file)],
    loader: { '.css': 'css' },
    minify,
    write: false,
  })).outputFiles[0].contents;
  const cssBytes = await css('app.css');
  const pagesCssBytes = await css('pages.css');
  const pagesCss = `./pages.css?v=${hash(pagesCssBytes)}`;
  const js = await esbuild.build({
    ...common,
    entryPoints: { app: join(HERE, 'src', 'main.ts') },
    format: 'esm',
    splitting: true,
    outdir: OUT_DIR,
    entryNames: '[name]',
    chunkNames: 'chunks/[name]-[hash]',
    minify,
    sourcemap: false,
    write: false,
    metafile: true,
    define: { 'process.env.NODE_ENV': minify ? '"production"' : '"development"', __PAGES_CSS__: JSON.stringify(pagesCss) },
  });
  const outputs = js.outputFiles.map((f) => [relative(OUT_DIR, f.path).split('\\').join('/'), f.contents]);
  const jsBytes = outputs.find(([name]) => name === 'app.js')[1];
  // Chunks of earlier builds go: their names change with their content.
  rmSync(join(OUT_DIR, 'chunks'), { recursive: true, force: true });
  for (const [name, bytes] of outputs) {
    mkdirSync(dirname(join(OUT_DIR, name)), { recursive: true });
    writeFileSync(join(OUT_DIR, name), bytes);
  }
  writeFileSync(join(OUT_DIR, 'app.css'), cssBytes);
  writeFileSync(join(OUT_DIR, 'pages.css'), pagesCssBytes);
  // Cache-busting query strings so a new deploy is picked up without a hard reload (chunk
  // names carry their own hash, and app.js names them).
  const html = readFileSync(join(HERE, 'index.html'), 'utf8')
    .replace('__CSS_HASH__', hash(cssBytes))
    .replace('__JS_HASH__', hash(jsBytes));
  writeFileSync(join(OUT_DIR, 'index.html'), html);
  const scale = Number(process.env.PARLEY_CONSOLE_BUDGET_SCALE || 1);
  const gz = new Map([...outputs, ['app.css', cssBytes], ['pages.css', pagesCssBytes], ['index.html', Buffer.from(html)]].map(([n, b]) => [n, { raw: b.length, gzip: gzipSync(b, { level: 9 }).length }]));
  // What loading app.js loads with it: the chunks it imports statically, and theirs.
  const meta = Object.fromEntries(Object.entries(js.metafile.outputs).map(([p, o]) => [relative(OUT_DIR, p).split('\\').join('/'), o]));
  const initial = new Set(['app.js']);
  for (const name of initial) {
    for (const imp of meta[name]?.imports ?? []) {
      const target = relative(OUT_DIR, join(ROOT, imp.path)).split('\\').join('/');
      if (imp.kind === 'import-statement' && meta[target]) initial.add(target);
    }
  }
  const sizes = {};
  for (const [name, { raw, gzip }] of gz) {
    const base = budgetFor(name);
    const budget = base ? Math.floor(base * scale) : null;
    const total = name === 'app.js' ? [...initial].reduce((n, f) => n + gz.get(f).gzip, 0) : gzip;
    sizes[name] = { raw, gzip, budget, ok: budget === null || total <= budget, ...(name === 'app.js' ? { withImports: total } : {}) };
  }
  return sizes;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const watch = process.argv.includes('--watch');
  const report = (sizes) => {
    const parts = Object.entries(sizes).map(([f, s]) =>
      `${f} ${s.raw} B (gzip ${s.gzip} B${s.withImports ? `, ${s.withImports} B with its imports` : ''}${s.budget ? ` of ${s.budget}${s.ok ? '' : ' OVER BUDGET'}` : ''})`);
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
