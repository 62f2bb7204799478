// Prometheus metrics for a private deployment, computed from the Worker's structured log lines
// (one JSON object per line, see docs/operations.md) as the serve process receives them from
// workerd. Nothing here touches the Worker: whatever it logs, the metrics follow.
//
//   const m = new Metrics();
//   m.observe(JSON.parse(line));          // every Worker log line
//   m.render();                           // Prometheus text exposition format 0.0.4
//   const server = await startMetricsServer({ host, port, token, metrics });
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

/** Latency buckets, seconds. Long-polls hold a request up to 30 s, hence the top buckets. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Most distinct label sets one metric keeps; more fold into a single "other" series. */
export const MAX_SERIES = 500;

/**
 * Who is at fault for a log line's error: "client" (bad input, auth, limits: nothing for the
 * operator to fix), "storage" (D1, Durable Object storage: retryable, watch the backend) or
 * "server" (a bug or a broken deployment). The Worker states it on request lines; for other
 * lines it follows from the error class or the event.
 */
export function faultOf(line) {
  if (line.fault === 'client' || line.fault === 'storage' || line.fault === 'server') return line.fault;
  const cls = line.error_class;
  if (cls === 'storage_unavailable' || cls === 'd1_unavailable') return 'storage';
  if (['storage_failed', 'd1_unavailable', 'mirror_failed', 'alarm_failed'].includes(line.event)) return 'storage';
  if (line.event === 'command_refused') return cls === 'internal' ? 'server' : 'client';
  return 'server';
}

function escapeLabel(v) {
  return String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels) {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k])}"`).join(',')}}`;
}

function formatNumber(n) {
  if (n === Infinity) return '+Inf';
  if (Number.isInteger(n)) return String(n);
  return String(Number(n.toPrecision(12)));
}

class Family {
  constructor(name, type, help, labelNames = []) {
    this.name = name;
    this.type = type;
    this.help = help;
    this.labelNames = labelNames;
    this.series = new Map(); // key → { labels, value | buckets,sum,count }
  }

  /** The series for these labels, created on first use (bounded by MAX_SERIES). */
  get(labels = {}) {
    const norm = {};
    for (const k of this.labelNames) norm[k] = labels[k] === undefined || labels[k] === null ? '' : String(labels[k]).slice(0, 120);
    let key = JSON.stringify(norm);
    let s = this.series.get(key);
    if (!s) {
      if (this.series.size >= MAX_SERIES) {
        for (const k of this.labelNames) norm[k] = 'other';
        key = JSON.stringify(norm);
        s = this.series.get(key);
      }
      if (!s) {
        s = this.type === 'histogram'
          ? { labels: norm, buckets: DURATION_BUCKETS.map(() => 0), sum: 0, count: 0 }
          : { labels: norm, value: 0 };
        this.series.set(key, s);
      }
    }
    return s;
  }

  inc(labels, by = 1) { this.get(labels).value += by; }
  set(labels, v) { this.get(labels).value = v; }

  observe(labels, seconds) {
    const s = this.get(labels);
    for (let i = 0; i < DURATION_BUCKETS.length; i++) if (seconds <= DURATION_BUCKETS[i]) s.buckets[i] += 1;
    s.sum += seconds;
    s.count += 1;
  }

  render(out) {
    out.push(`# HELP ${this.name} ${this.help}`);
    out.push(`# TYPE ${this.name} ${this.type}`);
    const all = [...this.series.values()];
    if (all.length === 0 && this.labelNames.length === 0 && this.type !== 'histogram') {
      out.push(`${this.name} 0`);
      return;
    }
    for (const s of all) {
      if (this.type === 'histogram') {
        DURATION_BUCKETS.forEach((le, i) => {
          out.push(`${this.name}_bucket${labelText({ ...s.labels, le: formatNumber(le) })} ${s.buckets[i]}`);
        });
        out.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
        out.push(`${this.name}_sum${labelText(s.labels)} ${formatNumber(s.sum)}`);
        out.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
      } else {
        out.push(`${this.name}${labelText(s.labels)} ${formatNumber(s.value)}`);
      }
    }
  }
}

