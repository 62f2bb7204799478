// `npm test` (after scripts/setup.mjs has installed the tools and built the Worker): every check
// in order, stopping at the first failure with a non-zero exit and a summary.
//
//   node scripts/test.mjs                   all steps
//   node scripts/test.mjs --only=fmt,node   just these steps (names as printed)
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { capture, ROOT, run } from './setup.mjs';

const TESTS = join(ROOT, 'tests');

/** Node test files: tests/*.test.mjs, then tests/e2e/*.test.mjs (relative paths, sorted). */
export function nodeTestFiles() {
  const files = [];
  for (const dir of ['tests', join('tests', 'e2e')]) {
    const abs = join(ROOT, dir);
    if (!existsSync(abs)) continue;
    for (const f of readdirSync(abs).sort()) {
      if (f.endsWith('.test.mjs')) files.push(join(dir, f));
    }
  }
  return files;
}

/** Fail when parley-core's normal dependency tree (any target) holds worker or wasm-bindgen. */
async function checkCoreDeps() {
  const args = ['tree', '-p', 'parley-core', '-e', 'normal', '--target', 'all', '--prefix', 'none'];
  const out = capture('cargo', args);
  if (out === null) {
    await run('cargo', args); // shows cargo's error
    throw new Error('cargo tree failed');
  }
  const banned = new Set();
  for (const line of out.split('\n')) {
    const name = line.trim().split(' ')[0];
    if (/^(worker|worker-.+|wasm-bindgen|wasm-bindgen-.+)$/.test(name)) banned.add(line.trim());
  }
  if (banned.size > 0) {
    console.error('parley-core must stay pure Rust, but its dependency tree contains:');
    for (const b of banned) console.error(`  ${b}`);
    console.error('Run `cargo tree -p parley-core -e normal -i <crate>` to see what pulls it in.');
    throw new Error(`parley-core depends on ${[...banned].map((b) => b.split(' ')[0]).join(', ')}`);
  }
  console.log(`parley-core: ${out.trim().split('\n').length} normal dependencies, no worker / wasm-bindgen`);
}

// Closing lines of test runners, repeated at the very end so the summary of what ran is last.
const RUNNER_SUMMARY = /^(test result: |# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) |ℹ (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) )/;

function summaryCollector(into) {
  let buf = '';
  return (chunk) => {
    buf += chunk.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (RUNNER_SUMMARY.test(line.trim())) into.push(line.trim());
    }
  };
}

export const STEPS = [
  { name: 'fmt', title: 'cargo fmt --all -- --check', run: () => run('cargo', ['fmt', '--all', '--', '--check']) },
  {
    name: 'clippy',
    title: 'cargo clippy --workspace --all-targets -- -D warnings',
    run: () => run('cargo', ['clippy', '--workspace', '--all-targets', '--', '-D', 'warnings']),
  },
  {
    name: 'clippy-wasm',
    title: 'cargo clippy -p parley --target wasm32-unknown-unknown -- -D warnings',
    run: () => run('cargo', ['clippy', '-p', 'parley', '--target', 'wasm32-unknown-unknown', '--', '-D', 'warnings']),
  },
  {
    name: 'core-test',
    title: 'cargo test -p parley-core',
    summary: true,
    run: (opts) => run('cargo', ['test', '-p', 'parley-core'], opts),
  },
  {
    // The Worker shell's own unit tests (what runs natively: no runtime bindings).
    name: 'worker-unit',
    title: 'cargo test -p parley --lib',
    summary: true,
    run: (opts) => run('cargo', ['test', '-p', 'parley', '--lib'], opts),
  },
  {
    name: 'core-wasm',
    title: 'cargo check -p parley-core --target wasm32-unknown-unknown',
    run: () => run('cargo', ['check', '-p', 'parley-core', '--target', 'wasm32-unknown-unknown']),
  },
  { name: 'core-deps', title: 'parley-core has no worker / wasm-bindgen dependency', run: checkCoreDeps },
  {
    // esbuild only strips types; this checks them (the widget, the console, and web/wire.ts).
    name: 'types',
    title: 'tsc -p widget and tsc -p console (type check, no output)',
    run: async () => {
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      for (const app of ['widget', 'console']) await run(process.execPath, [tsc, '-p', app]);
    },
  },
  {
    // The benchmark's load generator is a workspace of its own (tokio does not build for
    // wasm32); this keeps it compiling and clean. Its target dir stays warm between runs.
    name: 'loadgen',
    title: 'cargo fmt --check and cargo clippy --release -- -D warnings in bench/loadgen',
    run: async () => {
      const manifest = ['--manifest-path', join('bench', 'loadgen', 'Cargo.toml')];
      await run('cargo', ['fmt', ...manifest, '--', '--check']);
      await run('cargo', ['clippy', '--release', '--locked', '--all-targets', ...manifest, '--', '-D', 'warnings']);
    },
  },
  {
    name: 'node',
    title: 'node --test --test-concurrency=1 tests/*.test.mjs tests/e2e/*.test.mjs',
    summary: true,
    run: async (opts) => {
      const files = nodeTestFiles();
      if (files.length === 0) {
        console.log('no tests/*.test.mjs yet: skipped');
        return 'skipped';
      }
      rmSync(join(TESTS, '.tmp'), { recursive: true, force: true });
      await run(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=600000', ...files], opts);
    },
  },
];

export async function runTests({ only } = {}) {
  const steps = only ? STEPS.filter((s) => only.includes(s.name)) : STEPS;
  if (only && steps.length !== only.length) {
    throw new Error(`unknown step in --only; steps are: ${STEPS.map((s) => s.name).join(', ')}`);
  }
  const results = [];
  const summaries = [];
  let failed = null;
  for (const s of steps) {
    console.log(`\n[parley] ▶ ${s.name}: ${s.title}`);
    const t0 = Date.now();
    const lines = [];
    const collect = summaryCollector(lines);
    let status = 'ok';
    try {
      const r = await s.run(s.summary ? { onStdout: collect, onStderr: collect } : {});
      if (r === 'skipped') status = 'skipped';
    } catch (e) {
      status = 'FAILED';
      failed = { step: s, error: e };
    }
    const secs = (Date.now() - t0) / 1000;
    results.push({ name: s.name, status, secs });
    summaries.push(...lines);
    console.log(`[parley] ${status === 'FAILED' ? '✗' : '✓'} ${s.name} ${status} in ${secs.toFixed(1)}s`);
    if (failed) break;
  }

  console.log('\n[parley] test steps:');
  for (const r of results) console.log(`  ${r.status.padEnd(8)} ${r.name.padEnd(12)} ${r.secs.toFixed(1)}s`);
  const notRun = steps.slice(results.length).map((s) => s.name);
  if (notRun.length) console.log(`  not run: ${notRun.join(', ')}`);
  if (failed) {
    console.error(`\n[parley] FAILED at ${failed.step.name}: ${failed.error.message}`);
  }
  if (summaries.length) {
    console.log('');
    for (const l of summaries) console.log(l);
  }
  return !failed;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const onlyArg = process.argv.find((a) => a.startsWith('--only='));
  const only = onlyArg ? onlyArg.slice('--only='.length).split(',').filter(Boolean) : undefined;
  runTests({ only }).then(
    (ok) => process.exit(ok ? 0 : 1),
    (e) => {
      console.error(`[parley] test failed: ${e.message}`);
      process.exit(1);
    },
  );
}
