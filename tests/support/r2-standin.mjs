// A stand-in for the Worker's R2 bucket (`env.ATTACHMENTS`) that keeps its objects in the real
// local bucket but lists at most two keys a page, as a bucket with many more files than a page
// holds (R2 lists 1,000) would: whoever lists must follow `truncated` and `cursor`. A file
// whose bytes begin with REFUSE_LISTING makes the next listing of its conversation's files
// fail, once, as R2 can. A file whose bytes begin with SLOW_DELETES makes every deletion of its
// conversation's files take HELD_MS, as a slow bucket would: an erasure is then caught mid-way
// (a key under HELD_PREFIX says so while it lasts).
// Loaded by scripts/runtime.mjs as a wrapped binding in tests:
//
//   startServer({ standIns: { ATTACHMENTS: 'tests/support/r2-standin.mjs' } })

export const REFUSE_LISTING = 'r2 stand-in: refuse the next listing of this conversation\n';
export const SLOW_DELETES = 'r2 stand-in: hold every deletion of this conversation\'s files\n';
export const HELD_MS = 2000;
/** Listed while a deletion of a conversation's files is held: `held/c/<conversation>/`. */
export const HELD_PREFIX = 'held/';
const PAGE = 2;

// Module state: the Worker and its Durable Objects share one isolate, and with it this module.
const refuseOnce = new Set();
const slowPrefixes = new Set();
const prefixOf = (key) => key.slice(0, key.lastIndexOf('/') + 1);

const textOf = (value) => {
  if (typeof value === 'string') return value;
  if (value instanceof ArrayBuffer) return new TextDecoder().decode(value);
  if (ArrayBuffer.isView(value)) return new TextDecoder().decode(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  return '';
};

// Named as Cloudflare's binding class is: workers-rs checks the binding's constructor name.
class R2Bucket {
  #inner;

  constructor(inner) {
    this.#inner = inner;
  }

  head(...args) { return this.#inner.head(...args); }

  get(...args) { return this.#inner.get(...args); }

  async delete(keys) {
    const some = Array.isArray(keys) ? keys : [keys];
    const held = some.map(prefixOf).find((prefix) => slowPrefixes.has(prefix));
    if (held) {
      // Seen from outside (`HELD_PREFIX` + the conversation's prefix) while the deletion waits.
      const marker = `${HELD_PREFIX}${held}`;
      await this.#inner.put(marker, 'held');
      await new Promise((resolve) => setTimeout(resolve, HELD_MS));
      await this.#inner.delete(marker);
    }
    return this.#inner.delete(keys);
  }

  createMultipartUpload(...args) { return this.#inner.createMultipartUpload(...args); }

  resumeMultipartUpload(...args) { return this.#inner.resumeMultipartUpload(...args); }

  put(key, value, options) {
    if (textOf(value).startsWith(REFUSE_LISTING)) refuseOnce.add(prefixOf(key));
    if (textOf(value).startsWith(SLOW_DELETES)) slowPrefixes.add(prefixOf(key));
    return this.#inner.put(key, value, options);
  }

  async list(options = {}) {
    if (refuseOnce.delete(options.prefix ?? '')) throw new Error('r2 stand-in: listing refused');
    return this.#inner.list({ ...options, limit: Math.min(options.limit ?? 1000, PAGE) });
  }
}

export default function attachments(env) {
  return new R2Bucket(env.ATTACHMENTS);
}
