// The console's admin forms when the sign-in ends under them, and when the server refuses a
// value, in a real browser (Debian's Chromium through playwright-core) against the built
// Worker. Needs `node console/build.mjs` first (public/console/).
//
// Sign-in: the owner's session is signed out by another request (POST /api/v1/agent/logout
// with its cookie) while they edit: with unsaved edits the console stays, under a dialog to sign
// in again, and carries on where it was (a save refused meanwhile is sent again); another
// account signing in there gets a fresh console without the edits, and so does an agent whose
// permissions an admin changed (the change ends their sessions); an edit being made in a dialog
// survives too; while the dialog is up, nothing of the console shows or takes focus; with
// nothing unsaved it is back to the login screen. The dialog has a language menu of its own and
// follows a language picked in another tab.
// Refusals: a webhook URL and an allowed origin the server refuses are named, and their control
// marked and focused. Labels: a visitor's device and a webhook delivery's failure read in the
// admin's language (the failure's from its stable code, whatever the words), the server's own
// words kept as the title.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentLogin, createAgent, http, msgId, newConversation, siteId } from '../support/client.mjs';
import { startServer } from '../support/server.mjs';
import { CHROMIUM, launch, openConsolePage, signIn, visitorContext, waitFor, waitForText } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STEP = { timeout: 120_000 };

let server;
let browser;
let context;
let page;
let owner;
let site;
let receiver;
const ben = { name: 'Ben Admin', email: 'ben.admin@parley.local', password: 'correct horse battery', role: 'admin' };
const pageErrors = [];

/** The console's session token, from its HttpOnly cookie (out of the page's reach). */
async function sessionToken() {
  return (await context.cookies()).find((c) => c.name === 'parley_session')?.value ?? null;
}

/** Signs the console's session out from another request, as signing out elsewhere does. */
async function endSession() {
  const token = await sessionToken();
  assert.ok(token, 'the console holds a session');
  const res = await http(server.url, '/api/v1/agent/logout', { method: 'POST', token });
  assert.ok(res.status < 300, JSON.stringify(res.body));
}

const storedSite = async () => (await http(server.url, `/api/v1/sites/${site}`, { token: owner.token })).body;

/** Waits for the sign-in dialog over the console (of `on`, the owner's page unless told); fills and sends it. */
async function signInAgain({ email, password = server.password, on = page } = {}) {
  await on.waitForSelector('dialog.dialog--reauth[open] #reauth-password', { timeout: 15_000 });
  if (email) await on.fill('#reauth-email', email);
  await on.fill('#reauth-password', password);
  await on.click('dialog.dialog--reauth button[type="submit"]');
  await on.waitForSelector('dialog.dialog--reauth', { state: 'detached', timeout: 15_000 });
}

