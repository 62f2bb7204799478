// Cloudflare Workers AI as translation provider and as the bot's model, through the `AI`
// binding. The binding exists only on Cloudflare; here a stand-in module answers with the
// shapes Workers AI documents (tests/support/workers-ai-standin.mjs), so what is tested is
// Parley's side: the model named, the input built, the answer read, failures and timeouts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { startServer } from './support/server.mjs';
import { agentLogin, connect, fullHistory, http, siteId, newConversation } from './support/client.mjs';

const STAND_IN = fileURLToPath(new URL('./support/workers-ai-standin.mjs', import.meta.url));
let server;
let owner;

before(async () => {
  server = await startServer({ standIns: { AI: STAND_IN } });
  owner = await agentLogin(server);
  const site = await siteId(server, owner.token);
  // Set before the first conversation: the server caches site settings for up to 30 s.
  const res = await http(server.url, `/api/v1/sites/${site}`, {
    method: 'PATCH', token: owner.token,
    body: {
      translation: { enabled: true, agent_language: 'en', provider: 'workers_ai', model: '@cf/meta/m2m100-1.2b', timeout_ms: 1500 },
      bot: { enabled: true, kind: 'workers_ai', name: 'Edge Bot', knowledge: 'Shipping takes 3 days within the EU.', timeout_ms: 1500 },
    },
  });
  assert.equal(res.status, 204, JSON.stringify(res.body));
});

after(async () => {
  await server?.stop();
});

const translationOf = (socket, seq) => socket.next((f) => f.type === 'event' && f.kind === 'translation' && f.body.of === seq, 20_000);

test('Workers AI translates the visitor for the agent and answers as the bot; a failure hands over', async () => {
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'de' });
  const desk = await connect(server, v.conversation, owner.token, { after: 0 });
  const q = await tab.sendMessage('Wie lange dauert der Versand? shipping');
  const t = await translationOf(desk, q.seq);
  assert.deepEqual(t.body, { of: q.seq, from: 'de', to: 'en', text: '[en] Wie lange dauert der Versand? shipping', provider: 'workers_ai' });
  const answer = await tab.next((f) => f.type === 'event' && f.kind === 'message' && f.author.role === 'system', 20_000);
  assert.equal(answer.author.name, 'Edge Bot');
  assert.equal(answer.body.text, 'Shipping takes 3 days within the EU.');

  // The model failing: the message stands, marked untranslated; the bot steps aside for people.
  const bad = await tab.sendMessage('Bitte FAIL');
  const marker = await translationOf(desk, bad.seq);
  assert.equal(marker.body.failed, 'provider_error');
  await tab.next((f) => f.type === 'event' && f.kind === 'handoff', 20_000);
  const log = await fullHistory(server, v.conversation, owner.token);
  assert.equal(log.find((e) => e.seq === bad.seq).body.text, 'Bitte FAIL');
  tab.close();
  desk.close();
});

test('a Workers AI call that never answers is cut off by the timeout', async () => {
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'de' });
  const desk = await connect(server, v.conversation, owner.token, { after: 0 });
  const q = await tab.sendMessage('Hallo SLOW');
  const marker = await translationOf(desk, q.seq);
  assert.equal(marker.body.failed, 'timeout');
  await tab.next((f) => f.type === 'event' && f.kind === 'handoff', 20_000);
  tab.close();
  desk.close();
});

test('a stored key is kept by changes that do not name one and removed by an empty one', async () => {
  const site = await siteId(server, owner.token);
  const translation = { enabled: true, agent_language: 'en', provider: 'workers_ai', model: '@cf/meta/m2m100-1.2b', timeout_ms: 1500 };
  const patch = (body) => http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { translation: body } });
  const keySet = async () => (await http(server.url, `/api/v1/sites/${site}`, { token: owner.token })).body.translation.api_key_set;
  assert.equal((await patch({ ...translation, api_key: 'gateway-token' })).status, 204);
  assert.equal(await keySet(), true);
  assert.equal((await patch({ ...translation, timeout_ms: 2000 })).status, 204);
  assert.equal(await keySet(), true, 'kept');
  assert.equal((await patch({ ...translation, api_key: '' })).status, 204);
  assert.equal(await keySet(), false, 'removed');
  // A key is kept only for the service it was given for.
  assert.equal((await patch({ ...translation, api_key: 'gateway-token' })).status, 204);
  const elsewhere = { ...translation, provider: 'libretranslate', endpoint: 'https://translate.example.com' };
  assert.equal((await patch(elsewhere)).status, 204);
  assert.equal(await keySet(), false, 'not sent on to another provider');
  assert.equal((await patch({ ...elsewhere, api_key: 'lt-key' })).status, 204);
  assert.equal((await patch({ ...elsewhere, endpoint: 'https://other.example.com' })).status, 204);
  assert.equal(await keySet(), false, 'nor to another endpoint');
  assert.equal((await patch(translation)).status, 204);
});
