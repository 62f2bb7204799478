// The console's state: the signed-in agent, the team's conversations (from the list endpoint,
// kept live by the site sockets' snapshots and feed), open conversation tabs, unread counts,
// presence, quick replies and visitor details. Views subscribe to its events and render.
//
// Live updates come from one console socket per site (`/api/v1/console/ws?site=`): an `inbox`
// snapshot after hello and after every change, and `feed` frames for alerts. While no site
// socket is live (not deployed yet, or reconnecting) the list is polled instead.
import { chime, desktopNotify, setTitleCount } from './alerts';
import { api, ApiError, isMissingEndpoint, isSignedIn, SIGNED_OUT_CODES, confirmSignedOut } from './api';
import { ConvSession, HTTP_FALLBACK_AFTER } from './conversation';
import { Courier } from './courier';
import { Emitter } from './emitter';
import { lang, t } from './i18n';
import { Outbox } from './outbox';
import { PING, ReconnectingSocket, type SocketState } from './socket';
import { load, save } from './storage';
import {
  isSelfStated,
  type Agent, type AgentStatus, type AssignmentEntry, type ConvRow, type Ev, type FeedFrame, type InboxFrame, type PresenceAgent,
  type QueueEntry, type QuickReply, type Site, type VisitorInfo,
} from './types';

export type ListName = 'waiting' | 'mine' | 'team' | 'closed';
export const LISTS: ListName[] = ['waiting', 'mine', 'team', 'closed'];

export interface Summary extends ConvRow {
  preview?: { text: string; at: number; role: string; note?: boolean; masked?: boolean; mine?: boolean };
  /** Seqs of visitor messages seen (for unread counts of conversations not open in a tab). */
  visitorSeqs: Set<number>;
  /** Came in during this session and not opened yet. */
  isNew: boolean;
  hydratedSeq: number;
}

export type LiveMode = 'connecting' | 'live' | 'polling' | 'offline';

interface SiteLink {
  site: Site;
  socket: ReconnectingSocket;
  snapshot: InboxFrame | null;
  state: SocketState;
}

const POLL_MS = 4000;
const REFRESH_MS = 60_000;
const MAX_TABS = 12;

