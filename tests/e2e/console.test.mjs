// The agent console in a real browser (Debian's Chromium through playwright-core) against the
// built Worker, with visitors played by the protocol client or the demo page's widget. Needs `node console/build.mjs`
// first (public/console/).
//
// One story per agent, step by step: sign in through the form, a visitor's new chat shows up
// live (title count, chime), the agent replies with Enter, a private note never reaches the
// visitor, typing and read receipts go both ways, a read on one device clears the unread count
// on the agent's other device, quick replies, a reload restores the open
// conversation and its history, a reply typed while the server is down is delivered exactly
// once after it comes back, close and reopen, and the whole story from the demo page: a visitor
// chats in the widget, the agent is alerted, replies and transfers to a second agent, who sees
// the whole history and reveals masked personal data (audited). The sidebar marks a claimed
// identity unverified and a name the visitor typed into a form self-stated (that one in the inbox
// and the conversation's header too).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../support/server.mjs';
import { agentLogin, connect, fullHistory, http, newConversation, siteId, sleep, Socket, visitorSession } from '../support/client.mjs';
import {
  CHROMIUM, conversationOf, launch, openDemo, openPanel, panelMessages, send, signIn as signInForm, waitFor, waitForText,
} from './helpers.mjs';
import { base32 } from '../../scripts/runtime.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STEP = { timeout: 90_000 };
// A small replay window, so a console that missed more than this must reset and reload history.
// Generous message limits for the long conversation; the limits have their own tests.
const VARS = { REPLAY_WINDOW: '10', RATE_VISITOR_MESSAGES: '500/50', RATE_IP_MESSAGES: '1000/100' };

let server;
let browser;
let context;
let page;
/** The conversation the first agent works on, with its visitor's live socket. */
let conv;
let visitor;
const pageErrors = [];
const offsite = [];

/** A browser context (its own storage: a device) that records any request leaving 127.0.0.1. */
async function newContext(options = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-US', ...options });
  await ctx.route(/^(?!(https?|wss?):\/\/127\.0\.0\.1[:/])[a-z]+:\/\//, (route) => {
    offsite.push(route.request().url());
    return route.abort();
  });
  return ctx;
}

