// Every piece of user text is rendered as text: XSS payloads in messages (both ways), in an
// agent's name, in the visitor's identity, in form answers and in the site's own configured
// texts stay inert; only http(s) URLs become links, with rel="noopener noreferrer nofollow".
// The same in the agent console: a visitor whose name, e-mail, page titles, page URLs and
// referrer are payloads shows in the inbox, the thread and the visitor panel as plain text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { http, msgId, newConversation, sleep } from '../support/client.mjs';
import {
  agentJoin, agentOnline, conversationOf, openDemo, openPanel, panelMessages, send, signIn, visitorContext, waitFor,
  waitForText, widgetSuite,
} from './helpers.mjs';

const PAYLOADS = [
  '<img src=x onerror="window.__xss=1">',
  '<script>window.__xss=2</script>',
  '"><svg onload=window.__xss=3>',
  'javascript:window.__xss=4',
  '[click me](javascript:window.__xss=5)',
  '<a href="javascript:window.__xss=6">link</a>',
  'https://example.com/"><img src=x onerror=window.__xss=7>',
  '<iframe srcdoc="<script>parent.__xss=8</script>"></iframe>',
  '{{constructor.constructor("window.__xss=9")()}}',
];
const NAME = '<img src=x onerror="window.__xss=10">Agent';

let server;
let browser;
let agent;
const suite = widgetSuite({
  // The site's own texts and an agent's name are user input too. (Set before any request, so
  // no cached copy of the site exists yet.)
  prepare: async (s) => {
    await s.d1('UPDATE sites SET name = ?, settings = ? WHERE site_key = ?', [
      '<b onmouseover="window.__xss=11">Shop</b>',
      JSON.stringify({ welcome: { en: '<img src=x onerror="window.__xss=12">Welcome' } }),
      s.siteKey,
    ]);
    await s.d1('UPDATE agents SET name = ? WHERE email = ?', [NAME, s.email]);
  },
}, (parts) => ({ server, browser, agent } = parts));

/** Anything executable or any markup that should not exist in the widget or the page. */
function inspect(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-parley]').shadowRoot;
    const all = [...root.querySelectorAll('*'), ...document.querySelectorAll('body *')];
    return {
      xss: window.__xss ?? null,
      dangerous: all.filter((el) => /^(IMG|SCRIPT|IFRAME|OBJECT|EMBED|B)$/.test(el.tagName) && root.contains(el)).map((el) => el.outerHTML),
      handlers: all.flatMap((el) => [...el.attributes].filter((a) => /^on/i.test(a.name)).map((a) => `${el.tagName} ${a.name}`)),
      links: [...root.querySelectorAll('a')].map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target, text: a.textContent })),
      title: root.querySelector('.tt')?.textContent,
    };
  });
}

