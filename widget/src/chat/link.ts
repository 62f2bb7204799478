// The connection to the visitor's conversation: a WebSocket when it works, long-polling when
// WebSockets fail or are blocked, and back to the WebSocket when a probe gets through again.
// Reconnects with exponential backoff and jitter; resumes from the last seq held, so the
// server replays exactly what was missed (or answers `reset`).
import type { ApiOptions, ApiResult, Conv, Store } from '../types';

export type LinkState = 'idle' | 'connecting' | 'live' | 'offline';

export interface LinkHost {
  base: string;
  site: string;
  ls: Store;
  conv(): Conv | null;
  /** the last seq held */
  cursor(): number;
  lang(): string;
  /** the visitor token; `bad` names one the server refused */
  token(bad?: string): Promise<string>;
  api(path: string, opts?: ApiOptions): Promise<ApiResult>;
  frame(f: any): void;
  state(s: LinkState): void;
  /** the conversation is not (or no longer) the visitor's */
  gone(): void;
}

const PING = '{"v":1,"type":"ping"}';
const PING_EVERY = 25e3;
const PONG_WITHIN = 10e3;
const HELLO_WITHIN = 10e3;
const POLL_WAIT = 25;
/**
 * How long an HTTP request may take beyond the wait it asks of the server before it counts as
 * failed (and is retried): one hung on a half-open connection would otherwise never end, and
 * hold back everything waiting for it. The console bounds its requests the same way.
 */
const HTTP_WAIT = 15e3;
/** WebSocket attempts that never got a welcome, in a row, before switching to long-polling. */
const WS_FAILURES = 2;
/** How long a page remembers that WebSockets failed, so the next page starts polling at once. */
const REMEMBER_BLOCKED = 30 * 60e3;
const FIRST_PROBE = 15e3;

const sleepFor = (ms: number, wake: (fn: () => void) => void) => new Promise<void>((resolve) => {
  const t = setTimeout(resolve, ms);
  wake(() => { clearTimeout(t); resolve(); });
});

/**
 * api() that gives up after `ms`, rejecting like a network failure (however far it got: a
 * session renewal, the request, its answer); aborting `req` ends it sooner.
 */
export function bounded(
  api: LinkHost['api'], path: string, opts: ApiOptions = {}, ms = HTTP_WAIT, req = new AbortController(),
): Promise<ApiResult> {
  return new Promise((resolve, reject) => {
    const limit = setTimeout(() => {
      req.abort();
      reject(new Error('timeout'));
    }, ms);
    api(path, { ...opts, signal: req.signal }).then(resolve, reject).finally(() => clearTimeout(limit));
  });
}

export class Link {
  mode: 'ws' | 'poll';
  state: LinkState = 'idle';
  /** diagnostics: how often each transport carried the chat */
  stats = { ws: 0, poll: 0, fallbacks: 0, probes: 0 };
  private ws: WebSocket | null = null;
  private active = false;
  private stopped = true;
  private attempt = 0;
  private wsFails = 0;
  private timer: any = 0;
  private pingTimer: any = 0;
  private pongTimer: any = 0;
  private probeTimer: any = 0;
  private probeDelay = FIRST_PROBE;
  private pollGen = 0;
  private pollReq: AbortController | null = null;
  private wakePoll: (() => void) | null = null;
  /** Ends sockets still connecting or probing, without any retry. */
  private kills = new Set<() => void>();
  private haltGen = 0;

