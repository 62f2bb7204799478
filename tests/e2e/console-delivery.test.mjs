// The agent console keeps its promise in a real browser when its sockets cannot: a reply still
// sending when its tab goes away (closed, or dropped from the saved tab list by another window)
// is sent all the same, once, without the agent opening the conversation again, and one the
// server refuses for good is brought to the agent; an open thread whose socket is down (every
// WebSocket refused by a proxy, or its sign-in token never answered) still shows what the
// visitor writes, without the agent doing anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../support/client.mjs';
import { consoleKit, waitFor, waitForText, widgetSuite } from './helpers.mjs';

const STEP = { timeout: 120_000 };
const CONV_WS = /\/api\/v1\/conversations\/[^/]+\/ws/;
const MESSAGES = /\/api\/v1\/conversations\/[^/]+\/messages$/;

let server;
let browser;
let proxy;
// Every WebSocket upgrade through the proxy is refused; the tests that want sockets go to the server directly.
widgetSuite({ blockUpgrades: true }, (parts) => ({ server, browser, proxy } = parts));
const { openConsole, visitorChat, openFromTeam, agentTexts } = consoleKit(() => ({ server, browser }));

/** Types a reply in the open conversation, sends it with Enter and waits for it to show as sending. */
async function replyPending(page, text) {
  await page.fill('.composer-input', text);
  await page.focus('.composer-input');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.conv .msg--pending:not(.msg--failed)');
}

/** Closes the open conversation's tab. */
async function closeTab(page) {
  await page.click('.convtab-close');
  await page.waitForSelector('.convtab', { state: 'detached' });
}

/** The texts of the replies the console's outbox still has to send (not acknowledged). */
function unsent(page) {
  return page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('parley.console.outbox.'))
    .map((k) => JSON.parse(localStorage.getItem(k))).filter((i) => !i.acked).map((i) => i.text));
}

/** Until `blocked.on` is cleared: conversation sockets are refused and replies cannot be posted. */
function blockSending(blocked, refusal) {
  return async (context) => {
    await context.routeWebSocket(CONV_WS, (ws) => (blocked.on ? ws.close() : ws.connectToServer()));
    await context.route(MESSAGES, (route) => {
      if (blocked.on) return route.abort();
      if (refusal) return route.fulfill({ status: refusal.status, contentType: 'application/json', body: JSON.stringify(refusal.body) });
      return route.fallback();
    });
  };
}

