// The bad-input suite (DESIGN.md invariants 5 and 6): every malformed, oversized, forged,
// expired, foreign or flooding input gets the typed error docs/protocol.md names for it, with
// its HTTP status or WebSocket close code, and changes nothing that was stored. Each test's
// name states the input and the answer expected. Tests follow the protocol document; where the
// server differs, the test fails and says so.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { startServer } from './support/server.mjs';
import {
  agentLogin, chunkedPost, createAgent, fullHistory, http, msgId, newConversation, Socket, visitorSession, wsUrl,
} from './support/client.mjs';
import {
  assertAppended, assertErrorBody, assertHttpError, assertRateLimited, assertUnchanged, snapshot, waitMirror,
} from './support/stored.mjs';

const MAX_FRAME = 16 * 1024;
const ALLOWED_ORIGIN = 'http://allowed.example';
const EVIL_ORIGIN = 'http://evil.example';
const CJK = /[\u3400-\u9fff]/;
const RUN = randomBytes(4).toString('hex');
const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
// Limits small enough to flood in a test, refilling slowly enough not to refill during one.
const LIMITS = { RATE_IP_MESSAGES: '4/0.01', RATE_AGENT_MESSAGES: '3/0.01', RATE_LOGINS: '5/0.001' };

let server; // the main server, default limits
let expServer; // visitor tokens live 2 s: for expiry
let limServer; // tight per-address, per-agent and sign-in limits: for the floods of each limit
let limAgent; // demo owner on `limServer`
let agent; // demo owner on `server`
let A; // visitor A and their conversation: most bad frames go here
let B; // visitor B and their conversation: "someone else's" for A, and A's for B

/** Every token and secret the suite handled, and every message text it sent: none may be logged. */
const secrets = new Set();
const texts = new Set();
const sockets = [];
let markerCount = 0;

/** A distinctive text to send, remembered for the log check. */
function marker(label) {
  markerCount += 1;
  const text = `BADIN-${RUN}-${label}-${markerCount}`;
  texts.add(text);
  return text;
}
function keep(token) {
  if (token) secrets.add(token);
  return token;
}

/** A conversation id of the right shape that nobody minted. */
function unknownConversationId() {
  return `c_${Array.from(randomBytes(26), (b) => B32[b & 31]).join('')}`;
}

function assertCjk(message) {
  assert.match(message, CJK, `expected a Chinese message, got ${JSON.stringify(message)}`);
}
function assertNotCjk(message) {
  assert.doesNotMatch(message, CJK, `expected an English message, got ${JSON.stringify(message)}`);
}

/** Opens a socket (no hello). */
async function openSocket(srv, conversation, { site = srv.siteKey, origin, headers } = {}) {
  const s = await Socket.open(wsUrl(srv, conversation, site), { origin, headers });
  sockets.push(s);
  return s;
}

/** Opens a socket and signs in. */
async function signedIn(srv, conversation, token, extra = {}, opts = {}) {
  const s = await openSocket(srv, conversation, opts);
  keep(token);
  const welcome = await s.hello(token, extra);
  assert.equal(welcome.type, 'welcome', JSON.stringify(welcome));
  return s;
}

/** The next error frame on a socket. */
async function nextError(s, code) {
  const frame = await s.next((f) => f.type === 'error');
  assertErrorBody(frame, code);
  return frame;
}

/** A message sent over the socket is refused as rate limited, with its id and a retry time. */
async function refusedAsLimited(s, label) {
  const id = msgId(label);
  s.send({ type: 'send', client_msg_id: id, text: marker(`${label}-ws`) });
  const err = await nextError(s, 'rate_limited');
  assert.equal(err.client_msg_id, id);
  assert.ok(Number.isInteger(err.retry_after_ms) && err.retry_after_ms > 0, JSON.stringify(err));
}

/** The next error frame, then the socket must be closed by the server with `closeCode`. */
async function errorThenClose(s, code, closeCode) {
  const frame = await nextError(s, code);
  // The close follows the error frame at once; do not wait long for one that never comes.
  const closed = await s.waitClosed(3000);
  assert.equal(closed.code, closeCode, `expected close ${closeCode}, got ${JSON.stringify(closed)}`);
  return frame;
}

/** The socket is still open and its conversation answers: a non-exact ping reaches the object. */
async function assertOpen(s) {
  s.send('{"type":"ping","v":1}');
  await s.next((f) => f.type === 'pong');
  assert.equal(s.closed, null, 'socket was closed');
}

/** Upgrade that must be refused over HTTP: resolves to the refusal. */
async function refusedUpgrade(url, opts) {
  const s = new Socket(url, opts);
  sockets.push(s);
  const err = await s.opened.then(
    () => assert.fail('the upgrade was accepted'),
    (e) => e,
  );
  assert.ok(err.status, `expected an HTTP refusal, got ${err}`);
  return err;
}

async function d1Count(srv, sql, params = []) {
  return (await srv.d1(sql, params)).results[0].n;
}

/**
 * POST on a connection of its own (closed afterwards). A request refused before its body is
 * read (bad token, oversized body) can leave workerd resetting that keep-alive connection, and
 * the next request sent on it fails with ECONNRESET; that is reported separately, and kept out
 * of the tests that are about the refusal itself.
 */
function postOnOwnConnection(srv, path, token, payload, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(srv.url + path, {
      method: 'POST',
      agent: false,
      headers: {
        ...headers,
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        connection: 'close',
      },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let body = text;
        try { body = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, body });
      });
    });
    // The server may close before it has read the whole body; the answer still counts.
    req.on('error', reject);
    req.end(payload);
  });
}

/** Sends a message over HTTP that is refused before its body is read, on its own connection. */
function refusedPost(srv, conversation, token, body) {
  return postOnOwnConnection(srv, `/api/v1/conversations/${conversation}/messages`, token, JSON.stringify(body));
}

/** Sends a message over HTTP. */
function postMessage(srv, conversation, token, body, extra = {}) {
  return http(srv.url, `/api/v1/conversations/${conversation}/messages`, {
    method: 'POST', token, body, ...extra,
  });
}

