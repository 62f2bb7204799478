// What a test server has stored, read back to prove that refused input changed nothing
// (DESIGN.md invariant 6), and the assertions on typed refusals the suites share.
//
//   const before = await snapshot(server, conversation, token);   // meta, history, reads, D1 rows
//   …refused request…
//   await assertUnchanged(server, conversation, token, before);
//
//   const files = await storedFiles(server, conversation);        // files table, R2 objects, blobs
//   …refused upload…
//   await assertFilesUnchanged(server, conversation, files);
//
// Durable Object storage is SQLite under <persistDir>/v3/do/<script>-<class>/, and R2 keeps its
// object index in a Miniflare Durable Object (v3/r2/miniflare-R2BucketObject/) and the bytes as
// files (v3/r2/<bucket>/blobs/). Those SQLite files are copied while the server runs (the WAL
// first, so a checkpoint in between loses nothing) and read by a throwaway workerd through
// Miniflare, the only SQLite the test machines are sure to have; the live files are never opened.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { readWranglerConfig } from '../../scripts/runtime.mjs';
import { fullHistory, http, poll } from './client.mjs';
import { tempDir } from './server.mjs';

const CONFIG = readWranglerConfig();
const WORKER = CONFIG.name ?? 'worker';
const BUCKET = CONFIG.r2_buckets?.find((b) => b.binding === 'ATTACHMENTS')?.bucket_name ?? 'ATTACHMENTS';

// ---------------------------------------------------------------------------------------------
// Typed refusals

export function assertErrorBody(body, code) {
  assert.equal(typeof body, 'object', `expected an error frame, got ${JSON.stringify(body)}`);
  assert.equal(body?.v, 1, JSON.stringify(body));
  assert.equal(body.type, 'error', JSON.stringify(body));
  assert.equal(body.code, code, JSON.stringify(body));
  assert.equal(typeof body.message, 'string');
  assert.ok(body.message.length > 0, 'error message is empty');
}

