// The widget's extras in Chromium: agents' replies translated into the visitor's language (with
// the original a click away, and a mark when a translation failed), automated messages of the
// site, proactive invitations, the satisfaction rating when a conversation is closed, and the
// visitor's place in the waiting queue.
//
// Each test starts a server of its own and configures it before its first conversation: the
// server caches site and translation settings for up to 30 s.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { agentLogin, fullHistory, http, newConversation, siteId, sleep } from '../support/client.mjs';
import {
  agentJoin, agentOnline, conversationOf, diag, launch, openDemo, openPanel, panelMessages, recordApiEvents, send,
  visitorContext, waitFor,
} from './helpers.mjs';
import { startServer } from '../support/server.mjs';

const W = '[data-parley]';

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

/** PATCH /api/v1/sites/{id} as the demo owner. */
async function configureSite(server, body) {
  const owner = await agentLogin(server);
  const site = await siteId(server, owner.token);
  const res = await http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body });
  assert.equal(res.status, 204, JSON.stringify(res.body));
  return owner;
}

/**
 * A LibreTranslate-compatible provider on 127.0.0.1 (`POST /translate {q, source, target}` →
 * `{translatedText}`). `state.mode` 'error' answers 500; `state.delayMs` holds answers back.
 */
async function libreTranslate(dictionary) {
  const state = { mode: 'ok', delayMs: 0, seen: [] };
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const json = JSON.parse(body || '{}');
      state.seen.push({ path: req.url, body: json });
      const answer = () => {
        if (state.mode === 'error') return res.writeHead(500).end('internal error');
        if (req.method !== 'POST' || req.url !== '/translate') return res.writeHead(404).end();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ translatedText: dictionary[json.q] ?? `[${json.target}] ${json.q}` }));
      };
      if (state.delayMs) setTimeout(answer, state.delayMs);
      else answer();
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    state,
    url: `http://127.0.0.1:${srv.address().port}`,
    close: () => new Promise((r) => srv.close(r)),
  };
}

/**
 * An agent online and a visitor whose first message, `text`, is stored (so that a close that
 * follows is not undone by it): { agent, context, page, conversation }.
 */
async function visitorChatting(server, text) {
  const agent = await agentOnline(server);
  try {
    const context = await visitorContext(browser);
    const page = await openDemo(context, server, '');
    await openPanel(page);
    await send(page, text);
    const conversation = await conversationOf(page);
    await waitFor(async () => (await diag(page)).outbox === 0, 'the message stored');
    return { agent, context, page, conversation };
  } catch (e) {
    agent.close();
    throw e;
  }
}

/** The last message in the panel that is not the visitor's. */
const lastTheirs = (page) => page.locator(`${W} .list li.m.them`).last();
const bubble = (page) => page.locator(`${W} .inv`);
const bubbleCount = (page) => page.locator(`${W} .inv`).count();