/** A visitor's conversation with one message in it: { visitorId, token, conversation }. */
async function visitorSays(text, identity) {
  const visitor = await newConversation(server);
  if (identity) {
    const named = await http(server.url, '/api/v1/visitor/identify', { method: 'POST', token: visitor.token, body: identity });
    assert.equal(named.status, 200, JSON.stringify(named.body));
  }
  const sent = await http(server.url, `/api/v1/conversations/${visitor.conversation}/messages`, {
    method: 'POST', token: visitor.token, body: { client_msg_id: msgId('s'), text },
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  return visitor;
}

/** Opens a conversation from the Team list and starts a new quick reply from its composer: an edit in a dialog. */
async function openWithUnsavedReply(on, conversation, text) {
  await on.click('#list-tab-team');
  await on.click(`.conv-item[data-id="${conversation}"]`, { timeout: 15_000 });
  await waitForText(on, `.conv[data-conversation="${conversation}"] .msg--in .text`, text);
  await on.focus(`.conv[data-conversation="${conversation}"] .composer-input`);
  await on.keyboard.type('/');
  await on.click('.qr-popover:not([hidden]) .popover-foot button');
  await on.waitForSelector('dialog.dialog[open] #qr-title');
  await on.fill('#qr-title', 'Half-written reply');
}

/** Signs the owner in where the page shows no console (an earlier test left it signed out). */
async function consoleShown() {
  if (!(await page.$('.topbar .status-select'))) await signIn(page, server);
}

/** Opens the site page and waits for its form. */
async function openSettings() {
  await consoleShown();
  await openConsolePage(page, 'settings', '[data-k="name"]');
}

before(async () => {
  assert.ok(existsSync(join(ROOT, 'public', 'console', 'app.js')), 'run `node console/build.mjs` first');
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium`);
  // A receiver on loopback that refuses every delivery (webhooks may go to private addresses here).
  receiver = createServer((req, res) => {
    req.resume();
    res.writeHead(500).end('no');
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  // Sign-ins are what this file is about: more of them than the default limit lets through.
  server = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true', RATE_LOGINS: '100/10' } });
  owner = await agentLogin(server);
  site = await siteId(server, owner.token);
  await createAgent(server, ben);
  browser = await launch();
  context = await visitorContext(browser, { viewport: { width: 1440, height: 900 } });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await new Promise((resolve) => receiver?.close(resolve));
  assert.deepEqual(pageErrors, [], 'uncaught errors in the console page');
  assert.deepEqual(context?.offsite ?? [], [], 'requests that left the server');
});

test('a sign-in ended elsewhere while site settings are edited: the edits stay, under a dialog to sign in again', STEP, async () => {
  await openSettings();
  const before = await storedSite();
  await page.fill('[data-k="name"]', 'Shop renamed across a sign-in');
  await endSession();
  // The console's socket is told at once: the dialog, not the login screen.
  await page.waitForSelector('dialog.dialog--reauth[open]', { timeout: 15_000 });
  assert.equal(await page.$('#login-email'), null, 'the console stays');
  await waitForText(page, 'dialog.dialog--reauth', 'You were signed out');
  assert.equal(await page.inputValue('#reauth-email'), server.email, 'the e-mail is filled in');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'reauth-password');
  // A wrong password is refused in the dialog, which stays.
  await page.fill('#reauth-password', 'not the password');
  await page.click('dialog.dialog--reauth button[type="submit"]');
  await page.waitForFunction(() => document.querySelector('#reauth-msg')?.textContent.trim().length > 0);
  assert.equal((await storedSite()).name, before.name);

  // The dialog covers the console's language menu, so it has its own: its words change, what
  // is typed stays. The console's other tabs follow the language picked here, and it follows
  // theirs: a sign-in page there keeps what was typed into it.
  const otherTab = await context.newPage();
  otherTab.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    await otherTab.goto(`${server.url}/console/`);
    await otherTab.waitForSelector('.login-foot .lang-select');
    await otherTab.fill('#login-email', 'someone@parley.local');
    await otherTab.fill('#login-password', 'typed in the other tab');
    await page.fill('#reauth-password', 'half typed');
    await page.selectOption('dialog.dialog--reauth .lang-select', 'zh-CN');
    await waitForText(page, 'dialog.dialog--reauth .dialog-title', '重新登录');
    await waitForText(page, 'dialog.dialog--reauth', '你已退出登录，请重新登录。');
    await waitForText(page, 'dialog.dialog--reauth button[type="submit"]', '登录');
    assert.equal(await page.getAttribute('dialog.dialog--reauth .lang-select', 'aria-label'), '语言');
    assert.equal(await page.inputValue('#reauth-password'), 'half typed');
    await waitForText(otherTab, '.login-title', '登录你的收件箱');
    assert.equal(await otherTab.inputValue('#login-email'), 'someone@parley.local');
    assert.equal(await otherTab.inputValue('#login-password'), 'typed in the other tab');

    await otherTab.selectOption('.login-foot .lang-select', 'en');
    await waitForText(page, 'dialog.dialog--reauth .dialog-title', 'Sign in again');
    await waitForText(page, 'dialog.dialog--reauth', 'You were signed out. Please sign in again.');
    assert.equal(await page.inputValue('dialog.dialog--reauth .lang-select'), 'en');
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.equal(await page.inputValue('#reauth-password'), 'half typed');
  } finally {
    await otherTab.close();
    // Whatever failed above, the tests after this one read English.
    await page.evaluate(() => localStorage.setItem('parley.console.lang', '"en"'));
  }

  await signInAgain();
  assert.equal(await page.inputValue('[data-k="name"]'), 'Shop renamed across a sign-in', 'the edit is still there');
  await page.click('[data-action="save-site"]');
  await page.waitForSelector('.save-msg--info', { timeout: 15_000 });
  assert.equal((await storedSite()).name, 'Shop renamed across a sign-in');
  // The console is signed in for real: its socket is live again and other tabs know the session.
  assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('parley.console.session'))?.agent?.email), server.email);
  const me = await http(server.url, '/api/v1/me', { token: await sessionToken() });
  assert.equal(me.status, 200);
});

test('a save refused because the sign-in ended is sent again once the agent has signed in again', STEP, async () => {
  await openSettings();
  await page.fill('[data-k="name"]', 'Saved after signing in again');
  const patches = [];
  page.on('response', (r) => {
    if (r.request().method() === 'PATCH' && r.url().endsWith(`/api/v1/sites/${site}`)) patches.push(r.status());
  });
  // The session ends just before the save reaches the server.
  let ended = false;
  await page.route(`**/api/v1/sites/${site}`, async (route) => {
    if (route.request().method() === 'PATCH' && !ended) {
      ended = true;
      await endSession();
    }
    await route.continue();
  });
  await page.click('[data-action="save-site"]');
  await signInAgain();
  // Saved without another click: the same change went again.
  await page.waitForSelector('.save-msg--info', { timeout: 15_000 });
  await page.unroute(`**/api/v1/sites/${site}`);
  assert.deepEqual(patches, [401, 204]);
  assert.equal((await storedSite()).name, 'Saved after signing in again');
});

test('another account signing in from the dialog gets a fresh console: the edits are not saved under its name', STEP, async () => {
  await openSettings();
  const before = await storedSite();
  await page.fill('[data-k="name"]', 'Not for Ben to save');
  await endSession();
  await signInAgain({ email: ben.email, password: ben.password });
  await page.waitForFunction((email) => JSON.parse(localStorage.getItem('parley.console.session'))?.agent?.email === email, ben.email);
  // Ben's console shows what is stored, and nothing was saved.
  await page.waitForFunction((name) => document.querySelector('[data-k="name"]')?.value === name, before.name, { timeout: 15_000 });
  assert.equal((await storedSite()).name, before.name);
  const { results } = await server.d1("SELECT actor_id FROM audit_log WHERE action = 'site_updated' AND actor_id = (SELECT id FROM agents WHERE email = ?1)", [ben.email]);
  assert.equal(results.length, 0, 'no change in Ben\'s name');
  // Back to the owner, from the login screen.
  await page.click('.topbar button[aria-label="Sign out"]');
  await page.waitForSelector('#login-email');
});

test('an agent being added in a dialog survives the sign-in ending', STEP, async () => {
  await consoleShown();
  await openConsolePage(page, 'agents', '.agents-table');
  await page.click('[data-action="add-agent"]');
  await page.waitForSelector('dialog.dialog[open] input[name="name"]');
  await page.fill('dialog input[name="name"]', 'Cara Agent');
  await page.fill('dialog input[name="email"]', 'cara.agent@parley.local');
  await endSession();
  await signInAgain();
  assert.equal(await page.inputValue('dialog.dialog[open] input[name="name"]'), 'Cara Agent');
  assert.equal(await page.inputValue('dialog.dialog[open] input[name="email"]'), 'cara.agent@parley.local');
  await page.click('dialog.dialog[open] .dialog-actions .btn-ghost');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
});

test('while the sign-in dialog is up, nothing of the console shows or takes focus; signing in again shows it as it was', STEP, async () => {
  await consoleShown();
  await openConsolePage(page, 'inbox', '#list-tab-team');
  const text = 'My order 4411 went to the wrong flat';
  const visitor = await visitorSays(text, { id: 'cust-4411', name: 'Rosa Visitor', email: 'rosa@example.com' });
  await openWithUnsavedReply(page, visitor.conversation, text);
  await waitForText(page, '.vp-name', 'Rosa Visitor');
  const message = page.locator('.conv .msg--in .text', { hasText: text });
  const shown = ['.topbar', '.vp-name', '.vp-email', '#qr-title'];
  for (const sel of shown) assert.ok(await page.isVisible(sel), `${sel} shows before`);
  assert.ok(await message.isVisible());

  await endSession();
  await page.waitForSelector('dialog.dialog--reauth[open] #reauth-password', { timeout: 15_000 });
  // The visitor's words and details, the conversation, the edit in its dialog: none of it shows.
  assert.equal(await message.isVisible(), false, 'the conversation shows behind the dialog');
  for (const sel of shown) assert.equal(await page.isVisible(sel), false, `${sel} shows behind the dialog`);
  assert.ok(await page.isVisible('#reauth-password'));
  // Nor can anything under the dialog take focus.
  const focusable = await page.evaluate(() => ['.composer-input', '.vp-email', '#qr-title', '.conv-item'].filter((sel) => {
    const el = document.querySelector(sel);
    el?.focus();
    return el && document.activeElement === el;
  }));
  assert.deepEqual(focusable, [], 'focusable behind the dialog');

  await signInAgain();
  for (const sel of shown) assert.ok(await page.isVisible(sel), `${sel} shows again`);
  assert.ok(await message.isVisible());
  assert.equal(await page.inputValue('#qr-title'), 'Half-written reply', 'the edit is still there');
  await page.click('dialog.dialog[open] .dialog-actions .btn-ghost');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
});

test('an agent whose permissions an admin changed gets a fresh console on signing in again: personal data masked, edits dropped', STEP, async () => {
  const dee = { name: 'Dee Agent', email: 'dee.agent@parley.local', password: 'correct horse battery', permissions: ['view_personal_data'] };
  const { agentId } = await createAgent(server, dee);
  const address = 'dee.customer@example.com';
  const text = `Please write to ${address}`;
  const visitor = await visitorSays(text);
  const deeContext = await visitorContext(browser, { viewport: { width: 1440, height: 900 } });
  try {
    const deePage = await deeContext.newPage();
    deePage.on('pageerror', (e) => pageErrors.push(e.message));
    await signIn(deePage, server, dee.email, dee.password);
    // Dee may see personal data: the address shows as the visitor wrote it.
    await openWithUnsavedReply(deePage, visitor.conversation, text);

    // An admin takes the permission away, which ends Dee's sessions.
    const changed = await http(server.url, `/api/v1/agents/${agentId}`, { method: 'PATCH', token: owner.token, body: { permissions: [] } });
    assert.equal(changed.status, 204, JSON.stringify(changed.body));
    await signInAgain({ on: deePage, password: dee.password });

    // Not the console Dee had: the edit is dropped and the address is masked.
    await deePage.waitForSelector('#qr-title', { state: 'detached', timeout: 15_000 });
    assert.equal(await deePage.evaluate(() => JSON.parse(localStorage.getItem('parley.console.session'))?.agent?.permissions?.view_personal_data), false);
    if (!(await deePage.$(`.conv[data-conversation="${visitor.conversation}"]`))) {
      await deePage.click('#list-tab-team');
      await deePage.click(`.conv-item[data-id="${visitor.conversation}"]`, { timeout: 15_000 });
    }
    await waitForText(deePage, `.conv[data-conversation="${visitor.conversation}"] .msg--in .text`, 'Please write to ');
    await waitForText(deePage, `.conv[data-conversation="${visitor.conversation}"] .msg--in .text`, '***');
    assert.ok(!(await deePage.textContent('body')).includes(address), 'the address is on screen');
  } finally {
    await deeContext.close();
  }
});

test('with nothing unsaved, a sign-in ended elsewhere goes back to the login screen', STEP, async () => {
  await consoleShown();
  await openConsolePage(page, 'inbox', '#list-tab-team');
  await endSession();
  await page.waitForSelector('#login-email', { timeout: 15_000 });
  await waitForText(page, '.login-msg--info', 'You were signed out');
  assert.equal(await page.$('dialog.dialog'), null);
  await signIn(page, server);
});

test('a webhook URL the server refuses is named, and its field marked and focused', STEP, async () => {
  await openSettings();
  await page.fill('[data-k="webhook-url"]', 'https://user:secret@hooks.example.com/parley');
  await page.click('[data-action="add-webhook"]');
  await waitForText(page, '.hook-add .form-error', 'URL: this address is not allowed.');
  assert.equal(await page.getAttribute('[data-k="webhook-url"]', 'aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.k), 'webhook-url');
});

test('an allowed origin the server refuses names the allowed origins, marked and focused', STEP, async () => {
  const long = `https://${'a'.repeat(200)}.example.com`;
  await page.fill('[data-k="origins"]', long);
  await page.click('[data-action="save-site"]');
  await waitForText(page, '.save-msg--error', 'Allowed origins: at most 50');
  assert.equal(await page.getAttribute('[data-k="origins"]', 'aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.k), 'origins');
  await page.click('.save-bar .btn-ghost');
});

test('a visitor\'s device and a failed webhook delivery read in the admin\'s language, the raw words as the title', STEP, async () => {
  const hook = await http(server.url, `/api/v1/sites/${site}/webhooks`, {
    method: 'POST', token: owner.token, body: { url: `http://127.0.0.1:${receiver.address().port}/hook`, events: ['conversation.created'] },
  });
  assert.equal(hook.status, 201, JSON.stringify(hook.body));
  const visitor = await newConversation(server);
  const ctx = await http(server.url, '/api/v1/visitor/context', {
    method: 'POST', token: visitor.token, body: { page: { url: 'https://shop.example/cart', title: 'Cart' }, device: 'mobile' },
  });
  assert.ok(ctx.status < 300, JSON.stringify(ctx.body));
  await http(server.url, `/api/v1/conversations/${visitor.conversation}/messages`, {
    method: 'POST', token: visitor.token, body: { client_msg_id: msgId('d'), text: 'Hello from my phone' },
  });

  // The delivery log: "HTTP 500", code http_status, reads as the receiver's refusal.
  const logPath = `/api/v1/sites/${site}/webhooks/${hook.body.id}/deliveries`;
  const failed = await waitFor(async () => {
    const log = await http(server.url, logPath, { token: owner.token });
    return log.body.deliveries?.find((d) => d.last_error);
  }, 'a failed delivery attempt');
  assert.equal(failed.error_code, 'http_status');
  await page.goto(`${server.url}/console/#/inbox`);
  await page.reload();
  await page.waitForSelector('.topbar .status-select, #login-email');
  await openSettings();
  await page.click(`.hook[data-webhook="${hook.body.id}"] [data-action="log"]`);
  await page.waitForSelector(`.hook[data-webhook="${hook.body.id}"] .log-error`);
  const logError = `.hook[data-webhook="${hook.body.id}"] .log-error`;
  const shown = await page.$eval(logError, (e) => ({ text: e.textContent.trim(), title: e.title }));
  assert.deepEqual(shown, { text: 'Refused by the receiver', title: 'HTTP 500' });
  // The label comes from the code, not from the words: the server rewording them changes the
  // title only.
  await page.route(`**${logPath}`, async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    for (const d of body.deliveries) if (d.last_error) d.last_error = `The receiver said no (${d.last_error})`;
    await route.fulfill({ response, json: body });
  });
  await page.click(`.hook[data-webhook="${hook.body.id}"] .log-head button`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.title.startsWith('The receiver said no'), logError);
  await page.unroute(`**${logPath}`);
  const reworded = await page.$eval(logError, (e) => ({ text: e.textContent.trim(), title: e.title }));
  assert.deepEqual(reworded, { text: 'Refused by the receiver', title: 'The receiver said no (HTTP 500)' });

  // The visitor's device in the sidebar.
  await openConsolePage(page, 'inbox', '#list-tab-team');
  await page.click('#list-tab-team');
  await page.click(`.conv-item[data-id="${visitor.conversation}"]`, { timeout: 15_000 });
  await page.waitForSelector('.sidebar [data-device]', { timeout: 15_000 });
  const device = await page.$eval('.sidebar [data-device]', (e) => ({ text: e.textContent, title: e.title }));
  assert.deepEqual(device, { text: 'Phone', title: 'mobile' });
});

test('a sign-in under way when the sign-in page changes language: the new form is busy, then shows the refusal', STEP, async () => {
  await consoleShown();
  await endSession();
  await page.waitForSelector('#login-email', { timeout: 15_000 });
  // The sign-in is held on its way until the page has been drawn again in Chinese.
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  let sent = false;
  let handled;
  await page.route('**/api/v1/agent/login', (route) => {
    sent = true;
    handled = held.then(() => route.continue());
    return handled;
  });
  try {
    await page.fill('#login-email', server.email);
    await page.fill('#login-password', 'not the password');
    await page.click('.login-form button[type=submit]');
    await waitFor(() => sent, 'the sign-in sent');
    await page.selectOption('.login-foot .lang-select', 'zh-CN');
    await waitForText(page, '.login-title', '登录你的收件箱');
    const submit = page.locator('.login-form button[type=submit]');
    assert.equal(await submit.textContent(), '正在登录…');
    assert.equal(await submit.isDisabled(), true, 'no second sign-in while one is under way');
    assert.equal(await page.getAttribute('.login-form', 'aria-busy'), 'true');
    assert.equal(await page.inputValue('#login-password'), 'not the password');

    release();
    // Asked in English, refused in English, shown on the form drawn since.
    await waitForText(page, '.login-msg--error', 'The e-mail or password is incorrect.');
    assert.equal(await submit.textContent(), '登录');
    assert.equal(await submit.isDisabled(), false);
    assert.equal(await page.getAttribute('.login-form', 'aria-busy'), null);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'login-password');
    assert.deepEqual(await page.$eval('#login-password', (e) => [e.selectionStart, e.selectionEnd, e.value.length]), [0, 16, 16]);
  } finally {
    release();
    await handled?.catch(() => {});
    await page.unroute('**/api/v1/agent/login');
  }

  // Signed in from another tab, this one shows the console; a language picked in it then
  // changes the console's words and does not draw the sign-in page over it again.
  const otherTab = await context.newPage();
  otherTab.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    await signIn(otherTab, server);
    await page.waitForSelector('.topbar .status-select', { timeout: 15_000 });
    await page.selectOption('.topbar .lang-select', 'en');
    // The language's listeners run as it changes: by the time the page says English, any
    // redraw has happened.
    await waitFor(async () => (await page.evaluate(() => document.documentElement.lang)) === 'en', 'English');
    assert.equal(await page.$('#login-email'), null, 'no sign-in page over the console');
    assert.ok(await page.$('.topbar .status-select'));
  } finally {
    await otherTab.close();
    await page.evaluate(() => localStorage.setItem('parley.console.lang', '"en"'));
  }
});
