// What a deployment ships and a visitor downloads: the Worker's wasm and JS glue (from
// worker-build's output, see scripts/build.mjs) and the widget (loader and full widget, from
// widget/build.mjs), raw and compressed as a CDN would serve them.
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { brotliCompress, constants, gzip } from 'node:zlib';
import { ROOT } from '../../scripts/setup.mjs';

export const SHIPPED = [
  { name: 'worker wasm', path: 'build/index_bg.wasm' },
  { name: 'worker JS glue', path: 'build/index.js' },
  { name: 'widget loader', path: 'public/widget.js' },
  { name: 'widget (full)', path: 'public/widget/chat.js' },
];

const gzipAsync = promisify(gzip);
const brotliAsync = promisify(brotliCompress);

/** Compresses off the main thread (libuv's pool): the benchmark runs it while the runtime idles. */
export async function sizes() {
  return Promise.all(SHIPPED.map(async ({ name, path }) => {
    const file = join(ROOT, path);
    if (!existsSync(file)) return { name, path, missing: true };
    const bytes = readFileSync(file);
    const [gz, br] = await Promise.all([
      gzipAsync(bytes, { level: 9 }),
      brotliAsync(bytes, {
        params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
      }),
    ]);
    return { name, path, raw: bytes.length, gzip: gz.length, brotli: br.length };
  }));
}