before(async () => {
  assert.ok(existsSync(join(ROOT, 'public', 'console', 'app.js')), 'run `node console/build.mjs` first');
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium`);
  server = await startServer({ vars: VARS });
  browser = await launch();
  context = await newContext();
  page = await watch(await context.newPage());
});

after(async () => {
  visitor?.close();
  await browser?.close();
  await server?.stop();
  assert.deepEqual(pageErrors, [], 'uncaught errors in the console page');
  assert.deepEqual(offsite, [], 'requests that left the server');
});

function watch(p) {
  p.on('pageerror', (e) => pageErrors.push(e.message));
  return p;
}

/** Signs in through the form and waits for the inbox. */
async function signIn(p, email, password) {
  await signInForm(p, server, email, password);
  await p.waitForSelector('.conv-list[aria-busy="false"]', { state: 'attached' });
}

/** Opens a conversation from the Team list (all open conversations). */
async function openFromTeam(p, id) {
  await p.click('#list-tab-team');
  await p.click(`.conv-item[data-id="${id}"]`);
  await p.waitForSelector(`.conv[data-conversation="${id}"] .thread-begin, .conv[data-conversation="${id}"] .load-earlier`);
}

/** The delivered (not pending) messages of the open conversation, as text. */
function threadTexts(p) {
  return p.$$eval('.conv .msg:not(.msg--pending) .text', (els) => els.map((e) => e.textContent));
}


/** A visitor's next event frame matching pred. */
function visitorEvent(socket, pred, timeoutMs = 15_000) {
  return socket.next((f) => f.type === 'event' && pred(f), timeoutMs);
}


/** A second agent of the demo team, straight into D1: { id, email, password, name }. */
async function addAgent(name) {
  const me = await agentLogin(server);
  const { results } = await server.d1('SELECT team_id FROM agents WHERE id = ?', [me.agentId]);
  const id = `a_${base32(randomBytes(16))}`;
  const email = `${name.toLowerCase()}@parley.local`;
  const password = randomBytes(9).toString('base64url');
  const salt = randomBytes(16);
  const hash = pbkdf2Sync(password, salt, 100000, 32, 'sha256');
  await server.d1(
    `INSERT INTO agents (id, team_id, email, name, role, password_hash, password_salt, password_iterations, disabled, created_at, capacity)
     VALUES (?, ?, ?, ?, 'agent', ?, ?, 100000, 0, ?, 5)`,
    [id, results[0].team_id, email, name, hash.toString('base64'), salt.toString('base64'), Date.now()],
  );
  return { id, email, password, name };
}

test('a wrong password shows the server message; signing in shows the live inbox', STEP, async () => {
  await page.goto(`${server.url}/console/`);
  await page.fill('#login-email', server.email);
  await page.fill('#login-password', 'not the password');
  await page.click('.login-form button[type=submit]');
  await page.waitForSelector('.login-msg--error');
  const msg = await page.textContent('.login-msg--error');
  assert.match(msg, /password/i, msg);

  await signIn(page, server.email, server.password);
  // The site's console socket is up (the inbox is live, not polled).
  await page.waitForSelector('.conn--live', { timeout: 15_000 });
  assert.equal(await page.title(), 'Parley Console');
  // The token is kept by the console's origin, never in the URL.
  assert.ok(!page.url().includes('token'));
});

test('a new visitor chat shows up live with a title count and a chime', STEP, async () => {
  const chimesBefore = Number(await page.evaluate(() => document.documentElement.dataset.chimes ?? 0));
  conv = await newConversation(server);
  visitor = await connect(server, conv.conversation, conv.token, { after: 0 });
  const ack = await visitor.sendMessage('Hello, my parcel has not arrived yet.');
  assert.equal(ack.type, 'ack');

  await page.waitForFunction(() => /^\(\d+\) /.test(document.title), null, { timeout: 15_000 });
  await page.click('#list-tab-team');
  await page.waitForSelector(`.conv-item[data-id="${conv.conversation}"]`, { timeout: 15_000 });
  await waitForText(page, `.conv-item[data-id="${conv.conversation}"] .ci-preview`, 'parcel');
  const chimes = Number(await page.evaluate(() => document.documentElement.dataset.chimes ?? 0));
  assert.ok(chimes > chimesBefore, 'a new conversation plays the alert sound');
});

test('the agent opens the chat and replies with Enter; the visitor receives it once', STEP, async () => {
  await openFromTeam(page, conv.conversation);
  await waitForText(page, '.conv .msg--in .text', 'parcel');
  // Reading it clears the count.
  await page.waitForFunction(() => document.title === 'Parley Console', null, { timeout: 10_000 });

  await page.fill('.composer-input', 'Sorry about that! Let me check.\nOne moment please.');
  const nl = await page.$eval('.composer-input', (el) => el.value.includes('\n'));
  assert.ok(nl);
  await page.focus('.composer-input');
  await page.keyboard.press('Enter');
  const ev = await visitorEvent(visitor, (f) => f.author.role === 'agent' && f.kind === 'message');
  assert.equal(ev.body.text, 'Sorry about that! Let me check.\nOne moment please.');
  assert.match(ev.client_msg_id, /^[A-Za-z0-9\-_.:]{1,64}$/);
  await page.waitForSelector('.conv .msg--mine:not(.msg--pending)');
  assert.equal(await page.$eval('.composer-input', (el) => el.value), '');
  // Shift+Enter is a line break, not a send.
  await page.keyboard.type('first line');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('second line');
  assert.equal(await page.$eval('.composer-input', (el) => el.value), 'first line\nsecond line');
  await page.keyboard.press('Enter');
  const ev2 = await visitorEvent(visitor, (f) => f.author.role === 'agent' && f.kind === 'message');
  assert.equal(ev2.body.text, 'first line\nsecond line');
  const history = await fullHistory(server, conv.conversation, conv.token);
  assert.equal(history.filter((e) => e.kind === 'message' && e.author.role === 'agent').length, 2);
});

test("the agent's private note never reaches the visitor", STEP, async () => {
  const secret = 'NOTE: customer asked twice, escalate if late';
  await page.click('.note-toggle');
  assert.equal(await page.getAttribute('.note-toggle', 'aria-pressed'), 'true');
  await page.waitForSelector('.composer.composer--note');
  await page.fill('.composer-input', secret);
  await page.keyboard.press('Enter');
  await waitForText(page, '.conv .msg--note:not(.msg--pending) .text', secret);
  const hidden = await visitorEvent(visitor, (f) => f.kind === 'hidden');
  assert.equal(hidden.author.role, 'system');
  assert.ok(!JSON.stringify(visitor.frames).includes('escalate'), 'note text reached the visitor socket');
  const history = await fullHistory(server, conv.conversation, conv.token);
  assert.ok(!JSON.stringify(history).includes('escalate'), 'note text is in the visitor history');
  assert.ok(history.some((e) => e.kind === 'hidden'));
  // Back to replies.
  await page.click('.note-toggle');
  assert.equal(await page.getAttribute('.note-toggle', 'aria-pressed'), 'false');
});

test('typing indicators and read receipts go both ways', STEP, async () => {
  visitor.send({ type: 'typing', active: true });
  await page.waitForSelector('.conv .typing .typing-dots', { timeout: 10_000 });
  visitor.send({ type: 'typing', active: false });
  await page.waitForSelector('.conv .typing .typing-dots', { state: 'detached', timeout: 10_000 });

  await page.focus('.composer-input');
  await page.keyboard.type('Checking');
  const typing = await visitor.next((f) => f.type === 'typing' && f.participant.role === 'agent' && f.active);
  assert.equal(typing.participant.name, 'Demo Admin');
  await page.fill('.composer-input', '');

  // The visitor writes; the console, showing the conversation, marks it read.
  const ack = await visitor.sendMessage('Thanks, it is order 1234.');
  const read = await visitor.next((f) => f.type === 'read' && f.seq >= ack.seq);
  assert.ok(read.participant.startsWith('a_'));
  // The visitor reads everything: the agent's last message shows "Seen".
  visitor.send({ type: 'read', seq: ack.seq });
  await page.waitForSelector('.conv .msg--mine.is-seen .msg-receipt', { timeout: 10_000 });
});

test('visitor text is only ever text; only http(s) links become links', STEP, async () => {
  await visitor.sendMessage('<img src=x onerror="window.__xss=1"> <b>bold</b> javascript:window.__xss=2 see https://example.com/a?b=1.');
  await waitForText(page, '.conv .msg--in .text', '<img src=x');
  const bubble = '.conv .msg--in:last-of-type .text';
  assert.equal(await page.$$eval('.conv .thread img, .conv .thread b', (els) => els.length), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  const links = await page.$$eval(`${bubble} a`, (els) => els.map((a) => [a.getAttribute('href'), a.rel, a.target]));
  assert.deepEqual(links, [['https://example.com/a?b=1', 'noopener noreferrer nofollow', '_blank']]);
});

const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAFklEQVR4nGNk+M+ABzAxMDAwMjAwAAAUCAECqYXWlgAAAABJRU5ErkJggg==', 'base64');

test("a visitor's image shows inline and a document as a card", STEP, async () => {
  const post = async (name, type, bytes) => {
    const res = await fetch(`${server.url}/api/v1/conversations/${conv.conversation}/files?name=${encodeURIComponent(name)}`, {
      method: 'POST', headers: { authorization: `Bearer ${conv.token}`, 'content-type': type }, body: bytes,
    });
    const body = await res.json();
    assert.equal(res.status, 201, JSON.stringify(body));
    visitor.send({ type: 'send', client_msg_id: `f-${body.file.id}`, file: body.file.id });
    await visitor.next((f) => f.type === 'ack' && f.client_msg_id === `f-${body.file.id}`);
    return body.file;
  };
  await post('photo.png', 'image/png', PNG);
  const pdf = await post('invoice.pdf', 'application/pdf', Buffer.from('%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n'));
  // The image is fetched with the token and shown from a blob: URL.
  await page.waitForFunction(() => {
    const img = document.querySelector('.conv .msg--in .file-img');
    return img && img.complete && img.naturalWidth === 4 && img.src.startsWith('blob:');
  }, null, { timeout: 15_000 });
  await waitForText(page, '.conv .msg--in .file-name', pdf.name);
  assert.ok(!(await page.$$eval('.conv .file-img', (els) => els.map((e) => e.src))).some((u) => u.includes('token')));
  // The inbox names the file the chat last received.
  await waitForText(page, `.conv-item[data-id="${conv.conversation}"] .ci-preview`, `File: ${pdf.name}`);
});

test('the agent attaches a file; the server has no room for it at first (uploads_busy), so it goes again by itself; the visitor gets it', STEP, async () => {
  const uploads = [];
  const busyOnce = (route) => {
    uploads.push(Date.now());
    return uploads.length === 1
      ? route.fulfill({ status: 503, contentType: 'application/json', headers: { 'retry-after': '1' }, body: JSON.stringify({ v: 1, type: 'error', code: 'uploads_busy', message: 'busy', retry_after_ms: 300 }) })
      : route.continue();
  };
  await page.route('**/api/v1/conversations/*/files?*', busyOnce);
  try {
    await page.setInputFiles('.composer input[type=file]', { name: 'label.png', mimeType: 'image/png', buffer: PNG });
    const ev = await visitorEvent(visitor, (f) => f.kind === 'file' && f.author.role === 'agent');
    assert.equal(ev.body.file.type, 'image/png');
  } finally {
    await page.unroute('**/api/v1/conversations/*/files?*', busyOnce);
  }
  assert.equal(uploads.length, 2, 'refused once, sent again once');
  assert.ok(uploads[1] - uploads[0] >= 300, 'after the wait the server asked for');
  assert.equal(await page.$('.upload-failed, .msg--failed'), null, 'no failure shown');
  await page.waitForSelector('.conv .msg--mine.msg--file:not(.msg--pending) .file-img:not([hidden])', { timeout: 15_000 });
  const errors = await page.$$eval('.toast--error', (els) => els.map((e) => e.textContent));
  assert.deepEqual(errors, []);
});

test('tags: add with Enter, remove with its button', STEP, async () => {
  const admin = await agentLogin(server);
  // The chips update at once; the server has them when the PUT lands.
  const stored = async (want) => {
    let tags;
    for (let i = 0; i < 50; i += 1) {
      tags = (await http(server.url, `/api/v1/conversations/${conv.conversation}/tags`, { token: admin.token })).body.tags;
      if (JSON.stringify(tags) === JSON.stringify(want)) return tags;
      await sleep(100);
    }
    return tags;
  };
  await page.fill('.tags .tag-input', 'vip');
  await page.press('.tags .tag-input', 'Enter');
  await waitForText(page, '.tags .tag', 'vip');
  assert.deepEqual(await stored(['vip']), ['vip']);
  await page.click('.tags .tag-x');
  await page.waitForSelector('.tags .tag', { state: 'detached' });
  assert.deepEqual(await stored([]), []);
  assert.equal(await page.$$eval('.tags .tag', (els) => els.length), 0);
  // A save that fails gives the typed tag back to the box, for another try.
  let refusedPuts = 0;
  const refuse = (route) => {
    if (route.request().method() !== 'PUT') return route.continue();
    refusedPuts += 1;
    return route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ v: 1, type: 'error', code: 'storage_unavailable', message: 'busy' }) });
  };
  await page.route('**/api/v1/conversations/*/tags', refuse);
  try {
    await page.fill('.tags .tag-input', 'urgent');
    await page.press('.tags .tag-input', 'Enter');
    await page.waitForSelector('.toast--error');
    await page.waitForFunction(() => document.querySelector('.tags .tag-input').value === 'urgent');
    assert.equal(await page.$$eval('.tags .tag', (els) => els.length), 0);
    // Leaving the box (here to close the error) does not send the refused tag again: the agent
    // does that with Enter, or by changing it.
    for (const close of await page.$$('.toast--error .icon-btn')) await close.click();
    assert.notEqual(await page.evaluate(() => document.activeElement?.className), 'tag-input');
    await sleep(300);
    assert.equal(refusedPuts, 1, 'sent once, not again on leaving the box');
    assert.equal(await page.$eval('.tags .tag-input', (el) => el.value), 'urgent');
    // Once the agent changes it, even back to the same text, leaving the box sends it again.
    await page.focus('.tags .tag-input');
    await page.press('.tags .tag-input', 'End');
    await page.keyboard.type('x');
    await page.keyboard.press('Backspace');
    await page.evaluate(() => document.querySelector('.tags .tag-input').blur());
    await page.waitForFunction(() => document.querySelectorAll('.toast--error').length > 0);
    for (let i = 0; i < 50 && refusedPuts < 2; i += 1) await sleep(100);
    assert.equal(refusedPuts, 2, 'the changed text was sent on leaving the box');
    await page.waitForFunction(() => document.querySelector('.tags .tag-input').value === 'urgent');
    for (const close of await page.$$('.toast--error .icon-btn')) await close.click();
  } finally {
    await page.unroute('**/api/v1/conversations/*/tags', refuse);
  }
  // Enter in the box tries again.
  await page.focus('.tags .tag-input');
  await page.press('.tags .tag-input', 'Enter');
  await waitForText(page, '.tags .tag', 'urgent');
  assert.deepEqual(await stored(['urgent']), ['urgent']);
  await page.click('.tags .tag-x');
  assert.deepEqual(await stored([]), []);
});

test('quick replies: "/" opens the list, Enter inserts, Enter sends', STEP, async () => {
  await page.focus('.composer-input');
  await page.keyboard.type('/hel');
  await page.waitForSelector('.qr-popover:not([hidden]) .qr-item[aria-selected="true"]');
  const title = await page.textContent('.qr-item[aria-selected="true"] .qr-title');
  assert.match(title, /hello/i);
  await page.keyboard.press('Enter');
  const value = await page.$eval('.composer-input', (el) => el.value);
  assert.ok(value.length > 5 && !value.startsWith('/'), value);
  await page.keyboard.press('Enter');
  const ev = await visitorEvent(visitor, (f) => f.author.role === 'agent' && f.kind === 'message');
  assert.equal(ev.body.text, value);
});

test('after a reload the console restores the open conversation, its history and the draft', STEP, async () => {
  await page.fill('.composer-input', 'half-written answer');
  await sleep(400); // drafts are saved a moment after typing
  await page.reload();
  await page.waitForSelector(`.conv[data-conversation="${conv.conversation}"]`);
  await waitForText(page, '.conv .msg--in .text', 'parcel');
  await waitForText(page, '.conv .msg--note .text', 'escalate');
  const texts = await threadTexts(page);
  assert.ok(texts.some((t) => t.includes('One moment please')));
  assert.equal(await page.$eval('.composer-input', (el) => el.value), 'half-written answer');
  assert.equal(await page.$$eval('.convtab', (els) => els.length), 1);
  await page.fill('.composer-input', '');
});

test('a reply sent while the server is down is delivered once when it is back', STEP, async () => {
  const port = server.port;
  const persistDir = server.persistDir;
  visitor.close();
  await server.kill();
  await page.waitForSelector('.conn--offline, .conn--connecting', { timeout: 15_000 });

  await page.fill('.composer-input', 'Written while offline');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.conv .msg--pending');
  // The outbox is durable: it would survive a reload or a crash of the tab.
  const stored = await page.evaluate(() => Object.keys(localStorage)
    .filter((k) => k.startsWith('parley.console.outbox.')).map((k) => localStorage.getItem(k)).join(''));
  assert.ok(stored.includes('Written while offline'), stored);

  server = await startServer({ persistDir, port, vars: VARS });
  await page.waitForSelector('.conv .msg--pending', { state: 'detached', timeout: 45_000 });
  const events = await fullHistory(server, conv.conversation, conv.token);
  assert.equal(events.filter((e) => e.body?.text === 'Written while offline').length, 1);
  visitor = await connect(server, conv.conversation, conv.token, { after: events.at(-1).seq });
  await page.waitForSelector('.conn--live', { timeout: 30_000 });
});

test('close and reopen from the conversation header', STEP, async () => {
  await page.click('.conv-actions [data-action="close"]');
  await page.waitForSelector('.conv .pill--closed', { timeout: 10_000 });
  // The visitor panel's list of their conversations says so too.
  await page.waitForSelector('.sidebar .past-item[disabled] .pill--closed', { timeout: 10_000 });
  await visitorEvent(visitor, (f) => f.kind === 'closed');
  await page.click('#list-tab-closed');
  await page.waitForSelector(`.conv-item[data-id="${conv.conversation}"]`, { timeout: 10_000 });
  await page.click('.conv-actions [data-action="reopen"]');
  await page.waitForSelector('.conv .pill--open', { timeout: 10_000 });
  await page.waitForSelector('.sidebar .past-item[disabled] .pill--open', { timeout: 10_000 });
  await visitorEvent(visitor, (f) => f.kind === 'reopened');
  // Both went through without the console reporting a failure.
  const errors = await page.$$eval('.toast--error', (els) => els.map((e) => e.textContent));
  assert.deepEqual(errors, []);
});

test('a console that missed more than the replay window resets and shows everything once', STEP, async () => {
  // A second device of the same agent whose conversation sockets we can cut and hold off.
  const ctx = await newContext({ viewport: { width: 1280, height: 800 } });
  let blocked = false;
  const open = new Set();
  const received = [];
  await ctx.routeWebSocket(/\/api\/v1\/conversations\/[^/]+\/ws/, (ws) => {
    if (blocked) return ws.close({ code: 4000, reason: 'held off' });
    const upstream = ws.connectToServer();
    ws.onMessage((m) => upstream.send(m));
    upstream.onMessage((m) => {
      received.push(JSON.parse(m).type);
      ws.send(m);
    });
    const pair = { ws, upstream };
    open.add(pair);
    ws.onClose(() => open.delete(pair));
  });
  // The previous test reopened the conversation; a console signing in now lists what the D1
  // mirror says, so wait until the mirror has the reopening (it follows within moments).
  for (let i = 0; i < 100; i += 1) {
    const { results: [row] } = await server.d1('SELECT status FROM conversations WHERE id = ?1', [conv.conversation]);
    if (row?.status === 'open') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const p = watch(await ctx.newPage());
  try {
    await signIn(p, server.email, server.password);
    await openFromTeam(p, conv.conversation);
    await p.waitForSelector('.conv .conv-sub:not(:has(.sub-conn))');
    blocked = true;
    for (const { ws, upstream } of open) {
      await upstream.close();
      await ws.close({ code: 4001, reason: 'cut' });
    }
    const sent = [];
    for (let i = 0; i < 15; i += 1) {
      sent.push(`missed ${i}`);
      const ack = await visitor.sendMessage(`missed ${i}`);
      assert.equal(ack.type, 'ack', JSON.stringify(ack));
    }
    blocked = false;
    await waitForText(p, '.conv .msg--in .text', 'missed 14', 30_000);
    assert.ok(received.includes('reset'), `no reset among ${received.join(',')}`);
    const texts = await threadTexts(p);
    for (const t of sent) assert.equal(texts.filter((x) => x === t).length, 1, t);
    // The thread is still in order.
    const seqs = await p.$$eval('.conv .msg[data-seq]', (els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  } finally {
    await ctx.close();
  }
});

test('the status switch reaches the server', STEP, async () => {
  const admin = await agentLogin(server);
  const { body } = await http(server.url, '/api/v1/sites', { token: admin.token });
  const status = async () => {
    const probe = await Socket.open(`${server.url.replace(/^http/, 'ws')}/api/v1/console/ws?site=${body.sites[0].id}`, { origin: server.url });
    probe.send({ type: 'hello', token: admin.token });
    const inbox = await probe.next((f) => f.type === 'inbox');
    probe.close();
    return inbox.agents.find((a) => a.id === admin.agentId)?.status;
  };
  await page.selectOption('.topbar .status-select', 'busy');
  await page.waitForSelector('.status-wrap.status--busy');
  for (let i = 0; i < 20 && (await status()) !== 'busy'; i += 1) await sleep(200);
  assert.equal(await status(), 'busy');
  await page.selectOption('.topbar .status-select', 'online');
  for (let i = 0; i < 20 && (await status()) !== 'online'; i += 1) await sleep(200);
  assert.equal(await status(), 'online');
});

test('chats routing hands back to an agent who was away, still theirs, are not announced as new', STEP, async () => {
  const routed = await newConversation(server);
  const item = `.conv-item[data-id="${routed.conversation}"]`;
  await page.click('#list-tab-mine');
  await page.click(item, { timeout: 15_000 });
  await page.waitForSelector(`.conv[data-conversation="${routed.conversation}"] .thread-begin`);
  await page.waitForSelector(`${item} .chip--new`, { state: 'detached' });
  const shown = await page.getAttribute(`${item} .ci-time`, 'datetime');
  // The agent looks at another chat, goes offline (routing takes their chats: with nobody else
  // online, this one waits) and comes back online (routing hands it back to them).
  await openFromTeam(page, conv.conversation);
  const chimes = () => page.evaluate(() => Number(document.documentElement.dataset.chimes ?? 0));
  const chimed = await chimes();
  const routingSays = (kind) => waitFor(async () => (await server.d1(
    'SELECT COUNT(*) AS n FROM routing_events WHERE conversation_id = ?1 AND kind = ?2', [routed.conversation, kind],
  )).results[0].n > 0, `routing history: ${kind}`);
  await page.selectOption('.topbar .status-select', 'offline');
  await routingSays('queued');
  await page.selectOption('.topbar .status-select', 'online');
  await waitFor(async () => (await server.d1(
    "SELECT COUNT(*) AS n FROM routing_events WHERE conversation_id = ?1 AND kind = 'assigned'", [routed.conversation],
  )).results[0].n > 1, 'routing to hand the chat back');
  await sleep(500);
  await page.click('#list-tab-mine');
  await page.waitForSelector(item);
  assert.equal(await page.$(`${item} .chip--new`), null, 'a chat the agent already had is marked new');
  assert.equal(await chimes(), chimed, 'chimed for a chat the agent already had');
  // (The list's time and the live feed's may differ by the few milliseconds between them.)
  const now = await page.getAttribute(`${item} .ci-time`, 'datetime');
  assert.ok(Date.parse(now) < Date.parse(shown) + 1000, `moved up as if something happened: ${shown} → ${now}`);
});

test("a chat read on one of an agent's devices is no longer unread on the other", STEP, async () => {
  const other = await newContext();
  const second = watch(await other.newPage());
  try {
    await signIn(second, server.email, server.password);
    await second.waitForSelector('.conn--live', { timeout: 15_000 });
    const c = await newConversation(server);
    const v = await connect(server, c.conversation, c.token, { after: 0 });
    await v.sendMessage('Is anyone there?');
    v.close();
    const badge = (p) => p.locator(`.conv-item[data-id="${c.conversation}"] .badge`);
    for (const p of [page, second]) {
      await p.click('#list-tab-team');
      await p.waitForSelector(`.conv-item[data-id="${c.conversation}"] .badge`, { timeout: 15_000 });
      assert.equal(await badge(p).textContent(), '1');
    }
    // Read on the first device; the second hears it through the site feed.
    await openFromTeam(page, c.conversation);
    await waitForText(page, '.conv .msg--in .text', 'anyone there');
    await second.waitForSelector(`.conv-item[data-id="${c.conversation}"] .badge`, { state: 'detached', timeout: 15_000 });
    // Nothing else changed there: the chat is still listed, just read.
    assert.equal(await second.locator(`.conv-item[data-id="${c.conversation}"]`).count(), 1);
    // And it stays read after a reload of the second device.
    await second.reload();
    await second.waitForSelector('.conv-list[aria-busy="false"]', { state: 'attached' });
    await second.click('#list-tab-team');
    // Once the row has its messages (the preview), an unread count would show.
    await waitForText(second, `.conv-item[data-id="${c.conversation}"] .ci-preview`, 'anyone there');
    assert.equal(await badge(second).count(), 0);
  } finally {
    await other.close();
  }
});

test('scrolling up loads older history; arrow keys move through the inbox', STEP, async () => {
  const long = await newConversation(server);
  const v = await connect(server, long.conversation, long.token, { after: 0 });
  for (let i = 1; i <= 70; i += 1) {
    const ack = await v.sendMessage(`line ${i}`);
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
  }
  await openFromTeam(page, long.conversation);
  await waitForText(page, '.conv .msg--in .text', 'line 70');
  let texts = await threadTexts(page);
  assert.ok(!texts.includes('line 1'), 'the first page should not hold the whole conversation');
  await page.waitForSelector('.conv .load-earlier');
  await page.$eval('.conv .thread', (el) => el.scrollTo({ top: 0 }));
  await waitForText(page, '.conv .msg--in .text', 'line 1', 15_000);
  await page.waitForSelector('.conv .thread-begin');
  texts = await threadTexts(page);
  const lines = texts.filter((t) => /^line \d+$/.test(t));
  assert.deepEqual(lines, Array.from({ length: 70 }, (_, i) => `line ${i + 1}`));

  // Keyboard: the inbox list is navigable with the arrow keys, and Enter opens.
  await page.focus(`.conv-item[data-id="${long.conversation}"]`);
  await page.keyboard.press('ArrowDown');
  const next = await page.evaluate(() => document.activeElement?.dataset?.id);
  assert.ok(next && next !== long.conversation);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`.conv[data-conversation="${next}"]`);
  // Tabs: the open conversations are tabs; Delete closes the focused one.
  assert.ok(await page.$$eval('.convtab', (els) => els.length) >= 2);
  await page.focus(`.convtab-btn[data-tab="${long.conversation}"]`);
  await page.keyboard.press('Delete');
  await page.waitForSelector(`.convtab-btn[data-tab="${long.conversation}"]`, { state: 'detached' });
  await openFromTeam(page, conv.conversation);
  v.close();
});

test('the console switches to Simplified Chinese', STEP, async () => {
  await page.selectOption('.topbar .lang-select', 'zh-CN');
  await waitForText(page, '#list-tab-waiting', '排队中');
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  assert.match(await page.getAttribute('.composer-input', 'placeholder'), /输入回复/);
  await page.selectOption('.topbar .lang-select', 'en');
  await waitForText(page, '#list-tab-waiting', 'Waiting');
});

test('from the demo page to a second agent: the visitor chats in the widget, the agent is alerted, replies and transfers; the second agent sees the whole history', STEP, async () => {
  const ann = await addAgent('Ann');
  const shopContext = await newContext({ viewport: { width: 1280, height: 800 } });
  let context2;
  try {
    // A visitor on the demo shop, signed in there as a customer the shop names without a
    // signature (no hash): the console must not present that identity as verified.
    const shop = watch(await openDemo(shopContext, server));
    assert.deepEqual(await shop.evaluate(() => window.Parley.identify({ id: 'cust-4242', name: 'Jane Doe' })), { verified: false });
    const chimesBefore = Number(await page.evaluate(() => document.documentElement.dataset.chimes ?? 0));
    await openPanel(shop);
    await send(shop, 'Hi, I want a refund. Mail me at jane.doe@example.com');
    const id = await conversationOf(shop);

    // The first agent is alerted (sound and title count), opens it, takes it if it waits, and
    // sees the claimed identity marked as unverified.
    await page.waitForFunction(([c, before]) => Number(document.documentElement.dataset.chimes ?? 0) > before
      && /^\(\d+\) /.test(document.title) && document.querySelector(`.conv-item[data-id="${c}"]`), [id, chimesBefore], { timeout: 15_000 });
    await openFromTeam(page, id);
    await waitForText(page, '.conv .msg--in .text', 'I want a refund');
    if (await page.$('.conv-actions [data-action="accept"]')) {
      await page.click('.conv-actions [data-action="accept"]');
      await page.waitForSelector('.conv-actions [data-action="accept"]', { state: 'detached', timeout: 10_000 });
    }
    await waitForText(page, '.vp-name', 'Jane Doe');
    await waitForText(page, '.vp-name .unverified', 'Unverified');
    assert.equal(await page.$('.vp-name .verified'), null);
    // The page the visitor is on reads like the pages of their trail, also once the admin
    // pages (whose own page title and page box are styled large) have been opened.
    const visited = await shop.title();
    const looks = () => page.getByText(visited, { exact: true }).evaluateAll((els) => els.map((el) => {
      const box = getComputedStyle(el.parentElement);
      return `${getComputedStyle(el).fontSize} ${box.paddingTop} ${box.maxWidth}`;
    }));
    await waitFor(async () => (await looks()).length >= 2, 'the current page and the trail in the sidebar');
    await page.click('.topnav-link[data-page="reports"]');
    await page.waitForSelector('.page--reports');
    await page.goBack();
    await waitFor(async () => (await looks()).length >= 2, 'the sidebar again');
    assert.equal(new Set(await looks()).size, 1, JSON.stringify(await looks()));

    // The agent replies; the visitor reads it in the widget and writes again.
    await page.fill('.composer-input', 'Of course, Jane. Which order is it?');
    await page.focus('.composer-input');
    await page.keyboard.press('Enter');
    await waitFor(async () => (await panelMessages(shop)).some((m) => !m.mine && m.text === 'Of course, Jane. Which order is it?'), 'the reply in the widget');
    await send(shop, 'Order 5150, the green tea set.');
    await waitForText(page, '.conv .msg--in .text', 'Order 5150');

    // The second agent signs in, and the first transfers the conversation to them with a note.
    context2 = await newContext({ viewport: { width: 1280, height: 860 } });
    const page2 = watch(await context2.newPage());
    await signIn(page2, ann.email, ann.password);
    await page2.waitForSelector('.conn--live', { timeout: 15_000 });
    // The department picker offers the team's departments, even one nobody waits in.
    const { results: [{ team_id: team }] } = await server.d1('SELECT team_id FROM agents WHERE id = ?1', [ann.id]);
    await server.d1("INSERT INTO departments (id, team_id, name, created_at) VALUES ('d_returns_e2e', ?1, 'Returns', ?2)", [team, Date.now()]);
    await page.click('.conv-actions [data-action="transfer"]');
    await page.waitForSelector('dialog.dialog[open]');
    await page.click('dialog [data-mode="department"]');
    await page.waitForSelector('dialog #transfer-dept option[value="Returns"]', { state: 'attached', timeout: 10_000 });
    await page.click('dialog [data-mode="agent"]');
    await page.check(`dialog input[name="transfer-agent"][value="${ann.id}"]`, { timeout: 15_000 });
    await page.fill('#transfer-note', 'VIP: refund approved by the manager');
    await page.click('dialog button[type=submit]');
    await page.waitForFunction(() => !document.querySelector('dialog.dialog') || document.querySelector('dialog .form-error')?.textContent,
      null, { timeout: 10_000 });
    const refused = await page.$eval('dialog .form-error', (e) => e.textContent).catch(() => null);
    assert.equal(refused, null, `transfer refused: ${refused}`);

    // Ann is alerted and finds it under Mine, with everything that was said before, in order.
    // Its count under Mine is marked while the chat is new to her, whichever list she looks at.
    await page2.waitForFunction(() => /^\(\d+\) /.test(document.title), null, { timeout: 15_000 });
    await page2.waitForSelector('#list-tab-mine .count.count--hot', { timeout: 15_000 });
    await page2.click('#list-tab-mine');
    await page2.click(`.conv-item[data-id="${id}"]`, { timeout: 15_000 });
    await waitForText(page2, '.conv .msg--note .text', 'refund approved');
    await page2.waitForSelector('#list-tab-mine .count.count--hot', { state: 'detached', timeout: 15_000 });
    const annToken = (await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email: ann.email, password: ann.password } })).body.token;
    const history = await fullHistory(server, id, annToken);
    const said = history.filter((e) => ['message', 'note', 'file'].includes(e.kind));
    assert.deepEqual(said.map((e) => e.author.role), ['visitor', 'agent', 'visitor', 'agent']);
    await page2.waitForFunction((seqs) => seqs.every((s) => document.querySelector(`.conv .msg[data-seq="${s}"]`)), said.map((e) => e.seq), { timeout: 15_000 });
    const shown = await page2.$$eval('.conv .msg[data-seq]', (els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(shown.filter((s) => said.some((e) => e.seq === s)), said.map((e) => e.seq), 'every earlier message, in order');
    const texts = await threadTexts(page2);
    for (const want of ['I want a refund', 'Of course, Jane. Which order is it?', 'Order 5150, the green tea set.', 'VIP: refund approved by the manager']) {
      assert.ok(texts.some((t) => t.includes(want)), `${want} in ${JSON.stringify(texts)}`);
    }

    // Ann may not see personal data: the e-mail is masked, and revealing it is explicit and
    // written to the team's audit log.
    await waitForText(page2, '.conv .msg--in .text', '***');
    assert.ok(!texts.some((t) => t.includes('jane.doe@example.com')));
    await page2.click('.conv .msg--in .reveal-btn');
    await waitForText(page2, '.conv .msg--in .text', 'jane.doe@example.com');
    const masked = said.find((e) => e.author.role === 'visitor');
    const { results: audit } = await server.d1(
      "SELECT actor_id, target, detail FROM audit_log WHERE action = 'reveal_personal_data' AND target = ?1", [id]);
    assert.equal(audit.length, 1, JSON.stringify(audit));
    assert.equal(audit[0].actor_id, ann.id);
    assert.deepEqual(JSON.parse(audit[0].detail), { seq: masked.seq });

    // The visitor never sees the transfer note.
    const visitorLog = await shop.evaluate(() => document.querySelector('[data-parley]').shadowRoot.textContent);
    assert.ok(!visitorLog.includes('refund approved'));
  } finally {
    await context2?.close();
    await shopContext.close();
  }
});

test('the visitor endpoint gives the sidebar the claimed identity and whether it is verified', STEP, async () => {
  const c = await newConversation(server);
  const admin = await agentLogin(server);
  const named = await http(server.url, '/api/v1/visitor/identify', { method: 'POST', token: c.token, body: { id: 'cust-77', name: 'Claimed Name' } });
  assert.equal(named.status, 200, JSON.stringify(named.body));
  const info = await http(server.url, `/api/v1/visitors/${c.visitorId}`, { token: admin.token });
  assert.equal(info.status, 200, JSON.stringify(info.body));
  assert.equal(info.body.visitor.external_id, 'cust-77');
  assert.equal(info.body.visitor.identity_verified, false);
});

test('a name and address the visitor typed into a form are marked self-stated in the sidebar, the inbox, the header and the tab; a vouched or claimed identity is not', STEP, async () => {
  const admin = await agentLogin(server);
  const start = async (visitor, fields) => {
    const created = await http(server.url, '/api/v1/conversations', {
      method: 'POST', token: visitor.token, body: { form: 'offline', fields, message: 'Do you ship to Canada?' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body.conversation;
  };
  const identify = async (visitor, body) => {
    const named = await http(server.url, '/api/v1/visitor/identify', { method: 'POST', token: visitor.token, body });
    assert.equal(named.status, 200, JSON.stringify(named.body));
    return named.body.verified;
  };
  const badges = () => page.$$eval('.vp-name .verified, .vp-name .unverified, .vp-name .self-stated', (els) => els.map((e) => e.className));
  // Where else the conversation's name shows: its inbox row, its header and its tab.
  const nameSpots = (id) => [`.conv-item[data-id="${id}"] .ci-top`, `.conv[data-conversation="${id}"] .conv-title`, `.convtabs [data-tab="${id}"]`];
  /** The mark by the name in each spot, once `text` shows there: its word, and what a screen reader is told instead. */
  const marks = async (id, text) => {
    for (const spot of nameSpots(id)) await waitForText(page, spot, text);
    return Promise.all(nameSpots(id).map((spot) => page.$eval(spot, (el) => {
    const mark = el.querySelector('.self-stated');
      return mark && { word: mark.textContent, hidden: mark.getAttribute('aria-hidden'), said: mark.nextElementSibling?.matches('.sr-only') ? mark.nextElementSibling.textContent : null };
    })));
  };

  // Typed into the offline form: self-stated, with a tooltip that says so.
  const stated = await visitorSession(server);
  const statedConv = await start(stated, { name: 'Wang Xiaoming', email: 'xm@example.com' });
  await openFromTeam(page, statedConv);
  await waitForText(page, '.vp-name', 'Wang Xiaoming');
  await waitForText(page, '.vp-name .self-stated', 'Self-stated');
  assert.deepEqual(await badges(), ['self-stated']);
  assert.match(await page.getAttribute('.vp-name .self-stated', 'title'), /typed this name or e-mail address into a form/);
  assert.equal(await page.getAttribute('.vp-email', 'href'), 'mailto:xm@example.com');
  const explained = 'The visitor typed this name or e-mail address into a form themselves: nobody has checked it';
  // The tab says the word only: a tab list's names are read again on every move.
  assert.deepEqual(await marks(statedConv, 'Self-stated'), [explained, explained, 'Self-stated'].map((said) => ({ word: 'Self-stated', hidden: 'true', said })));
  await page.selectOption('.topbar .lang-select', 'zh-CN');
  await waitForText(page, '.vp-name .self-stated', '访客自填');
  assert.match(await page.getAttribute('.vp-name .self-stated', 'title'), /访客本人在表单中填写/);
  const explainedZh = '此姓名或邮箱由访客本人在表单中填写，未经任何核实';
  assert.deepEqual(await marks(statedConv, '访客自填'), [explainedZh, explainedZh, '访客自填'].map((said) => ({ word: '访客自填', hidden: 'true', said })));
  await page.selectOption('.topbar .lang-select', 'en');
  await waitForText(page, '.vp-name .self-stated', 'Self-stated');

  // Vouched for by the site's server (a valid hash), the form's answers aside: verified only.
  const { body: { identity_secret: secret } } = await http(server.url, `/api/v1/sites/${await siteId(server, admin.token)}/identity-secret`, { method: 'POST', token: admin.token });
  const customer = await visitorSession(server);
  assert.equal(await identify(customer, { id: 'cust-88', name: 'Kim Lee', email: 'kim@example.com', hash: createHmac('sha256', secret).update('cust-88').digest('hex') }), true);
  const vouchedConv = await start(customer, { name: 'Somebody Else', email: 'else@example.com' });
  await openFromTeam(page, vouchedConv);
  await waitForText(page, '.vp-name', 'Kim Lee');
  await page.waitForSelector('.vp-name .verified');
  assert.deepEqual(await badges(), ['verified']);
  // What the badge's tooltip says is said to screen readers too (the word itself is hidden from them).
  const spoken = (badge) => page.$eval(`.vp-name ${badge}`, (el) => [el.getAttribute('aria-hidden'), el.nextElementSibling?.matches('.sr-only') ? el.nextElementSibling.textContent : null]);
  assert.deepEqual(await spoken('.verified'), ['true', 'The website signed this visitor\'s user id "cust-88". The name and e-mail are as the page sent them: the signature does not cover them']);
  assert.deepEqual(await marks(vouchedConv, 'Kim Lee'), [null, null, null]);

  // Claimed by the page without a hash: unverified only. Its address, whatever it holds, adds
  // nothing to the mail a click on it starts (no header, no second recipient, no body).
  const claimed = await newConversation(server);
  const address = 'kim@example.com?cc=boss@evil.example&body=Pay-now#x';
  assert.equal(await identify(claimed, { id: 'cust-89', name: 'Claimed Kim', email: address }), false);
  const said = await http(server.url, `/api/v1/conversations/${claimed.conversation}/messages`, {
    method: 'POST', token: claimed.token, body: { client_msg_id: `m-${Date.now()}`, text: 'Where is my parcel?' },
  });
  assert.equal(said.status, 200, JSON.stringify(said.body));
  await openFromTeam(page, claimed.conversation);
  await waitForText(page, '.vp-name', 'Claimed Kim');
  await page.waitForSelector('.vp-name .unverified');
  assert.deepEqual(await badges(), ['unverified']);
  assert.deepEqual(await spoken('.unverified'), ['true', 'The website named this visitor "cust-89" without a valid signature: do not rely on it']);
  assert.deepEqual(await marks(claimed.conversation, 'Claimed Kim'), [null, null, null]);
  assert.equal(await page.textContent('.vp-email'), address);
  const href = await page.getAttribute('.vp-email', 'href');
  assert.match(href, /^mailto:[^?&#]+$/, href);
  assert.equal(decodeURIComponent(href.slice('mailto:'.length)), address);
});
