// The durable outbox: every message an agent sends is written here (localStorage) before it
// goes out, and removed only when the server acknowledges it. After a reconnect or a page
// reload the remaining ones are sent again with the same client_msg_id, which the server
// deduplicates, so nothing typed is lost and nothing appears twice.
//
// Each item has its own key (`outbox.<agent>.<client_msg_id>`), so a tab only ever writes or
// removes the items it changes: two console tabs writing at the same moment cannot overwrite
// each other's replies, as they could when the whole outbox was one array.
import { clientMsgId } from './api';
import { Emitter } from './emitter';
import type { FileInfo } from './files';
import { keysStartingWith, load, onExternalChange, onExternalChangeUnder, remove, save } from './storage';

export interface OutboxItem {
  conversation: string;
  client_msg_id: string;
  text: string;
  note: boolean;
  /** A file uploaded before, posted by this message (text is empty then). */
  file?: FileInfo;
  created: number;
  /** Set when the server refused it for good (too long, forbidden…); kept until discarded. */
  error?: { code: string; message: string };
  /** Not before this time (rate limited). */
  retryAt?: number;
  /** Acknowledged under this seq: not sent again, and shown until its event arrives (the ack
   * comes before it), so the reply never leaves the thread for a moment. */
  acked?: number;
  /** When it was acknowledged (ms). */
  ackedAt?: number;
}

/** How long an acknowledged item read at start-up is kept for its event. */
const ACKED_KEPT_MS = 60_000;

function isItem(v: unknown): v is OutboxItem {
  const i = v as OutboxItem | null;
  return typeof i?.conversation === 'string' && typeof i.client_msg_id === 'string' && typeof i.created === 'number';
}

/** Oldest first, so replies go out in the order they were written, whichever tab wrote them. */
function byCreated(a: OutboxItem, b: OutboxItem): number {
  return a.created - b.created || (a.client_msg_id < b.client_msg_id ? -1 : a.client_msg_id > b.client_msg_id ? 1 : 0);
}

export class Outbox extends Emitter<{ change: [string] }> {
  /**
   * This tab's view: what storage held at load, what it added and what other tabs stored
   * since. An item whose write failed (storage full) lives here only, and is sent all the same.
   */
  private items: OutboxItem[] = [];
  private readonly itemPrefix: string;
  /** Where versions before one key per item kept the whole outbox, as one array. */
  private readonly legacyKey: string;
  /** Each item's `created` is later than the one before, so two written within a millisecond keep their order. */
  private lastCreated = 0;
  private readonly unlisten: (() => void)[];

  constructor(agentId: string) {
    super();
    this.legacyKey = `outbox.${agentId}`;
    this.itemPrefix = `${this.legacyKey}.`;
    for (const key of keysStartingWith(this.itemPrefix)) {
      const item = load<unknown>(key);
      if (!isItem(item)) continue;
      // Acknowledged long ago: its reply is in the conversation's history, which the thread
      // loads; a tab that waited for its event has had it by now.
      if (item.acked && Date.now() - (item.ackedAt ?? item.created) > ACKED_KEPT_MS) remove(key);
      else this.items.push(item);
    }
    this.items.sort(byCreated);
    this.adoptLegacy();
    this.unlisten = [
      onExternalChangeUnder(this.itemPrefix, (key, value) => this.onStoredElsewhere(key, value)),
      // A console tab still running the older version saved its array.
      onExternalChange(this.legacyKey, () => this.adoptLegacy()),
    ];
  }

  /** Stops following other tabs (signed out: the next sign-in has an outbox of its own). */
  stop(): void {
    for (const off of this.unlisten) off();
  }

  private keyOf(item: OutboxItem): string {
    return this.itemPrefix + item.client_msg_id;
  }

