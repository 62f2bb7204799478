// Delivery under trouble, in a real browser: the agent console and the widget when the socket is
// cut, refused or answers with an error that names no message, when the HTTP fallback is slow,
// when storage is full and when the network comes back. Every message typed arrives once, in
// order, and stays on screen the whole time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fullHistory, sleep } from '../support/client.mjs';
import {
  agentJoin, consoleKit, conversationOf, diag, openDemo, openPanel, panelMessages, send, visitorContext, visitorTexts, waitFor, waitForText,
  widgetSuite,
} from './helpers.mjs';

const STEP = { timeout: 120_000 };
const CONV_WS = /\/api\/v1\/conversations\/[^/]+\/ws/;

let server;
let browser;
let agent;
widgetSuite({}, (parts) => ({ server, browser, agent } = parts));
const { openConsole, visitorChat, openFromTeam, agentTexts } = consoleKit(() => ({ server, browser }));

/** Types a reply in the open conversation and sends it with Enter. */
async function reply(page, text) {
  await page.fill('.composer-input', text);
  await page.focus('.composer-input');
  await page.keyboard.press('Enter');
}

/** The agent's messages in the open thread, delivered or pending: { text, pending }. */
function myThread(page) {
  return page.$$eval('.conv .msg--mine', (els) => els.map((e) => ({
    text: e.querySelector('.text')?.textContent ?? '',
    pending: e.classList.contains('msg--pending'),
  })));
}

/** A WebSocket route that passes the server's event frames on 800 ms late and all else at once,
 * so every message has a window where only its ack has arrived. */
function eventsLate(ws) {
  const upstream = ws.connectToServer();
  ws.onMessage((m) => upstream.send(m));
  upstream.onMessage((m) => {
    if (typeof m === 'string' && m.includes('"type":"event"')) setTimeout(() => ws.send(m), 800);
    else ws.send(m);
  });
}

/** From now on, every animation frame: the texts `selector` finds (in the widget's shadow root
 * when `inWidget`). */
function watchShown(page, selector, inWidget = false) {
  return page.evaluate(([sel, widget]) => {
    const root = widget ? document.querySelector('[data-parley]').shadowRoot : document;
    window.shown = [];
    const look = () => {
      window.shown.push([...root.querySelectorAll(sel)].map((t) => t.textContent).join('|'));
      requestAnimationFrame(look);
    };
    requestAnimationFrame(look);
  }, [selector, inWidget]);
}

/** What `watchShown` saw, and how often a frame showed fewer texts than the one before (once on
 * screen, a message stays). */
async function shownSoFar(page) {
  const frames = await page.evaluate(() => window.shown);
  const counts = frames.map((f) => (f ? f.split('|').length : 0));
  return { frames, blinks: counts.filter((n, i) => i > 0 && n < counts[i - 1]).length };
}

