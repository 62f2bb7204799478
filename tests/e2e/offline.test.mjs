// Never lose a message: the durable outbox in the browser. Messages typed offline wait as
// pending and arrive once, in order, when the network returns, across reloads too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fullHistory, sleep } from '../support/client.mjs';
import {
  agentJoin, conversationOf, diag, openDemo, openPanel, panelMessages, send, visitorContext, visitorTexts,
  waitFor, widgetSuite,
} from './helpers.mjs';

let server;
let browser;
let agent;
widgetSuite({}, (parts) => ({ server, browser, agent } = parts));

const outboxSize = (page) => page.evaluate(() => Object.keys(localStorage).filter((k) => /^parley:[^:]+:o:/.test(k)).length);

test('offline in the browser: three messages typed offline arrive once and in order when it comes back', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'Before the tunnel');
  const conversation = await conversationOf(page);
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => visitorTexts(sock.events).length === 1, 'first message at the agent');

  await context.setOffline(true);
  await waitFor(async () => (await diag(page)).state === 'offline', 'the widget to notice');
  const banner = page.locator('[data-parley] .banner');
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.textContent(), /offline/i);

  for (const text of ['one', 'two', 'three']) await send(page, text);
  await waitFor(async () => (await panelMessages(page)).filter((m) => m.mine).length === 4, 'the three shown');
  const pending = (await panelMessages(page)).filter((m) => m.mine).slice(1);
  assert.deepEqual(pending.map((m) => [m.text, m.state]), [['one', 'queued'], ['two', 'queued'], ['three', 'queued']]);
  assert.equal(await outboxSize(page), 3, 'the three messages are in the durable outbox');
  await sleep(1500);
  assert.deepEqual(visitorTexts(sock.events), ['Before the tunnel'], 'nothing left the browser while offline');

  await context.setOffline(false);
  await waitFor(() => visitorTexts(sock.events).length === 4, 'the three messages at the agent', 30_000);
  await banner.waitFor({ state: 'hidden' });
  await waitFor(async () => (await panelMessages(page)).filter((m) => m.mine).every((m) => m.state === 'sent'), 'all shown as sent');
  assert.equal(await outboxSize(page), 0);
  await sleep(1500); // no late duplicate
  assert.deepEqual(visitorTexts(sock.events), ['Before the tunnel', 'one', 'two', 'three']);
  const history = await fullHistory(server, conversation, agent.token);
  assert.deepEqual(visitorTexts(history), ['Before the tunnel', 'one', 'two', 'three']);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test('pending messages survive a reload while the server is unreachable, then arrive once', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'first');
  const conversation = await conversationOf(page);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'first sent');
  const sock = await agentJoin(server, agent, conversation);

  // The chat API becomes unreachable while the page itself still loads: WebSockets are cut
  // and every conversation request fails as a dead network would.
  let blocked = true;
  await context.routeWebSocket(/\/api\/v1\/conversations\/[^/]+\/ws/, (ws) => {
    if (blocked) ws.close({ code: 1011, reason: 'unreachable' });
    else ws.connectToServer();
  });
  await context.route(/\/api\/v1\/conversations\//, (route) => (blocked ? route.abort('internetdisconnected') : route.fallback()));
  await page.reload();
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' });
  await send(page, 'second, written while cut off');
  await send(page, 'third, written while cut off');
  assert.equal(await outboxSize(page), 2);

  // A reload (or a navigation) with the messages still pending: they are still there.
  await page.reload();
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' });
  await waitFor(async () => (await panelMessages(page)).filter((m) => m.mine).length === 2, 'pending messages after reload');
  assert.deepEqual((await panelMessages(page)).filter((m) => m.mine).map((m) => [m.text, m.state]), [
    ['second, written while cut off', 'queued'],
    ['third, written while cut off', 'queued'],
  ]);
  assert.equal(await outboxSize(page), 2);
  assert.deepEqual(visitorTexts(sock.events), ['first']);

  blocked = false;
  await waitFor(() => visitorTexts(sock.events).length === 3, 'the pending messages at the agent', 45_000);
  await waitFor(async () => (await panelMessages(page)).filter((m) => m.mine).map((m) => `${m.text}:${m.state}`).join('|')
    === 'first:sent|second, written while cut off:sent|third, written while cut off:sent', 'history and sent states', 20_000);
  await sleep(1500);
  assert.deepEqual(visitorTexts(await fullHistory(server, conversation, agent.token)),
    ['first', 'second, written while cut off', 'third, written while cut off']);
  assert.equal(await outboxSize(page), 0);
  sock.close();
  await context.close();
});

