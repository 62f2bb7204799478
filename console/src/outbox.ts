// The durable outbox: every message an agent sends is written here (localStorage) before it
// goes out, and removed only when the server acknowledges it. After a reconnect or a page
// reload the remaining ones are sent again with the same client_msg_id, which the server
// deduplicates, so nothing typed is lost and nothing appears twice.
import { clientMsgId } from './api';
import { Emitter } from './emitter';
import type { FileInfo } from './files';
import { load, onExternalChange, save } from './storage';

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
}

export class Outbox extends Emitter<{ change: [string] }> {
  private items: OutboxItem[] = [];
  private key: string;

  constructor(agentId: string) {
    super();
    this.key = `outbox.${agentId}`;
    this.items = load<OutboxItem[]>(this.key, []) ?? [];
    onExternalChange(this.key, () => {
      // Another console tab changed it (sent or acked): take its view.
      const before = new Set(this.items.map((i) => i.conversation));
      this.items = load<OutboxItem[]>(this.key, []) ?? [];
      for (const c of new Set([...before, ...this.items.map((i) => i.conversation)])) this.emit('change', c);
    });
  }

  private persist(conversation: string): void {
    save(this.key, this.items);
    this.emit('change', conversation);
  }

  add(conversation: string, text: string, note: boolean, file?: FileInfo): OutboxItem {
    const item: OutboxItem = { conversation, client_msg_id: clientMsgId(), text, note, created: Date.now(), ...(file ? { file } : {}) };
    this.items.push(item);
    this.persist(conversation);
    return item;
  }

  for(conversation: string): OutboxItem[] {
    return this.items.filter((i) => i.conversation === conversation);
  }

  get(clientMsgId: string): OutboxItem | undefined {
    return this.items.find((i) => i.client_msg_id === clientMsgId);
  }

  /** The server has it (ack, or its event arrived). */
  done(clientMsgId: string): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    this.items = this.items.filter((i) => i !== item);
    this.persist(item.conversation);
  }

  fail(clientMsgId: string, code: string, message: string): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    item.error = { code, message };
    this.persist(item.conversation);
  }

  retryLater(clientMsgId: string, at: number): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    item.retryAt = at;
    this.persist(item.conversation);
  }

  /** A failed item: try again (same id). */
  retry(clientMsgId: string): void {
    const item = this.get(clientMsgId);
    if (!item) return;
    delete item.error;
    delete item.retryAt;
    this.persist(item.conversation);
  }
}
