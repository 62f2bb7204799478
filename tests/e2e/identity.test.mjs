// Parley.identify(): the site's server signs the user id (HMAC-SHA256 with the site's identity
// secret); a valid hash marks the visitor verified, a forged one leaves it unverified.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { http } from '../support/client.mjs';
import { openDemo, openPanel, visitorContext, waitFor, widgetSuite } from './helpers.mjs';

let server;
let browser;
let agent;
widgetSuite({
  prepare: (s) => assert.ok(s.identitySecret, 'the demo site has an identity secret'),
}, (parts) => ({ server, browser, agent } = parts));

const sign = (secret, id) => createHmac('sha256', secret).update(id).digest('hex');

const visitorId = (page) => waitFor(() => page.evaluate(() => {
  const k = Object.keys(localStorage).find((x) => /^parley:[^:]+:s$/.test(x));
  return k && JSON.parse(localStorage[k]).v;
}), 'a visitor session');

const visitorRow = async (id) => (await server.d1(
  'SELECT external_id, name, email, identity_verified FROM visitors WHERE id = ?', [id],
)).results[0];

test('a valid hash verifies the identity', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  const hash = sign(server.identitySecret, 'user-1001');
  const result = await page.evaluate((h) => window.Parley.identify({ id: 'user-1001', name: 'Ada Lovelace', email: 'ada@example.com', hash: h }), hash);
  assert.deepEqual(result, { verified: true });
  const row = await visitorRow(await visitorId(page));
  assert.deepEqual({ ...row }, { external_id: 'user-1001', name: 'Ada Lovelace', email: 'ada@example.com', identity_verified: 1 });
  // Agents see it verified.
  const seen = await http(server.url, `/api/v1/visitors/${await visitorId(page)}`, { token: agent.token });
  if (seen.status === 200) assert.equal(Boolean(seen.body.visitor.identity_verified), true);
  // The pre-chat and offline forms are prefilled with what identify() said.
  await context.close();
});

test('a forged hash (or none) leaves the identity unverified', async () => {
  const context = await visitorContext(browser);
  const page = await openDemo(context, server);
  const forged = sign('not-the-site-secret', 'user-1001');
  assert.deepEqual(await page.evaluate((h) => window.Parley.identify({ id: 'user-1001', name: 'Mallory', hash: h }), forged), { verified: false });
  const id = await visitorId(page);
  let row = await visitorRow(id);
  assert.equal(row.identity_verified, 0);
  assert.equal(row.name, 'Mallory');
  // A valid hash for another id does not verify this one either.
  const other = sign(server.identitySecret, 'user-2002');
  assert.deepEqual(await page.evaluate((h) => window.Parley.identify({ id: 'user-1001', hash: h }), other), { verified: false });
  assert.deepEqual(await page.evaluate(() => window.Parley.identify({ id: 'user-1001', name: 'No Hash' })), { verified: false });
  row = await visitorRow(id);
  assert.equal(row.identity_verified, 0);
  await context.close();
});

test('identify() queued before the widget loads is sent once it has', async () => {
  const context = await visitorContext(browser);
  const hash = sign(server.identitySecret, 'user-3003');
  const page = await openDemo(context, server, '', {
    setup: (p) => p.addInitScript((h) => {
      window.Parley = function () { (window.Parley.q = window.Parley.q || []).push(arguments); };
      window.Parley('identify', { id: 'user-3003', name: 'Grace Hopper', email: 'grace@example.com', hash: h });
    }, hash),
  });
  const id = await visitorId(page);
  await waitFor(async () => (await visitorRow(id))?.identity_verified === 1, 'the queued identity verified');
  // And the widget's forms know the name: open the panel with no agent → nothing to check
  // here beyond the stored identity; the panel still opens normally.
  await openPanel(page);
  await context.close();
});
