// Resume by seq, and `reset` when the visitor missed more than the replay window: the widget
// drops what it holds, loads history over HTTP and goes on live; every message shows once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../support/client.mjs';
import {
  agentJoin, conversationOf, diag, openDemo, openPanel, panelMessages, send, visitorContext, waitFor,
  widgetSuite,
} from './helpers.mjs';

let server;
let browser;
let agent;
widgetSuite({ vars: { REPLAY_WINDOW: '5' } }, (parts) => ({ server, browser, agent } = parts));

test('a short break resumes by seq; a long one gets a reset and reloads history', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'hi');
  const conversation = await conversationOf(page);
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'sent');
  const epoch = (await diag(page)).epoch;

  // Short: two messages missed, replayed on reconnect.
  await context.setOffline(true);
  await waitFor(async () => (await diag(page)).state === 'offline', 'offline');
  await sock.sendMessage('missed 1');
  await sock.sendMessage('missed 2');
  await context.setOffline(false);
  await waitFor(async () => (await panelMessages(page)).filter((m) => /^missed/.test(m.text)).length === 2, 'replayed');

  // Long: more than the replay window (5) missed: reset, history, everything once.
  await context.setOffline(true);
  await waitFor(async () => (await diag(page)).state === 'offline', 'offline again');
  const texts = Array.from({ length: 9 }, (_, i) => `while away ${i + 1}`);
  for (const t of texts) await sock.sendMessage(t);
  await context.setOffline(false);
  await waitFor(async () => (await panelMessages(page)).filter((m) => /^while away/.test(m.text)).length === 9, 'history after reset', 30_000);
  await sleep(1000);
  const shown = (await panelMessages(page)).map((m) => m.text);
  assert.deepEqual(shown.filter((t) => /^(missed|while away)/.test(t)), ['missed 1', 'missed 2', ...texts]);
  assert.equal(new Set(shown).size, shown.length, 'nothing twice');
  const d = await diag(page);
  assert.equal(d.epoch, epoch);
  assert.equal(d.state, 'live');
  // Still live after the reset: a new message both ways.
  await send(page, 'back');
  await sock.sendMessage('welcome back');
  await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'welcome back'), 'live after reset');
  sock.close();
  await context.close();
});
