// `npm run bench`: measures the product on this machine and reports every figure as a ratio to
// a baseline measured in the same run, so numbers from different machines compare.
//
//   baseline: the round trip of GET /healthz (the Worker, no Durable Object, no storage)
//   ack:      a message sent over a WebSocket until its ack (stored in the conversation's SQLite)
//   fan-out:  the same message until another participant's socket receives it
//   http:     a message sent with POST …/messages until its answer
//   burst:    many conversations at once, each sending as fast as acks come back
//   resume:   a reconnect that replays 200 missed events
//   sizes:    the widget loader and full widget, raw and gzip
//
// Only loopback traffic; bounded in count and time. Options: --messages N (default 300),
// --conversations N (default 20), --json (print the results as JSON as well).
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { performance } from 'node:perf_hooks';
import { startServer } from '../tests/support/server.mjs';
import { agentLogin, connect, http, msgId, newConversation } from '../tests/support/client.mjs';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const MESSAGES = opt('messages', 300);
const CONVERSATIONS = opt('conversations', 20);
const GENEROUS = { RATE_VISITOR_MESSAGES: '100000/10000', RATE_AGENT_MESSAGES: '100000/10000', RATE_IP_MESSAGES: '100000/10000' };

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function summary(samples) {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99) };
}

async function timeIt(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

function sizes() {
  const root = new URL('../public/', import.meta.url).pathname;
  const files = [];
  const walk = (dir) => {
    if (!existsSync(dir)) return;
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(js|css)$/.test(f)) files.push(p);
    }
  };
  walk(join(root, 'widget'));
  if (existsSync(join(root, 'widget.js'))) files.push(join(root, 'widget.js'));
  return files.map((p) => {
    const bytes = readFileSync(p);
    return { file: p.slice(root.length), raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  });
}

const server = await startServer({ vars: GENEROUS });
const results = {};
try {
  const agent = await agentLogin(server);

  // Baseline: the Worker's own round trip.
  for (let i = 0; i < 50; i += 1) await http(server.url, '/healthz'); // warm-up
  const base = [];
  for (let i = 0; i < MESSAGES; i += 1) base.push(await timeIt(() => http(server.url, '/healthz')));
  results.baseline = summary(base);

  // Ack and fan-out latency over WebSockets.
  const conv = await newConversation(server);
  const visitor = await connect(server, conv.conversation, conv.token, { after: 0 });
  const watcher = await connect(server, conv.conversation, agent.token, { after: 0 });
  const acks = [];
  const fanouts = [];
  for (let i = 0; i < MESSAGES; i += 1) {
    const id = msgId('bench');
    const t = performance.now();
    const seen = watcher.next((f) => f.type === 'event' && f.client_msg_id === id, 10_000).then(() => performance.now() - t);
    await visitor.sendMessage(`bench ${i}`, id);
    acks.push(performance.now() - t);
    fanouts.push(await seen);
  }
  results.ack = summary(acks);
  results.fanout = summary(fanouts);

  // HTTP send.
  const httpSends = [];
  for (let i = 0; i < Math.min(MESSAGES, 200); i += 1) {
    httpSends.push(await timeIt(() => http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
      method: 'POST', token: conv.token, body: { client_msg_id: msgId('benchhttp'), text: `http ${i}` },
    })));
  }
  results.http = summary(httpSends);

  // Burst: many conversations in parallel.
  const convs = [];
  for (let i = 0; i < CONVERSATIONS; i += 1) {
    const c = await newConversation(server);
    convs.push({ c, socket: await connect(server, c.conversation, c.token, { after: 0 }) });
  }
  const perConversation = Math.max(10, Math.floor(MESSAGES / 5));
  const burstStart = performance.now();
  await Promise.all(convs.map(async ({ socket }) => {
    for (let i = 0; i < perConversation; i += 1) await socket.sendMessage(`burst ${i}`);
  }));
  const burstMs = performance.now() - burstStart;
  const total = convs.length * perConversation;
  results.burst = { conversations: convs.length, messages: total, ms: burstMs, per_second: (total / burstMs) * 1000 };
  convs.forEach(({ socket }) => socket.close());

  // Resume with 200 missed events.
  watcher.drop();
  const last = watcher.events.at(-1).seq;
  for (let i = 0; i < 200; i += 1) await visitor.sendMessage(`missed ${i}`);
  const head = last + 200;
  let resumed;
  const resumeMs = await timeIt(async () => {
    resumed = await connect(server, conv.conversation, agent.token, { after: last, epoch: conv.epoch });
    await resumed.waitForSeq(head);
  });
  results.resume = { events: resumed.events.length, ms: resumeMs };
  resumed.close();
  visitor.close();

  results.sizes = sizes();
} finally {
  await server.stop();
}

const b = results.baseline.p50;
const ratio = (ms) => `${(ms / b).toFixed(1)}×`;
const fmt = (ms) => `${ms.toFixed(2)} ms`;
console.log('');
console.log(`Parley benchmark — node bench/run.mjs --messages ${MESSAGES} --conversations ${CONVERSATIONS}`);
console.log(`baseline (GET /healthz round trip): p50 ${fmt(b)}, p99 ${fmt(results.baseline.p99)} — figures below are multiples of the baseline p50`);
for (const [name, label] of [['ack', 'WebSocket send → ack'], ['fanout', 'WebSocket send → other participant'], ['http', 'HTTP POST message']]) {
  const r = results[name];
  console.log(`${label.padEnd(36)} p50 ${ratio(r.p50)} p90 ${ratio(r.p90)} p99 ${ratio(r.p99)}   (${fmt(r.p50)} / ${fmt(r.p99)}, n=${r.n})`);
}
const bu = results.burst;
console.log(`${'burst throughput'.padEnd(36)} ${bu.messages} messages in ${bu.conversations} conversations: ${bu.per_second.toFixed(0)} msg/s = one acked message every ${ratio(1000 / bu.per_second)}`);
console.log(`${'resume replaying 200 events'.padEnd(36)} ${ratio(results.resume.ms)}   (${fmt(results.resume.ms)})`);
for (const s of results.sizes) console.log(`size ${s.file.padEnd(31)} ${(s.raw / 1024).toFixed(1)} KB raw, ${(s.gzip / 1024).toFixed(1)} KB gzip`);
if (args.includes('--json')) console.log(JSON.stringify(results, null, 2));
