// temporary: screenshots of the panel with attachments (not a test)
import { startServer } from './support/server.mjs';
import { agentOnline, launch, openDemo, openPanel, send, visitorContext, waitFor, conversationOf } from './e2e/helpers.mjs';
import { http, msgId } from './support/client.mjs';
import { deflateSync } from 'node:zlib';
const CRC = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
const crc32 = (b) => { let c = 0xffffffff; for (const x of b) c = CRC[(c ^ x) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
const chunk = (t, d) => { const l = Buffer.alloc(4); l.writeUInt32BE(d.length); const body = Buffer.concat([Buffer.from(t), d]); const c = Buffer.alloc(4); c.writeUInt32BE(crc32(body)); return Buffer.concat([l, body, c]); };
function png(w, h, fn) { const i = Buffer.alloc(13); i.writeUInt32BE(w, 0); i.writeUInt32BE(h, 4); i[8] = 8; i[9] = 2; const raw = Buffer.alloc(h * (1 + w * 3)); for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set(fn(x, y), y * (1 + w * 3) + 1 + x * 3); return Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), chunk('IHDR', i), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]); }
const PHOTO = png(320, 200, (x, y) => [40 + (x * 0.6 | 0), 120 + (y * 0.5 | 0), 200 - (x * 0.4 | 0)]);
const TALL = png(120, 260, (x, y) => [230 - (y * 0.6 | 0), 140 + (x * 0.5 | 0), 60]);
const pdf = Buffer.from('%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n' + ' '.repeat(183000) + '%%EOF\n');
const server = await startServer();
const browser = await launch();
const agent = await agentOnline(server);
for (const scheme of ['light', 'dark']) {
  const context = await visitorContext(browser, { colorScheme: scheme, viewport: { width: 900, height: 820 } });
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'Here is the damaged tin and the invoice:');
  await page.setInputFiles('[data-parley] input[type=file]', [{ name: 'tin.png', mimeType: 'image/png', buffer: PHOTO }, { name: 'Invoice 2025-117 for order #4471 (Maple & Moss).pdf', mimeType: 'application/pdf', buffer: pdf }]);
  const conv = await conversationOf(page);
  await waitFor(() => page.evaluate(() => [...document.querySelector('[data-parley]').shadowRoot.querySelectorAll('.list .st')].every((s) => s.classList.contains('sent'))), 'sent');
  const up = await fetch(`${server.url}/api/v1/conversations/${conv}/files?name=label.png`, { method: 'POST', headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'image/png' }, body: TALL });
  const { file } = await up.json();
  await http(server.url, `/api/v1/conversations/${conv}/messages`, { method: 'POST', token: agent.token, body: { client_msg_id: msgId('a'), file: file.id } });
  await page.setInputFiles('[data-parley] input[type=file]', [{ name: 'logo.svg', mimeType: 'image/svg+xml', buffer: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"></svg>') }]);
  await page.waitForTimeout(1500);
  await page.locator('[data-parley] .panel').screenshot({ path: `/tmp/shots/panel-${scheme}.png` });
  await page.evaluate(() => { const s = document.querySelector('[data-parley]').shadowRoot.querySelector('.scroll'); s.scrollTop = 0; });
  await page.waitForTimeout(300);
  await page.locator('[data-parley] .panel').screenshot({ path: `/tmp/shots/panel-${scheme}-top.png` });
  // notice + drop zone + lightbox
  await page.setInputFiles('[data-parley] input[type=file]', [{ name: 'huge.zip', mimeType: 'application/zip', buffer: Buffer.alloc(11 * 1024 * 1024) }]);
  await page.waitForTimeout(300);
  await page.locator('[data-parley] .panel').screenshot({ path: `/tmp/shots/notice-${scheme}.png` });
  await page.evaluate(() => { const r = document.querySelector('[data-parley]').shadowRoot; const dt = new DataTransfer(); dt.items.add(new File(['x'], 'a.txt')); r.querySelector('.list').dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true, composed: true })); });
  await page.locator('[data-parley] .panel').screenshot({ path: `/tmp/shots/drop-${scheme}.png` });
  await page.evaluate(() => { document.querySelector('[data-parley]').shadowRoot.querySelector('.dz').hidden = true; });
  await page.locator('[data-parley] .list .them .th').click();
  await page.waitForTimeout(300);
  await page.locator('[data-parley] .panel').screenshot({ path: `/tmp/shots/zoom-${scheme}.png` });
  await context.close();
}
// a lost upload
{
  const context = await visitorContext(browser, { viewport: { width: 900, height: 820 } });
  const page = await openDemo(context, server);
  await openPanel(page);
  await send(page, 'One moment, a photo');
  await conversationOf(page);
  await page.route('**/files?name=*', () => {});
  await page.setInputFiles('[data-parley] input[type=file]', [{ name: 'tin.png', mimeType: 'image/png', buffer: PHOTO }]);
  await page.waitForTimeout(800);
  await page.locator('[data-parley] .panel').screenshot({ path: `/tmp/shots/uploading.png` });
  await page.reload();
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' });
  await page.waitForTimeout(2000);
  await page.locator('[data-parley] .panel').screenshot({ path: `/tmp/shots/lost.png` });
  await context.close();
}
agent.close();
await browser.close();
await server.stop();
