// One open conversation: its events (by seq), its live socket with resume, its outbox and the
// operations an agent can do on it. The view renders from this; nothing here touches the DOM.
//
// Start-up: info → latest history page → socket hello with after=<last seq held>&epoch, so the
// server replays exactly what was missed (or sends `reset`, after which history is reloaded).
import { api, ApiError, confirmSignedOut, HTTP_WAIT, isMissingEndpoint, isSignedIn, SIGNED_OUT_CODES } from './api';
import { recordRefusal, RETRYABLE_CODES, sendBody } from './courier';
import { Emitter } from './emitter';
import { upload, type UploadProgress } from './files';
import { lang, t } from './i18n';
import type { Outbox, OutboxItem } from './outbox';
import { PING, ReconnectingSocket, type SocketState } from './socket';
import type { Agent, Ev, Participant } from './types';

const PAGE = 50;
const TYPING_TTL = 6000;
/** A socket down this long (not just reconnecting) leaves sending, reading and receiving to HTTP. */
export const HTTP_FALLBACK_AFTER = 8000;
/** A thread whose history could not be loaded tries again after this long. */
const LOAD_RETRY_MS = 3000;
/** A send not acknowledged by then goes again (same client_msg_id: the server deduplicates). */
const ACK_WITHIN = 10_000;
/** The most events one long-poll answer carries. */
const EVENTS_PAGE = 200;
/** How long the server may hold a long-poll for events (it allows 30 s). */
const LONG_POLL_S = 25;
/** The longest pause between failed long-polls (doubling from LOAD_RETRY_MS). */
const POLL_BACKOFF_MAX_MS = 30_000;
/**
 * Long-polls held open at once across the page's conversations: over HTTP/1.1 a browser opens
 * six connections to a host, and the console's other requests must not queue behind them. The
 * conversations beyond this ask with no wait, every few seconds.
 */
const LONG_POLLS_AT_ONCE = 2;
let longPolls = 0;
/** Uploads the server had no room for just then (`uploads_busy`) go again by themselves this often. */
const BUSY_UPLOAD_TRIES = 5;

export type ConvEvents = {
  /** Events were added or replaced; `prepended` when older history came in. */
  events: [{ added: Ev[]; prepended: boolean; reset: boolean }];
  status: [];
  reads: [];
  typing: [];
  conn: [SocketState];
  outbox: [];
  /** An upload's bytes moved (its entry in `uploads` says how far). */
  upload: [];
  tags: [];
  gone: [];
  error: [ApiError];
  /** A visitor message arrived live (not from history). */
  incoming: [Ev];
};

export class ConvSession extends Emitter<ConvEvents> {
  readonly id: string;
  events = new Map<number, Ev>();
  /** Highest seq such that every seq from the oldest loaded one up to it is held. */
  lastSeq = 0;
  epoch: string | null = null;
  head = 0;
  /** seq to ask history `before=` for older events; null when the beginning is loaded. */
  nextBefore: number | null | undefined = undefined;
  loadingOlder = false;
  /** A load of the newest history is retrying (see loadUntilLoaded). */
  private loadingLatest = false;
  loaded = false;
  status: 'open' | 'closed' = 'open';
  assignee: { id: string; name?: string } | null = null;
  visitorId: string | null = null;
  siteId: string | null = null;
  createdAt = 0;
  reads: Record<string, number> = {};
  typing = new Map<string, { who: Participant; until: number }>();
  tags: string[] | null = null;
  revealed = new Map<number, string>();
  gone = false;
  conn: SocketState = 'offline';

  private socket: ReconnectingSocket;
  /** Sends on the socket awaiting their ack, with the time after which they go again. */
  private inflight = new Map<string, number>();
  private stopped = false;
  /** Events are being fetched by long-poll (the socket is down). */
  private receivingOverHttp = false;
  /** Ends the long-poll under way (the socket is live again, or the tab closed). */
  private pollAbort: AbortController | null = null;
  private offlineSince = Date.now();
  private flushTimer: ReturnType<typeof setInterval> | undefined;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;
  private lastTypingSent = 0;
  private typingActive = false;
  private gapFetch: Promise<void> | null = null;
  private readSent = 0;
  private readAcked = 0;
  private unsubs: (() => void)[] = [];

