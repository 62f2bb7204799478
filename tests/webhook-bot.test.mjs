// The team's own bot behind a webhook: Parley posts each visitor message to it, signed like the
// site's webhooks; the bot answers through the REST API with an API key, and hands the
// conversation to people the same way. A bot that cannot be reached hands over by itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { startServer } from './support/server.mjs';
import { agentLogin, connect, fullHistory, http, newConversation, siteId } from './support/client.mjs';

const SECRET = 'whsec-order-bot';
let server;
let owner;
let site;
let bot;
let botKey;
let failing = false;
/** When set, the bot service answers 307 pointing here instead of taking the message. */
let redirectTo = null;
const received = [];

/** The bot service: checks the signature, takes the message, answers a moment later. */
function startBot() {
  return createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', async () => {
      const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(req.headers['parley-signature'] ?? '') ?? [];
      const valid = v1 === createHmac('sha256', SECRET).update(`${t}.${raw}`).digest('hex')
        && Math.abs(Date.now() / 1000 - Number(t)) < 300;
      const payload = JSON.parse(raw);
      received.push({ headers: req.headers, payload, valid });
      if (redirectTo) return res.writeHead(307, { location: redirectTo }).end();
      if (failing || !valid) return res.writeHead(failing ? 500 : 401).end();
      res.writeHead(200).end();
      const text = payload.message.text;
      const call = (path, body) => http(server.url, path, { method: 'POST', token: botKey, body });
      if (/refund/i.test(text)) {
        await call(payload.reply.handoff_path, {});
      } else {
        const order = /\d+/.exec(text)?.[0] ?? 'your order';
        await call(payload.reply.path, { client_msg_id: payload.reply.client_msg_id, text: `Order ${order} ships tomorrow.` });
      }
    });
  });
}

before(async () => {
  bot = startBot();
  await new Promise((r) => bot.listen(0, '127.0.0.1', r));
  server = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
  owner = await agentLogin(server);
  site = await siteId(server, owner.token);
  const key = await http(server.url, '/api/v1/api-keys', { method: 'POST', token: owner.token, body: { name: 'Order Bot', scopes: ['write'] } });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  botKey = key.body.key;
  const endpoint = `http://127.0.0.1:${bot.address().port}/parley`;
  const set = await http(server.url, `/api/v1/sites/${site}`, {
    method: 'PATCH', token: owner.token,
    body: { bot: { enabled: true, kind: 'webhook', name: 'Order Bot', endpoint, api_key: SECRET, timeout_ms: 3000 } },
  });
  assert.equal(set.status, 204, JSON.stringify(set.body));
  // Changing the bot without sending the secret keeps the stored one (admins never see it).
  const renamed = await http(server.url, `/api/v1/sites/${site}`, {
    method: 'PATCH', token: owner.token,
    body: { bot: { enabled: true, kind: 'webhook', name: 'Order Bot', endpoint, timeout_ms: 4000 } },
  });
  assert.equal(renamed.status, 204, JSON.stringify(renamed.body));
});

after(async () => {
  await server?.stop();
  await new Promise((r) => bot.close(r));
});

test('admins see the bot kind and whether a secret is set, never the secret', async () => {
  // A webhook bot without a secret could not sign its posts: refused.
  const unsigned = await http(server.url, `/api/v1/sites/${site}`, {
    method: 'PATCH', token: owner.token,
    body: { bot: { enabled: true, kind: 'webhook', name: 'Order Bot', endpoint: 'https://bots.example.com/other' } },
  });
  assert.equal(unsigned.status, 400, 'a new endpoint needs the secret again');
  const res = await http(server.url, `/api/v1/sites/${site}`, { token: owner.token });
  assert.equal(res.body.bot.kind, 'webhook');
  assert.equal(res.body.bot.timeout_ms, 4000);
  assert.equal(res.body.bot.api_key_set, true);
  assert.ok(!JSON.stringify(res.body).includes(SECRET));
});

