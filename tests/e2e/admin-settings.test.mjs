// The console's forms for what the REST API offered before the console did, in a real browser
// (Debian's Chromium through playwright-core) against the built Worker. Needs
// `node console/build.mjs` first (public/console/).
//
// Quick replies: the owner edits a team reply with the keyboard and deletes a personal one
// (asked first; a reply deleted elsewhere meanwhile is refused in the server's words); a title or
// group the server refuses is said at its field; an agent sees team replies read-only, changes
// their own, and the server refuses them the team's.
// Site settings: the owner sets up a keyword auto-reply (and an away reply, idle closing, an
// invitation), translation and the bot through the forms; invalid input is named before it is
// sent, and a refusal by the server is shown; after a reload the values are there and the
// stored keys are not; the auto-reply answers a visitor's message sent over HTTP; a key is kept
// when not retyped, replaced when retyped and removed with Remove. The bot's kind shows only its
// fields (the team's own bot behind a webhook: URL and signing secret, no model or knowledge).
// API keys: the owner makes one (read and write), sees it once and copies it (the clipboard, or
// the text selected without one); it works against the API, is listed without its secret after
// a reload, and once revoked (asked first) is refused; a revocation the server refuses is shown
// in its words. An agent gets no API keys page and the server refuses them the keys.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentLogin, createAgent, fullHistory, http, msgId, newConversation, siteId } from '../support/client.mjs';
import { startServer } from '../support/server.mjs';
import { CHROMIUM, launch, openConsolePage, signIn, visitorContext, waitFor, waitForText } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STEP = { timeout: 120_000 };
const TRANSLATION_KEY = 'sk-translate-4f1c9a';
const BOT_KEY = 'sk-bot-77d2e0';

let server;
let browser;
let context;
let page;
let owner;
let site;
/** The quick replies seeded over HTTP, by name: ids. */
const replies = {};
const ada = { name: 'Ada Agent', email: 'ada.agent@parley.local', password: 'correct horse battery' };
const pageErrors = [];

const quickReplies = async (token) => (await http(server.url, '/api/v1/quick-replies', { token })).body.replies;

async function newReply(token, reply) {
  const res = await http(server.url, '/api/v1/quick-replies', { method: 'POST', token, body: reply });
  assert.ok(res.status < 300, JSON.stringify(res.body));
  return (await quickReplies(token)).find((r) => r.title === reply.title).id;
}

async function consolePage(ctx) {
  const p = await ctx.newPage();
  p.on('pageerror', (e) => pageErrors.push(e.message));
  return p;
}


/** Saves the site page and waits for the saved message. */
async function saveSite(p) {
  await p.click('[data-action="save-site"]');
  await p.waitForSelector('.save-msg--info', { timeout: 15_000 });
}

/** What the site's row holds (keys included), as the server stored it. */
async function storedSite() {
  const { results: [row] } = await server.d1('SELECT translation, automation, bot FROM sites WHERE id = ?1', [site]);
  return { translation: JSON.parse(row.translation), automation: JSON.parse(row.automation), bot: JSON.parse(row.bot) };
}

const siteJson = async () => (await http(server.url, `/api/v1/sites/${site}`, { token: owner.token })).body;

/** Reloads the console on the site page and waits for the form. */
async function reloadSettings(p) {
  await p.goto(`${server.url}/console/#/settings/${encodeURIComponent(site)}`);
  await p.reload();
  await p.waitForSelector('[data-k="translation-enabled"]', { timeout: 20_000 });
}

/** The page holds no trace of a key: not in its markup, not in any field's value. */
async function assertKeyNotShown(p, key) {
  const found = await p.evaluate((k) => document.documentElement.outerHTML.includes(k)
    || Array.from(document.querySelectorAll('input, textarea')).some((e) => e.value.includes(k)), key);
  assert.equal(found, false, 'the stored key shows up in the page');
}