  constructor(private x: LinkHost) {
    const blocked = x.ls.get<number>('wb');
    this.mode = blocked && Date.now() - blocked < REMEMBER_BLOCKED ? 'poll' : 'ws';
    addEventListener('online', () => {
      this.attempt = 0;
      this.kick();
    });
    addEventListener('offline', () => this.halt('offline'));
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) return;
      // Back from the background (or a sleeping laptop): check the socket now.
      if (this.ws) this.ping();
      else this.kick();
    });
    addEventListener('pagehide', (e) => { if ((e as PageTransitionEvent).persisted) this.halt('idle'); });
    addEventListener('pageshow', (e) => { if ((e as PageTransitionEvent).persisted) this.kick(); });
  }

  /** Start (or restart) for the current conversation. */
  start(): void {
    this.stopped = false;
    this.kick();
  }

  /** Stop everything, e.g. when the conversation is gone. */
  stop(): void {
    this.stopped = true;
    this.halt('idle');
    clearTimeout(this.probeTimer);
    this.probeTimer = 0;
  }

  /** Connect now if not connected (skipping any backoff wait). */
  kick(): void {
    if (this.stopped || !this.x.conv()) return;
    if (this.wakePoll) {
      this.wakePoll();
      return;
    }
    if (this.active) return;
    clearTimeout(this.timer);
    this.connect();
  }

  /**
   * The visitor's language changed: a live socket signs in again, so the server translates
   * for (and answers in) the new one; long-polling sends it with every request anyway.
   */
  relang(): void {
    if (this.stopped || this.mode !== 'ws' || !this.ws) return;
    this.halt('connecting');
    this.kick();
  }

  get live(): boolean {
    return this.state === 'live';
  }

  /** Send a frame over the socket; false when there is no live socket. */
  send(frame: Record<string, unknown>): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1 || this.state !== 'live') return false;
    ws.send(JSON.stringify({ v: 1, ...frame }));
    return true;
  }

  private setState(s: LinkState) {
    if (this.state === s) return;
    this.state = s;
    this.x.state(s);
  }

  /** Drop the connection without retrying (offline, page hidden into the back-forward cache). */
  private halt(s: LinkState) {
    clearTimeout(this.timer);
    this.haltGen++;
    for (const kill of [...this.kills]) kill();
    this.pollGen++;
    this.pollReq?.abort();
    this.pollReq = null;
    this.wakePoll = null;
    const ws = this.ws;
    this.ws = null;
    this.stopPing();
    this.active = false;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
    this.setState(s);
  }

  private connect() {
    clearTimeout(this.timer);
    if (this.stopped || this.active || !this.x.conv()) return;
    if (!navigator.onLine) {
      this.setState('offline');
      return;
    }
    if (this.state !== 'live') this.setState('connecting');
    if (this.mode === 'ws') this.openWs(false);
    else this.poll();
  }

  private backoff(): number {
    const cap = Math.min(30e3, 500 * 2 ** this.attempt++);
    return cap / 2 + (Math.random() * cap) / 2;
  }

  private retry() {
    if (this.stopped) return;
    if (!navigator.onLine) {
      this.setState('offline');
      return;
    }
    this.setState('connecting');
    this.timer = setTimeout(() => this.connect(), this.backoff());
  }

  // ---- WebSocket

  private async openWs(probe: boolean) {
    const conv = this.x.conv();
    if (!conv) return;
    if (!probe) this.active = true;
    const gen = this.haltGen;
    let token: string;
    try {
      token = await this.x.token();
    } catch {
      if (probe) this.scheduleProbe();
      else {
        this.active = false;
        this.retry();
      }
      return;
    }
    if (gen !== this.haltGen || this.stopped || (probe && this.mode !== 'poll')) return;
    const url = `${this.x.base.replace(/^http/, 'ws')}/api/v1/conversations/${encodeURIComponent(conv.id)}/ws?site=${encodeURIComponent(this.x.site)}`;
    let ws: WebSocket;
    let welcomed = false;
    let refused = '';
    let done = false;
    // Runs once, however the socket ends: close event, pong timeout or hello timeout.
    const kill = () => {
      done = true;
      this.kills.delete(kill);
      clearTimeout(guard);
      ws.onclose = ws.onmessage = ws.onerror = null;
      try { ws.close(); } catch { /* closed */ }
    };
    const finish = () => {
      if (done) return;
      kill();
      if (this.ws === ws) {
        this.ws = null;
        this.stopPing();
      }
      if (this.stopped) return;
      if (refused === 'not_found') {
        this.active = false;
        this.x.gone();
        return;
      }
      if (probe && !welcomed) {
        this.scheduleProbe();
        return;
      }
      if (this.mode !== 'ws') return; // an old socket after a switch
      this.active = false;
      if (refused.startsWith('token_')) {
        this.x.token(token).then(() => this.connect(), () => this.retry());
        return;
      }
      if (!welcomed && navigator.onLine && ++this.wsFails >= WS_FAILURES) {
        // The network lets HTTP through but not this socket: long-poll, probe now and then.
        this.mode = 'poll';
        this.stats.fallbacks++;
        this.x.ls.set('wb', Date.now());
        this.probeDelay = FIRST_PROBE;
        this.scheduleProbe();
        this.connect();
        return;
      }
      this.retry();
    };
    const guard = setTimeout(finish, HELLO_WITHIN);
    try {
      ws = new WebSocket(url);
    } catch {
      // e.g. a Content-Security-Policy without this host in connect-src
      ws = { close() {} } as any;
      finish();
      return;
    }
    this.kills.add(kill);
    if (probe) this.stats.probes++;
    ws.onopen = () => {
      ws.send(JSON.stringify({ v: 1, type: 'hello', token, after: this.x.cursor(), epoch: this.x.conv()?.e, lang: this.x.lang() }));
    };
    ws.onmessage = (e) => {
      let f: any;
      try { f = JSON.parse(String(e.data)); } catch { return; }
      if (!f || typeof f !== 'object') return;
      clearTimeout(this.pongTimer);
      if (f.type === 'pong') return;
      if (!welcomed) {
        if (f.type === 'error') {
          refused = String(f.code || '');
          return;
        }
        if (f.type !== 'welcome') return;
        welcomed = true;
        clearTimeout(guard);
        if (probe) {
          if (this.mode !== 'poll' || this.stopped) {
            finish();
            return;
          }
          // The probe got through: leave long-polling.
          this.pollGen++;
          this.pollReq?.abort();
          this.wakePoll = null;
          this.mode = 'ws';
          clearTimeout(this.probeTimer);
          this.probeTimer = 0;
        }
        this.kills.delete(kill);
        this.x.ls.del('wb');
        this.ws = ws;
        this.active = true;
        this.attempt = 0;
        this.wsFails = 0;
        this.stats.ws++;
        this.startPing();
        this.x.frame(f);
        this.setState('live');
        return;
      }
      this.x.frame(f);
    };
    ws.onclose = finish;
    ws.onerror = () => { /* a close event follows */ };
  }

  private startPing() {
    this.stopPing();
    this.pingTimer = setInterval(() => this.ping(), PING_EVERY);
  }

  private stopPing() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  /** Ping with the exact text the runtime answers without waking the conversation. */
  private ping() {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return;
    ws.send(PING);
    clearTimeout(this.pongTimer);
    this.pongTimer = setTimeout(() => {
      // No answer: the connection is dead even if the browser has not noticed yet.
      if (this.ws === ws) ws.onclose?.(new CloseEvent('close', { code: 4000 }));
    }, PONG_WITHIN);
  }

  private scheduleProbe() {
    clearTimeout(this.probeTimer);
    if (this.stopped || this.mode !== 'poll') return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = 0;
      if (this.mode !== 'poll' || this.stopped) return;
      if (!navigator.onLine || this.state !== 'live') this.scheduleProbe();
      else this.openWs(true);
    }, this.probeDelay);
    this.probeDelay = Math.min(this.probeDelay * 2, 5 * 60e3);
  }

  // ---- long-poll

  private async poll() {
    const gen = ++this.pollGen;
    this.active = true;
    if (!this.probeTimer) this.scheduleProbe();
    while (gen === this.pollGen && !this.stopped && this.mode === 'poll') {
      const conv = this.x.conv();
      if (!conv) break;
      const req = new AbortController();
      this.pollReq = req;
      const wait = this.state === 'live' ? POLL_WAIT : 0;
      let r: ApiResult | null = null;
      try {
        r = await bounded(
          this.x.api,
          `/api/v1/conversations/${encodeURIComponent(conv.id)}/events?after=${this.x.cursor()}&epoch=${encodeURIComponent(conv.e)}&wait=${wait}`,
          {}, wait * 1e3 + HTTP_WAIT, req,
        );
      } catch {
        r = null;
      }
      if (gen !== this.pollGen) return; // switched to WebSocket or halted
      if (r && r.s === 200 && r.b) {
        this.attempt = 0;
        this.stats.poll++;
        this.x.frame(r.b);
        this.setState('live');
        continue;
      }
      if (r && r.s === 404) {
        this.active = false;
        this.x.gone();
        return;
      }
      if (!navigator.onLine) {
        this.active = false;
        this.setState('offline');
        return;
      }
      this.setState('connecting');
      const delay = r && r.s === 429 ? Number(r.b?.retry_after_ms) || 1000 : this.backoff();
      await sleepFor(delay, (wake) => { this.wakePoll = wake; });
      this.wakePoll = null;
    }
    if (gen === this.pollGen) this.active = false;
  }
}
