// The console's pages for owners and admins in a real browser (Debian's Chromium through
// playwright-core) against the built Worker: add an agent, set business hours, read a report.
// Needs `node console/build.mjs` first (public/console/).
//
// One story, step by step: the owner adds an agent through the Agents page (the server's
// refusal of a taken e-mail is shown) and that agent signs in, sees neither the admin pages nor
// their data (the server refuses them too); the owner sets business hours that exclude the
// present moment and the widget config says closed; conversations seeded with the protocol
// client (replies, a close, a rating) show up in the report and its CSV download; search finds a
// message and opens its conversation; export downloads the messages; erasing a visitor closes
// their tabs; disabling the agent sends their console back to the login screen; signing out
// ends the session (the old token is answered 401 session_ended).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../support/server.mjs';
import { agentLogin, http, msgId, newConversation, siteId, sleep } from '../support/client.mjs';
import { CHROMIUM, launch, openConsolePage, signIn, waitForText } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STEP = { timeout: 120_000 };
const VARS = { RATE_VISITOR_MESSAGES: '500/50', RATE_AGENT_MESSAGES: '500/50' };
const ZONE = 'Asia/Shanghai';

let server;
let browser;
let context;
let page;
let owner;
let site;
/** The agent added through the UI: { email, password, id, page, context }. */
const bea = { name: 'Bea Chen', email: 'bea.chen@parley.local', password: 'blue-harbour-42' };
/** Conversations seeded for the report: { conversation, token, visitorId }. */
const seeded = [];
const pageErrors = [];
const offsite = [];

async function newContext(options = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-US', acceptDownloads: true, ...options });
  await ctx.route(/^(?!(https?|wss?):\/\/127\.0\.0\.1[:/])[a-z]+:\/\//, (route) => {
    offsite.push(route.request().url());
    return route.abort();
  });
  return ctx;
}

function watch(p) {
  p.on('pageerror', (e) => pageErrors.push(e.message));
  return p;
}

/**
 * The console's session cookie (HttpOnly: only the browser's own cookie jar shows it), after
 * checking it is set the way a session cookie must be; null when there is none.
 */
async function sessionCookie(context) {
  const cookie = (await context.cookies()).find((c) => c.name === 'parley_session');
  if (!cookie) return null;
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.secure, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(cookie.path, '/api/');
  return cookie.value;
}


/** Saves what a click downloads; resolves to its text. */
async function downloadText(p, selector) {
  const [download] = await Promise.all([p.waitForEvent('download', { timeout: 20_000 }), p.click(selector)]);
  return { name: download.suggestedFilename(), text: readFileSync(await download.path(), 'utf8') };
}

