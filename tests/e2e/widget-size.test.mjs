// Size budgets of the widget (the loader every page of a site loads, and the full chat loaded
// on demand) and static safety checks of its code. Run `node widget/build.mjs` first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KB, measureWidget } from '../../widget/build.mjs';

const ROOT = new URL('../..', import.meta.url).pathname;

test('the loader is at most 5 KB and the full widget at most 35 KB, gzipped', () => {
  const rows = measureWidget();
  const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
  assert.equal(byName.loader.budget, 5 * KB);
  assert.equal(byName.chat.budget, 35 * KB);
  for (const r of rows) {
    assert.ok(!r.missing, `${r.file} is missing: run node widget/build.mjs`);
    assert.ok(r.gzip <= r.budget, `${r.name}: ${r.gzip} bytes gzipped, budget ${r.budget}`);
  }
  console.log(rows.map((r) => `${r.name} raw ${r.raw} B, gzip ${r.gzip} B (budget ${r.budget} B)`).join('; '));
});

test('the size check fails (exit 1) when a bundle is over its budget', () => {
  const ok = spawnSync(process.execPath, [join(ROOT, 'widget/build.mjs'), '--sizes'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /loader .* ok/);
  const over = spawnSync(process.execPath, [join(ROOT, 'widget/build.mjs'), '--sizes'], {
    encoding: 'utf8',
    env: { ...process.env, PARLEY_WIDGET_BUDGET_SCALE: '0.1' },
  });
  assert.equal(over.status, 1);
  assert.match(over.stdout, /OVER BUDGET/);
});

function files(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

test('the widget never parses HTML or evaluates strings', () => {
  const sources = files(join(ROOT, 'widget/src')).filter((f) => f.endsWith('.ts'));
  const built = [join(ROOT, 'public/widget.js'), join(ROOT, 'public/widget/chat.js')];
  for (const f of [...sources, ...built]) {
    const code = readFileSync(f, 'utf8');
    for (const banned of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function', 'createContextualFragment', 'DOMParser']) {
      assert.ok(!code.includes(banned), `${f} uses ${banned}`);
    }
  }
});
