// The widget's promise under requests that never end, failed reloads and a restored log: no
// message lost, none stuck, none needing a page refresh to appear.
//
// - An HTTP send or creation that never answers (a half-open connection) is given up after
//   its bound and sent again with the same id; the other messages, from every tab, follow.
// - After a `reset`, a history load that fails is tried again while the link stays live.
// - A tab told by another tab that the conversation's log was replaced (a backup restored)
//   starts over from the new log instead of resuming in it from its old cursor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, rmSync } from 'node:fs';
import { agentLogin, fullHistory, http, sleep } from '../support/client.mjs';
import { startServer, tempDir } from '../support/server.mjs';
import {
  agentJoin, agentOnline, conversationOf, diag, openDemo, openPanel, panelMessages, send, visitorContext,
  visitorTexts, waitFor, widgetSuite,
} from './helpers.mjs';

const STEP = { timeout: 180_000 };
const CONV_WS = /\/api\/v1\/conversations\/[^/]+\/ws/;
const MESSAGES = /\/api\/v1\/conversations\/[^/]+\/messages$/;
const HISTORY = /\/api\/v1\/conversations\/[^/]+\/history/;

let server;
let browser;
let agent;
// A small replay window: a short absence is enough for a `reset`.
widgetSuite({ vars: { REPLAY_WINDOW: '5' } }, (parts) => ({ server, browser, agent } = parts));

/** The visitor's own messages in the panel, as `text:state`. */
async function mine(page) {
  return (await panelMessages(page)).filter((m) => m.mine).map((m) => `${m.text}:${m.state}`);
}

/** The texts of a conversation's stored messages (anyone's), in order. */
async function storedTexts(srv, conversation, token) {
  return (await fullHistory(srv, conversation, token)).filter((e) => e.kind === 'message').map((e) => e.body.text);
}

/** The network goes and comes back: the widget connects at once instead of after its backoff. */
async function reconnectNow(context) {
  await context.setOffline(true);
  await context.setOffline(false);
}

test('long-polling: an HTTP send that never answers is sent again, stored once, and the messages of every tab follow', STEP, async () => {
  const context = await visitorContext(browser);
  // WebSockets never connect: the widget long-polls and sends over HTTP.
  await context.routeWebSocket(CONV_WS, (ws) => ws.close());
  const posts = [];
  await context.route(MESSAGES, async (route) => {
    const body = route.request().postDataJSON();
    posts.push(body);
    // The first post of 'second' is held for ever (lost on a half-open connection: the server
    // never has it); its retries and every other post go through.
    if (body.text === 'second' && posts.filter((p) => p.text === 'second').length === 1) return undefined;
    return route.fallback();
  });
  const one = await openDemo(context, server);
  try {
    await openPanel(one);
    await send(one, 'first');
    const conversation = await conversationOf(one);
    await waitFor(async () => (await mine(one)).join('|') === 'first:sent', 'the first message sent');
    await waitFor(async () => (await diag(one)).transport === 'poll', 'long-polling');

    await send(one, 'second');
    await waitFor(() => posts.some((p) => p.text === 'second'), 'the second message posted');
    await send(one, 'third');
    // Another tab of the same visitor writes too, while the hung send holds the send lock.
    const two = await openDemo(context, server, 'pricing');
    await openPanel(two);
    await send(two, 'from another tab');

    const all = ['first', 'second', 'third', 'from another tab'];
    await waitFor(async () => (await storedTexts(server, conversation, agent.token)).length === all.length, 'every message stored', 60_000, 250);
    assert.deepEqual(await storedTexts(server, conversation, agent.token), all, 'each stored once, in order');
    const seconds = posts.filter((p) => p.text === 'second');
    assert.ok(seconds.length >= 2, 'the hung send was given up and sent again');
    assert.ok(seconds.every((p) => p.client_msg_id === seconds[0].client_msg_id), 'with the same client_msg_id');
    for (const page of [one, two]) {
      await waitFor(async () => (await mine(page)).join('|') === all.map((t) => `${t}:sent`).join('|'), 'every message shown once, as sent', 20_000);
    }
    await sleep(1000);
    assert.deepEqual(await storedTexts(server, conversation, agent.token), all, 'no late duplicate');
    assert.deepEqual(one.errors, []);
    assert.deepEqual(two.errors, []);
  } finally {
    await context.close();
  }
});

