// A fixed-rate probe of one system, for profiling between full runs: N conversations, one
// visitor and one agent socket each, one generator window per rate given. Prints latency, the
// runtime's CPU per delivered message and, for Parley, how long its site's D1 batches took.
// Saves nothing. The Worker must be built (`npm run build`); see bench/README.md.

import { rmSync } from 'node:fs';
import { ensureLoadgen, runLoadgen } from './lib/loadgen.mjs';
import { phaseSummary, refusals, settleAfter } from './lib/measure.mjs';
import { ParleyTarget, RelayTarget } from './lib/targets.mjs';

const USAGE = `usage: node bench/probe.mjs [--system parley|relay|stored] [--conversations N]
                            [--rates R,R,…] [--measure-s S]
  --system         what to drive (default parley; relay and stored are the baselines)
  --conversations  conversations, each with a visitor and an agent socket (default 1000)
  --rates          inbound messages per second, one measured window each (default 400,400,400)
  --measure-s      seconds measured per window (default 8)`;

const SYSTEMS = {
  parley: () => new ParleyTarget(),
  relay: () => new RelayTarget(),
  stored: () => new RelayTarget({ store: true }),
};

function parseArgs(argv) {
  const options = { system: 'parley', conversations: '1000', rates: '400,400,400', 'measure-s': '8' };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (argv[i] === '--help' || !argv[i].startsWith('--') || !Object.hasOwn(options, name)) return null;
    if (argv[i + 1] === undefined || argv[i + 1].startsWith('--')) return null;
    options[name] = argv[i + 1];
  }
  const parsed = {
    system: options.system,
    conversations: Number(options.conversations),
    rates: options.rates.split(',').map(Number),
    measureMs: Math.round(Number(options['measure-s']) * 1000),
  };
  const valid = Object.hasOwn(SYSTEMS, parsed.system)
    && Number.isInteger(parsed.conversations) && parsed.conversations > 0
    && parsed.rates.every((r) => r > 0)
    && parsed.measureMs > 0;
  return valid ? parsed : null;
}

/** The D1 batches logged since `from`: how many, how many failed, and their durations. */
function mirrorBatches(logs, from) {
  const lines = logs.slice(from)
    .flatMap((line) => { try { return [JSON.parse(line)]; } catch { return []; } });
  const failed = lines.filter((e) => e.event === 'mirror_batch_failed').length;
  const took = lines
    .filter((e) => e.event === 'mirror_batch_written' && Number.isFinite(e.duration_ms))
    .map((e) => e.duration_ms)
    .sort((a, b) => a - b);
  if (!took.length) return `no timed D1 batches (${failed} failed; a Worker built before batches were timed logs none)`;
  const at = (q) => took[Math.min(took.length - 1, Math.floor(q * took.length))];
  return `D1 batches ${took.length} (${failed} failed): p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${took.at(-1)} ms (wall)`;
}

function windowLine(system, conversations, rate, phase, cpu) {
  const summary = phaseSummary(phase, cpu);
  const e2e = summary.end_to_end_ms;
  return [
    `${system} N=${conversations} ${rate} msg/s:`,
    `p50 ${e2e.p50} ms, p90 ${e2e.p90} ms, p99 ${e2e.p99} ms;`,
    `runtime CPU ${summary.runtime_cpu_us_per_delivered ?? '?'} µs per delivered message;`,
    `lost or late ${summary.lost_or_late}, refused ${refusals(summary)}, not sent ${summary.send_failures};`,
    `other work ${cpu ? cpu.other_cores.toFixed(2) : '?'} cores${summary.disturbed ? ' (disturbed)' : ''}`,
  ].join(' ');
}

const options = parseArgs(process.argv.slice(2));
if (!options) {
  console.error(USAGE);
  process.exit(2);
}
const { system, conversations, rates, measureMs } = options;
const log = (message) => console.log(`[probe] ${message}`);
// The servers run in process groups of their own; exiting runs their clean-up.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

await ensureLoadgen();
const target = SYSTEMS[system]();
try {
  await target.start();
  await target.ensureRooms(conversations);
  await settleAfter(target, 'creating conversations', log);
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
    let line = windowLine(system, conversations, rate, report.phases[0], cpu[0]);
    if (system === 'parley') line += `; ${mirrorBatches(target.server.logs, from)}`;
    console.log(line);
    await settleAfter(target, `${rate}/s`, log);
  }
} finally {
  await target.stop().catch(() => {});
  rmSync(target.persistDir, { recursive: true, force: true });
}
process.exit(0);