/** An HTTP answer ({ status, body }) that must be exactly this refusal. */
export function assertHttpError(res, status, code) {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${JSON.stringify(res.body)}`);
  assertErrorBody(res.body, code);
}

/**
 * A 429 rate_limited answer: retry_after_ms in the body, and a Retry-After header of whole
 * seconds (at least 1) that covers it. `res.headers` is a Headers object or a plain object.
 */
export function assertRateLimited(res) {
  assertHttpError(res, 429, 'rate_limited');
  const ms = res.body.retry_after_ms;
  assert.ok(Number.isInteger(ms) && ms > 0, `retry_after_ms: ${JSON.stringify(res.body)}`);
  const header = typeof res.headers?.get === 'function' ? res.headers.get('retry-after') : res.headers?.['retry-after'];
  assert.ok(header != null, 'no Retry-After header');
  assert.match(String(header), /^\d+$/);
  assert.ok(Number(header) >= 1 && Number(header) * 1000 >= ms, `Retry-After ${header} vs ${ms} ms`);
}

// ---------------------------------------------------------------------------------------------
// A conversation: meta, history, read markers and its D1 mirror

/** Waits until the D1 mirror holds the conversation up to `head`. */
export async function waitMirror(srv, conversation, head, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { results } = await srv.d1(
      `SELECT (SELECT last_seq FROM conversations WHERE id = ?1) AS last_seq,
              (SELECT count(*) FROM messages WHERE conversation_id = ?1) AS n`,
      [conversation],
    );
    if (results[0]?.last_seq === head && results[0]?.n === head) return;
    if (Date.now() > deadline) {
      assert.fail(`D1 mirror of ${conversation} not at head ${head}: ${JSON.stringify(results)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Everything stored about a conversation: its meta (GET), its whole history, its read markers
 * (long-poll) and its D1 mirror rows (once the mirror has caught up with the head).
 */
export async function snapshot(srv, conversation, token) {
  const info = await http(srv.url, `/api/v1/conversations/${conversation}`, { token });
  assert.equal(info.status, 200, JSON.stringify(info.body));
  const history = await fullHistory(srv, conversation, token);
  const p = await poll(srv, conversation, token, { after: info.body.head, epoch: info.body.epoch, wait: 0 });
  assert.equal(p.status, 200, JSON.stringify(p.body));
  await waitMirror(srv, conversation, info.body.head);
  const d1Conversation = (await srv.d1('SELECT * FROM conversations WHERE id = ?', [conversation])).results;
  const d1Messages = (await srv.d1('SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq', [conversation])).results;
  return { info: info.body, history, reads: p.body.reads, d1Conversation, d1Messages };
}

/** Asserts nothing stored about the conversation changed since `before`. */
export async function assertUnchanged(srv, conversation, token, before) {
  const now = await snapshot(srv, conversation, token);
  assert.deepEqual(now, before, 'stored data changed');
}

/** Asserts exactly the given message texts were appended since `before`, in order. */
export async function assertAppended(srv, conversation, token, before, appended) {
  const now = await snapshot(srv, conversation, token);
  assert.deepEqual(now.history.slice(0, before.history.length), before.history, 'earlier history changed');
  const added = now.history.slice(before.history.length);
  assert.deepEqual(added.map((e) => [e.kind, e.body.text]), appended.map((t) => ['message', t]));
  assert.equal(now.info.head, before.info.head + appended.length);
  return { now, added };
}

// ---------------------------------------------------------------------------------------------
// Durable Object and R2 storage, read from the persist directory

/** Copies one namespace's SQLite files (WAL first, no -shm: it is rebuilt from the WAL). */
function copyNamespace(from, to) {
  mkdirSync(to, { recursive: true });
  if (!existsSync(from)) return;
  const names = readdirSync(from);
  for (const suffix of ['.sqlite-wal', '.sqlite']) {
    for (const n of names.filter((x) => x.endsWith(suffix))) copyFileSync(join(from, n), join(to, n));
  }
}

const INSPECTOR = `
const run = (ctx, body) => {
  try {
    return Response.json({ rows: ctx.storage.sql.exec(body.sql, ...(body.params ?? [])).toArray() });
  } catch (e) {
    const error = String(e?.message ?? e);
    // A bucket nothing was ever written to has no index yet.
    if (body.optional && /no such table/.test(error)) return Response.json({ rows: [] });
    return Response.json({ error });
  }
};
export class ConversationObject { constructor(ctx) { this.ctx = ctx; } async fetch(req) { return run(this.ctx, await req.json()); } }
export class R2BucketObject { constructor(ctx) { this.ctx = ctx; } async fetch(req) { return run(this.ctx, await req.json()); } }
export class WebhookObject { constructor(ctx) { this.ctx = ctx; } async fetch(req) { return run(this.ctx, await req.json()); } }
export default {
  async fetch(req, env) {
    const body = await req.clone().json();
    const ns = env[body.ns];
    return ns.get(ns.idFromName(body.name)).fetch(req);
  },
};`;

/**
 * Runs read queries on copies of the server's object storage. `queries` are
 * { ns: 'conversation' | 'webhook' | 'r2', name, sql, params }: a conversation object by its id,
 * a site's webhook object by the site's id, or the R2 bucket index by the bucket's name.
 * Resolves to one row list per query.
 */
async function inspect(srv, queries) {
  const copy = tempDir('inspect-');
  try {
    for (const cls of ['ConversationObject', 'WebhookObject']) {
      copyNamespace(join(srv.persistDir, 'v3', 'do', `${WORKER}-${cls}`), join(copy, 'v3', 'do', `${WORKER}-${cls}`));
    }
    copyNamespace(join(srv.persistDir, 'v3', 'r2', 'miniflare-R2BucketObject'), join(copy, 'v3', 'do', 'miniflare-R2BucketObject'));
    const mf = new Miniflare({
      defaultPersistRoot: join(copy, 'v3'),
      workers: [
        {
          name: WORKER,
          modules: true,
          compatibilityDate: '2025-01-01',
          script: INSPECTOR,
          durableObjects: {
            conversation: { className: 'ConversationObject', useSQLite: true },
            webhook: { className: 'WebhookObject', useSQLite: true },
            r2: { className: 'R2BucketObject', scriptName: 'miniflare', useSQLite: true },
          },
        },
        { name: 'miniflare', modules: true, compatibilityDate: '2025-01-01', script: INSPECTOR },
      ],
    });
    try {
      const out = [];
      for (const q of queries) {
        const res = await mf.dispatchFetch('http://inspect/', { method: 'POST', body: JSON.stringify(q) });
        const body = await res.json();
        if (body.error) throw new Error(`${q.ns} ${q.name}: ${q.sql}: ${body.error}`);
        out.push(body.rows);
      }
      return out;
    } finally {
      await mf.dispose();
    }
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

/** Rows of a conversation object's own SQLite (e.g. `SELECT * FROM files`). */
export async function conversationRows(srv, conversation, sql, params = []) {
  const [rows] = await inspect(srv, [{ ns: 'conversation', name: conversation, sql, params }]);
  return rows;
}

/** Rows of a site's webhook object's own SQLite (e.g. `SELECT * FROM deliveries`). */
export async function webhookRows(srv, site, sql, params = []) {
  const [rows] = await inspect(srv, [{ ns: 'webhook', name: site, sql, params }]);
  return rows;
}

/** The keys of the R2 objects under `prefix` in the attachments bucket. */
export async function r2Keys(srv, prefix) {
  const [rows] = await inspect(srv, [{
    ns: 'r2', name: BUCKET, optional: true, sql: 'SELECT key FROM _mf_objects WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key', params: [prefix],
  }]);
  return rows.map((r) => r.key);
}

/** The R2 blob files of the attachments bucket: blob id → SHA-256 of its bytes. */
export function r2Blobs(srv) {
  const dir = join(srv.persistDir, 'v3', 'r2', BUCKET, 'blobs');
  const blobs = new Map();
  if (!existsSync(dir)) return blobs;
  for (const name of readdirSync(dir).sort()) {
    blobs.set(name, createHash('sha256').update(readFileSync(join(dir, name))).digest('hex'));
  }
  return blobs;
}

/**
 * What a conversation's files are, in storage: the rows of its object's `files` table, the R2
 * objects under its key prefix (with the SHA-256 of their bytes), and every blob of the bucket.
 */
export async function storedFiles(srv, conversation) {
  const [rows, objects] = await inspect(srv, [
    { ns: 'conversation', name: conversation, sql: 'SELECT * FROM files ORDER BY id' },
    {
      ns: 'r2', name: BUCKET, optional: true, sql: 'SELECT key, blob_id, size, etag FROM _mf_objects WHERE key >= ?1 AND key < ?2 ORDER BY key',
      params: [`c/${conversation}/`, `c/${conversation}0`],
    },
  ]);
  const blobs = r2Blobs(srv);
  return {
    rows,
    objects: objects.map((o) => ({ key: o.key, size: o.size, etag: o.etag, sha256: blobs.get(o.blob_id) ?? null })),
    blobs,
  };
}

/**
 * Asserts the conversation's files table and R2 objects are as in `before`, and that no bytes
 * were written to R2 anywhere since (blobs of other conversations may have been deleted by
 * then: unposted uploads expire).
 */
export async function assertFilesUnchanged(srv, conversation, before) {
  const now = await storedFiles(srv, conversation);
  assert.deepEqual(now.rows, before.rows, 'the files table changed');
  assert.deepEqual(now.objects, before.objects, 'the R2 objects changed');
  assert.deepEqual([...now.blobs.keys()].filter((b) => !before.blobs.has(b)), [], 'bytes were written to R2');
}