test('a first message whose conversation creation never answers: one conversation, and every message in it once', STEP, async () => {
  const context = await visitorContext(browser);
  const creations = [];
  await context.route(/\/api\/v1\/conversations$/, async (route) => {
    if (route.request().method() !== 'POST') return route.fallback();
    creations.push(route.request().postDataJSON());
    // The first creation reaches the server, but its answer is held for ever (a connection that
    // went half-open after sending).
    if (creations.length === 1) return route.fetch();
    return route.fallback();
  });
  const one = await openDemo(context, server);
  try {
    await openPanel(one);
    await send(one, 'hello?');
    await waitFor(() => creations.length === 1, 'the creation posted');
    await send(one, 'anyone there?');
    const two = await openDemo(context, server, 'pricing');
    await openPanel(two);
    await send(two, 'written in another tab');

    const conversation = await conversationOf(one);
    const all = ['hello?', 'anyone there?', 'written in another tab'];
    await waitFor(async () => visitorTexts(await fullHistory(server, conversation, agent.token)).length === all.length, 'every message stored', 60_000, 250);
    assert.ok(creations.length >= 2, 'the hung creation was given up and asked again');
    assert.ok(creations.every((c) => c.client_req_id === creations[0].client_req_id), 'with the same client_req_id');
    const { results } = await server.d1('SELECT id FROM conversations WHERE visitor_id = ?', [(await diag(one)).visitor]);
    assert.deepEqual(results.map((r) => r.id), [conversation], 'one conversation');
    for (const page of [one, two]) {
      await waitFor(async () => (await mine(page)).join('|') === all.map((t) => `${t}:sent`).join('|'), 'every message shown once, as sent', 20_000);
    }
    await sleep(1000);
    assert.deepEqual(visitorTexts(await fullHistory(server, conversation, agent.token)), all, 'each stored once, in order');
    assert.deepEqual(one.errors, []);
    assert.deepEqual(two.errors, []);
  } finally {
    await context.close();
  }
});

test('after a reset, a history load that fails is tried again until the missed replies show', STEP, async () => {
  const context = await visitorContext(browser);
  // Set just before the widget comes back: its next history loads fail, one as a dead network,
  // one as a server error.
  const failures = [];
  await context.route(HISTORY, (route) => {
    if (!failures.length) return route.fallback();
    const how = failures.shift();
    return how === 'network' ? route.abort('connectionreset') : route.fulfill({ status: 503, json: { v: 1, type: 'error', code: 'storage_unavailable', message: 'try again' } });
  });
  const page = await openDemo(context, server);
  let sock;
  try {
    await openPanel(page);
    await send(page, 'hi');
    const conversation = await conversationOf(page);
    sock = await agentJoin(server, agent, conversation);
    await waitFor(async () => (await mine(page)).join('|') === 'hi:sent', 'sent');

    // Away for longer than the replay window (5 events): the server answers `reset`.
    await context.setOffline(true);
    await waitFor(async () => (await diag(page)).state === 'offline', 'offline');
    const replies = Array.from({ length: 8 }, (_, i) => `while you were away ${i + 1}`);
    for (const text of replies) assert.equal((await sock.sendMessage(text)).type, 'ack');
    failures.push('network', 'server');
    await context.setOffline(false);

    await waitFor(async () => (await panelMessages(page)).filter((m) => m.text.startsWith('while you were away')).length === replies.length,
      'the missed replies, from history', 60_000, 250);
    assert.deepEqual(failures, [], 'both failed loads happened');
    assert.equal((await diag(page)).state, 'live');
    const shown = (await panelMessages(page)).map((m) => m.text);
    assert.deepEqual(shown.filter((t) => t.startsWith('while you were away')), replies, 'in order');
    assert.equal(new Set(shown).size, shown.length, 'nothing twice');
    // Still live: a reply after it arrives without a reload.
    await sock.sendMessage('and now live');
    await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'and now live'), 'live after the reset');
    assert.deepEqual(page.errors, []);
  } finally {
    sock?.close();
    await context.close();
  }
});