  constructor(id: string, private me: Agent, private outbox: Outbox) {
    super();
    this.id = id;
    this.socket = new ReconnectingSocket({
      path: `/api/v1/conversations/${encodeURIComponent(id)}/ws`,
      welcomeType: 'welcome',
      hello: () => {
        if (!isSignedIn()) return null;
        const resume = this.loaded && this.epoch ? { after: this.lastSeq, epoch: this.epoch } : {};
        return { lang: lang(), ...resume };
      },
      keepalive: [{ frame: PING, everyMs: 25_000, expectReply: true, timeoutMs: 10_000 }],
    });
    this.socket.on('frame', (f) => this.onFrame(f));
    this.socket.on('state', (s) => {
      this.conn = s;
      if (s !== 'live') {
        this.inflight.clear();
        if (!this.offlineSince) this.offlineSince = Date.now();
      } else {
        this.offlineSince = 0;
        this.pollAbort?.abort();
      }
      this.emit('conn', s);
    });
    this.unsubs.push(this.outbox.on('change', (c) => c === this.id && this.emit('outbox')));
  }

  async start(): Promise<void> {
    try {
      // Bounded like every request of a conversation: one that hangs would keep the thread
      // loading for good (the socket starts after these, and its welcome loads it again).
      const info = await api<any>(`/api/v1/conversations/${encodeURIComponent(this.id)}`, { signal: AbortSignal.timeout(HTTP_WAIT) });
      if (this.stopped) return;
      this.applyInfo(info);
      await this.loadLatest();
    } catch (e) {
      if (this.stopped) return;
      if (e instanceof ApiError && (e.code === 'not_found' || e.code === 'forbidden')) return this.markGone();
      // Network trouble: the socket retries and its welcome tells us the rest.
    }
    // The tab may have been closed while this was loading: start nothing then.
    if (this.stopped) return;
    this.socket.start();
    this.loadTags();
    this.flushTimer = setInterval(() => this.flush(), 4000);
  }

  stop(): void {
    this.stopped = true;
    this.setTyping(false);
    this.socket.stop();
    this.pollAbort?.abort();
    clearInterval(this.flushTimer);
    clearTimeout(this.typingTimer);
    for (const u of this.unsubs) u();
  }

  private markGone(): void {
    this.gone = true;
    this.socket.stop();
    this.emit('gone');
  }

  private applyInfo(info: any): void {
    if (!info) return;
    if (info.status === 'open' || info.status === 'closed') this.status = info.status;
    const a = info.assignee;
    this.assignee = a ? (typeof a === 'string' ? { id: a } : { id: a.id, name: a.name }) : null;
    this.visitorId = info.visitor ?? this.visitorId;
    this.siteId = info.site ?? this.siteId;
    this.createdAt = info.created_at ?? this.createdAt;
    this.emit('status');
  }

  /** Loads the newest page of history (start-up, and after a reset) and merges it. */
  private async loadLatest(): Promise<void> {
    const page = await api<any>(`/api/v1/conversations/${encodeURIComponent(this.id)}/history?limit=${PAGE}`, { signal: AbortSignal.timeout(HTTP_WAIT) });
    this.epoch = page.epoch ?? this.epoch;
    this.head = Math.max(this.head, page.head ?? 0);
    const evs: Ev[] = page.events ?? [];
    for (const e of evs) this.events.set(e.seq, e);
    this.nextBefore = page.next_before ?? null;
    const top = evs.length ? evs[evs.length - 1].seq : page.head ?? 0;
    this.lastSeq = Math.max(this.lastSeq, top);
    while (this.events.has(this.lastSeq + 1)) this.lastSeq += 1;
    this.settleAcknowledged();
    this.loaded = true;
    for (const e of evs) this.applyEventState(e);
    this.emit('events', { added: evs, prepended: false, reset: true });
  }

