// Protocol v1 clients for the integration tests: plain HTTP, WebSocket with a frame inbox,
// and long-poll. They speak docs/protocol.md as written and nothing else.
import { request as httpRequest } from 'node:http';
import WebSocket from 'ws';

export const PING = '{"v":1,"type":"ping"}';

let counter = 0;
/** A fresh client message id, unique in this test process. */
export function msgId(prefix = 'm') {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

/** JSON over HTTP: resolves to { status, headers, body } (body parsed when JSON). */
export async function http(base, path, { method = 'GET', token, body, headers = {}, rawBody } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  let payload = rawBody;
  if (body !== undefined) {
    h['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(base + path, { method, headers: h, body: payload });
  const text = await res.text();
  let parsed = text;
  try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, body: parsed };
}

function expectOk(res, what) {
  if (res.status >= 300) throw new Error(`${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** A new visitor of the site: { visitorId, token }. */
export async function visitorSession(server, { origin } = {}) {
  const headers = origin ? { origin } : {};
  const body = expectOk(
    await http(server.url, '/api/v1/visitor/session', { method: 'POST', body: { site_key: server.siteKey }, headers }),
    'visitor session',
  );
  return { visitorId: body.visitor_id, token: body.token };
}

/** The demo owner, logged in: { agentId, token, name }. */
export async function agentLogin(server) {
  const body = expectOk(
    await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email: server.email, password: server.password } }),
    'agent login',
  );
  return { agentId: body.agent.id, token: body.token, name: body.agent.name };
}

/** A visitor with a new conversation: { visitorId, token, conversation, epoch }. */
export async function newConversation(server) {
  const visitor = await visitorSession(server);
  const body = expectOk(
    await http(server.url, '/api/v1/conversations', { method: 'POST', token: visitor.token }),
    'create conversation',
  );
  return { ...visitor, conversation: body.conversation, epoch: body.epoch };
}

export function wsUrl(server, conversation, site = server.siteKey) {
  const q = site ? `?site=${encodeURIComponent(site)}` : '';
  return `${server.url.replace(/^http/, 'ws')}/api/v1/conversations/${conversation}/ws${q}`;
}

/**
 * A WebSocket client with an inbox of parsed frames. `next(pred)` waits for the next frame
 * matching pred (consuming it and everything before it); `events` collects every `event` frame.
 */
export class Socket {
  /** options: origin, headers, and any other `ws` client option (ca, lookup, localAddress …). */
  constructor(url, { origin, headers, ...options } = {}) {
    this.frames = [];
    this.events = [];
    this.cursor = 0;
    this.waiters = [];
    this.closed = null;
    this.ws = new WebSocket(url, { ...options, headers: { ...(origin ? { origin } : {}), ...(headers ?? {}) } });
    this.opened = new Promise((resolve, reject) => {
      this.ws.on('open', resolve);
      this.ws.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => {
          const err = new Error(`upgrade refused: HTTP ${res.statusCode}`);
          err.status = res.statusCode;
          try { err.body = JSON.parse(text); } catch { err.body = text; }
          reject(err);
        });
      });
      this.ws.on('error', reject);
    });
    this.ws.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      this.frames.push(frame);
      if (frame.type === 'event') this.events.push(frame);
      this.wake();
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    this.ws.on('error', () => {});
  }

  static async open(url, opts) {
    const s = new Socket(url, opts);
    await s.opened;
    return s;
  }

  wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  send(frame) {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify({ v: 1, ...frame }));
  }

  /** Waits for the next frame matching pred after the cursor. */
  async next(pred = () => true, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.frames.length) {
        const frame = this.frames[this.cursor++];
        if (pred(frame)) return frame;
      }
      if (this.closed) throw new Error(`socket closed (${this.closed.code}) while waiting; frames: ${JSON.stringify(this.frames.slice(-5))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a frame; last frames: ${JSON.stringify(this.frames.slice(-5))}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  nextOfType(type, timeoutMs) {
    return this.next((f) => f.type === type, timeoutMs);
  }

  /** Signs in; resolves to the welcome frame. */
  async hello(token, extra = {}) {
    this.send({ type: 'hello', token, ...extra });
    return this.next((f) => f.type === 'welcome' || f.type === 'error');
  }

  /** Sends a message and waits for its ack (or error). */
  async sendMessage(text, clientMsgId = msgId()) {
    this.send({ type: 'send', client_msg_id: clientMsgId, text });
    return this.next((f) => (f.type === 'ack' || f.type === 'error') && f.client_msg_id === clientMsgId);
  }

  /** Waits until this socket has seen an event with seq >= n. */
  async waitForSeq(n, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    while (!this.events.some((e) => e.seq >= n)) {
      if (this.closed) throw new Error(`socket closed (${this.closed.code}) before seq ${n}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for seq ${n}; have up to ${this.events.at(-1)?.seq}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, 200);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  async waitClosed(timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('socket did not close');
      await new Promise((resolve) => {
        const t = setTimeout(resolve, 100);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return this.closed;
  }

  /** Drops the connection without a closing handshake, as a dying network would. */
  drop() {
    this.ws.terminate();
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
  }
}

/** Opens a socket and signs in; resolves to the socket (welcome consumed). */
export async function connect(server, conversation, token, extra = {}, opts = {}) {
  const socket = await Socket.open(wsUrl(server, conversation), opts);
  const welcome = await socket.hello(token, extra);
  if (welcome.type !== 'welcome') throw new Error(`hello refused: ${JSON.stringify(welcome)}`);
  socket.welcome = welcome;
  return socket;
}

/** One long-poll request. */
export function poll(server, conversation, token, { after, epoch, wait = 0 }) {
  const q = new URLSearchParams({ after: String(after), wait: String(wait) });
  if (epoch) q.set('epoch', epoch);
  return http(server.url, `/api/v1/conversations/${conversation}/events?${q}`, { token });
}

/** All history of a conversation, oldest first, by paging backwards. */
export async function fullHistory(server, conversation, token, limit = 100) {
  let before;
  let events = [];
  for (;;) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before !== undefined) q.set('before', String(before));
    const res = await http(server.url, `/api/v1/conversations/${conversation}/history?${q}`, { token });
    if (res.status !== 200) throw new Error(`history: ${res.status} ${JSON.stringify(res.body)}`);
    events = [...res.body.events, ...events];
    if (res.body.next_before == null) return events;
    before = res.body.next_before;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The comparable identity of an event: what every participant must agree on. */
export function eventKey(e) {
  return JSON.stringify([e.seq, e.kind, e.author.id, e.client_msg_id ?? null, e.body]);
}

/** Adds an agent to the demo team directly in D1 and logs them in: { agentId, token, name, email }. */
export async function createAgent(server, { name, email, password = 'correct horse battery', capacity = 5, role = 'agent', permissions = [], headers }) {
  const { pbkdf2Sync, randomBytes } = await import('node:crypto');
  const { results: [owner] } = await server.d1('SELECT team_id FROM agents ORDER BY created_at LIMIT 1');
  const salt = randomBytes(16);
  const hash = pbkdf2Sync(password, salt, 100000, 32, 'sha256');
  const id = `a_${randomBytes(16).toString('hex').slice(0, 26).replace(/[0-9]/g, (d) => 'abcdefghij'[d])}`;
  await server.d1(
    `INSERT INTO agents (id, team_id, email, name, role, password_hash, password_salt, password_iterations, disabled, created_at, capacity, permissions)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 100000, 0, ?8, ?9, ?10)`,
    [id, owner.team_id, email, name, role, hash.toString('base64'), salt.toString('base64'), Date.now(), capacity, JSON.stringify(permissions)],
  );
  const body = expectOk(
    await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email, password }, headers }),
    'agent login',
  );
  return { agentId: body.agent.id, token: body.token, name: body.agent.name, email };
}

/** The demo site's id (as an agent sees it). */
export async function siteId(server, agentToken) {
  const res = await http(server.url, '/api/v1/sites', { token: agentToken });
  if (res.status !== 200) throw new Error(`sites: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.sites.find((s) => s.site_key === server.siteKey).id;
}

/** An agent's console socket on a site, signed in; resolves to the socket (first inbox consumed). */
export async function openConsole(server, site, token) {
  const socket = await Socket.open(`${server.url.replace(/^http/, 'ws')}/api/v1/console/ws?site=${site}`);
  socket.send({ type: 'hello', token });
  const first = await socket.next((f) => f.type === 'inbox' || f.type === 'error');
  if (first.type !== 'inbox') throw new Error(`console hello refused: ${JSON.stringify(first)}`);
  socket.inbox = first;
  return socket;
}

/**
 * POSTs `total` bytes of `fill` as a chunked body (no Content-Length), on a connection of its
 * own, writing as fast as the server takes them and stopping once it answers. Resolves to
 * { status, headers, body, sent }: `sent` is how much had been written by the answer.
 * `first`: send only that many bytes first and give the server a second to answer before the
 * rest: a server that answers while bytes it has not read are on their way resets the
 * connection, and the answer may be lost with it.
 */
export function chunkedPost(url, headers, total, fill = 0x61, { first } = {}) {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const req = httpRequest(url, {
      method: 'POST',
      agent: false,
      headers: { ...headers, 'transfer-encoding': 'chunked', connection: 'close' },
    }, (res) => {
      answered = true;
      const at = sent;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let body = text || null;
        try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, body, sent: at });
        req.destroy();
      });
    });
    // Once the server has answered and closed, writing fails: that is expected.
    req.on('error', (e) => { if (!answered) reject(e); });
    const chunk = Buffer.alloc(Math.min(64 * 1024, total), fill);
    const pump = () => {
      while (!answered && sent < total) {
        const part = chunk.subarray(0, Math.min(chunk.length, total - sent));
        sent += part.length;
        if (!req.write(part)) { req.once('drain', pump); return; }
      }
      if (!answered) req.end();
    };
    if (first) {
      sent = first;
      req.write(Buffer.alloc(first, fill));
      setTimeout(pump, 1000);
    } else {
      pump();
    }
  });
}