test('console: a reply still sending when its tab is closed is sent once, without opening the conversation again', STEP, async () => {
  const chat = await visitorChat('Still there?');
  const blocked = { on: true };
  const { context, page } = await openConsole(blockSending(blocked));
  try {
    await openFromTeam(page, chat.conversation);
    await waitForText(page, '.conv .msg--in .text', 'Still there?');
    await replyPending(page, 'Written during the blip');
    await closeTab(page);
    blocked.on = false;
    await waitFor(async () => (await agentTexts(chat)).length > 0, 'the reply stored', 45_000);
    await waitFor(async () => !(await unsent(page)).length, 'nothing left to send');
    await sleep(3000);
    assert.deepEqual(await agentTexts(chat), ['Written during the blip'], 'stored once');
    assert.equal(await page.locator('.convtab').count(), 0, 'the conversation was not opened again');
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a reply whose tab another window dropped from the saved tab list is sent after a reload', STEP, async () => {
  const chat = await visitorChat('Hello from the shop');
  const blocked = { on: true };
  const { context, page } = await openConsole(blockSending(blocked));
  try {
    await openFromTeam(page, chat.conversation);
    await replyPending(page, 'Sent from the first window');
    // Another console window of the same agent saves its own tabs over this one's.
    await page.evaluate(() => {
      for (const key of Object.keys(localStorage)) {
        if (key.startsWith('parley.console.tabs.')) localStorage.setItem(key, JSON.stringify({ open: [], active: null }));
      }
    });
    await page.reload();
    await page.waitForSelector('.conv-list[aria-busy="false"]', { state: 'attached' });
    assert.equal(await page.locator('.convtab').count(), 0, 'no tab after the reload');
    blocked.on = false;
    await waitFor(async () => (await agentTexts(chat)).length > 0, 'the reply stored', 45_000);
    await waitFor(async () => !(await unsent(page)).length, 'nothing left to send');
    await sleep(3000);
    assert.deepEqual(await agentTexts(chat), ['Sent from the first window'], 'stored once');
    assert.equal(await page.locator('.convtab').count(), 0, 'the conversation was not opened again');
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a reply refused for good after its tab closed is shown to the agent, who can discard it', STEP, async () => {
  const chat = await visitorChat('Can you help?');
  const blocked = { on: true };
  const refusal = { status: 403, body: { v: 1, type: 'error', code: 'forbidden', message: 'You may not write here.' } };
  const { context, page } = await openConsole(blockSending(blocked, refusal));
  try {
    await openFromTeam(page, chat.conversation);
    await replyPending(page, 'This one will be refused');
    await closeTab(page);
    blocked.on = false;
    await waitForText(page, '.toast--error', 'You may not write here.', 45_000);
    const row = `.conv-item[data-id="${chat.conversation}"]`;
    await page.waitForSelector(`${row} .chip--failed`);
    assert.deepEqual(await unsent(page), ['This one will be refused'], 'kept for the agent');

    // Opened again, the thread shows it with its reason; discarded, it is gone everywhere.
    await page.click(row);
    await page.waitForSelector('.conv .msg--failed');
    assert.match(await page.textContent('.conv .msg--failed'), /This one will be refused[\s\S]*You may not write here\./);
    await page.click('.conv .msg--failed button:has-text("Discard")');
    await page.waitForSelector('.conv .msg--failed', { state: 'detached' });
    await page.waitForSelector(`${row} .chip--failed`, { state: 'detached' });
    assert.deepEqual(await unsent(page), []);
    assert.deepEqual(await agentTexts(chat), []);
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a post answered without an ack, then by a proxy\'s own 429 page, goes again and is stored once', STEP, async () => {
  const chat = await visitorChat('Is anyone there?');
  // What stands between the console and the server answers the first two posts itself.
  const fakeAnswers = [
    { status: 200, contentType: 'text/html', body: '<html>Welcome to the hotel Wi-Fi</html>' },
    { status: 429, contentType: 'text/html', body: '<html>Too many requests</html>' },
  ];
  let posts = 0;
  const { context, page } = await openConsole(async (ctx) => {
    await ctx.routeWebSocket(CONV_WS, (ws) => ws.close());
    await ctx.route(MESSAGES, (route) => {
      posts += 1;
      const fake = fakeAnswers.shift();
      return fake ? route.fulfill(fake) : route.fallback();
    });
  });
  try {
    await openFromTeam(page, chat.conversation);
    await replyPending(page, 'Yes, here');
    await waitFor(async () => (await agentTexts(chat)).length > 0, 'the reply stored', 60_000);
    await waitFor(async () => !(await unsent(page)).length, 'nothing left to send');
    assert.deepEqual(await agentTexts(chat), ['Yes, here'], 'stored once');
    assert.ok(posts >= 3, `posted again after each fake answer (${posts} posts)`);
    assert.equal(await page.locator('.conv .msg--failed').count(), 0, 'never shown as not sent');
    assert.equal(await page.locator('.toast--error').count(), 0);
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: with every WebSocket refused, a visitor message shows in the open thread without the agent doing anything', STEP, async () => {
  const chat = await visitorChat('First question');
  const refusedBefore = proxy.state.refused;
  const { context, page } = await openConsole(undefined, proxy.url);
  try {
    await openFromTeam(page, chat.conversation);
    await waitForText(page, '.conv .msg--in .text', 'First question');
    await waitFor(() => proxy.state.refused > refusedBefore, 'a WebSocket refused');
    await chat.socket.sendMessage('Second question, while the agent only watches');
    await waitForText(page, '.conv .msg--in .text', 'Second question', 45_000);
    await chat.socket.sendMessage('And a third');
    await waitForText(page, '.conv .msg--in .text', 'And a third', 45_000);
    assert.equal(proxy.state.upgraded, 0, 'no socket got through');
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a socket token request that never answers does not keep the thread from receiving, or the socket down', STEP, async () => {
  const chat = await visitorChat('Hello?');
  let tokenRequests = 0;
  const { context, page } = await openConsole((ctx) => ctx.route(/\/api\/v1\/agent\/socket-token$/, (route) => {
    // The first one hangs (a half-open connection); the next ones are answered.
    if (tokenRequests++ === 0) return;
    return route.fallback();
  }));
  try {
    await openFromTeam(page, chat.conversation);
    await chat.socket.sendMessage('Are you reading this?');
    await waitForText(page, '.conv .msg--in .text', 'Are you reading this?', 45_000);
    // The hung request is given up and the socket connects with a new token.
    await page.waitForSelector('.conv .conv-sub:not(:has(.sub-conn))', { timeout: 60_000 });
    assert.ok(tokenRequests >= 2, `token asked again (${tokenRequests})`);
    await chat.socket.sendMessage('Live again');
    await waitForText(page, '.conv .msg--in .text', 'Live again');
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});