export class Metrics {
  constructor({ startTime = Date.now() } = {}) {
    this.families = [];
    const f = (...args) => {
      const fam = new Family(...args);
      this.families.push(fam);
      return fam;
    };
    this.requests = f('parley_http_requests_total', 'counter', 'API requests answered by the Worker, by route (ids replaced by :id) and HTTP status.', ['route', 'status']);
    this.duration = f('parley_http_request_duration_seconds', 'histogram', 'Time the Worker took to answer an API request (long-polls include their wait).', ['route']);
    this.errors = f('parley_errors_total', 'counter', 'Errors clients received: failed API requests and refused WebSocket commands, by error class and fault (client, storage, server).', ['class', 'fault']);
    this.faults = f('parley_faults_total', 'counter', 'Warning and error log lines other than requests (storage failures, mirror failures, unreachable objects …), by event, class and fault.', ['event', 'class', 'fault']);
    this.wsGauge = f('parley_websocket_connections', 'gauge', 'Conversation WebSockets open now (opened minus closed since the runtime started).');
    this.wsOpened = f('parley_websocket_opened_total', 'counter', 'Conversation WebSockets accepted.');
    this.wsClosed = f('parley_websocket_closed_total', 'counter', 'Conversation WebSockets closed.');
    this.messages = f('parley_messages_total', 'counter', 'Chat messages stored (events of kind "message"; retries of the same client_msg_id are not counted).');
    this.events = f('parley_events_total', 'counter', 'Conversation events stored, by kind.', ['kind']);
    this.conversations = f('parley_conversations_created_total', 'counter', 'Conversations created.');
    this.missed = f('parley_conversations_missed_total', 'counter', 'Assigned conversations an agent did not answer in time.');
    this.mirrorFailures = f('parley_mirror_failures_total', 'counter', 'Failed attempts to copy conversation events into D1 (retried with backoff; chat is not affected).');
    this.mirrorCaughtUp = f('parley_mirror_caught_up_total', 'counter', 'Times a conversation copied its own events into D1 (what its site\'s batches did not confirm).');
    this.mirrorBatches = f('parley_mirror_batches_total', 'counter', 'D1 batches a site wrote with its conversations\' new events, by result (written, failed).', ['result']);
    this.mirrorBatched = f('parley_mirror_batched_copies_total', 'counter', 'Conversations\' copies carried by those batches, by result (written, failed).', ['result']);
    this.logins = f('parley_agent_logins_total', 'counter', 'Agent sign-in requests, by result (ok, failed: wrong e-mail or password, rate_limited, error).', ['result']);
    this.sessions = f('parley_visitor_sessions_total', 'counter', 'Visitor sessions issued.');
    this.logLines = f('parley_log_lines_total', 'counter', 'Worker log lines received, by level.', ['level']);
    this.unparsed = f('parley_log_lines_unparsed_total', 'counter', 'Runtime output lines that were not JSON log lines (stack traces, runtime messages).');
    this.restarts = f('parley_runtime_restarts_total', 'counter', 'Times the serve process restarted the runtime (after a pause for an online backup).');
    this.paused = f('parley_paused', 'gauge', '1 while the server is paused for an online backup, else 0.');
    this.startTime = f('parley_process_start_time_seconds', 'gauge', 'Start time of the serve process, Unix seconds.');
    this.startTime.set({}, Math.floor(startTime / 1000));
    this.open = 0;
  }