before(async () => {
  assert.ok(existsSync(join(ROOT, 'public', 'console', 'app.js')), 'run `node console/build.mjs` first');
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium`);
  // No WEBHOOK_ALLOW_PRIVATE: an http:// endpoint is the server's to refuse.
  server = await startServer();
  owner = await agentLogin(server);
  site = await siteId(server, owner.token);
  replies.shipping = await newReply(owner.token, { title: 'Shipping times', body: 'We ship within 24 hours.', group: 'Orders' });
  replies.refund = await newReply(owner.token, { title: 'Refund <b>policy</b>', body: 'Refunds within 30 days.', group: 'Orders' });
  replies.signOff = await newReply(owner.token, { title: 'My sign-off', body: 'Best regards,\nthe owner', personal: true });
  const agent = await createAgent(server, ada);
  ada.token = agent.token;
  replies.adaHello = await newReply(ada.token, { title: 'Ada hello', body: 'Hi, Ada here.', personal: true });
  browser = await launch();
  context = await visitorContext(browser, { viewport: { width: 1440, height: 900 } });
  page = await consolePage(context);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  assert.deepEqual(pageErrors, [], 'uncaught errors in the console page');
  assert.deepEqual([...(context?.offsite ?? []), ...(ada.context?.offsite ?? [])], [], 'requests that left the server');
});

test('the owner edits a team reply with the keyboard and deletes a personal one; a refusal is shown', STEP, async () => {
  await signIn(page, server);
  const links = await page.$$eval('.topnav-link', (els) => els.map((e) => e.dataset.page));
  assert.deepEqual(links, ['inbox', 'search', 'replies', 'reports', 'agents', 'settings', 'api-keys', 'export']);
  await openConsolePage(page, 'replies', `.reply[data-id="${replies.shipping}"]`);

  // Grouped by scope, then group (the demo's team replies are there too); a title with markup is text.
  const where = (id) => page.$eval(`.reply[data-id="${id}"]`, (e) => `${e.closest('.card').id} / ${e.closest('.reply-group').querySelector('h3').textContent}`);
  assert.equal(await where(replies.shipping), 'replies-team / Orders');
  assert.equal(await where(replies.signOff), 'replies-mine / No group');
  assert.equal(await page.$(`.reply[data-id="${replies.adaHello}"]`), null, 'another agent\'s personal reply is not listed');
  const refund = `.reply[data-id="${replies.refund}"]`;
  assert.equal(await page.textContent(`${refund} .reply-title`), 'Refund <b>policy</b>');
  assert.equal(await page.$(`${refund} .reply-title b`), null);

  // Edit with the keyboard only: the button, the prefilled form, Enter to save.
  const editShipping = `.reply[data-id="${replies.shipping}"] [data-action="edit-reply"]`;
  assert.equal(await page.getAttribute(editShipping, 'aria-label'), 'Edit Shipping times');
  await page.focus(editShipping);
  await page.keyboard.press('Enter');
  await page.waitForSelector('dialog.dialog[open] #qr-title');
  assert.equal(await page.inputValue('#qr-title'), 'Shipping times');
  assert.equal(await page.inputValue('#qr-group'), 'Orders');
  assert.equal(await page.$('dialog #qr-personal'), null, 'an edit does not change who sees the reply');
  await page.fill('#qr-title', 'Shipping & delivery');
  await page.fill('#qr-body', 'We ship within 24 hours, tracked.');
  await page.fill('#qr-group', 'Delivery');
  await page.press('#qr-title', 'Enter');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
  await waitForText(page, '#replies-team .reply-group', 'Shipping & delivery');
  assert.equal(await where(replies.shipping), 'replies-team / Delivery');
  // Focus comes back to the edited reply's button, though the list was drawn anew.
  await page.waitForFunction((id) => document.activeElement?.dataset.focus === `edit:${id}`, replies.shipping);
  const edited = (await quickReplies(owner.token)).find((r) => r.id === replies.shipping);
  assert.deepEqual({ title: edited.title, body: edited.body, group: edited.group, personal: edited.personal },
    { title: 'Shipping & delivery', body: 'We ship within 24 hours, tracked.', group: 'Delivery', personal: false });

  // Delete asks first: Escape keeps it, Delete removes it.
  const signOff = `.reply[data-id="${replies.signOff}"]`;
  await page.click(`${signOff} [data-action="delete-reply"]`);
  await waitForText(page, 'dialog.dialog[open] .dialog-text', '“My sign-off” will be deleted.');
  await page.keyboard.press('Escape');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
  assert.ok(await page.$(signOff));
  await page.click(`${signOff} [data-action="delete-reply"]`);
  await page.click('dialog.dialog[open] button[type="submit"]');
  await page.waitForSelector(signOff, { state: 'detached' });
  await waitForText(page, '#replies-mine', 'You have no replies of your own yet.');
  assert.equal((await quickReplies(owner.token)).some((r) => r.id === replies.signOff), false);

  // Deleted elsewhere meanwhile: the server's refusal shows in the dialog, and the list catches up.
  assert.equal((await http(server.url, `/api/v1/quick-replies/${replies.refund}`, { method: 'DELETE', token: owner.token })).status, 204);
  await page.click(`${refund} [data-action="delete-reply"]`);
  await page.click('dialog.dialog[open] button[type="submit"]');
  await waitForText(page, 'dialog.dialog[open] .form-error', 'Not found.');
  await page.keyboard.press('Escape');
  await page.waitForSelector(refund, { state: 'detached' });
});

test('a quick reply the server refuses names the field to correct, marked and focused; nothing is cut or stored', STEP, async () => {
  await page.click('[data-action="add-reply"]');
  await page.waitForSelector('dialog.dialog[open] #qr-title');
  const marked = () => page.$$eval('dialog.dialog[open] [aria-invalid="true"]', (els) => els.map((e) => e.id));
  const focused = () => page.evaluate(() => document.activeElement?.id);
  const refusal = 'dialog.dialog[open] .form-error';
  const sent = [];
  const record = (r) => r.method() === 'POST' && r.url().endsWith('/api/v1/quick-replies') && sent.push(r.url());
  page.on('request', record);

  // Spaces only pass `required`: refused before anything is sent, in the same words.
  await page.fill('#qr-title', '   ');
  await page.fill('#qr-body', 'Thanks for waiting, I am checking now.');
  await page.click('dialog.dialog[open] button[type="submit"]');
  await waitForText(page, refusal, 'Title: enter one, at most 100 characters.');
  assert.deepEqual(await marked(), ['qr-title']);
  assert.equal(await focused(), 'qr-title');
  assert.equal(sent.length, 0);

  // maxlength keeps typing within the limits; a value set from script is not (as a console whose
  // limits are not the server's would send it): the server's refusal names its field.
  const setPastLimit = (sel, value) => page.$eval(sel, (el, v) => {
    el.value = v;
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
  await setPastLimit('#qr-title', `Checking ${'x'.repeat(100)}`);
  await page.focus('#qr-body');
  await page.click('dialog.dialog[open] button[type="submit"]');
  await page.waitForFunction(() => document.activeElement?.id === 'qr-title');
  assert.equal(sent.length, 1);
  assert.equal(await page.textContent(refusal), 'Title: enter one, at most 100 characters.');
  assert.deepEqual(await marked(), ['qr-title']);

  await page.fill('#qr-title', 'Checking now');
  await setPastLimit('#qr-group', 'g'.repeat(51));
  await page.click('dialog.dialog[open] button[type="submit"]');
  await waitForText(page, refusal, 'Group: at most 50 characters.');
  assert.deepEqual(await marked(), ['qr-group'], 'the corrected title is no longer marked');
  assert.equal(await focused(), 'qr-group');
  page.off('request', record);
  assert.equal((await quickReplies(owner.token)).some((r) => r.title.startsWith('Checking')), false, 'a refused reply was stored');

  await page.fill('#qr-group', 'Waiting');
  await page.click('dialog.dialog[open] button[type="submit"]');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
  const saved = (await quickReplies(owner.token)).find((r) => r.title === 'Checking now');
  assert.deepEqual({ body: saved?.body, group: saved?.group }, { body: 'Thanks for waiting, I am checking now.', group: 'Waiting' });
});

test('an agent sees team replies read-only, edits their own, and the server refuses them the team\'s', STEP, async () => {
  ada.context = await visitorContext(browser, { viewport: { width: 1280, height: 800 } });
  const p = await consolePage(ada.context);
  await signIn(p, server, ada.email, ada.password);
  const links = await p.$$eval('.topnav-link', (els) => els.map((e) => e.dataset.page));
  assert.deepEqual(links, ['inbox', 'search', 'replies']);
  await openConsolePage(p, 'replies', `.reply[data-id="${replies.shipping}"]`);
  assert.equal(await p.$$eval(`.reply[data-id="${replies.shipping}"] button`, (els) => els.length), 0);
  await waitForText(p, '#replies-team .card-sub', 'admins change them');

  await p.click(`.reply[data-id="${replies.adaHello}"] [data-action="edit-reply"]`);
  await p.fill('#qr-body', 'Hi, Ada here. How can I help?');
  await p.click('dialog.dialog[open] button[type="submit"]');
  await p.waitForSelector('dialog.dialog', { state: 'detached' });
  await waitForText(p, `.reply[data-id="${replies.adaHello}"] .reply-body`, 'How can I help?');
  assert.equal((await quickReplies(ada.token)).find((r) => r.id === replies.adaHello).body, 'Hi, Ada here. How can I help?');

  // A new reply from an agent can only be personal: the choice is made for them.
  await p.click('[data-action="add-reply"]');
  await p.waitForSelector('dialog.dialog[open] #qr-personal');
  assert.equal(await p.isChecked('#qr-personal'), true);
  assert.equal(await p.isDisabled('#qr-personal'), true);
  await p.keyboard.press('Escape');

  for (const [method, body] of [['PATCH', { title: 'Hijacked' }], ['DELETE']]) {
    const res = await http(server.url, `/api/v1/quick-replies/${replies.shipping}`, { method, token: ada.token, body });
    assert.equal(res.status, 403, `${method}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  assert.equal((await quickReplies(owner.token)).find((r) => r.id === replies.shipping).title, 'Shipping & delivery');
  await p.close();
});

