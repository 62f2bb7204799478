// The Rust load generator (bench/loadgen): built on demand, run with a plan file, its progress
// lines on stderr turned into CPU samples of the runtime at the start and end of each measured
// window, its JSON report parsed from stdout. Every run has a time bound; a generator still
// running when this process exits is killed.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, step } from '../../scripts/setup.mjs';
import { cpuBetween, sample } from './proc.mjs';

export const LOADGEN_DIR = fileURLToPath(new URL('../loadgen/', import.meta.url));
export const LOADGEN_BIN = join(LOADGEN_DIR, 'target', 'release', 'loadgen');

const running = new Set();
let planDir;
process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
  if (planDir) rmSync(planDir, { recursive: true, force: true });
});

function newestSource() {
  let newest = 0;
  const visit = (path) => {
    const st = statSync(path);
    if (st.isDirectory()) for (const f of readdirSync(path)) visit(join(path, f));
    else newest = Math.max(newest, st.mtimeMs);
  };
  for (const f of ['Cargo.toml', 'Cargo.lock', 'src']) {
    const p = join(LOADGEN_DIR, f);
    if (existsSync(p)) visit(p);
  }
  return newest;
}

/** Builds the generator unless the binary is newer than every source file. */
export async function ensureLoadgen() {
  if (existsSync(LOADGEN_BIN) && statSync(LOADGEN_BIN).mtimeMs >= newestSource()) {
    step('loadgen: up to date');
    return LOADGEN_BIN;
  }
  step('loadgen: cargo build --release --manifest-path bench/loadgen/Cargo.toml');
  await run('cargo', ['build', '--release', '--manifest-path', join(LOADGEN_DIR, 'Cargo.toml')]);
  return LOADGEN_BIN;
}

function writePlan(plan) {
  planDir ??= mkdtempSync(join(tmpdir(), 'parley-bench-'));
  const file = join(planDir, `plan-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(plan));
  return file;
}

/** Rough upper bound on a plan's duration, so a stuck run is killed instead of waited on. */
function planBoundMs(plan) {
  const phases = (plan.phases ?? []).reduce((t, p) => t + p.warmup_ms + p.measure_ms + (plan.drain_ms ?? 2000) + 500, 0);
  const connect = (plan.connect_timeout_ms ?? 30_000) * (plan.connect_concurrency === 1 ? Math.min(plan.sockets.length, 10) : 1);
  return connect + phases + (plan.hold ? (plan.hold_max_ms ?? 600_000) : 0) + 20_000;
}

/**
 * Starts the generator. `runtimePid` is the workerd process whose CPU is sampled at each
 * measured window's edges. Returns { pid, holding, done, release() }: `holding` resolves once
 * a plan with `hold` has every socket open; release() lets it close them and finish; `done`
 * resolves to { report, cpu: [per phase: cpuBetween(start, end)] }.
 */
export function startLoadgen(plan, { runtimePid, timeoutMs = planBoundMs(plan), log = () => {} } = {}) {
  const file = writePlan(plan);
  const child = spawn(LOADGEN_BIN, [file], { stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(child);
  const windows = [];
  const stderrTail = [];
  let stdout = '';
  let fatal = null;
  let onHolding;
  const holding = new Promise((resolve) => { onHolding = resolve; });

  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (c) => { stdout += c; });
  let buf = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let event;
      try { event = JSON.parse(line); } catch { stderrTail.push(line); continue; }
      if (event.event === 'measure_start') windows[event.phase] = { start: sample(runtimePid, child.pid) };
      else if (event.event === 'measure_end' && windows[event.phase]) windows[event.phase].end = sample(runtimePid, child.pid);
      else if (event.event === 'holding') onHolding();
      else if (event.event === 'fatal') fatal = event.error;
      if (event.event === 'phase_done' || event.event === 'connected') log(event);
      stderrTail.push(line);
      if (stderrTail.length > 20) stderrTail.shift();
    }
  });

  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`loadgen did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); running.delete(child); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      if (code !== 0) {
        reject(new Error(`loadgen failed (${signal ?? `exit ${code}`}): ${fatal ?? stderrTail.join('\n')}`));
        return;
      }
      try {
        const report = JSON.parse(stdout);
        const cpu = windows.map((w) => (w?.start && w?.end ? cpuBetween(w.start, w.end) : null));
        resolve({ report, cpu });
      } catch (e) {
        reject(new Error(`loadgen printed no report: ${e.message}`));
      }
    });
  });
  // A holding run that fails must not leave `holding` pending forever.
  done.catch(() => {}).finally(() => onHolding());

  return {
    pid: child.pid,
    holding,
    done,
    release() {
      child.stdin.end();
      return done;
    },
  };
}

/** Runs a plan to its end (a holding plan is released at once). */
export function runLoadgen(plan, opts) {
  const lg = startLoadgen(plan, opts);
  if (!plan.hold) lg.release();
  return lg.done;
}
