// Build the Worker: `worker-build --release` in the repo root, with wasm-bindgen from
// ~/.cargo/bin and esbuild from node_modules (worker-build would otherwise try to download
// them). wasm-opt is turned off in Cargo.toml's [package.metadata.wasm-pack.profile.release].
// The wasm's function names are dropped after the build (Cargo.toml's [profile.release] says why
// the link keeps them).
// Output: build/index.js and its .wasm. Exits non-zero on failure.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, run, step, which } from './setup.mjs';
import { dropCustomSections } from './wasm-sections.mjs';

export const BUILD_DIR = join(ROOT, 'build');
export const BUILD_ENTRY = join(BUILD_DIR, 'index.js');
export const BUILD_WASM = join(BUILD_DIR, 'index_bg.wasm');
/**
 * Custom sections not shipped: the function names (887 KB of the 2.7 MB raw wasm; they only name
 * wasm frames in stack traces, which `strip = true` builds went without too). `producers` stays:
 * worker-build writes the workers-rs version into it, by which Cloudflare tells what built a Worker.
 */
export const UNSHIPPED_SECTIONS = ['name'];

/** Paths of the helper binaries worker-build is pointed at. Throws if one is missing. */
export function buildTools() {
  const wasmBindgen = process.env.WASM_BINDGEN_BIN || which('wasm-bindgen');
  const workerBuild = which('worker-build');
  const esbuild = process.env.ESBUILD_BIN || join(ROOT, 'node_modules', '.bin', 'esbuild');
  if (!workerBuild) throw new Error('worker-build not found: run `node scripts/setup.mjs`');
  if (!wasmBindgen) throw new Error('wasm-bindgen not found: run `node scripts/setup.mjs`');
  if (!existsSync(esbuild)) throw new Error(`esbuild not found at ${esbuild}: run \`npm ci\``);
  return { workerBuild, wasmBindgen, esbuild };
}

/** Run worker-build --release; rejects on failure or when build/index.js is not produced. */
export async function buildWorker() {
  const { workerBuild, wasmBindgen, esbuild } = buildTools();
  const t0 = Date.now();
  step('build: worker-build --release');
  await run(workerBuild, ['--release'], {
    env: { WASM_BINDGEN_BIN: wasmBindgen, ESBUILD_BIN: esbuild },
  });
  if (!existsSync(BUILD_ENTRY)) throw new Error(`worker-build finished but ${BUILD_ENTRY} is missing`);
  const dropped = dropCustomSections(BUILD_WASM, UNSHIPPED_SECTIONS);
  if (dropped.length) step(`build: dropped ${dropped.map((d) => `${d.name} (${d.bytes} B)`).join(', ')} from the wasm`);
  step(`build: done in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
}

/** The front-ends served as static assets: each has its own build script writing into public/. */
export const FRONTENDS = ['widget', 'console'];

/** Bundle the widget and the console (each build checks its own size budget). */
export async function buildFrontends() {
  for (const name of FRONTENDS) {
    const script = join(ROOT, name, 'build.mjs');
    if (!existsSync(script)) continue;
    step(`build: ${name}`);
    await run(process.execPath, [script]);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  buildWorker().then(buildFrontends).catch((e) => {
    console.error(`[parley] build failed: ${e.message}`);
    process.exit(1);
  });
}
