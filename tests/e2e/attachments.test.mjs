// Attachments in the widget: the visitor attaches files by the picker, by drag and drop and by
// pasting a screenshot; the agent gets the very bytes; the agent's image shows as a thumbnail
// fetched with the token (a blob: URL), a document as a download chip; the site's size limit
// is checked before uploading, the server's refusals are shown in the visitor's language,
// names stay text, and a file whose upload a reload cut short is shown as not sent. In the agent
// console, an upload shows its progress, one that fails stays with its reason (and a retry
// where one may work), and files arrive intact both ways, byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { deflateSync } from 'node:zlib';
import { fullHistory, http, msgId, sleep } from '../support/client.mjs';
import {
  agentJoin, agentOnline, conversationOf, diag, openDemo, openPanel, send, signIn, visitorContext, waitFor,
  waitForText, widgetSuite,
} from './helpers.mjs';
import { startServer } from '../support/server.mjs';

// ---- test files, made here

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
const chunk = (type, data) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
};
/** A valid RGB PNG of w×h pixels coloured by fn(x, y) → [r, g, b]. */
function png(w, h, fn) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const raw = Buffer.alloc(h * (1 + w * 3));
  for (let y = 0; y < h; y++) {
    raw[y * (1 + w * 3)] = 0; // filter: none
    for (let x = 0; x < w; x++) raw.set(fn(x, y), y * (1 + w * 3) + 1 + x * 3);
  }
  return Buffer.concat([
    Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
const PHOTO = png(64, 40, (x, y) => [40 + x * 3, 120 + y * 2, 200 - x * 2]);
const SCREENSHOT = png(48, 48, (x, y) => ((x >> 3) + (y >> 3)) % 2 ? [255, 255, 255] : [30, 64, 175]);
const AGENT_IMAGE = png(80, 56, (x, y) => [230 - y * 2, 140 + x, 60]);
const pdf = (text, pad = 0) => Buffer.concat([
  Buffer.from(`%PDF-1.4\n% ${text}\n1 0 obj <<>> endobj\ntrailer <<>>\n`),
  Buffer.alloc(pad, 0x20),
  Buffer.from('%%EOF\n'),
]);
const INVOICE = pdf('invoice 2025-117');
const SVG = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>');
const EVIL = '<img src=x onerror=alert(1)>';

let server;
let browser;
let agent;
/** A proxy that refuses WebSocket upgrades, for the long-poll path. */
let proxy;
widgetSuite({ blockUpgrades: true }, (parts) => ({ server, browser, agent, proxy } = parts));

// ---- helpers

const FILE_INPUT = '[data-parley] input[type=file]';

/** Files in the panel as the visitor sees them. */
function panelFiles(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-parley]').shadowRoot;
    return [...root.querySelectorAll('.list li.m')].filter((li) => li.querySelector('.bub.fb')).map((li) => {
      const img = li.querySelector('.th img');
      return {
        mine: li.classList.contains('me'),
        image: !!img,
        src: img?.getAttribute('src') ?? null,
        alt: img?.getAttribute('alt') ?? null,
        loaded: !!img && img.complete && img.naturalWidth > 0,
        name: li.querySelector('.fn')?.textContent ?? null,
        size: li.querySelector('.fz')?.textContent ?? null,
        state: li.querySelector('.st')?.classList[1] ?? null,
        note: li.querySelector('.why')?.textContent ?? null,
        actions: [...li.querySelectorAll('.xt button')].map((b) => b.textContent),
        progress: li.querySelector('[role=progressbar]')?.getAttribute('aria-valuenow') ?? null,
      };
    });
  });
}

/** Drops files onto the panel as a drag from the desktop would (DataTransfer with Files). */
function dropFiles(page, files) {
  return page.evaluate((list) => {
    const root = document.querySelector('[data-parley]').shadowRoot;
    const dt = new DataTransfer();
    for (const f of list) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
    const init = { dataTransfer: dt, bubbles: true, cancelable: true, composed: true };
    const target = root.querySelector('.list');
    target.dispatchEvent(new DragEvent('dragenter', init));
    const over = new DragEvent('dragover', init);
    target.dispatchEvent(over);
    const zone = root.querySelector('.dz');
    const shown = !zone.hidden && over.defaultPrevented;
    zone.dispatchEvent(new DragEvent('drop', init));
    return { shown, hiddenAfter: zone.hidden };
  }, files.map((f) => ({ ...f, b64: f.buffer.toString('base64') })));
}

