// Every piece of user text is rendered as text: XSS payloads in messages (both ways), in an
// agent's name, in the visitor's identity, in form answers and in the site's own configured
// texts stay inert; only http(s) URLs become links, with rel="noopener noreferrer nofollow".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../support/client.mjs';
import {
  agentJoin, agentOnline, conversationOf, openDemo, openPanel, panelMessages, send, visitorContext, waitFor,
  widgetSuite,
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