  /** Loads the newest history, again every few seconds while it fails, until it is there. */
  private async loadUntilLoaded(): Promise<void> {
    if (this.loadingLatest) return;
    this.loadingLatest = true;
    try {
      while (!this.loaded && !this.stopped && !this.gone) {
        try {
          await this.loadLatest();
        } catch (e) {
          if (e instanceof ApiError && (e.code === 'not_found' || e.code === 'forbidden')) return this.markGone();
          await new Promise((resolve) => setTimeout(resolve, LOAD_RETRY_MS));
        }
      }
    } finally {
      this.loadingLatest = false;
    }
  }

  /** Loads the page before the oldest loaded event. */
  async loadOlder(): Promise<boolean> {
    if (this.loadingOlder || this.nextBefore === null || this.nextBefore === undefined) return false;
    this.loadingOlder = true;
    try {
      const page = await api<any>(
        `/api/v1/conversations/${encodeURIComponent(this.id)}/history?limit=${PAGE}&before=${this.nextBefore}`,
      );
      const evs: Ev[] = (page.events ?? []).filter((e: Ev) => !this.events.has(e.seq));
      for (const e of evs) this.events.set(e.seq, e);
      this.nextBefore = page.next_before ?? null;
      this.emit('events', { added: evs, prepended: true, reset: false });
      return true;
    } finally {
      this.loadingOlder = false;
    }
  }

  sortedEvents(): Ev[] {
    return Array.from(this.events.values()).sort((a, b) => a.seq - b.seq);
  }

  private onFrame(f: any): void {
    switch (f?.type) {
      case 'welcome': {
        this.status = f.status === 'closed' ? 'closed' : 'open';
        this.reads = { ...(f.reads ?? {}) };
        this.readSent = Math.max(this.readSent, this.reads[this.me.id] ?? 0);
        if (this.epoch && f.epoch !== this.epoch) {
          // Another log incarnation: the reset that follows reloads history.
        }
        this.epoch = this.epoch ?? f.epoch;
        this.head = Math.max(this.head, f.head ?? 0);
        this.readAcked = this.reads[this.me.id] ?? 0;
        this.emit('status');
        this.emit('reads');
        this.sendRead();
        if (!this.loaded) void this.loadUntilLoaded();
        if (!this.visitorId) {
          api<any>(`/api/v1/conversations/${encodeURIComponent(this.id)}`).then((info) => this.applyInfo(info), () => {});
        }
        this.flush();
        break;
      }
      case 'event':
        this.addLive(f as Ev);
        break;
      case 'ack':
        this.acknowledge(f.client_msg_id, f.seq);
        break;
      case 'typing': {
        const p: Participant = f.participant;
        if (!p || p.id === this.me.id) break;
        if (f.active) this.typing.set(p.id, { who: p, until: Date.now() + TYPING_TTL });
        else this.typing.delete(p.id);
        this.emit('typing');
        setTimeout(() => this.expireTyping(), TYPING_TTL + 50);
        break;
      }
      case 'read':
        if (typeof f.participant === 'string' && typeof f.seq === 'number') {
          this.reads[f.participant] = Math.max(this.reads[f.participant] ?? 0, f.seq);
          this.emit('reads');
        }
        break;
      case 'reset':
        this.reset(f).catch(() => this.socket.reconnect());
        break;
      case 'error':
        this.onError(f);
        break;
      default:
        break;
    }
  }

  /** Drops what we hold (events after a socket's reset frame are live and kept), then reloads. */
  private reset(f: { epoch: string; head?: number }): Promise<void> {
    // Another log (a restore): what was acknowledged in the old one may not be in it; sent
    // again (the server answers a duplicate for what it has).
    if (this.epoch && f.epoch !== this.epoch) this.outbox.unacknowledge(this.id);
    this.epoch = f.epoch;
    this.head = f.head ?? this.head;
    this.loaded = false;
    this.events.clear();
    this.lastSeq = 0;
    this.emit('events', { added: [], prepended: false, reset: true });
    return this.loadLatest();
  }