before(async () => {
  [server, expServer, limServer] = await Promise.all([
    startServer(),
    startServer({ vars: { VISITOR_TOKEN_TTL: '2' } }),
    startServer({ vars: LIMITS }),
  ]);
  secrets.add(server.password);
  secrets.add(expServer.password);
  secrets.add(limServer.password);
  limAgent = await agentLogin(limServer);
  keep(limAgent.token);
  agent = await agentLogin(server);
  keep(agent.token);
  A = await newConversation(server);
  B = await newConversation(server);
  keep(A.token);
  keep(B.token);
  // One message in A so histories are not trivial.
  const res = await postMessage(server, A.conversation, A.token, { client_msg_id: msgId('seed'), text: marker('seed') });
  assert.equal(res.status, 200, JSON.stringify(res.body));
});

// Each case closes what it opened, so one visitor's sockets never pile up across cases.
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

after(async () => {
  for (const s of sockets) s.close();
  await Promise.all([server?.stop(), expServer?.stop(), limServer?.stop()]);
});

// ---------------------------------------------------------------------------------------------
// WebSocket frames

test('ws: text frame over 16 KiB after hello → frame_too_large, socket closed 1009, nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  const text = marker('oversized') + 'x'.repeat(MAX_FRAME);
  const frame = JSON.stringify({ v: 1, type: 'send', client_msg_id: msgId('big'), text });
  assert.ok(Buffer.byteLength(frame) > MAX_FRAME);
  s.send(frame);
  await errorThenClose(s, 'frame_too_large', 1009);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: binary frame over 16 KiB after hello → frame_too_large, socket closed 1009, nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  s.ws.send(Buffer.alloc(MAX_FRAME + 1, 0x61));
  await errorThenClose(s, 'frame_too_large', 1009);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: text frame over 16 KiB before hello → frame_too_large, socket closed 1009', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await openSocket(server, A.conversation);
  s.send(JSON.stringify({ v: 1, type: 'hello', token: 'x'.repeat(MAX_FRAME + 1) }));
  await errorThenClose(s, 'frame_too_large', 1009);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: frame of exactly 16 KiB (a short message padded with an unknown field) → accepted and acked', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  const text = marker('edge16k');
  const id = msgId('edge');
  const base = JSON.stringify({ v: 1, type: 'send', client_msg_id: id, text, pad: '' });
  const frame = base.replace('"pad":""', `"pad":"${'p'.repeat(MAX_FRAME - Buffer.byteLength(base))}"`);
  assert.equal(Buffer.byteLength(frame), MAX_FRAME);
  s.send(frame);
  const ack = await s.next((f) => f.type === 'ack' || f.type === 'error');
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  await assertAppended(server, A.conversation, A.token, before, [text]);
});

test('ws: malformed JSON before hello → bad_frame, socket closed 1008', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await openSocket(server, A.conversation);
  s.send('{"v":1,"type":"hello","token":');
  await errorThenClose(s, 'bad_frame', 1008);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: malformed JSON after hello → bad_frame, socket stays open and a following valid send is acked', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  s.send(`{"v":1,"type":"send","client_msg_id":"m-x","text":"${marker('malformed')}"`);
  await nextError(s, 'bad_frame');
  s.send('not json at all');
  await nextError(s, 'bad_frame');
  s.send('[1,2,3]');
  await nextError(s, 'bad_frame');
  assert.equal(s.closed, null);
  const text = marker('after-malformed');
  const ack = await s.sendMessage(text);
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  assert.equal(ack.duplicate, false);
  await assertAppended(server, A.conversation, A.token, before, [text]);
});

test('ws: unknown frame type {"type":"shout"} after hello → unknown_frame_type, socket stays open', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  s.send({ type: 'shout', client_msg_id: msgId('shout'), text: marker('shout') });
  await nextError(s, 'unknown_frame_type');
  await assertOpen(s);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: frame without "v", with "v":2 or with "v":"1" after hello → unsupported_version each, socket stays open', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  for (const v of [undefined, 2, '1', 0]) {
    const frame = { type: 'send', client_msg_id: msgId('ver'), text: marker('version') };
    if (v !== undefined) frame.v = v;
    s.send(JSON.stringify(frame));
    await nextError(s, 'unsupported_version');
  }
  await assertOpen(s);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: hello with "v":2 before hello → unsupported_version, socket closed 1008', async () => {
  const s = await openSocket(server, A.conversation);
  s.send(JSON.stringify({ v: 2, type: 'hello', token: A.token }));
  await errorThenClose(s, 'unsupported_version', 1008);
});

test('ws: send before hello → hello_required, socket closed 1008, nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await openSocket(server, A.conversation);
  s.send({ type: 'send', client_msg_id: msgId('early'), text: marker('before-hello') });
  await errorThenClose(s, 'hello_required', 1008);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: read and typing before hello → hello_required, socket closed 1008', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  for (const frame of [{ type: 'read', seq: 1 }, { type: 'typing', active: true }]) {
    const s = await openSocket(server, A.conversation);
    s.send(frame);
    await errorThenClose(s, 'hello_required', 1008);
  }
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: second hello (with another visitor\'s token) → hello_repeated, socket stays open and keeps its identity', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  s.send({ type: 'hello', token: B.token });
  await nextError(s, 'hello_repeated');
  s.send({ type: 'hello', token: A.token });
  await nextError(s, 'hello_repeated');
  await assertOpen(s);
  const text = marker('after-second-hello');
  const ack = await s.sendMessage(text);
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  const { added } = await assertAppended(server, A.conversation, A.token, before, [text]);
  assert.equal(added[0].author.id, A.visitorId, 'the second hello changed who is speaking');
});

test('ws: hello with a garbage token → token_invalid, socket closed 1008', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  for (const token of [keep(`garbage-${RUN}`), keep(`p1.${RUN}.${RUN}`), keep(`p2.${A.token.slice(3)}`)]) {
    const s = await openSocket(server, A.conversation);
    s.send({ type: 'hello', token });
    await errorThenClose(s, 'token_invalid', 1008);
  }
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: hello without a token field, or with a non-string token → bad_frame, socket closed 1008', async () => {
  for (const frame of [{ type: 'hello' }, { type: 'hello', token: 42 }, { type: 'hello', token: null }]) {
    const s = await openSocket(server, A.conversation);
    s.send(frame);
    await errorThenClose(s, 'bad_frame', 1008);
  }
});

