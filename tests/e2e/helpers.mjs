// Browser-test helpers: Debian's Chromium driven by playwright-core, the demo shop page with
// the real widget, and an agent played with the protocol client (tests/support/client.mjs).
//
// Chromium talks only to 127.0.0.1: every other host fails to resolve, and any request that
// tries anyway is recorded and fails the test (see guard()).
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { after, before } from 'node:test';
import { connect as tcpConnect } from 'node:net';
import { chromium } from 'playwright-core';
import { agentLogin, connect, fullHistory, http, newConversation, Socket, sleep } from '../support/client.mjs';
import { startServer } from '../support/server.mjs';

export const CHROMIUM = process.env.PARLEY_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

/**
 * The set-up most widget test files share, as the file's before/after hooks: a server (with
 * startServer's options; `blockUpgrades` puts a proxy that refuses WebSocket upgrades in front
 * of it, `prepare(server)` runs before any request reaches it), Chromium, and the demo agent
 * online. `take({ server, browser, agent, proxy })` hands them to the file once they exist;
 * everything is torn down after the file's tests. Returns those parts: a file that replaces
 * one (a new agent) puts it there, so that it is closed too.
 */
export function widgetSuite({ blockUpgrades = false, prepare, ...serverOptions } = {}, take) {
  const parts = {};
  before(async () => {
    if (blockUpgrades) parts.proxy = await upgradeBlockingProxy();
    // Through the proxy the demo page's origin is the proxy's: the site allows it.
    const origins = parts.proxy ? { origins: [parts.proxy.url] } : {};
    parts.server = await startServer({ ...origins, ...serverOptions });
    parts.proxy?.setTarget(parts.server.url);
    await prepare?.(parts.server);
    parts.browser = await launch();
    parts.agent = await agentOnline(parts.server);
    take(parts);
  });
  after(async () => {
    parts.agent?.close();
    await parts.browser?.close();
    await parts.proxy?.close();
    await parts.server?.stop();
  });
  return parts;
}

/** A headless Chromium with a fresh temporary profile (never `npx playwright install`). */
export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/**
 * A new browser context (a new visitor: its own storage) whose requests may go to 127.0.0.1
 * only; `context.offsite` lists any that tried to go elsewhere.
 */
export async function visitorContext(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', ...options });
  context.offsite = [];
  await context.route(/^(?!(https?|wss?):\/\/127\.0\.0\.1[:/])[a-z]+:\/\//, (route) => {
    context.offsite.push(route.request().url());
    return route.abort();
  });
  return context;
}

/** Opens a page of the demo shop (path under /demo/) as a site visitor would. */
export async function openDemo(context, server, path = '', { base = server.url, query = '', setup } = {}) {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  if (setup) await setup(page);
  await page.goto(`${base}/demo/${path}?site=${encodeURIComponent(server.siteKey)}${query}`);
  await page.locator('[data-parley] .launch').waitFor({ state: 'visible' });
  await waitFor(() => page.evaluate(() => !!window.Parley?.version), 'the loader to define window.Parley');
  return page;
}

/**
 * Records the widget's JS API events of every page load in `page.apiEvents`, registered
 * through the documented pre-load queue: window.Parley('on', name, fn) before widget.js.
 */
export async function recordApiEvents(page) {
  page.apiEvents = [];
  await page.exposeFunction('__parleyEvent', (name, data) => page.apiEvents.push([name, data]));
  await page.addInitScript(() => {
    window.Parley = function () { (window.Parley.q = window.Parley.q || []).push(arguments); };
    for (const name of ['message', 'open', 'close', 'unread']) {
      window.Parley('on', name, (d) => window.__parleyEvent(name, d ?? null));
    }
  });
}

export const diag = (page) => page.evaluate(() => window.Parley.diagnostics());

/** Polls fn until it returns a truthy value; returns that value. */
export async function waitFor(fn, what = 'condition', timeoutMs = 20_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(everyMs);
  }
}

/** Signs in to the console through its form; resolves once the console shows. */
export async function signIn(page, server, email = server.email, password = server.password) {
  await page.goto(`${server.url}/console/`);
  await page.fill('#login-email', email);
  await page.fill('#login-password', password);
  await page.click('.login-form button[type=submit]');
  await page.waitForSelector('.topbar .status-select');
}

/**
 * What the console's browser tests do again and again, bound to the file's suite (`parts()`
 * returns its `server` and `browser` once they exist):
 * - `openConsole(setup, base)`: a console signed in as the demo owner, in a context of its own
 *   (`setup(context)` runs first), at `base` (the server's own address unless given);
 * - `visitorChat(text)`: a visitor (the protocol client) who started a chat with one message:
 *   { conversation, token, socket };
 * - `openFromTeam(page, id)`: opens a conversation from the Team list and waits for its thread;
 * - `agentTexts(chat)`: the agent's messages stored in the chat, as text, in order.
 */
