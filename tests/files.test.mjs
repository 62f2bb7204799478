// Files in conversations: upload, post, download byte for byte, the download headers, JPEG
// location data removed, and the bad uploads. Each refused case states its input and the exact
// code, and compares what is stored — the conversation's files table, its R2 objects and the
// bucket's blobs on disk — before and after.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { deflateSync } from 'node:zlib';
import { startServer } from './support/server.mjs';
import { agentLogin, chunkedPost, connect, fullHistory, http, msgId, newConversation, sleep } from './support/client.mjs';
import {
  assertFilesUnchanged, assertHttpError, assertRateLimited, assertUnchanged, snapshot, storedFiles,
} from './support/stored.mjs';

/** Uploads share 1 MiB of the isolate's memory (each holds twice what it has buffered: a JPEG's copy). */
const GENEROUS = { RATE_VISITOR_MESSAGES: '2000/200', RATE_AGENT_MESSAGES: '2000/200', UPLOAD_GRACE_SECONDS: '2', UPLOAD_BUFFER_MB: '1' };
/**
 * The second server: its site allows 1 KB (the smallest limit, set before its first request),
 * visitor tokens live 6 s (for the expired-token case) and one address may upload 3 files.
 */
const SMALL = { ...GENEROUS, VISITOR_TOKEN_TTL: '6', RATE_IP_UPLOADS: '3/0.001' };
const SMALL_MAX = 1024;
const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

let server;
let agent;
let small;
let smallAgent;