test('ws: hello with a forged token (A\'s signature, B\'s claims) on B\'s conversation → token_invalid, closed 1008', async () => {
  const before = await snapshot(server, B.conversation, B.token);
  const [, , macA] = A.token.split('.');
  const [prefix, claimsB] = B.token.split('.');
  const forged = keep(`${prefix}.${claimsB}.${macA}`);
  assert.notEqual(forged, B.token);
  const s = await openSocket(server, B.conversation);
  s.send({ type: 'hello', token: forged });
  await errorThenClose(s, 'token_invalid', 1008);
  // Also with claims rewritten by hand to name B and A's signature kept.
  const claims = JSON.parse(Buffer.from(A.token.split('.')[1], 'base64url').toString());
  claims.id = B.visitorId;
  const rewritten = keep(`p1.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${macA}`);
  const s2 = await openSocket(server, B.conversation);
  s2.send({ type: 'hello', token: rewritten });
  await errorThenClose(s2, 'token_invalid', 1008);
  await assertUnchanged(server, B.conversation, B.token, before);
});

test('ws: hello with a token minted by another deployment (other secret) → token_invalid, closed 1008', async () => {
  const other = await visitorSession(expServer);
  keep(other.token);
  const s = await openSocket(server, A.conversation);
  s.send({ type: 'hello', token: other.token });
  await errorThenClose(s, 'token_invalid', 1008);
});

test('ws + http: a visitor token past its expiry → token_expired (socket closed 1008, HTTP 401), nothing stored', async () => {
  // expServer mints visitor tokens valid for 2 s.
  let conv;
  for (let attempt = 0; attempt < 3 && !conv; attempt += 1) {
    const v = await visitorSession(expServer);
    keep(v.token);
    const res = await http(expServer.url, '/api/v1/conversations', { method: 'POST', token: v.token });
    if (res.status === 201) conv = { ...v, conversation: res.body.conversation };
  }
  assert.ok(conv, 'could not create a conversation within the token lifetime');
  const expAgent = await agentLogin(expServer);
  keep(expAgent.token);
  // Wait (polling) until the visitor's token has expired.
  const deadline = Date.now() + 10_000;
  let me;
  for (;;) {
    me = await http(expServer.url, '/api/v1/me', { token: conv.token });
    if (me.status !== 200 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assertHttpError(me, 401, 'token_expired');
  const before = await snapshot(expServer, conv.conversation, expAgent.token);

  const s = await openSocket(expServer, conv.conversation);
  s.send({ type: 'hello', token: conv.token });
  await errorThenClose(s, 'token_expired', 1008);

  assertHttpError(await http(expServer.url, `/api/v1/conversations/${conv.conversation}`, { token: conv.token }), 401, 'token_expired');
  assertHttpError(
    await refusedPost(expServer, conv.conversation, conv.token, { client_msg_id: msgId('exp'), text: marker('expired') }),
    401, 'token_expired',
  );
  assertHttpError(await http(expServer.url, '/api/v1/conversations', { method: 'POST', token: conv.token }), 401, 'token_expired');
  await assertUnchanged(expServer, conv.conversation, expAgent.token, before);
  assert.equal(await d1Count(expServer, 'SELECT count(*) AS n FROM conversations'), 1);
});

test('ws: another visitor\'s conversation with a valid token → not_found, socket closed 1008', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await openSocket(server, A.conversation);
  s.send({ type: 'hello', token: B.token });
  await errorThenClose(s, 'not_found', 1008);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: read marker beyond the head → invalid_seq, socket stays open, markers unchanged', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  for (const seq of [before.info.head + 1, 1e9]) {
    s.send({ type: 'read', seq });
    await nextError(s, 'invalid_seq');
  }
  s.send({ type: 'read', seq: -1 });
  await nextError(s, 'bad_frame');
  s.send({ type: 'read', seq: 'two' });
  await nextError(s, 'bad_frame');
  await assertOpen(s);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: message of 4001 characters (ASCII and CJK) → message_too_long with client_msg_id echoed; 4000 is accepted', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  for (const fill of ['a', '长']) {
    const head = marker(`long-${fill === 'a' ? 'ascii' : 'cjk'}`);
    const text = head + fill.repeat(4001 - head.length);
    assert.equal([...text].length, 4001);
    const id = msgId('long');
    s.send({ type: 'send', client_msg_id: id, text });
    const err = await nextError(s, 'message_too_long');
    assert.equal(err.client_msg_id, id);
  }
  await assertOpen(s);
  await assertUnchanged(server, A.conversation, A.token, before);
  const head = marker('exactly4000');
  const ok = head + '长'.repeat(4000 - head.length);
  const ack = await s.sendMessage(ok);
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  await assertAppended(server, A.conversation, A.token, before, [ok]);
});

test('ws: blank text ("", spaces, whitespace) → empty_message with client_msg_id echoed', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  for (const text of ['', '   ', ' \n\t \r\n']) {
    const id = msgId('blank');
    s.send({ type: 'send', client_msg_id: id, text });
    const err = await nextError(s, 'empty_message');
    assert.equal(err.client_msg_id, id);
  }
  await assertOpen(s);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: client_msg_id with spaces, over 64 chars, empty, non-ASCII or "/" → invalid_client_msg_id; 64 chars is accepted', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  for (const id of ['has space', 'x'.repeat(65), '', 'ünïcode', 'a/b', 'm<script>']) {
    s.send({ type: 'send', client_msg_id: id, text: marker('bad-id') });
    await nextError(s, 'invalid_client_msg_id');
  }
  s.send({ type: 'send', client_msg_id: 12345, text: marker('numeric-id') });
  await nextError(s, 'bad_frame');
  await assertOpen(s);
  await assertUnchanged(server, A.conversation, A.token, before);
  const text = marker('id64');
  const ack = await s.sendMessage(text, `A-z0-9_.:${RUN}`.padEnd(64, 'k'));
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  await assertAppended(server, A.conversation, A.token, before, [text]);
});

test('ws: binary frame after hello → bad_frame, socket stays open', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token);
  s.ws.send(Buffer.from(JSON.stringify({ v: 1, type: 'send', client_msg_id: msgId('bin'), text: marker('binary') })));
  await nextError(s, 'bad_frame');
  await assertOpen(s);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('ws: binary frame before hello → bad_frame, socket closed 1008', async () => {
  const s = await openSocket(server, A.conversation);
  s.ws.send(Buffer.from([0, 1, 2, 255]));
  await errorThenClose(s, 'bad_frame', 1008);
});

