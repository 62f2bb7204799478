// Turns one run's measurements into the comparison (Parley ÷ bare relay, and Parley ÷ storing
// relay where that ran), the target verdicts, and the markdown table that is printed, saved
// beside the JSON, and copied into the README.

export const TARGET_N = 1000;

const num = (x, digits = 1) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits));
const ratioOf = (p, r) => (Number.isFinite(p) && Number.isFinite(r) && r > 0 ? p / r : null);
const kb = (bytes) => bytes / 1024;
// Two decimals, or two significant digits for small ratios (a knee of 0.004× is not 0.00×).
const ratioText = (x) => (x !== 0 && Math.abs(x) < 0.1 ? x.toPrecision(2) : num(x, 2));

export function latencyAt(side, n) {
  return side?.latency?.find((l) => l.conversations === n && !l.failed) ?? null;
}

/** The highest knee step that neither run overloaded: CPU per message compared at one rate. */
function commonStep(parley, relay, stored) {
  const ok = (side) => new Map((side?.knee?.steps ?? []).filter((s) => !s.overloaded).map((s) => [s.inbound, s]));
  const p = ok(parley);
  const r = ok(relay);
  const rates = [...p.keys()].filter((rate) => r.has(rate)).sort((a, b) => b - a);
  return rates.length ? { rate: rates[0], parley: p.get(rates[0]), relay: r.get(rates[0]), stored: ok(stored).get(rates[0]) } : null;
}