test('the webhook bot gets each visitor message signed, answers through the API, and hands over', async () => {
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'en' });
  const sent = await tab.sendMessage('Where is order 4711?');
  const answer = await tab.next((f) => f.type === 'event' && f.kind === 'message' && f.author.role === 'agent', 15_000);
  assert.equal(answer.body.text, 'Order 4711 ships tomorrow.');
  assert.equal(answer.author.name, 'Order Bot');
  assert.equal(answer.client_msg_id, `bot-${sent.seq}`);
  const post = received.at(-1);
  assert.equal(post.valid, true, 'signed with the stored secret');
  assert.equal(post.headers['parley-event'], 'bot.message');
  assert.equal(post.headers['parley-delivery'], `bot-${v.conversation}-${sent.seq}`);
  assert.equal(post.payload.conversation, v.conversation);
  assert.equal(post.payload.site, site);
  assert.deepEqual(post.payload.message.text, 'Where is order 4711?');
  assert.ok(post.payload.history.some((m) => m.role === 'visitor' && m.text === 'Where is order 4711?'));
  // With a bot, nobody is routed until the hand-off.
  assert.equal((await http(server.url, `/api/v1/conversations/${v.conversation}/queue`, { token: v.token })).body.position, null);

  await tab.sendMessage('I want a refund');
  await tab.next((f) => f.type === 'event' && f.kind === 'handoff', 15_000);
  const place = await http(server.url, `/api/v1/conversations/${v.conversation}/queue`, { token: v.token });
  assert.equal(place.body.position, 1);
  // The bot hears no more once people have the conversation.
  const before = received.length;
  await tab.sendMessage('Hello?');
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(received.length, before);
  // The agent who takes it sees what the bot said.
  const claimed = await http(server.url, `/api/v1/conversations/${v.conversation}/claim`, { method: 'POST', token: owner.token });
  assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
  const log = await fullHistory(server, v.conversation, owner.token);
  assert.ok(log.some((e) => e.kind === 'message' && e.author.name === 'Order Bot'));
  tab.close();
});

test('people cannot hand off; a bot that cannot be reached hands over by itself', async () => {
  const v = await newConversation(server);
  const refused = await http(server.url, `/api/v1/conversations/${v.conversation}/handoff`, { method: 'POST', token: owner.token });
  assert.equal(refused.status, 403);
  failing = true;
  try {
    const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'en' });
    await tab.sendMessage('Is anyone there?');
    await tab.next((f) => f.type === 'event' && f.kind === 'handoff', 15_000);
    const log = await fullHistory(server, v.conversation, owner.token);
    assert.ok(log.some((e) => e.kind === 'message' && e.body.text === 'Is anyone there?'), 'the message itself is kept');
    tab.close();
  } finally {
    failing = false;
  }
});

test('a bot endpoint answering with a redirect is not followed: the bot counts as unreachable', async () => {
  // Where the redirect points: a loopback listener standing in for an internal service, which
  // would "take" the message with a 200 if it were ever reached.
  const reachedBehind = [];
  const behind = createServer((req, res) => {
    reachedBehind.push(`${req.method} ${req.url}`);
    req.resume();
    res.writeHead(200).end();
  });
  await new Promise((r) => behind.listen(0, '127.0.0.1', r));
  redirectTo = `http://127.0.0.1:${behind.address().port}/internal`;
  try {
    const v = await newConversation(server);
    const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'en' });
    const asked = received.length;
    await tab.sendMessage('Where is order 99?');
    await tab.next((f) => f.type === 'event' && f.kind === 'handoff', 15_000);
    assert.ok(received.length > asked, 'the bot endpoint was asked');
    assert.deepEqual(reachedBehind, [], 'nothing reached the address behind the redirect');
    tab.close();
  } finally {
    redirectTo = null;
    behind.closeAllConnections();
    await new Promise((r) => behind.close(r));
  }
});
