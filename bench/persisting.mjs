// What persisting each message before its ack costs on this runtime by itself, across the saved
// runs: the storing relay's p99 at N = 1,000 and its knee, each against the bare relay of the
// same run, beside the two targets set relative to the bare relay (p99 ≤ 1.5×, knee ≥ 50 %).
// A bound on what any design that keeps Parley's invariant can reach here. Reads
// bench/results/*.json (or the directory given); writes nothing.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { latencyAt, TARGET_N as N } from './lib/report.mjs';

const P99_LIMIT = 1.5;
const KNEE_SHARE = 0.5;

const dir = process.argv[2] ?? join(import.meta.dirname, 'results');
const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

const p99Ratios = [];
const kneeShares = [];
for (const name of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
  const run = JSON.parse(readFileSync(join(dir, name), 'utf8'));
  const stored = latencyAt(run.stored, N);
  const bare = latencyAt(run.relay, N);
  if (stored && bare) p99Ratios.push(stored.end_to_end_ms.p99 / bare.end_to_end_ms.p99);
  const storedKnee = run.stored?.knee?.inbound_per_s;
  const bareKnee = run.relay?.knee?.inbound_per_s;
  if (storedKnee && bareKnee) kneeShares.push(storedKnee / bareKnee);
}

if (!p99Ratios.length && !kneeShares.length) {
  console.log(`no run in ${dir} has both relays' figures`);
  process.exit(0);
}
if (p99Ratios.length) {
  const within = p99Ratios.filter((r) => r <= P99_LIMIT).length;
  console.log(`storing relay p99 at N = ${N.toLocaleString('en')} ÷ bare relay's: within ${P99_LIMIT}× in ${within} of ${p99Ratios.length} runs; median ${median(p99Ratios).toFixed(2)}×, lowest ${Math.min(...p99Ratios).toFixed(2)}×`);
}
if (kneeShares.length) {
  const reached = kneeShares.filter((s) => s >= KNEE_SHARE).length;
  console.log(`storing relay knee ÷ bare relay's: at least ${KNEE_SHARE * 100} % in ${reached} of ${kneeShares.length} runs; highest ${(100 * Math.max(...kneeShares)).toFixed(1)} %`);
}