before(async () => {
  assert.ok(existsSync(join(ROOT, 'public', 'console', 'app.js')), 'run `node console/build.mjs` first');
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium`);
  server = await startServer({ vars: VARS });
  owner = await agentLogin(server);
  site = await siteId(server, owner.token);
  browser = await launch();
  context = await newContext();
  page = watch(await context.newPage());
});

after(async () => {
  await browser?.close();
  await server?.stop();
  assert.deepEqual(pageErrors, [], 'uncaught errors in the console page');
  assert.deepEqual(offsite, [], 'requests that left the server');
});

test('the owner adds an agent through the Agents page; a taken e-mail is refused with the server message', STEP, async () => {
  await signIn(page, server);
  const links = await page.$$eval('.topnav-link', (els) => els.map((e) => e.dataset.page));
  assert.deepEqual(links, ['inbox', 'search', 'replies', 'reports', 'agents', 'settings', 'api-keys', 'export']);
  await openConsolePage(page, 'agents', '.agents-table');

  await page.click('[data-action="add-agent"]');
  await page.waitForSelector('dialog.dialog[open] input[name="name"]');
  await page.fill('dialog input[name="name"]', bea.name);
  await page.fill('dialog input[name="email"]', bea.email);
  await page.fill('dialog input[name="password"]', bea.password);
  await page.fill('dialog input[name="capacity"]', '3');
  await page.fill('dialog input[name="departments"]', 'Billing');
  await page.press('dialog input[name="departments"]', 'Enter');
  await page.click('dialog button[type="submit"]');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
  await page.waitForSelector(`.agents-table tr[data-email="${bea.email}"]`);

  const listed = (await http(server.url, '/api/v1/agents', { token: owner.token })).body.agents.find((a) => a.email === bea.email);
  assert.ok(listed, 'the new agent is on the server');
  assert.equal(listed.name, bea.name);
  assert.equal(listed.role, 'agent');
  assert.equal(listed.capacity, 3);
  assert.deepEqual(listed.departments, ['Billing']);
  assert.deepEqual(listed.permissions, []);
  bea.id = listed.id;

  // Editing: capacity up, the export permission on, a new e-mail; only what changed is sent.
  await page.click(`.agents-table tr[data-email="${bea.email}"] [data-action="edit"]`);
  await page.waitForSelector('dialog.dialog[open] input[name="capacity"]');
  await page.fill('dialog input[name="capacity"]', '4');
  await page.check('dialog input[name="perm-export"]');
  // The owner's own address is taken: refused in the server's words, nothing saved.
  await page.fill('dialog input[name="email"]', server.email);
  await page.click('dialog button[type="submit"]');
  await waitForText(page, 'dialog .form-error', 'Another account already uses this e-mail address.');
  bea.email = 'bea.chen@billing.parley.local';
  await page.fill('dialog input[name="email"]', bea.email);
  await page.click('dialog button[type="submit"]');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
  await page.waitForSelector(`.agents-table tr[data-email="${bea.email}"]`);
  const edited = (await http(server.url, '/api/v1/agents', { token: owner.token })).body.agents.find((a) => a.id === bea.id);
  assert.equal(edited.email, bea.email);
  assert.equal(edited.capacity, 4);
  assert.deepEqual(edited.permissions, ['export']);
  await waitForText(page, `.agents-table tr[data-email="${bea.email}"]`, 'Export data');

  // The same e-mail again: the server refuses, and its words are shown in the dialog.
  await page.click('[data-action="add-agent"]');
  await page.fill('dialog input[name="name"]', 'Bea Again');
  await page.fill('dialog input[name="email"]', bea.email);
  await page.fill('dialog input[name="password"]', 'another-password-1');
  await page.click('dialog button[type="submit"]');
  await waitForText(page, 'dialog .form-error', 'Another account already uses this e-mail address.');
  const marked = () => page.$$eval('dialog.dialog[open] [aria-invalid="true"]', (els) => els.map((e) => e.getAttribute('name')));
  assert.deepEqual(await marked(), ['email']);
  // Tried again with another fault: only the field at fault now is marked, and focused.
  await page.fill('dialog input[name="name"]', '  ');
  await page.click('dialog button[type="submit"]');
  await waitForText(page, 'dialog .form-error', 'Enter a name.');
  assert.deepEqual(await marked(), ['name']);
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('name')), 'name');
  await page.keyboard.press('Escape');
  await page.waitForSelector('dialog.dialog', { state: 'detached' });
  const count = (await http(server.url, '/api/v1/agents', { token: owner.token })).body.agents.filter((a) => a.email === bea.email).length;
  assert.equal(count, 1);
});

test('the new agent signs in; they see no admin pages and the server refuses them anyway', STEP, async () => {
  bea.context = await newContext({ viewport: { width: 1280, height: 800 } });
  bea.page = watch(await bea.context.newPage());
  await signIn(bea.page, server, bea.email, bea.password);
  // Export comes with the permission; the admin pages never.
  await bea.page.waitForSelector('.topnav-link[data-page="export"]', { timeout: 10_000 });
  const links = await bea.page.$$eval('.topnav-link', (els) => els.map((e) => e.dataset.page));
  assert.deepEqual(links, ['inbox', 'search', 'replies', 'export']);
  // Typing an admin page's address lands in the inbox.
  for (const hash of ['#/agents', '#/reports', '#/settings', '#/api-keys']) {
    await bea.page.evaluate((h) => { location.hash = h; }, hash);
    await bea.page.waitForFunction(() => location.hash === '#/inbox');
    assert.equal(await bea.page.$('.pages:not([hidden]) .page-title'), null);
  }
  const token = await sessionCookie(bea.context);
  for (const [method, path, body] of [
    ['GET', '/api/v1/agents'],
    ['POST', '/api/v1/agents', { email: 'x@parley.local', name: 'X', password: 'long enough pw' }],
    ['GET', `/api/v1/reports`],
    ['GET', `/api/v1/sites/${site}`],
    ['PATCH', `/api/v1/sites/${site}`, { name: 'Hijacked' }],
    ['GET', `/api/v1/sites/${site}/webhooks`],
    ['DELETE', '/api/v1/visitors/v_aaaaaaaaaaaaaaaaaaaaaaaaaa'],
  ]) {
    const res = await http(server.url, path, { method, token, body });
    assert.equal(res.status, 403, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    assert.equal(res.body.code, 'forbidden');
  }
});

test('the owner sets business hours that exclude now; the widget config then says closed', STEP, async () => {
  await openConsolePage(page, 'settings', '[data-k="hours-enabled"]');
  await page.check('[data-k="hours-enabled"]');
  await page.selectOption('select[data-k="timezone"]', ZONE);
  // One span a day that does not contain the present moment in that zone.
  const hour = Number(new Intl.DateTimeFormat('en-GB', { timeZone: ZONE, hour: '2-digit', hourCycle: 'h23' }).format(new Date()));
  const span = hour <= 20
    ? [`${String(hour + 2).padStart(2, '0')}:00`, `${String(hour + 3).padStart(2, '0')}:00`]
    : ['01:00', '02:00'];
  for (const day of ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']) {
    await page.click(`[data-k="add-span-${day}"]`);
    await page.fill(`[data-k="span-${day}-0-open"]`, span[0]);
    await page.fill(`[data-k="span-${day}-0-close"]`, span[1]);
  }
  await page.fill('input[name="holiday"]', '2030-10-01');
  await page.waitForSelector('.field--holidays .chip');
  // The widget's light or dark look is set on the same page.
  assert.equal(await page.inputValue('select[data-k="theme"]'), 'auto');
  await page.selectOption('select[data-k="theme"]', 'dark');
  // Presence: the defaults are shown in seconds, and the new values are saved in milliseconds.
  assert.equal(await page.inputValue('[data-k="presence-timeout"]'), '180');
  assert.equal(await page.inputValue('[data-k="reconnect-grace"]'), '15');
  await page.fill('[data-k="presence-timeout"]', '240');
  await page.fill('[data-k="reconnect-grace"]', '45');
  // The page works out the same answer the server will.
  await page.waitForSelector('.hours-now [data-open="false"]');
  await page.click('[data-action="save-site"]');
  await page.waitForSelector('.save-msg--info', { timeout: 15_000 });
  assert.equal(await page.$('.save-msg--error'), null);

  const stored = (await http(server.url, `/api/v1/sites/${site}`, { token: owner.token })).body.routing.hours;
  assert.equal(stored.enabled, true);
  assert.equal(stored.timezone, ZONE);
  assert.deepEqual(stored.weekly.mon, [{ open: span[0], close: span[1] }]);
  assert.deepEqual(stored.weekly.sun, [{ open: span[0], close: span[1] }]);
  assert.deepEqual(stored.holidays, ['2030-10-01']);
  const routing = (await http(server.url, `/api/v1/sites/${site}`, { token: owner.token })).body.routing;
  assert.equal(routing.heartbeat_timeout_ms, 240_000);
  assert.equal(routing.reconnect_grace_ms, 45_000);
  const appearance = (await http(server.url, `/api/v1/sites/${site}`, { token: owner.token })).body.settings.appearance;
  assert.equal(appearance.theme, 'dark');

  // Sites are cached for up to a minute in the Worker: poll until the widget sees it.
  let config;
  for (let i = 0; i < 150; i += 1) {
    config = (await http(server.url, `/api/v1/widget/config?site=${server.siteKey}`)).body;
    if (config.open === false) break;
    await sleep(500);
  }
  assert.equal(config.open, false, JSON.stringify(config));
  assert.equal(config.online, false);

  // An invalid value is caught before it is sent, named, and nothing changes; Discard restores.
  await page.fill('[data-k="name"]', 'Demo shop, renamed');
  await page.fill('[data-k="answer-timeout"]', '2');
  await page.click('[data-action="save-site"]');
  await waitForText(page, '.save-msg--error', 'at least 5 seconds');
  await page.fill('[data-k="answer-timeout"]', '120');
  await page.fill('[data-k="reconnect-grace"]', '');
  await page.click('[data-action="save-site"]');
  await waitForText(page, '.save-msg--error', 'between 0 and 3600 seconds');
  await page.click('.save-bar .btn-ghost');
  await page.waitForSelector('.save-bar:not(.is-dirty)');
  assert.equal((await http(server.url, `/api/v1/sites/${site}`, { token: owner.token })).body.name, 'Demo shop');
});

test('seeded conversations show up in the report, and its CSV download has them', STEP, async () => {
  const say = (conv, token, text) => http(server.url, `/api/v1/conversations/${conv}/messages`, {
    method: 'POST', token, body: { client_msg_id: msgId('adm'), text },
  });
  const texts = ['Where is my parcel? <b>urgent</b>', 'I need a refund for order 88', 'Can I change my address?'];
  for (let i = 0; i < 3; i += 1) {
    const c = await newConversation(server);
    assert.equal((await say(c.conversation, c.token, texts[i])).status, 200);
    await http(server.url, `/api/v1/conversations/${c.conversation}/assign`, { method: 'POST', token: owner.token });
    assert.equal((await say(c.conversation, owner.token, `Answer ${i + 1}`)).status, 200);
    if (i < 2) {
      const closed = await http(server.url, `/api/v1/conversations/${c.conversation}/close`, { method: 'POST', token: owner.token });
      assert.ok([200, 204].includes(closed.status), JSON.stringify(closed.body));
    }
    if (i === 0) {
      const rated = await http(server.url, `/api/v1/conversations/${c.conversation}/rating`, {
        method: 'POST', token: c.token, body: { score: 5, comment: 'quick and kind' },
      });
      assert.equal(rated.status, 200, JSON.stringify(rated.body));
    }
    seeded.push(c);
  }
  // Reports read the D1 mirror: wait until it has all three, closed and rated.
  let report;
  for (let i = 0; i < 100; i += 1) {
    report = (await http(server.url, '/api/v1/reports', { token: owner.token })).body;
    if (report.conversations === 3 && report.resolution.count === 2 && report.satisfaction.ratings === 1) break;
    await sleep(200);
  }
  assert.equal(report.conversations, 3, JSON.stringify(report));

  await openConsolePage(page, 'reports', '.report-body');
  await page.waitForSelector('.report-body[data-conversations="3"]', { timeout: 15_000 });
  const tile = (k) => page.textContent(`.kpi[data-kpi="${k}"] .kpi-value`);
  assert.equal((await tile('conversations')).trim(), '3');
  assert.equal((await tile('satisfaction')).trim(), '5.0 / 5');
  assert.notEqual((await tile('first_response')).trim(), '—');
  assert.notEqual((await tile('resolution')).trim(), '—');
  // Today's bar (in the browser's zone) holds the three; the hidden table says so.
  const cells = await page.$$eval('[data-chart="per-day"] table tbody td', (els) => els.map((e) => Number(e.textContent)));
  assert.equal(cells.reduce((a, b) => a + b, 0), 3);
  assert.equal(cells.at(-1), 3, 'the range ends today');
  const hours = await page.$$eval('[data-chart="hours"] table tbody td', (els) => els.map((e) => Number(e.textContent)));
  assert.equal(hours.length, 24);
  assert.equal(hours.reduce((a, b) => a + b, 0), 3);
  // Drawn as SVG bars, one per day of the range and one per hour.
  assert.equal(await page.$$eval('[data-chart="per-day"] svg .chart-rect', (els) => els.length), cells.length);
  assert.equal(await page.$$eval('[data-chart="hours"] svg .chart-rect', (els) => els.length), 24);
  // The per-agent table names the owner.
  await waitForText(page, '.report-body table', 'Demo Admin');

  const csv = await downloadText(page, '[data-action="download-csv"]');
  assert.match(csv.name, /^parley-report-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv$/);
  assert.match(csv.text, /^section,key,value\r?\n/);
  assert.match(csv.text, /summary,conversations,3\r?\n/);
  assert.match(csv.text, /satisfaction,average,5\.00/);
});

test('search highlights the words and opens the conversation in a tab', STEP, async () => {
  await openConsolePage(page, 'search', '.search-input');
  await page.fill('.search-input', 'parcel urgent');
  await page.press('.search-input', 'Enter');
  await page.waitForSelector('.results .result', { timeout: 15_000 });
  const hit = await page.$eval('.results .result', (el) => ({
    conversation: el.dataset.conversation,
    text: el.querySelector('.result-text').textContent,
    marks: Array.from(el.querySelectorAll('mark'), (m) => m.textContent),
    bold: el.querySelectorAll('b').length,
  }));
  assert.equal(hit.conversation, seeded[0].conversation);
  assert.equal(hit.text, 'Where is my parcel? <b>urgent</b>');
  assert.deepEqual(hit.marks, ['parcel', 'urgent']);
  assert.equal(hit.bold, 0, 'message text must never become markup');
  await page.click('.results .result');
  await page.waitForSelector(`.conv[data-conversation="${seeded[0].conversation}"]`);
  assert.equal(await page.evaluate(() => location.hash), '#/inbox');
  await page.waitForSelector(`.convtab-btn[data-tab="${seeded[0].conversation}"][aria-selected="true"]`);
});

test('export downloads the messages as CSV', STEP, async () => {
  await openConsolePage(page, 'export', '.export-form');
  await page.selectOption('select[name="dataset"]', 'messages');
  await page.check('input[name="format"][value="csv"]');
  const file = await downloadText(page, '[data-action="export"]');
  assert.match(file.name, /^parley-messages-.*\.csv$/);
  assert.match(file.text, /^conversation_id,seq,created_at,site_id,visitor_id,kind,author_role,author_id,author_name,text\r\n/);
  assert.ok(file.text.includes('I need a refund for order 88'), file.text.slice(0, 400));
  await waitForText(page, '.export-status', file.name);
});

test('erasing a visitor from the sidebar closes their conversation tabs', STEP, async () => {
  const victim = seeded[2];
  await openConsolePage(page, 'inbox', '#list-tab-team');
  await page.click('#list-tab-team');
  await page.click(`.conv-item[data-id="${victim.conversation}"]`);
  await page.waitForSelector(`.convtab-btn[data-tab="${victim.conversation}"]`);
  await page.waitForSelector('.sidebar [data-action="erase-visitor"]', { timeout: 15_000 });
  await page.click('.sidebar [data-action="erase-visitor"]');
  await page.waitForSelector('dialog.dialog[open] .btn-danger');
  await page.click('dialog .btn-danger');
  await page.waitForSelector('dialog.dialog', { state: 'detached', timeout: 15_000 });
  await page.waitForSelector(`.convtab-btn[data-tab="${victim.conversation}"]`, { state: 'detached' });
  await page.waitForSelector(`.conv-item[data-id="${victim.conversation}"]`, { state: 'detached' });
  const gone = await http(server.url, `/api/v1/conversations/${victim.conversation}`, { token: owner.token });
  assert.equal(gone.status, 404);
  // Agents never get the button (seeded[1] is closed).
  await bea.page.click('#list-tab-closed');
  await bea.page.click(`.conv-item[data-id="${seeded[1].conversation}"]`);
  await bea.page.waitForSelector('.sidebar .vp-id');
  assert.equal(await bea.page.$('.sidebar [data-action="erase-visitor"]'), null);
});

test('disabling the agent sends their console back to the login screen with the reason', STEP, async () => {
  await openConsolePage(page, 'agents', `.agents-table tr[data-email="${bea.email}"]`);
  await page.click(`.agents-table tr[data-email="${bea.email}"] [data-action="disable"]`);
  await page.waitForSelector('dialog.dialog[open] .btn-danger');
  await page.click('dialog .btn-danger');
  await page.waitForSelector(`.agents-table tr.is-disabled[data-email="${bea.email}"]`);
  // Bea's console socket is told session_ended: back to the login, saying why.
  await bea.page.waitForSelector('#login-email', { timeout: 15_000 });
  await waitForText(bea.page, '.login-msg--info', 'You were signed out');
  assert.equal(await bea.page.evaluate(() => localStorage.getItem('parley.console.session')), null);
  const login = await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email: bea.email, password: bea.password } });
  assert.equal(login.status, 401);
  await bea.context.close();
});

test('signing out ends the session: the old token is answered 401 session_ended', STEP, async () => {
  const token = await sessionCookie(page.context());
  assert.equal((await http(server.url, '/api/v1/me', { token })).status, 200);
  await page.click('.topbar button[aria-label="Sign out"]');
  await page.waitForSelector('#login-email');
  assert.equal(await page.evaluate(() => localStorage.getItem('parley.console.session')), null);
  assert.equal(await sessionCookie(page.context()), null, 'the browser dropped the cookie');
  const after = await http(server.url, '/api/v1/me', { token });
  assert.equal(after.status, 401);
  assert.equal(after.body.code, 'session_ended');
  // A plain sign-out shows no "you were signed out" notice.
  assert.equal(await page.$('.login-msg--info'), null);
});