export class Store extends Emitter<{
  inbox: [];
  tabs: [];
  presence: [];
  conn: [];
  toast: [string, 'info' | 'error'];
  announce: [string];
  quick: [];
  visitor: [string];
}> {
  sites: Site[] = [];
  rows = new Map<string, Summary>();
  nextBefore: string | null = null;
  listLoaded = false;
  links = new Map<string, SiteLink>();
  sessions = new Map<string, ConvSession>();
  tabs: string[] = [];
  active: string | null = null;
  list: ListName;
  myStatus: AgentStatus = 'online';
  private desiredStatus: AgentStatus | null = null;
  quickReplies: QuickReply[] | null = null;
  quickLoadedAt = 0;
  visitors = new Map<string, VisitorInfo | null>();
  private visitorFetch = new Map<string, Promise<void>>();
  visitorApi = true;
  readonly outbox: Outbox;
  private courier: Courier;
  private unlistenOutbox: () => void;
  private readMarks: Record<string, number>;
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private startedAt = Date.now();
  private alerted = new Set<string>();
  private hydrating = new Set<string>();
  private hydrateQueue: string[] = [];
  private activeHydrations = 0;
  private stopped = false;
  /** Whether the server has the console socket at all (false after repeated refusals). */
  siteSocketsSupported = true;
  visible = true;

  constructor(readonly me: Agent) {
    super();
    this.outbox = new Outbox(me.id);
    this.courier = new Courier(this.outbox, (conversation, clientMsgId, seq) => {
      const session = this.sessions.get(conversation);
      if (session) session.acknowledge(clientMsgId, seq);
      else this.outbox.acknowledged(clientMsgId, seq);
    }, (conversation, reason) => {
      // The open thread shows it with its reason; for any other conversation the agent is told
      // here, and its inbox row keeps saying so (hasRefusedReply).
      if (this.active !== conversation) this.emit('toast', t('replyNotSent', { name: this.visitorName(conversation), reason }), 'error');
    });
    this.unlistenOutbox = this.outbox.on('change', () => {
      this.sendOutbox();
      this.emit('inbox');
    });
    this.readMarks = load<Record<string, number>>(`reads.${me.id}`, {}) ?? {};
    const saved = load<{ open: string[]; active: string | null }>(`tabs.${me.id}`);
    this.tabs = (saved?.open ?? []).filter((id) => typeof id === 'string' && /^c_[a-z0-9]+$/.test(id)).slice(0, MAX_TABS);
    this.active = saved?.active && this.tabs.includes(saved.active) ? saved.active : this.tabs[0] ?? null;
    this.list = (load<ListName>(`list.${me.id}`) as ListName) ?? 'waiting';
    if (!LISTS.includes(this.list)) this.list = 'waiting';
    this.desiredStatus = null;
  }

  async start(): Promise<void> {
    for (const id of this.tabs) this.startSession(id);
    // Before the first requests, which may fail: the outbox goes out all the same.
    this.pollTimer = setInterval(() => this.tick(), POLL_MS);
    this.sendOutbox();
    await Promise.all([this.loadSites(), this.refreshList()]);
    this.connectSites();
    this.loadQuickReplies().catch(() => {});
    this.emit('tabs');
    this.emit('inbox');
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.refreshTimer);
    for (const s of this.sessions.values()) s.stop();
    for (const l of this.links.values()) l.socket.stop();
    this.unlistenOutbox();
    this.outbox.stop();
    this.sessions.clear();
    this.links.clear();
  }

  // ---- sites and site sockets -------------------------------------------------------------

  private async loadSites(): Promise<void> {
    try {
      const r = await api<{ sites: Site[] }>('/api/v1/sites');
      this.sites = Array.isArray(r?.sites) ? r.sites : [];
    } catch (e) {
      if (!isMissingEndpoint(e)) throw e;
      this.sites = [];
    } finally {
      this.sitesLoaded = true;
    }
  }

  /** Whether the site list has been asked for (pages wait for it). */
  sitesLoaded = false;

  /** Sites known from the list when /api/v1/sites is not available. */
  private ensureSitesFromRows(): void {
    for (const row of this.rows.values()) {
      if (row.site_id && !this.sites.some((s) => s.id === row.site_id)) {
        this.sites.push({ id: row.site_id, name: '' });
      }
    }
  }

  private connectSites(): void {
    if (this.stopped) return;
    this.ensureSitesFromRows();
    for (const site of this.sites) {
      if (this.links.has(site.id)) continue;
      const socket = new ReconnectingSocket({
        path: `/api/v1/console/ws?site=${encodeURIComponent(site.id)}`,
        welcomeType: 'inbox',
        hello: () => {
          return isSignedIn() ? { lang: lang() } : null;
        },
        // Heartbeats keep this device counted as online; pings (answered without waking the
        // site object) notice a dead connection.
        keepalive: [
          { frame: '{"v":1,"type":"heartbeat"}', everyMs: 15_000 },
          { frame: PING, everyMs: 30_000, expectReply: true, timeoutMs: 10_000 },
        ],
      });
      const link: SiteLink = { site, socket, snapshot: null, state: 'connecting' };
      this.links.set(site.id, link);
      socket.on('state', (s) => {
        link.state = s;
        if (s === 'live') {
          if (this.desiredStatus) socket.send({ type: 'status', status: this.desiredStatus });
          this.scheduleRefresh(200);
        }
        this.emit('conn');
      });
      socket.on('failed', (n) => {
        // A server without the console socket refuses the upgrade every time.
        if (n >= 3 && !Array.from(this.links.values()).some((l) => l.snapshot)) {
          this.siteSocketsSupported = false;
          this.emit('conn');
        }
      });
      socket.on('frame', (f) => this.onSiteFrame(link, f));
      socket.start();
    }
  }

  liveMode(): LiveMode {
    if (this.allLive()) return 'live';
    if (!navigator.onLine || !this.listOk) return this.listLoaded ? 'offline' : 'connecting';
    return this.listLoaded ? 'polling' : 'connecting';
  }

  /** Whether the last list request got through. */
  listOk = true;

  private allLive(): boolean {
    const links = Array.from(this.links.values());
    return links.length > 0 && links.every((l) => l.state === 'live');
  }

  private onSiteFrame(link: SiteLink, f: any): void {
    if (f?.type === 'inbox') {
      link.snapshot = f as InboxFrame;
      if (f.me?.status) this.myStatus = f.me.status;
      for (const q of link.snapshot.queue ?? []) this.ensureRow(q.conversation, link.site.id, q.since);
      for (const a of link.snapshot.assignments ?? []) this.ensureRow(a.conversation, link.site.id);
      this.emit('presence');
      this.changed();
    } else if (f?.type === 'feed') {
      this.onFeed(link, f as FeedFrame);
    } else if (f?.type === 'error') {
      if (SIGNED_OUT_CODES.includes(f.code)) {
        // The 1008 close that follows reconnects with a fresh token, unless the sign-in is over.
        void confirmSignedOut(f.code).then((over) => over && link.socket.stop());
      } else if (f.code === 'forbidden' || f.code === 'not_found' || f.code === 'unknown_site') {
        link.socket.closeIsFinal = true;
      }
    }
  }

  /** A row for a conversation we learned about live, before the D1 mirror has it. */
  private ensureRow(id: string | undefined, siteId: string, at?: number): Summary | null {
    if (!id) return null;
    let row = this.rows.get(id);
    if (!row) {
      const now = at ?? Date.now();
      row = {
        id, site_id: siteId, visitor_id: '', status: 'open', assignee_id: null, created_at: now, updated_at: now,
        last_seq: 0, last_message_at: null, visitorSeqs: new Set(), isNew: this.listLoaded, hydratedSeq: 0,
      };
      this.rows.set(id, row);
      this.hydrate(id);
    }
    return row;
  }

  private onFeed(link: SiteLink, f: FeedFrame): void {
    if (f.event === 'read') {
      // I read it on one of my devices (perhaps this one): its unread count follows everywhere.
      if (f.conversation && f.agent === this.me.id && typeof f.seq === 'number') {
        this.markReadUpTo(f.conversation, f.seq);
        this.changed();
      }
      return;
    }
    const id = f.conversation;
    const at = f.at ?? Date.now();
    const row = this.ensureRow(id, link.site.id, at);
    // Routing hands an agent back the chats it took from them while they were away: for a
    // chat they still had, nothing changed, so nothing is new, moved up or announced.
    const kept = f.event === 'assigned' && !!row && !!f.agent && row.assignee_id === f.agent && row.status === 'open';
    if (row && !kept) row.updated_at = Math.max(row.updated_at, at);
    this.learnAgent(f.agent, f.agent_name);
    switch (f.event) {
      case 'new':
      case 'queued':
        if (row) {
          row.status = 'open';
          if (f.event === 'new') row.isNew = true;
        }
        if (id) this.alertOnce(`new:${id}`, () => this.notify(f.event === 'new' ? t('alertNew') : t('alertQueued'), f.preview ?? '', id, 'conversation'));
        break;
      case 'assigned':
        if (row) row.assignee_id = f.agent ?? null;
        if (id && f.agent === this.me.id && f.reason !== 'claimed' && !kept) {
          const text = f.reason === 'transferred' && f.previous ? t('alertTransferred', { name: this.agentLabel(f.previous) }) : t('alertAssigned');
          this.alertOnce(`assigned:${id}:${at}`, () => this.notify(text, '', id, 'conversation'));
          // One the agent is looking at is not new to them.
          const inView = this.active === id && this.visible && document.visibilityState === 'visible';
          if (row && !inView) row.isNew = true;
        }
        break;
      case 'activity':
        if (row && typeof f.seq === 'number') {
          // The feed tells us what we need: no history fetch for this event.
          if (row.hydratedSeq > 0 && f.seq === row.hydratedSeq + 1) row.hydratedSeq = f.seq;
          row.last_seq = Math.max(row.last_seq, f.seq);
          if (f.kind === 'message' || f.kind === 'note' || f.kind === 'file') {
            row.last_message_at = at;
            const said = typeof f.preview === 'string' ? f.preview : null;
            const text = f.kind === 'file' ? t('filePreview', { name: said ?? '…' }) : said;
            if (text !== null) row.preview = { text, at, role: f.author_role ?? 'visitor', note: f.kind === 'note', masked: f.masked };
          }
          if (f.kind === 'closed') row.status = 'closed';
          if (f.kind === 'reopened') row.status = 'open';
          if ((f.kind === 'message' || f.kind === 'file') && f.author_role === 'visitor') {
            row.visitorSeqs.add(f.seq);
            this.messageAlert(row, f.seq, f.preview ?? '');
          }
        }
        break;
      case 'closed':
        if (row) row.status = 'closed';
        break;
      case 'missed':
        if (f.agent === this.me.id) this.emit('toast', t('alertMissed'), 'info');
        break;
      case 'presence':
        if (f.agent === this.me.id && f.status) this.myStatus = f.status;
        this.emit('presence');
        break;
      default:
        break;
    }
    this.changed();
    this.scheduleRefresh(1500);
  }

  /** Names of agents seen anywhere (snapshots, feed, events), for labels. */
  private agentNames = new Map<string, string>();

  agentLabel(id: string): string {
    if (id === this.me.id) return this.me.name;
    for (const l of this.links.values()) {
      const a = l.snapshot?.agents?.find((x) => x.id === id);
      if (a) return a.name;
    }
    return this.agentNames.get(id) ?? t('agent');
  }

  learnAgent(id: string | undefined, name: string | undefined): void {
    if (id && name) this.agentNames.set(id, name);
  }

  /** Agents (other than me) across sites, for transfers. */
  agents(): PresenceAgent[] {
    const byId = new Map<string, PresenceAgent>();
    for (const l of this.links.values()) for (const a of l.snapshot?.agents ?? []) byId.set(a.id, a);
    return Array.from(byId.values());
  }

  /** The team's departments (for transfers), from the server; null until loaded. */
  teamDepartments: string[] | null = null;

  /**
   * The departments a conversation can be transferred to: the team's, loaded from the server
   * (an empty department still has a queue). Until they are loaded, those seen in the queue.
   */
  departments(): string[] {
    if (this.teamDepartments) return this.teamDepartments;
    const set = new Set<string>();
    for (const l of this.links.values()) for (const q of l.snapshot?.queue ?? []) if (q.department) set.add(q.department);
    return Array.from(set).sort();
  }

  async loadDepartments(): Promise<string[]> {
    try {
      const r = await api<{ departments: { name: string }[] }>('/api/v1/departments');
      this.teamDepartments = (Array.isArray(r?.departments) ? r.departments.map((d) => d.name) : []).sort();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
    }
    return this.departments();
  }

  setStatus(status: AgentStatus): void {
    this.desiredStatus = status;
    this.myStatus = status;
    for (const l of this.links.values()) l.socket.send({ type: 'status', status });
    this.emit('presence');
  }

  // ---- the conversation list ----------------------------------------------------------------

  private tick(): void {
    if (this.stopped) return;
    if (!this.allLive()) {
      this.refreshList().catch(() => {});
      if (this.siteSocketsSupported) this.connectSites();
    }
    for (const s of this.sessions.values()) s.flush();
    this.sendOutbox();
  }

  /**
   * Posts over HTTP the replies no socket takes: those of open tabs whose socket is down, and
   * those of every conversation without a tab here (closed or pushed out while sending, or
   * written in another window). These wait a few seconds first, as an open tab does for its
   * socket, so a window that has the conversation open sends them on its socket instead.
   */
  private sendOutbox(): void {
    if (this.stopped) return;
    const since = Date.now() - HTTP_FALLBACK_AFTER;
    for (const conversation of this.outbox.conversations()) {
      const session = this.sessions.get(conversation);
      const queue = session
        ? session.httpQueue()
        : this.outbox.toSend(conversation).filter((i) => i.created < since);
      void this.courier.post(conversation, queue);
    }
  }

  /** Whether a reply of the conversation was refused for good and waits for the agent (retry or discard). */
  hasRefusedReply(id: string): boolean {
    return this.outbox.for(id).some((i) => i.error);
  }

  private scheduleRefresh(ms: number): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      this.refreshList().catch(() => {});
    }, ms);
  }

  /** Reloads the newest page of the list and merges it. */
  async refreshList(): Promise<void> {
    let r: { conversations: ConvRow[]; next_before: string | null };
    try {
      r = await api('/api/v1/conversations?limit=100');
      if (!this.listOk) {
        this.listOk = true;
        this.emit('conn');
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 0 && this.listOk) {
        this.listOk = false;
        this.emit('conn');
      }
      throw e;
    } finally {
      clearTimeout(this.refreshTimer);
      if (!this.stopped) this.refreshTimer = setTimeout(() => this.refreshList().catch(() => {}), REFRESH_MS);
    }
    const first = !this.listLoaded;
    this.merge(r.conversations ?? [], first);
    if (first) this.nextBefore = r.next_before ?? null;
    this.listLoaded = true;
    if (first) {
      this.ensureSitesFromRows();
      this.connectSites();
    }
    this.changed();
  }

  async loadMore(): Promise<void> {
    if (!this.nextBefore) return;
    const r = await api<{ conversations: ConvRow[]; next_before: string | null }>(
      `/api/v1/conversations?limit=100&before=${encodeURIComponent(this.nextBefore)}`,
    );
    this.merge(r.conversations ?? [], true);
    this.nextBefore = r.next_before ?? null;
    this.changed();
  }

  private merge(rows: ConvRow[], initial: boolean): void {
    for (const raw of rows) {
      const old = this.rows.get(raw.id);
      if (!old) {
        const fresh = !initial && raw.created_at > this.startedAt - 30_000 && raw.status === 'open';
        const row: Summary = { ...raw, visitorSeqs: new Set(), isNew: fresh, hydratedSeq: 0 };
        this.rows.set(raw.id, row);
        if (fresh && !this.allLive()) {
          this.alertOnce(`new:${raw.id}`, () => this.notify(t('alertNew'), '', raw.id, 'conversation'));
        }
      } else if (raw.updated_at >= old.updated_at || !old.visitor_id) {
        Object.assign(old, raw);
      } else {
        old.visitor_id ||= raw.visitor_id;
        old.last_seq = Math.max(old.last_seq, raw.last_seq);
      }
      const row = this.rows.get(raw.id)!;
      // Never hydrated yet: its list row may predate the D1 copy of its latest events (a
      // conversation always has its `created` event, so a last_seq of 0 says nothing).
      if (row.last_seq > row.hydratedSeq || row.hydratedSeq === 0) this.hydrate(row.id);
    }
  }

  /** Loads the tail of a conversation for its preview and unread count. */
  private hydrate(id: string): void {
    if (this.hydrating.has(id) || this.sessions.has(id)) return;
    this.hydrating.add(id);
    this.hydrateQueue.push(id);
    this.pumpHydrate();
  }

  private pumpHydrate(): void {
    while (this.activeHydrations < 3 && this.hydrateQueue.length) {
      const id = this.hydrateQueue.shift()!;
      this.activeHydrations += 1;
      api<any>(`/api/v1/conversations/${encodeURIComponent(id)}/history?limit=20`)
        .then((page) => {
          const row = this.rows.get(id);
          if (!row) return;
          const evs: Ev[] = page?.events ?? [];
          const live = row.hydratedSeq > 0 || row.isNew;
          for (const e of evs) this.absorb(row, e, live && e.seq > row.hydratedSeq);
          row.hydratedSeq = Math.max(row.hydratedSeq, page?.head ?? 0, row.last_seq);
          row.last_seq = Math.max(row.last_seq, page?.head ?? 0);
          this.changed();
        })
        .catch(() => {})
        .finally(() => {
          this.hydrating.delete(id);
          this.activeHydrations -= 1;
          this.pumpHydrate();
        });
    }
  }

  /** Takes what a summary needs from one event. */
  private absorb(row: Summary, e: Ev, alert: boolean): void {
    if (e.kind === 'message' || e.kind === 'note' || e.kind === 'file') {
      if (!row.preview || row.preview.at <= e.at) {
        row.preview = {
          text: eventText(e), at: e.at, role: e.author?.role, note: e.kind === 'note', masked: e.masked,
          mine: e.author?.id === this.me.id,
        };
      }
      row.last_message_at = Math.max(row.last_message_at ?? 0, e.at);
    }
    if ((e.kind === 'message' || e.kind === 'file') && e.author?.role === 'visitor') {
      const isNewSeq = !row.visitorSeqs.has(e.seq);
      row.visitorSeqs.add(e.seq);
      if (alert && isNewSeq) this.messageAlert(row, e.seq, eventText(e));
    }
    if (e.author?.id === this.me.id) this.markReadUpTo(row.id, e.seq);
    if (e.author?.role === 'agent') this.learnAgent(e.author.id, e.author.name);
    if (e.kind === 'assigned') this.learnAgent(e.body?.agent?.id, e.body?.agent?.name);
    if (e.kind === 'closed') row.status = 'closed';
    if (e.kind === 'reopened') row.status = 'open';
    if (e.kind === 'assigned' && e.body?.agent?.id) row.assignee_id = e.body.agent.id;
  }

  /** Rows of the conversations in one list, sorted for it. */
  listRows(name: ListName): Summary[] {
    const out: Summary[] = [];
    for (const row of this.rows.values()) if (this.inList(row, name)) out.push(row);
    if (name === 'waiting') {
      out.sort((a, b) => (this.queueEntry(a.id)?.position ?? 1e9) - (this.queueEntry(b.id)?.position ?? 1e9) || a.created_at - b.created_at);
    } else {
      out.sort((a, b) => this.activity(b) - this.activity(a));
    }
    return out;
  }

  activity(row: Summary): number {
    return Math.max(row.last_message_at ?? 0, row.updated_at, row.created_at);
  }

  private snapshotFor(siteId: string): InboxFrame | null {
    return this.links.get(siteId)?.snapshot ?? null;
  }

  queueEntry(id: string): QueueEntry | null {
    const row = this.rows.get(id);
    const snap = row ? this.snapshotFor(row.site_id) : null;
    return snap?.queue?.find((q) => q.conversation === id) ?? null;
  }

  assignment(id: string): AssignmentEntry | null {
    const row = this.rows.get(id);
    const snap = row ? this.snapshotFor(row.site_id) : null;
    return snap?.assignments?.find((a) => a.conversation === id) ?? null;
  }

  /** Who has the conversation: the live snapshot first, then the open socket, then the mirror. */
  assignee(id: string): string | null {
    const row = this.rows.get(id);
    const session = this.sessions.get(id);
    const snap = row ? this.snapshotFor(row.site_id) : null;
    if (snap) {
      const a = snap.assignments?.find((x) => x.conversation === id);
      if (a) return a.agent;
      if (snap.queue?.some((q) => q.conversation === id)) return null;
    }
    return session?.assignee?.id ?? row?.assignee_id ?? null;
  }

  status(id: string): 'open' | 'closed' {
    const session = this.sessions.get(id);
    if (session?.loaded) return session.status;
    return this.rows.get(id)?.status ?? 'open';
  }

  inList(row: Summary, name: ListName): boolean {
    const status = this.status(row.id);
    if (name === 'closed') return status === 'closed';
    if (status !== 'open') return false;
    if (name === 'team') return true;
    const who = this.assignee(row.id);
    if (name === 'mine') return who === this.me.id;
    return who === null || this.queueEntry(row.id) !== null;
  }

  counts(): Record<ListName, number> {
    const c: Record<ListName, number> = { waiting: 0, mine: 0, team: 0, closed: 0 };
    for (const row of this.rows.values()) for (const l of LISTS) if (this.inList(row, l)) c[l] += 1;
    return c;
  }

  setList(name: ListName): void {
    this.list = name;
    save(`list.${this.me.id}`, name);
    this.emit('inbox');
  }

  // ---- unread and alerts ------------------------------------------------------------------

  private markReadUpTo(id: string, seq: number): void {
    if ((this.readMarks[id] ?? 0) >= seq) return;
    this.readMarks[id] = seq;
    save(`reads.${this.me.id}`, this.readMarks);
  }

  unread(id: string): number {
    const session = this.sessions.get(id);
    if (session?.loaded) return session.unread();
    const row = this.rows.get(id);
    if (!row) return 0;
    const mark = this.readMarks[id] ?? 0;
    let n = 0;
    for (const s of row.visitorSeqs) if (s > mark) n += 1;
    return n;
  }

  /** Conversations whose unread messages matter to me: waiting, mine, or open in a tab. */
  attention(id: string): boolean {
    const row = this.rows.get(id);
    if (this.tabs.includes(id)) return true;
    if (!row || this.status(id) !== 'open') return false;
    const who = this.assignee(id);
    return who === null || who === this.me.id;
  }

  /** Conversations of a list that want this agent now: new to them, or with unread messages. */
  needingMe(list: ListName): number {
    let n = 0;
    for (const row of this.rows.values()) {
      if (!this.inList(row, list) || !this.attention(row.id)) continue;
      if ((row.isNew && this.status(row.id) === 'open') || this.unread(row.id) > 0) n += 1;
    }
    return n;
  }

  titleCount(): number {
    let n = 0;
    for (const row of this.rows.values()) {
      if (!this.attention(row.id)) continue;
      const u = this.unread(row.id);
      n += u > 0 ? u : row.isNew && this.status(row.id) === 'open' ? 1 : 0;
    }
    return n;
  }

  private alertOnce(key: string, fn: () => void): void {
    if (this.alerted.has(key)) return;
    this.alerted.add(key);
    fn();
  }

  private messageAlert(row: Summary, seq: number, text: string): void {
    if (!this.attention(row.id)) return;
    if (this.active === row.id && this.visible && document.visibilityState === 'visible') return;
    this.alertOnce(`msg:${row.id}:${seq}`, () => this.notify(t('alertMessage', { name: this.visitorName(row.id) }), text, row.id, 'message'));
  }

  private notify(title: string, body: string, id: string, kind: 'conversation' | 'message'): void {
    chime(kind);
    desktopNotify(title, body, id, () => this.open(id));
    this.emit('announce', body ? `${title}: ${body}` : title);
  }

  private changed(): void {
    setTitleCount(this.titleCount());
    this.emit('inbox');
    this.emit('tabs');
  }

  // ---- tabs and sessions ------------------------------------------------------------------

  private persistTabs(): void {
    save(`tabs.${this.me.id}`, { open: this.tabs, active: this.active });
  }

  private startSession(id: string): ConvSession {
    let s = this.sessions.get(id);
    if (s) return s;
    s = new ConvSession(id, this.me, this.outbox);
    this.sessions.set(id, s);
    const sync = () => {
      const row = this.rows.get(id);
      if (row && s!.loaded) {
        row.status = s!.status;
        if (s!.assignee) row.assignee_id = s!.assignee.id;
        const evs = s!.sortedEvents();
        for (const e of evs.slice(-30)) this.absorb(row, e, false);
        row.last_seq = Math.max(row.last_seq, s!.lastSeq);
        row.hydratedSeq = Math.max(row.hydratedSeq, s!.lastSeq);
      } else if (!row && s!.loaded && s!.siteId && s!.visitorId) {
        const now = s!.createdAt || Date.now();
        this.rows.set(id, {
          id, site_id: s!.siteId, visitor_id: s!.visitorId, status: s!.status, assignee_id: s!.assignee?.id ?? null,
          created_at: now, updated_at: now, last_seq: s!.lastSeq, last_message_at: null, visitorSeqs: new Set(), isNew: false,
          hydratedSeq: s!.lastSeq,
        });
      }
      this.changed();
    };
    s.on('events', sync);
    s.on('status', sync);
    s.on('reads', () => {
      this.markReadUpTo(id, s!.myRead());
      this.changed();
    });
    s.on('incoming', (e) => {
      const row = this.rows.get(id);
      if (row) this.messageAlert(row, e.seq, eventText(e));
    });
    s.on('gone', () => this.changed());
    s.on('status', () => {
      if (s!.visitorId) this.loadVisitor(s!.visitorId);
    });
    void s.start();
    return s;
  }

  open(id: string): void {
    if (!this.tabs.includes(id)) {
      this.tabs.push(id);
      while (this.tabs.length > MAX_TABS) {
        const drop = this.tabs.find((x) => x !== id && x !== this.active);
        if (!drop) break;
        this.closeTab(drop, false);
      }
    }
    this.startSession(id);
    this.active = id;
    const row = this.rows.get(id);
    if (row) row.isNew = false;
    this.persistTabs();
    this.changed();
  }

  closeTab(id: string, emit = true): void {
    const i = this.tabs.indexOf(id);
    if (i < 0) return;
    this.tabs.splice(i, 1);
    this.sessions.get(id)?.stop();
    this.sessions.delete(id);
    if (this.active === id) this.active = this.tabs[Math.min(i, this.tabs.length - 1)] ?? null;
    this.persistTabs();
    if (emit) this.changed();
  }

  activate(id: string | null): void {
    this.active = id;
    this.persistTabs();
    this.changed();
  }

  // ---- visitors, quick replies ------------------------------------------------------------

  /** The id of a conversation's visitor, from its inbox row or its open tab ('' while unknown). */
  private visitorIdOf(convId: string): string {
    return this.rows.get(convId)?.visitor_id || this.sessions.get(convId)?.visitorId || '';
  }

  /** Whether the name visitorName gives is one the visitor typed into a form (see isSelfStated). */
  nameSelfStated(convId: string): boolean {
    const vid = this.visitorIdOf(convId);
    return isSelfStated(vid ? this.visitors.get(vid)?.visitor : undefined);
  }

  visitorName(convId: string): string {
    const vid = this.visitorIdOf(convId);
    const info = vid ? this.visitors.get(vid) : undefined;
    const name = info?.visitor?.name || info?.visitor?.email;
    if (name) return name;
    if (!vid) return t('visitor');
    if (this.visitorApi && !this.visitors.has(vid) && this.attention(convId)) this.loadVisitor(vid);
    return t('visitorN', { id: vid.slice(-4).toUpperCase() });
  }

  loadVisitor(vid: string, force = false): Promise<void> {
    if (!this.visitorApi || !vid) return Promise.resolve();
    const inflight = this.visitorFetch.get(vid);
    if (inflight) return inflight;
    if (this.visitors.has(vid) && !force) return Promise.resolve();
    const p = api<VisitorInfo>(`/api/v1/visitors/${encodeURIComponent(vid)}`)
      .then((info) => {
        this.visitors.set(vid, info ?? null);
      })
      .catch(() => {
        // No such route yet, or no details for this visitor: show what the conversation has.
        if (!this.visitors.has(vid)) this.visitors.set(vid, null);
      })
      .finally(() => {
        this.visitorFetch.delete(vid);
        this.emit('visitor', vid);
        this.emit('inbox');
        this.emit('tabs');
      });
    this.visitorFetch.set(vid, p);
    return p;
  }

  /** A visitor was erased: their conversations leave the tabs and the lists. */
  forgetVisitor(vid: string): void {
    const theirs = new Set<string>();
    for (const row of this.rows.values()) if (row.visitor_id === vid) theirs.add(row.id);
    for (const [id, s] of this.sessions) if (s.visitorId === vid) theirs.add(id);
    for (const id of this.tabs.slice()) if (theirs.has(id)) this.closeTab(id, false);
    for (const id of theirs) this.rows.delete(id);
    this.visitors.delete(vid);
    this.changed();
  }

  async loadQuickReplies(force = false): Promise<QuickReply[]> {
    if (!force && this.quickReplies && Date.now() - this.quickLoadedAt < 60_000) return this.quickReplies;
    try {
      const r = await api<{ replies: QuickReply[] }>('/api/v1/quick-replies');
      this.quickReplies = Array.isArray(r?.replies) ? r.replies : [];
    } catch (e) {
      if (!isMissingEndpoint(e)) throw e;
      this.quickReplies = this.quickReplies ?? [];
    }
    this.quickLoadedAt = Date.now();
    this.emit('quick');
    return this.quickReplies;
  }

  async createQuickReply(r: { title: string; body: string; group: string; personal: boolean }): Promise<void> {
    await api('/api/v1/quick-replies', { method: 'POST', body: r });
    await this.loadQuickReplies(true);
  }
}

/** What a message-like event says, as one line of text. */
export function eventText(e: Ev): string {
  if (e.kind === 'file') return t('filePreview', { name: String(e.body?.file?.name ?? '') });
  return String(e.body?.text ?? '');
}