test('a tab told by another tab that the log was restored from a backup shows the restored log, not the one it held', STEP, async () => {
  // A server of its own, backed up and restored the way a private deployment is: its data
  // directory copied while stopped, copied back, and PARLEY_RESTORE_ID set (scripts/restore.mjs,
  // scripts/serve.mjs), which starts each conversation on a new epoch.
  let srv = await startServer();
  const { persistDir, port } = srv;
  const backup = tempDir('backup-');
  const sockets = [];
  let conversation;
  const online = await agentOnline(srv);
  const context = await visitorContext(browser);
  // Switched on to keep the tab from hearing of the restore itself (its socket, its requests).
  let cut = false;
  await context.routeWebSocket(CONV_WS, (ws) => (cut ? ws.close() : ws.connectToServer()));
  await context.route(/\/api\/v1\/conversations\//, (route) => (cut ? route.abort('connectionreset') : route.fallback()));
  /** The server stopped, `prepare()`, then started again on the same port and data; an agent signed in there. */
  const restart = async (prepare, vars) => {
    for (const s of sockets) s.close();
    await srv.stop();
    prepare();
    srv = await startServer({ persistDir, port, vars });
    const staff = await agentLogin(srv);
    return { staff, sock: await agentJoin(srv, staff, conversation) };
  };
  try {
    const page = await openDemo(context, srv);
    await openPanel(page);
    await send(page, 'before the backup');
    conversation = await conversationOf(page);
    await waitFor(async () => (await mine(page)).join('|') === 'before the backup:sent', 'the first message sent');
    sockets.push(await agentJoin(srv, online, conversation));
    await sockets[0].sendMessage('kept in the backup');
    await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'kept in the backup'), 'the reply shown');
    online.close();

    // Backed up; then replies that the restore will roll back.
    let { sock } = await restart(() => cpSync(persistDir, backup, { recursive: true }));
    sockets.push(sock);
    for (const text of ['rolled back 1', 'rolled back 2']) assert.equal((await sock.sendMessage(text)).type, 'ack');
    await reconnectNow(context);
    await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'rolled back 2'), 'the rolled-back replies shown', 30_000);
    const heldUpTo = (await diag(page)).seq;

    // Restored, with replies written in the new log.
    cut = true;
    let staff;
    ({ staff, sock } = await restart(() => {
      rmSync(persistDir, { recursive: true, force: true });
      cpSync(backup, persistDir, { recursive: true });
    }, { PARLEY_RESTORE_ID: 'rs_widget_delivery' }));
    sockets.push(sock);
    const restored = ['restored 1', 'restored 2', 'restored 3', 'restored 4'];
    for (const text of restored) assert.equal((await sock.sendMessage(text)).type, 'ack');
    const info = await http(srv.url, `/api/v1/conversations/${conversation}`, { token: staff.token });
    assert.equal(info.status, 200, JSON.stringify(info.body));
    assert.notEqual(info.body.epoch, (await diag(page)).epoch, 'the restore started a new epoch');
    assert.ok(info.body.head >= heldUpTo, 'the new log reaches the seq the tab holds: resuming there gets no reset');

    // Another tab of the visitor met the new log first (its `reset`): it stored the
    // conversation with the new epoch and where it goes on from, as the widget does.
    const other = await context.newPage();
    await other.goto(`${srv.url}/healthz`);
    await other.evaluate(([site, c, q]) => {
      localStorage.setItem(`parley:${site}:c`, JSON.stringify(c));
      localStorage.setItem(`parley:${site}:q`, JSON.stringify(q));
    }, [srv.siteKey, { id: conversation, e: info.body.epoch }, { s: info.body.head, e: info.body.epoch }]);
    await waitFor(async () => (await diag(page)).epoch === info.body.epoch, 'the tab to take up the new epoch');
    cut = false;
    await reconnectNow(context);

    await waitFor(async () => {
      const texts = (await panelMessages(page)).map((m) => m.text);
      return restored.every((t) => texts.includes(t)) && !texts.some((t) => t.startsWith('rolled back'));
    }, 'the restored log shown instead of the one held', 60_000, 250);
    const stored = await storedTexts(srv, conversation, staff.token);
    assert.deepEqual(stored, ['before the backup', 'kept in the backup', ...restored]);
    const shown = (await panelMessages(page)).map((m) => m.text);
    assert.deepEqual(shown.filter((t) => stored.includes(t)), stored, 'each message of the restored log once, in order');
    assert.deepEqual(page.errors, []);
  } finally {
    for (const s of sockets) s.close();
    online.close();
    await context.close();
    await srv.stop();
  }
});