test('translation: an agent reply shows in the visitor language, the original a click away; a failed one keeps the original, marked', async () => {
  const provider = await libreTranslate({
    '你好，请问运费多少？': 'Hello, how much is shipping?',
    'Shipping is free on orders over $40.': '订单满 40 美元免运费。',
    'See you soon!': '回头见！',
  });
  const server = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
  let agent;
  try {
    await configureSite(server, {
      translation: { enabled: true, agent_language: 'en', provider: 'libretranslate', endpoint: provider.url, timeout_ms: 2000 },
    });
    agent = await agentOnline(server);
    const context = await visitorContext(browser); // a browser in English…
    const page = await openDemo(context, server, '', { setup: recordApiEvents });
    // What the widget tells the server about the visitor's language: hello frames and HTTP calls.
    const hellos = [];
    const httpLangs = [];
    page.on('websocket', (ws) => ws.on('framesent', (f) => {
      try {
        const frame = JSON.parse(f.payload);
        if (frame.type === 'hello') hellos.push(frame.lang);
      } catch { /* not JSON */ }
    }));
    page.on('request', async (r) => {
      if (new URL(r.url()).pathname.startsWith('/api/v1/conversations')) httpLangs.push((await r.allHeaders())['accept-language']);
    });
    // …whose visitor picked Chinese on the site.
    assert.equal(await page.evaluate(() => window.Parley.setLocale('zh-CN')), 'zh-CN');
    await openPanel(page);
    await send(page, '你好，请问运费多少？');
    const conversation = await conversationOf(page);
    const sock = await agentJoin(server, agent, conversation);
    const translationOf = (seq) => sock.next((f) => f.type === 'event' && f.kind === 'translation' && f.body.of === seq, 20_000);

    // The agent gets the visitor's message in English; the visitor keeps what they wrote.
    const mineSeq = (await sock.next((f) => f.type === 'event' && f.kind === 'message' && f.author.role === 'visitor')).seq;
    const toAgent = await translationOf(mineSeq);
    assert.equal(toAgent.body.text, 'Hello, how much is shipping?');
    assert.equal(toAgent.body.to, 'en');

    // The reply shows at once, in English, and turns Chinese in place when its translation follows.
    provider.state.delayMs = 1000;
    const reply = await sock.sendMessage('Shipping is free on orders over $40.');
    await waitFor(async () => (await lastTheirs(page).locator('.bub').textContent()) === 'Shipping is free on orders over $40.', 'the original at once', 5000);
    await lastTheirs(page).evaluate((li) => { li.dataset.probe = 'same node'; });
    const toVisitor = await translationOf(reply.seq);
    assert.equal(toVisitor.body.to, 'zh', 'the server translates into the language of the hello');
    provider.state.delayMs = 0;
    const li = lastTheirs(page);
    await waitFor(async () => (await li.locator('.bub').textContent()) === '订单满 40 美元免运费。', 'the translation in place');
    assert.equal(await li.getAttribute('data-probe'), 'same node', 'updated in place, not re-added');
    assert.equal(await li.locator('.bub').getAttribute('lang'), 'zh-CN');
    const mark = li.locator('.trn');
    assert.match(await mark.textContent(), /^已翻译 · 查看原文$/);
    // "Show original" reveals the English text, and back.
    await mark.locator('button').click();
    await waitFor(async () => (await li.locator('.bub').textContent()) === 'Shipping is free on orders over $40.', 'the original');
    assert.equal(await li.locator('.bub').getAttribute('lang'), 'en');
    assert.match(await mark.textContent(), /^原文 · 查看译文$/);
    assert.equal(await page.evaluate(() => document.querySelector('[data-parley]').shadowRoot.activeElement?.className), 'tg', 'focus stays on the switch');
    await page.keyboard.press('Enter');
    await waitFor(async () => (await li.locator('.bub').textContent()) === '订单满 40 美元免运费。', 'the translation again');
    assert.match(await mark.textContent(), /^已翻译 · 查看原文$/);

    // The visitor's own message is shown as written: its translation is for the agents.
    const shown = await panelMessages(page);
    assert.deepEqual(shown.filter((m) => m.mine).map((m) => m.text), ['你好，请问运费多少？']);
    assert.equal(await page.locator(`${W} li.m.me .trn:not([hidden])`).count(), 0);
    // Messages stay in the order of the log: welcome, question, answer.
    assert.deepEqual(shown.map((m) => m.mine), [false, true, false]);

    // A provider that fails: the original stays, with a discreet mark.
    provider.state.mode = 'error';
    const failing = await sock.sendMessage('Anything else I can help with?');
    const failed = await translationOf(failing.seq);
    assert.equal(failed.body.failed, 'provider_error');
    await waitFor(async () => (await lastTheirs(page).locator('.trn').textContent()) === '暂时无法翻译', 'the unavailable mark');
    assert.equal(await lastTheirs(page).locator('.bub').textContent(), 'Anything else I can help with?');
    assert.equal(await lastTheirs(page).locator('.trn button').count(), 0);
    provider.state.mode = 'ok';

    // Translations are no messages: with the panel closed, one reply is one unread, one chime.
    await page.evaluate(() => window.Parley.close());
    await page.locator(`${W} .panel`).waitFor({ state: 'hidden' });
    const last = await sock.sendMessage('See you soon!');
    assert.equal((await translationOf(last.seq)).body.text, '回头见！');
    const badge = page.locator(`${W} .badge`);
    await badge.waitFor({ state: 'visible' });
    await sleep(700); // the translation has arrived too by now
    assert.equal(await badge.textContent(), '1');
    assert.equal(Math.max(...page.apiEvents.filter(([n]) => n === 'unread').map(([, d]) => d)), 1);
    assert.deepEqual(page.apiEvents.filter(([n, d]) => n === 'message' && d.author.role === 'agent').map(([, d]) => d.text), [
      'Shipping is free on orders over $40.', 'Anything else I can help with?', 'See you soon!',
    ]);
    await openPanel(page);
    await waitFor(async () => (await lastTheirs(page).locator('.bub').textContent()) === '回头见！', 'translated after reopening');

    // The chosen locale, not the browser's, went to the server.
    assert.ok(hellos.length > 0 && hellos.every((l) => l === 'zh-CN'), `hello lang: ${hellos}`);
    assert.ok(httpLangs.length > 0 && httpLangs.every((l) => l === 'zh-CN'), `Accept-Language: ${httpLangs}`);
    assert.ok(provider.state.seen.some((c) => c.body.q === 'Shipping is free on orders over $40.' && c.body.target === 'zh'));

    // Back to English mid-conversation: the socket signs in again with it, replies are no longer
    // translated, and the Chinese translations give way to the originals.
    await page.evaluate(() => window.Parley.setLocale('en'));
    await waitFor(() => hellos.at(-1) === 'en', 'a hello in English');
    await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'Shipping is free on orders over $40.'), 'the original again');
    assert.equal(await page.locator(`${W} li.m.them .trn:not([hidden])`).count(), 0);
    const plain = await sock.sendMessage('Bye!');
    await waitFor(async () => (await lastTheirs(page).locator('.bub').textContent()) === 'Bye!', 'the last reply');
    await sleep(1000);
    assert.ok(!sock.events.some((e) => e.kind === 'translation' && e.body.of === plain.seq), 'nothing to translate for an English reader');
    assert.deepEqual(context.offsite, []);
    assert.deepEqual(page.errors, []);
    sock.close();
    await context.close();
  } finally {
    agent?.close();
    await server.stop();
    await provider.close();
  }
});

