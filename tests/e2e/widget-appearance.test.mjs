// How the widget looks and behaves around the conversation, in Chromium: the site's colour,
// position, launcher text and light/dark theme (with the embed's data-theme over it), the
// full-screen panel on a phone, the sound and the title flash for new replies, message times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentLogin, http, siteId } from '../support/client.mjs';
import {
  agentJoin, conversationOf, openDemo, openPanel, panelMessages, send, visitorContext, waitFor, widgetSuite,
} from './helpers.mjs';

const W = '[data-parley]';
const TEAL = 'rgb(15, 118, 110)';
const DARK_PANEL = 'rgb(22, 24, 29)';
const LIGHT_PANEL = 'rgb(255, 255, 255)';

let server;
let browser;
let agent;
widgetSuite({
  // Configured before the first widget request (the server caches a site's settings briefly).
  async prepare(s) {
    const owner = await agentLogin(s);
    const res = await http(s.url, `/api/v1/sites/${await siteId(s, owner.token)}`, {
      method: 'PATCH',
      token: owner.token,
      body: {
        settings: {
          appearance: { color: '#0f766e', position: 'left', launcher_text: { en: 'Ask a tea expert', 'zh-CN': '问问茶艺师' }, theme: 'dark' },
        },
      },
    });
    assert.equal(res.status, 204, JSON.stringify(res.body));
  },
}, (parts) => ({ server, browser, agent } = parts));

const styleOf = (locator, ...props) => locator.evaluate((el, names) => {
  const cs = getComputedStyle(el);
  return Object.fromEntries(names.map((n) => [n, cs[n]]));
}, props);

const rectOf = (locator) => locator.evaluate((el) => {
  const r = el.getBoundingClientRect();
  return { x: r.x, y: r.y, width: r.width, height: r.height };
});

/** A conversation with the demo agent on its socket: the page (panel open) and the socket. */
async function conversation(context, options) {
  const page = await openDemo(context, server, '', options);
  await openPanel(page);
  await send(page, 'Which green tea is the mildest?');
  const sock = await agentJoin(server, agent, await conversationOf(page));
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.state === 'sent'), 'the question sent');
  return { page, sock };
}

test("the site's colour, position and launcher text; a theme that is not light, dark or auto is refused", async () => {
  const owner = await agentLogin(server);
  const site = await siteId(server, owner.token);
  const bad = await http(server.url, `/api/v1/sites/${site}`, { method: 'PATCH', token: owner.token, body: { settings: { appearance: { theme: 'purple' } } } });
  assert.equal(bad.status, 400, JSON.stringify(bad.body));
  const config = await http(server.url, `/api/v1/widget/config?site=${server.siteKey}`);
  assert.deepEqual(config.body.appearance, {
    color: '#0f766e', position: 'left', launcher_text: { en: 'Ask a tea expert', 'zh-CN': '问问茶艺师' }, theme: 'dark',
  });

  const context = await visitorContext(browser, { reducedMotion: 'reduce' });
  const page = await openDemo(context, server);
  const launcher = page.locator(`${W} .launch`);
  await waitFor(async () => (await page.locator(`${W} .lt`).textContent()) === 'Ask a tea expert', "the site's config applied");
  // The accent colour, white text on it (the better contrast on a dark teal), the launcher
  // text shown: a pill, 20 px from the bottom left corner.
  assert.deepEqual(await styleOf(launcher, 'backgroundColor', 'color'), { backgroundColor: TEAL, color: 'rgb(255, 255, 255)' });
  assert.equal(await page.locator(`${W} .lt`).textContent(), 'Ask a tea expert');
  assert.ok(await page.locator(`${W} .lt`).isVisible());
  const at = await rectOf(launcher);
  assert.equal(at.x, 20);
  assert.equal(at.y + at.height, 800 - 20);
  assert.ok(at.width > 56, 'wider than the round launcher');
  await openPanel(page);
  // The panel opens on the same side, with the header and the visitor's bubbles in the accent.
  const panel = await rectOf(page.locator(`${W} .panel`));
  assert.equal(panel.x, 20);
  assert.equal((await styleOf(page.locator(`${W} .hd`), 'backgroundColor')).backgroundColor, TEAL);
  await send(page, 'Hello');
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine), 'my message');
  assert.equal((await styleOf(page.locator(`${W} .list .me .bub`).first(), 'backgroundColor')).backgroundColor, TEAL);
  assert.deepEqual(page.errors, []);
  await context.close();

  // The launcher text in the visitor's language.
  const zh = await visitorContext(browser, { locale: 'zh-CN' });
  const zhPage = await openDemo(zh, server);
  // The launcher is up before the site's config arrives; its text comes with the config.
  await waitFor(async () => (await zhPage.locator(`${W} .lt`).textContent()) === '问问茶艺师', 'the launcher text in Chinese');
  await zh.close();
});