test('a keyword auto-reply set up in the form answers a visitor; the automations survive a reload', STEP, async () => {
  await openConsolePage(page, 'settings', '#site-automation');
  await page.fill('[data-k="away-en"]', 'We are away; we answer first thing tomorrow.');
  await page.click('[data-k="kw-add"]');
  // Adding focuses the new item's first field.
  await page.waitForFunction(() => document.activeElement?.dataset.k === 'kw-0-keywords');
  await page.keyboard.type('refund');
  await page.keyboard.press('Enter');
  await page.keyboard.type('退款');
  await page.keyboard.press('Enter');
  await page.fill('[data-k="kw-0-reply-en"]', 'Refunds take 3–5 days.');
  await page.fill('[data-k="kw-0-reply-zh-CN"]', '退款需要 3–5 天。');
  await page.check('[data-k="close-enabled"]');
  await page.fill('[data-k="close-minutes"]', '45');
  await page.fill('[data-k="close-notice-en"]', 'We closed this chat after a quiet while.');
  await page.click('[data-k="inv-add"]');
  await page.fill('[data-k="inv-0-url"]', '/pricing');
  await page.fill('[data-k="inv-0-after"]', '20');
  await page.fill('[data-k="inv-0-message-en"]', 'Questions about our plans?');

  // An empty second auto-reply is named before anything is sent; removing it fixes that.
  await page.click('[data-k="kw-add"]');
  await page.click('[data-action="save-site"]');
  await waitForText(page, '.save-msg--error', 'Auto-reply 2: add at least one keyword.');
  await page.waitForSelector('[data-k="kw-1-keywords"][aria-invalid="true"]');
  await page.focus('button[aria-label="Remove Auto-reply 2"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('[data-k="kw-1-keywords"]', { state: 'detached' });
  await saveSite(page);

  const automation = (await siteJson()).automation;
  assert.deepEqual(automation, {
    away_reply: { en: 'We are away; we answer first thing tomorrow.' },
    keyword_replies: [{ keywords: ['refund', '退款'], reply: { en: 'Refunds take 3–5 days.', 'zh-CN': '退款需要 3–5 天。' } }],
    auto_close_seconds: 45 * 60,
    close_notice: { en: 'We closed this chat after a quiet while.' },
    invitations: [{ url_contains: '/pricing', after_seconds: 20, message: { en: 'Questions about our plans?' } }],
  });

  // In effect: a visitor's message over HTTP gets the auto-reply.
  const visitor = await newConversation(server);
  const sent = await http(server.url, `/api/v1/conversations/${visitor.conversation}/messages`, {
    method: 'POST', token: visitor.token, body: { client_msg_id: msgId('kw'), text: 'Hello, I want a REFUND for order 12' },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  await waitFor(async () => (await fullHistory(server, visitor.conversation, visitor.token))
    .some((e) => e.kind === 'message' && e.author.role === 'system' && e.body.text === 'Refunds take 3–5 days.'), 'the keyword auto-reply');

  await reloadSettings(page);
  assert.deepEqual(await page.$$eval('#site-automation .list-item:first-child .chip', (els) => els.map((e) => e.textContent)), ['refund', '退款']);
  assert.equal(await page.inputValue('[data-k="kw-0-reply-zh-CN"]'), '退款需要 3–5 天。');
  assert.equal(await page.inputValue('[data-k="away-en"]'), 'We are away; we answer first thing tomorrow.');
  assert.equal(await page.isChecked('[data-k="close-enabled"]'), true);
  assert.equal(await page.inputValue('[data-k="close-minutes"]'), '45');
  assert.equal(await page.inputValue('[data-k="inv-0-url"]'), '/pricing');
  assert.equal(await page.inputValue('[data-k="inv-0-after"]'), '20');
  assert.ok(await page.$('.save-bar:not(.is-dirty)'), 'a fresh page has nothing to save');
});

test('translation is set up through the form: the server\'s refusal is shown, the key is kept and never shown', STEP, async () => {
  await page.check('[data-k="translation-enabled"]');
  await page.selectOption('select[data-k="translation-provider"]', 'openai');
  // The OpenAI-compatible service takes a model: the form shows its field now.
  await page.waitForSelector('[data-k="translation-model"]');
  await page.fill('[data-k="translation-agent_language"]', 'zh');
  await page.fill('[data-k="translation-model"]', 'local-model');
  await page.fill('[data-k="translation-timeout_ms"]', '5');
  await page.fill('[data-k="translation-api-key"]', TRANSLATION_KEY);
  // Plain http to a private address: only the server knows it may not (no WEBHOOK_ALLOW_PRIVATE).
  await page.fill('[data-k="translation-endpoint"]', 'http://127.0.0.1:9/v1');
  await page.click('[data-action="save-site"]');
  // The server names the field it refused: the form says which, and marks it.
  await waitForText(page, '.save-msg--error', 'Endpoint: this address is not allowed.');
  assert.equal(await page.getAttribute('[data-k="translation-endpoint"]', 'aria-invalid'), 'true');
  assert.equal((await siteJson()).translation.enabled, false, 'nothing changed');

  await page.fill('[data-k="translation-endpoint"]', 'https://translate.example.test/v1');
  await saveSite(page);
  const { translation } = await siteJson();
  assert.deepEqual(translation, {
    enabled: true, agent_language: 'zh', provider: 'openai', endpoint: 'https://translate.example.test/v1', model: 'local-model', timeout_ms: 5000, api_key_set: true,
  });
  assert.equal((await storedSite()).translation.api_key, TRANSLATION_KEY);

  await reloadSettings(page);
  assert.equal(await page.isChecked('[data-k="translation-enabled"]'), true);
  assert.equal(await page.inputValue('select[data-k="translation-provider"]'), 'openai');
  assert.equal(await page.inputValue('[data-k="translation-endpoint"]'), 'https://translate.example.test/v1');
  assert.equal(await page.inputValue('[data-k="translation-timeout_ms"]'), '5');
  await waitForText(page, '#site-translation [data-key-state="set"]', 'A key is set');
  await assertKeyNotShown(page, TRANSLATION_KEY);

  // Another field changed, the key not retyped: the stored key stays.
  await page.fill('[data-k="translation-timeout_ms"]', '6');
  await saveSite(page);
  assert.equal((await storedSite()).translation.api_key, TRANSLATION_KEY);
  // Replace: the new key is stored.
  await page.click('[data-k="translation-api-key-replace"]');
  await page.waitForFunction(() => document.activeElement?.dataset.k === 'translation-api-key');
  await page.keyboard.type('sk-translate-second');
  await saveSite(page);
  const stored = (await storedSite()).translation;
  assert.equal(stored.api_key, 'sk-translate-second');
  assert.equal(stored.timeout_ms, 6000);
});

test('the bot is set up through the form and survives a reload; its key is never shown', STEP, async () => {
  await page.check('[data-k="bot-enabled"]');
  await page.fill('[data-k="bot-name"]', '');
  await page.click('[data-action="save-site"]');
  await waitForText(page, '.save-msg--error', 'Name: enter a value.');
  await page.waitForSelector('[data-k="bot-name"][aria-invalid="true"]');

  await page.fill('[data-k="bot-name"]', 'Tea Bot');
  await page.fill('[data-k="bot-model"]', 'local');
  await page.fill('[data-k="bot-endpoint"]', 'https://llm.example.test/v1');
  await page.fill('[data-k="bot-api-key"]', BOT_KEY);
  await page.fill('[data-k="bot-knowledge"]', 'Shipping takes 3 days within the EU.\nReturns within 30 days.');
  await page.click('#site-bot button[aria-label="Remove agent"]');
  await page.fill('[data-k="bot-handoff_keywords"]', 'manager');
  await page.press('[data-k="bot-handoff_keywords"]', 'Enter');
  await page.fill('[data-k="bot-timeout_ms"]', '10');
  await saveSite(page);

  const { bot } = await siteJson();
  const fields = ['enabled', 'name', 'endpoint', 'model', 'knowledge', 'handoff_keywords', 'timeout_ms', 'api_key_set'];
  assert.deepEqual(Object.fromEntries(fields.map((f) => [f, bot[f]])), {
    enabled: true, name: 'Tea Bot', endpoint: 'https://llm.example.test/v1', model: 'local',
    knowledge: 'Shipping takes 3 days within the EU.\nReturns within 30 days.',
    handoff_keywords: ['human', 'person', '人工', '转人工', 'manager'], timeout_ms: 10_000, api_key_set: true,
  });
  assert.equal(bot.api_key, undefined);
  assert.equal((await storedSite()).bot.api_key, BOT_KEY);

  await reloadSettings(page);
  assert.equal(await page.isChecked('[data-k="bot-enabled"]'), true);
  assert.equal(await page.inputValue('[data-k="bot-name"]'), 'Tea Bot');
  assert.equal(await page.inputValue('[data-k="bot-knowledge"]'), 'Shipping takes 3 days within the EU.\nReturns within 30 days.');
  assert.deepEqual(await page.$$eval('#site-bot .chip', (els) => els.map((e) => e.textContent)), ['human', 'person', '人工', '转人工', 'manager']);
  await waitForText(page, '#site-bot [data-key-state="set"]', 'A key is set');
  await assertKeyNotShown(page, BOT_KEY);
  await assertKeyNotShown(page, 'sk-translate-second');

  // Another field changed, the key not retyped: the stored key stays.
  await page.fill('[data-k="bot-name"]', 'Tea Bot 2');
  await saveSite(page);
  await waitForText(page, '#site-bot [data-key-state="set"]', 'A key is set');
  const stored = (await storedSite()).bot;
  assert.equal(stored.name, 'Tea Bot 2');
  assert.equal(stored.api_key, BOT_KEY);
});

test('the bot\'s kind shows only its fields: the team\'s own bot keeps URL and secret, and its key can be removed', STEP, async () => {
  const shown = (k) => page.$(`[data-k="${k}"]`).then(Boolean);
  const labelOf = (k) => page.$eval(`[data-k="${k}"]`, (e) => e.labels[0].textContent);

  // Workers AI: no endpoint or key; its model is one of its own (the default, as the server would ask).
  await page.selectOption('select[data-k="bot-kind"]', 'workers_ai');
  await page.waitForFunction(() => !document.querySelector('[data-k="bot-endpoint"]'));
  assert.equal(await shown('bot-api-key-replace'), false);
  assert.equal(await page.inputValue('[data-k="bot-model"]'), '@cf/meta/llama-3.1-8b-instruct');
  assert.equal(await shown('bot-knowledge'), true);
  // Focus stays on the chooser after the form is drawn again (keyboard users go on from there).
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.k), 'bot-kind');

  // The team's own bot: URL and signing secret, no name, model or knowledge; the hint points to the API keys page.
  await page.selectOption('select[data-k="bot-kind"]', 'webhook');
  await page.waitForSelector('[data-k="bot-endpoint"]');
  for (const k of ['bot-model', 'bot-knowledge', 'bot-name']) assert.equal(await shown(k), false, `${k} is hidden for the webhook bot`);
  assert.equal(await labelOf('bot-endpoint'), 'Bot URL');
  await waitForText(page, '#site-bot .field', 'Signing secret');
  await waitForText(page, '#site-bot .field-hint', 'Parley-Signature');
  assert.equal(await page.getAttribute('[data-k="bot-api-keys-link"]', 'href'), '#/api-keys');
  await page.fill('[data-k="bot-endpoint"]', 'https://bot.example.test/parley');
  await page.click('[data-k="bot-api-key-replace"]');
  await page.waitForFunction(() => document.activeElement?.dataset.k === 'bot-api-key');
  await page.keyboard.type('whsec-team-bot');
  await saveSite(page);

  const { bot } = await siteJson();
  assert.deepEqual({ kind: bot.kind, endpoint: bot.endpoint, api_key_set: bot.api_key_set }, { kind: 'webhook', endpoint: 'https://bot.example.test/parley', api_key_set: true });
  assert.equal((await storedSite()).bot.api_key, 'whsec-team-bot');

  await reloadSettings(page);
  assert.equal(await page.inputValue('select[data-k="bot-kind"]'), 'webhook');
  assert.equal(await page.inputValue('[data-k="bot-endpoint"]'), 'https://bot.example.test/parley');
  assert.equal(await shown('bot-model'), false);
  assert.equal(await shown('bot-knowledge'), false);
  await waitForText(page, '#site-bot [data-key-state="set"]', 'A key is set');
  await assertKeyNotShown(page, 'whsec-team-bot');

  // Remove: said before saving, undone with Keep, done with Save.
  await page.click('[data-k="bot-api-key-remove"]');
  await waitForText(page, '#site-bot [data-key-state="removing"]', 'Removed when you save');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.k), 'bot-api-key-keep');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#site-bot [data-key-state="set"]');
  assert.ok(await page.$('.save-bar:not(.is-dirty)'), 'keeping the key leaves nothing to save');
  // An enabled webhook bot needs its signing secret (the server refuses it without); switched off, it may go.
  await page.uncheck('[data-k="bot-enabled"]');
  await page.click('[data-k="bot-api-key-remove"]');
  await saveSite(page);
  assert.equal((await siteJson()).bot.api_key_set, false);
  assert.equal((await storedSite()).bot.api_key ?? null, null);
  // No key now: the input for one, empty.
  assert.equal(await page.getAttribute('[data-k="bot-api-key"]', 'placeholder'), 'No key set');
  assert.equal(await page.$('#site-bot [data-key-state]'), null);
});

