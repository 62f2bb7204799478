// Custom sections of a WebAssembly module: listing them and dropping some. The Worker is
// linked with its `target_features` section kept (Cargo.toml's `strip = "debuginfo"`), so
// wasm-bindgen sees which features the module uses (multi-value returns instead of a return
// area on the wasm stack for every string or slice handed to JavaScript). That build keeps the
// function names too; the build drops them here, since nothing reads them at run time and they
// would add about a third to the shipped wasm.
import { readFileSync, writeFileSync } from 'node:fs';

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const CUSTOM = 0;

/** Reads an unsigned LEB128 number at `at`; returns [value, next offset]. */
function readLeb(bytes, at) {
  let value = 0;
  let shift = 0;
  for (let i = at; i < bytes.length; i += 1) {
    value += (bytes[i] & 0x7f) * 2 ** shift;
    shift += 7;
    if ((bytes[i] & 0x80) === 0) return [value, i + 1];
    if (shift > 35) break;
  }
  throw new Error(`malformed wasm: bad length at byte ${at}`);
}

/** The module's sections in order: { id, name (custom sections only), start, end }. */
export function sections(bytes) {
  if (bytes.length < 8 || MAGIC.some((b, i) => bytes[i] !== b)) throw new Error('not a wasm module');
  const found = [];
  let at = 8;
  while (at < bytes.length) {
    const start = at;
    const id = bytes[at];
    const [size, body] = readLeb(bytes, at + 1);
    const end = body + size;
    if (end > bytes.length) throw new Error(`malformed wasm: section at byte ${start} runs past the end`);
    let name = null;
    if (id === CUSTOM) {
      const [length, text] = readLeb(bytes, body);
      name = Buffer.from(bytes.subarray(text, text + length)).toString('utf8');
    }
    found.push({ id, name, start, end });
    at = end;
  }
  return found;
}

/** `bytes` without the custom sections named in `names`; everything else byte for byte. */
export function withoutCustomSections(bytes, names) {
  const drop = new Set(names);
  const kept = [bytes.subarray(0, 8)];
  const dropped = [];
  for (const s of sections(bytes)) {
    if (s.id === CUSTOM && drop.has(s.name)) dropped.push({ name: s.name, bytes: s.end - s.start });
    else kept.push(bytes.subarray(s.start, s.end));
  }
  return { bytes: Buffer.concat(kept), dropped };
}

/** Rewrites the wasm file at `path` without the named custom sections; returns what went. */
export function dropCustomSections(path, names) {
  const { bytes, dropped } = withoutCustomSections(readFileSync(path), names);
  if (dropped.length) writeFileSync(path, bytes);
  return dropped;
}
