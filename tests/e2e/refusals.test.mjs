// What the visitor sees when the server refuses, for good, what the widget asks: the server's
// own message, once (no endless retries), with nothing the visitor wrote lost; also on a page
// whose origin no site allows, to which that refusal is the one answer it may read. Pre-chat
// answers the server refuses come back in their form, to be corrected. Also: where focus lands
// on opening the panel over a closed conversation, and a stored language the widget does not
// know.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { http, sleep } from '../support/client.mjs';
import { startServer } from '../support/server.mjs';
import {
  agentJoin, agentOnline, conversationOf, diag, launch, openDemo, openPanel, panelMessages, send, visitorContext,
  visitorTexts, waitFor,
} from './helpers.mjs';

const W = '[data-parley]';
const SETTINGS = {
  prechat: {
    enabled: true,
    fields: [
      { name: 'name', label: { en: 'Your name' }, type: 'text', required: true },
      { name: 'details', label: { en: 'What is it about?' }, type: 'textarea', required: false },
    ],
  },
};

/** A page on its own origin (another 127.0.0.1 port) embedding the widget with ?site=KEY. */
async function shopPage() {
  const srv = createServer((req, res) => {
    const q = new URL(req.url, 'http://x').searchParams;
    const attr = (v) => String(v).replace(/[^\w:/.\-]/g, '');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>
<script src="${attr(q.get('parley'))}/widget.js" data-site="${attr(q.get('site'))}" async></script></head><body><h1>Shop</h1></body></html>`);
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((resolve) => srv.close(resolve)) };
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
const randomId = (prefix) => `${prefix}_${Array.from(randomBytes(26), (b) => B32[b & 31]).join('')}`;

let server;
let browser;
let agent;
let shop;
/** A page on an origin that no site of the deployment allows. */
let stranger;

before(async () => {
  shop = await shopPage();
  stranger = await shopPage();
  server = await startServer();
  // Before any request, so the Worker has no cached copy of either site: the demo site asks
  // for pre-chat answers; another site of the team allows the shop's origin (so the API answers
  // the shop's pages, CORS included), which the demo site does not.
  await server.d1('UPDATE sites SET settings = ? WHERE site_key = ?', [JSON.stringify(SETTINGS), server.siteKey]);
  const [{ team_id: team }] = (await server.d1('SELECT team_id FROM sites WHERE site_key = ?', [server.siteKey])).results;
  await server.d1(
    `INSERT INTO sites (id, team_id, site_key, name, allowed_origins, identity_secret, created_at)
     VALUES (?1, ?2, ?3, 'Other shop', ?4, NULL, ?5)`,
    [randomId('s'), team, `pk_${randomBytes(18).toString('base64url')}`, JSON.stringify([shop.url]), Date.now()],
  );
  browser = await launch();
  agent = await agentOnline(server);
});

after(async () => {
  agent?.close();
  await browser?.close();
  await server?.stop();
  await shop?.close();
  await stranger?.close();
});

const form = (page) => page.locator(`${W} form.form`);
const store = (key) => `parley:${server.siteKey}:${key}`;

/** Counts the page's POSTs to Parley paths that end with one of `paths`. */
function countPosts(page, paths) {
  const n = Object.fromEntries(paths.map((p) => [p, 0]));
  page.on('request', (r) => {
    if (r.method() !== 'POST') return;
    const path = new URL(r.url()).pathname;
    for (const p of paths) if (path === p) n[p] += 1;
  });
  return n;
}

test('pre-chat answers: a textarea takes at most 1000 characters; answers the server refused come back in the form, and corrected they start the chat', async () => {
  // The field stops at the server's limit.
  {
    const context = await visitorContext(browser);
    const page = await openDemo(context, server);
    await openPanel(page);
    await form(page).waitFor({ state: 'visible' });
    const details = form(page).locator('[name=details]');
    assert.equal(await details.getAttribute('maxlength'), '1000');
    await details.focus();
    await page.keyboard.insertText('x'.repeat(1200));
    assert.equal((await details.inputValue()).length, 1000);
    await context.close();
  }

  // A visitor whose stored answers the server refuses (stored by an earlier widget, which let
  // 4000 characters through), with a message waiting behind them.
  const context = await visitorContext(browser);
  const long = 'Tea '.repeat(400); // 1600 characters
  const waiting = { i: `w-${Date.now().toString(36)}-0-refusal`, t: 'Is the Keemun back in stock?', a: Date.now(), n: Date.now() * 1000 };
  await context.addInitScript(([pfKey, pf, oKey, o]) => {
    // Once: the page's own writes stand after a reload.
    if (sessionStorage.getItem('seeded')) return;
    sessionStorage.setItem('seeded', '1');
    localStorage.setItem(pfKey, JSON.stringify(pf));
    localStorage.setItem(oKey, JSON.stringify(o));
  }, [store('pf'), { form: 'prechat', fields: { name: 'Lin', details: long } }, store(`o:${waiting.i}`), waiting]);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  const posts = countPosts(page, ['/api/v1/conversations']);
  await page.goto(`${server.url}/demo/?site=${encodeURIComponent(server.siteKey)}`);
  await page.locator(`${W} .launch`).waitFor({ state: 'visible' });

  // Refused once, and not asked again: the stored answers are gone.
  await waitFor(() => posts['/api/v1/conversations'] >= 1, 'the creation asked for');
  await waitFor(() => page.evaluate((k) => localStorage.getItem(k) === null, store('pf')), 'the refused answers dropped from storage');
  await openPanel(page);
  await form(page).waitFor({ state: 'visible' });
  assert.equal(await form(page).locator('[name=name]').inputValue(), 'Lin');
  assert.equal(await form(page).locator('[name=details]').inputValue(), long);
  // The server's message in the form's error line; the field at fault marked.
  assert.equal(await form(page).locator('> .err').textContent(), 'The request is invalid.');
  assert.equal(await form(page).locator('[name=details]').getAttribute('aria-invalid'), 'true');
  // The message written meanwhile is kept for after the form.
  assert.ok(await page.evaluate((k) => !!localStorage.getItem(k), store(`o:${waiting.i}`)));
  await sleep(7000);
  assert.equal(posts['/api/v1/conversations'], 1, 'no retry of refused answers');
  // A reload brings them back as they were (kept in storage), and the waiting message does not
  // start a conversation without them.
  await page.reload();
  await page.locator(`${W} .panel`).waitFor({ state: 'visible' }); // open as it was
  await form(page).waitFor({ state: 'visible' });
  assert.equal(await form(page).locator('[name=details]').inputValue(), long);
  assert.equal(await form(page).locator('> .err').textContent(), 'The request is invalid.');
  await sleep(4000);
  assert.equal(posts['/api/v1/conversations'], 1, 'no conversation without the answers');

  // Corrected, the answers start the conversation and the waiting message follows them.
  await form(page).locator('[name=details]').fill('Keemun, 250 g');
  await form(page).locator('button[type=submit]').click();
  await page.locator(`${W} textarea.in`).waitFor({ state: 'visible' });
  const conversation = await conversationOf(page);
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => visitorTexts(sock.events).includes('Is the Keemun back in stock?'), 'the waiting message at the agent');
  assert.deepEqual(sock.events.find((e) => e.kind === 'created').body.fields, { name: 'Lin', details: 'Keemun, 250 g' });
  await send(page, 'Thanks!');
  await waitFor(() => visitorTexts(sock.events).includes('Thanks!'), 'the visitor chats on');
  assert.deepEqual(page.errors, []);
  assert.deepEqual(context.offsite, []);
  sock.close();
  await context.close();
});

test('a site key the server does not know: its message shows, the message is kept as not sent, and nothing is retried', async () => {
  const context = await visitorContext(browser);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  const paths = ['/api/v1/visitor/session', '/api/v1/conversations'];
  const posts = countPosts(page, paths);
  await page.goto(`${server.url}/demo/?site=pk_${randomBytes(18).toString('base64url')}`);
  await page.locator(`${W} .launch`).waitFor({ state: 'visible' });
  await openPanel(page);
  await send(page, 'Hello, anyone there?');
  const notice = page.locator(`${W} .note`);
  await notice.waitFor({ state: 'visible' });
  assert.equal(await notice.textContent(), 'This chat is not configured. Please check the site key.');
  // The notice and the message's mark are drawn one after the other.
  const [mine] = await waitFor(async () => {
    const own = (await panelMessages(page)).filter((m) => m.mine);
    return own[0]?.state === 'failed' && own;
  }, 'the message marked as not sent');
  assert.deepEqual([mine.text, mine.state], ['Hello, anyone there?', 'failed']);
  assert.equal(await page.locator(`${W} .list li.me .why`).textContent(), 'This chat is not configured. Please check the site key.');
  // Nothing more goes out: each attempt would ask for a session first. (The page's own report
  // of where the visitor is asks for one too, once, and may still be on its way: let it land.)
  await sleep(1500);
  const sessions = posts['/api/v1/visitor/session'];
  await sleep(10_000);
  assert.equal(posts['/api/v1/visitor/session'], sessions, 'no retry after a permanent refusal');
  assert.equal(posts['/api/v1/conversations'], 0);
  assert.equal((await diag(page)).outbox, 1, 'the message is kept');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('embedded on an origin the site does not allow: the server\'s message shows, in the visitor\'s language, once per page; the message is kept', async () => {
  const context = await visitorContext(browser, { locale: 'zh-CN' });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  const posts = countPosts(page, ['/api/v1/visitor/session', '/api/v1/conversations']);
  await page.goto(`${shop.url}/?parley=${encodeURIComponent(server.url)}&site=${encodeURIComponent(server.siteKey)}`);
  await page.locator(`${W} .launch`).waitFor({ state: 'visible' });
  await openPanel(page);
  await send(page, '你好，有人吗？');
  const notice = page.locator(`${W} .note`);
  await notice.waitFor({ state: 'visible' });
  assert.equal(await notice.textContent(), '此网站未启用聊天。');
  await sleep(1500); // as above: the page's one report of where the visitor is may be on its way
  const sessions = posts['/api/v1/visitor/session'];
  await sleep(8000);
  assert.equal(posts['/api/v1/visitor/session'], sessions, 'no retry after a permanent refusal');
  assert.equal(posts['/api/v1/conversations'], 0);
  assert.deepEqual((await panelMessages(page)).filter((m) => m.mine).map((m) => [m.text, m.state]), [['你好，有人吗？', 'failed']]);

  // A new page asks once more (the site's owner may have allowed the origin since), and still
  // shows the message the visitor wrote (in the panel, open as it was).
  await page.reload();
  await page.locator(`${W} .panel`).waitFor({ state: 'visible' });
  await notice.waitFor({ state: 'visible' });
  await page.locator(`${W} .list li.me .why`).waitFor({ state: 'visible' }); // drawn a frame later
  assert.ok(posts['/api/v1/visitor/session'] > sessions, 'the new page asked again');
  assert.deepEqual((await panelMessages(page)).filter((m) => m.mine).map((m) => [m.text, m.state]), [['你好，有人吗？', 'failed']]);
  assert.deepEqual(page.errors, []);
  assert.deepEqual(context.offsite, []);
  await context.close();
});

test('embedded on an origin no site allows: the server\'s refusal reaches the widget, its message shows, nothing is retried, the message is kept, and the console names the origin to allow, once', async () => {
  const context = await visitorContext(browser);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  const warnings = [];
  page.on('console', (m) => m.type() === 'warning' && m.text().startsWith('parley:') && warnings.push(m.text()));
  const posts = countPosts(page, ['/api/v1/visitor/session', '/api/v1/conversations']);
  await page.goto(`${stranger.url}/?parley=${encodeURIComponent(server.url)}&site=${encodeURIComponent(server.siteKey)}`);
  await page.locator(`${W} .launch`).waitFor({ state: 'visible' });
  await openPanel(page);
  await send(page, 'Hello, is anyone there?');
  const notice = page.locator(`${W} .note`);
  await notice.waitFor({ state: 'visible' });
  assert.equal(await notice.textContent(), 'Chat is not enabled for this website.');
  // The notice shows at once; the list is drawn again at the next animation frame.
  await page.locator(`${W} .list li.me .why`).waitFor({ state: 'visible' });
  assert.deepEqual((await panelMessages(page)).filter((m) => m.mine).map((m) => [m.text, m.state]), [['Hello, is anyone there?', 'failed']]);
  assert.equal(await page.locator(`${W} .list li.me .why`).textContent(), 'Chat is not enabled for this website.');
  await sleep(1500); // the page's one report of where the visitor is may still be on its way
  const sessions = posts['/api/v1/visitor/session'];
  assert.ok(sessions >= 1);
  await sleep(8000);
  assert.equal(posts['/api/v1/visitor/session'], sessions, 'no retry after the refusal');
  assert.equal(posts['/api/v1/conversations'], 0);
  assert.equal((await diag(page)).outbox, 1, 'the message is kept');
  // For the site's owner: one line naming the code and this page's origin, and nothing written.
  assert.deepEqual(warnings, [`parley: origin_not_allowed: allow ${stranger.url}`]);
  assert.deepEqual(page.errors, []);
  assert.deepEqual(context.offsite, []);
  await context.close();
});

test('opening the panel over a closed conversation that asks for a rating focuses the message box', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  // The pre-chat form: its first field has the focus.
  await form(page).waitFor({ state: 'visible' });
  const active = () => page.evaluate(() => {
    const el = document.querySelector('[data-parley]').shadowRoot.activeElement;
    return el ? `${el.tagName.toLowerCase()}${el.name ? `[name=${el.name}]` : ''}.${el.className}` : null;
  });
  assert.equal(await active(), 'input[name=name].');
  await form(page).locator('[name=name]').fill('Mei');
  await form(page).locator('button[type=submit]').click();
  await send(page, 'That is all, thanks.');
  const conversation = await conversationOf(page);
  await waitFor(async () => (await diag(page)).outbox === 0, 'the message stored');
  const closed = await http(server.url, `/api/v1/conversations/${conversation}/close`, { method: 'POST', token: agent.token });
  assert.equal(closed.status, 200, JSON.stringify(closed.body));
  await page.locator(`${W} .rf`).waitFor({ state: 'visible' });
  await page.keyboard.press('Escape');
  await page.locator(`${W} .panel`).waitFor({ state: 'hidden' });
  await openPanel(page);
  assert.equal(await active(), 'textarea.in');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a stored language the widget does not know (storage is the host page\'s) falls back to the browser\'s', async () => {
  const context = await visitorContext(browser, { locale: 'zh-CN' });
  await context.addInitScript((k) => localStorage.setItem(k, JSON.stringify('fr')), store('l'));
  const page = await openDemo(context, server);
  assert.equal(await page.locator(`${W} .launch`).getAttribute('aria-label'), '打开在线客服');
  await openPanel(page);
  await form(page).waitFor({ state: 'visible' });
  assert.equal(await form(page).locator('button[type=submit]').textContent(), '开始对话');
  assert.deepEqual(page.errors, []);
  await context.close();
});