export function compare(results) {
  const { parley, relay } = results;
  // Runs saved before the storing relay existed have no `stored`.
  const stored = results.stored ?? {};
  const rows = [];
  const row = (figure, unit, p, r, digits = 1, st = null) => rows.push({
    figure, unit, parley: p ?? null, relay: r ?? null, stored: st ?? null, ratio: ratioOf(p, r), stored_ratio: ratioOf(p, st), digits,
  });

  const ns = [...new Set([...(parley.latency ?? []), ...(relay.latency ?? [])].filter((l) => !l.failed).map((l) => l.conversations))]
    .sort((a, b) => a - b);
  const rate = results.config.latency.ratePerSide;
  // One figure taken from each side (Parley, relay, storing relay) where that side has it.
  const across = (figure, unit, sides, pick, digits) => {
    const [p, r, st] = sides.map((side) => (side ? pick(side) : null));
    row(figure, unit, p, r, digits, st);
  };
  for (const n of ns) {
    const sides = [latencyAt(parley, n), latencyAt(relay, n), latencyAt(stored, n)];
    const label = `N = ${n.toLocaleString('en')}, ${rate} msg/s per side:`;
    across(`${label} end-to-end p50`, 'ms', sides, (x) => x.end_to_end_ms.p50, 2);
    across(`${label} end-to-end p99`, 'ms', sides, (x) => x.end_to_end_ms.p99, 2);
    across(`${label} end-to-end p99.9`, 'ms', sides, (x) => x.end_to_end_ms.p999, 2);
    across(`${label} ack p50`, 'ms', sides, (x) => x.ack_ms.p50, 2);
    across(`${label} ack p99`, 'ms', sides, (x) => x.ack_ms.p99, 2);
    across(`${label} delivered`, 'msg/s', sides, (x) => x.delivered_per_s, 0);
    across(`${label} lost or late (> drain)`, 'msgs', sides, (x) => x.lost_or_late, 0);
    across(`${label} runtime CPU per delivered message`, 'µs', sides, (x) => x.runtime_cpu_us_per_delivered, 0);
  }
  const knees = [parley.knee, relay.knee, stored.knee];
  const sweep = `sweep ×${results.config.knee.factor} from ${results.config.knee.startInbound}/s${results.config.knee.relayStartInbound ? `, the relays from ${results.config.knee.relayStartInbound}/s` : ''}`;
  across(`knee (N = ${parley.knee?.conversations ?? relay.knee?.conversations}): highest inbound rate with p99 < 50 ms (${sweep})`, 'msg/s', knees, (k) => k.inbound_per_s, 0);
  across('knee: delivered at the knee', 'msg/s', knees, (k) => k.delivered_per_s, 0);
  const common = commonStep(parley, relay, stored);
  if (common) {
    const steps = [common.parley, common.relay, common.stored];
    across(`runtime CPU per delivered message at ${common.rate} msg/s inbound`, 'µs', steps, (s) => s.runtime_cpu_us_per_delivered, 0);
    across(`end-to-end p50 at ${common.rate} msg/s inbound`, 'ms', steps, (s) => s.end_to_end_ms.p50, 2);
  }
  for (const r of Object.values(parley.resume ?? {})) {
    row(`resume, ${r.missed} missed events: p50 (connect → all received)`, 'ms', r.total_ms.p50, null, 2);
    row(`resume, ${r.missed} missed events: p99`, 'ms', r.total_ms.p99, null, 2);
  }
  const clients = parley.storm?.clients ?? relay.storm?.clients;
  row(`reconnect storm (${clients} clients at once): ready → every client back and caught up`, 'ms', parley.storm?.all_back_after_ready_ms, relay.storm?.all_back_after_ready_ms, 0);
  row('reconnect storm: kill → every client back and caught up', 'ms', parley.storm?.all_back_after_kill_ms, relay.storm?.all_back_after_kill_ms, 0);
  row('reconnect storm: clients that failed', 'clients', parley.storm?.failed, relay.storm?.failed, 0);
  row('runtime memory (RSS) per idle (hibernated) connection', 'KB', parley.idle?.kb_per_connection, relay.idle?.kb_per_connection, 2);
  row('restart after SIGKILL: process start → ready', 'ms', parley.cold_start?.start_to_ready_ms, relay.cold_start?.start_to_ready_ms, 0);
  row('first HTTP response after start', 'ms', parley.cold_start?.first_http_ms, relay.cold_start?.first_http_ms, 1);
  row('first hello → welcome on an object untouched since start', 'ms', parley.cold_start?.first_object_ms, relay.cold_start?.first_object_ms, 1);
  row('second untouched object', 'ms', parley.cold_start?.second_untouched_object_ms, relay.cold_start?.second_untouched_object_ms, 1);
  row(`first message after ${results.config.hibernate_wait_ms / 1000} s idle (hibernated object wakes) → ack, median of ${parley.wake?.probes?.length ?? relay.wake?.probes?.length ?? 1}`, 'ms', parley.wake?.first_message_ack_ms, relay.wake?.first_message_ack_ms, 1);

  // Targets from issue #9.
  const targets = [];
  const target = (name, goal, measured, pass, margin) => targets.push({ name, goal, measured, pass, margin });
  const p1k = latencyAt(parley, TARGET_N);
  const r1k = latencyAt(relay, TARGET_N);
  if (p1k) {
    target(`latency p50 at N = 1,000, ${rate} msg/s per side`, '≤ 3 ms', `${num(p1k.end_to_end_ms.p50, 2)} ms`,
      p1k.end_to_end_ms.p50 <= 3, p1k.end_to_end_ms.p50 / 3);
  }
  if (p1k && r1k) {
    const limit = 1.5 * r1k.end_to_end_ms.p99;
    target('latency p99 at N = 1,000', `≤ 1.5 × relay p99 = ${num(limit, 1)} ms`,
      `${num(p1k.end_to_end_ms.p99, 1)} ms (${num(p1k.end_to_end_ms.p99 / r1k.end_to_end_ms.p99, 1)} × relay)`,
      p1k.end_to_end_ms.p99 <= limit, p1k.end_to_end_ms.p99 / limit);
  }
  if (relay.knee?.inbound_per_s) {
    const pk = parley.knee?.inbound_per_s ?? 0;
    const goal = 0.5 * relay.knee.inbound_per_s;
    const atLeast = relay.knee.first_overloaded_inbound_per_s === null ? 'at least ' : '';
    target('knee (inbound msg/s at p99 < 50 ms), persisting before ack', `≥ 50 % of relay = ${atLeast}${num(goal, 0)} msg/s`,
      `${parley.knee?.inbound_per_s ? num(pk, 0) : `< ${parley.knee?.first_overloaded_inbound_per_s}`} msg/s (${ratioText((100 * pk) / relay.knee.inbound_per_s)} % of relay)`,
      pk >= goal, pk > 0 ? goal / pk : null);
  }
  const r100 = parley.resume?.missed_100;
  if (r100) {
    target('resume of 100 missed events, p99', '≤ 100 ms', `${num(r100.total_ms.p99, 1)} ms`,
      r100.failed === 0 && r100.total_ms.p99 <= 100, r100.total_ms.p99 / 100);
  }
  if (parley.idle) {
    // On Miniflare the bare relay's own connections already cost more than the goal; Parley's
    // share is what it adds on top.
    // Both are slopes between two batches: a few KB either way is noise, and Parley can come out under.
    const above = relay.idle && parley.idle.kb_per_connection - relay.idle.kb_per_connection;
    const versus = !relay.idle ? ''
      : ` (relay ${num(relay.idle.kb_per_connection, 1)} KB; ${above >= 0
        ? `Parley adds ${num(above, 1)} KB`
        : `Parley's ${num(-above, 1)} KB under it, within the slopes' noise`})`;
    target('idle (hibernated) connection, runtime memory', '≤ 10 KB',
      `${num(parley.idle.kb_per_connection, 1)} KB${versus}`,
      parley.idle.kb_per_connection <= 10, parley.idle.kb_per_connection / 10);
  }
  const wasm = results.sizes.find((s) => s.name === 'worker wasm');
  if (wasm && !wasm.missing) {
    target('worker wasm, gzip', '≤ 400 KB', `${num(kb(wasm.gzip), 0)} KB`, kb(wasm.gzip) <= 400, kb(wasm.gzip) / 400);
  }
  return { comparison: rows, targets };
}

