// The bare relay: the least a chat server on this runtime can do. One Durable Object per room
// accepts WebSockets through the hibernation API and hands each message to the room's other
// sockets. No persistence, no validation, no identity; it answers Parley's `hello` and `send`
// frames just enough for the same load generator to drive it (a `welcome`, an `ack` at once,
// an `event` to everyone else). The benchmark reports Parley's figures as ratios to this.
//
// With the binding STORE = "true" it is the storing relay: the same, except that each message is
// first inserted into the object's SQLite storage, so its `ack` and `event`s leave only once the
// write is durable (the runtime's output gate). That is the least any chat server that persists
// before it acknowledges costs on this runtime; Parley is also compared with it.
import { DurableObject } from 'cloudflare:workers';

const PING = '{"v":1,"type":"ping"}';
const PONG = '{"v":1,"type":"pong"}';
const ROOM_PATH = /^\/api\/v1\/conversations\/([^/]+)\/ws$/;

export class Relay extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.store = env.STORE === 'true';
    // The bare relay numbers messages in memory only, while the object is awake; the storing
    // relay continues from its log.
    this.seq = 0;
    if (this.store) {
      ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, client_msg_id TEXT, text TEXT)');
      this.seq = ctx.storage.sql.exec('SELECT COALESCE(MAX(seq), 0) AS head FROM messages').one().head;
    }
    // Parley answers its exact ping without waking the object; so does the baseline.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
  }

  fetch() {
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(ws, data) {
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (frame.type === 'hello') {
      ws.send(JSON.stringify({ v: 1, type: 'welcome', head: this.seq }));
    } else if (frame.type === 'send') {
      this.seq += 1;
      const id = frame.client_msg_id;
      if (this.store) {
        this.ctx.storage.sql.exec('INSERT INTO messages (seq, client_msg_id, text) VALUES (?, ?, ?)', this.seq, id, frame.text);
      }
      ws.send(JSON.stringify({ v: 1, type: 'ack', client_msg_id: id, seq: this.seq, duplicate: false }));
      const event = JSON.stringify({
        v: 1, type: 'event', seq: this.seq, kind: 'message', body: { text: frame.text }, client_msg_id: id,
      });
      for (const other of this.ctx.getWebSockets()) {
        if (other !== ws) other.send(event);
      }
    }
  }

  webSocketClose(ws, code) {
    try { ws.close(code === 1005 ? 1000 : code); } catch { /* already closed */ }
  }
}

export default {
  fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === '/healthz') return new Response('ok');
    const room = ROOM_PATH.exec(pathname);
    if (!room || request.headers.get('upgrade') !== 'websocket') return new Response('not found', { status: 404 });
    return env.RELAY.get(env.RELAY.idFromName(room[1])).fetch(request);
  },
};