  /** Another tab added or changed an item (take its copy), or removed it (acknowledged or discarded). */
  private onStoredElsewhere(key: string, value: unknown): void {
    const id = key.slice(this.itemPrefix.length);
    const known = this.get(id);
    if (value === null) {
      if (!known) return;
      this.items = this.items.filter((i) => i !== known);
      this.emit('change', known.conversation);
      return;
    }
    if (!isItem(value) || value.client_msg_id !== id) return;
    this.items = this.items.filter((i) => i !== known);
    this.insert(value);
    if (known && known.conversation !== value.conversation) this.emit('change', known.conversation);
    this.emit('change', value.conversation);
  }

  /** Moves an array left by an older version to one key per item, so an upgrade loses nothing. */
  private adoptLegacy(): void {
    const legacy = load<unknown>(this.legacyKey);
    if (!Array.isArray(legacy)) return;
    const notMoved: OutboxItem[] = [];
    const changed = new Set<string>();
    let previousCreated = -Infinity;
    for (const stored of legacy) {
      if (!isItem(stored)) continue;
      // A copy this tab already has is newer than the array's.
      let item = this.get(stored.client_msg_id);
      if (!item) {
        item = stored;
        // The array's order is the order they were written: ties in `created` must not change it.
        item.created = previousCreated = Math.max(item.created, previousCreated + 1);
        this.insert(item);
        changed.add(item.conversation);
      }
      if (!save(this.keyOf(item), item)) notMoved.push(item);
    }
    // Storage full: what could not be moved stays under the old key (a smaller array always
    // fits where the larger one was), so a reload still finds it.
    save(this.legacyKey, notMoved.length ? notMoved : null);
    for (const c of changed) this.emit('change', c);
  }

  private insert(item: OutboxItem): void {
    this.items.push(item);
    this.items.sort(byCreated);
  }

  /** Stores the item under its own key (or keeps it in memory only, if storage refuses). */
  private persist(item: OutboxItem): void {
    save(this.keyOf(item), item);
    this.emit('change', item.conversation);
  }

  add(conversation: string, text: string, note: boolean, file?: FileInfo): OutboxItem {
    this.lastCreated = Math.max(Date.now(), this.lastCreated + 1);
    const item: OutboxItem = { conversation, client_msg_id: clientMsgId(), text, note, created: this.lastCreated, ...(file ? { file } : {}) };
    this.insert(item);
    this.persist(item);
    return item;
  }

  for(conversation: string): OutboxItem[] {
    return this.items.filter((i) => i.conversation === conversation);
  }

  /** The conversation's replies still to send (not refused for good, not acknowledged), oldest first. */
  toSend(conversation: string): OutboxItem[] {
    return this.items.filter((i) => i.conversation === conversation && !i.error && !i.acked);
  }

  /** The conversations with items, in the order of their oldest. */
  conversations(): string[] {
    return [...new Set(this.items.map((i) => i.conversation))];
  }

  get(clientMsgId: string): OutboxItem | undefined {
    return this.items.find((i) => i.client_msg_id === clientMsgId);
  }

  /** The server stored it under `seq`; its event is still to come. */
  acknowledged(clientMsgId: string, seq: number): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    item.acked = seq;
    item.ackedAt = Date.now();
    delete item.retryAt;
    this.persist(item);
  }

  /** The conversation's log was replaced: its acknowledged items go again. */
  unacknowledge(conversation: string): void {
    for (const item of this.for(conversation)) {
      if (!item.acked) continue;
      delete item.acked;
      delete item.ackedAt;
      this.persist(item);
    }
  }

  /** Its event arrived, or the agent discarded it. */
  done(clientMsgId: string): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    this.items = this.items.filter((i) => i !== item);
    remove(this.keyOf(item));
    this.emit('change', item.conversation);
  }

  fail(clientMsgId: string, code: string, message: string): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    item.error = { code, message };
    this.persist(item);
  }

  retryLater(clientMsgId: string, at: number): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    item.retryAt = at;
    this.persist(item);
  }

  /** A failed item: try again (same id). */
  retry(clientMsgId: string): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    delete item.error;
    delete item.retryAt;
    this.persist(item);
  }
}