test('console: a reply sent over the HTTP fallback stays in the thread and is stored once', STEP, async () => {
  const chat = await visitorChat('Is anyone there?');
  // The conversation socket never gets through; the console falls back to HTTP after 8 s.
  const { context, page } = await openConsole((ctx) => ctx.routeWebSocket(CONV_WS, (ws) => ws.close()));
  try {
    await openFromTeam(page, chat.conversation);
    await waitForText(page, '.conv .msg--in .text', 'anyone there');
    await sleep(9000);
    const posted = page.waitForResponse((r) => r.url().endsWith('/messages') && r.request().method() === 'POST');
    await reply(page, 'Sent while the socket is down');
    assert.equal((await posted).status(), 200);
    await waitFor(async () => (await myThread(page)).some((m) => m.text === 'Sent while the socket is down' && !m.pending),
      'the reply shown as delivered');
    await sleep(1500);
    assert.deepEqual(await myThread(page), [{ text: 'Sent while the socket is down', pending: false }], 'still shown, once');
    assert.deepEqual(await agentTexts(chat), ['Sent while the socket is down']);
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: replies sent over the HTTP fallback are stored in the order they were written', STEP, async () => {
  const chat = await visitorChat('Three questions');
  let posts = 0;
  const { context, page } = await openConsole(async (ctx) => {
    await ctx.routeWebSocket(CONV_WS, (ws) => ws.close());
    // The first post is slow to reach the server: nothing written after it may overtake it.
    await ctx.route(/\/api\/v1\/conversations\/[^/]+\/messages$/, async (route) => {
      if (posts++ === 0) await sleep(1500);
      return route.fallback();
    });
  });
  try {
    await openFromTeam(page, chat.conversation);
    await waitForText(page, '.conv .msg--in .text', 'Three questions');
    await sleep(9000);
    for (const text of ['one', 'two', 'three']) await reply(page, text);
    await waitFor(async () => (await agentTexts(chat)).length === 3, 'three replies stored', 30_000);
    assert.deepEqual(await agentTexts(chat), ['one', 'two', 'three']);
    await waitFor(async () => (await myThread(page)).map((m) => `${m.text}:${m.pending}`).join('|') === 'one:false|two:false|three:false',
      'the three shown as delivered, in order');
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: an HTTP-fallback send that hangs is given up and sent again; the replies after it follow in order', STEP, async () => {
  const chat = await visitorChat('Are you there?');
  let posts = 0;
  const { context, page } = await openConsole(async (ctx) => {
    await ctx.routeWebSocket(CONV_WS, (ws) => ws.close());
    // The first post never gets an answer (a half-open connection).
    await ctx.route(/\/api\/v1\/conversations\/[^/]+\/messages$/, async (route) => {
      if (posts++ === 0) return;
      return route.fallback();
    });
  });
  try {
    await openFromTeam(page, chat.conversation);
    await waitForText(page, '.conv .msg--in .text', 'Are you there?');
    await sleep(9000);
    await reply(page, 'yes');
    await reply(page, 'how can I help?');
    await waitFor(async () => (await agentTexts(chat)).length === 2, 'both replies stored', 45_000);
    assert.deepEqual(await agentTexts(chat), ['yes', 'how can I help?']);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a reply stays in the thread between its ack and its event (the ack comes first)', STEP, async () => {
  const chat = await visitorChat('Hello from the visitor');
  // The server's copy of each event reaches the console 800 ms late; acks pass at once.
  const { context, page } = await openConsole((ctx) => ctx.routeWebSocket(CONV_WS, eventsLate));
  try {
    await openFromTeam(page, chat.conversation);
    await waitForText(page, '.conv .msg--in .text', 'Hello from the visitor');
    await watchShown(page, '.conv .msg--mine .text');
    for (const text of ['First reply', 'Second reply']) {
      await reply(page, text);
      await sleep(200);
    }
    await waitFor(async () => (await myThread(page)).map((m) => `${m.text}:${m.pending}`).join('|') === 'First reply:false|Second reply:false',
      'both shown as delivered');
    await sleep(1200);
    const { frames, blinks } = await shownSoFar(page);
    assert.equal(blinks, 0, `a reply left the thread: ${JSON.stringify([...new Set(frames)])}`);
    assert.equal(frames.at(-1), 'First reply|Second reply');
    assert.deepEqual(await agentTexts(chat), ['First reply', 'Second reply']);
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a send refused with an error that names no message is sent again', STEP, async () => {
  const chat = await visitorChat('Hello?');
  let swallowed = 0;
  const { context, page } = await openConsole((ctx) => ctx.routeWebSocket(CONV_WS, (ws) => {
    const server = ws.connectToServer();
    server.onMessage((m) => ws.send(m));
    ws.onMessage((m) => {
      // The first send fails on the server's storage, whose error does not say which send it was.
      if (!swallowed && JSON.parse(m).type === 'send') {
        swallowed += 1;
        ws.send(JSON.stringify({ v: 1, type: 'error', code: 'storage_unavailable', message: 'x' }));
        return;
      }
      server.send(m);
    });
  }));
  try {
    await openFromTeam(page, chat.conversation);
    await page.waitForSelector('.conv .conv-sub:not(:has(.sub-conn))');
    await reply(page, 'Delivered after all');
    await waitFor(async () => swallowed === 1, 'the send refused');
    await sleep(500);
    // The reply goes again by itself: nothing for the agent to act on, so no error is shown.
    assert.equal(await page.locator('.toast--error').count(), 0);
    await waitFor(async () => (await agentTexts(chat)).length === 1, 'the reply stored', 25_000);
    assert.equal(swallowed, 1);
    await waitFor(async () => (await myThread(page)).some((m) => m.text === 'Delivered after all' && !m.pending), 'shown as delivered');
    await sleep(1500);
    assert.deepEqual(await agentTexts(chat), ['Delivered after all']);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a reply told to wait (rate limited) holds back the ones written after it', STEP, async () => {
  const chat = await visitorChat('Two answers, please');
  let limited = 0;
  const { context, page } = await openConsole((ctx) => ctx.routeWebSocket(CONV_WS, (ws) => {
    const server = ws.connectToServer();
    server.onMessage((m) => ws.send(m));
    ws.onMessage((m) => {
      const frame = JSON.parse(m);
      // The first send is refused for now, as the server's rate limit would.
      if (!limited && frame.type === 'send') {
        limited += 1;
        ws.send(JSON.stringify({
          v: 1, type: 'error', code: 'rate_limited', message: 'x', client_msg_id: frame.client_msg_id, retry_after_ms: 2000,
        }));
        return;
      }
      server.send(m);
    });
  }));
  try {
    await openFromTeam(page, chat.conversation);
    await page.waitForSelector('.conv .conv-sub:not(:has(.sub-conn))');
    await reply(page, 'first');
    await waitFor(() => limited === 1, 'the first send limited');
    await reply(page, 'second');
    await waitFor(async () => (await agentTexts(chat)).length === 2, 'both stored', 20_000);
    assert.deepEqual(await agentTexts(chat), ['first', 'second']);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a token error on a conversation socket while the session is valid reconnects', STEP, async () => {
  const chat = await visitorChat('First question');
  let refused = 0;
  const { context, page } = await openConsole((ctx) => ctx.routeWebSocket(CONV_WS, (ws) => {
    if (refused) return ws.connectToServer();
    ws.onMessage(() => {
      refused += 1;
      ws.send(JSON.stringify({ v: 1, type: 'error', code: 'token_missing', message: 'x' }));
      ws.close({ code: 1008, reason: 'token_missing' });
    });
  }));
  try {
    await openFromTeam(page, chat.conversation);
    await waitFor(() => refused === 1, 'the first hello refused');
    await chat.socket.sendMessage('Second question, after the refusal');
    await waitForText(page, '.conv .msg--in .text', 'Second question', 20_000);
    assert.ok(await page.$('.topbar .status-select'), 'still signed in');
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a tab closed while its conversation is loading opens no socket', STEP, async () => {
  const chat = await visitorChat('Quick one');
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  const sockets = [];
  const { context, page } = await openConsole(async (ctx) => {
    await ctx.routeWebSocket(CONV_WS, (ws) => {
      sockets.push(ws.url());
      ws.connectToServer();
    });
    // The conversation's details are slow to come.
    await ctx.route(new RegExp(`/api/v1/conversations/${chat.conversation}$`), async (route) => {
      await held;
      return route.fallback();
    });
  });
  try {
    await page.click('#list-tab-team');
    await page.click(`.conv-item[data-id="${chat.conversation}"]`, { timeout: 15_000 });
    await page.click('.convtab-close');
    await page.waitForSelector('.convtab', { state: 'detached' });
    release();
    await sleep(3000);
    assert.deepEqual(sockets, [], 'no conversation socket after the tab closed');
  } finally {
    release();
    chat.socket.close();
    await context.close();
  }
});

/** Fills localStorage until it refuses even a byte; returns whether it does. Runs in the page. */
function fillLocalStorage() {
  let size = 1 << 20;
  for (let i = 0; size >= 1; i += 1) {
    try {
      localStorage.setItem(`filler-${i}`, 'x'.repeat(size));
    } catch {
      size >>= 1;
    }
  }
  try {
    localStorage.setItem('parley-probe', 'x');
    return false;
  } catch {
    return true;
  }
}

/** Fills the page's localStorage; resolves to whether it now refuses writes. */
function fillStorage(page) {
  return page.evaluate(fillLocalStorage);
}

/** Sends two messages from a page whose storage is full; both must land in one new conversation. */
async function twoMessagesWithStorageFull(page, since) {
  await send(page, 'First, with storage full');
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'the first sent');
  await send(page, 'Second, with storage full');
  await waitFor(async () => (await panelMessages(page)).filter((m) => m.mine).every((m) => m.state === 'sent')
    && (await panelMessages(page)).filter((m) => m.mine).length === 2, 'both shown as sent');
  const { results } = await server.d1('SELECT id FROM conversations WHERE created_at >= ?1', [since]);
  assert.equal(results.length, 1, 'one conversation, not one per message');
  assert.deepEqual(visitorTexts(await fullHistory(server, results[0].id, agent.token)), ['First, with storage full', 'Second, with storage full']);
  assert.deepEqual(page.errors, []);
}

test('widget: a message written while storage is full is still shown and delivered', STEP, async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  try {
    await openPanel(page);
    await send(page, 'Before storage filled up');
    const conversation = await conversationOf(page);
    await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'the first message sent');
    // The host page (or anything else on its origin) filled localStorage up.
    assert.ok(await fillStorage(page), 'localStorage refuses writes');
    await send(page, 'Written with storage full');
    await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.text === 'Written with storage full'), 'the message shown');
    await waitFor(async () => (await panelMessages(page)).filter((m) => m.mine).every((m) => m.state === 'sent'), 'shown as sent');
    await sleep(1000);
    assert.deepEqual(visitorTexts(await fullHistory(server, conversation, agent.token)), ['Before storage filled up', 'Written with storage full']);
    assert.deepEqual(page.errors, []);
  } finally {
    await context.close();
  }
});

test('widget: a message stays on screen between its ack and its event (the ack comes first)', STEP, async () => {
  const context = await visitorContext(browser);
  // The server's copy of each event reaches the page 800 ms late; acks and everything else
  // pass at once, so every message has a window where only its ack has arrived.
  await context.routeWebSocket(CONV_WS, eventsLate);
  const page = await openDemo(context, server);
  try {
    await openPanel(page);
    await send(page, 'First, to open the conversation');
    const conversation = await conversationOf(page);
    await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'the first message sent');
    await watchShown(page, '.list li.m.me .bub', true);
    for (const text of ['Second', 'Third']) {
      await send(page, text);
      await sleep(200);
    }
    await waitFor(async () => (await panelMessages(page)).filter((m) => m.mine).map((m) => `${m.text}:${m.state}`).join('|')
      === 'First, to open the conversation:sent|Second:sent|Third:sent', 'all three sent');
    await sleep(1200);
    const { frames, blinks } = await shownSoFar(page);
    assert.equal(blinks, 0, `a message left the screen: ${JSON.stringify([...new Set(frames)])}`);
    assert.equal(frames.at(-1), 'First, to open the conversation|Second|Third');
    assert.deepEqual(visitorTexts(await fullHistory(server, conversation, agent.token)), ['First, to open the conversation', 'Second', 'Third']);
    assert.deepEqual(page.errors, []);
  } finally {
    await context.close();
  }
});

test('widget: with storage full before the first message, the messages go to one conversation', STEP, async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  try {
    await openPanel(page);
    // The visitor's session is stored; then the page fills storage up.
    await waitFor(() => page.evaluate(() => Object.keys(localStorage).some((k) => k.endsWith(':s'))), 'the session stored');
    const since = Date.now();
    assert.ok(await fillStorage(page), 'localStorage refuses writes');
    await twoMessagesWithStorageFull(page, since);
  } finally {
    await context.close();
  }
});

