// Idempotent set-up: npm packages, the wasm32 target, worker-build and wasm-bindgen-cli at
// pinned versions, then the Worker build. Every step checks first and skips what is present,
// so a warm run takes a few seconds. Uses node built-ins only (it installs the npm packages).
//
//   node scripts/setup.mjs            set up and build
//   node scripts/setup.mjs --no-build set up only
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
export const CARGO_BIN = join(process.env.CARGO_HOME || join(homedir(), '.cargo'), 'bin');
export const WORKER_BUILD_VERSION = '0.8.7';
const NPM_MARKER = join(ROOT, 'node_modules', '.parley-setup');

/** process.env with ~/.cargo/bin first on PATH (plus any extra variables). */
export function toolEnv(extra = {}) {
  const parts = (process.env.PATH || '').split(delimiter).filter((p) => p && p !== CARGO_BIN);
  return { ...process.env, PATH: [CARGO_BIN, ...parts].join(delimiter), ...extra };
}

/** One progress line, prefixed so it stands out between tool output. */
export function step(msg) {
  console.log(`[parley] ${msg}`);
}

/**
 * Run a command with output streamed to this process's stdout/stderr. Resolves when it exits 0;
 * rejects with an Error naming the command and its exit status otherwise.
 * opts: cwd (default ROOT), env (merged over toolEnv()), stdio, and onStdout/onStderr(chunk)
 * to observe the output while it is still streamed.
 */
export function run(cmd, args = [], opts = {}) {
  const { cwd = ROOT, env = {}, onStdout, onStderr } = opts;
  const observe = Boolean(onStdout || onStderr);
  const stdio = opts.stdio ?? (observe ? ['inherit', 'pipe', 'pipe'] : 'inherit');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: toolEnv(env), stdio });
    if (observe) {
      child.stdout?.on('data', (c) => { process.stdout.write(c); onStdout?.(c); });
      child.stderr?.on('data', (c) => { process.stderr.write(c); onStderr?.(c); });
    }
    child.on('error', (e) => reject(new Error(`${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`\`${[cmd, ...args].join(' ')}\` failed (${signal ? `signal ${signal}` : `exit ${code}`})`));
    });
  });
}

/** Run a command quietly and return its stdout, or null if it cannot start or exits non-zero. */
export function capture(cmd, args = [], opts = {}) {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd ?? ROOT,
    env: toolEnv(opts.env),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error || r.status !== 0) return null;
  return r.stdout;
}

/** Absolute path of an executable found on toolEnv()'s PATH, or null. */
export function which(name) {
  for (const dir of toolEnv().PATH.split(delimiter)) {
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch { /* not here */ }
  }
  return null;
}

function mtime(p) {
  try { return statSync(p).mtimeMs; } catch { return 0; }
}

function npmInputsHash() {
  const h = createHash('sha256');
  for (const f of ['package.json', 'package-lock.json']) {
    const p = join(ROOT, f);
    h.update(f).update('\0').update(existsSync(p) ? readFileSync(p) : '').update('\0');
  }
  return h.digest('hex');
}

/** a. npm packages: install only when node_modules is missing or package*.json changed. */
export async function ensureNodeModules() {
  const lock = join(ROOT, 'package-lock.json');
  if (existsSync(join(ROOT, 'node_modules')) && existsSync(NPM_MARKER)) {
    const marker = mtime(NPM_MARKER);
    const newer = mtime(join(ROOT, 'package.json')) > marker || mtime(lock) > marker;
    // A newer file whose content is unchanged (a git checkout) only refreshes the marker.
    if (!newer || readFileSync(NPM_MARKER, 'utf8').trim() === npmInputsHash()) {
      if (newer) writeFileSync(NPM_MARKER, npmInputsHash() + '\n');
      step('npm packages: up to date');
      return;
    }
  }
  const args = existsSync(lock) ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund'];
  step(`npm packages: npm ${args.join(' ')}`);
  await run('npm', args);
  writeFileSync(NPM_MARKER, npmInputsHash() + '\n');
}

/** b. The wasm32-unknown-unknown Rust target. */
export async function ensureWasmTarget() {
  const installed = capture('rustup', ['target', 'list', '--installed']);
  if (installed !== null && installed.split(/\s+/).includes('wasm32-unknown-unknown')) {
    step('rust target wasm32-unknown-unknown: installed');
    return;
  }
  step('rust target wasm32-unknown-unknown: rustup target add');
  await run('rustup', ['target', 'add', 'wasm32-unknown-unknown']);
}

/** The wasm-bindgen version pinned in Cargo.lock (generating the lock file if it is missing). */
export async function lockedWasmBindgenVersion() {
  const lockPath = join(ROOT, 'Cargo.lock');
  if (!existsSync(lockPath)) {
    step('Cargo.lock missing: cargo generate-lockfile');
    await run('cargo', ['generate-lockfile']);
  }
  const lock = readFileSync(lockPath, 'utf8');
  for (const block of lock.split(/^\[\[package\]\]\s*$/m)) {
    const name = /^name = "([^"]+)"/m.exec(block);
    const version = /^version = "([^"]+)"/m.exec(block);
    if (name?.[1] === 'wasm-bindgen' && version) return version[1];
  }
  throw new Error('Cargo.lock has no wasm-bindgen package entry');
}

/** Version printed by `<bin> --version` ("worker-build 0.8.7" → "0.8.7"), or null. */
export function toolVersion(bin) {
  const out = capture(bin, ['--version']);
  return out === null ? null : (/(\d+\.\d+\.\d+\S*)/.exec(out)?.[1] ?? null);
}

async function ensureCargoTool(bin, crate, version) {
  const have = toolVersion(bin);
  if (have === version) {
    step(`${bin} ${version}: installed`);
    return;
  }
  step(`${bin}: ${have ? `found ${have}, ` : ''}cargo install ${crate} --version ${version} --locked (takes minutes)`);
  try {
    await run('cargo', ['install', crate, '--version', version, '--locked']);
  } catch (e) {
    // A crate's own lock file can name a version the registry no longer offers (yanked or
    // withdrawn: wasm-bindgen-cli 0.2.130's webpki-roots 1.0.11). The crate itself is still
    // pinned; only its dependencies are then resolved afresh.
    step(`${bin}: install with --locked failed (${e.message}); retrying without --locked`);
    await run('cargo', ['install', crate, '--version', version]);
  }
  const now = toolVersion(bin);
  if (now !== version) throw new Error(`${bin} --version reports ${now} after install, expected ${version}`);
}

/** c. worker-build and wasm-bindgen-cli at their pinned versions, in ~/.cargo/bin. */
export async function ensureCargoTools() {
  await ensureCargoTool('worker-build', 'worker-build', WORKER_BUILD_VERSION);
  await ensureCargoTool('wasm-bindgen', 'wasm-bindgen-cli', await lockedWasmBindgenVersion());
}

/** Everything: a–c, then d. the Worker build (skipped with { build: false }). */
export async function setup({ build = true } = {}) {
  const t0 = Date.now();
  await ensureNodeModules();
  await ensureWasmTarget();
  await ensureCargoTools();
  if (build) {
    const { buildWorker, buildFrontends } = await import('./build.mjs');
    await buildWorker();
    await buildFrontends();
  }
  step(`setup done in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  setup({ build: !process.argv.includes('--no-build') }).catch((e) => {
    console.error(`[parley] setup failed: ${e.message}`);
    process.exit(1);
  });
}
