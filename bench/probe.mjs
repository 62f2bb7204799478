// A fixed-rate probe of one system, for profiling between full runs: N conversations, one
// visitor and one agent socket each, one generator window per rate given. Prints latency, the
// runtime's CPU per delivered message and, for Parley, how long its sites' D1 batches took.
// Saves nothing. The Worker must be built (`npm run build`); see bench/README.md.
//
//   node bench/probe.mjs [--system parley|relay|stored] [--conversations 1000]
//                        [--rates 400,400,400] [--measure-s 8]

import { rmSync } from 'node:fs';
import { ParleyTarget, RelayTarget } from './lib/targets.mjs';
import { settle } from './lib/proc.mjs';
import { runLoadgen, ensureLoadgen } from './lib/loadgen.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 && args[at + 1] !== undefined ? args[at + 1] : fallback;
};
const SYSTEMS = {
  parley: () => new ParleyTarget(),
  relay: () => new RelayTarget(),
  stored: () => new RelayTarget({ store: true }),
};
const system = option('system', 'parley');
const conversations = Number(option('conversations', 1000));
const rates = option('rates', '400,400,400').split(',').map(Number);
const measureMs = Number(option('measure-s', 8)) * 1000;
if (!SYSTEMS[system] || !(conversations > 0) || rates.some((r) => !(r > 0)) || !(measureMs > 0)) {
  console.error('usage: node bench/probe.mjs [--system parley|relay|stored] [--conversations N] [--rates R,R,…] [--measure-s S]');
  process.exit(2);
}

/** p50/p90/max of the `duration_ms` of the D1 batches logged since `from`. */
function mirrorBatches(logs, from) {
  const took = logs.slice(from)
    .flatMap((line) => { try { return [JSON.parse(line)]; } catch { return []; } })
    .filter((e) => e.event === 'mirror_batch_written')
    .map((e) => e.duration_ms)
    .sort((a, b) => a - b);
  if (!took.length) return 'no D1 batches';
  const at = (q) => took[Math.min(took.length - 1, Math.floor(q * took.length))];
  return `D1 batches ${took.length}: p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${took.at(-1)} ms`;
}

await ensureLoadgen();
const target = SYSTEMS[system]();
try {
  await target.start();
  await target.ensureRooms(conversations);
  await settle(target.workerdPid, { maxMs: 20_000 });
  const sockets = target.sockets(target.rooms);
  for (const [i, rate] of rates.entries()) {
    const from = target.server.logs.length;
    const plan = {
      sockets,
      seed: i + 1,
      drain_ms: 2000,
      phases: [{ name: `${rate}/s`, rate_per_socket: rate / sockets.length, warmup_ms: i === 0 ? 3000 : 1000, measure_ms: measureMs }],
    };
    const { report, cpu } = await runLoadgen(plan, { runtimePid: target.workerdPid });
    const p = report.phases[0];
    const e2e = p.end_to_end_ms;
    const perMessage = p.delivered ? Math.round((cpu[0].runtime_cpu_ms * 1000) / p.delivered) : NaN;
    const line = [
      `${system} N=${conversations} ${rate} msg/s:`,
      `p50 ${e2e.p50} ms, p90 ${e2e.p90} ms, p99 ${e2e.p99} ms;`,
      `runtime CPU ${perMessage} µs per delivered message;`,
      `lost or late ${p.lost_or_late}; other work ${cpu[0].other_cores.toFixed(2)} cores`,
    ];
    if (system === 'parley') line[line.length - 1] += `; ${mirrorBatches(target.server.logs, from)}`;
    console.log(line.join(' '));
    await settle(target.workerdPid, { maxMs: 20_000 });
  }
} finally {
  await target.stop().catch(() => {});
  rmSync(target.persistDir, { recursive: true, force: true });
}
process.exit(0);
