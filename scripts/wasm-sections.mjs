// The sections of a WebAssembly module (version 1), and the module without some of its custom
// sections. `scripts/build.mjs` uses it to drop the Worker's function names after the build.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

/** `\0asm`, then version 1: a core module (a component carries another version). */
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const CUSTOM = 0;

/** Reads an unsigned 32-bit LEB128 number at `at`; returns [value, next offset]. */
function readU32(bytes, at) {
  let value = 0;
  for (let i = 0; i < 5 && at + i < bytes.length; i += 1) {
    const byte = bytes[at + i];
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      if (value > 0xffffffff) break;
      return [value, at + i + 1];
    }
  }
  throw new Error(`malformed wasm: bad length at byte ${at}`);
}

/** The module's sections in order: { id, name (custom sections only), start, end }. */
export function sections(bytes) {
  if (bytes.length < HEADER.length || HEADER.some((b, i) => bytes[i] !== b)) {
    throw new Error('not a wasm module (version 1)');
  }
  const found = [];
  let at = HEADER.length;
  while (at < bytes.length) {
    const start = at;
    const id = bytes[at];
    const [size, body] = readU32(bytes, at + 1);
    const end = body + size;
    if (end > bytes.length) throw new Error(`malformed wasm: section at byte ${start} runs past the end`);
    let name = null;
    if (id === CUSTOM) {
      const [length, text] = readU32(bytes, body);
      if (text + length > end) throw new Error(`malformed wasm: custom section name at byte ${start} runs past its section`);
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
  const kept = [bytes.subarray(0, HEADER.length)];
  const dropped = [];
  for (const s of sections(bytes)) {
    if (s.id === CUSTOM && drop.has(s.name)) dropped.push({ name: s.name, bytes: s.end - s.start });
    else kept.push(bytes.subarray(s.start, s.end));
  }
  return { bytes: Buffer.concat(kept), dropped };
}

/**
 * Rewrites the wasm file at `path` without the named custom sections (through a temporary file,
 * so it is never left half written); returns what went. Untouched when there is nothing to drop.
 */
export function dropCustomSections(path, names) {
  const { bytes, dropped } = withoutCustomSections(readFileSync(path), names);
  if (dropped.length) {
    writeFileSync(`${path}.tmp`, bytes);
    renameSync(`${path}.tmp`, path);
  }
  return dropped;
}