test("light or dark: the embed's data-theme first, then the site's theme, then the system", async () => {
  const panelBackground = async (colorScheme, query = '') => {
    const context = await visitorContext(browser, { colorScheme, reducedMotion: 'reduce' });
    const page = await openDemo(context, server, '', { query });
    await openPanel(page);
    const { backgroundColor } = await styleOf(page.locator(`${W} .panel`), 'backgroundColor');
    await context.close();
    return backgroundColor;
  };
  // The site chose dark: dark even on a light system.
  assert.equal(await panelBackground('light'), DARK_PANEL);
  // The embed says light (or auto, which follows the system): that wins.
  assert.equal(await panelBackground('dark', '&theme=light'), LIGHT_PANEL);
  assert.equal(await panelBackground('light', '&theme=auto'), LIGHT_PANEL);
  assert.equal(await panelBackground('dark', '&theme=auto'), DARK_PANEL);
  // Something else in data-theme is no choice: the site's theme applies.
  assert.equal(await panelBackground('light', '&theme=sepia'), DARK_PANEL);
});

test('on a phone the open panel fills the screen (from the left corner too) and the launcher steps aside', async () => {
  const context = await visitorContext(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, reducedMotion: 'reduce' });
  const page = await openDemo(context, server);
  await page.locator(`${W} .launch`).tap();
  await page.locator(`${W} .panel`).waitFor({ state: 'visible' });
  assert.deepEqual(await rectOf(page.locator(`${W} .panel`)), { x: 0, y: 0, width: 390, height: 844 });
  assert.equal((await styleOf(page.locator(`${W} .panel`), 'borderRadius')).borderRadius, '0px');
  assert.equal(await page.locator(`${W} .launch`).isVisible(), false);
  // 16 px in the composer: phones do not zoom the page when it is focused.
  assert.equal((await styleOf(page.locator(`${W} textarea.in`), 'fontSize')).fontSize, '16px');
  // Minimised, the launcher is back.
  await page.locator(`${W} .hb[aria-label*="Minimize"]`).tap();
  await page.locator(`${W} .launch`).waitFor({ state: 'visible' });
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a reply while the panel is closed chimes (once per reply, not when muted)', async () => {
  const context = await visitorContext(browser);
  // Audio output stands in: counts the tones started.
  const { page, sock } = await conversation(context, {
    setup: (p) => p.addInitScript(() => {
      window.__tones = 0;
      window.AudioContext = class {
        constructor() { this.state = 'running'; this.currentTime = 0; this.destination = {}; }
        resume() { return Promise.resolve(); }
        createOscillator() { return { frequency: {}, connect: (n) => n, start: () => { window.__tones += 1; }, stop() {} }; }
        createGain() { return { gain: { setValueAtTime() {}, exponentialRampToValueAtTime() {} }, connect: (n) => n }; }
      };
    }),
  });
  const tones = () => page.evaluate(() => window.__tones);
  const badge = page.locator(`${W} .badge`);
  // While the visitor is looking at the panel, a reply makes no sound.
  await sock.sendMessage('Our Kabusecha is the mildest.');
  await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'Our Kabusecha is the mildest.'), 'the reply shown');
  assert.equal(await tones(), 0);

  await page.keyboard.press('Escape');
  await sock.sendMessage('Shall I add a sample to your order?');
  await badge.waitFor({ state: 'visible' });
  // The chime: two tones.
  await waitFor(async () => (await tones()) === 2, 'the chime');

  // Muted from the panel's header: the next reply is silent.
  await openPanel(page);
  await page.locator(`${W} .hb[aria-label="Turn off notification sound"]`).click();
  await page.keyboard.press('Escape');
  await badge.waitFor({ state: 'hidden' });
  await page.locator(`${W} .panel`).waitFor({ state: 'hidden' });
  await sock.sendMessage('It ships tomorrow.');
  await badge.waitFor({ state: 'visible' });
  assert.equal(await tones(), 2);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test('a reply while the tab is hidden flashes the title until the visitor is back, then counts as read', async () => {
  const context = await visitorContext(browser);
  // The tab's visibility as the page sees it, switched by the test.
  const { page, sock } = await conversation(context, {
    setup: (p) => p.addInitScript(() => {
      window.__hidden = false;
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => window.__hidden });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (window.__hidden ? 'hidden' : 'visible') });
    }),
  });
  const setHidden = (hidden) => page.evaluate((h) => {
    window.__hidden = h;
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
  const plain = await page.title();
  await setHidden(true);
  // The panel is open, but nobody looks at it.
  const reply = await sock.sendMessage('Kabusecha is the mildest.');
  await waitFor(async () => (await page.title()) === '(1) New message · Demo Admin', 'the flashing title');
  await waitFor(async () => (await page.title()) === plain, 'the title between flashes');
  await waitFor(async () => (await page.title()) === '(1) New message · Demo Admin', 'flashing on while hidden');
  assert.ok(!sock.frames.some((f) => f.type === 'read' && f.seq >= reply.seq), 'not read while hidden');

  await setHidden(false);
  assert.equal(await page.title(), plain);
  // Back and looking at the open panel: the reply is read, the agent is told.
  await waitFor(() => sock.frames.some((f) => f.type === 'read' && f.seq >= reply.seq), 'the read marker');
  assert.equal(await page.title(), plain);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});