test('automation: away, keyword and closing replies show as the team’s automatic replies and count as incoming', async () => {
  const server = await startServer();
  try {
    await configureSite(server, {
      // Closed every day (an empty week).
      routing: { answer_timeout_ms: 120000, heartbeat_timeout_ms: 60000, hours: { enabled: true, timezone: 'UTC', weekly: {} } },
      automation: {
        away_reply: { en: "We're away right now; we'll answer first thing tomorrow.", 'zh-CN': '我们暂时不在，明天上班后第一时间回复您。' },
        keyword_replies: [{ keywords: ['refund', '退款'], reply: { en: 'Refunds take 3–5 business days.', 'zh-CN': '退款需要 3–5 个工作日。' } }],
        auto_close_seconds: 12,
        close_notice: { en: 'We closed this chat after a quiet while. Write again any time.' },
      },
    });
    const context = await visitorContext(browser);
    const page = await openDemo(context, server, '', { setup: recordApiEvents });
    await openPanel(page);
    // Outside business hours: the offline form.
    const form = page.locator(`${W} form.form`);
    await form.waitFor({ state: 'visible' });
    await form.locator('[name=email]').fill('sam@example.com');
    await form.locator('[name=message]').fill('Hello, how do I get a refund for my order?');
    await form.locator('button[type=submit]').click();
    const conversation = await conversationOf(page);

    const auto = () => page.locator(`${W} .list li.m.bot`);
    await waitFor(async () => (await auto().count()) === 2, 'the two automatic replies');
    const shown = await panelMessages(page);
    const replies = shown.filter((m) => !m.mine && /Automatic reply/.test(m.who));
    assert.deepEqual(replies.map((m) => m.text).sort(), ["We're away right now; we'll answer first thing tomorrow.", 'Refunds take 3–5 business days.'].sort());
    // From the team (the site's name), after the visitor's message, on the team's side.
    assert.ok(replies.every((m) => m.who === 'Demo shop · Automatic reply'), JSON.stringify(replies));
    const texts = shown.map((m) => m.text);
    assert.ok(texts.indexOf('Hello, how do I get a refund for my order?') < texts.indexOf('Refunds take 3–5 business days.'));
    // Read at once with the panel open: no badge.
    assert.equal(await page.locator(`${W} .badge`).isVisible(), false);

    // Panel closed: the closing notice arrives (the conversation was quiet for 12 s) and counts.
    await page.evaluate(() => window.Parley.close());
    const badge = page.locator(`${W} .badge`);
    await badge.waitFor({ state: 'visible', timeout: 45_000 });
    assert.equal(await badge.textContent(), '1');
    assert.ok(page.apiEvents.some(([n, d]) => n === 'unread' && d === 1));
    assert.ok(page.apiEvents.some(([n, d]) => n === 'message' && d.author.role === 'system' && /We closed this chat/.test(d.text)));
    await waitFor(async () => /New message/.test(await page.title()), 'title flash', 5000, 200);
    await openPanel(page);
    await badge.waitFor({ state: 'hidden' });
    await waitFor(async () => (await auto().count()) === 3, 'the closing notice');
    assert.match(await auto().last().textContent(), /Automatic reply.*We closed this chat/);
    // Closed by the system: the rating is asked for.
    await page.locator(`${W} .rf`).waitFor({ state: 'visible' });

    const log = await fullHistory(server, conversation, (await agentLogin(server)).token);
    assert.equal(log.filter((e) => e.kind === 'message' && e.author.role === 'system').length, 3);
    assert.deepEqual(context.offsite, []);
    assert.deepEqual(page.errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});

test('invitation: after 2 s on the pricing page (not the home page), dismissible, once per page and session', async () => {
  const server = await startServer();
  let agent;
  try {
    await configureSite(server, {
      automation: {
        invitations: [{ url_contains: '/pricing', after_seconds: 2, message: { en: 'Questions about plans?', 'zh-CN': '对会员方案有疑问吗？' } }],
      },
    });
    agent = await agentOnline(server);
    const config = await http(server.url, `/api/v1/widget/config?site=${server.siteKey}`);
    assert.deepEqual(config.body.invitations, [{ url_contains: '/pricing', after_seconds: 2, message: { en: 'Questions about plans?', 'zh-CN': '对会员方案有疑问吗？' } }]);

    const context = await visitorContext(browser);
    // The home page: no invitation there, and the chat is not even loaded for it.
    const page = await openDemo(context, server, '');
    const loaded = [];
    page.on('request', (r) => loaded.push(new URL(r.url()).pathname));
    await sleep(3500);
    assert.equal(await bubbleCount(page), 0);
    assert.ok(!loaded.includes('/widget/chat.js'), 'no chat loaded on a page without invitation');

    // The pricing page: the invitation after 2 s there.
    await page.goto(`${server.url}/demo/pricing.html?site=${encodeURIComponent(server.siteKey)}`);
    await bubble(page).waitFor({ state: 'visible', timeout: 10_000 });
    const at = await page.evaluate(() => performance.now());
    assert.ok(at >= 2000 && at < 6000, `shown ${Math.round(at)} ms after the page began`);
    assert.match(await bubble(page).textContent(), /Demo shop.*Questions about plans\?.*Reply/);
    assert.equal(await bubble(page).getAttribute('aria-label'), 'Message from Demo shop');
    assert.equal(await page.locator(`${W} .panel`).isVisible(), false, 'a first-time visitor gets a bubble, not the panel');
    // Dismissed, it does not come back on this page in this session, even after a reload.
    await page.locator(`${W} .inv .ix`).click();
    assert.equal(await bubbleCount(page), 0);
    await page.reload();
    await page.locator(`${W} .launch`).waitFor({ state: 'visible' });
    await sleep(3500);
    assert.equal(await bubbleCount(page), 0, 'not again on this page');

    // A single-page-app navigation starts the count again.
    const began = await page.evaluate((key) => {
      history.pushState({}, '', `/demo/pricing/annual?site=${encodeURIComponent(key)}`);
      return performance.now();
    }, server.siteKey);
    await bubble(page).waitFor({ state: 'visible', timeout: 10_000 });
    const waited = (await page.evaluate(() => performance.now())) - began;
    assert.ok(waited >= 1900, `shown ${Math.round(waited)} ms after the navigation`);
    // Taken up: the panel opens with the invitation as the team's greeting.
    await page.locator(`${W} .inv .ib`).click();
    await page.locator(`${W} .panel`).waitFor({ state: 'visible' });
    assert.equal(await bubbleCount(page), 0);
    const greeting = (await panelMessages(page)).filter((m) => !m.mine).map((m) => m.text);
    assert.deepEqual(greeting, ['Hi! How can we help you today?', 'Questions about plans?']);

    // Someone who opened the chat before gets the panel itself, without losing their place.
    await page.evaluate(() => window.Parley.close());
    await page.locator('main .btn').first().focus();
    await page.evaluate((key) => history.pushState({}, '', `/demo/pricing/teams?site=${encodeURIComponent(key)}`), server.siteKey);
    await page.locator(`${W} .panel`).waitFor({ state: 'visible', timeout: 10_000 });
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Choose Taster', 'focus stays on the page');
    assert.equal(await bubbleCount(page), 0);

    // A visitor in a conversation gets no invitation.
    const busy = await openDemo(await visitorContext(browser), server, '');
    await openPanel(busy);
    await send(busy, 'Hello there');
    await waitFor(async () => (await panelMessages(busy)).some((m) => m.mine && m.state === 'sent'), 'the message sent');
    await busy.evaluate(() => window.Parley.close());
    await busy.goto(`${server.url}/demo/pricing.html?site=${encodeURIComponent(server.siteKey)}`);
    await busy.locator(`${W} .launch`).waitFor({ state: 'visible' });
    await sleep(3500);
    assert.equal(await bubbleCount(busy), 0);
    assert.equal(await busy.locator(`${W} .panel`).isVisible(), false);

    assert.deepEqual(context.offsite, []);
    assert.deepEqual(page.errors, []);
    assert.deepEqual(busy.errors, []);
    await busy.context().close();
    await context.close();
  } finally {
    agent?.close();
    await server.stop();
  }
});

test('rating: a closed conversation asks for 1–5 stars and a comment; reopening hides the question', async () => {
  const server = await startServer();
  let agent;
  try {
    let context, page, conversation;
    ({ agent, context, page, conversation } = await visitorChatting(server, 'Thanks, that is all I needed.'));
    const sock = await agentJoin(server, agent, conversation);
    const act = async (what) => {
      const res = await http(server.url, `/api/v1/conversations/${conversation}/${what}`, { method: 'POST', token: agent.token });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    };
    const form = page.locator(`${W} .rf`);

    await act('close');
    await form.waitFor({ state: 'visible' });
    assert.equal(await form.locator('legend').textContent(), 'How was this conversation?');
    assert.equal(await form.locator('input[type=radio]').count(), 5);
    assert.equal(await form.locator('button[type=submit]').isDisabled(), true, 'nothing to send before a score');
    // Reopened: the question goes away; closed again: it is back.
    await act('reopen');
    await form.waitFor({ state: 'detached' });
    await act('close');
    await form.waitFor({ state: 'visible' });

    // With the keyboard: the stars are a radio group (arrow keys move and choose).
    await form.locator('input[type=radio]').first().focus();
    await page.keyboard.press('Space');
    for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowRight');
    assert.equal(await form.locator('input[type=radio]:checked').getAttribute('value'), '4');
    assert.equal(await form.locator('input[type=radio]:checked').getAttribute('aria-label'), '4 of 5 stars');
    assert.equal(await form.locator('.star.on').count(), 4);
    await page.keyboard.press('Tab');
    await page.keyboard.type('Quick and friendly.');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    const thanks = page.locator(`${W} .rt`);
    await thanks.waitFor({ state: 'visible' });
    assert.match(await thanks.textContent(), /Thanks for your feedback!/);
    assert.equal(await thanks.locator('[role=img]').getAttribute('aria-label'), 'You rated this conversation 4 of 5.');
    assert.equal(await form.count(), 0);

    // The log holds the rating.
    const rated = await sock.next((f) => f.type === 'event' && f.kind === 'rated');
    assert.deepEqual(rated.body, { score: 4, comment: 'Quick and friendly.' });
    const owner = await agentLogin(server);
    const log = await fullHistory(server, conversation, owner.token);
    const ratings = log.filter((e) => e.kind === 'rated');
    assert.equal(ratings.length, 1);
    assert.equal(ratings[0].body.score, 4);
    assert.equal(ratings[0].author.role, 'visitor');
    // After a reload the thanks stays (from the log), the question does not come back.
    await page.reload();
    await thanks.waitFor({ state: 'visible' });
    assert.equal(await form.count(), 0);
    // Ratings are no messages: nothing unread.
    assert.equal(await page.locator(`${W} .badge`).isVisible(), false);
    assert.deepEqual(context.offsite, []);
    assert.deepEqual(page.errors, []);
    sock.close();
    await context.close();
  } finally {
    agent?.close();
    await server.stop();
  }
});

test('rating refused: the server\'s reason shows, the stars and comment stay, and sending again later works', async () => {
  // One visitor message (or rating) per 10 s: the chat's message takes the token, so a rating
  // straight after the close is refused as too many, and taken once the token is back.
  const server = await startServer({ vars: { RATE_VISITOR_MESSAGES: '1/0.1' } });
  let agent;
  try {
    let context, page, conversation;
    ({ agent, context, page, conversation } = await visitorChatting(server, 'That is all, thanks.'));
    // The token went when the message was stored, at the latest now.
    const storedAt = Date.now();
    const closed = await http(server.url, `/api/v1/conversations/${conversation}/close`, { method: 'POST', token: agent.token });
    assert.equal(closed.status, 200, JSON.stringify(closed.body));
    const form = page.locator(`${W} .rf`);
    await form.waitFor({ state: 'visible' });
    await form.locator('.star').nth(2).click();
    await form.locator('textarea').fill('Fine.');
    await form.locator('button[type=submit]').click();

    const error = form.locator('.err');
    const thanks = page.locator(`${W} .rt`);
    await waitFor(async () => (await error.textContent()) !== '' || (await thanks.count()) > 0, 'the answer to the rating');
    assert.equal(await thanks.count(), 0, 'taken: over 10 s passed between the message and the rating, so the token was back');
    assert.equal(await error.getAttribute('role'), 'alert');
    assert.equal(await error.textContent(), 'Too many requests. Please wait a moment and try again.');
    // Nothing the visitor chose is lost, and the form can be sent again.
    assert.equal(await form.locator('input[type=radio]:checked').getAttribute('value'), '3');
    assert.equal(await form.locator('textarea').inputValue(), 'Fine.');
    assert.equal(await form.locator('button[type=submit]').isDisabled(), false);
    const owner = await agentLogin(server);
    assert.deepEqual((await fullHistory(server, conversation, owner.token)).filter((e) => e.kind === 'rated'), []);

    // Once the token is back, the same form sends the same rating.
    await sleep(Math.max(0, storedAt + 10_500 - Date.now()));
    await form.locator('button[type=submit]').click();
    await thanks.waitFor({ state: 'visible' });
    assert.equal(await thanks.locator('[role=img]').getAttribute('aria-label'), 'You rated this conversation 3 of 5.');
    await waitFor(async () => (await fullHistory(server, conversation, owner.token)).some((e) => e.kind === 'rated'), 'the rating stored');
    const rated = (await fullHistory(server, conversation, owner.token)).filter((e) => e.kind === 'rated');
    assert.equal(rated.length, 1);
    assert.deepEqual(rated[0].body, { score: 3, comment: 'Fine.' });
    assert.deepEqual(context.offsite, []);
    assert.deepEqual(page.errors, []);
    await context.close();
  } finally {
    agent?.close();
    await server.stop();
  }
});

test('queue: with every agent at capacity a new chat shows its place in line, which moves up and clears when an agent takes it', async () => {
  const server = await startServer();
  let agent;
  try {
    // One agent who takes one conversation at a time (read when the agent comes online).
    await server.d1('UPDATE agents SET capacity = 1');
    agent = await agentOnline(server);
    // Someone is already being served.
    const first = await newConversation(server);
    await waitFor(async () => (await fullHistory(server, first.conversation, agent.token)).some((e) => e.kind === 'assigned'), 'the first conversation assigned');

    const line = (page) => page.locator(`${W} .queue`);
    const one = await openDemo(await visitorContext(browser), server);
    await openPanel(one);
    await send(one, 'Is anyone there?');
    await line(one).waitFor({ state: 'visible' });
    assert.equal(await line(one).textContent(), 'You are number 1 in line');
    assert.equal(await line(one).getAttribute('role'), 'status');
    // A second visitor, in Chinese, waits behind.
    const two = await openDemo(await visitorContext(browser, { locale: 'zh-CN' }), server);
    await openPanel(two);
    await send(two, '请问有人吗？');
    await line(two).waitFor({ state: 'visible' });
    assert.equal(await line(two).textContent(), '您当前排在第 2 位');
    // A reload asks the server again (queue frames are not kept for later sockets).
    await two.reload();
    await line(two).waitFor({ state: 'visible' });
    assert.equal(await line(two).textContent(), '您当前排在第 2 位');

    // The agent finishes with the first visitor: the next in line is assigned, the other moves up.
    const closed = await http(server.url, `/api/v1/conversations/${first.conversation}/close`, { method: 'POST', token: agent.token });
    assert.equal(closed.status, 200, JSON.stringify(closed.body));
    await line(one).waitFor({ state: 'hidden' });
    await waitFor(async () => (await one.locator(`${W} .list li.sys`).allTextContents()).includes('Demo Admin joined the chat'), 'the agent joined');
    await waitFor(async () => (await line(two).textContent()) === '您当前排在第 1 位', 'the second visitor moved up');
    assert.deepEqual(one.errors, []);
    assert.deepEqual(two.errors, []);
    await one.context().close();
    await two.context().close();
  } finally {
    agent?.close();
    await server.stop();
  }
});