test('the owner makes an API key, sees it once and copies it; it works until it is revoked', STEP, async () => {
  // From the webhook bot's hint to the API keys page.
  await page.click('[data-k="bot-api-keys-link"]');
  await page.waitForSelector('.topnav-link[data-page="api-keys"][aria-current="page"]');
  await waitForText(page, '.page--api-keys', 'No API keys yet.');

  // At least one scope: the form says so before anything is sent.
  await page.click('[data-action="new-key"]');
  await page.waitForSelector('dialog.dialog[open] input[name="key-name"]');
  assert.equal(await page.evaluate(() => document.activeElement?.name), 'key-name');
  await page.keyboard.type('CRM <b>sync</b>');
  assert.equal(await page.isChecked('dialog input[name="scope"][value="read"]'), true, 'reading only, unless asked');
  await page.uncheck('dialog input[name="scope"][value="read"]');
  await page.press('dialog input[name="key-name"]', 'Enter');
  await waitForText(page, 'dialog.dialog[open] .form-error', 'Choose at least one scope.');
  await waitForText(page, 'dialog.dialog[open] .scope-option', 'Every method');
  await page.check('dialog input[name="scope"][value="read"]');
  await page.check('dialog input[name="scope"][value="write"]');
  await page.press('dialog input[name="key-name"]', 'Enter');

  // Shown once, with a warning that says so.
  await page.waitForSelector('dialog.dialog--secret[open] .secret-text');
  const key = await page.textContent('dialog.dialog--secret .secret-text');
  assert.match(key, /^pk_k_[a-z0-9]+\.[A-Za-z0-9_-]{20,}$/i);
  await waitForText(page, 'dialog.dialog--secret .secret-warning', 'it will not be shown again');
  const secret = key.split('.')[1];

  // No clipboard: the key is selected on screen instead, for Ctrl+C.
  await page.evaluate(() => {
    window.realClipboard = navigator.clipboard.writeText;
    navigator.clipboard.writeText = () => Promise.reject(new Error('denied'));
    window.realExecCommand = document.execCommand;
    document.execCommand = () => false;
  });
  await page.click('dialog.dialog--secret .copy-btn');
  await waitForText(page, 'dialog.dialog--secret .copy-btn', 'Selected: press Ctrl+C');
  assert.equal(await page.evaluate(() => getSelection().toString()), key);
  await page.evaluate(() => {
    navigator.clipboard.writeText = window.realClipboard;
    document.execCommand = window.realExecCommand;
  });
  // With the clipboard: copied.
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  await page.click('dialog.dialog--secret .copy-btn');
  await waitForText(page, 'dialog.dialog--secret .copy-btn', 'Copied');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
  // Shown once: neither Escape nor a click beside it closes it, only Done.
  await page.keyboard.press('Escape');
  await page.mouse.click(5, 5);
  assert.ok(await page.$('dialog.dialog--secret[open]'), 'still open');
  assert.equal(await page.$('dialog.dialog--secret .dialog-head .icon-btn'), null, 'no close button');
  await page.click('dialog.dialog--secret .dialog-actions button');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });

  // Listed: the name as text, its scopes, who made it (by name).
  const row = 'tr[data-key]';
  await page.waitForSelector(row);
  const keyId = await page.getAttribute(row, 'data-key');
  assert.equal(key.startsWith(`pk_${keyId}.`), true);
  assert.equal(await page.textContent(`${row} .who-name`), 'CRM <b>sync</b>');
  assert.equal(await page.$(`${row} .who-name b`), null);
  assert.deepEqual(await page.$$eval(`${row} .chip`, (els) => els.map((e) => e.textContent)), ['Read', 'Write']);
  const ownerName = (await http(server.url, '/api/v1/me', { token: owner.token })).body.principal.name;
  assert.equal(await page.textContent(`${row} td:nth-child(3)`), ownerName);

  // The key works against the API, reading and writing.
  assert.equal((await http(server.url, '/api/v1/conversations', { token: key })).status, 200);
  const visitor = await newConversation(server);
  const sent = await http(server.url, `/api/v1/conversations/${visitor.conversation}/messages`, {
    method: 'POST', token: key, body: { client_msg_id: msgId('key'), text: 'Synced from the CRM.' },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));

  // After a reload: listed, used, and its secret nowhere in the page.
  await waitFor(async () => (await http(server.url, '/api/v1/api-keys', { token: owner.token })).body.keys.find((k) => k.id === keyId)?.last_used_at, 'the key\'s last use');
  await page.reload();
  await page.waitForSelector(row, { timeout: 20_000 });
  assert.notEqual(await page.textContent(`${row} td:nth-child(5)`), 'Never');
  await assertKeyNotShown(page, secret);

  // Revoke asks first: Escape keeps the key, Revoke ends it.
  const revoke = `${row} [data-action="revoke"]`;
  assert.equal(await page.getAttribute(revoke, 'aria-label'), 'Revoke CRM <b>sync</b>');
  await page.focus(revoke);
  await page.keyboard.press('Enter');
  await waitForText(page, 'dialog.dialog[open] .dialog-title', 'Revoke “CRM <b>sync</b>”?');
  await page.keyboard.press('Escape');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
  assert.equal((await http(server.url, '/api/v1/conversations', { token: key })).status, 200);
  await page.click(revoke);
  await page.click('dialog.dialog[open] button[type="submit"]');
  await page.waitForSelector(`${row}.is-disabled`);
  await waitForText(page, `${row} .pill`, 'Revoked');
  assert.equal(await page.$(revoke), null, 'a revoked key has nothing left to revoke');
  await page.waitForFunction(() => document.activeElement?.dataset.action === 'new-key');
  assert.equal((await http(server.url, '/api/v1/conversations', { token: key })).status, 401);

  // Revoked elsewhere meanwhile: the server's refusal shows in the dialog.
  const other = await http(server.url, '/api/v1/api-keys', { method: 'POST', token: owner.token, body: { name: 'Nightly export', scopes: ['read', 'export'] } });
  assert.equal(other.status, 201, JSON.stringify(other.body));
  await page.reload();
  const otherRow = `tr[data-key="${other.body.id}"]`;
  await page.waitForSelector(otherRow, { timeout: 20_000 });
  assert.equal((await http(server.url, `/api/v1/api-keys/${other.body.id}`, { method: 'DELETE', token: owner.token })).status, 204);
  await page.click(`${otherRow} [data-action="revoke"]`);
  await page.click('dialog.dialog[open] button[type="submit"]');
  await waitForText(page, 'dialog.dialog[open] .form-error', 'Not found.');
  await page.keyboard.press('Escape');
});

test('an agent has no API keys page, and the server refuses them the keys', STEP, async () => {
  const p = await consolePage(ada.context);
  await p.goto(`${server.url}/console/`);
  await p.waitForSelector('.topbar .status-select', { timeout: 20_000 });
  const links = await p.$$eval('.topnav-link', (els) => els.map((e) => e.dataset.page));
  assert.deepEqual(links, ['inbox', 'search', 'replies']);
  // Typing the page's address lands in the inbox.
  await p.evaluate(() => { location.hash = '#/api-keys'; });
  await p.waitForFunction(() => location.hash === '#/inbox');
  assert.equal(await p.$('.pages:not([hidden]) .page-title'), null);
  for (const [method, body] of [['GET'], ['POST', { name: 'Mine', scopes: ['read'] }]]) {
    const res = await http(server.url, '/api/v1/api-keys', { method, token: ada.token, body });
    assert.equal(res.status, 403, `${method}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  await p.close();
});
