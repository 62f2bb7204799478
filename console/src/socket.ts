// A WebSocket that signs in with a hello frame, reconnects with backoff and jitter, notices a
// dead connection and reports its state. Used for the conversation sockets and the site's
// console socket. A short-lived token of the session travels in the hello frame, never in the
// URL.
import { socketToken, wsUrl } from './api';
import { Emitter } from './emitter';

export type SocketState = 'connecting' | 'live' | 'offline' | 'gone';

export const PING = '{"v":1,"type":"ping"}';
const BACKOFF = [500, 1000, 2000, 4000, 8000, 15000, 30000];

export interface SocketOptions {
  path: string;
  /** The hello frame (without its token) to send on every (re)connect; null to give up (signed out). */
  hello: () => Record<string, unknown> | null;
  /** The frame type that means the hello was accepted. */
  welcomeType: string;
  /**
   * Frames sent periodically while live. With `expectReply`, a connection that stays silent for
   * `timeoutMs` after one is considered dead and replaced (the browser may not notice for minutes).
   */
  keepalive?: { frame: string; everyMs: number; expectReply?: boolean; timeoutMs?: number }[];
}

export class ReconnectingSocket extends Emitter<{
  frame: [any];
  state: [SocketState];
  /** A connect attempt failed before any frame arrived. */
  failed: [number];
}> {
  state: SocketState = 'offline';
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private keepTimers: ReturnType<typeof setInterval>[] = [];
  private replyTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private gotFrame = false;
  /** Counts open() calls, so one that awaited its token after a newer one gives way. */
  private generation = 0;
  failures = 0;

  constructor(private opts: SocketOptions) {
    super();
    window.addEventListener('online', this.kick);
    document.addEventListener('visibilitychange', this.onVisible);
  }

  start(): void {
    this.stopped = false;
    if (!this.ws) void this.open();
  }

  /** Stop for good (tab closed, signed out). */
  stop(): void {
    this.stopped = true;
    window.removeEventListener('online', this.kick);
    document.removeEventListener('visibilitychange', this.onVisible);
    clearTimeout(this.timer);
    this.teardown();
    this.setState('gone');
  }

  send(frame: Record<string, unknown> | string): boolean {
    if (this.state !== 'live' || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify({ v: 1, ...frame }));
    return true;
  }

  /** Reconnect now (after a network change or a detected stall). */
  reconnect(): void {
    if (this.stopped) return;
    this.teardown();
    clearTimeout(this.timer);
    void this.open();
  }

  private kick = () => {
    if (!this.stopped && this.state !== 'live' && this.state !== 'connecting') {
      this.attempt = 0;
      this.reconnect();
    }
  };

  private onVisible = () => {
    if (document.visibilityState === 'visible') this.kick();
  };

  private setState(s: SocketState): void {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  private async open(): Promise<void> {
    const generation = ++this.generation;
    if (!this.opts.hello()) return this.stop();
    this.setState('connecting');
    this.gotFrame = false;
    let token: string | null;
    try {
      token = await socketToken();
    } catch {
      if (generation === this.generation) this.schedule();
      return;
    }
    if (generation !== this.generation || this.stopped) return;
    if (!token) return this.stop();
    let ws: WebSocket;
    try {
      ws = new WebSocket(wsUrl(this.opts.path));
    } catch {
      this.schedule();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const h = this.opts.hello();
      if (!h) return this.stop();
      ws.send(JSON.stringify({ v: 1, type: 'hello', token, ...h }));
    };
    ws.onmessage = (m) => {
      if (ws !== this.ws) return;
      this.gotFrame = true;
      clearTimeout(this.replyTimer);
      this.replyTimer = undefined;
      let frame: any;
      try {
        frame = JSON.parse(String(m.data));
      } catch {
        return;
      }
      if (frame?.type === this.opts.welcomeType && this.state !== 'live') {
        this.attempt = 0;
        this.failures = 0;
        this.setState('live');
        this.startKeepalive();
      }
      this.emit('frame', frame);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.teardown();
      if (this.stopped) return;
      if (!this.gotFrame) {
        this.failures += 1;
        this.emit('failed', this.failures);
      }
      if (ev.code === 1008 && this.closeIsFinal) return this.stop();
      this.schedule();
    };
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  /** Set by the owner when an error frame means reconnecting cannot help. */
  closeIsFinal = false;

  private startKeepalive(): void {
    this.stopKeepalive();
    for (const k of this.opts.keepalive ?? []) {
      this.keepTimers.push(setInterval(() => {
        if (!this.send(k.frame)) return;
        if (k.expectReply && !this.replyTimer) {
          this.replyTimer = setTimeout(() => {
            // No answer at all: the connection is dead even if the browser has not noticed.
            this.replyTimer = undefined;
            this.reconnect();
          }, k.timeoutMs ?? 10_000);
        }
      }, k.everyMs));
    }
  }

  private stopKeepalive(): void {
    for (const t of this.keepTimers) clearInterval(t);
    this.keepTimers = [];
  }

  private teardown(): void {
    this.stopKeepalive();
    clearTimeout(this.replyTimer);
    this.replyTimer = undefined;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
    if (!this.stopped) this.setState('offline');
  }

  private schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const base = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)];
    this.attempt += 1;
    const delay = base / 2 + Math.random() * base;
    this.setState('offline');
    this.timer = setTimeout(() => void this.open(), navigator.onLine === false ? Math.max(delay, 5000) : delay);
  }
}