test('messages show the time they were sent, in the widget language', async () => {
  const context = await visitorContext(browser);
  const { page, sock } = await conversation(context);
  await sock.sendMessage('Kabusecha.');
  await waitFor(async () => (await panelMessages(page)).some((m) => m.text === 'Kabusecha.'), 'the reply');
  const times = await page.evaluate(() => [...document.querySelector('[data-parley]').shadowRoot.querySelectorAll('.list li.m')]
    .filter((li) => li.querySelector('time'))
    .map((li) => {
      const t = li.querySelector('time');
      const at = new Date(t.getAttribute('datetime'));
      return {
        mine: li.classList.contains('me'),
        text: t.textContent,
        expected: at.toLocaleTimeString('en', { hour: 'numeric', minute: '2-digit' }),
        age: Date.now() - at.getTime(),
      };
    }));
  // The visitor's question and the agent's reply (the greeting, which is no event, has none).
  assert.deepEqual(times.map((t) => t.mine), [true, false]);
  for (const t of times) {
    assert.equal(t.text, t.expected);
    assert.match(t.text, /^\d{1,2}:\d{2}\s?[AP]M$/);
    assert.ok(t.age >= 0 && t.age < 5 * 60e3, `sent ${t.age} ms ago`);
  }
  // In Chinese, the Chinese time format.
  assert.equal(await page.evaluate(() => window.Parley.setLocale('zh-CN')), 'zh-CN');
  const first = page.locator(`${W} .list li.m time`).first();
  const zhTime = await first.evaluate((t) => new Date(t.getAttribute('datetime')).toLocaleTimeString('zh-CN', { hour: 'numeric', minute: '2-digit' }));
  await waitFor(async () => (await first.textContent()) === zhTime, `the time in Chinese (${zhTime})`);
  assert.deepEqual(page.errors, []);
  sock.close();
  await context.close();
});