  /** Account for one Worker log line (already parsed). Unknown events only count as lines. */
  observe(line) {
    if (!line || typeof line !== 'object') return;
    const level = typeof line.level === 'string' ? line.level : 'info';
    this.logLines.inc({ level });
    switch (line.event) {
      case 'request': {
        const route = typeof line.route === 'string' ? line.route : 'unknown';
        this.requests.inc({ route, status: line.status ?? '' });
        if (Number.isFinite(line.duration_ms)) this.duration.observe({ route }, Math.max(0, line.duration_ms) / 1000);
        if (line.error_class) this.errors.inc({ class: line.error_class, fault: faultOf(line) });
        if (route === '/api/v1/agent/login') {
          const result = line.status === 200 ? 'ok' : line.status === 429 ? 'rate_limited' : line.status === 401 ? 'failed' : 'error';
          this.logins.inc({ result });
        }
        return;
      }
      case 'command_refused':
        // Over HTTP the request line carries the same refusal; count sockets only.
        if (line.over === 'socket') this.errors.inc({ class: line.error_class ?? 'unknown', fault: faultOf(line) });
        return;
      case 'socket_opened':
        this.wsOpened.inc({});
        this.open += 1;
        this.wsGauge.set({}, this.open);
        return;
      case 'socket_closed':
        this.wsClosed.inc({});
        this.open = Math.max(0, this.open - 1);
        this.wsGauge.set({}, this.open);
        return;
      case 'event_stored':
        this.events.inc({ kind: line.kind ?? 'unknown' });
        if (line.kind === 'message') this.messages.inc({});
        return;
      case 'conversation_created':
        // Its `created` event (seq 1) is counted from its own event_stored line.
        this.conversations.inc({});
        return;
      case 'conversation_missed':
        this.missed.inc({});
        return;
      case 'mirror_caught_up':
        this.mirrorCaughtUp.inc({});
        return;
      case 'mirror_batch_written':
        this.mirrorBatches.inc({ result: 'written' });
        this.mirrorBatched.inc({ result: 'written' }, Number.isFinite(line.copies) ? line.copies : 0);
        return;
      case 'visitor_session':
        this.sessions.inc({});
        return;
      default:
        break;
    }
    if (line.event === 'mirror_failed') this.mirrorFailures.inc({});
    if (line.event === 'mirror_batch_failed') {
      this.mirrorBatches.inc({ result: 'failed' });
      this.mirrorBatched.inc({ result: 'failed' }, Number.isFinite(line.copies) ? line.copies : 0);
    }
    if (level === 'warn' || level === 'error') {
      this.faults.inc({ event: line.event ?? 'unknown', class: line.error_class ?? '', fault: faultOf(line) });
    }
  }

  /** A runtime output line that is not a JSON log line. */
  observeUnparsed() {
    this.unparsed.inc({});
  }

  /** The runtime stopped (pause, restart): its sockets are gone without close events. */
  runtimeStopped() {
    this.open = 0;
    this.wsGauge.set({}, 0);
  }

  runtimeRestarted() {
    this.restarts.inc({});
  }

  setPaused(paused) {
    this.paused.set({}, paused ? 1 : 0);
  }

  render() {
    const out = [];
    for (const fam of this.families) fam.render(out);
    return out.join('\n') + '\n';
  }
}

/** Parse Prometheus text into { 'name{a="b"}': value } (for tests and quick checks). */
export function parsePrometheus(text) {
  const values = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?)\s+(\S+)$/.exec(line);
    if (m) values[m[1]] = m[2] === '+Inf' ? Infinity : Number(m[2]);
  }
  return values;
}

function sameSecret(given, expected) {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * Serve GET /metrics on host:port, for requests bearing `Authorization: Bearer <token>`.
 * Resolves to { server, port, url, close() } once listening.
 */
export function startMetricsServer({ host = '127.0.0.1', port = 9464, token, metrics }) {
  if (!token) throw new Error('startMetricsServer: a token is required');
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    if (!m || !sameSecret(m[1].trim(), token)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="parley-metrics"', 'content-type': 'text/plain' })
        .end('unauthorized\n');
      return;
    }
    const body = metrics.render();
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  return new Promise((resolveListen, rejectListen) => {
    server.once('error', rejectListen);
    server.listen(port, host, () => {
      server.off('error', rejectListen);
      const real = server.address().port;
      const shownHost = host.includes(':') ? `[${host}]` : host;
      resolveListen({
        server,
        port: real,
        url: `http://${shownHost}:${real}/metrics`,
        close: () => new Promise((r) => { server.close(() => r()); server.closeAllConnections?.(); }),
      });
    });
  });
}