export function markdown(results) {
  const { machine: m, versions: v, commit } = results;
  const lines = [];
  lines.push(`### Benchmark: ${results.date.slice(0, 10)}, commit ${commit.hash}${commit.dirty ? ' (with uncommitted changes in the tree)' : ''}, ${results.profile} profile`);
  lines.push('');
  lines.push(`Command: \`${results.command}\` (took ${Math.round(results.duration_s)} s${results.loadgen_build_s >= 1 ? `, after ${Math.round(results.loadgen_build_s)} s building the load generator` : ''}). Machine: ${m.cpu}, ${m.cores} cores, ${m.memory_gb} GB. `
    + `Versions: node ${v.node}, miniflare ${v.miniflare}, workerd ${v.workerd}, ${v.rustc}. `
    + `Load average at start: ${results.loadavg_at_start?.split(' ').slice(0, 3).join(' ') ?? '?'}. `
    + `Loopback; the load generator shares the cores; ${results.config.agents_per_conversation + 1} sockets per conversation (visitor + agent${results.config.agents_per_conversation > 1 ? 's' : ''}).`);
  // The systems this run measured (runs saved before the storing relay have two).
  const sides = ['parley', 'relay', 'stored'].filter((name) => results[name]);
  const noise = sides.map((name) => {
    const windows = [...(results[name].latency ?? []), ...(results[name].knee?.steps ?? [])].filter((p) => p.cpu);
    const disturbed = windows.filter((p) => p.disturbed).length;
    const mean = windows.reduce((a, p) => a + p.cpu.other_cores, 0) / Math.max(1, windows.length);
    return `${name} ${disturbed} of ${windows.length} (other work used ${num(mean, 2)} cores on average)`;
  });
  lines.push('');
  lines.push(`Measured windows disturbed by other work on the machine (> 0.5 core): ${noise.join('; ')}.`);
  lines.push('');
  const withStored = results.comparison.some((r) => r.stored !== null && r.stored !== undefined);
  lines.push(`| figure | Parley | bare relay |${withStored ? ' storing relay |' : ''} Parley ÷ relay |${withStored ? ' Parley ÷ storing relay |' : ''}`);
  lines.push(`|---|---:|---:|${withStored ? '---:|' : ''}---:|${withStored ? '---:|' : ''}`);
  for (const r of results.comparison) {
    const unit = r.unit ? ` ${r.unit}` : '';
    const cell = (x) => (x === null || x === undefined ? '—' : `${num(x, r.digits)}${unit}`);
    const times = (x) => (x === null || x === undefined ? '—' : `${ratioText(x)}×`);
    const extra = withStored ? [cell(r.stored)] : [];
    const extraRatio = withStored ? [times(r.stored_ratio)] : [];
    lines.push(`| ${[r.figure, cell(r.parley), cell(r.relay), ...extra, times(r.ratio), ...extraRatio].join(' | ')} |`);
  }
  lines.push('');
  lines.push('| target (issue #9) | goal | measured | verdict |');
  lines.push('|---|---|---|---|');
  for (const t of results.targets) {
    const verdict = t.pass ? 'pass' : `**miss**${t.margin ? ` (off by ${num(t.margin, 1)}×)` : ''}`;
    lines.push(`| ${t.name} | ${t.goal} | ${t.measured} | ${verdict} |`);
  }
  lines.push('');
  const notes = [
    'Latency is measured from each message\'s scheduled send time (open loop): a phase above the system\'s capacity shows the queue growing through the window.',
    'The relays keep no log to resume from, so they have no resume figure. The storing relay runs the knee and latency phases only.',
    'Memory is workerd\'s RSS growth per hibernated connection (slope between two batches); the relay\'s figure is what the runtime itself costs per connection.',
  ];
  const who = { parley: 'Parley', relay: 'The relay', stored: 'The storing relay' };
  const sk = results.stored?.knee?.inbound_per_s;
  const rk = results.relay.knee?.inbound_per_s;
  const pk = results.parley.knee?.inbound_per_s;
  // What persisting before the ack costs by itself, against the two targets set relative to the
  // bare relay: a bound on what any design that keeps that invariant can reach on this runtime.
  const s1k = latencyAt(results.stored, TARGET_N);
  const r1k = latencyAt(results.relay, TARGET_N);
  const persisting = [];
  if (s1k && r1k) persisting.push(`the storing relay's p99 at N = 1,000 is ${ratioText(s1k.end_to_end_ms.p99 / r1k.end_to_end_ms.p99)}× the bare relay's (the target allows Parley 1.5×)`);
  if (sk && rk) persisting.push(`its knee is ${ratioText((100 * sk) / rk)} % of the bare relay's (the target asks 50 %)${pk ? `, and Parley's is ${ratioText((100 * pk) / sk)} % of the storing relay's` : ''}`);
  if (persisting.length) notes.push(`Persisting before the ack alone: ${persisting.join('; ')}.`);
  for (const name of sides) {
    const knee = results[name].knee;
    if (knee?.inbound_per_s && knee.first_overloaded_inbound_per_s === null) {
      const top = knee.steps.find((s) => s.inbound === knee.inbound_per_s);
      notes.push(`${who[name]} was not overloaded even at the sweep's highest rate, ${knee.inbound_per_s} msg/s: its knee is at least that (the single-threaded load generator used ${num(top?.cpu?.loadgen_cores, 2)} cores there).`);
    }
  }
  const p1k = latencyAt(results.parley, TARGET_N);
  if (p1k?.overloaded) {
    notes.push(`Parley's N = 1,000 phase was over its capacity: ${num(p1k.inbound_per_s, 0)} msg/s offered, ${num(p1k.delivered_per_s, 0)} delivered per second, the runtime busy ${num(p1k.cpu?.runtime_cores, 2)} cores.`);
  }
  for (const name of sides) {
    for (const l of (results[name].latency ?? []).filter((x) => x.failed)) {
      const files = l.runtime_files?.limit ? ` (workerd had up to ${l.runtime_files.max_open} of ${l.runtime_files.limit} files open)` : '';
      notes.push(`${who[name]} could not hold N = ${l.conversations.toLocaleString('en')} (${l.sockets} sockets) on this machine${files}: ${l.failed.split(', e.g.')[0].replace(/^loadgen failed \(exit 1\): /, '')}.`);
    }
  }
  for (const n of notes) lines.push(`- ${n}`);
  lines.push('');
  lines.push('| shipped file | raw | gzip | brotli |');
  lines.push('|---|---:|---:|---:|');
  for (const s of results.sizes) {
    if (s.missing) lines.push(`| ${s.name} (\`${s.path}\`) | not built | | |`);
    else lines.push(`| ${s.name} (\`${s.path}\`) | ${num(kb(s.raw), 1)} KB | ${num(kb(s.gzip), 1)} KB | ${num(kb(s.brotli), 1)} KB |`);
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}
