// Screenshots of the console's pages for owners and admins (agents, site settings, webhooks,
// reports, search, export), in light and dark, for reviewing their look (not a test).
//
//   node console/build.mjs && node console/admin-screenshots.mjs [out dir]   (default tests/.tmp/admin-screens)
//
// Starts its own server (tests/support/server.mjs), seeds agents, conversations over a week
// (countries, sources, ratings), webhooks with a delivery log, and drives Debian's Chromium
// (PARLEY_CHROMIUM, default /usr/bin/chromium).
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../tests/support/server.mjs';
import { agentLogin, createAgent, http, msgId, newConversation, siteId, sleep } from '../tests/support/client.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = resolve(process.argv[2] ?? join(ROOT, 'tests', '.tmp', 'admin-screens'));
mkdirSync(OUT, { recursive: true });

// Webhook targets: one that takes everything, one that always fails.
const sink = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(req.url.includes('broken') ? 500 : 200);
    res.end();
  });
});
await new Promise((r) => sink.listen(0, '127.0.0.1', r));
const hookBase = `http://127.0.0.1:${sink.address().port}`;

const server = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true', RATE_VISITOR_MESSAGES: '500/50', RATE_AGENT_MESSAGES: '500/50' } });
const browser = await chromium.launch({
  executablePath: process.env.PARLEY_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
});
try {
  const owner = await agentLogin(server);
  const site = await siteId(server, owner.token);
  const ann = await createAgent(server, { name: 'Ann Lee', email: 'ann@parley.local', capacity: 4, permissions: ['view_personal_data'] });
  const bo = await createAgent(server, { name: '王博', email: 'bo.wang@parley.local', role: 'admin', capacity: 8 });
  const carl = await createAgent(server, { name: 'Carl Jensen', email: 'carl@parley.local', capacity: 3, permissions: ['export'] });
  await http(server.url, `/api/v1/agents/${ann.agentId}`, { method: 'PATCH', token: owner.token, body: { departments: ['Billing', 'Support'] } });
  await http(server.url, `/api/v1/agents/${carl.agentId}`, { method: 'PATCH', token: owner.token, body: { departments: ['Sales'], disabled: true } });
  await http(server.url, `/api/v1/sites/${site}`, {
    method: 'PATCH', token: owner.token,
    body: {
      allowed_origins: ['https://shop.example.com', 'https://www.shop.example.com'],
      settings: {
        appearance: { color: '#0f766e', position: 'right', launcher_text: { en: 'Chat with us', 'zh-CN': '在线咨询' } },
        welcome: { en: 'Hi! How can we help you today?', 'zh-CN': '您好！请问有什么可以帮您？' },
        prechat: { enabled: true, fields: [
          { name: 'name', label: { en: 'Your name', 'zh-CN': '您的姓名' }, type: 'text', required: true },
          { name: 'email', label: { en: 'E-mail', 'zh-CN': '邮箱' }, type: 'email', required: true },
          { name: 'order', label: { en: 'Order number', 'zh-CN': '订单号' }, type: 'text', required: false },
        ] },
        offline: { message: { en: "We're away right now. Leave a message and we'll get back to you.", 'zh-CN': '我们暂时不在线，请留言，我们会尽快回复您。' } },
        attachments: { max_bytes: 10 * 1024 * 1024 },
      },
      routing: {
        policy: 'least_loaded', answer_timeout_ms: 90_000, offline_behavior: 'requeue', heartbeat_timeout_ms: 60_000,
        rules: [
          { when: 'url_contains', value: '/billing', department: 'Billing' },
          { when: 'language', value: 'zh', department: 'Support' },
        ],
        hours: {
          enabled: true, timezone: 'Asia/Shanghai',
          weekly: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, [{ open: '09:00', close: '12:00' }, { open: '13:00', close: '18:00' }]]).concat([['sat', [{ open: '10:00', close: '16:00' }]], ['sun', []]])),
          holidays: ['2026-10-01', '2026-10-02'],
        },
      },
      retention_days: 365,
    },
  });
  const hook = async (url, events) => (await http(server.url, `/api/v1/sites/${site}/webhooks`, { method: 'POST', token: owner.token, body: { url, events } })).body;
  await hook(`${hookBase}/parley/events`, ['conversation.created', 'message.created', 'conversation.closed']);
  const broken = await hook(`${hookBase}/broken/crm-sync`, ['conversation.closed']);
  await hook(`${hookBase}/slack/relay`, ['offline_message.created']);

  // A week of conversations: countries, sources, ratings; some closed.
  const countries = ['CN', 'CN', 'US', 'DE', 'CN', 'GB', 'SG', 'US', 'CN', 'JP', 'FR', 'CN', 'US', 'CN'];
  const sources = [{ utm: { source: 'newsletter' } }, { referrer: 'https://www.google.com/search?q=shop' }, {}, { referrer: 'https://weibo.com/x' }, {}, { utm: { source: 'ads' } }];
  const agents = [owner, ann, bo];
  for (let i = 0; i < countries.length; i += 1) {
    const c = await newConversation(server);
    await http(server.url, '/api/v1/visitor/context', { method: 'POST', token: c.token, body: { ...sources[i % sources.length], page: { url: 'https://shop.example.com/cart', title: 'Cart' }, lang: 'en-US', tz: 'Asia/Shanghai' } });
    await server.d1('UPDATE visitors SET country = ? WHERE id = ?', [countries[i], c.visitorId]);
    await http(server.url, `/api/v1/conversations/${c.conversation}/messages`, { method: 'POST', token: c.token, body: { client_msg_id: msgId('s'), text: `Question ${i + 1} about my order` } });
    const a = agents[i % agents.length];
    await http(server.url, `/api/v1/conversations/${c.conversation}/assign`, { method: 'POST', token: a.token });
    await sleep(40 * (i % 5));
    await http(server.url, `/api/v1/conversations/${c.conversation}/messages`, { method: 'POST', token: a.token, body: { client_msg_id: msgId('s'), text: 'Happy to help!' } });
    if (i % 3 !== 2) await http(server.url, `/api/v1/conversations/${c.conversation}/close`, { method: 'POST', token: a.token });
    if (i % 2 === 0) await http(server.url, `/api/v1/conversations/${c.conversation}/rating`, { method: 'POST', token: c.token, body: { score: [5, 4, 5, 3, 5][i % 5] } });
    // Spread over the last week and the day's hours (reports read the D1 mirror).
    const at = Date.now() - (i % 6) * 86_400_000 - ((i * 5) % 11) * 3_600_000;
    for (let k = 0; k < 50; k += 1) {
      const { results } = await server.d1('SELECT id FROM conversations WHERE id = ?', [c.conversation]);
      if (results.length) break;
      await sleep(100);
    }
    await server.d1('UPDATE conversations SET created_at = ? WHERE id = ?', [at, c.conversation]);
  }
  await sleep(2500); // webhook deliveries
  await server.d1("UPDATE webhooks SET enabled = 0, failures = 20, disabled_reason = '20 failed deliveries in a row' WHERE id = ?", [broken.id]);

  for (const scheme of ['light', 'dark']) {
    const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-US', colorScheme: scheme, acceptDownloads: false });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.error('pageerror:', e.message));
    await page.goto(`${server.url}/console/`);
    await page.fill('#login-email', server.email);
    await page.fill('#login-password', server.password);
    await page.click('.login-form button[type=submit]');
    await page.waitForSelector('.conn--live');
    const shot = async (name, opts = {}) => {
      await page.waitForTimeout(700);
      await page.screenshot({ path: join(OUT, `${name}-${scheme}.png`), ...opts });
    };

    await page.click('.topnav-link[data-page="agents"]');
    await page.waitForSelector('.agents-table tbody tr:nth-child(4)');
    await shot('agents');
    await page.click('[data-action="add-agent"]');
    await page.waitForSelector('dialog.dialog[open]');
    await shot('agents-add');
    await page.keyboard.press('Escape');

    await page.click('.topnav-link[data-page="settings"]');
    await page.waitForSelector('#site-webhooks .hook');
    await page.evaluate(() => document.querySelector('.pages').scrollTo({ top: 0 }));
    await shot('settings');
    await page.click('.hook [data-action="log"]');
    await page.waitForSelector('.hook-log table', { timeout: 10_000 }).catch(() => {});
    await page.evaluate(() => document.querySelector('.pages').scrollTo({ top: 0 }));
    await page.setViewportSize({ width: 1440, height: 4200 });
    await shot('settings-full');
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.click('.settings-nav-link[href="#site-hours"]');
    await shot('settings-hours');
    await page.click('.settings-nav-link[href="#site-webhooks"]');
    await shot('settings-webhooks');

    await page.click('.topnav-link[data-page="reports"]');
    await page.waitForSelector('.report-body:not([data-conversations="0"])', { timeout: 15_000 });
    await shot('reports');
    await page.setViewportSize({ width: 1440, height: 1500 });
    await shot('reports-full');
    await page.setViewportSize({ width: 1440, height: 900 });

    await page.click('.topnav-link[data-page="search"]');
    await page.fill('.search-input', 'order');
    await page.press('.search-input', 'Enter');
    await page.waitForSelector('.results .result');
    await shot('search');

    if (scheme === 'light') {
      await page.selectOption('.topbar .lang-select', 'zh-CN');
      await page.click('.topnav-link[data-page="reports"]');
      await page.waitForSelector('.report-body');
      await shot('reports-zh');
      await page.click('.topnav-link[data-page="settings"]');
      await page.waitForSelector('#site-hours');
      await page.click('.settings-nav-link[href="#site-hours"]');
      await shot('settings-hours-zh');
      await page.click('.topnav-link[data-page="agents"]');
      await page.waitForSelector('.agents-table');
      await shot('agents-zh');
      await page.setViewportSize({ width: 1024, height: 768 });
      await page.click('.topnav-link[data-page="reports"]');
      await shot('reports-1024');
      await page.selectOption('.topbar .lang-select', 'en');
    }
    await ctx.close();
  }
  console.log(`screenshots in ${OUT}`);
} finally {
  await browser.close();
  await server.stop();
  sink.close();
}