// ---------------------------------------------------------------------------------------------
// WebSocket upgrade

test('upgrade: Origin http://evil.example with ?site=<siteKey> → HTTP 403 origin_not_allowed, no socket', async () => {
  const err = await refusedUpgrade(wsUrl(server, A.conversation), { origin: EVIL_ORIGIN });
  assert.equal(err.status, 403);
  assertErrorBody(err.body, 'origin_not_allowed');
});

test('upgrade: Origin http://evil.example without ?site → HTTP 403 origin_not_allowed', async () => {
  const err = await refusedUpgrade(wsUrl(server, A.conversation, null), { origin: EVIL_ORIGIN });
  assert.equal(err.status, 403);
  assertErrorBody(err.body, 'origin_not_allowed');
});

test('upgrade: allowed Origin http://allowed.example with ?site=<siteKey>, and the Worker\'s own origin, upgrade and sign in', async () => {
  const s = await signedIn(server, A.conversation, A.token, {}, { origin: ALLOWED_ORIGIN });
  await assertOpen(s);
  const own = await signedIn(server, A.conversation, A.token, {}, { origin: server.url });
  await assertOpen(own);
});

test('upgrade: unknown conversation id of valid shape (c_ + 26 base32) → after hello: not_found, close 1008 — the same as another visitor\'s conversation', async () => {
  const missing = await openSocket(server, unknownConversationId());
  keep(A.token);
  missing.send({ type: 'hello', token: A.token });
  const missingFrame = await errorThenClose(missing, 'not_found', 1008);
  const foreign = await openSocket(server, B.conversation);
  foreign.send({ type: 'hello', token: A.token });
  const foreignFrame = await errorThenClose(foreign, 'not_found', 1008);
  assert.deepEqual(missingFrame, foreignFrame);
});

test('upgrade: malformed conversation ids (c_..%2F..%2Fx, c_../../x, too short, wrong alphabet) → HTTP 404 not_found', async () => {
  const base = server.url.replace(/^http/, 'ws');
  for (const id of ['c_..%2F..%2Fx', 'c_abc', `c_${'A'.repeat(26)}`, `c_${'a'.repeat(27)}`, `v_${'a'.repeat(26)}`]) {
    const err = await refusedUpgrade(`${base}/api/v1/conversations/${id}/ws?site=${server.siteKey}`, {});
    assert.equal(err.status, 404, id);
    assertErrorBody(err.body, 'not_found');
  }
  // The ws client normalises "c_../../x/ws" to another path; whatever it reaches is not_found.
  const err = await refusedUpgrade(`${base}/api/v1/conversations/c_../../x/ws?site=${server.siteKey}`, {});
  assert.equal(err.status, 404);
  assertErrorBody(err.body, 'not_found');
});

test('upgrade: ?site=<unknown key> → HTTP 404 unknown_site', async () => {
  const err = await refusedUpgrade(wsUrl(server, A.conversation, `pk_unknown${RUN}`), { origin: ALLOWED_ORIGIN });
  assert.equal(err.status, 404);
  assertErrorBody(err.body, 'unknown_site');
});

test('upgrade: plain GET (no Upgrade header) on the ws route → HTTP 400 invalid_request', async () => {
  const res = await http(server.url, `/api/v1/conversations/${A.conversation}/ws?site=${server.siteKey}`);
  assertHttpError(res, 400, 'invalid_request');
});

// ---------------------------------------------------------------------------------------------
// HTTP