test('a retried send never duplicates: the same client_msg_id sent again by a second tab is stored once', async () => {
  const context = await visitorContext(browser);
  const one = await openDemo(context, server);
  await openPanel(one);
  await send(one, 'hello');
  const conversation = await conversationOf(one);
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => visitorTexts(sock.events).length === 1, 'first message');
  // Go offline, queue a message, and open a second tab of the same visitor: when the network
  // comes back both tabs hold the same pending message; it must arrive exactly once.
  await context.setOffline(true);
  await waitFor(async () => (await diag(one)).state === 'offline', 'offline');
  await send(one, 'queued in tab one');
  await context.setOffline(false);
  const two = await openDemo(context, server, 'pricing');
  await waitFor(() => visitorTexts(sock.events).length === 2, 'queued message delivered', 30_000);
  await sleep(2000);
  assert.deepEqual(visitorTexts(sock.events), ['hello', 'queued in tab one']);
  assert.equal((await diag(two)).conversation ?? conversation, conversation);
  sock.close();
  await context.close();
});

test('a creation whose answer was lost is retried with the same client_req_id: one conversation, not two', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  const bodies = [];
  let lost = 0;
  await page.route('**/api/v1/conversations', async (route) => {
    if (route.request().method() !== 'POST') return route.fallback();
    bodies.push(route.request().postDataJSON());
    if (lost++ === 0) {
      // The server creates the conversation, but its answer never reaches the browser.
      const res = await route.fetch();
      assert.equal(res.status(), 201);
      return route.abort('connectionreset');
    }
    return route.fallback();
  });
  await openPanel(page);
  await send(page, 'created once');
  const conversation = await conversationOf(page);
  assert.equal(bodies.length, 2, 'one retry');
  assert.match(bodies[0].client_req_id, /^[A-Za-z0-9._:-]{1,64}$/);
  assert.equal(bodies[1].client_req_id, bodies[0].client_req_id);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'the message sent');
  const visitor = (await diag(page)).visitor;
  const { results } = await server.d1('SELECT id FROM conversations WHERE visitor_id = ?', [visitor]);
  assert.deepEqual(results.map((r) => r.id), [conversation]);
  // Done with: the next conversation (if any) gets a new id.
  assert.equal(await page.evaluate(() => Object.keys(localStorage).some((k) => /^parley:[^:]+:cr$/.test(k))), false);
  const history = await fullHistory(server, conversation, agent.token);
  assert.deepEqual(visitorTexts(history), ['created once']);
  await context.close();
});

test('a send whose ack never arrived goes again with the same client_msg_id and is stored once', async () => {
  const context = await visitorContext(browser);
  const parse = (m) => { try { return JSON.parse(m); } catch { return null; } };
  const sends = []; // { socket, id, text } of every send frame the page wrote
  const acks = []; // { socket, seq, duplicate } of every ack the server wrote
  let sockets = 0;
  // Between the page and the server: the first socket dies just as the server acknowledges
  // the message (stored, but the page never learns it); on the next socket the server's catch-up
  // is slower than the page's retry, so the page has to send the message again.
  const between = (ws) => {
    const socket = ++sockets;
    const server = ws.connectToServer();
    let cut = false;
    let held = null;
    ws.onMessage((m) => {
      const f = parse(m);
      server.send(m);
      if (f?.type === 'send') {
        sends.push({ socket, id: f.client_msg_id, text: f.text });
        if (held) {
          for (const frame of held) ws.send(frame);
          held = null;
        }
      }
    });
    server.onMessage((m) => {
      if (cut) return;
      const f = parse(m);
      if (f?.type === 'ack') acks.push({ socket, seq: f.seq, duplicate: f.duplicate });
      if (socket === 1 && f?.type === 'ack') {
        cut = true;
        ws.close({ code: 4000, reason: 'connection lost' });
        return;
      }
      if (held) return held.push(m);
      ws.send(m);
      if (socket === 2 && f?.type === 'welcome') held = [];
    });
  };
  // Routed from the page's first document on (the route takes effect on documents loaded after it).
  const page = await openDemo(context, server, '', { setup: (p) => p.routeWebSocket(/\/api\/v1\/conversations\/[^/]+\/ws/, between) });
  await openPanel(page);
  await send(page, 'Is this blend caffeine-free?');
  const conversation = await conversationOf(page);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'the message shown as sent', 30_000);

  assert.equal(sends.length, 2, JSON.stringify(sends));
  assert.deepEqual(sends.map((s) => s.socket), [1, 2]);
  assert.equal(sends[1].id, sends[0].id, 'the same client_msg_id');
  assert.equal(sends[1].text, 'Is this blend caffeine-free?');
  // The server recognised the retry: the original seq, marked duplicate.
  await waitFor(() => acks.length === 2, 'the second ack');
  assert.deepEqual(acks, [
    { socket: 1, seq: acks[0].seq, duplicate: false },
    { socket: 2, seq: acks[0].seq, duplicate: true },
  ]);
  // Stored once, shown once.
  assert.deepEqual(visitorTexts(await fullHistory(server, conversation, agent.token)), ['Is this blend caffeine-free?']);
  assert.deepEqual((await panelMessages(page)).filter((m) => m.mine).map((m) => [m.text, m.state]), [['Is this blend caffeine-free?', 'sent']]);
  assert.equal(await outboxSize(page), 0);
  assert.deepEqual(page.errors, []);
  await context.close();
});
