// LOG_LEVEL: at `warn` the per-message and per-request info lines are not written, while warnings
// still are. The built Worker in Miniflare; the warning comes from a real D1 fault.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { http, msgId, newConversation, sleep } from './support/client.mjs';

let server;

before(async () => {
  server = await startServer({ vars: { LOG_LEVEL: 'warn' } });
});

after(async () => {
  await server?.stop();
});

/** The Worker's JSON log lines written since `from`. */
function logged(from) {
  return server.logs.slice(from).flatMap((line) => {
    try {
      const entry = JSON.parse(line);
      return entry && typeof entry.event === 'string' ? [entry] : [];
    } catch {
      return [];
    }
  });
}

test('at LOG_LEVEL=warn chat works, info lines are left out and warnings are still written', async () => {
  const from = server.logs.length;
  const conv = await newConversation(server);
  await server.d1('ALTER TABLE messages RENAME TO messages_offline');
  try {
    const sent = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
      method: 'POST', token: conv.token, body: { client_msg_id: msgId('l'), text: 'kept, not logged' },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    // The site's D1 batch fails: a warning.
    const deadline = Date.now() + 10_000;
    while (!logged(from).some((e) => e.event === 'mirror_batch_failed')) {
      assert.ok(Date.now() < deadline, 'the failed D1 batch is logged as a warning');
      await sleep(100);
    }
  } finally {
    await server.d1('ALTER TABLE messages_offline RENAME TO messages');
  }
  const lines = logged(from);
  assert.ok(lines.every((e) => e.level === 'warn' || e.level === 'error'), JSON.stringify(lines.filter((e) => e.level === 'info').slice(0, 3)));
  assert.ok(!lines.some((e) => e.event === 'event_stored' || e.event === 'request'));
});
