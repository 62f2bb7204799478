// The agent console with translation on (docs/protocol.md, Translation): a visitor writing in
// Chinese is shown to the agent in English with the original a click away, and the visitor's
// rating after the close shows as a system line. Translations come from a tiny local
// LibreTranslate stand-in. Needs `node console/build.mjs` first (public/console/).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../support/server.mjs';
import { agentLogin, connect, http, newConversation } from '../support/client.mjs';
import { CHROMIUM, launch, waitForText } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STEP = { timeout: 90_000 };

let server;
let translator;
let browser;
let page;
let owner;
let conv;
let visitor;
const pageErrors = [];
const requests = [];

/** LibreTranslate's `POST /translate {q, source, target}` → `{translatedText}`. */
function startTranslator() {
  const srv = createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/translate') {
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(raw || '{}');
      requests.push(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ translatedText: `[${body.target}] ${body.q}` }));
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}


before(async () => {
  assert.ok(existsSync(join(ROOT, 'public', 'console', 'app.js')), 'run `node console/build.mjs` first');
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium`);
  translator = await startTranslator();
  server = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
  browser = await launch();
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-US' });
  page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

after(async () => {
  visitor?.close();
  await browser?.close();
  await server?.stop();
  await new Promise((r) => (translator ? translator.close(r) : r()));
  assert.deepEqual(pageErrors, [], 'uncaught errors in the console page');
});

test('the owner turns translation on before the first conversation and signs in', STEP, async () => {
  owner = await agentLogin(server);
  const sites = await http(server.url, '/api/v1/sites', { token: owner.token });
  assert.equal(sites.status, 200);
  const site = sites.body.sites.find((s) => s.site_key === server.siteKey);
  const res = await http(server.url, `/api/v1/sites/${site.id}`, {
    method: 'PATCH', token: owner.token,
    body: { translation: { enabled: true, agent_language: 'en', provider: 'libretranslate', endpoint: `http://127.0.0.1:${translator.address().port}`, timeout_ms: 2000 } },
  });
  assert.ok(res.status >= 200 && res.status < 300, JSON.stringify(res.body));

  await page.goto(`${server.url}/console/`);
  await page.fill('#login-email', server.email);
  await page.fill('#login-password', server.password);
  await page.click('.login-form button[type=submit]');
  await page.waitForSelector('.topbar .status-select');
  await page.waitForSelector('.conv-list[aria-busy="false"]', { state: 'attached' });
});

test("a Chinese visitor's message shows translated, with the original a click away", STEP, async () => {
  conv = await newConversation(server);
  visitor = await connect(server, conv.conversation, conv.token, { after: 0, lang: 'zh-CN' });
  const ack = await visitor.sendMessage('你好');
  assert.equal(ack.type, 'ack');

  await page.click('#list-tab-team');
  await page.click(`.conv-item[data-id="${conv.conversation}"]`, { timeout: 15_000 });
  await waitForText(page, '.conv .msg--in .text:not([hidden])', '[en] 你好');
  assert.ok(requests.some((r) => r.q === '你好' && r.target === 'en'), JSON.stringify(requests));
  // One bubble: the translation is not a line of its own.
  assert.equal(await page.$$eval('.conv .msg--in', (els) => els.length), 1);
  assert.equal(await page.$$eval('.conv .sys', (els) => els.filter((e) => /translation/i.test(e.textContent)).length), 0);
  const line = await page.textContent('.conv .msg--in .tr-line');
  assert.match(line, /^Translated from .+ · Show original$/, line);
  const visible = () => page.$$eval('.conv .msg--in .text:not([hidden])', (els) => els.map((e) => e.textContent));
  assert.deepEqual(await visible(), ['[en] 你好']);

  await page.click('.conv .msg--in .tr-line button');
  assert.deepEqual(await visible(), ['你好']);
  assert.equal(await page.textContent('.conv .msg--in .tr-line button'), 'Show translation');
  await page.click('.conv .msg--in .tr-line button');
  assert.deepEqual(await visible(), ['[en] 你好']);
  // Translations are never unread.
  await page.waitForFunction(() => document.title === 'Parley Console', null, { timeout: 10_000 });
});

test("the visitor's rating after the close shows as a system line with the comment", STEP, async () => {
  const closed = await http(server.url, `/api/v1/conversations/${conv.conversation}/close`, { method: 'POST', token: owner.token });
  assert.ok(closed.status < 300, JSON.stringify(closed.body));
  const rated = await http(server.url, `/api/v1/conversations/${conv.conversation}/rating`, {
    method: 'POST', token: conv.token, body: { score: 4, comment: 'thanks' },
  });
  assert.ok(rated.status < 300, JSON.stringify(rated.body));
  await waitForText(page, '.conv .sys--rated', 'Visitor rated ★★★★☆ (4/5)');
  assert.equal(await page.textContent('.conv .sys--rated .sys-note'), 'thanks');
  // The translated message is still one bubble with its translation.
  assert.deepEqual(await page.$$eval('.conv .msg--in .text:not([hidden])', (els) => els.map((e) => e.textContent)), ['[en] 你好']);
});
