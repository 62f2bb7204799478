// The pre-chat form (fields configured per site) and the offline form ("leave a message")
// shown when no agent is available; both become conversations that agents see.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fullHistory } from '../support/client.mjs';
import {
  agentJoin, agentOnline, conversationOf, launch, openDemo, openPanel, panelMessages, send, visitorContext, visitorTexts, waitFor,
} from './helpers.mjs';
import { startServer } from '../support/server.mjs';

let server;
let browser;
let agent;

const SETTINGS = {
  prechat: {
    enabled: true,
    fields: [
      { name: 'name', label: { en: 'Your name', 'zh-CN': '您的姓名' }, type: 'text', required: true },
      { name: 'order_no', label: { en: 'Order number', 'zh-CN': '订单号' }, type: 'text', required: false },
      { name: 'email', label: { en: 'Email', 'zh-CN': '邮箱' }, type: 'email', required: true },
    ],
  },
};

before(async () => {
  server = await startServer();
  // Before any request, so the Worker has no cached copy of the site yet.
  await server.d1('UPDATE sites SET settings = ? WHERE site_key = ?', [JSON.stringify(SETTINGS), server.siteKey]);
  browser = await launch();
});

after(async () => {
  agent?.close();
  await browser?.close();
  await server?.stop();
});

const form = (page) => page.locator('[data-parley] form.form');

test('no agent online: the offline form takes a message that becomes a conversation agents see', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await openPanel(page);
  await form(page).waitFor({ state: 'visible' });
  assert.match(await form(page).textContent(), /Leave a message/);
  assert.match(await page.locator('[data-parley] .sub').textContent(), /Away/);

  // Required fields are checked in the page, accessibly, before anything is sent.
  await form(page).locator('button[type=submit]').click();
  assert.equal(await form(page).locator('[name=email]').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.querySelector('[data-parley]').shadowRoot.activeElement?.name), 'email');
  // Each field says what is wrong with it, in words the visitor can act on.
  const problem = (name) => form(page).locator(`[name=${name}]`).evaluate((input) => input.getRootNode().getElementById(input.getAttribute('aria-describedby')).textContent);
  assert.equal(await problem('email'), 'Please fill this in.');
  assert.equal(await problem('name'), '');
  await form(page).locator('[name=email]').fill('not an email');
  await form(page).locator('[name=message]').fill('Could you restock the Keemun?');
  await form(page).locator('button[type=submit]').click();
  assert.equal(await form(page).locator('[name=email]').getAttribute('aria-invalid'), 'true');
  assert.equal(await problem('email'), 'Please enter an email address, like name@example.com.');
  assert.equal(await problem('message'), '');

  await form(page).locator('[name=name]').fill('Lin');
  await form(page).locator('[name=email]').fill('lin@example.com');
  await form(page).locator('button[type=submit]').click();
  const conversation = await conversationOf(page);
  await waitFor(async () => (await panelMessages(page)).some((m) => m.mine && m.text === 'Could you restock the Keemun?' && m.state === 'sent'), 'the message in the conversation');
  assert.match(await page.locator('[data-parley] .list').textContent(), /Thanks!/);

  agent = await agentOnline(server);
  const history = await fullHistory(server, conversation, agent.token);
  const created = history.find((e) => e.kind === 'created');
  assert.equal(created.body.form, 'offline');
  assert.deepEqual(created.body.fields, { name: 'Lin', email: 'lin@example.com' });
  assert.deepEqual(visitorTexts(history), ['Could you restock the Keemun?']);

  // The visitor can go on writing in the same conversation.
  await send(page, 'Also, do you have gift boxes?');
  await waitFor(async () => visitorTexts(await fullHistory(server, conversation, agent.token)).length === 2, 'follow-up stored');
  await context.close();
});

test('an agent online: the pre-chat form with the site\'s fields, then the chat', async () => {
  agent ||= await agentOnline(server);
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  await page.evaluate(() => window.Parley.identify({ id: 'u-77', name: 'Mei', email: 'mei@example.com' }));
  await openPanel(page);
  await form(page).waitFor({ state: 'visible' });
  const labels = await form(page).locator('label').allTextContents();
  assert.deepEqual(labels, ['Your name (required)', 'Order number', 'Email (required)']);
  // Prefilled from identify().
  assert.equal(await form(page).locator('[name=name]').inputValue(), 'Mei');
  assert.equal(await form(page).locator('[name=email]').inputValue(), 'mei@example.com');
  await form(page).locator('[name=order_no]').fill('MM-1042');
  await form(page).locator('button[type=submit]').click();
  await page.locator('[data-parley] textarea.in').waitFor({ state: 'visible' });
  const conversation = await conversationOf(page);
  await send(page, 'Where is my order?');
  const sock = await agentJoin(server, agent, conversation);
  await waitFor(() => visitorTexts(sock.events).length === 1, 'message at the agent');
  const created = sock.events.find((e) => e.kind === 'created');
  assert.equal(created.body.form, 'prechat');
  assert.deepEqual(created.body.fields, { name: 'Mei', order_no: 'MM-1042', email: 'mei@example.com' });
  sock.close();
  await context.close();
});
