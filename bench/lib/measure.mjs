// What the orchestrator and the probe both make of a generator window: the knee's p99 bound,
// whether a window was overloaded, its summary with the runtime's CPU, and the wait for a
// backlog to drain before the next window.

import { settle } from './proc.mjs';

/** The knee: the highest inbound rate whose window keeps p99 under this. */
export const KNEE_P99_MS = 50;

export const round = (x, digits = 2) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

/** Sends the server refused in a window, whatever the reason. */
export function refusals(phase) {
  return Object.values(phase.errors).reduce((a, b) => a + b, 0);
}

/** A window past the knee: p99 at or over the bound, or messages lost, refused or not sent. */
export function overloaded(phase) {
  return !(phase.end_to_end_ms.p99 < KNEE_P99_MS) || phase.lost_or_late > 0 || refusals(phase) > 0 || phase.send_failures > 0;
}

/** One measured phase, trimmed for the results file, with the runtime's CPU during it. */
export function phaseSummary(phase, cpu) {
  const per = (count) => (cpu && count > 0 ? round((cpu.runtime_cpu_ms * 1000) / count, 1) : null);
  return {
    ...phase,
    cpu: cpu && Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round(v, 3)])),
    // Runtime CPU in the measured window ÷ the messages sent in it, and ÷ their deliveries.
    runtime_cpu_us_per_inbound: per(phase.sent),
    runtime_cpu_us_per_delivered: per(phase.delivered),
    overloaded: overloaded(phase),
    // Other work on the machine took more than half a core during the measurement.
    disturbed: Boolean(cpu && cpu.other_cores > 0.5),
  };
}

/** Waits for the runtime to go quiet after a window; says so through `log` when it took long. */
export async function settleAfter(target, what, log) {
  const s = await settle(target.workerdPid, { maxMs: 45_000, windowMs: 300, quietWindows: 2 });
  if (s.waited_ms > 1500) log(`${target.name}: waited ${(s.waited_ms / 1000).toFixed(1)} s for the backlog of ${what} to drain${s.settled ? '' : ' (gave up)'}`);
  return s;
}
