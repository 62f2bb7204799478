// The visitor widget in Chromium on the demo shop: a conversation with an agent end to end,
// history after a reload and across pages, unread badge, the JS API, keyboard use, the
// visitor's place from the edge, and the widget embedded by a site on another origin.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { agentLogin, fullHistory, http, sleep } from '../support/client.mjs';
import { startServer } from '../support/server.mjs';
import {
  agentJoin, conversationOf, diag, openDemo, openPanel, panelMessages, recordApiEvents, send,
  visitorContext, visitorTexts, waitFor, widgetSuite,
} from './helpers.mjs';

/**
 * A third-party shop on its own origin (another 127.0.0.1 port), embedding the widget the way
 * a customer's site does: GET /?parley=<Parley origin>&site=<key> is a page with the embed tag.
 */
async function thirdPartyShop() {
  const srv = createServer((req, res) => {
    const q = new URL(req.url, 'http://x').searchParams;
    const attr = (v) => String(v).replace(/[^\w:/.\-]/g, '');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Leaf & Kettle</title>
<script src="${attr(q.get('parley'))}/widget.js" data-site="${attr(q.get('site'))}" async></script></head>
<body><h1>Leaf &amp; Kettle</h1><p>Loose-leaf tea, shipped worldwide.</p></body></html>`);
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((resolve) => srv.close(resolve)) };
}

const shop = await thirdPartyShop();
after(() => shop.close());

let server;
let browser;
let agent;
// The shop's origin is one the demo site allows (as its owner would list it).
widgetSuite({ origins: ['http://allowed.example', shop.url] }, (parts) => ({ server, browser, agent } = parts));

test('the demo page embeds the widget without layout shift; the panel opens on first interaction', async () => {
  const context = await visitorContext(browser);
  const page = await context.newPage();
  const loaded = [];
  page.on('request', (r) => loaded.push(new URL(r.url()).pathname));
  // Layout shift is measured by the browser itself.
  await page.addInitScript(() => {
    window.__cls = 0;
    new PerformanceObserver((list) => { for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value; })
      .observe({ type: 'layout-shift', buffered: true });
  });
  await page.goto(`${server.url}/demo/?site=${server.siteKey}`);
  const launcher = page.locator('[data-parley] .launch');
  await launcher.waitFor({ state: 'visible' });
  await sleep(500);
  assert.equal(await page.evaluate(() => window.__cls), 0, 'no layout shift');
  assert.ok(loaded.includes('/widget.js'));
  assert.ok(!loaded.includes('/widget/chat.js'), 'the full widget waits for an interaction');
  assert.equal(await launcher.getAttribute('aria-expanded'), 'false');
  assert.match(await launcher.getAttribute('aria-label'), /open chat/i);
  // The host page's CSS cannot reach into the widget.
  await page.addStyleTag({ content: 'button, div, section { background: red !important; color: red !important; font-size: 40px !important; display: none !important }' });
  await openPanel(page);
  assert.ok(loaded.includes('/widget/chat.js'));
  assert.equal(await launcher.getAttribute('aria-expanded'), 'true');
  const bg = await page.locator('[data-parley] .send').evaluate((b) => getComputedStyle(b).display);
  assert.notEqual(bg, 'none');
  // Focus lands in the composer; Escape closes and gives focus back to the launcher.
  assert.equal(await page.evaluate(() => document.querySelector('[data-parley]').shadowRoot.activeElement?.className), 'in');
  await page.keyboard.press('Escape');
  await page.locator('[data-parley] .panel').waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.querySelector('[data-parley]').shadowRoot.activeElement?.className), 'launch');
  assert.deepEqual(context.offsite, []);
  assert.deepEqual(page.errors ?? [], []);
  await context.close();
});

test('visitor writes, the agent replies, the visitor sees it; typing, read receipts, history after reload and across pages', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server, '', { setup: recordApiEvents });
  const events = page.apiEvents;
  await openPanel(page);
  await send(page, 'Hello! Do you ship to Canada?');
  const conversation = await conversationOf(page);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'the message to be sent');

  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => visitorTexts(sock.events).length === 1, 'the message at the agent');
  assert.deepEqual(visitorTexts(sock.events), ['Hello! Do you ship to Canada?']);

  // The agent types: the visitor sees the indicator.
  sock.send({ type: 'typing', active: true });
  await page.locator('[data-parley] .typing').waitFor({ state: 'visible' });
  assert.match(await page.locator('[data-parley] .typing').textContent(), /is typing/);

  const ack = await sock.sendMessage('Yes, we ship to Canada in 3–5 days.');
  assert.equal(ack.type, 'ack');
  await waitFor(async () => (await panelMessages(page)).some((m) => !m.mine && m.text === 'Yes, we ship to Canada in 3–5 days.'), 'the reply in the panel');
  await page.locator('[data-parley] .typing').waitFor({ state: 'hidden' });
  // The visitor had the panel open: the reply is read at once, the agent is told.
  await waitFor(() => sock.frames.some((f) => f.type === 'read' && f.seq >= ack.seq), 'the visitor read marker');
  // The agent reads: the visitor's message shows as read.
  sock.send({ type: 'read', seq: ack.seq });
  await waitFor(async () => (await panelMessages(page)).find((m) => m.mine)?.state === 'read', 'read receipt');
  assert.ok(events.some(([n, d]) => n === 'message' && d.author.role === 'agent' && d.text.startsWith('Yes, we ship')));
  assert.ok(events.some(([n]) => n === 'open'));

  // Reload in the middle of the conversation: the history is back, nothing twice.
  await page.reload();
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' }); // it was open: it stays open
  await waitFor(async () => (await panelMessages(page)).length === 3, 'history after reload');
  let shown = await panelMessages(page);
  assert.deepEqual(shown.map((m) => [m.mine, m.text]), [
    [false, 'Hi! How can we help you today?'],
    [true, 'Hello! Do you ship to Canada?'],
    [false, 'Yes, we ship to Canada in 3–5 days.'],
  ]);
  assert.equal((await diag(page)).conversation, conversation);
  // What the visitor had seen before the reload is not reported (or announced) again as new.
  assert.equal(events.filter(([n, d]) => n === 'message' && d.text.startsWith('Yes, we ship')).length, 1);

  // Another page of the site: the same conversation, its history, and a new message in it.
  await page.locator('nav a', { hasText: 'Tea Club' }).click();
  await page.waitForURL(/\/demo\/pricing/);
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' });
  await waitFor(async () => (await panelMessages(page)).length === 3, 'history on the next page');
  assert.equal((await diag(page)).conversation, conversation);
  await send(page, 'And can I gift the Tea Club?');
  await waitFor(() => visitorTexts(sock.events).length === 2, 'second visitor message');
  // The visitor's typing reached the agent too (typing starts, then stops on send).
  assert.ok(sock.frames.some((f) => f.type === 'typing' && f.participant.role === 'visitor' && f.active === true));
  assert.deepEqual(visitorTexts(sock.events), ['Hello! Do you ship to Canada?', 'And can I gift the Tea Club?']);

  // Panel closed: a new agent message shows an unread badge (and flashes the title).
  await page.locator('[data-parley] .hb[aria-label*="Minimize"]').click();
  await page.locator('[data-parley] .panel').waitFor({ state: 'hidden' });
  await sock.sendMessage('Of course! Tick "This is a gift" at checkout.');
  const badge = page.locator('[data-parley] .badge');
  await badge.waitFor({ state: 'visible' });
  assert.equal(await badge.textContent(), '1');
  assert.match(await page.locator('[data-parley] .launch').getAttribute('aria-label'), /1 unread/);
  await waitFor(() => events.some(([n, d]) => n === 'unread' && d === 1), 'unread event');
  await waitFor(async () => /New message/.test(await page.title()), 'title flash', 5000, 200);
  // The screen-reader announcement carries the new message.
  assert.match(await page.locator('[data-parley] [aria-live="polite"].sr').textContent(), /Of course!/);
  await openPanel(page);
  await badge.waitFor({ state: 'hidden' });
  await waitFor(async () => !/New message/.test(await page.title()), 'title restored');

  // Everything the agent and the server hold, once each and in order.
  const history = await fullHistory(server, conversation, agent.token);
  assert.deepEqual(history.filter((e) => e.kind === 'message').map((e) => e.body.text), [
    'Hello! Do you ship to Canada?',
    'Yes, we ship to Canada in 3–5 days.',
    'And can I gift the Tea Club?',
    'Of course! Tick "This is a gift" at checkout.',
  ]);
  assert.deepEqual(context.offsite, []);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test('two tabs of one visitor share the conversation; a message sent in one appears in the other once', async () => {
  const context = await visitorContext(browser);
  const one = await openDemo(context, server);
  await openPanel(one);
  await send(one, 'from tab one');
  const conversation = await conversationOf(one);
  const two = await openDemo(context, server, 'pricing');
  await openPanel(two);
  assert.equal(await conversationOf(two), conversation);
  await waitFor(async () => (await panelMessages(two)).some((m) => m.text === 'from tab one'), 'history in tab two');
  await send(two, 'from tab two');
  // Tab one shows it at once (the outbox is shared), then as sent when its event arrives.
  await waitFor(async () => (await panelMessages(one)).filter((m) => m.mine).map((m) => `${m.text}:${m.state}`).join('|') === 'from tab one:sent|from tab two:sent', 'tab one sees tab two');
  const history = await fullHistory(server, conversation, agent.token);
  assert.deepEqual(visitorTexts(history), ['from tab one', 'from tab two']);
  await context.close();
});

test('JS API: open, close, toggle, on(open/close); language from the browser and setLocale', async () => {
  const context = await visitorContext(browser, { locale: 'zh-CN' });
  const page = await openDemo(context, server);
  const launcher = page.locator('[data-parley] .launch');
  assert.equal(await launcher.getAttribute('aria-label'), '打开在线客服');
  assert.equal(await page.locator('[data-parley] .w').getAttribute('lang'), 'zh-CN');
  const seen = await page.evaluate(async () => {
    const log = [];
    window.Parley.on('open', () => log.push('open'));
    window.Parley.on('close', () => log.push('close'));
    window.Parley.open();
    await new Promise((r) => setTimeout(r, 1500));
    window.Parley.toggle();
    window.Parley.toggle();
    window.Parley.close();
    return log;
  });
  assert.deepEqual(seen, ['open', 'close', 'open', 'close']);
  await openPanel(page);
  assert.equal(await page.locator('[data-parley] textarea.in').getAttribute('placeholder'), '输入消息…');
  assert.equal(await page.evaluate(() => window.Parley.setLocale('en')), 'en');
  await waitFor(async () => (await page.locator('[data-parley] textarea.in').getAttribute('placeholder')) === 'Write a message…', 'English texts');
  assert.equal(await launcher.getAttribute('aria-label'), 'Close chat');
  // Right-to-left text keeps its direction.
  await send(page, 'مرحبا، هل يمكنني تتبع طلبي؟');
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.text.startsWith('مرحبا')), 'RTL message');
  const dir = await page.evaluate(() => {
    const b = [...document.querySelector('[data-parley]').shadowRoot.querySelectorAll('.list .me .bub')].pop();
    return [b.getAttribute('dir'), getComputedStyle(b).direction];
  });
  assert.deepEqual(dir, ['auto', 'rtl']);
  // Attributes for the agents: stored on the server; null removes one there too.
  assert.equal(await page.evaluate(() => window.Parley.setAttributes({ plan: 'pro', seats: 3, trial: true })), true);
  assert.equal(await page.evaluate(() => window.Parley.setAttributes({ trial: null, cart: 42.5 })), true);
  const { results: [row] } = await server.d1('SELECT attributes FROM visitors WHERE id = ?', [(await diag(page)).visitor]);
  assert.deepEqual(JSON.parse(row.attributes), { plan: 'pro', seats: 3, cart: 42.5 });
  await context.close();
});

test('the visitor context reaches the server: page trail with single-page navigation, UTM, device', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server, '', { query: '&utm_source=newsletter&utm_campaign=spring' });
  const visitor = await waitFor(async () => (await page.evaluate(() => {
    const k = Object.keys(localStorage).find((x) => x.endsWith(':s'));
    return k && JSON.parse(localStorage[k]).v;
  })), 'a visitor session');
  await waitFor(async () => (await server.d1('SELECT count(*) AS n FROM page_views WHERE visitor_id = ?', [visitor])).results[0].n >= 1, 'first page view');
  // The demo's product filter navigates with pushState.
  await page.locator('.tabs button', { hasText: 'Oolong' }).click();
  await waitFor(async () => (await server.d1('SELECT count(*) AS n FROM page_views WHERE visitor_id = ?', [visitor])).results[0].n >= 2, 'SPA page view');
  const views = (await server.d1('SELECT url, title FROM page_views WHERE visitor_id = ? ORDER BY id', [visitor])).results;
  assert.match(views[0].url, /\/demo\/\?site=/);
  assert.match(views[1].url, /category=oolong/);
  assert.match(views[1].title, /^Oolong tea/);
  const row = (await server.d1('SELECT context FROM visitors WHERE id = ?', [visitor])).results[0];
  const ctx = JSON.parse(row.context);
  assert.equal(ctx.utm.source, 'newsletter');
  assert.equal(ctx.utm.campaign, 'spring');
  assert.equal(ctx.device, 'desktop');
  assert.match(ctx.browser, /^Chrome \d+/);
  assert.equal(ctx.os, 'Linux');
  assert.ok(ctx.tz);
  assert.equal(ctx.screen.w > 0, true);
  await context.close();
});

test('keyboard only: open, write, pick an emoji, send, close; dark scheme and reduced motion respected', async () => {
  const context = await visitorContext(browser, { colorScheme: 'dark', reducedMotion: 'reduce' });
  const page = await openDemo(context, server);
  const active = () => page.evaluate(() => {
    const el = document.querySelector('[data-parley]').shadowRoot.activeElement;
    return el ? `${el.tagName.toLowerCase()}.${el.className}` : null;
  });
  await page.locator('[data-parley] .launch').focus();
  await page.keyboard.press('Enter');
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' });
  assert.equal(await active(), 'textarea.in');
  await page.keyboard.type('Tea for two');
  // Tab to the emoji button, open the picker, move right, pick.
  await page.keyboard.press('Tab');
  assert.equal(await active(), 'button.cb');
  await page.keyboard.press('Enter');
  assert.equal(await page.locator('[data-parley] .cb').getAttribute('aria-expanded'), 'true');
  assert.equal(await active(), 'button.em');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Enter');
  assert.equal(await active(), 'textarea.in');
  assert.equal(await page.locator('[data-parley] textarea.in').inputValue(), 'Tea for two😃');
  await page.keyboard.press('Enter');
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.text === 'Tea for two😃' && m.state === 'sent'), 'sent with the keyboard');
  // Shift+Enter makes a new line instead of sending.
  await page.keyboard.type('line one');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('line two');
  assert.equal(await page.locator('[data-parley] textarea.in').inputValue(), 'line one\nline two');
  // The panel is a labelled dialog; new agent messages are announced politely.
  assert.equal(await page.locator('[data-parley] .panel').getAttribute('role'), 'dialog');
  assert.ok(await page.locator('[data-parley] [aria-live=polite]').count() >= 1);
  // Dark colours and no animation.
  const look = await page.locator('[data-parley] .panel').evaluate((p) => [getComputedStyle(p).backgroundColor, getComputedStyle(p).animationName]);
  assert.deepEqual(look, ['rgb(22, 24, 29)', 'none']);
  await page.keyboard.press('Escape');
  await page.locator('[data-parley] .panel').waitFor({ state: 'hidden' });
  assert.equal(await active(), 'button.launch');
  await context.close();
});

test('the loader alone watches for replies: an agent message loads the full widget and shows the badge', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server, '', { setup: recordApiEvents });
  await openPanel(page);
  await send(page, 'Is the Keemun in stock?');
  const conversation = await conversationOf(page);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'sent');
  await page.keyboard.press('Escape');
  await page.mouse.move(10, 10); // away from the launcher: hovering it prefetches the chat
  // A new page of the site with the panel closed: only the loader runs.
  const chatRequests = [];
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/widget/chat.js') chatRequests.push(r.url()); });
  await page.goto(`${server.url}/demo/pricing?site=${server.siteKey}`);
  await page.locator('[data-parley] .launch').waitFor({ state: 'visible' });
  await sleep(1500);
  assert.deepEqual(chatRequests, [], 'the full widget is not loaded without a reason');
  const sock = await agentJoin(server, agent, conversation);
  await sock.sendMessage('Yes, 40 tins left!');
  await waitFor(() => chatRequests.length === 1, 'the full widget loaded for the reply', 30_000);
  const badge = page.locator('[data-parley] .badge');
  await badge.waitFor({ state: 'visible' });
  assert.equal(await badge.textContent(), '1');
  await waitFor(() => page.apiEvents.some(([n, d]) => n === 'unread' && d === 1), 'unread event on the new page');
  // The reply came with the history the woken chat loaded, not over its socket: it is still
  // new to the visitor, so the site hears of it and screen readers announce it, once.
  await waitFor(() => page.apiEvents.some(([n, d]) => n === 'message' && d.author.role === 'agent' && d.text === 'Yes, 40 tins left!'), "on('message') for the reply");
  assert.equal(page.apiEvents.filter(([n, d]) => n === 'message' && d.text === 'Yes, 40 tins left!').length, 1);
  await waitFor(async () => /Yes, 40 tins left!/.test(await page.locator('[data-parley] [aria-live="polite"].sr').textContent()), 'the reply announced');
  // A page loaded later knows the count from the start, before any chat is loaded.
  const later = await openDemo(context, server, 'pricing', { setup: recordApiEvents });
  await waitFor(() => later.apiEvents.some(([n, d]) => n === 'unread' && d === 1), "'unread' from the stored count");
  assert.equal((await diag(later)).loaded, false);
  await later.close();
  await openPanel(page);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'Yes, 40 tins left!'), 'reply shown');
  await badge.waitFor({ state: 'hidden' });
  sock.close();
  await context.close();
});

test('the edge says where the visitor is; referrer and language reach the agents with it', async () => {
  // As Cloudflare's edge would tell the Worker (request.cf) for a visitor in Berlin.
  const edge = await startServer({ cf: { country: 'DE', region: 'Berlin', city: 'Berlin' } });
  try {
    const context = await visitorContext(browser, { locale: 'de-DE' });
    const page = await context.newPage();
    // Arriving from a search result.
    await page.goto(`${edge.url}/demo/?site=${encodeURIComponent(edge.siteKey)}`, { referer: 'https://search.example/?q=oolong+tea' });
    await page.locator('[data-parley] .launch').waitFor({ state: 'visible' });
    const visitor = await waitFor(() => page.evaluate(() => {
      const k = Object.keys(localStorage).find((x) => /^parley:[^:]+:s$/.test(x));
      return k && JSON.parse(localStorage[k]).v;
    }), 'a visitor session');
    const owner = await agentLogin(edge);
    // What an agent's console shows about the visitor.
    const seen = await waitFor(async () => {
      const r = await http(edge.url, `/api/v1/visitors/${visitor}`, { token: owner.token });
      return r.status === 200 && r.body.visitor.country && r.body;
    }, 'the visitor record with its place');
    const { country, region, city, context: reported } = seen.visitor;
    assert.deepEqual({ country, region, city }, { country: 'DE', region: 'Berlin', city: 'Berlin' });
    assert.equal(reported.referrer, 'https://search.example/?q=oolong+tea');
    assert.equal(reported.lang, 'de-DE');
    assert.match(seen.pages[0].url, /\/demo\/\?site=/);
    assert.deepEqual(context.offsite, []);
    await context.close();
  } finally {
    await edge.stop();
  }
});

test('embedded by a site on another origin: CORS, the origin allow-list and the WebSocket work there; no cookies', async () => {
  const context = await visitorContext(browser);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  const fromParley = [];
  page.on('request', (r) => { if (r.url().startsWith(server.url)) fromParley.push(new URL(r.url()).pathname); });
  await page.goto(`${shop.url}/?parley=${encodeURIComponent(server.url)}&site=${encodeURIComponent(server.siteKey)}`);
  assert.notEqual(new URL(page.url()).origin, new URL(server.url).origin, 'the shop is another origin');
  await page.locator('[data-parley] .launch').waitFor({ state: 'visible' });
  await openPanel(page);
  await send(page, 'Hello from Leaf & Kettle');
  const conversation = await conversationOf(page);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'sent from the other origin');
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => visitorTexts(sock.events).includes('Hello from Leaf & Kettle'), 'the message at the agent');
  await sock.sendMessage('Hi! Happy to help.');
  await waitFor(async () => (await panelMessages(page)).some((m) => !m.mine && m.text === 'Hi! Happy to help.'), 'the reply on the shop page');
  // The live connection is a WebSocket opened from the shop's origin (its Origin header is checked).
  const d = await diag(page);
  assert.equal(d.transport, 'ws');
  assert.ok(d.stats.ws >= 1);
  assert.ok(fromParley.includes('/widget/chat.js') && fromParley.includes('/api/v1/widget/config'), fromParley.join(' '));
  // The widget keeps its state in the shop's storage: no cookie on either origin.
  assert.deepEqual(await context.cookies([shop.url, server.url]), []);
  assert.deepEqual(context.offsite, []);
  assert.deepEqual(page.errors, []);

  // An origin no site lists gets nothing but the refusal of the widget's first requests: not
  // the configuration, not any other answer.
  const stranger = await thirdPartyShop();
  try {
    const other = await context.newPage();
    await other.goto(`${stranger.url}/?parley=${encodeURIComponent(server.url)}&site=${encodeURIComponent(server.siteKey)}`);
    const read = (u) => other.evaluate(async (url) => fetch(url).then(async (r) => `${r.status} ${(await r.json()).code}`, () => 'unreadable'), u);
    assert.equal(await read(`${server.url}/api/v1/widget/config?site=${encodeURIComponent(server.siteKey)}`), '403 origin_not_allowed');
    assert.equal(await read(`${server.url}/api/v1/me`), 'unreadable');
    const socket = await other.evaluate((u) => new Promise((resolve) => {
      const ws = new WebSocket(u);
      ws.onopen = () => resolve('open');
      ws.onclose = () => resolve('closed before opening');
    }), `${server.url.replace(/^http/, 'ws')}/api/v1/conversations/${conversation}/ws?site=${encodeURIComponent(server.siteKey)}`);
    assert.equal(socket, 'closed before opening');
  } finally {
    await stranger.close();
  }
  sock.close();
  await context.close();
});
