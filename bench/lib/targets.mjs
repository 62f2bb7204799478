// The two systems the benchmark drives, behind one shape: start (and restart on the same state
// and port), rooms (Parley: real conversations created over HTTP; relay: names), and the plan
// entries of the sockets that join them.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../tests/support/server.mjs';
import { agentLogin, http, wsUrl } from '../../tests/support/client.mjs';
import { startRelay } from './relay-server.mjs';
import { workerdIn } from './proc.mjs';

/** Parley with its rate limits opened up: the benchmark measures the engine, not the limiter. */
export const GENEROUS = {
  RATE_VISITOR_MESSAGES: '100000/10000',
  RATE_AGENT_MESSAGES: '100000/10000',
  RATE_IP_MESSAGES: '100000/10000',
};
/** State directories live here, not under tests/.tmp, which `npm test` wipes when it starts. */
export const STATE_ROOT = fileURLToPath(new URL('../.tmp/', import.meta.url));
/** Conversations created at once over HTTP. */
const CREATE_CONCURRENCY = 8;

async function timed(fn) {
  const t = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t };
}

/** Waits until the launcher's workerd process shows up in its process group. */
async function findWorkerd(pgid) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const pid = workerdIn(pgid);
    if (pid || Date.now() > deadline) return pid;
    await new Promise((r) => setTimeout(r, 20));
  }
}

class Target {
  constructor(name) {
    this.name = name;
    mkdirSync(STATE_ROOT, { recursive: true });
    this.persistDir = mkdtempSync(join(STATE_ROOT, `${name}-`));
    this.server = null;
    this.rooms = [];
  }

  /** Starts the runtime (on the same state directory each time; `port` to keep the address). */
  async start({ port = 0 } = {}) {
    const { value, ms } = await timed(() => this.launch(port));
    this.server = value;
    this.workerdPid = await findWorkerd(value.pid);
    if (!this.workerdPid) throw new Error(`${this.name}: no workerd process found in group ${value.pid}`);
    return { ready_ms: ms };
  }

  async stop() {
    await this.server?.stop();
    this.server = null;
  }

  /** SIGKILL the runtime (launcher and workerd), as a crash would. */
  async kill() {
    await this.server?.kill();
    this.server = null;
  }

  get url() {
    return this.server.url;
  }

  get port() {
    return this.server.port;
  }

  /** Plan entries for the sockets of `rooms`: one visitor and `agents` agent devices each. */
  sockets(rooms, { agents = 1, resume } = {}) {
    const sockets = [];
    rooms.forEach((room, index) => {
      const hellos = [room.visitorToken, ...Array(agents).fill(this.agentToken)];
      for (const token of hellos) {
        const hello = { v: 1, type: 'hello', token };
        const entry = { url: this.wsUrl(room), hello, room: index };
        if (resume && room.head !== undefined) {
          const after = Math.max(0, room.head - resume.missed);
          Object.assign(hello, { after, epoch: room.epoch });
          entry.catch_up_to = room.head;
        }
        sockets.push(entry);
      }
    });
    return sockets;
  }

  /** Remembers each room's head and epoch from a loadgen report with `report_sockets`. */
  learnHeads(rooms, plan, report) {
    report.sockets?.forEach((s, i) => {
      const room = rooms[plan.sockets[i].room];
      if (!room || !s.opened) return;
      room.head = Math.max(room.head ?? 0, s.last_seq);
      room.epoch = s.epoch ?? room.epoch;
    });
  }
}

export class ParleyTarget extends Target {
  constructor() {
    super('parley');
    this.agentToken = null;
    this.created = 0;
  }

  launch(port) {
    return startServer({ persistDir: this.persistDir, port, vars: GENEROUS });
  }

  async start(opts) {
    const started = await super.start(opts);
    // Agent tokens outlive restarts (the token secret is kept in the state directory).
    this.agentToken ??= (await agentLogin(this.server)).token;
    return started;
  }

  wsUrl(room) {
    return wsUrl(this.server, room.id);
  }

  /**
   * Creates conversations until there are n. Sessions and conversations per address are rate
   * limited with no override (burst 30), so every ten visitors share a made-up address.
   */
  async ensureRooms(n) {
    const t = performance.now();
    const before = this.rooms.length;
    let next = this.rooms.length;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const address = Math.floor(i / 10);
        const headers = { 'cf-connecting-ip': `10.${(address >> 16) & 255}.${(address >> 8) & 255}.${address & 255}` };
        const session = await http(this.url, '/api/v1/visitor/session', {
          method: 'POST', headers, body: { site_key: this.server.siteKey },
        });
        if (session.status !== 200) throw new Error(`visitor session: HTTP ${session.status} ${JSON.stringify(session.body)}`);
        const created = await http(this.url, '/api/v1/conversations', { method: 'POST', headers, token: session.body.token });
        if (created.status !== 201) throw new Error(`create conversation: HTTP ${created.status} ${JSON.stringify(created.body)}`);
        this.rooms[i] = { id: created.body.conversation, visitorToken: session.body.token, epoch: created.body.epoch };
      }
    };
    await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
    return { created: n - before, ms: performance.now() - t };
  }
}

export class RelayTarget extends Target {
  /** `store`: the storing relay, which writes each message to the object's SQLite before its ack. */
  constructor({ store = false } = {}) {
    super(store ? 'stored' : 'relay');
    this.store = store;
    this.agentToken = 'relay-agent';
  }

  launch(port) {
    return startRelay({ persistDir: this.persistDir, port, store: this.store });
  }

  wsUrl(room) {
    return wsUrl({ url: this.url }, room.id, null);
  }

  async ensureRooms(n) {
    for (let i = this.rooms.length; i < n; i += 1) this.rooms.push({ id: `room-${i}`, visitorToken: 'relay-visitor' });
    return { created: 0, ms: 0 };
  }
}
