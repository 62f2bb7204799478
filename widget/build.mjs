// Build the visitor widget with esbuild into the Worker's static assets:
//   public/widget.js       the loader a site embeds        (budget: 5 KB gzip)
//   public/widget/chat.js  the full chat, loaded on demand  (budget: 35 KB gzip)
// Prints raw and gzip sizes and exits 1 when either is over its budget.
//
//   node widget/build.mjs           build, print sizes, enforce budgets
//   node widget/build.mjs --sizes   print and check the sizes of the files already built
//
// The bench can `import { measureWidget } from './widget/build.mjs'` for the same numbers.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync, brotliCompressSync, constants as zlib } from 'node:zlib';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const SRC = join(HERE, 'src');

export const KB = 1024;
export const TARGETS = [
  { name: 'loader', entry: join(SRC, 'loader.ts'), out: join(ROOT, 'public', 'widget.js'), budget: 5 * KB },
  { name: 'chat', entry: join(SRC, 'chat', 'index.ts'), out: join(ROOT, 'public', 'widget', 'chat.js'), budget: 35 * KB },
];

/** Imports of .css files become their minified text. */
const cssAsText = (transform) => ({
  name: 'css-as-text',
  setup(b) {
    b.onLoad({ filter: /\.css$/ }, async (args) => {
      const source = readFileSync(args.path, 'utf8');
      const { code } = await transform(source, { loader: 'css', minify: true });
      return { contents: code.trim(), loader: 'text' };
    });
  },
});

/**
 * Raw, gzip (level 9) and brotli sizes of the built files, with their budgets.
 * PARLEY_WIDGET_BUDGET_SCALE (default 1) scales the budgets, to test the failure path.
 */
export function measureWidget() {
  const scale = Number(process.env.PARLEY_WIDGET_BUDGET_SCALE || 1);
  return TARGETS.map((t0) => {
    const t = { ...t0, budget: Math.floor(t0.budget * scale) };
    if (!existsSync(t.out)) return { name: t.name, file: relative(ROOT, t.out), budget: t.budget, missing: true, ok: false };
    const bytes = readFileSync(t.out);
    const gzip = gzipSync(bytes, { level: 9 }).length;
    const brotli = brotliCompressSync(bytes, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11 } }).length;
    return { name: t.name, file: relative(ROOT, t.out), raw: bytes.length, gzip, brotli, budget: t.budget, ok: gzip <= t.budget };
  });
}

export function printSizes(rows, log = console.log) {
  const kb = (n) => `${(n / KB).toFixed(2)} KB`;
  log('widget sizes (gzip -9; budget applies to gzip):');
  for (const r of rows) {
    if (r.missing) {
      log(`  ${r.name.padEnd(7)} ${r.file}: missing (run node widget/build.mjs)`);
      continue;
    }
    const verdict = r.ok ? 'ok' : 'OVER BUDGET';
    log(`  ${r.name.padEnd(7)} ${r.file.padEnd(22)} raw ${kb(r.raw).padStart(9)}  gzip ${kb(r.gzip).padStart(8)}  brotli ${kb(r.brotli).padStart(8)}  budget ${kb(r.budget).padStart(8)}  ${verdict}`);
  }
}

/** Build both bundles; resolves to the measured sizes. */
export async function buildWidget() {
  const esbuild = await import('esbuild');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const common = {
    bundle: true,
    minify: true,
    format: 'iife',
    target: ['es2020'],
    legalComments: 'none',
    // ASCII output: a host page in another encoding (GBK, Shift_JIS…) still reads it right.
    charset: 'ascii',
    write: true,
    logLevel: 'warning',
    plugins: [cssAsText(esbuild.transform)],
  };
  const [loader, chat] = TARGETS;
  mkdirSync(dirname(chat.out), { recursive: true });
  await esbuild.build({
    ...common,
    entryPoints: [chat.entry],
    outfile: chat.out,
    define: { __VERSION__: JSON.stringify(pkg.version) },
  });
  // The loader names the chat with a hash of its content, so browsers never run a stale one.
  const hash = createHash('sha256').update(readFileSync(chat.out)).digest('hex').slice(0, 10);
  await esbuild.build({
    ...common,
    entryPoints: [loader.entry],
    outfile: loader.out,
    define: {
      __VERSION__: JSON.stringify(pkg.version),
      __CHAT_URL__: JSON.stringify(`widget/chat.js?v=${hash}`),
    },
  });
  return measureWidget();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const sizesOnly = process.argv.includes('--sizes');
  (sizesOnly ? Promise.resolve(measureWidget()) : buildWidget()).then(
    (rows) => {
      printSizes(rows);
      const bad = rows.filter((r) => !r.ok);
      if (bad.length) {
        console.error(`widget: ${bad.map((r) => r.name).join(', ')} over budget or missing`);
        process.exit(1);
      }
    },
    (e) => {
      console.error(`widget build failed: ${e.message}`);
      process.exit(1);
    },
  );
}
