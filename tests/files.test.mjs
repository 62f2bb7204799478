// Files in conversations: upload, post, download byte for byte, the download headers, JPEG
// location data removed, and the bad uploads (each case: input → exact code; nothing stored).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { startServer } from './support/server.mjs';
import { agentLogin, connect, fullHistory, http, msgId, newConversation, sleep } from './support/client.mjs';

const GENEROUS = { RATE_VISITOR_MESSAGES: '2000/200', RATE_AGENT_MESSAGES: '2000/200', UPLOAD_GRACE_SECONDS: '2' };

let server;
let agent;

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

async function upload(conversation, token, bytes, { type = 'application/octet-stream', name = 'file.bin' } = {}) {
  const res = await fetch(`${server.url}/api/v1/conversations/${conversation}/files?name=${encodeURIComponent(name)}`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type, 'cf-connecting-ip': ipOf(conversation) }, body: bytes,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function download(conversation, token, fileId) {
  const res = await fetch(`${server.url}/api/v1/conversations/${conversation}/files/${fileId}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

before(async () => {
  server = await startServer({ vars: GENEROUS });
  agent = await agentLogin(server);
});

after(async () => {
  await server?.stop();
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

test('bad uploads are refused with exact codes and store nothing', async () => {
  const conv = await newConversation(server);
  const cases = [
    ['SVG with a script', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'), 'image/svg+xml', 'x.svg', 415, 'unsupported_file_type'],
    ['HTML disguised as PNG', Buffer.from('<html><body><script>alert(document.cookie)</script></body></html>'), 'image/png', 'cat.png', 415, 'unsupported_file_type'],
    ['PNG bytes with a spoofed Content-Type', png(), 'application/pdf', 'doc.pdf', 415, 'file_type_mismatch'],
    ['a Windows executable', Buffer.from('MZ\x90\x00\x03\x00\x00\x00', 'binary'), 'application/octet-stream', 'setup.exe', 415, 'unsupported_file_type'],
    ['an empty file', Buffer.alloc(0), 'image/png', 'empty.png', 400, 'empty_file'],
  ];
  for (const [label, bytes, type, name, status, code] of cases) {
    const res = await upload(conv.conversation, conv.token, bytes, { type, name });
    assert.equal(res.status, status, `${label}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.code, code, label);
  }
  // Oversized for the site: the limit comes from the site's settings (here a server whose site
  // allows 1 KB, the smallest limit, set before its first request).
  const small = await startServer({ vars: GENEROUS });
  try {
    await small.d1('UPDATE sites SET settings = ?1', [JSON.stringify({ attachments: { max_bytes: 1024 } })]);
    const other = await newConversation(small);
    const res = await fetch(`${small.url}/api/v1/conversations/${other.conversation}/files?name=big.png`, {
      method: 'POST', headers: { authorization: `Bearer ${other.token}`, 'content-type': 'image/png' }, body: Buffer.concat([png(), Buffer.alloc(2000)]),
    });
    assert.equal(res.status, 413);
    assert.equal((await res.json()).code, 'file_too_large');
  } finally {
    await small.stop();
  }
  // Nothing of the above was recorded.
  const log = await fullHistory(server, conv.conversation, conv.token);
  assert.deepEqual(log.map((e) => e.kind), ['created']);
});

test('file names are cleaned: paths and right-to-left overrides removed', async () => {
  const conv = await newConversation(server);
  const traversal = await upload(conv.conversation, conv.token, Buffer.from('hello\n'), { type: 'text/plain', name: '../../etc/passwd' });
  assert.equal(traversal.body.file.name, 'passwd.txt');
  const rlo = await upload(conv.conversation, conv.token, Buffer.from('%PDF-1.4\n'), { type: 'application/pdf', name: 'invoice\u202efdp.exe' });
  assert.equal(rlo.body.file.name, 'invoicefdp.pdf');
});

test("another conversation's file and another visitor's access get the uniform not_found", async () => {
  const a = await newConversation(server);
  const b = await newConversation(server);
  const up = await upload(a.conversation, a.token, png(), { type: 'image/png', name: 'a.png' });
  // Posting A's file in B's conversation.
  const cross = await http(server.url, `/api/v1/conversations/${b.conversation}/messages`, {
    method: 'POST', token: b.token, body: { client_msg_id: msgId('x'), file: up.body.file.id },
  });
  assert.equal(cross.status, 404);
  assert.equal(cross.body.code, 'file_not_found');
  // Downloading A's file through B's conversation, or as B through A's.
  assert.equal((await download(b.conversation, b.token, up.body.file.id)).status, 404);
  assert.equal((await download(a.conversation, b.token, up.body.file.id)).status, 404);
  // An unposted upload is its uploader's only: the agent cannot read it yet.
  assert.equal((await download(a.conversation, agent.token, up.body.file.id)).status, 404);
  // Forged and expired tokens.
  const forged = await fetch(`${server.url}/api/v1/conversations/${a.conversation}/files?name=x.png`, {
    method: 'POST', headers: { authorization: 'Bearer p1.e30.AAAA', 'content-type': 'image/png' }, body: png(),
  });
  assert.equal(forged.status, 401);
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

test('uploads are rate limited with retry-after', async () => {
  const conv = await newConversation(server);
  let limited;
  for (let i = 0; i < 15 && !limited; i += 1) {
    const res = await fetch(`${server.url}/api/v1/conversations/${conv.conversation}/files?name=t.txt`, {
      method: 'POST', headers: { authorization: `Bearer ${conv.token}`, 'content-type': 'text/plain' }, body: `line ${i}\n`,
    });
    if (res.status === 429) limited = { body: await res.json(), retryAfter: res.headers.get('retry-after') };
    else await res.arrayBuffer();
  }
  assert.ok(limited, 'the 11th upload in a burst is refused');
  assert.equal(limited.body.code, 'rate_limited');
  assert.ok(Number(limited.retryAfter) >= 1);
});