  private onError(f: any): void {
    const err = new ApiError(0, f.code ?? 'internal', f.message ?? '', f.retry_after_ms);
    if (f.client_msg_id && this.outbox.get(f.client_msg_id)) {
      this.inflight.delete(f.client_msg_id);
      recordRefusal(this.outbox, f.client_msg_id, err);
      return;
    }
    if (SIGNED_OUT_CODES.includes(f.code)) {
      // The 1008 close that follows reconnects with a fresh token, unless the sign-in is over.
      void confirmSignedOut(f.code).then((over) => over && this.socket.stop());
      return;
    }
    if (f.code === 'not_found' || f.code === 'forbidden') {
      this.socket.closeIsFinal = true;
      this.markGone();
      return;
    }
    // A passing failure that names no message, while replies wait for their acks: those are
    // sent again when their ack is overdue, so there is nothing for the agent to do about it.
    if (RETRYABLE_CODES.includes(f.code) && this.inflight.size) return;
    this.emit('error', err);
  }

  private expireTyping(): void {
    const now = Date.now();
    let changed = false;
    for (const [id, t] of this.typing) {
      if (t.until <= now) {
        this.typing.delete(id);
        changed = true;
      }
    }
    if (changed) this.emit('typing');
  }

  private applyEventState(e: Ev): void {
    if (e.kind === 'closed') this.status = 'closed';
    else if (e.kind === 'reopened') this.status = 'open';
    else if (e.kind === 'assigned' && e.body?.agent?.id) this.assignee = { id: e.body.agent.id, name: e.body.agent.name };
    if (e.author?.role !== 'system' && e.author?.id) {
      // Writing implies having read up to here.
      this.reads[e.author.id] = Math.max(this.reads[e.author.id] ?? 0, e.seq);
    }
    if (e.author?.id && this.typing.delete(e.author.id)) this.emit('typing');
  }

  private addLive(e: Ev): void {
    if (typeof e.seq !== 'number') return;
    const known = this.events.has(e.seq);
    this.events.set(e.seq, e);
    this.head = Math.max(this.head, e.seq);
    if (e.client_msg_id && e.author?.id === this.me.id) this.outbox.done(e.client_msg_id);
    if (e.seq === this.lastSeq + 1 || this.lastSeq === 0) {
      this.lastSeq = e.seq;
      while (this.events.has(this.lastSeq + 1)) this.lastSeq += 1;
      this.settleAcknowledged();
    } else if (e.seq > this.lastSeq + 1) {
      this.fillGap();
    }
    if (known) return;
    this.applyEventState(e);
    this.emit('status');
    this.emit('events', { added: [e], prepended: false, reset: false });
    if (e.author?.role === 'visitor' && (e.kind === 'message' || e.kind === 'file')) this.emit('incoming', e);
  }

  /** Fetches events missing between lastSeq and what arrived (should not happen on a socket). */
  private fillGap(): void {
    if (this.gapFetch) return;
    this.gapFetch = this.catchUp()
      .catch(() => {})
      .finally(() => {
        this.gapFetch = null;
      });
  }

  /**
   * Fetches every event after lastSeq over HTTP (what the socket would have brought); with
   * `waitS`, the server holds the request that long for the first one.
   */
  private async catchUp(waitS = 0, signal?: AbortSignal): Promise<void> {
    if (!this.loaded || !this.epoch) return this.loadLatest();
    for (;;) {
      const q = new URLSearchParams({ after: String(this.lastSeq), epoch: this.epoch, wait: String(waitS) });
      const r = await api<any>(`/api/v1/conversations/${encodeURIComponent(this.id)}/events?${q}`, { signal: signal ?? AbortSignal.timeout(HTTP_WAIT) });
      if (r?.type === 'reset') return this.reset(r);
      const events: Ev[] = r?.events ?? [];
      for (const e of events) this.addLive(e);
      if (events.length < EVENTS_PAGE) return;
    }
  }

