// Two-way translation against local servers that speak the real LibreTranslate and
// OpenAI-compatible APIs: translations follow their originals as their own events, originals
// are kept, and a provider that times out, fails or answers garbage leaves every message
// delivered, in order, with a visible marker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startServer } from './support/server.mjs';
import { agentLogin, connect, fullHistory, msgId, newConversation, http, siteId, sleep } from './support/client.mjs';

let server;
let owner;
let site;
let provider;
let providerUrl;
let mode = 'ok'; // ok | slow | error | garbage
const seen = [];

const DICTIONARY = {
  'zh→en': { '你好，我的订单还没到': 'Hello, my order has not arrived' },
  'en→zh': { 'Sorry about that, I will check it now': '抱歉，我现在就查一下' },
};

function translate(q, source, target) {
  const key = `${source === 'auto' ? 'zh' : source}→${target}`;
  return DICTIONARY[key]?.[q] ?? `[${target}] ${q}`;
}

before(async () => {
  provider = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const json = JSON.parse(body || '{}');
      seen.push({ path: req.url, body: json, auth: req.headers.authorization });
      if (mode === 'slow') return setTimeout(() => res.writeHead(200).end('{}'), 3000);
      if (mode === 'error') return res.writeHead(500).end('internal error');
      if (mode === 'garbage') return res.writeHead(200, { 'content-type': 'text/html' }).end('<html>oops</html>');
      if (req.url === '/translate') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ translatedText: translate(json.q, json.source, json.target) }));
      }
      if (req.url === '/v1/chat/completions') {
        const text = json.messages[1].content;
        const to = /into language code '(\w+)'/.exec(json.messages[0].content)[1];
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: translate(text, 'auto', to) } }] }));
      }
      res.writeHead(404).end();
    });
  });
  await new Promise((r) => provider.listen(0, '127.0.0.1', r));
  providerUrl = `http://127.0.0.1:${provider.address().port}`;
  server = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
  owner = await agentLogin(server);
  site = await siteId(server, owner.token);
});

after(async () => {
  await server?.stop();
  await new Promise((r) => provider.close(r));
});

async function configure(translation) {
  const res = await http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { translation } });
  assert.equal(res.status, 204, JSON.stringify(res.body));
  // Settings are cached up to 30 s per isolate: new conversations after a change use the new
  // provider once the cache turns over, so each test configures before its first message and
  // waits for the first translation below.
}

async function translationOf(socket, seq) {
  return socket.next((f) => f.type === 'event' && f.kind === 'translation' && f.body.of === seq, 40_000);
}

/** The translation events of each of `seqs`, in whatever order they came: translations run
 *  side by side, so a later message's may be stored first. */
async function translationsOf(socket, seqs, timeoutMs = 40_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = seqs.map((seq) => socket.events.find((e) => e.kind === 'translation' && e.body.of === seq));
    if (found.every(Boolean)) return found;
    if (Date.now() > deadline) throw new Error(`translations of ${seqs} not all in; last events: ${JSON.stringify(socket.events.slice(-5))}`);
    await sleep(50);
  }
}

test('LibreTranslate: visitor Chinese → agent English, agent English → visitor Chinese, originals kept', async () => {
  await configure({ enabled: true, agent_language: 'en', provider: 'libretranslate', endpoint: providerUrl, timeout_ms: 1500 });
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'zh-CN' });
  const desk = await connect(server, v.conversation, owner.token, { after: 0 });
  const q = await tab.sendMessage('你好，我的订单还没到');
  const t1 = await translationOf(desk, q.seq);
  assert.deepEqual(t1.body, { of: q.seq, from: 'zh', to: 'en', text: 'Hello, my order has not arrived', provider: 'libretranslate' });
  const a = await desk.sendMessage('Sorry about that, I will check it now');
  const t2 = await translationOf(tab, a.seq);
  assert.equal(t2.body.text, '抱歉，我现在就查一下');
  assert.equal(t2.body.to, 'zh');
  const log = await fullHistory(server, v.conversation, owner.token);
  const original = log.find((e) => e.seq === q.seq);
  assert.equal(original.body.text, '你好，我的订单还没到', 'the original stays the event of record');
  assert.ok(log.findIndex((e) => e.seq === t1.seq) > log.findIndex((e) => e.seq === q.seq));
  assert.equal(seen.at(-1).path, '/translate');
  tab.close();
  desk.close();
});

for (const [failure, expected] of [['slow', 'timeout'], ['error', 'provider_error'], ['garbage', 'bad_response']]) {
  test(`a provider that ${failure === 'slow' ? 'times out' : failure === 'error' ? 'answers 500' : 'answers garbage'}: messages delivered in order, marked ${expected}`, async () => {
    mode = failure;
    try {
      const v = await newConversation(server);
      const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'de' });
      const desk = await connect(server, v.conversation, owner.token, { after: 0 });
      const acks = [];
      for (const text of ['Erste Nachricht', 'Zweite Nachricht', 'Dritte Nachricht']) acks.push(await tab.sendMessage(`${text} ${failure}`));
      // All three arrive at once, in order, untouched by the provider's trouble.
      await desk.waitForSeq(acks.at(-1).seq, 5000);
      assert.deepEqual(desk.events.filter((e) => e.kind === 'message').map((e) => e.seq), acks.map((a) => a.seq));
      for (const marker of await translationsOf(desk, acks.map((a) => a.seq))) {
        assert.equal(marker.body.failed, expected);
        assert.equal(marker.body.text, undefined);
      }
      tab.close();
      desk.close();
    } finally {
      mode = 'ok';
    }
  });
}

test('an OpenAI-compatible endpoint translates the same way', async () => {
  // A server of its own, configured before its first message (settings are cached briefly).
  const other = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
  try {
    const boss = await agentLogin(other);
    const otherSite = await siteId(other, boss.token);
    const set = await http(other.url, `/api/v1/sites/${otherSite}`, {
      method: 'PATCH', token: boss.token,
      body: { translation: { enabled: true, agent_language: 'en', provider: 'openai', endpoint: `${providerUrl}/v1`, api_key: 'sk-local', model: 'local-model', timeout_ms: 1500 } },
    });
    assert.equal(set.status, 204);
    const v = await newConversation(other);
    const tab = await connect(other, v.conversation, v.token, { after: 0, lang: 'zh-CN' });
    const desk = await connect(other, v.conversation, boss.token, { after: 0 });
    const q = await tab.sendMessage('你好，我的订单还没到');
    const t = await translationOf(desk, q.seq);
    assert.deepEqual(t.body, { of: q.seq, from: 'zh', to: 'en', text: 'Hello, my order has not arrived', provider: 'openai' });
    const call = seen.findLast((c) => c.path === '/v1/chat/completions');
    assert.equal(call.auth, 'Bearer sk-local');
    assert.equal(call.body.model, 'local-model');
    // The key is write-only.
    const got = await http(other.url, `/api/v1/sites/${otherSite}`, { token: boss.token });
    assert.equal(got.body.translation.api_key_set, true);
    assert.equal(got.body.translation.api_key, undefined);
    tab.close();
    desk.close();
  } finally {
    await other.stop();
  }
});