test('widget: with storage full from the first visit (no session stored), the messages go to one conversation', STEP, async () => {
  const context = await visitorContext(browser);
  const since = Date.now();
  // Full before the loader runs: nothing the widget writes is kept, not even its session.
  const page = await openDemo(context, server, '', { setup: (p) => p.addInitScript(fillLocalStorage) });
  try {
    assert.equal(await page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith('parley:'))), false, 'nothing of the widget stored');
    await openPanel(page);
    await twoMessagesWithStorageFull(page, since);
  } finally {
    await context.close();
  }
});

test('widget: a first message written offline is sent as soon as the network is back', STEP, async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  try {
    await openPanel(page);
    await context.setOffline(true);
    await send(page, 'Typed in the tunnel');
    await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'queued'), 'shown as queued');
    assert.equal((await diag(page)).conversation ?? null, null, 'no conversation yet');
    await context.setOffline(false);
    const conversation = await waitFor(async () => (await diag(page)).conversation, 'the conversation created', 8000);
    await waitFor(async () => visitorTexts(await fullHistory(server, conversation, agent.token)).length === 1, 'the message stored', 8000);
    assert.deepEqual(visitorTexts(await fullHistory(server, conversation, agent.token)), ['Typed in the tunnel']);
  } finally {
    await context.close();
  }
});

