// WebSockets blocked on the way (a proxy that refuses the upgrade): the widget falls back to
// long-polling and the chat goes on; when WebSockets get through again it goes back to them.
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
let proxy;
widgetSuite({ blockUpgrades: true }, (parts) => ({ server, browser, agent, proxy } = parts));

test('WebSockets blocked: long-polling carries the chat both ways, then WebSockets again when they work', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server, '', { base: proxy.url });
  await openPanel(page);
  await send(page, 'Hello from behind a strict proxy');
  const conversation = await conversationOf(page);
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => visitorTexts(sock.events).length === 1, 'the message at the agent', 30_000);

  await waitFor(async () => (await diag(page)).transport === 'poll', 'the long-poll fallback');
  const d = await diag(page);
  assert.equal(d.state, 'live');
  assert.ok(d.stats.fallbacks >= 1);
  assert.ok(proxy.state.refused >= 2, 'the browser really tried WebSockets and was refused');
  assert.equal(proxy.state.upgraded, 0);

  // Agent to visitor over long-poll, and the visitor's read marker back.
  const ack = await sock.sendMessage('Got it, answering over long-poll.');
  await waitFor(async () => (await panelMessages(page)).some((m) => !m.mine && m.text === 'Got it, answering over long-poll.'), 'the reply over long-poll');
  await waitFor(() => sock.frames.some((f) => f.type === 'read' && f.seq >= ack.seq), 'read marker over HTTP');
  await send(page, 'Second message, still long-polling');
  await waitFor(() => visitorTexts(sock.events).length === 2, 'second message at the agent');
  assert.equal((await diag(page)).transport, 'poll');
  assert.ok((await diag(page)).stats.poll >= 1);

  // The proxy lets WebSockets through again: the widget's probe finds out and switches back.
  proxy.state.blockWs = false;
  await waitFor(async () => (await diag(page)).transport === 'ws', 'back on WebSockets', 45_000, 250);
  assert.ok(proxy.state.upgraded >= 1);
  await send(page, 'Back on a WebSocket');
  await waitFor(() => visitorTexts(sock.events).length === 3, 'third message at the agent');
  await sock.sendMessage('Welcome back.');
  await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'Welcome back.'), 'reply over the WebSocket');

  await sleep(1000);
  const history = await fullHistory(server, conversation, agent.token);
  assert.deepEqual(history.filter((e) => e.kind === 'message').map((e) => e.body.text), [
    'Hello from behind a strict proxy',
    'Got it, answering over long-poll.',
    'Second message, still long-polling',
    'Back on a WebSocket',
    'Welcome back.',
  ]);
  const shown = (await panelMessages(page)).slice(1).map((m) => m.text);
  assert.deepEqual(shown, history.filter((e) => e.kind === 'message').map((e) => e.body.text), 'the panel shows each message once');
  assert.deepEqual(context.offsite, []);
  sock.close();
  await context.close();
});
