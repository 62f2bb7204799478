// Screenshots of the console in realistic states, for reviewing its look (not a test).
//
//   node console/build.mjs && node console/screenshots.mjs [out dir]   (default tests/.tmp/console-screens)
//
// Starts its own server (tests/support/server.mjs), seeds visitors with context, identity,
// notes and files, and drives Debian's Chromium (PARLEY_CHROMIUM, default /usr/bin/chromium).
// Emoji and CJK text need fonts-noto-color-emoji and fonts-noto-cjk to render.
import { createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../tests/support/server.mjs';
import { agentLogin, connect, http, newConversation, sleep } from '../tests/support/client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = resolve(process.argv[2] ?? join(ROOT, 'tests', '.tmp', 'console-screens'));
mkdirSync(OUT, { recursive: true });
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAFklEQVR4nGNk+M+ABzAxMDAwMjAwAAAUCAECqYXWlgAAAABJRU5ErkJggg==', 'base64');
const PDF = Buffer.from('%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n');

const server = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.PARLEY_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
});
try {
  const admin = await agentLogin(server);
  const team = (await server.d1('SELECT team_id FROM agents WHERE id = ?', [admin.agentId])).results[0].team_id;
  const site = (await server.d1('SELECT id, identity_secret FROM sites LIMIT 1')).results[0];

  // Ann: a plain agent without the personal-data permission.
  const annPassword = randomBytes(9).toString('base64url');
  const salt = randomBytes(16);
  await server.d1(
    `INSERT INTO agents (id, team_id, email, name, role, password_hash, password_salt, password_iterations, disabled, created_at, capacity)
     VALUES (?, ?, 'ann@parley.local', 'Ann Lee', 'agent', ?, ?, 100000, 0, ?, 4)`,
    ['a_annleeannleeannleeannlee22', team, pbkdf2Sync(annPassword, salt, 100000, 32, 'sha256').toString('base64'),
      salt.toString('base64'), Date.now()],
  );

  const login = async (ctx, email, password) => {
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.error('pageerror:', e.message));
    await page.goto(`${server.url}/console/`);
    await page.fill('#login-email', email);
    await page.fill('#login-password', password);
    await page.click('.login-form button[type=submit]');
    await page.waitForSelector('.conn--live');
    return page;
  };
  const visitor = async ({ name, email, ctx = {}, pages = [], place, msgs = [] }) => {
    const c = await newConversation(server);
    for (const page of pages) await http(server.url, '/api/v1/visitor/context', { method: 'POST', token: c.token, body: { ...ctx, page } });
    if (name) {
      const hash = createHmac('sha256', site.identity_secret).update(c.visitorId).digest('hex');
      await http(server.url, '/api/v1/visitor/identify', { method: 'POST', token: c.token, body: { id: c.visitorId, name, email, hash } });
    }
    if (place) await server.d1('UPDATE visitors SET country = ?, region = ?, city = ? WHERE id = ?', [...place, c.visitorId]);
    const socket = await connect(server, c.conversation, c.token, { after: 0 });
    for (const m of msgs) await socket.sendMessage(m);
    return { ...c, socket };
  };
  const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`) });

  const ctxA = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-US' });
  const pageA = await login(ctxA, server.email, server.password);

  const jane = await visitor({
    name: 'Jane Cooper', email: 'jane.cooper@example.com', place: ['DE', 'Berlin', 'Berlin'],
    ctx: {
      referrer: 'https://www.google.com/search?q=rain+jacket', utm: { source: 'newsletter', medium: 'email', campaign: 'autumn-sale' },
      lang: 'de-DE', tz: 'Europe/Berlin', screen: { w: 1512, h: 982 }, device: 'desktop', browser: 'Firefox 132', os: 'macOS 14',
    },
    pages: [
      { url: 'https://shop.example/', title: 'Northwind Outfitters' },
      { url: 'https://shop.example/jackets/storm-shell', title: 'Storm Shell rain jacket' },
      { url: 'https://shop.example/account/orders/4821', title: 'Order #4821' },
    ],
    msgs: [
      'Hi! I ordered the Storm Shell jacket last week (order #4821) and it still says "processing".',
      'Could you also change the size to M? You can reach me at jane.cooper@example.com or +49 151 2345 6789.',
    ],
  });
  const agentSocket = await connect(server, jane.conversation, admin.token, { after: 0 });
  await agentSocket.sendMessage('Hi Jane, thanks for your patience! Let me check order #4821 for you.');
  agentSocket.send({ type: 'send', client_msg_id: 'shot-note-1', text: 'Warehouse says it ships tomorrow. Size swap approved by Mark.', note: true });
  await sleep(200);
  await agentSocket.sendMessage('Good news: it ships tomorrow, and I switched the size to M. Tracking: https://track.example/NW4821');
  await jane.socket.sendMessage('Here is my receipt, just in case.');
  const up = await (await fetch(`${server.url}/api/v1/conversations/${jane.conversation}/files?name=receipt-4821.pdf`, {
    method: 'POST', headers: { authorization: `Bearer ${jane.token}`, 'content-type': 'application/pdf' }, body: PDF,
  })).json();
  jane.socket.send({ type: 'send', client_msg_id: 'shot-file-1', file: up.file.id });
  await sleep(200);
  const last = await jane.socket.sendMessage('Perfect, thank you so much! 🙏');
  jane.socket.send({ type: 'read', seq: last.seq });
  agentSocket.close();

  await visitor({
    msgs: ['你好，请问这件外套可以寄到上海吗？运费大概多少？'], place: ['CN', 'Shanghai', 'Shanghai'],
    ctx: { lang: 'zh-CN', tz: 'Asia/Shanghai', device: 'mobile', browser: 'Safari 17', os: 'iOS 17' },
    pages: [{ url: 'https://shop.example/zh/jackets', title: '外套 - Northwind' }],
  });
  // Away: new chats wait in the queue.
  await pageA.selectOption('.status-select', 'away');
  await sleep(300);
  const waiting = await visitor({ msgs: ['Do you offer bulk discounts for 200 units? See https://shop.example/b2b'], ctx: { lang: 'en-US', tz: 'America/New_York' } });
  await sleep(300);
  await visitor({ msgs: ['Hello? Is anyone there?'] });
  await sleep(800);

  await pageA.click('#list-tab-mine');
  await pageA.click(`.conv-item[data-id="${jane.conversation}"]`);
  await pageA.waitForSelector('.conv .file-card');
  await pageA.click('#list-tab-waiting');
  jane.socket.send({ type: 'typing', active: true });
  await sleep(700);
  await shot(pageA, 'inbox-conversation-light');

  await pageA.focus('.composer-input');
  await pageA.keyboard.type('/');
  await pageA.waitForSelector('.qr-popover:not([hidden]) .qr-item');
  await shot(pageA, 'quick-replies-light');
  await pageA.keyboard.press('Escape');
  await pageA.fill('.composer-input', '');

  await pageA.click('.note-toggle');
  await pageA.fill('.composer-input', 'Customer is a repeat buyer, offer free shipping next time.');
  await pageA.click('.composer-tools .tool-btn:nth-of-type(2)');
  await sleep(200);
  await shot(pageA, 'note-emoji-light');
  await pageA.keyboard.press('Escape');
  await pageA.fill('.composer-input', '');
  await pageA.click('.note-toggle');

  await pageA.click(`.conv-item[data-id="${waiting.conversation}"]`);
  await sleep(500);
  await shot(pageA, 'waiting-light');

  await pageA.selectOption('.status-select', 'online');
  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: 'en-US' });
  const pageB = await login(ctxB, 'ann@parley.local', annPassword);
  await sleep(500);
  await pageA.click('.convtab-btn >> nth=0');
  await pageA.click('.conv-actions [data-action="transfer"]');
  await pageA.waitForSelector('dialog[open]');
  await sleep(200);
  await shot(pageA, 'transfer-light');
  await pageA.keyboard.press('Escape');

  await pageB.click('#list-tab-team');
  await pageB.click(`.conv-item[data-id="${jane.conversation}"]`);
  await pageB.waitForSelector('.conv .reveal-btn');
  await sleep(400);
  await shot(pageB, 'masked-agent-view-light');

  for (const [name, opts] of [
    ['dark-1440', { viewport: { width: 1440, height: 900 }, colorScheme: 'dark', locale: 'en-US' }],
    ['zh-1280', { viewport: { width: 1280, height: 820 }, locale: 'zh-CN' }],
    ['tablet-1024', { viewport: { width: 1024, height: 768 }, locale: 'en-US' }],
    ['tablet-768', { viewport: { width: 768, height: 1024 }, locale: 'en-US' }],
    ['tablet-768-dark', { viewport: { width: 768, height: 1024 }, locale: 'en-US', colorScheme: 'dark' }],
  ]) {
    const ctx = await browser.newContext(opts);
    const page = await login(ctx, server.email, server.password);
    await page.click('#list-tab-team');
    await page.click(`.conv-item[data-id="${jane.conversation}"]`);
    await page.waitForSelector('.conv .msg--note');
    await sleep(600);
    await shot(page, `conversation-${name}`);
    if (name === 'tablet-1024') {
      await page.click('.info-toggle');
      await sleep(300);
      await shot(page, `conversation-${name}-sidebar`);
    }
    await ctx.close();
  }
  const ctxL = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'dark', locale: 'zh-CN' });
  const pl = await ctxL.newPage();
  await pl.goto(`${server.url}/console/`);
  await pl.fill('#login-email', server.email);
  await pl.fill('#login-password', 'not the password');
  await pl.click('.login-form button[type=submit]');
  await pl.waitForSelector('.login-msg--error');
  await shot(pl, 'login-error-zh-dark');
  console.log(`screenshots in ${OUT}`);
} finally {
  await browser.close();
  await server.stop();
}
