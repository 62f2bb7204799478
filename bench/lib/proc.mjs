// What the benchmark reads from /proc: the runtime's pid, CPU time and memory, the machine's
// total CPU use (to tell how much of the box other work took during a measurement), and the
// machine description for the report. Linux only, like the rest of this machine's tooling.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

/** Clock ticks per second of /proc/<pid>/stat times (getconf CLK_TCK; 100 almost everywhere). */
const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the command name (field 3 onwards), or null when gone. */
function statFields(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    return { comm: stat.slice(stat.indexOf('(') + 1, close), rest: stat.slice(close + 2).split(' ') };
  } catch {
    return null;
  }
}

/** The workerd process in the process group `pgid` (the launcher's child leads the group). */
export function workerdIn(pgid) {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = statFields(entry);
    // rest[0] = state, rest[2] = process group
    if (s && s.comm === 'workerd' && s.rest[0] !== 'Z' && Number(s.rest[2]) === pgid) return Number(entry);
  }
  return null;
}

/** User + system CPU time of a process (all its threads), in ms; NaN when it is gone. */
export function cpuMs(pid) {
  const s = statFields(pid);
  if (!s) return NaN;
  // rest[11] = utime, rest[12] = stime (fields 14 and 15 of stat)
  return ((Number(s.rest[11]) + Number(s.rest[12])) * 1000) / TICKS;
}

/** Resident memory of a process in KB (VmRSS), NaN when it is gone. */
export function rssKb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Open file descriptors of a process and its limit, e.g. { open: 19990, limit: 20000 }. */
export function openFiles(pid) {
  try {
    const open = readdirSync(`/proc/${pid}/fd`).length;
    const limit = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1];
    return { open, limit: limit ? Number(limit) : null };
  } catch {
    return null;
  }
}

/** Machine-wide busy and total CPU time so far (ms, all cores), from /proc/stat. */
export function machineCpuMs() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy: (busy * 1000) / TICKS, total: ((busy + idle + iowait) * 1000) / TICKS };
}

/** A CPU sample of the runtime, the load generator and the whole machine at one moment. */
export function sample(runtimePid, loadgenPid) {
  return { at: performance.now(), runtime: cpuMs(runtimePid), loadgen: loadgenPid ? cpuMs(loadgenPid) : NaN, machine: machineCpuMs() };
}

/** CPU use between two samples: ms of each, and the share of one core / of the whole box. */
export function cpuBetween(a, b) {
  const wallMs = b.at - a.at;
  const runtimeMs = b.runtime - a.runtime;
  const loadgenMs = b.loadgen - a.loadgen;
  const machineBusy = b.machine.busy - a.machine.busy;
  const otherMs = machineBusy - runtimeMs - (Number.isFinite(loadgenMs) ? loadgenMs : 0);
  return {
    wall_ms: wallMs,
    runtime_cpu_ms: runtimeMs,
    runtime_cores: runtimeMs / wallMs,
    loadgen_cpu_ms: loadgenMs,
    loadgen_cores: loadgenMs / wallMs,
    // Everything else on the machine (the other engineer's builds and browsers, Node, …).
    other_cores: Math.max(0, otherMs) / wallMs,
  };
}

/**
 * Waits until the runtime has been (nearly) idle for `quietWindows` windows of `windowMs` in a
 * row: a backlog from an overloaded phase must not spill into the next one. Resolves to
 * { waited_ms, settled }; gives up after maxMs.
 */
export async function settle(pid, { windowMs = 400, idleShare = 0.05, quietWindows = 1, maxMs = 30_000 } = {}) {
  const start = performance.now();
  let quiet = 0;
  for (;;) {
    const before = cpuMs(pid);
    await new Promise((r) => setTimeout(r, windowMs));
    const busy = cpuMs(pid) - before > windowMs * idleShare;
    quiet = busy ? 0 : quiet + 1;
    const waited = performance.now() - start;
    if (quiet >= quietWindows || waited > maxMs) return { waited_ms: Math.round(waited), settled: quiet >= quietWindows };
  }
}

/** CPU model, cores and memory of this machine. */
export function machine() {
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1] ?? model;
  } catch { /* not Linux */ }
  return { cpu: model.trim(), cores: cpus().length, memory_gb: Math.round((totalmem() / 2 ** 30) * 10) / 10 };
}