test('widget: after its conversation is gone, replies in the next one are unread again', STEP, async () => {
  const context = await visitorContext(browser);
  const goneIds = new Set();
  const open = [];
  await context.routeWebSocket(CONV_WS, (ws) => {
    if (goneIds.has(ws.url().match(/conversations\/([^/]+)\/ws/)[1])) {
      // The conversation no longer exists for this visitor (erased, say): refused after hello.
      ws.onMessage(() => {
        ws.send(JSON.stringify({ v: 1, type: 'error', code: 'not_found', message: 'x' }));
        ws.close({ code: 1008, reason: 'not_found' });
      });
      return;
    }
    open.push(ws);
    ws.connectToServer();
  });
  const page = await openDemo(context, server);
  const sockets = [];
  try {
    await openPanel(page);
    await send(page, 'First chat');
    const first = await conversationOf(page);
    const sock = await agentJoin(server, agent, first);
    sockets.push(sock);
    // Many replies, read with the panel open: the read mark moves past the seqs a new chat starts with.
    for (let i = 1; i <= 6; i += 1) assert.equal((await sock.sendMessage(`answer ${i}`)).type, 'ack');
    await waitFor(async () => (await panelMessages(page)).filter((m) => /^answer \d$/.test(m.text)).length === 6, 'the answers shown');
    assert.equal((await diag(page)).unread, 0);

    goneIds.add(first);
    for (const ws of open.splice(0)) await ws.close({ code: 1012, reason: 'restart' });
    await waitFor(async () => (await diag(page)).conversation === null, 'the widget to let the conversation go');
    await send(page, 'Second chat');
    const second = await waitFor(async () => {
      const c = (await diag(page)).conversation;
      return c && c !== first && c;
    }, 'a new conversation');
    await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.text === 'Second chat' && m.state === 'sent'), 'sent');
    await page.evaluate(() => window.Parley.close());
    const sock2 = await agentJoin(server, agent, second);
    sockets.push(sock2);
    assert.equal((await sock2.sendMessage('A reply in the new chat')).type, 'ack');
    await waitFor(async () => (await diag(page)).unread === 1, 'the reply counted unread', 15_000);
    await page.locator('[data-parley] .badge').first().waitFor({ state: 'visible' });
  } finally {
    for (const s of sockets) s.close();
    await context.close();
  }
});