/** A valid 2×2 RGB PNG, built here (chunks with CRCs). */
function png() {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(2, 0);
  ihdr.writeUInt32BE(2, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const raw = Buffer.from([0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255]);
  return Buffer.concat([
    Buffer.from('\x89PNG\r\n\x1a\n', 'binary'),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A JPEG skeleton with an EXIF (APP1) segment holding a GPS marker string. */
function jpegWithExif() {
  const app0 = Buffer.from([0xff, 0xe0, 0x00, 0x10, ...Buffer.from('JFIF\0'), 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  const exifBody = Buffer.concat([Buffer.from('Exif\0\0'), Buffer.from('GPSLatitude=31.2304N;GPSLongitude=121.4737E')]);
  const app1 = Buffer.concat([Buffer.from([0xff, 0xe1]), Buffer.from([(exifBody.length + 2) >> 8, (exifBody.length + 2) & 0xff]), exifBody]);
  const scan = Buffer.from([0xff, 0xda, 0x00, 0x04, 0x01, 0x02, 0x12, 0x34, 0x56, 0xff, 0xd9]);
  return { jpeg: Buffer.concat([Buffer.from([0xff, 0xd8]), app0, app1, scan]), expected: Buffer.concat([Buffer.from([0xff, 0xd8]), app0, scan]) };
}

/** A client address per conversation, so one test's uploads don't spend another's IP budget. */
function ipOf(conversation) {
  const n = [...conversation].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
  return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

/** An id of the right shape that nobody minted (`f_`, `c_` + 26 base32). */
const unknownId = (prefix) => `${prefix}_${Array.from(randomBytes(26), (b) => B32[b & 31]).join('')}`;

const parse = (text) => {
  try { return text ? JSON.parse(text) : null; } catch { return text; }
};

/** Uploads to `srv`; resolves to { status, headers, body }. */
async function uploadTo(srv, conversation, token, bytes, { type = 'application/octet-stream', name = 'file.bin', ip = ipOf(conversation) } = {}) {
  const res = await fetch(`${srv.url}/api/v1/conversations/${conversation}/files?name=${encodeURIComponent(name)}`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type, 'cf-connecting-ip': ip }, body: bytes,
  });
  return { status: res.status, headers: res.headers, body: parse(await res.text()) };
}

function upload(conversation, token, bytes, opts) {
  return uploadTo(server, conversation, token, bytes, opts);
}

/**
 * Uploads `total` bytes of text as a chunked body (no Content-Length), on a connection of its
 * own, writing as fast as the server takes them and stopping once it answers. Resolves to
 * { status, headers, body, sent }: `sent` is how much had been written by the answer.
 */
function chunkedUpload(srv, conversation, token, total, { name = 'big.txt', ip = ipOf(conversation) } = {}) {
  return chunkedPost(`${srv.url}/api/v1/conversations/${conversation}/files?name=${encodeURIComponent(name)}`,
    { authorization: `Bearer ${token}`, 'content-type': 'text/plain', 'cf-connecting-ip': ip }, total);
}

async function download(conversation, token, fileId) {
  const res = await fetch(`${server.url}/api/v1/conversations/${conversation}/files/${fileId}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, bytes, body: res.ok ? null : parse(bytes.toString('utf8')) };
}

/** Posts an uploaded file in the conversation (so it is kept past the grace period). */
async function post(srv, conversation, token, fileId) {
  const res = await http(srv.url, `/api/v1/conversations/${conversation}/messages`, {
    method: 'POST', token, body: { client_msg_id: msgId('post'), file: fileId },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res;
}

before(async () => {
  [server, small] = await Promise.all([startServer({ vars: GENEROUS }), startServer({ vars: SMALL })]);
  await small.d1('UPDATE sites SET settings = ?1', [JSON.stringify({ attachments: { max_bytes: SMALL_MAX } })]);
  [agent, smallAgent] = await Promise.all([agentLogin(server), agentLogin(small)]);
});

after(async () => {
  await Promise.all([server?.stop(), small?.stop()]);
});

test('a visitor sends an image: the agent sees a file event and downloads it byte for byte, inline and inert', async () => {
  const conv = await newConversation(server);
  const device = await connect(server, conv.conversation, agent.token, { after: 0 });
  const tab = await connect(server, conv.conversation, conv.token, { after: 0 });
  const bytes = png();
  const up = await upload(conv.conversation, conv.token, bytes, { type: 'image/png', name: 'screenshot.png' });
  assert.equal(up.status, 201, JSON.stringify(up.body));
  assert.deepEqual(
    { ...up.body.file, id: undefined },
    { id: undefined, name: 'screenshot.png', type: 'image/png', size: bytes.length, image: true },
  );
  const id = msgId('file');
  tab.send({ type: 'send', client_msg_id: id, file: up.body.file.id });
  const ack = await tab.next((f) => f.type === 'ack' && f.client_msg_id === id);
  const event = await device.next((f) => f.type === 'event' && f.seq === ack.seq);
  assert.equal(event.kind, 'file');
  assert.deepEqual(event.body.file, up.body.file);
  // A retry posts nothing new.
  tab.send({ type: 'send', client_msg_id: id, file: up.body.file.id });
  assert.equal((await tab.next((f) => f.type === 'ack' && f.client_msg_id === id)).duplicate, true);

  const got = await download(conv.conversation, agent.token, up.body.file.id);
  assert.equal(got.status, 200);
  assert.ok(got.bytes.equals(bytes), 'downloaded bytes are identical');
  assert.equal(got.headers.get('content-type'), 'image/png');
  assert.equal(got.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(got.headers.get('content-security-policy'), "sandbox; default-src 'none'");
  assert.match(got.headers.get('content-disposition'), /^inline; filename="screenshot.png"/);
  tab.close();
  device.close();
});

test('an agent sends a PDF: the visitor downloads it as an attachment', async () => {
  const conv = await newConversation(server);
  const pdf = Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n');
  const up = await upload(conv.conversation, agent.token, pdf, { type: 'application/pdf', name: '发票 2026.pdf' });
  assert.equal(up.status, 201, JSON.stringify(up.body));
  const post = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: agent.token, body: { client_msg_id: msgId('pdf'), file: up.body.file.id },
  });
  assert.equal(post.status, 200, JSON.stringify(post.body));
  const got = await download(conv.conversation, conv.token, up.body.file.id);
  assert.equal(got.status, 200);
  assert.ok(got.bytes.equals(pdf));
  assert.match(got.headers.get('content-disposition'), /^attachment; filename="__ 2026.pdf"; filename\*=UTF-8''%E5%8F%91%E7%A5%A8%202026\.pdf$/);
});

test('location data is stripped from JPEG photos before they are stored', async () => {
  const conv = await newConversation(server);
  const { jpeg, expected } = jpegWithExif();
  const up = await upload(conv.conversation, conv.token, jpeg, { type: 'image/jpeg', name: 'IMG_0001.JPG' });
  assert.equal(up.status, 201, JSON.stringify(up.body));
  assert.equal(up.body.file.name, 'IMG_0001.jpg');
  const got = await download(conv.conversation, conv.token, up.body.file.id);
  assert.ok(got.bytes.equals(expected), 'the APP1 (EXIF/GPS) segment is gone, the image data is intact');
  assert.ok(!got.bytes.includes(Buffer.from('GPSLatitude')));
});

test('bad uploads → SVG with a script 415 unsupported_file_type, HTML as PNG 415 unsupported_file_type, PNG declared as PDF 415 file_type_mismatch, an .exe 415 unsupported_file_type, empty 400 empty_file; each stores nothing', async () => {
  const conv = await newConversation(server);
  const cases = [
    ['SVG with a script', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'), 'image/svg+xml', 'x.svg', 415, 'unsupported_file_type'],
    ['HTML disguised as PNG', Buffer.from('<html><body><script>alert(document.cookie)</script></body></html>'), 'image/png', 'cat.png', 415, 'unsupported_file_type'],
    ['PNG bytes with a spoofed Content-Type', png(), 'application/pdf', 'doc.pdf', 415, 'file_type_mismatch'],
    ['a Windows executable', Buffer.from('MZ\x90\x00\x03\x00\x00\x00', 'binary'), 'application/octet-stream', 'setup.exe', 415, 'unsupported_file_type'],
    ['an empty file', Buffer.alloc(0), 'image/png', 'empty.png', 400, 'empty_file'],
  ];
  const before = await snapshot(server, conv.conversation, conv.token);
  const files = await storedFiles(server, conv.conversation);
  assert.deepEqual([files.rows, files.objects], [[], []]);
  for (const [label, bytes, type, name, status, code] of cases) {
    const res = await upload(conv.conversation, conv.token, bytes, { type, name });
    assert.equal(res.status, status, `${label}: ${JSON.stringify(res.body)}`);
    assertHttpError(res, status, code);
    await assertFilesUnchanged(server, conv.conversation, files);
  }
  await assertUnchanged(server, conv.conversation, conv.token, before);
});

test(`oversized for the site (max_bytes ${SMALL_MAX}, second server): a declared Content-Length over it and a 64 MiB chunked body without one → 413 file_too_large, the chunked body not read to its end; nothing stored; exactly ${SMALL_MAX} bytes is accepted`, async () => {
  const conv = await newConversation(small);
  const files = await storedFiles(small, conv.conversation);
  // Each upload from its own address: this server lets an address upload 3 files.
  const declared = await uploadTo(small, conv.conversation, smallAgent.token, Buffer.concat([png(), Buffer.alloc(2000)]), { type: 'image/png', name: 'big.png', ip: '127.0.119.1' });
  assertHttpError(declared, 413, 'file_too_large');
  await assertFilesUnchanged(small, conv.conversation, files);

  const total = 64 * 1024 * 1024;
  const chunked = await chunkedUpload(small, conv.conversation, smallAgent.token, total, { ip: '127.0.119.2' });
  assertHttpError(chunked, 413, 'file_too_large');
  assert.ok(chunked.sent < total, `the server read the whole body (${chunked.sent} of ${total} bytes sent) before refusing it`);
  await assertFilesUnchanged(small, conv.conversation, files);
  // One byte over, chunked, is refused too; the limit itself is allowed.
  assertHttpError(await chunkedUpload(small, conv.conversation, smallAgent.token, SMALL_MAX + 1, { ip: '127.0.119.3' }), 413, 'file_too_large');
  await assertFilesUnchanged(small, conv.conversation, files);
  const edge = await chunkedUpload(small, conv.conversation, smallAgent.token, SMALL_MAX, { name: 'edge.txt', ip: '127.0.119.4' });
  assert.equal(edge.status, 201, JSON.stringify(edge.body));
  assert.equal(edge.body.file.size, SMALL_MAX);
  const stored = await storedFiles(small, conv.conversation);
  assert.deepEqual(stored.rows.map((r) => [r.id, r.size]), [[edge.body.file.id, SMALL_MAX]]);
  assert.deepEqual(stored.objects.map((o) => [o.key, o.size]), [[`c/${conv.conversation}/${edge.body.file.id}`, SMALL_MAX]]);
});

test('file names are cleaned: "../../etc/passwd" and "invoice\\u202efdp.exe" → 201, stored and downloaded under the cleaned name', async () => {
  const conv = await newConversation(server);
  const cases = [
    ['../../etc/passwd', Buffer.from('hello\n'), 'text/plain', 'passwd.txt'],
    ['invoice\u202efdp.exe', Buffer.from('%PDF-1.4\n'), 'application/pdf', 'invoicefdp.pdf'],
  ];
  for (const [name, bytes, type, clean] of cases) {
    const up = await upload(conv.conversation, conv.token, bytes, { type, name });
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.equal(up.body.file.name, clean);
    const got = await download(conv.conversation, conv.token, up.body.file.id);
    assert.equal(got.status, 200);
    assert.ok(got.bytes.equals(bytes));
    assert.equal(got.headers.get('content-disposition'), `attachment; filename="${clean}"; filename*=UTF-8''${clean}`);
  }
});

test("another conversation's file: posted in B → 404 file_not_found (client_msg_id echoed), B unchanged; downloaded through B, as B, or unposted by an agent → 404 not_found, the same body as a file that does not exist", async () => {
  const a = await newConversation(server);
  const b = await newConversation(server);
  const up = await upload(a.conversation, a.token, png(), { type: 'image/png', name: 'a.png' });
  assert.equal(up.status, 201, JSON.stringify(up.body));
  const fileId = up.body.file.id;
  const nothing = await download(b.conversation, b.token, unknownId('f'));
  assertHttpError(nothing, 404, 'not_found');
  const uniform = async (conversation, token) => {
    const got = await download(conversation, token, fileId);
    assertHttpError(got, 404, 'not_found');
    assert.deepEqual(got.body, nothing.body);
    assert.equal(got.headers.get('content-disposition'), null);
  };
  // Not yet posted, it is its uploader's only: the agent cannot read it.
  await uniform(a.conversation, agent.token);
  await post(server, a.conversation, a.token, fileId);
  assert.equal((await download(a.conversation, agent.token, fileId)).status, 200);

  // Posting A's file in B's conversation, over HTTP and over a socket.
  const bBefore = await snapshot(server, b.conversation, b.token);
  const bFiles = await storedFiles(server, b.conversation);
  const id = msgId('x');
  const cross = await http(server.url, `/api/v1/conversations/${b.conversation}/messages`, {
    method: 'POST', token: b.token, body: { client_msg_id: id, file: fileId },
  });
  assertHttpError(cross, 404, 'file_not_found');
  assert.equal(cross.body.client_msg_id, id);
  const tab = await connect(server, b.conversation, b.token);
  const wsId = msgId('xws');
  tab.send({ type: 'send', client_msg_id: wsId, file: fileId });
  const refused = await tab.next((f) => f.type === 'error' || (f.type === 'ack' && f.client_msg_id === wsId));
  tab.close();
  assert.equal(refused.type, 'error', JSON.stringify(refused));
  assert.equal(refused.code, 'file_not_found');
  assert.equal(refused.client_msg_id, wsId);
  await assertUnchanged(server, b.conversation, b.token, bBefore);
  await assertFilesUnchanged(server, b.conversation, bFiles);

  // Downloading A's file through B's conversation, or as B through A's.
  await uniform(b.conversation, b.token);
  await uniform(a.conversation, b.token);
});

test('uploads with a forged token (A\'s claims, B\'s signature; a garbage token) → 401 token_invalid; with an expired visitor token (second server, 6 s) → 401 token_expired; nothing stored', async () => {
  const a = await newConversation(server);
  const b = await newConversation(server);
  const files = await storedFiles(server, a.conversation);
  const forged = `p1.${a.token.split('.')[1]}.${b.token.split('.')[2]}`;
  for (const token of [forged, 'p1.e30.AAAA']) {
    assertHttpError(await upload(a.conversation, token, png(), { type: 'image/png', name: 'x.png' }), 401, 'token_invalid');
    await assertFilesUnchanged(server, a.conversation, files);
  }

  const late = await newConversation(small);
  const deadline = Date.now() + 20_000;
  let me;
  do {
    await sleep(250);
    me = await http(small.url, '/api/v1/me', { token: late.token });
  } while (me.status === 200 && Date.now() < deadline);
  assertHttpError(me, 401, 'token_expired');
  const lateFiles = await storedFiles(small, late.conversation);
  assertHttpError(await uploadTo(small, late.conversation, late.token, Buffer.from('late\n'), { type: 'text/plain', name: 'late.txt' }), 401, 'token_expired');
  await assertFilesUnchanged(small, late.conversation, lateFiles);
});

/**
 * Starts an upload that declares `total` bytes and sends only the first `first`: the server holds
 * its share of upload memory while it waits for the rest. `finish()` sends the rest and resolves
 * to the answer.
 */
async function heldUpload(srv, conversation, token, total, first, { ip = ipOf(conversation) } = {}) {
  let answer;
  const answered = new Promise((resolve, reject) => {
    const req = httpRequest(`${srv.url}/api/v1/conversations/${conversation}/files?name=held.txt`, {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain', 'content-length': String(total), 'cf-connecting-ip': ip, connection: 'close' },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: parse(text) }));
    });
    req.on('error', reject);
    req.write(Buffer.alloc(first, 0x61));
    answer = req;
  });
  // The server has the headers and the first bytes, and is waiting for the rest.
  await sleep(500);
  return {
    finish() {
      answer.end(Buffer.alloc(total - first, 0x61));
      return answered;
    },
  };
}

test('an upload arriving while another holds the upload memory (UPLOAD_BUFFER_MB 1) → 503 uploads_busy with Retry-After, nothing stored; a small one that fits goes; sent again after the other, it is stored', async () => {
  const conv = await newConversation(server);
  const before = await storedFiles(server, conv.conversation);
  // 450,000 of 500,000 bytes in: its buffer has its full 500,000, held twice (1,000,000 bytes).
  const held = await heldUpload(server, conv.conversation, agent.token, 500_000, 450_000);
  const size = 400_000;
  const text = Buffer.alloc(size, 0x62);
  const busy = await upload(conv.conversation, conv.token, text, { type: 'text/plain', name: 'second.txt' });
  assertHttpError(busy, 503, 'uploads_busy');
  assert.equal(busy.headers.get('retry-after'), '2');
  await assertFilesUnchanged(server, conv.conversation, before);
  // 2 × 10,000 fits beside the 1,000,000 held (of 1,048,576).
  const small = await upload(conv.conversation, conv.token, Buffer.alloc(10_000, 0x63), { type: 'text/plain', name: 'small.txt' });
  assert.equal(small.status, 201, JSON.stringify(small.body));
  const first = await held.finish();
  assert.equal(first.status, 201, JSON.stringify(first.body));
  assert.equal(first.body.file.size, 500_000);
  const again = await upload(conv.conversation, conv.token, text, { type: 'text/plain', name: 'second.txt' });
  assert.equal(again.status, 201, JSON.stringify(again.body));
  const stored = await storedFiles(server, conv.conversation);
  assert.deepEqual(stored.rows.map((r) => r.size).sort((a, b) => a - b), [10_000, size, 500_000]);
  const back = await download(conv.conversation, conv.token, again.body.file.id);
  assert.ok(back.bytes.equals(text), 'the upload sent again is stored byte for byte');
});

test('uploads never posted are deleted after the grace period', async () => {
  const conv = await newConversation(server);
  const up = await upload(conv.conversation, conv.token, png(), { type: 'image/png', name: 'never-sent.png' });
  assert.equal((await download(conv.conversation, conv.token, up.body.file.id)).status, 200);
  const deadline = Date.now() + 20_000;
  let status = 200;
  while (status === 200 && Date.now() < deadline) {
    await sleep(500);
    status = (await download(conv.conversation, conv.token, up.body.file.id)).status;
  }
  assert.equal(status, 404);
});

test('uploads per participant past RATE_UPLOADS (burst 10, then 1 per 5 s) → 429 rate_limited with Retry-After; exactly the accepted uploads are stored', async () => {
  const conv = await newConversation(server);
  const accepted = [];
  let limited;
  for (let i = 0; i < 15 && !limited; i += 1) {
    const res = await upload(conv.conversation, conv.token, Buffer.from(`line ${i}\n`), { type: 'text/plain', name: 't.txt' });
    if (res.status === 429) {
      limited = res;
    } else {
      assert.equal(res.status, 201, JSON.stringify(res.body));
      accepted.push(res.body.file.id);
      await post(server, conv.conversation, conv.token, res.body.file.id);
    }
  }
  assert.ok(limited, 'the burst was not limited');
  assertRateLimited(limited);
  assert.ok(accepted.length >= 10 && accepted.length <= 11, `${accepted.length} accepted`);
  const stored = await storedFiles(server, conv.conversation);
  assert.deepEqual(stored.rows.map((r) => r.id).sort(), [...accepted].sort());
  assert.deepEqual(stored.objects.map((o) => o.key).sort(), accepted.map((id) => `c/${conv.conversation}/${id}`).sort());
  assert.ok(stored.objects.every((o) => o.sha256), 'an R2 object without its bytes');
  // Refused again at once: still nothing more.
  assertRateLimited(await upload(conv.conversation, conv.token, Buffer.from('more\n'), { type: 'text/plain', name: 't.txt' }));
  await assertFilesUnchanged(server, conv.conversation, stored);
});

test('uploads from one address (127.0.118.1) past RATE_IP_UPLOADS 3/0.001 (second server) → 429 rate_limited with Retry-After for the visitor and an agent alike; nothing more stored; another address still uploads', async () => {
  const conv = await newConversation(small);
  const ip = '127.0.118.1';
  const accepted = [];
  for (const token of [conv.token, smallAgent.token, conv.token]) {
    const res = await uploadTo(small, conv.conversation, token, Buffer.from(`note ${accepted.length}\n`), { type: 'text/plain', name: 'n.txt', ip });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    await post(small, conv.conversation, token, res.body.file.id);
    accepted.push(res.body.file.id);
  }
  const stored = await storedFiles(small, conv.conversation);
  assert.deepEqual(stored.rows.map((r) => r.id).sort(), [...accepted].sort());
  for (const token of [conv.token, smallAgent.token]) {
    assertRateLimited(await uploadTo(small, conv.conversation, token, Buffer.from('one more\n'), { type: 'text/plain', name: 'n.txt', ip }));
    await assertFilesUnchanged(small, conv.conversation, stored);
  }
  const elsewhere = await uploadTo(small, conv.conversation, conv.token, Buffer.from('from home\n'), { type: 'text/plain', name: 'n.txt', ip: '127.0.118.2' });
  assert.equal(elsewhere.status, 201, JSON.stringify(elsewhere.body));
});

test('an agent\'s file asked for as a private note → 400 invalid_request (client_msg_id echoed), nothing stored; posted as a message it goes through', async () => {
  const conv = await newConversation(server);
  const up = await upload(conv.conversation, agent.token, png(), { type: 'image/png', name: 'internal.png', ip: '192.0.2.77' });
  assert.equal(up.status, 201, JSON.stringify(up.body));
  const before = await snapshot(server, conv.conversation, conv.token);
  const id = msgId('note-file');
  const refused = await http(server.url, `/api/v1/conversations/${conv.conversation}/messages`, {
    method: 'POST', token: agent.token, body: { client_msg_id: id, note: true, file: up.body.file.id },
  });
  assertHttpError(refused, 400, 'invalid_request');
  assert.equal(refused.body.client_msg_id, id);
  await assertUnchanged(server, conv.conversation, conv.token, before);
  await post(server, conv.conversation, agent.token, up.body.file.id);
});
