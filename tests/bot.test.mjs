// A bot in front of the humans: the bot answers from the site's knowledge through a local
// server speaking the OpenAI-compatible API; the visitor asks for a person (keyword or button)
// and the conversation enters the human queue with its whole history; a failing bot hands over
// by itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startServer } from './support/server.mjs';
import { agentLogin, connect, fullHistory, http, newConversation, siteId } from './support/client.mjs';

let server;
let owner;
let llm;
let failing = false;
const prompts = [];

before(async () => {
  llm = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const json = JSON.parse(body);
      prompts.push(json);
      if (failing) return res.writeHead(500).end('{"error":"overloaded"}');
      const last = json.messages.at(-1).content;
      const knowledge = json.messages[0].content;
      const answer = /shipping/i.test(last) && knowledge.includes('Shipping takes 3 days')
        ? 'Shipping takes 3 days within the EU.'
        : "I don't know that; you can ask for a person.";
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: answer } }] }));
    });
  });
  await new Promise((r) => llm.listen(0, '127.0.0.1', r));
  server = await startServer({ vars: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
  owner = await agentLogin(server);
  const site = await siteId(server, owner.token);
  const res = await http(server.url, `/api/v1/sites/${site}`, {
    method: 'PATCH', token: owner.token,
    body: { bot: { enabled: true, name: 'Tea Bot', endpoint: `http://127.0.0.1:${llm.address().port}/v1`, api_key: 'sk-bot', model: 'local', knowledge: 'Shipping takes 3 days within the EU. Returns within 30 days.', timeout_ms: 3000 } },
  });
  assert.equal(res.status, 204, JSON.stringify(res.body));
});

after(async () => {
  await server?.stop();
  await new Promise((r) => llm.close(r));
});

const botSaid = (socket) => socket.next((f) => f.type === 'event' && f.kind === 'message' && f.author.role === 'system', 15_000);

test('the bot answers first from the knowledge; "human" hands over with the whole history', async () => {
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'en' });
  // With a bot, nobody is routed yet.
  assert.equal((await http(server.url, `/api/v1/conversations/${v.conversation}/queue`, { token: v.token })).body.position, null);
  await tab.sendMessage('How long does shipping take?');
  const answer = await botSaid(tab);
  assert.equal(answer.body.text, 'Shipping takes 3 days within the EU.');
  assert.equal(answer.author.name, 'Tea Bot');
  assert.equal(prompts.at(-1).messages.at(-1).content, 'How long does shipping take?');
  await tab.sendMessage('I want to talk to a human');
  const handoff = await tab.next((f) => f.type === 'event' && f.kind === 'handoff', 10_000);
  assert.ok(handoff.seq > answer.seq);
  // No agent is online: the conversation waits in the human queue.
  const place = await http(server.url, `/api/v1/conversations/${v.conversation}/queue`, { token: v.token });
  assert.equal(place.body.position, 1);
  // After the hand-off the bot stays quiet.
  const before = prompts.length;
  await tab.sendMessage('Hello? Anyone?');
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(prompts.length, before);
  // The agent who takes it sees what the bot said.
  const claimed = await http(server.url, `/api/v1/conversations/${v.conversation}/claim`, { method: 'POST', token: owner.token });
  assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
  const log = await fullHistory(server, v.conversation, owner.token);
  assert.ok(log.some((e) => e.kind === 'message' && e.author.name === 'Tea Bot'));
  assert.ok(log.some((e) => e.kind === 'handoff'));
  tab.close();
});

test('the "talk to a person" button hands over; a failing bot hands over by itself', async () => {
  const v = await newConversation(server);
  const pressed = await http(server.url, `/api/v1/conversations/${v.conversation}/handoff`, { method: 'POST', token: v.token });
  assert.equal(pressed.status, 200, JSON.stringify(pressed.body));
  assert.equal(pressed.body.kind, 'handoff');
  // Pressing again changes nothing; agents cannot hand over.
  assert.equal((await http(server.url, `/api/v1/conversations/${v.conversation}/handoff`, { method: 'POST', token: v.token })).status, 204);
  assert.equal((await http(server.url, `/api/v1/conversations/${v.conversation}/handoff`, { method: 'POST', token: owner.token })).status, 403);

  failing = true;
  try {
    const w = await newConversation(server);
    const tab = await connect(server, w.conversation, w.token, { after: 0 });
    await tab.sendMessage('Do you ship to Norway?');
    const handoff = await tab.next((f) => f.type === 'event' && f.kind === 'handoff', 15_000);
    assert.equal(handoff.author.role, 'system');
    tab.close();
  } finally {
    failing = false;
  }
});
