// The Worker's build (scripts/build.mjs): the wasm is linked so that wasm-bindgen sees its
// features (multi-value returns, no return areas on the wasm stack), and its function names are
// dropped afterwards by scripts/wasm-sections.mjs, tested here on hand-made modules.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { BUILD_ENTRY, BUILD_WASM, UNSHIPPED_SECTIONS } from '../scripts/build.mjs';
import { sections, withoutCustomSections } from '../scripts/wasm-sections.mjs';

const HEADER = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
const TYPES = Buffer.from([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // one type: () -> ()

/** An unsigned LEB128 number. */
function leb(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** A custom section: id 0, its size, then its name and contents. */
function customSection(name, contents) {
  const body = Buffer.concat([leb(name.length), Buffer.from(name), Buffer.from(contents)]);
  return Buffer.concat([Buffer.from([0]), leb(body.length), body]);
}

test('custom sections are dropped by name, everything else kept byte for byte', () => {
  const names = Buffer.alloc(300, 7); // a size that takes two bytes to say
  const module = Buffer.concat([
    HEADER, customSection('producers', [1, 2]), TYPES, customSection('name', names),
    customSection('target_features', [6]),
  ]);
  assert.deepEqual(sections(module).map((s) => s.name ?? `id ${s.id}`), ['producers', 'id 1', 'name', 'target_features']);
  const { bytes, dropped } = withoutCustomSections(module, ['name']);
  assert.deepEqual(dropped, [{ name: 'name', bytes: customSection('name', names).length }]);
  assert.deepEqual(bytes, Buffer.concat([HEADER, customSection('producers', [1, 2]), TYPES, customSection('target_features', [6])]));
  assert.ok(WebAssembly.validate(bytes));
  // Nothing named: the same bytes.
  assert.deepEqual(withoutCustomSections(module, []).bytes, module);
});

test('what is not a well-formed module is refused, not cut', () => {
  assert.throws(() => sections(Buffer.from('not wasm at all')), /not a wasm module/);
  // A component, not a core module: another version after the magic bytes.
  assert.throws(() => sections(Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00])), /not a wasm module/);
  assert.throws(() => sections(Buffer.concat([HEADER, Buffer.from([1, 9, 0])])), /runs past the end/);
  // A size of six LEB bytes, more than a 32-bit number takes.
  assert.throws(() => sections(Buffer.concat([HEADER, Buffer.from([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00])])), /bad length/);
  // A custom section whose name is longer than the section.
  assert.throws(() => sections(Buffer.concat([HEADER, Buffer.from([0, 2, 5, 0x61]), TYPES])), /name .* runs past its section/);
});

// Whether it still runs is every Miniflare test's business: Node's own V8 refuses to compile it
// (a `noexternref` type needs a wasm flag it does not turn on by default).
test('the built Worker: multi-value glue, no function names, its features and code kept', () => {
  const found = sections(readFileSync(BUILD_WASM));
  const custom = found.filter((s) => s.id === 0).map((s) => s.name);
  for (const name of UNSHIPPED_SECTIONS) assert.ok(!custom.includes(name), `${name} section left in ${BUILD_WASM}`);
  assert.ok(custom.includes('target_features'), 'linked without its target_features (strip = true?)');
  assert.ok(custom.includes('producers'), 'the producers section (workers-rs version) is kept');
  assert.ok(found.some((s) => s.id === 10), 'a code section');
  // Without the features wasm-bindgen falls back to return areas, through this shim.
  assert.ok(!readFileSync(BUILD_ENTRY, 'utf8').includes('__wbindgen_add_to_stack_pointer'));
});