/** Pastes files into the composer, as pasting a screenshot does. */
function pasteFiles(page, files) {
  return page.evaluate((list) => {
    const root = document.querySelector('[data-parley]').shadowRoot;
    const dt = new DataTransfer();
    for (const f of list) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
    const input = root.querySelector('textarea.in');
    input.focus();
    const ev = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true, composed: true });
    input.dispatchEvent(ev);
    return ev.defaultPrevented;
  }, files.map((f) => ({ ...f, b64: f.buffer.toString('base64') })));
}

/** The bytes of a file, downloaded as the agent. */
async function download(conversation, id, token = agent.token) {
  const res = await fetch(`${server.url}/api/v1/conversations/${conversation}/files/${id}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

/** The agent uploads a file and posts it in the conversation; resolves to the file. */
async function agentSendsFile(conversation, name, type, bytes) {
  const up = await fetch(`${server.url}/api/v1/conversations/${conversation}/files?name=${encodeURIComponent(name)}`, {
    method: 'POST', headers: { authorization: `Bearer ${agent.token}`, 'content-type': type }, body: bytes,
  });
  const body = await up.json();
  assert.equal(up.status, 201, JSON.stringify(body));
  const posted = await http(server.url, `/api/v1/conversations/${conversation}/messages`, {
    method: 'POST', token: agent.token, body: { client_msg_id: msgId('af'), file: body.file.id },
  });
  assert.equal(posted.status, 200, JSON.stringify(posted.body));
  return body.file;
}

const fileEvents = (events, role) => events.filter((e) => e.kind === 'file' && (!role || e.author.role === role));

/** Requests the page makes to the upload endpoint. */
function recordUploads(page) {
  const uploads = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && /\/files\?name=/.test(r.url())) uploads.push(r.url());
  });
  return uploads;
}

/**
 * Puts an outbox item naming a file the server does not know (an upload that expired, or one
 * of another conversation) into the page's storage, as if a page had uploaded it and died.
 */
function staleFileItem(page, name) {
  return page.evaluate((n) => {
    const key = Object.keys(localStorage).find((k) => /^parley:[^:]+:s$/.test(k)).slice(0, -1);
    const now = Date.now();
    const i = `w-stale-${now.toString(36)}`;
    localStorage[`${key}o:${i}`] = JSON.stringify({ i, t: '', a: now, n: now * 1000 + 999, f: { id: 'f_aaaaaaaaaaaaaaaaaaaaaaaaaa', name: n, type: 'application/pdf', size: 1234, image: false } });
    return i;
  }, name);
}

/** Everything executable or unexpected in the widget: only thumbnails may be images. */
function inspect(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-parley]').shadowRoot;
    const all = [...root.querySelectorAll('*')];
    return {
      xss: window.__xss ?? null,
      strayImages: all.filter((el) => el.tagName === 'IMG' && !(el.closest('.th') && el.src.startsWith('blob:'))).map((el) => el.outerHTML),
      dangerous: all.filter((el) => /^(SCRIPT|IFRAME|OBJECT|EMBED|SVG)$/i.test(el.tagName) && !el.closest('svg[aria-hidden=true]') && el.getAttribute('aria-hidden') !== 'true').map((el) => el.outerHTML),
      handlers: all.flatMap((el) => [...el.attributes].filter((a) => /^on/i.test(a.name)).map((a) => `${el.tagName} ${a.name}`)),
    };
  });
}

// ---- tests

test('the visitor attaches an image by the picker, a PDF by drag and drop and a screenshot by paste; the agent gets the same bytes', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  const events = [];
  await page.exposeFunction('__msg', (m) => events.push(m));
  await page.evaluate(() => window.Parley.on('message', (m) => window.__msg(m)));
  await openPanel(page);
  await page.locator('[data-parley] .ab[aria-label="Attach a file"]').waitFor();

  await page.setInputFiles(FILE_INPUT, { name: 'photo.png', mimeType: 'image/png', buffer: PHOTO });
  const conversation = await conversationOf(page);
  const drop = await dropFiles(page, [{ name: 'invoice.pdf', type: 'application/pdf', buffer: INVOICE }]);
  assert.deepEqual(drop, { shown: true, hiddenAfter: true }, 'the drop zone shows while dragging and hides after the drop');
  assert.equal(await pasteFiles(page, [{ name: 'image.png', type: 'image/png', buffer: SCREENSHOT }]), true);

  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => fileEvents(sock.events, 'visitor').length === 3, 'three files at the agent', 30_000);
  const got = fileEvents(sock.events, 'visitor');
  assert.deepEqual(got.map((e) => [e.body.file.name, e.body.file.type, e.body.file.image, e.body.file.size]), [
    ['photo.png', 'image/png', true, PHOTO.length],
    ['invoice.pdf', 'application/pdf', false, INVOICE.length],
    ['image.png', 'image/png', true, SCREENSHOT.length],
  ]);
  assert.equal(new Set(got.map((e) => e.client_msg_id)).size, 3);
  assert.ok(got.every((e) => /^[A-Za-z0-9._:-]{1,64}$/.test(e.client_msg_id)));
  for (const [e, bytes] of [[got[0], PHOTO], [got[1], INVOICE], [got[2], SCREENSHOT]]) {
    assert.ok((await download(conversation, e.body.file.id)).equals(bytes), `${e.body.file.name}: same bytes`);
  }

  // The visitor sees two thumbnails and a chip, all sent; the outbox is empty.
  await waitFor(async () => {
    const files = await panelFiles(page);
    return files.length === 3 && files.every((f) => f.state === 'sent') && files.filter((f) => f.image).every((f) => f.loaded);
  }, 'the files shown as sent');
  const files = await panelFiles(page);
  assert.deepEqual(files.map((f) => [f.image, f.image ? f.alt : f.name]), [[true, 'photo.png'], [false, 'invoice.pdf'], [true, 'image.png']]);
  assert.ok(files.filter((f) => f.image).every((f) => f.src.startsWith('blob:')));
  assert.equal(files[1].size, `${INVOICE.length} B`);
  assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => /^parley:[^:]+:[ox]:/.test(k)).length), 0);
  await sleep(1000); // nothing late or twice
  assert.equal(fileEvents(await fullHistory(server, conversation, agent.token)).length, 3);
  assert.deepEqual(events.filter((m) => m.file).map((m) => m.file.name), ['photo.png', 'invoice.pdf', 'image.png']);
  assert.deepEqual(context.offsite, []);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test("the agent's image shows as a thumbnail fetched with the token, a document as a chip that downloads it", async () => {
  const context = await visitorContext(browser, { colorScheme: 'dark' });
  // Count object URLs made and revoked, to see that thumbnails do not leak.
  await context.addInitScript(() => {
    window.__urls = { made: 0, revoked: 0 };
    const make = URL.createObjectURL;
    const revoke = URL.revokeObjectURL;
    URL.createObjectURL = (b) => { window.__urls.made += 1; return make(b); };
    URL.revokeObjectURL = (u) => { window.__urls.revoked += 1; return revoke(u); };
  });
  const page = await openDemo(context, server);
  const fileRequests = [];
  page.on('request', (r) => { if (/\/files\//.test(r.url())) fileRequests.push({ url: r.url(), auth: r.headers().authorization }); });
  await openPanel(page);
  await send(page, 'Can you send me the label?');
  const conversation = await conversationOf(page);

  const image = await agentSendsFile(conversation, 'label.png', 'image/png', AGENT_IMAGE);
  const doc = await agentSendsFile(conversation, 'Care guide (EN).pdf', 'application/pdf', INVOICE);
  await waitFor(async () => {
    const files = await panelFiles(page);
    return files.length === 2 && files[0].loaded;
  }, 'the thumbnail and the chip', 20_000);
  const [thumb, chip] = await panelFiles(page);
  assert.equal(thumb.mine, false);
  assert.equal(thumb.alt, 'label.png');
  assert.match(thumb.src, /^blob:/);
  const natural = await page.evaluate(() => {
    const img = document.querySelector('[data-parley]').shadowRoot.querySelector('.list .them .th img');
    return [img.naturalWidth, img.naturalHeight];
  });
  assert.deepEqual(natural, [80, 56]);
  assert.equal(chip.name, doc.name);
  assert.equal(chip.image, false);
  // Screen readers hear about the agent's file.
  await waitFor(async () => /Demo Admin: File: Care guide/.test(await page.locator('[data-parley] [aria-live="polite"].sr').textContent()), 'the announcement');
  // Fetched with the Authorization header, never a token in a URL.
  assert.ok(fileRequests.length >= 1);
  for (const r of fileRequests) {
    assert.match(r.auth, /^Bearer /);
    assert.doesNotMatch(r.url, /token|Bearer|p1\./i);
  }
  assert.ok(fileRequests.some((r) => r.url.endsWith(`/files/${image.id}`)));

  // Keyboard: the thumbnail is a button; Enter opens the image, Escape closes it again.
  await page.locator('[data-parley] .list .them .th').focus();
  await page.keyboard.press('Enter');
  const box = page.locator('[data-parley] .lb[role=dialog]');
  await box.waitFor({ state: 'visible' });
  assert.equal(await box.getAttribute('aria-label'), 'label.png');
  assert.equal(await page.locator('[data-parley] .lb img').getAttribute('alt'), 'label.png');
  await page.keyboard.press('Escape');
  await box.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => document.querySelector('[data-parley]').shadowRoot.activeElement?.className), 'th ok');
  assert.ok(await page.locator('[data-parley] .panel').isVisible(), 'Escape closed the image, not the panel');

  // The chip downloads the bytes under the file's name.
  const [dl] = await Promise.all([page.waitForEvent('download'), page.locator('[data-parley] .list .them .chip').click()]);
  assert.equal(dl.suggestedFilename(), doc.name);
  assert.ok((await readFile(await dl.path())).equals(INVOICE));

  // The panel is built again (another language): the old thumbnail's URL is revoked, a new
  // one is made, and the image shows again.
  const before = await page.evaluate(() => ({ ...window.__urls }));
  await page.evaluate(() => window.Parley.setLocale('zh-CN'));
  await waitFor(async () => (await panelFiles(page))[0]?.loaded, 'the thumbnail after the rebuild');
  const after = await page.evaluate(() => ({ ...window.__urls }));
  assert.ok(after.revoked > before.revoked, 'the old thumbnail URL was revoked');
  assert.equal(after.made, before.made + 1);
  assert.equal(await page.locator('[data-parley] .ab').getAttribute('aria-label'), '添加附件');
  assert.deepEqual(context.offsite, []);
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a file over the site limit is refused before uploading, in the visitor\'s language; the server\'s own refusal is shown too', async () => {
  // A server of its own: the limit is set before its first request, so nothing is cached.
  const small = await startServer();
  try {
    await small.d1('UPDATE sites SET settings = ? WHERE site_key = ?', [JSON.stringify({ attachments: { max_bytes: 1024 } }), small.siteKey]);
    const online = await agentOnline(small);
    try {
      const context = await visitorContext(browser);
      const page = await openDemo(context, small);
      const uploads = recordUploads(page);
      await openPanel(page);
      await page.setInputFiles(FILE_INPUT, { name: 'catalogue.pdf', mimeType: 'application/pdf', buffer: pdf('big', 2000) });
      const notice = page.locator('[data-parley] .note[role=alert]');
      await notice.waitFor({ state: 'visible' });
      assert.equal(await notice.locator('span').textContent(), '“catalogue.pdf” is too large to send. Files can be up to 1 KB.');
      await page.evaluate(() => window.Parley.setLocale('zh-CN'));
      await page.setInputFiles(FILE_INPUT, { name: '目录.pdf', mimeType: 'application/pdf', buffer: pdf('big', 3000) });
      await waitFor(async () => (await page.locator('[data-parley] .note[role=alert] span').textContent()) === '“目录.pdf”过大，无法发送。文件最大为 1 KB。', 'the Chinese notice');
      await sleep(500);
      assert.deepEqual(uploads, [], 'nothing was uploaded');
      assert.deepEqual(await panelFiles(page), []);
      assert.equal((await diag(page)).outbox, 0);
      assert.equal((await diag(page)).conversation, null, 'not even a conversation was started');
      await page.locator('[data-parley] .note .nx').click();
      await notice.waitFor({ state: 'hidden' });
      await context.close();

      // A widget that believes in a larger limit: the server refuses, its message is shown.
      const context2 = await visitorContext(browser);
      await context2.route('**/api/v1/widget/config?*', async (route) => {
        const res = await route.fetch();
        const json = await res.json();
        await route.fulfill({ response: res, json: { ...json, attachments: { max_bytes: 10 * 1024 * 1024 } } });
      });
      const page2 = await openDemo(context2, small);
      await openPanel(page2);
      await page2.setInputFiles(FILE_INPUT, { name: 'catalogue.pdf', mimeType: 'application/pdf', buffer: pdf('big', 2000) });
      await waitFor(async () => (await panelFiles(page2))[0]?.state === 'failed', 'the refusal');
      const [refused] = await panelFiles(page2);
      assert.equal(refused.note, 'The file is too large.');
      assert.deepEqual(refused.actions, ['Remove']);
      const conversation = await conversationOf(page2);
      assert.equal(fileEvents(await fullHistory(small, conversation, online.token)).length, 0, 'nothing posted');
      await page2.locator('[data-parley] .list .xt button').click();
      await waitFor(async () => (await panelFiles(page2)).length === 0, 'removed');
      assert.deepEqual(page2.errors, []);
      await context2.close();
    } finally {
      online.close();
    }
  } finally {
    await small.stop();
  }
});

test('an SVG is refused with the server\'s message in the visitor\'s language; nothing is posted', async () => {
  const context = await visitorContext(browser, { locale: 'zh-CN' });
  const page = await openDemo(context, server);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  await openPanel(page);
  await page.setInputFiles(FILE_INPUT, { name: 'logo.svg', mimeType: 'image/svg+xml', buffer: SVG });
  await waitFor(async () => (await panelFiles(page))[0]?.state === 'failed', 'the refusal');
  const [refused] = await panelFiles(page);
  assert.equal(refused.note, '不支持发送此类文件。可以发送图片、PDF、文本、Office 文档和 zip 文件。');
  assert.equal(refused.name, 'logo.svg');
  assert.equal(refused.image, false, 'an SVG is never shown as an image');
  assert.deepEqual(refused.actions, ['移除']);
  const conversation = await conversationOf(page);
  assert.equal(fileEvents(await fullHistory(server, conversation, agent.token)).length, 0);
  // The message is the server's own, for this language.
  const direct = await fetch(`${server.url}/api/v1/conversations/${conversation}/files?name=logo.svg`, {
    method: 'POST',
    headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'image/svg+xml', 'accept-language': 'zh-CN' },
    body: SVG,
  });
  assert.equal(direct.status, 415);
  assert.equal((await direct.json()).message, refused.note);
  await page.locator('[data-parley] .list .xt button').click();
  await waitFor(async () => (await panelFiles(page)).length === 0, 'removed');
  assert.deepEqual(dialogs, []);
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('file names with markup stay text, both ways', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  await openPanel(page);
  // Uploads wait a moment, to look at the files while they are pending.
  let release;
  const gate = new Promise((r) => { release = r; });
  await page.route('**/files?name=*', async (route) => { await gate; await route.fallback(); });
  await page.setInputFiles(FILE_INPUT, { name: `${EVIL}.png`, mimeType: 'image/png', buffer: PHOTO });
  await dropFiles(page, [{ name: `${EVIL}.pdf`, type: 'application/pdf', buffer: INVOICE }]);
  const conversation = await conversationOf(page);
  // While pending, the names are the visitor's own, as text (the image shows from its bytes).
  await waitFor(async () => (await panelFiles(page)).length === 2, 'both pending');
  const pending = await panelFiles(page);
  assert.deepEqual(pending.map((f) => [f.image, f.alt, f.name]), [[true, `${EVIL}.png`, null], [false, null, `${EVIL}.pdf`]]);
  assert.deepEqual((await inspect(page)).handlers, []);
  release();
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => fileEvents(sock.events, 'visitor').length === 2, 'both files at the agent');
  const names = fileEvents(sock.events, 'visitor').map((e) => e.body.file.name);
  await agentSendsFile(conversation, `<svg onload=alert(3)>.pdf`, 'application/pdf', INVOICE);
  await waitFor(async () => {
    const files = await panelFiles(page);
    return files.length === 3 && files.every((f) => f.state === 'sent' || !f.mine) && files[0].loaded;
  }, 'all three shown');
  const files = await panelFiles(page);
  assert.deepEqual(files.map((f) => (f.image ? f.alt : f.name)), [...names, files[2].name]);
  assert.match(files[2].name, /svg onload=alert\(3\)/);
  await sleep(500);
  const found = await inspect(page);
  assert.equal(found.xss, null);
  assert.deepEqual(found.strayImages, []);
  assert.deepEqual(found.handlers, []);
  assert.deepEqual(dialogs, []);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test('an upload cut short by a reload shows as not sent, with "choose again" and "remove"; chosen again, it is sent once', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'Two photos coming');
  const conversation = await conversationOf(page);
  // The uploads never finish…
  let held = 0;
  await page.route('**/files?name=*', () => { held += 1; });
  await page.setInputFiles(FILE_INPUT, [
    { name: 'first.png', mimeType: 'image/png', buffer: PHOTO },
    { name: 'second.png', mimeType: 'image/png', buffer: SCREENSHOT },
  ]);
  await waitFor(() => held === 2, 'both uploads under way');
  await waitFor(async () => (await panelFiles(page)).every((f) => f.progress !== null), 'the progress bars');
  // And a file uploaded long ago whose upload the server has since dropped.
  await staleFileItem(page, 'old.pdf');
  // …because the visitor reloads.
  await page.reload();
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' });
  await waitFor(async () => {
    const files = await panelFiles(page);
    return files.length === 3 && files.every((f) => f.state === 'failed');
  }, 'all three shown as not sent');
  await page.unrouteAll();
  const lost = await panelFiles(page);
  for (const f of lost) {
    assert.match(f.note, /wasn't sent/);
    assert.deepEqual(f.actions, ['Choose again', 'Remove']);
  }
  assert.deepEqual(lost.map((f) => f.name), ['first.png', 'second.png', 'old.pdf']);
  assert.equal((await diag(page)).conversation, conversation, 'an unknown file is not an unknown conversation');
  // Still there after another reload: nothing is dropped silently.
  await page.reload();
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' });
  await waitFor(async () => (await panelFiles(page)).length === 3, 'still shown after a second reload');

  await page.locator('[data-parley] .list .xt button[aria-label="Remove second.png"]').click();
  await page.locator('[data-parley] .list .xt button[aria-label="Remove old.pdf"]').click();
  await waitFor(async () => (await panelFiles(page)).length === 1, 'two removed');
  const [chooser] = await Promise.all([
    page.waitForEvent('filechooser'),
    page.locator('[data-parley] .list .xt button[aria-label="Choose again first.png"]').click(),
  ]);
  await chooser.setFiles({ name: 'first.png', mimeType: 'image/png', buffer: PHOTO });
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => fileEvents(sock.events, 'visitor').length === 1, 'the file at the agent');
  await waitFor(async () => {
    const files = await panelFiles(page);
    return files.length === 1 && files[0].state === 'sent' && files[0].loaded;
  }, 'the file shown as sent');
  await sleep(1000);
  const all = fileEvents(await fullHistory(server, conversation, agent.token));
  assert.deepEqual(all.map((e) => e.body.file.name), ['first.png']);
  assert.ok((await download(conversation, all[0].body.file.id)).equals(PHOTO));
  assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => /^parley:[^:]+:[ox]:/.test(k)).length), 0);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test('a slow upload shows its progress', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'The full catalogue:');
  const conversation = await conversationOf(page);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 96 * 1024 });
  const big = pdf('catalogue', 320 * 1024);
  await page.setInputFiles(FILE_INPUT, { name: 'catalogue.pdf', mimeType: 'application/pdf', buffer: big });
  const seen = new Set();
  const deadline = Date.now() + 30_000;
  for (;;) {
    const [f] = await panelFiles(page);
    if (f?.progress != null) seen.add(Number(f.progress));
    if (f?.state === 'sent' || Date.now() > deadline) break;
    await sleep(100);
  }
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  const between = [...seen].filter((p) => p > 0 && p < 100);
  assert.ok(between.length >= 2, `progress seen: ${[...seen].join(', ')}`);
  const [e] = fileEvents(await fullHistory(server, conversation, agent.token));
  assert.ok((await download(conversation, e.body.file.id)).equals(big));
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('files go both ways over long-polling when WebSockets are blocked', async () => {
  proxy.state.blockWs = true;
  const context = await visitorContext(browser);
  const page = await openDemo(context, server, '', { base: proxy.url });
  const uploads = recordUploads(page);
  await openPanel(page);
  await send(page, 'Behind a strict proxy, with a file');
  const conversation = await conversationOf(page);
  await waitFor(async () => (await diag(page)).transport === 'poll', 'the long-poll fallback', 30_000);
  await page.setInputFiles(FILE_INPUT, { name: 'receipt.pdf', mimeType: 'application/pdf', buffer: INVOICE });
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => fileEvents(sock.events, 'visitor').length === 1, 'the file at the agent', 30_000);
  const [e] = fileEvents(sock.events, 'visitor');
  assert.ok((await download(conversation, e.body.file.id)).equals(INVOICE));
  assert.equal(uploads.length, 1);
  assert.ok(uploads[0].startsWith(proxy.url));

  await agentSendsFile(conversation, 'map.png', 'image/png', AGENT_IMAGE);
  await waitFor(async () => (await panelFiles(page)).some((f) => !f.mine && f.loaded && f.src.startsWith('blob:')), 'the thumbnail over long-poll', 30_000);

  // Over HTTP, a file the server does not know is refused with not_found naming the message:
  // shown as not sent, and the conversation is kept.
  await staleFileItem(page, 'expired.pdf');
  await page.reload();
  await waitFor(async () => (await panelFiles(page)).some((f) => f.name === 'expired.pdf' && f.state === 'failed'), 'the stale file shown as not sent', 30_000);
  assert.equal((await diag(page)).transport, 'poll');
  assert.equal((await diag(page)).conversation, conversation);
  await send(page, 'Still the same conversation');
  await waitFor(() => sock.events.some((x) => x.kind === 'message' && x.body.text === 'Still the same conversation'), 'a message after it', 30_000);
  assert.equal(proxy.state.upgraded, 0);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test('an agent file wakes the loader when the chat is not loaded: the badge shows it', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'I will wait for the label');
  const conversation = await conversationOf(page);
  await waitFor(async () => (await diag(page)).outbox === 0, 'sent');
  await page.locator('[data-parley] .hb[aria-label*="Minimize"]').click();
  await page.locator('[data-parley] .panel').waitFor({ state: 'hidden' });
  // Another page of the site: only the loader runs (it long-polls for agent replies).
  const loaded = [];
  page.on('request', (r) => loaded.push(new URL(r.url()).pathname));
  await page.locator('nav a', { hasText: 'Tea Club' }).click();
  await page.waitForURL(/\/demo\/pricing/);
  await page.locator('[data-parley] .launch').waitFor({ state: 'visible' });
  await sleep(1500);
  assert.ok(!loaded.includes('/widget/chat.js'), 'the chat waits');
  await agentSendsFile(conversation, 'label.png', 'image/png', AGENT_IMAGE);
  const badge = page.locator('[data-parley] .badge');
  await badge.waitFor({ state: 'visible', timeout: 30_000 });
  assert.equal(await badge.textContent(), '1');
  assert.ok(loaded.includes('/widget/chat.js'));
  await openPanel(page);
  await waitFor(async () => (await panelFiles(page)).some((f) => !f.mine && f.loaded), 'the thumbnail');
  await badge.waitFor({ state: 'hidden' });
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('in the console: the agent downloads the visitor\'s file byte for byte; a slow upload shows a progress bar and percentage; the visitor downloads it byte for byte', async () => {
  // The visitor sends a document from the widget.
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'My receipt, and I need the catalogue');
  const conversation = await conversationOf(page);
  await page.setInputFiles(FILE_INPUT, { name: 'receipt.pdf', mimeType: 'application/pdf', buffer: INVOICE });
  await waitFor(async () => (await panelFiles(page))[0]?.state === 'sent', 'the receipt sent');

  // The agent, in the console, downloads it.
  const agentContext = await visitorContext(browser, { viewport: { width: 1440, height: 900 } });
  const con = await agentContext.newPage();
  const errors = [];
  con.on('pageerror', (e) => errors.push(e.message));
  await signIn(con, server);
  await con.click('#list-tab-team');
  await con.click(`.conv-item[data-id="${conversation}"]`);
  const conv = `.conv[data-conversation="${conversation}"]`;
  await waitForText(con, `${conv} .msg--in .file-name`, 'receipt.pdf');
  const [got] = await Promise.all([con.waitForEvent('download'), con.locator(`${conv} .msg--in .file-dl`).click()]);
  assert.equal(got.suggestedFilename(), 'receipt.pdf');
  assert.ok((await readFile(await got.path())).equals(INVOICE), 'the agent downloaded the very bytes the visitor sent');

  // The agent sends a catalogue over a slow uplink: a progress bar and a percentage move.
  const cdp = await agentContext.newCDPSession(con);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 96 * 1024 });
  const big = pdf('catalogue', 320 * 1024);
  await con.setInputFiles(`${conv} .composer input[type=file]`, { name: 'catalogue.pdf', mimeType: 'application/pdf', buffer: big });
  const row = `${conv} .msg--uploading`;
  await con.waitForSelector(row, { timeout: 10_000 });
  const seen = [];
  const deadline = Date.now() + 30_000;
  for (;;) {
    const now = await con.evaluate((sel) => {
      const el = document.querySelector(sel);
      if (!el) return null;
      const bar = el.querySelector('progress');
      return { value: bar.value, max: bar.max, aria: bar.getAttribute('aria-valuenow'), label: bar.getAttribute('aria-label'), pct: el.querySelector('.upload-pct').textContent, name: el.querySelector('.file-name').textContent };
    }, row);
    if (!now || Date.now() > deadline) break;
    seen.push(now);
    await sleep(100);
  }
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  assert.ok(seen.length > 0, 'the upload was shown');
  for (const s of seen) {
    assert.equal(s.max, 100);
    assert.equal(s.name, 'catalogue.pdf');
    assert.equal(s.label, 'Uploading catalogue.pdf…');
    assert.equal(s.pct, `${s.value}%`, 'the percentage is the bar\'s');
    assert.equal(s.aria, String(s.value));
  }
  const between = [...new Set(seen.map((s) => s.value))].filter((v) => v > 0 && v < 100);
  assert.ok(between.length >= 2, `progress seen: ${seen.map((s) => s.value).join(', ')}`);
  const values = seen.map((s) => s.value);
  assert.deepEqual(values, [...values].sort((a, b) => a - b), 'progress never goes back');
  await con.waitForSelector(`${conv} .msg--mine.msg--file:not(.msg--pending) .file-name`, { timeout: 15_000 });

  // The visitor gets the agent's file and downloads the very bytes.
  await waitFor(async () => (await panelFiles(page)).some((f) => !f.mine && f.name === 'catalogue.pdf'), 'the catalogue at the visitor', 20_000);
  const [mine] = await Promise.all([page.waitForEvent('download'), page.locator('[data-parley] .list .them .chip').click()]);
  assert.equal(mine.suggestedFilename(), 'catalogue.pdf');
  assert.ok((await readFile(await mine.path())).equals(big), 'the visitor downloaded the very bytes the agent sent');
  const [e] = fileEvents(await fullHistory(server, conversation, agent.token), 'agent');
  assert.ok((await download(conversation, e.body.file.id)).equals(big));
  assert.deepEqual(errors, []);
  assert.deepEqual(page.errors, []);
  assert.deepEqual([...context.offsite, ...agentContext.offsite], []);
  await agentContext.close();
  await context.close();
});

test('in the console: an upload that fails on the way stays with "retry" and is sent once when retried; a refused file offers only "discard"', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'Could you send me the manual?');
  const conversation = await conversationOf(page);

  const agentContext = await visitorContext(browser, { viewport: { width: 1440, height: 900 } });
  const con = await agentContext.newPage();
  const errors = [];
  con.on('pageerror', (e) => errors.push(e.message));
  await signIn(con, server);
  await con.click('#list-tab-team');
  await con.click(`.conv-item[data-id="${conversation}"]`);
  const conv = `.conv[data-conversation="${conversation}"]`;
  await waitForText(con, `${conv} .msg--in .text`, 'the manual');
  const input = `${conv} .composer input[type=file]`;
  const failed = `${conv} .msg--upload-failed`;

  // Offline, the upload fails: it stays in the thread with the reason and a retry.
  const manual = pdf('manual', 4096);
  await agentContext.setOffline(true);
  await con.setInputFiles(input, { name: 'manual.pdf', mimeType: 'application/pdf', buffer: manual });
  await con.waitForSelector(`${failed} [data-action="retry-upload"]`, { timeout: 15_000 });
  const shown = await con.textContent(failed);
  assert.match(shown, /manual\.pdf/);
  assert.match(shown, /Not sent/);
  await agentContext.setOffline(false);
  // The row stays the same element while the thread changes (rebuilt, it would be announced
  // again and take the focus from its buttons).
  await con.$eval(failed, (el) => { el.dataset.mark = 'kept'; });
  await send(page, 'Take your time');
  await waitForText(con, `${conv} .msg--in .text`, 'Take your time', 20_000);
  assert.equal(await con.$eval(failed, (el) => el.dataset.mark), 'kept');
  await con.click(`${failed} [data-action="retry-upload"]`);
  await con.waitForSelector(`${conv} .msg--mine.msg--file:not(.msg--pending) .file-name`, { timeout: 20_000 });
  await con.waitForSelector(failed, { state: 'detached' });
  const posted = fileEvents(await fullHistory(server, conversation, agent.token), 'agent');
  assert.equal(posted.length, 1, 'sent once');
  assert.ok((await download(conversation, posted[0].body.file.id)).equals(manual));

  // A file the server refuses for what it is: the server's reason, no retry; discarded, it goes.
  const direct = await fetch(`${server.url}/api/v1/conversations/${conversation}/files?name=logo.svg`, {
    method: 'POST',
    headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'image/svg+xml', 'accept-language': 'en' },
    body: SVG,
  });
  assert.equal(direct.status, 415);
  const reason = (await direct.json()).message;
  await con.setInputFiles(input, { name: 'logo.svg', mimeType: 'image/svg+xml', buffer: SVG });
  await con.waitForSelector(`${failed} [data-action="discard-upload"]`, { timeout: 15_000 });
  assert.equal(await con.$(`${failed} [data-action="retry-upload"]`), null);
  assert.ok((await con.textContent(failed)).includes(reason), await con.textContent(failed));
  await con.click(`${failed} [data-action="discard-upload"]`);
  await con.waitForSelector(failed, { state: 'detached' });
  assert.equal(fileEvents(await fullHistory(server, conversation, agent.token), 'agent').length, 1);
  assert.deepEqual(errors, []);
  assert.deepEqual(page.errors, []);
  await agentContext.close();
  await context.close();
});
