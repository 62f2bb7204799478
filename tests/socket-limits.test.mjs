// Sockets that never sign in: a conversation's object closes them when their `hello` does not
// come in time, and one address may hold only a few of them open at once
// (core/src/limits.rs: MAX_UNSIGNED_SOCKETS_PER_IP, HELLO_TIMEOUT_MS).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { newConversation, Socket, wsUrl } from './support/client.mjs';

const MAX_UNSIGNED_PER_IP = 8;
let server;
let conv;
const opened = [];

before(async () => {
  server = await startServer();
  conv = await newConversation(server);
});

after(async () => {
  for (const s of opened) s.ws.terminate();
  await server?.stop();
});

function from(ip) {
  const socket = new Socket(wsUrl(server, conv.conversation), { headers: { 'cf-connecting-ip': ip } });
  opened.push(socket);
  return socket;
}

async function closed(socket, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!socket.closed) {
    assert.ok(Date.now() < deadline, 'the socket was closed');
    await new Promise((r) => setTimeout(r, 100));
  }
  return socket.closed;
}

test(`the ${MAX_UNSIGNED_PER_IP + 1}th socket of one address that has not signed in → upgrade refused 429 too_many_connections; another address and a signed-in socket still get in`, async () => {
  const crowd = [];
  for (let i = 0; i < MAX_UNSIGNED_PER_IP; i += 1) {
    const s = from('127.0.77.1');
    await s.opened;
    crowd.push(s);
  }
  const refused = from('127.0.77.1');
  const error = await refused.opened.then(() => null, (e) => e);
  assert.ok(error, 'the upgrade is refused');
  assert.equal(error.status, 429);
  assert.equal(error.body.type, 'error');
  assert.equal(error.body.code, 'too_many_connections');
  assert.ok(error.body.message);

  const other = from('127.0.77.2');
  await other.opened;
  // One of the crowd signs in: it no longer counts, so the address may open one more.
  crowd[0].send({ type: 'hello', token: conv.token, after: 0 });
  await crowd[0].next((f) => f.type === 'welcome');
  const again = from('127.0.77.1');
  await again.opened;
});

test('a socket that never sends hello → closed 1008 with error token_missing after the hello timeout (10 s)', async () => {
  const silent = from('127.0.77.3');
  await silent.opened;
  const signedIn = from('127.0.77.3');
  await signedIn.opened;
  signedIn.send({ type: 'hello', token: conv.token, after: 0 });
  await signedIn.next((f) => f.type === 'welcome');

  const { code, reason } = await closed(silent, 30_000);
  assert.equal(code, 1008);
  assert.equal(reason, 'token_missing');
  const error = silent.frames.find((f) => f.type === 'error');
  assert.equal(error?.code, 'token_missing');
  // The socket that signed in stays.
  assert.equal(signedIn.closed, null);
  signedIn.send({ type: 'ping' });
  await signedIn.next((f) => f.type === 'pong');
});
