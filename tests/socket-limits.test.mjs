// Sockets that never sign in: a conversation's object, and a site's object for the console's
// sockets, close them when their `hello` does not come in time, and one address may hold only a
// few of them open at once (core/src/limits.rs: MAX_UNSIGNED_SOCKETS_PER_IP, HELLO_TIMEOUT_MS).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { agentLogin, newConversation, siteId, Socket, wsUrl } from './support/client.mjs';

const MAX_UNSIGNED_PER_IP = 8;
let server;
let conv;
let owner;
let site;
const opened = [];

before(async () => {
  server = await startServer();
  conv = await newConversation(server);
  owner = await agentLogin(server);
  site = await siteId(server, owner.token);
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

function consoleFrom(ip) {
  const url = `${server.url.replace(/^http/, 'ws')}/api/v1/console/ws?site=${site}`;
  // The close frame comes on time, but the local runtime ends the connection of a site's
  // socket only well after it; the client stops waiting for that 1 s after the close frame.
  const socket = new Socket(url, { headers: { 'cf-connecting-ip': ip }, closeTimeout: 1000 });
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

test(`console sockets: of 20 opened from one address without hello, ${MAX_UNSIGNED_PER_IP} get in and the rest are refused 429 too_many_connections; another address and a signed-in console still get in; the silent ones are closed 1008 token_missing after the hello timeout`, async () => {
  const attempts = Array.from({ length: 20 }, () => consoleFrom('127.0.78.1'));
  const outcomes = await Promise.all(attempts.map((s) => s.opened.then(() => null, (e) => e)));
  const refused = outcomes.filter(Boolean);
  const admitted = attempts.filter((_, i) => !outcomes[i]);
  assert.equal(admitted.length, MAX_UNSIGNED_PER_IP);
  assert.equal(refused.length, 20 - MAX_UNSIGNED_PER_IP);
  for (const error of refused) {
    assert.equal(error.status, 429);
    assert.equal(error.body.type, 'error');
    assert.equal(error.body.code, 'too_many_connections');
    assert.ok(error.body.message);
  }

  const other = consoleFrom('127.0.78.2');
  await other.opened;
  // One of the admitted signs in: it no longer counts, so the address may open one more.
  admitted[0].send({ type: 'hello', token: owner.token });
  await admitted[0].next((f) => f.type === 'inbox');
  const again = consoleFrom('127.0.78.1');
  await again.opened;

  for (const silent of [...admitted.slice(1), other, again]) {
    const { code, reason } = await closed(silent, 30_000);
    assert.equal(code, 1008);
    assert.equal(reason, 'token_missing');
    assert.equal(silent.frames.find((f) => f.type === 'error')?.code, 'token_missing');
  }
  // The console that signed in stays.
  assert.equal(admitted[0].closed, null);
  admitted[0].send({ type: 'heartbeat' });
  admitted[0].send({ type: 'ping' });
  await admitted[0].next((f) => f.type === 'pong');
});
