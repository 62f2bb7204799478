// What a deployment ships and a visitor downloads: the Worker's wasm and JS glue (from
// worker-build's output, see scripts/build.mjs) and the widget (loader and full widget, from
// widget/build.mjs), raw and compressed as a CDN would serve them.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { ROOT } from '../../scripts/setup.mjs';

export const SHIPPED = [
  { name: 'worker wasm', path: 'build/index_bg.wasm' },
  { name: 'worker JS glue', path: 'build/index.js' },
  { name: 'widget loader', path: 'public/widget.js' },
  { name: 'widget (full)', path: 'public/widget/chat.js' },
];

export function sizes() {
  return SHIPPED.map(({ name, path }) => {
    const file = join(ROOT, path);
    if (!existsSync(file)) return { name, path, missing: true };
    const bytes = readFileSync(file);
    return {
      name,
      path,
      raw: bytes.length,
      gzip: gzipSync(bytes, { level: 9 }).length,
      brotli: brotliCompressSync(bytes, {
        params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
      }).length,
    };
  });
}