test('http: no Authorization header → 401 token_missing (GET conversation, POST message), nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  assertHttpError(await http(server.url, `/api/v1/conversations/${A.conversation}`), 401, 'token_missing');
  assertHttpError(await http(server.url, '/api/v1/me'), 401, 'token_missing');
  assertHttpError(
    await refusedPost(server, A.conversation, undefined, { client_msg_id: msgId('noauth'), text: marker('noauth') }),
    401, 'token_missing',
  );
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('http: Authorization "Bearer garbage" → 401 token_invalid, nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const garbage = keep(`garbage${RUN}`);
  assertHttpError(await http(server.url, `/api/v1/conversations/${A.conversation}`, { token: garbage }), 401, 'token_invalid');
  assertHttpError(
    await refusedPost(server, A.conversation, garbage, { client_msg_id: msgId('garbage'), text: marker('garbage') }),
    401, 'token_invalid',
  );
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('http: forged Bearer token (A\'s signature, B\'s claims) → 401 token_invalid', async () => {
  const forged = keep(`p1.${B.token.split('.')[1]}.${A.token.split('.')[2]}`);
  assertHttpError(await http(server.url, `/api/v1/conversations/${B.conversation}`, { token: forged }), 401, 'token_invalid');
  assertHttpError(await http(server.url, '/api/v1/me', { token: forged }), 401, 'token_invalid');
});

test('http: another visitor\'s conversation → 404 not_found, the same body as a non-existent one; nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const foreign = await http(server.url, `/api/v1/conversations/${A.conversation}`, { token: B.token });
  const missing = await http(server.url, `/api/v1/conversations/${unknownConversationId()}`, { token: B.token });
  assertHttpError(foreign, 404, 'not_found');
  assertHttpError(missing, 404, 'not_found');
  assert.deepEqual(foreign.body, missing.body);
  const paths = ['/history', '/events?after=0&wait=0', ''];
  for (const p of paths) {
    assertHttpError(await http(server.url, `/api/v1/conversations/${A.conversation}${p}`, { token: B.token }), 404, 'not_found');
  }
  const foreignSend = await postMessage(server, A.conversation, B.token, { client_msg_id: msgId('foreign'), text: marker('foreign') });
  assertHttpError(foreignSend, 404, 'not_found');
  const missingSend = await postMessage(server, unknownConversationId(), B.token, { client_msg_id: msgId('missing'), text: marker('missing') });
  assertHttpError(missingSend, 404, 'not_found');
  assert.deepEqual(foreignSend.body, missingSend.body);
  assertHttpError(
    await http(server.url, `/api/v1/conversations/${A.conversation}/read`, { method: 'POST', token: B.token, body: { seq: 1 } }),
    404, 'not_found',
  );
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('http: POST message body over 16 KiB → 413 frame_too_large, nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const body = { client_msg_id: msgId('bigbody'), text: marker('bigbody') + 'x'.repeat(MAX_FRAME) };
  const res = await postOnOwnConnection(server, `/api/v1/conversations/${A.conversation}/messages`, A.token, JSON.stringify(body));
  assertHttpError(res, 413, 'frame_too_large');
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('http: a chunked body (no Content-Length) of 64 MiB to POST /api/v1/visitor/session, before any sign-in → 413 frame_too_large once past 16 KiB, the rest never read', async () => {
  const total = 64 * 1024 * 1024;
  // 20,000 bytes first: past the limit, and all of them read by the server when it answers.
  const answer = await chunkedPost(`${server.url}/api/v1/visitor/session`, { 'content-type': 'application/json' }, total, 0x20, { first: 20_000 });
  assertHttpError(answer, 413, 'frame_too_large');
  assert.ok(answer.sent < total, `the server read the whole body (${answer.sent} of ${total} bytes) before refusing it`);
});

test('http: malformed JSON body on POST messages → 400 invalid_request, nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const res = await http(server.url, `/api/v1/conversations/${A.conversation}/messages`, {
    method: 'POST', token: A.token, rawBody: `{"client_msg_id":"m-1","text":"${marker('badjson')}"`,
    headers: { 'content-type': 'application/json' },
  });
  assertHttpError(res, 400, 'invalid_request');
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('http: message-level refusals on POST messages → 413 message_too_long, 400 empty_message, 400 invalid_client_msg_id; POST read beyond head → 400 invalid_seq', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const long = marker('httplong');
  const id = msgId('hl');
  const tooLong = await postMessage(server, A.conversation, A.token, { client_msg_id: id, text: long + 'y'.repeat(4001 - long.length) });
  assertHttpError(tooLong, 413, 'message_too_long');
  assert.equal(tooLong.body.client_msg_id, id);
  const blankId = msgId('hb');
  const blank = await postMessage(server, A.conversation, A.token, { client_msg_id: blankId, text: ' \n ' });
  assertHttpError(blank, 400, 'empty_message');
  assert.equal(blank.body.client_msg_id, blankId);
  assertHttpError(
    await postMessage(server, A.conversation, A.token, { client_msg_id: 'has space', text: marker('httpbadid') }),
    400, 'invalid_client_msg_id',
  );
  assertHttpError(
    await http(server.url, `/api/v1/conversations/${A.conversation}/read`, { method: 'POST', token: A.token, body: { seq: before.info.head + 1 } }),
    400, 'invalid_seq',
  );
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('http: visitor calls agent-only routes (close, reopen, assign) → 403 forbidden, nothing stored', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  for (const action of ['close', 'reopen', 'assign']) {
    assertHttpError(
      await http(server.url, `/api/v1/conversations/${A.conversation}/${action}`, { method: 'POST', token: A.token }),
      403, 'forbidden',
    );
  }
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('http: wrong method (DELETE/PUT on messages, DELETE on a conversation, PUT on conversations, item paths) → 405 method_not_allowed', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  for (const [method, path] of [
    ['DELETE', `/api/v1/conversations/${A.conversation}/messages`],
    ['PUT', `/api/v1/conversations/${A.conversation}/messages`],
    ['GET', `/api/v1/conversations/${A.conversation}/messages`],
    ['DELETE', `/api/v1/conversations/${A.conversation}`],
    ['PUT', '/api/v1/conversations'],
    ['GET', '/api/v1/agent/login'],
    // Item paths: a wrong method on a path that exists is 405, not 404.
    ['PUT', `/api/v1/conversations/${A.conversation}/files/f_x`],
    ['GET', '/api/v1/quick-replies/q_x'],
    ['POST', '/api/v1/visitors/v_x'],
    ['POST', '/api/v1/export/messages.csv'],
    ['GET', '/api/v1/maintenance/purge'],
  ]) {
    assertHttpError(await http(server.url, path, { method, token: A.token }), 405, 'method_not_allowed');
  }
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('http: unknown API paths → 404 not_found', async () => {
  for (const path of ['/api/v1/nope', '/api/v2/conversations', '/api/', `/api/v1/conversations/${A.conversation}/nope`]) {
    assertHttpError(await http(server.url, path, { token: A.token }), 404, 'not_found');
  }
});

test('http: visitor session with an unknown site_key → 404 unknown_site; no visitor recorded', async () => {
  const visitors = await d1Count(server, 'SELECT count(*) AS n FROM visitors');
  const res = await http(server.url, '/api/v1/visitor/session', { method: 'POST', body: { site_key: `pk_nope${RUN}` } });
  assertHttpError(res, 404, 'unknown_site');
  assert.equal(res.body.token, undefined);
  assert.equal(await d1Count(server, 'SELECT count(*) AS n FROM visitors'), visitors);
});

test('http: visitor session from a disallowed Origin http://evil.example → 403 origin_not_allowed; no visitor recorded', async () => {
  const visitors = await d1Count(server, 'SELECT count(*) AS n FROM visitors');
  const res = await http(server.url, '/api/v1/visitor/session', {
    method: 'POST', body: { site_key: server.siteKey }, headers: { origin: EVIL_ORIGIN },
  });
  assertHttpError(res, 403, 'origin_not_allowed');
  assert.equal(res.body.token, undefined);
  // And with the allowed origin it works.
  const ok = await visitorSession(server, { origin: ALLOWED_ORIGIN });
  keep(ok.token);
  await waitFor(async () => (await d1Count(server, 'SELECT count(*) AS n FROM visitors')) === visitors + 1);
});

test('http: a deployment at an internationalised domain (Punycode host) knows its own origin: its page gets a visitor session, another origin still 403', async () => {
  // The runtime hands the Worker request URLs with the host in ASCII (Punycode) form; the Worker
  // parses them without a Unicode back end and must still recognise its own origin.
  const { port } = new URL(server.url);
  const payload = JSON.stringify({ site_key: server.siteKey });
  const post = (host, origin) => postOnOwnConnection(server, '/api/v1/visitor/session', null, payload, { host, origin });
  for (const host of [`xn--r8jz45g.jp:${port}`, `chat.xn--mnchen-3ya.de:${port}`]) {
    const own = await post(host, `http://${host}`);
    assert.equal(own.status, 200, `${host}: ${JSON.stringify(own.body)}`);
    keep(own.body.token);
    const other = await post(host, 'http://xn--mnchen-3ya.example');
    assertHttpError(other, 403, 'origin_not_allowed');
  }
});

test('http: creating a conversation from a disallowed Origin → 403 origin_not_allowed; nothing created', async () => {
  const conversations = await d1Count(server, 'SELECT count(*) AS n FROM conversations');
  const res = await http(server.url, '/api/v1/conversations', { method: 'POST', token: A.token, headers: { origin: EVIL_ORIGIN } });
  assertHttpError(res, 403, 'origin_not_allowed');
  assert.equal(await d1Count(server, 'SELECT count(*) AS n FROM conversations'), conversations);
});

test('http: agent login with a wrong password and with an unknown e-mail → 401 invalid_credentials, identical bodies', async () => {
  const wrong = `wrong-${RUN}`;
  secrets.add(wrong);
  const badPassword = await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email: server.email, password: wrong } });
  const unknownEmail = await http(server.url, '/api/v1/agent/login', {
    method: 'POST', body: { email: `nobody-${RUN}@example.invalid`, password: server.password },
  });
  assertHttpError(badPassword, 401, 'invalid_credentials');
  assertHttpError(unknownEmail, 401, 'invalid_credentials');
  assert.deepEqual(badPassword.body, unknownEmail.body);
  assert.equal(badPassword.body.token, undefined);
});

test('http: long-poll with a malformed after (after=abc, after=-1, after=1.5) or wait=abc → 400 invalid_request', async () => {
  for (const q of ['after=abc&wait=0', 'after=-1&wait=0', 'after=1.5&wait=0', 'after=0&wait=abc']) {
    const res = await http(server.url, `/api/v1/conversations/${A.conversation}/events?${q}`, { token: A.token });
    assertHttpError(res, 400, 'invalid_request');
  }
});

test('http: history with before=abc, conversation list with limit=abc or before=nocursor → 400 invalid_request', async () => {
  for (const path of [
    `/api/v1/conversations/${A.conversation}/history?before=abc`,
    '/api/v1/conversations?limit=abc',
    '/api/v1/conversations?before=nocursor',
  ]) {
    assertHttpError(await http(server.url, path, { token: A.token }), 400, 'invalid_request');
  }
});

// ---------------------------------------------------------------------------------------------
// Flooding

test('flood: 30 messages at once from one visitor over ws → 20 acked, the rest rate_limited with retry_after_ms; HTTP send then 429 with Retry-After; exactly the acked ones stored', async () => {
  const F = await newConversation(server);
  keep(F.token);
  const before = await snapshot(server, F.conversation, F.token);
  const s = await signedIn(server, F.conversation, F.token);
  const ids = Array.from({ length: 30 }, () => msgId('flood'));
  const textOf = new Map(ids.map((id, i) => [id, marker(`flood${i}`)]));
  for (const id of ids) s.send({ type: 'send', client_msg_id: id, text: textOf.get(id) });
  const answers = new Map();
  while (answers.size < ids.length) {
    const f = await s.next((x) => (x.type === 'ack' || x.type === 'error') && ids.includes(x.client_msg_id));
    answers.set(f.client_msg_id, f);
  }
  const acked = ids.filter((id) => answers.get(id).type === 'ack');
  const refused = ids.filter((id) => answers.get(id).type === 'error');
  assert.ok(acked.length >= 20, `only ${acked.length} of the burst of 20 were accepted`);
  assert.ok(acked.length <= 22, `${acked.length} accepted: the burst of 20 was not enforced`);
  for (const id of refused) {
    const e = answers.get(id);
    assertErrorBody(e, 'rate_limited');
    assert.ok(Number.isInteger(e.retry_after_ms) && e.retry_after_ms > 0 && e.retry_after_ms <= 1000, JSON.stringify(e));
  }
  // The bucket is empty: HTTP sends from the same visitor are refused too.
  const httpIds = [msgId('fh'), msgId('fh'), msgId('fh')];
  for (const id of httpIds) textOf.set(id, marker('floodhttp'));
  const httpAnswers = await Promise.all(httpIds.map((id) => postMessage(server, F.conversation, F.token, { client_msg_id: id, text: textOf.get(id) })));
  const limited = httpAnswers.filter((r) => r.status === 429);
  assert.ok(limited.length >= 1, `no HTTP send was refused: ${JSON.stringify(httpAnswers.map((r) => r.status))}`);
  for (const r of httpAnswers) assert.ok(r.status === 200 || r.status === 429, JSON.stringify(r.body));
  for (const r of limited) {
    assertErrorBody(r.body, 'rate_limited');
    assert.ok(r.body.retry_after_ms > 0, JSON.stringify(r.body));
    assert.ok(httpIds.includes(r.body.client_msg_id), 'client_msg_id not echoed');
    const header = r.headers.get('retry-after');
    assert.ok(header !== null, 'no Retry-After header');
    assert.match(header, /^\d+$/);
    assert.ok(Number(header) >= 1 && Number(header) * 1000 >= r.body.retry_after_ms, `Retry-After ${header} vs ${r.body.retry_after_ms} ms`);
  }
  const accepted = [...acked, ...httpIds.filter((_, i) => httpAnswers[i].status === 200)];
  const history = await fullHistory(server, F.conversation, F.token);
  const messages = history.filter((e) => e.kind === 'message');
  assert.equal(messages.length, accepted.length, 'stored messages differ from the accepted ones');
  assert.deepEqual(new Set(messages.map((e) => e.client_msg_id)), new Set(accepted));
  for (const e of messages) assert.equal(e.body.text, textOf.get(e.client_msg_id));
  assert.equal(history.length, before.history.length + accepted.length);
  await waitMirror(server, F.conversation, history.length);

  // After waiting as told, a refused message goes through, as new (it was never stored).
  const wait = Math.max(...limited.map((r) => r.body.retry_after_ms));
  await new Promise((r) => setTimeout(r, wait + 50));
  const retryId = refused[0] ?? httpIds.find((_, i) => httpAnswers[i].status === 429);
  const retry = await s.sendMessage(textOf.get(retryId), retryId);
  assert.equal(retry.type, 'ack', JSON.stringify(retry));
  assert.equal(retry.duplicate, false);
  assert.equal(retry.seq, history.length + 1);
});

test('flood: messages into one conversation from one address (CF-Connecting-IP 127.0.115.5), two by its visitor and two by an agent, past RATE_IP_MESSAGES 4/0.01 → the 5th, whoever sends it, 429 rate_limited with Retry-After and client_msg_id; nothing stored; the visitor from another address still sends', async () => {
  const C = await newConversation(limServer);
  keep(C.token);
  const from = { headers: { 'cf-connecting-ip': '127.0.115.5' } };
  const start = await snapshot(limServer, C.conversation, limAgent.token);
  const accepted = [];
  for (const token of [C.token, limAgent.token, C.token, limAgent.token]) {
    const text = marker('ipflood');
    const res = await postMessage(limServer, C.conversation, token, { client_msg_id: msgId('ip'), text }, from);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    accepted.push(text);
  }
  const { now: before } = await assertAppended(limServer, C.conversation, limAgent.token, start, accepted);
  // Each sender is far under their own limit (visitor 20, agent 3): the address's bucket is empty.
  for (const token of [C.token, limAgent.token]) {
    const id = msgId('ipx');
    const res = await postMessage(limServer, C.conversation, token, { client_msg_id: id, text: marker('ipflood-refused') }, from);
    assertRateLimited(res);
    assert.equal(res.body.client_msg_id, id);
  }
  // Over a socket from that address too.
  const s = await signedIn(limServer, C.conversation, C.token, {}, from);
  await refusedAsLimited(s, 'ipflood');
  await assertUnchanged(limServer, C.conversation, limAgent.token, before);
  // The limit is the address's, not the visitor's.
  const text = marker('ipflood-elsewhere');
  const elsewhere = await postMessage(limServer, C.conversation, C.token, { client_msg_id: msgId('ipo'), text }, { headers: { 'cf-connecting-ip': '127.0.115.6' } });
  assert.equal(elsewhere.status, 200, JSON.stringify(elsewhere.body));
  await assertAppended(limServer, C.conversation, limAgent.token, before, [text]);
});

test('flood: an agent past RATE_AGENT_MESSAGES 3/0.01 in one conversation, each message from its own address → the 4th message, a note and a ws send 429/rate_limited with Retry-After and client_msg_id; nothing stored; the visitor still sends', async () => {
  const D = await newConversation(limServer);
  keep(D.token);
  const start = await snapshot(limServer, D.conversation, limAgent.token);
  const accepted = [];
  for (let i = 0; i < 3; i += 1) {
    const text = marker('agentflood');
    const res = await postMessage(limServer, D.conversation, limAgent.token, { client_msg_id: msgId('ag'), text }, { headers: { 'cf-connecting-ip': `127.0.116.${i + 1}` } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    accepted.push(text);
  }
  const { now: before } = await assertAppended(limServer, D.conversation, limAgent.token, start, accepted);
  for (const [i, note] of [[10, false], [11, true]]) {
    const id = msgId('agx');
    const res = await postMessage(limServer, D.conversation, limAgent.token, { client_msg_id: id, text: marker('agentflood-refused'), note }, { headers: { 'cf-connecting-ip': `127.0.116.${i}` } });
    assertRateLimited(res);
    assert.equal(res.body.client_msg_id, id);
  }
  const s = await signedIn(limServer, D.conversation, limAgent.token, {}, { headers: { 'cf-connecting-ip': '127.0.116.12' } });
  await refusedAsLimited(s, 'agentflood');
  await assertUnchanged(limServer, D.conversation, limAgent.token, before);
  // The agent's bucket is theirs: the visitor of the conversation still sends.
  const text = marker('agentflood-visitor');
  const visitor = await postMessage(limServer, D.conversation, D.token, { client_msg_id: msgId('agv'), text });
  assert.equal(visitor.status, 200, JSON.stringify(visitor.body));
  await assertAppended(limServer, D.conversation, limAgent.token, before, [text]);
});

test('flood: failed logins for one e-mail, each from a new address, past RATE_LOGINS 5/0.001 → 401 invalid_credentials until the e-mail\'s bucket is empty, then 429 rate_limited with Retry-After, even for the right password; no session and no audit row added', async () => {
  const email = `flood-${RUN}@parley.local`;
  const password = `right-${RUN}-password`;
  secrets.add(password);
  // Signing in once (createAgent does) takes the first of the e-mail's 5.
  const target = await createAgent(limServer, { name: 'Flood Target', email, password });
  keep(target.token);
  const login = (pw, n) => http(limServer.url, '/api/v1/agent/login', {
    method: 'POST', headers: { 'cf-connecting-ip': `127.0.117.${n}` }, body: { email, password: pw },
  });
  for (let n = 1; n <= 4; n += 1) assertHttpError(await login(`wrong-${RUN}`, n), 401, 'invalid_credentials');
  const stored = async () => ({
    sessions: (await limServer.d1('SELECT * FROM sessions WHERE agent_id = ?1 ORDER BY id', [target.agentId])).results,
    audit: (await limServer.d1('SELECT * FROM audit_log WHERE target = ?1 ORDER BY id', [target.agentId])).results,
  });
  const before = await stored();
  assert.equal(before.audit.filter((r) => r.action === 'login_failed').length, 4);
  const refused = await login(`wrong-${RUN}`, 20);
  assertRateLimited(refused);
  const right = await login(password, 21);
  assertRateLimited(right);
  assert.equal(right.body.token, undefined);
  assert.equal(right.headers.get('set-cookie'), null);
  assert.deepEqual(await stored(), before, 'a refused sign-in changed sessions or the audit log');
  // Another account signs in from the next new address.
  const other = await http(limServer.url, '/api/v1/agent/login', {
    method: 'POST', headers: { 'cf-connecting-ip': '127.0.117.22' }, body: { email: limServer.email, password: limServer.password },
  });
  assert.equal(other.status, 200, JSON.stringify(other.body));
  keep(other.body.token);
});

// ---------------------------------------------------------------------------------------------
// Languages

test('i18n: the same bad HTTP request with Accept-Language: zh-CN → same status and code, Chinese message', async () => {
  const cases = [
    { path: `/api/v1/conversations/${A.conversation}`, status: 401, code: 'token_missing' },
    { path: `/api/v1/conversations/${A.conversation}`, token: keep(`bad-${RUN}`), status: 401, code: 'token_invalid' },
    { path: `/api/v1/conversations/${A.conversation}`, token: B.token, status: 404, code: 'not_found' },
    { path: '/api/v1/visitor/session', method: 'POST', body: { site_key: `pk_x${RUN}` }, status: 404, code: 'unknown_site' },
  ];
  for (const c of cases) {
    const en = await http(server.url, c.path, { method: c.method, token: c.token, body: c.body, headers: { 'accept-language': 'en-US,en;q=0.9' } });
    const zh = await http(server.url, c.path, { method: c.method, token: c.token, body: c.body, headers: { 'accept-language': 'zh-CN,zh;q=0.9' } });
    assertHttpError(en, c.status, c.code);
    assertHttpError(zh, c.status, c.code);
    assertNotCjk(en.body.message);
    assertCjk(zh.body.message);
  }
});

test('i18n: hello with "lang":"zh-CN", then a malformed frame → bad_frame with a Chinese message', async () => {
  const before = await snapshot(server, A.conversation, A.token);
  const s = await signedIn(server, A.conversation, A.token, { lang: 'zh-CN' });
  s.send('{oops');
  assertCjk((await nextError(s, 'bad_frame')).message);
  s.send({ type: 'send', client_msg_id: msgId('zh'), text: '   ' });
  assertCjk((await nextError(s, 'empty_message')).message);
  const en = await signedIn(server, A.conversation, A.token, { lang: 'en' });
  en.send('{oops');
  assertNotCjk((await nextError(en, 'bad_frame')).message);
  await assertUnchanged(server, A.conversation, A.token, before);
});

test('i18n: upgrade with Accept-Language: zh-CN, then send before hello → hello_required in Chinese, closed 1008', async () => {
  const s = await openSocket(server, A.conversation, { headers: { 'accept-language': 'zh-CN' } });
  s.send({ type: 'send', client_msg_id: msgId('zhpre'), text: marker('zh-before-hello') });
  const err = await errorThenClose(s, 'hello_required', 1008);
  assertCjk(err.message);
});

// ---------------------------------------------------------------------------------------------
// Last: login flooding locks out logins from that IP address.

test('flood: 11 failed logins from one IP address (CF-Connecting-IP 127.0.113.77) → 10 × 401 invalid_credentials, then 429 rate_limited with Retry-After, even for the right password', async () => {
  const headers = { 'cf-connecting-ip': '127.0.113.77' };
  for (let i = 0; i < 10; i += 1) {
    const res = await http(server.url, '/api/v1/agent/login', {
      method: 'POST', headers, body: { email: `flood-${i}-${RUN}@example.invalid`, password: `pw-${RUN}` },
    });
    assertHttpError(res, 401, 'invalid_credentials');
  }
  const limited = await http(server.url, '/api/v1/agent/login', {
    method: 'POST', headers, body: { email: `flood-x-${RUN}@example.invalid`, password: `pw-${RUN}` },
  });
  assertHttpError(limited, 429, 'rate_limited');
  assert.ok(limited.body.retry_after_ms > 0, JSON.stringify(limited.body));
  assert.match(limited.headers.get('retry-after') ?? '', /^\d+$/);
  const right = await http(server.url, '/api/v1/agent/login', {
    method: 'POST', headers, body: { email: server.email, password: server.password },
  });
  assertHttpError(right, 429, 'rate_limited');
  assert.equal(right.body.token, undefined);
  // Another address is not locked out.
  const elsewhere = await http(server.url, '/api/v1/agent/login', {
    method: 'POST', headers: { 'cf-connecting-ip': '127.51.100.23' }, body: { email: server.email, password: server.password },
  });
  assert.equal(elsewhere.status, 200, JSON.stringify(elsewhere.body));
  keep(elsewhere.body.token);
});

test('after the suite: D1 mirror matches the conversations, and no log line holds a token, password or message text', async () => {
  // Nothing refused reached the mirror: D1 equals each conversation's history.
  for (const [srv, conv, token] of [[server, A.conversation, A.token], [server, B.conversation, B.token]]) {
    const snap = await snapshot(srv, conv, token);
    assert.deepEqual(
      snap.d1Messages.map((r) => [r.seq, r.kind, r.author_id, r.client_msg_id]),
      snap.history.map((e) => [e.seq, e.kind, e.author.id, e.client_msg_id ?? null]),
    );
  }
  const lines = [...server.logs, ...expServer.logs, ...limServer.logs];
  assert.ok(lines.length > 0, 'no log lines captured');
  const leaks = [];
  for (const line of lines) {
    for (const t of secrets) if (t && line.includes(t)) leaks.push(`token/secret ${t.slice(0, 12)}… in ${line.slice(0, 200)}`);
    for (const t of texts) if (line.includes(t)) leaks.push(`message text ${t} in ${line.slice(0, 200)}`);
    if (line.includes(`BADIN-${RUN}`)) leaks.push(`marker in ${line.slice(0, 200)}`);
  }
  assert.deepEqual(leaks, []);
});

async function waitFor(cond, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('POST /conversations: a body may be left out, with or without a JSON content type; a body that is not an object is 400 invalid_request', async () => {
  const v = await visitorSession(server);
  const post = (headers, body) => fetch(`${server.url}/api/v1/conversations`, {
    method: 'POST', headers: { authorization: `Bearer ${v.token}`, ...headers }, body,
  });
  for (const [headers, body] of [
    [{}, undefined],
    [{ 'content-type': 'application/json' }, undefined],
    [{ 'content-type': 'application/json' }, ''],
    [{ 'content-type': 'application/json' }, ' \n'],
    [{ 'content-type': 'application/json' }, '{}'],
  ]) {
    const res = await post(headers, body);
    assert.equal(res.status, 201, `${JSON.stringify(headers)} ${JSON.stringify(body)}: ${await res.text()}`);
  }
  for (const body of ['[]', '{', '"x"', '[null, null, "hi"]']) {
    const res = await post({ 'content-type': 'application/json' }, body);
    assert.equal(res.status, 400, body);
    assert.equal((await res.json()).code, 'invalid_request', body);
  }
});