  /**
   * While the socket is down, events come by long-poll, one request at a time, until it is live
   * again (its hello resumes from lastSeq) or the tab closes: the thread never waits for the
   * agent to act, or for the socket, to show what the visitor wrote.
   */
  private async pollWhileDown(): Promise<void> {
    if (this.receivingOverHttp) return;
    this.receivingOverHttp = true;
    let failures = 0;
    while (!this.stopped && !this.gone && this.conn !== 'live') {
      const waitS = longPolls < LONG_POLLS_AT_ONCE ? LONG_POLL_S : 0;
      const abort = (this.pollAbort = new AbortController());
      const timer = setTimeout(() => abort.abort(), HTTP_WAIT + waitS * 1000);
      const started = Date.now();
      let pause = LOAD_RETRY_MS;
      if (waitS) longPolls += 1;
      try {
        await this.catchUp(waitS, abort.signal);
        failures = 0;
      } catch (e) {
        if (e instanceof ApiError && (e.code === 'not_found' || e.code === 'forbidden')) this.markGone();
        // A server in trouble is not asked again every few seconds by every open tab.
        failures += 1;
        pause = (e instanceof ApiError && e.retryAfterMs) || Math.min(POLL_BACKOFF_MAX_MS, LOAD_RETRY_MS * 2 ** (failures - 1));
      } finally {
        if (waitS) longPolls -= 1;
        clearTimeout(timer);
        this.pollAbort = null;
      }
      // An answer at once (a failure, events that were waiting, no wait asked): not again at once.
      const early = pause - (Date.now() - started);
      if (early > 0) await new Promise((resolve) => setTimeout(resolve, early));
    }
    this.receivingOverHttp = false;
  }

  // ---- sending ---------------------------------------------------------------------------

  pending(): OutboxItem[] {
    return this.outbox.for(this.id).filter((i) => !this.hasClientMsg(i.client_msg_id));
  }

  /** Acknowledged replies whose seq the thread has passed: here, or in history not loaded. */
  private settleAcknowledged(): void {
    for (const item of this.outbox.for(this.id)) {
      if (item.acked && item.acked <= this.lastSeq) this.outbox.done(item.client_msg_id);
    }
  }

  /** The server stored a reply under `seq` (its ack, over the socket or HTTP): shown until its event is here. */
  acknowledge(clientMsgId: string, seq: number | undefined): void {
    this.inflight.delete(clientMsgId);
    if (typeof seq === 'number' && seq > this.lastSeq) this.outbox.acknowledged(clientMsgId, seq);
    else this.outbox.done(clientMsgId);
  }

  private hasClientMsg(id: string): boolean {
    for (const e of this.events.values()) if (e.client_msg_id === id && e.author?.id === this.me.id) return true;
    return false;
  }

  send(text: string, note: boolean): void {
    this.setTyping(false);
    this.outbox.add(this.id, text, note);
    this.flush();
  }

  /**
   * Files being uploaded and how far each is, and uploads that failed (kept with their file so
   * the agent can send them again). In memory: the bytes cannot be kept across a reload.
   */
  uploads = new Map<string, UploadProgress>();
  private uploadFiles = new Map<string, File>();