test('payloads in messages both ways, names and configured texts stay inert text', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  await page.evaluate((n) => window.Parley.identify({ id: 'x', name: n, email: 'x@example.com' }), NAME);
  await openPanel(page);
  for (const p of PAYLOADS) await send(page, p);
  const conversation = await conversationOf(page);
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => sock.events.filter((e) => e.kind === 'message').length === PAYLOADS.length, 'all payloads at the agent');
  for (const p of PAYLOADS) await sock.sendMessage(p);
  await waitFor(async () => (await panelMessages(page)).length === 1 + 2 * PAYLOADS.length, 'all payloads in the panel', 30_000);
  await sleep(500);

  const shown = await panelMessages(page);
  assert.equal(shown[0].text, '<img src=x onerror="window.__xss=12">Welcome');
  assert.equal(shown[0].who, '<b onmouseover="window.__xss=11">Shop</b>');
  assert.deepEqual(shown.filter((m) => m.mine).map((m) => m.text), PAYLOADS);
  assert.deepEqual(shown.filter((m) => !m.mine).slice(1).map((m) => m.text), PAYLOADS);
  assert.ok(shown.some((m) => !m.mine && m.who === NAME), 'the agent name shown as text');

  const found = await inspect(page);
  assert.equal(found.xss, null);
  assert.deepEqual(found.dangerous, []);
  assert.deepEqual(found.handlers, []);
  assert.deepEqual(dialogs, []);
  assert.match(found.title, /<img src=x/); // the assigned agent's name, as text
  // Only the http(s) URL became a link, cut where the markup starts, with the safe rel.
  assert.ok(found.links.length >= 2);
  for (const link of found.links) {
    assert.match(link.href, /^https:\/\/example\.com\//);
    assert.equal(link.rel, 'noopener noreferrer nofollow');
    assert.equal(link.target, '_blank');
    assert.doesNotMatch(link.href, /[<>"]/);
  }
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test('payloads in the offline form stay inert', async () => {
  // No agent online: the offline form.
  agent.close();
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  const form = page.locator('[data-parley] form.form');
  await form.waitFor({ state: 'visible' });
  await form.locator('[name=name]').fill(PAYLOADS[0]);
  await form.locator('[name=email]').fill('mallory@example.com');
  await form.locator('[name=message]').fill(PAYLOADS[1]);
  await form.locator('button[type=submit]').click();
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.text === PAYLOADS[1]), 'the message shown');
  await sleep(1000);
  const found = await inspect(page);
  assert.equal(found.xss, null);
  assert.deepEqual(found.dangerous, []);
  assert.deepEqual(found.handlers, []);
  await context.close();
  agent = suite.agent = await agentOnline(server);
});

/** Anything executable the console page holds: markup from data, handlers, script links. */
function inspectConsole(page) {
  return page.evaluate(() => {
    const all = [...document.body.querySelectorAll('*')];
    return {
      xss: window.__xss ?? null,
      // Where visitor data shows (inbox, thread, visitor panel), the only images are file
      // thumbnails from blob: URLs and the only SVGs the console's own hidden icons.
      dangerous: [...document.querySelectorAll('.conv-list *, .thread *, .vp *')]
        .filter((el) => (/^(IMG|SCRIPT|IFRAME|OBJECT|EMBED|B|FORM)$/.test(el.tagName) && !(el.tagName === 'IMG' && el.src.startsWith('blob:')))
          || (el.tagName.toLowerCase() === 'svg' && !el.closest('[aria-hidden="true"]')))
        .map((el) => el.outerHTML.slice(0, 200)),
      handlers: all.flatMap((el) => [...el.attributes].filter((a) => /^on/i.test(a.name)).map((a) => `${el.tagName} ${a.name}`)),
      links: [...document.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')).filter((href) => !/^(https?:|mailto:|blob:|#|\/)/i.test(href)),
    };
  });
}

test('the console shows a visitor named with markup, with javascript: as e-mail, page URL and referrer, as inert text in the inbox, thread and visitor panel', async () => {
  const visitorName = '<img src=x onerror="window.__xss=20">Mallory';
  const email = 'javascript:window.__xss=21//@example.com';
  const pageTitle = '<svg onload="window.__xss=22">Cart</svg>';
  const trailTitle = '<iframe src="javascript:window.__xss=23"></iframe>Checkout';
  const v = await newConversation(server);
  const said = await http(server.url, '/api/v1/visitor/identify', { method: 'POST', token: v.token, body: { id: 'mallory-1', name: visitorName, email } });
  assert.equal(said.status, 200, JSON.stringify(said.body));
  const ctx = await http(server.url, '/api/v1/visitor/context', {
    method: 'POST', token: v.token,
    body: { page: { url: 'https://shop.example/cart?q=<img src=x onerror=window.__xss=24>', title: pageTitle }, referrer: 'javascript:window.__xss=25' },
  });
  assert.equal(ctx.status, 204, JSON.stringify(ctx.body));
  // The server drops script URLs; put them in storage anyway, to see the console's own guard.
  const { results: [row] } = await server.d1('SELECT site_id FROM visitors WHERE id = ?1', [v.visitorId]);
  await server.d1("UPDATE visitors SET context = json_set(context, '$.referrer', ?1) WHERE id = ?2", ['javascript:window.__xss=26', v.visitorId]);
  await server.d1('INSERT INTO page_views (visitor_id, site_id, url, title, referrer, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)',
    [v.visitorId, row.site_id, 'javascript:window.__xss=27', trailTitle, 'javascript:window.__xss=28', Date.now()]);
  const text = PAYLOADS[0];
  const sent = await http(server.url, `/api/v1/conversations/${v.conversation}/messages`, { method: 'POST', token: v.token, body: { client_msg_id: msgId('x'), text } });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-US' });
  const page = await context.newPage();
  const dialogs = [];
  const errors = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('pageerror', (e) => errors.push(e.message));
  await signIn(page, server);
  await page.click('#list-tab-team');
  const item = `.conv-item[data-id="${v.conversation}"]`;
  await page.waitForSelector(item, { timeout: 15_000 });
  await page.click(item);
  const conv = `.conv[data-conversation="${v.conversation}"]`;
  await waitForText(page, `${conv} .msg--in .text`, text);
  await waitForText(page, '.vp-name', 'Mallory');
  await waitForText(page, '.trail-title', 'Checkout');
  await waitForText(page, `${item} .ci-name`, 'Mallory');
  await sleep(500);

  // Shown literally, character for character.
  assert.equal(await page.textContent(`${item} .ci-name`), visitorName);
  assert.deepEqual(await page.$$eval(`${conv} .msg--in .msg-author`, (els) => [...new Set(els.map((e) => e.textContent))]), [visitorName]);
  assert.deepEqual(await page.$$eval(`${conv} .msg--in .text`, (els) => els.map((e) => e.textContent)), [text]);
  assert.match(await page.textContent('.vp-name'), /^<img src=x onerror="window.__xss=20">Mallory/);
  assert.equal(await page.textContent('.vp-email'), email);
  assert.equal(await page.getAttribute('.vp-email', 'href'), 'mailto:javascript%3Awindow.__xss%3D21%2F%2F@example.com');
  const titles = await page.$$eval('.vp-page-title, .trail-title', (els) => els.map((e) => e.textContent));
  assert.ok(titles.includes(pageTitle), JSON.stringify(titles));
  assert.ok(titles.includes(trailTitle), JSON.stringify(titles));
  // The javascript: page URL and referrer are never links (checked below), nor shown as a source.
  assert.ok(!(await page.textContent('.vp')).includes('__xss=26'), 'the script referrer is shown');
  const found = await inspectConsole(page);
  assert.equal(found.xss, null);
  assert.deepEqual(found.dangerous, []);
  assert.deepEqual(found.handlers, []);
  assert.deepEqual(found.links, []);
  assert.deepEqual(dialogs, []);
  assert.deepEqual(errors, []);
  await context.close();
});