export function consoleKit(parts) {
  return {
    async openConsole(setup, base) {
      const { server, browser } = parts();
      const context = await visitorContext(browser, { viewport: { width: 1440, height: 900 } });
      await setup?.(context);
      const page = await context.newPage();
      page.errors = [];
      page.on('pageerror', (e) => page.errors.push(e.message));
      await signIn(page, { ...server, url: base ?? server.url });
      await page.waitForSelector('.conv-list[aria-busy="false"]', { state: 'attached' });
      return { context, page };
    },
    async visitorChat(text) {
      const conv = await newConversation(parts().server);
      const socket = await connect(parts().server, conv.conversation, conv.token, { after: 0 });
      const ack = await socket.sendMessage(text);
      assert.equal(ack.type, 'ack', JSON.stringify(ack));
      return { ...conv, socket };
    },
    async openFromTeam(page, id) {
      await page.click('#list-tab-team');
      await page.click(`.conv-item[data-id="${id}"]`, { timeout: 15_000 });
      await page.waitForSelector(`.conv[data-conversation="${id}"] .thread-begin, .conv[data-conversation="${id}"] .load-earlier`);
    },
    async agentTexts(chat) {
      const events = await fullHistory(parts().server, chat.conversation, chat.token);
      return events.filter((e) => e.kind === 'message' && e.author.role === 'agent').map((e) => e.body.text);
    },
  };
}

/** Waits until an element matching `selector` contains `text`. */
export async function waitForText(page, selector, text, timeout = 15_000) {
  await page.waitForFunction(([sel, want]) => Array.from(document.querySelectorAll(sel)).some((e) => e.textContent.includes(want)),
    [selector, text], { timeout });
}

/** Opens a console page from the top navigation and waits for `ready` on it. */
export async function openConsolePage(page, name, ready) {
  await page.click(`.topnav-link[data-page="${name}"]`);
  await page.waitForSelector(`.topnav-link[data-page="${name}"][aria-current="page"]`);
  await page.waitForSelector(ready, { timeout: 15_000 });
}

/** Opens the panel with the launcher; resolves once the chat is mounted and showing. */
export async function openPanel(page) {
  await page.locator('[data-parley] .launch').click();
  await page.locator('[data-parley] .panel').waitFor({ state: 'visible' });
}

/** Types a message into the composer and presses Enter. */
export async function send(page, text) {
  const input = page.locator('[data-parley] textarea.in');
  await input.fill(text);
  await input.press('Enter');
}

/** The messages in the panel, as the visitor sees them: { mine, text, state, who }. */
export function panelMessages(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-parley]').shadowRoot;
    return [...root.querySelectorAll('.list li.m')].map((li) => ({
      mine: li.classList.contains('me'),
      text: li.querySelector('.bub').textContent,
      state: li.querySelector('.st')?.classList[1] ?? null,
      who: li.querySelector('.who').textContent,
    }));
  });
}

/** The conversation id the widget uses (once it has one). */
export function conversationOf(page) {
  return waitFor(async () => (await diag(page)).conversation, 'the widget to have a conversation');
}

/**
 * Puts the demo agent online the way the console does (console socket: hello, status online,
 * heartbeats), so the widget offers live chat. Resolves to { token, agentId, name, close() }.
 */
export async function agentOnline(server) {
  const agent = await agentLogin(server);
  const sites = await http(server.url, '/api/v1/sites', { token: agent.token });
  assert.equal(sites.status, 200, JSON.stringify(sites.body));
  const site = sites.body.sites.find((s) => s.site_key === server.siteKey);
  assert.ok(site, 'demo site listed for the agent');
  const console = await Socket.open(`${server.url.replace(/^http/, 'ws')}/api/v1/console/ws?site=${encodeURIComponent(site.id)}`);
  console.send({ type: 'hello', token: agent.token });
  await console.next((f) => f.type === 'inbox' || f.type === 'error');
  console.send({ type: 'status', status: 'online' });
  const beat = setInterval(() => console.send({ type: 'heartbeat' }), 10_000);
  return {
    ...agent,
    siteId: site.id,
    console,
    close() {
      clearInterval(beat);
      console.close();
    },
  };
}

/** The agent's socket on a conversation (from the start of its log). */
export function agentJoin(server, agent, conversation) {
  return connect(server, conversation, agent.token, { after: 0 });
}

/** Visitor messages in an event list, in order. */
export const visitorTexts = (events) => events.filter((e) => e.kind === 'message' && e.author.role === 'visitor').map((e) => e.body.text);

/**
 * An HTTP proxy on 127.0.0.1 in front of the server that, while `state.blockWs` is set,
 * refuses every WebSocket upgrade (as some corporate proxies and firewalls do) and passes
 * plain HTTP through. Listen first, then `setTarget(server.url)`.
 */
export async function upgradeBlockingProxy() {
  let target = null;
  const state = { blockWs: true, refused: 0, upgraded: 0 };
  const sockets = new Set();
  const proxy = createServer((req, res) => {
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.rawHeaders);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  proxy.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  proxy.on('upgrade', (req, socket, head) => {
    if (state.blockWs) {
      state.refused += 1;
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    state.upgraded += 1;
    const up = tcpConnect(Number(target.port), target.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head?.length) up.write(head);
      socket.pipe(up);
      up.pipe(socket);
    });
    sockets.add(up);
    up.on('close', () => sockets.delete(up));
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${proxy.address().port}`;
  return {
    url,
    state,
    setTarget(t) { target = new URL(t); },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => proxy.close(resolve));
    },
  };
}