/** What the page's localStorage holds under keys starting with start: { key: value }. */
function storedUnder(page, start) {
  return page.evaluate((s) => Object.fromEntries(Object.keys(localStorage).filter((k) => k.startsWith(s))
    .map((k) => [k, localStorage.getItem(k)])), start);
}

/** A console page of the agent signed in in context, shown from the saved session. */
async function anotherConsolePage(context, setup) {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  await setup?.(page);
  await page.goto(`${server.url}/console/`);
  await page.waitForSelector('.topbar .status-select');
  return page;
}

test('console: two tabs of one agent writing replies while neither can send keep both replies', STEP, async () => {
  const chat = await visitorChat('Two tabs, one agent');
  let blocked = true;
  const { context, page: first } = await openConsole(async (ctx) => {
    await ctx.routeWebSocket(CONV_WS, (ws) => (blocked ? ws.close() : ws.connectToServer()));
    await ctx.route(/\/api\/v1\/conversations\/[^/]+\/messages$/, (route) => (blocked ? route.abort() : route.fallback()));
  });
  try {
    await openFromTeam(first, chat.conversation);
    // The second tab never hears what the first one stores: the two write at the same time.
    const second = await anotherConsolePage(context, (p) => p.addInitScript(() => {
      window.addEventListener('storage', (e) => e.stopImmediatePropagation(), true);
    }));
    await openFromTeam(second, chat.conversation);

    await reply(first, 'From the first tab');
    await waitFor(async () => (await myThread(first)).some((m) => m.text === 'From the first tab' && m.pending), 'the first reply pending');
    await reply(second, 'From the second tab');
    await waitFor(async () => (await myThread(second)).some((m) => m.text === 'From the second tab' && m.pending), 'the second reply pending');
    // The first tab hears the second one's reply.
    await waitFor(async () => (await myThread(first)).some((m) => m.text === 'From the second tab'), 'the first tab to show the second reply');
    assert.deepEqual((await myThread(first)).filter((m) => m.pending).map((m) => m.text), ['From the first tab', 'From the second tab'],
      'the first tab still holds its own reply, in the order written');

    blocked = false;
    await waitFor(async () => {
      const pending = [...await myThread(first), ...await myThread(second)].filter((m) => m.pending);
      const stored = Object.values(await storedUnder(first, 'parley.console.outbox.')).join('');
      return !pending.length && !stored.includes('From the');
    }, 'no reply left to send', 45_000);
    await sleep(1500);
    assert.deepEqual((await agentTexts(chat)).sort(), ['From the first tab', 'From the second tab']);
    assert.deepEqual([...first.errors, ...second.errors], []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a draft typed just before a reload is still there after it', STEP, async () => {
  const chat = await visitorChat('Draft, please');
  const { context, page } = await openConsole();
  try {
    await openFromTeam(page, chat.conversation);
    await page.fill('.composer-input', 'typed a moment before the reload');
    // At once, well within the pause after which drafts are saved while typing.
    await page.reload();
    await page.waitForSelector(`.conv[data-conversation="${chat.conversation}"] .composer-input`);
    assert.equal(await page.$eval('.composer-input', (el) => el.value), 'typed a moment before the reload');
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a draft typed just before the page closes is there when the console opens again', STEP, async () => {
  const chat = await visitorChat('Draft, then gone');
  const { context, page } = await openConsole();
  try {
    await openFromTeam(page, chat.conversation);
    await page.fill('.composer-input', 'typed a moment before closing');
    await page.close({ runBeforeUnload: true });
    const again = await anotherConsolePage(context);
    await again.waitForSelector(`.conv[data-conversation="${chat.conversation}"] .composer-input`);
    assert.equal(await again.$eval('.composer-input', (el) => el.value), 'typed a moment before closing');
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: an outbox stored by an older version (one array) is moved to one key per reply and sent', STEP, async () => {
  const chat = await visitorChat('Upgrade day');
  let blocked = true;
  const { context, page } = await openConsole(async (ctx) => {
    await ctx.routeWebSocket(CONV_WS, (ws) => (blocked ? ws.close() : ws.connectToServer()));
    await ctx.route(/\/api\/v1\/conversations\/[^/]+\/messages$/, (route) => (blocked ? route.abort() : route.fallback()));
  });
  const legacyKey = `parley.console.outbox.${agent.agentId}`;
  try {
    await openFromTeam(page, chat.conversation);
    // What the older console left behind: two unsent replies in one array under one key.
    await page.evaluate(([key, conversation]) => localStorage.setItem(key, JSON.stringify([
      { conversation, client_msg_id: 'cm-legacy-1', text: 'Left by the old console', note: false, created: Date.now() - 2000 },
      { conversation, client_msg_id: 'cm-legacy-2', text: 'And its second reply', note: false, created: Date.now() - 1000 },
    ])), [legacyKey, chat.conversation]);
    await page.reload();
    await page.waitForSelector(`.conv[data-conversation="${chat.conversation}"] .msg--pending`);
    assert.deepEqual(Object.keys(await storedUnder(page, 'parley.console.outbox.')).sort(),
      [`${legacyKey}.cm-legacy-1`, `${legacyKey}.cm-legacy-2`], 'one key per reply, the old key gone');

    blocked = false;
    await page.reload();
    await waitFor(async () => !Object.keys(await storedUnder(page, 'parley.console.outbox.')).length, 'the outbox emptied', 30_000);
    await sleep(1000);
    assert.deepEqual(await agentTexts(chat), ['Left by the old console', 'And its second reply']);
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});

test('console: a conversation whose first request hangs still loads (the request is given up, the socket loads it)', STEP, async () => {
  const chat = await visitorChat('Anyone there?');
  let hung = 0;
  const { context, page } = await openConsole(async (ctx) => {
    // The conversation's details: the first request a thread makes.
    await ctx.route(new RegExp(`/api/v1/conversations/${chat.conversation}$`), async (route) => {
      if (hung === 0) {
        hung += 1;
        return; // never answered
      }
      return route.fallback();
    });
  });
  try {
    await page.click('#list-tab-team');
    await page.click(`.conv-item[data-id="${chat.conversation}"]`, { timeout: 15_000 });
    await page.waitForSelector(`.conv[data-conversation="${chat.conversation}"] .thread-begin`, { timeout: 40_000 });
    assert.equal(hung, 1);
    assert.ok(await page.locator(`.conv[data-conversation="${chat.conversation}"]`).getByText('Anyone there?').count() > 0);
    assert.deepEqual(page.errors, []);
  } finally {
    chat.socket.close();
    await context.close();
  }
});