  /** Uploads a file, then posts it through the outbox like a message. A failure stays listed. */
  async sendFile(file: File, key = `${Date.now()}-${Math.random()}`, busyTries = 0): Promise<void> {
    const progress: UploadProgress = { name: file.name, loaded: 0, total: file.size };
    this.uploads.set(key, progress);
    this.uploadFiles.set(key, file);
    this.emit('outbox');
    try {
      const info = await upload(this.id, file, (loaded, total) => {
        progress.loaded = loaded;
        progress.total = total;
        this.emit('upload');
      });
      this.forgetUpload(key);
      this.outbox.add(this.id, '', false, info);
      this.flush();
      this.emit('outbox');
    } catch (e) {
      const err = e as ApiError;
      if (err instanceof ApiError && err.code === 'uploads_busy' && busyTries < BUSY_UPLOAD_TRIES - 1 && !this.stopped) {
        // Other uploads held the server's upload memory: this one goes again by itself, after
        // the wait the server asked for, spread so that uploads refused together do not return
        // together.
        const wait = (err.retryAfterMs ?? 2000) * (1 + Math.random()) * (busyTries + 1);
        progress.loaded = 0;
        this.emit('upload');
        await new Promise((resolve) => setTimeout(resolve, wait));
        if (!this.stopped && this.uploads.get(key) === progress) return this.sendFile(file, key, busyTries + 1);
        return;
      }
      // The network, a busy server or a limit in time: the same bytes may go through later;
      // so may a refused sign-in that turns out to be still good. A refusal of the file itself
      // (its size, its type) will not change.
      const retryable = !(err instanceof ApiError) || err.status === 0 || err.status >= 500 || err.status === 429
        || (err.status === 401 && SIGNED_OUT_CODES.includes(err.code) && !(await confirmSignedOut(err.code)));
      // With the conversation's tab closed there is no thread to show it in: the caller says so.
      if (this.stopped) throw e;
      progress.failed = { message: err.message || t('genericError'), retryable };
      this.emit('outbox');
    }
  }

  /** Sends a failed upload's file again. */
  retryUpload(key: string): void {
    const file = this.uploadFiles.get(key);
    if (file && this.uploads.get(key)?.failed) void this.sendFile(file, key);
  }

  /** Drops a failed upload. */
  discardUpload(key: string): void {
    if (!this.uploads.get(key)?.failed) return;
    this.forgetUpload(key);
    this.emit('outbox');
  }

  private forgetUpload(key: string): void {
    this.uploads.delete(key);
    this.uploadFiles.delete(key);
  }

  retry(clientMsgId: string): void {
    this.outbox.retry(clientMsgId);
    this.flush();
  }

  discard(clientMsgId: string): void {
    this.outbox.done(clientMsgId);
  }

  /**
   * Sends what the outbox holds for this conversation over the socket; while it is down, reads
   * events by long-poll (the Store's courier posts the replies over HTTP, see httpQueue).
   */
  flush(): void {
    if (this.stopped) return;
    const now = Date.now();
    this.sendRead();
    this.settleAcknowledged();
    const queue = this.unsent();
    if (this.conn === 'live') {
      for (const item of queue) {
        // An ack that never came (the server's error may not say which send it was about): again.
        const unacked = this.inflight.get(item.client_msg_id);
        if (unacked && unacked > now) continue;
        // One told to wait (rate limited) holds back those written after it: replies are
        // stored in the order they were written.
        if (item.retryAt && item.retryAt > now) break;
        if (!this.socket.send({ type: 'send', ...sendBody(item) })) return;
        this.inflight.set(item.client_msg_id, now + ACK_WITHIN);
      }
    } else if (this.downAWhile()) {
      void this.pollWhileDown();
    }
  }

  /** Replies not yet stored, oldest first; one whose event is already in the thread is done. */
  private unsent(): OutboxItem[] {
    const queue: OutboxItem[] = [];
    for (const item of this.outbox.toSend(this.id)) {
      if (this.hasClientMsg(item.client_msg_id)) this.outbox.done(item.client_msg_id);
      else queue.push(item);
    }
    return queue;
  }

  /** Replies for the courier to post over HTTP: none while the socket is live, or has only just dropped (it may be back in a moment). */
  httpQueue(): OutboxItem[] {
    return this.conn !== 'live' && this.downAWhile() && !this.gone && !this.stopped ? this.unsent() : [];
  }

  /** Whether the socket has been down long enough for HTTP to take over. */
  private downAWhile(): boolean {
    return !!this.offlineSince && Date.now() - this.offlineSince > HTTP_FALLBACK_AFTER;
  }

