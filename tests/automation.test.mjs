// Automations: the away reply outside business hours (once), keyword replies in the visitor's
// language, and idle conversations closed with a notice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { agentLogin, connect, fullHistory, http, newConversation, openConsole, siteId } from './support/client.mjs';

let server;
let owner;

before(async () => {
  server = await startServer();
  owner = await agentLogin(server);
  const site = await siteId(server, owner.token);
  // Closed every day (an empty week), configured before the first conversation.
  const res = await http(server.url, `/api/v1/sites/${site}`, {
    method: 'PATCH', token: owner.token,
    body: {
      routing: { answer_timeout_ms: 120000, heartbeat_timeout_ms: 60000, hours: { enabled: true, timezone: 'UTC', weekly: {} } },
      automation: {
        away_reply: { en: "We're away right now; we'll answer first thing.", 'zh-CN': '我们暂时不在，上班后第一时间回复您。' },
        keyword_replies: [
          { keywords: ['refund', '退款'], reply: { en: 'Refunds take 3–5 days.', 'zh-CN': '退款需要 3–5 个工作日。' } },
          // A pattern: the whole message, `*` any text, `?` one character.
          { keywords: ['where is order ????*'], reply: { en: 'Track any order at example.com/track.' } },
        ],
        auto_close_seconds: 12,
        close_notice: { en: 'We closed this chat after a quiet while. Write again any time.', 'zh-CN': '会话已因长时间无消息而关闭，欢迎随时再联系我们。' },
      },
    },
  });
  assert.equal(res.status, 204, JSON.stringify(res.body));
});

after(async () => {
  await server?.stop();
});

test('outside hours: one away reply; keyword replies in the visitor language', async () => {
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'zh-CN' });
  const first = await tab.sendMessage('你好，我想退款');
  const auto = [];
  while (auto.length < 2) {
    const e = await tab.next((f) => f.type === 'event' && f.kind === 'message' && f.author.role === 'system', 10_000);
    auto.push(e);
  }
  assert.ok(auto.every((e) => e.seq > first.seq), 'automations follow the message');
  assert.deepEqual(auto.map((e) => e.body.text).sort(), ['我们暂时不在，上班后第一时间回复您。', '退款需要 3–5 个工作日。'].sort());
  // A second message the same day gets no second away reply, and the keyword rule has fired.
  await tab.sendMessage('还在吗？');
  await new Promise((r) => setTimeout(r, 800));
  const log = await fullHistory(server, v.conversation, v.token);
  assert.equal(log.filter((e) => e.author.role === 'system' && e.kind === 'message').length, 2);
  tab.close();
});

test("the agents' feed hears of a message and the replies it set off in seq order", async () => {
  const console_ = await openConsole(server, await siteId(server, owner.token), owner.token);
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'en' });
  const sent = await tab.sendMessage('I need a refund');
  const seqs = [];
  // The message, the away reply and the keyword reply.
  while (seqs.length < 3) {
    const f = await console_.next((x) => x.type === 'feed' && x.event === 'activity'
      && x.conversation === v.conversation && x.seq >= sent.seq, 10_000);
    seqs.push(f.seq);
  }
  assert.deepEqual(seqs, [sent.seq, sent.seq + 1, sent.seq + 2]);
  tab.close();
  console_.close();
});

test('a pattern rule answers messages that match it whole, not those that only contain it', async () => {
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'en' });
  await tab.sendMessage('Hi! Where is order 12?'); // "where is order" inside, not the whole message
  await tab.sendMessage('Where is order 4711?');
  const answer = await tab.next((f) => f.type === 'event' && f.author.role === 'system' && f.body.text.startsWith('Track'), 10_000);
  assert.equal(answer.body.text, 'Track any order at example.com/track.');
  await new Promise((r) => setTimeout(r, 500));
  const log = await fullHistory(server, v.conversation, v.token);
  const asked = log.filter((e) => e.author.role === 'visitor').map((e) => e.seq);
  assert.ok(answer.seq > asked[1], 'the reply follows the message that matched');
  assert.equal(log.filter((e) => e.body?.text?.startsWith('Track')).length, 1);
  tab.close();
});

test('an idle conversation is closed with a notice', async () => {
  const v = await newConversation(server);
  const tab = await connect(server, v.conversation, v.token, { after: 0, lang: 'en' });
  await tab.sendMessage('Anyone there?');
  const closed = await tab.next((f) => f.type === 'event' && f.kind === 'closed', 40_000);
  assert.equal(closed.author.role, 'system');
  const log = await fullHistory(server, v.conversation, v.token);
  const notice = log.find((e) => e.body?.text?.startsWith('We closed this chat'));
  assert.ok(notice && notice.seq < closed.seq, 'the notice comes before the close');
  // Reopened, it gets a whole quiet period again before it is closed again, with a notice of
  // its own: the reopen counts as activity, so the agent who reopened it is not cut off by the
  // quiet time from before the close.
  const reopen = await http(server.url, `/api/v1/conversations/${v.conversation}/reopen`, { method: 'POST', token: owner.token });
  assert.ok(reopen.status < 300, JSON.stringify(reopen.body));
  const reopened = await tab.next((f) => f.type === 'event' && f.kind === 'reopened', 10_000);
  const closedAgain = await tab.next((f) => f.type === 'event' && f.kind === 'closed' && f.seq > reopened.seq, 45_000);
  // Due 12 s after the reopen, not at the first alarm after it (the reopen's own write arms one
  // for 30 s later, which found the old quiet time overdue and closed at once).
  const quiet = closedAgain.at - reopened.at;
  assert.ok(quiet >= 12_000 && quiet < 28_000, `closed again ${quiet} ms after the reopen`);
  const after = (await fullHistory(server, v.conversation, v.token)).filter((e) => e.seq > reopened.seq && e.seq < closedAgain.seq);
  assert.ok(after.some((e) => e.body?.text?.startsWith('We closed this chat')), 'a notice before the second close');
  tab.close();
});
