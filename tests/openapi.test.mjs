// The OpenAPI document is kept true: every documented operation exists on the server (called
// without credentials it is refused for a reason, never as an unknown route or method), and
// every route in the Worker's router is documented.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startServer } from './support/server.mjs';

let server;
let doc;

before(async () => {
  server = await startServer();
  doc = await (await fetch(`${server.url}/api/v1/openapi.json`)).json();
});

after(async () => {
  await server?.stop();
});

/** A well-formed value for each path placeholder, so routing (not id syntax) is what is tested. */
const SAMPLE = {
  id: `c_${'a'.repeat(26)}`,
  file: `f_${'a'.repeat(26)}`,
  site: `s_${'a'.repeat(26)}`,
  webhook: 'w_x',
  visitor: `v_${'a'.repeat(26)}`,
  agent: `a_${'a'.repeat(26)}`,
  reply: 'q_x',
};

test('the document is OpenAPI 3 with responses and an error schema of every code', () => {
  assert.match(doc.openapi, /^3\./);
  assert.ok(Object.keys(doc.paths).length > 40);
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      assert.ok(op.responses && op.summary, `${method} ${path}`);
      const placeholders = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      assert.deepEqual(op.parameters.map((p) => p.name), placeholders, `${method} ${path} parameters`);
    }
  }
  const protocol = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');
  for (const code of doc.components.schemas.Error.properties.code.enum) {
    assert.ok(protocol.includes(`| \`${code}\` |`), `${code} in docs/protocol.md`);
  }
});

test('the delivery log is described, with every failure code and refusal code in docs/protocol.md', () => {
  const op = doc.paths['/api/v1/sites/{site}/webhooks/{webhook}/deliveries'].get;
  assert.equal(op.responses['2XX'].content['application/json'].schema.$ref, '#/components/schemas/DeliveryLog');
  assert.equal(doc.components.schemas.DeliveryLog.properties.deliveries.items.$ref, '#/components/schemas/Delivery');
  const delivery = doc.components.schemas.Delivery;
  for (const field of ['last_status', 'last_error', 'error_code', 'error_detail']) {
    assert.ok(delivery.required.includes(field), field);
    assert.equal(delivery.properties[field].nullable, true, field);
  }
  const protocol = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8');
  const codes = delivery.properties.error_code.enum.filter((c) => c !== null);
  assert.deepEqual(codes, ['http_status', 'redirect_refused', 'address_refused', 'timeout', 'webhook_deleted', 'not_delivered', 'network']);
  for (const code of codes) assert.ok(protocol.includes(`| \`${code}\` |`), `${code} in docs/protocol.md`);
  const refusals = delivery.properties.error_detail.enum.filter((c) => c !== null);
  assert.deepEqual(refusals, ['scheme_not_allowed', 'malformed_url', 'credentials_in_url', 'address_not_public']);
  for (const code of refusals) assert.ok(protocol.includes(`\`${code}\``), `${code} in docs/protocol.md`);
});

test('every documented operation exists on the server', async () => {
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item)) {
      const url = server.url + path.replace(/\{(\w+)\}/g, (_, name) => SAMPLE[name]);
      const res = await fetch(url, {
        method: method.toUpperCase(),
        headers: { 'content-type': 'application/json' },
        body: ['post', 'put', 'patch'].includes(method) ? '{}' : undefined,
      });
      const text = await res.text();
      let code = null;
      try { code = JSON.parse(text).code; } catch { /* not JSON */ }
      assert.notEqual(code, 'method_not_allowed', `${method} ${path}`);
      // Unknown routes answer not_found; known ones without credentials answer something else
      // (token_missing, invalid_request, unknown_site…). healthz and this document answer 200.
      assert.ok(code !== 'not_found', `${method.toUpperCase()} ${path} → ${res.status} ${text.slice(0, 120)}`);
    }
  }
});

test('every route of the router is documented', () => {
  const source = readFileSync(new URL('../src/api.rs', import.meta.url), 'utf8');
  const documented = new Set(Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m} ${path}`)));
  // Top-level routes: (Method::X, ["api", "v1", ...]).
  const top = [...source.matchAll(/\(Method::(\w+), \["api", "v1"((?:, "[^"]+"|, \w+)*)\]\)/g)];
  const normalise = (segments) => segments.split(', ').filter(Boolean)
    .map((s) => (s.startsWith('"') ? s.slice(1, -1) : `{${s === 'file' ? 'file' : s}}`));
  assert.ok(top.length >= 20, `found ${top.length} top-level routes`);
  for (const [, method, rest] of top) {
    const path = `/api/v1/${normalise(rest.slice(2)).join('/')}`;
    assert.ok(documented.has(`${method.toLowerCase()} ${path}`), `${method} ${path} is not documented`);
  }
  // Conversation sub-routes: (Method::X, ["segment", ...]) inside conversation_route.
  const conv = source.slice(source.indexOf('async fn conversation_route'));
  const subRoutes = [...conv.matchAll(/\(Method::(\w+), \[((?:"[^"]+"(?:, )?|\w+(?:, )?)+)\]\)/g)];
  assert.ok(subRoutes.length >= 15, `found ${subRoutes.length} conversation routes`);
  for (const [, method, segments] of conv.matchAll(/\(Method::(\w+), \[((?:"[^"]+"(?:, )?|\w+(?:, )?)+)\]\)/g)) {
    const parts = segments.split(', ').map((s) => (s.startsWith('"') ? s.slice(1, -1) : `{${s}}`));
    const path = `/api/v1/conversations/{id}/${parts.join('/')}`;
    assert.ok(documented.has(`${method.toLowerCase()} ${path}`), `${method} ${path} is not documented`);
  }
});