  /** Typing notices: at most one "active" every 3 s, "inactive" after 4 s of silence. */
  typed(hasText: boolean): void {
    clearTimeout(this.typingTimer);
    if (!hasText) return this.setTyping(false);
    const now = Date.now();
    if (!this.typingActive || now - this.lastTypingSent > 3000) {
      this.typingActive = true;
      this.lastTypingSent = now;
      this.socket.send({ type: 'typing', active: true });
    }
    this.typingTimer = setTimeout(() => this.setTyping(false), 4000);
  }

  setTyping(active: boolean): void {
    clearTimeout(this.typingTimer);
    if (!active && this.typingActive) {
      this.typingActive = false;
      this.socket.send({ type: 'typing', active: false });
    }
  }

  // ---- reads -----------------------------------------------------------------------------

  myRead(): number {
    return Math.max(this.reads[this.me.id] ?? 0, this.readSent);
  }

  /** The visitor's read marker. */
  visitorRead(): number {
    return this.visitorId ? this.reads[this.visitorId] ?? 0 : 0;
  }

  unread(): number {
    const mark = this.myRead();
    let n = 0;
    for (const e of this.events.values()) if (e.seq > mark && (e.kind === 'message' || e.kind === 'file') && e.author?.role === 'visitor') n += 1;
    return n;
  }

  /** Marks everything held as read (the view calls this while the conversation is on screen). */
  markRead(): void {
    const seq = this.lastSeq;
    if (!seq || seq <= this.myRead()) return;
    this.readSent = seq;
    this.reads[this.me.id] = seq;
    this.sendRead();
    this.emit('reads');
  }

  /** The read marker goes over the socket; HTTP only when the socket has been down a while. */
  private sendRead(): void {
    const seq = this.readSent;
    if (!seq || seq <= this.readAcked) return;
    if (this.socket.send({ type: 'read', seq })) {
      this.readAcked = seq;
    } else if (this.downAWhile()) {
      this.readAcked = seq;
      api(`/api/v1/conversations/${encodeURIComponent(this.id)}/read`, { method: 'POST', body: { seq } }).catch(() => {
        this.readAcked = 0;
      });
    }
  }

  // ---- operations ------------------------------------------------------------------------

  /** Operations without parameters are sent without a body (nothing for the server to drain). */
  private post<T = any>(op: string, body?: unknown): Promise<T> {
    return api<T>(`/api/v1/conversations/${encodeURIComponent(this.id)}/${op}`, { method: 'POST', body });
  }

  /** Takes the conversation through the site's routing (race-safe: one winner). */
  async accept(): Promise<void> {
    await this.post('claim');
    this.assignee = { id: this.me.id, name: this.me.name };
    this.emit('status');
  }

  async close(): Promise<void> {
    await this.post('close');
    this.status = 'closed';
    this.emit('status');
  }

  async reopen(): Promise<void> {
    await this.post('reopen');
    this.status = 'open';
    this.emit('status');
  }

  async transfer(target: { agent?: string; department?: string }, note?: string): Promise<void> {
    await this.post('transfer', { ...target, ...(note ? { note } : {}) });
  }

  async loadTags(): Promise<void> {
    try {
      const r = await api<{ tags: string[] }>(`/api/v1/conversations/${encodeURIComponent(this.id)}/tags`);
      this.tags = Array.isArray(r?.tags) ? r.tags : [];
    } catch (e) {
      if (isMissingEndpoint(e)) this.tags = null;
    }
    this.emit('tags');
  }

  async setTags(tags: string[]): Promise<void> {
    const before = this.tags;
    this.tags = tags;
    this.emit('tags');
    try {
      const r = await api<{ tags: string[] }>(`/api/v1/conversations/${encodeURIComponent(this.id)}/tags`, {
        method: 'PUT',
        body: { tags },
      });
      if (Array.isArray(r?.tags)) this.tags = r.tags;
    } catch (e) {
      this.tags = before;
      throw e;
    } finally {
      this.emit('tags');
    }
  }

  async reveal(seq: number): Promise<string> {
    const r = await this.post<{ text: string }>('reveal', { seq });
    this.revealed.set(seq, r.text);
    return r.text;
  }
}
