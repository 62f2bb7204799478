// Posts the outbox's replies over HTTP, for every conversation: those of open tabs whose socket
// is down, and those of conversations with no tab here (closed or pushed out while a reply was
// still sending, or written in another console window). One post at a time per conversation,
// oldest first, each after the answer to the one before, so replies are stored in the order
// they were written; the same client_msg_id every time, which the server deduplicates.
import { api, ApiError, HTTP_WAIT, SIGNED_OUT_CODES } from './api';
import type { Outbox, OutboxItem } from './outbox';

/** Refusals that pass: the same send succeeds later. */
export const RETRYABLE_CODES = ['rate_limited', 'storage_unavailable', 'uploads_busy', 'internal'];
/** Statuses that pass whoever answers them (the server, or a proxy in front of it). */
const TRANSIENT_STATUSES = [408, 429];

/** What a send carries, the same over the socket (as a `send` frame) and over HTTP. */
export function sendBody(item: OutboxItem): Record<string, unknown> {
  return {
    client_msg_id: item.client_msg_id,
    ...(item.file ? { file: item.file.id } : { text: item.text }),
    ...(item.note ? { note: true } : {}),
  };
}

/**
 * Records a refused send, from the socket or HTTP: it goes again when the server said to (or in
 * a few seconds) if the refusal passes, or it waits for the agent with its reason. Returns
 * whether it was refused for good.
 */
export function recordRefusal(outbox: Outbox, clientMsgId: string, err: unknown): boolean {
  const e = err instanceof ApiError ? err : new ApiError(0, 'network', '');
  // The network, a server in trouble, a proxy's own "too many" or "timed out" page (no code of
  // ours), or a sign-in being renewed (the console signs out if not).
  if (e.code === 'network' || e.status >= 500 || TRANSIENT_STATUSES.includes(e.status)
    || RETRYABLE_CODES.includes(e.code) || SIGNED_OUT_CODES.includes(e.code)) {
    outbox.retryLater(clientMsgId, Date.now() + (e.retryAfterMs ?? 3000));
    return false;
  }
  outbox.fail(clientMsgId, e.code, e.message);
  return true;
}

export class Courier {
  /** Conversations with a post under way. */
  private posting = new Set<string>();

  constructor(
    private outbox: Outbox,
    /** The server stored it under `seq`. */
    private stored: (conversation: string, clientMsgId: string, seq: number) => void,
    /** Refused for good: it waits in the outbox, with `reason`, for the agent to retry or discard it. */
    private refusedForGood: (conversation: string, reason: string) => void,
  ) {}

  /** Posts the first of a conversation's unsent replies (oldest first), unless one is on its way or it was told to wait. */
  async post(conversation: string, queue: OutboxItem[]): Promise<void> {
    const item = queue[0];
    // One told to wait (rate limited) holds back those written after it.
    if (!item || this.posting.has(conversation) || (item.retryAt && item.retryAt > Date.now())) return;
    this.posting.add(conversation);
    let seq: number;
    try {
      const ack = await api<{ type?: string; seq?: unknown } | undefined>(`/api/v1/conversations/${encodeURIComponent(conversation)}/messages`, {
        method: 'POST', body: sendBody(item), signal: AbortSignal.timeout(HTTP_WAIT),
      });
      // Only the server's ack says it was stored: a 2xx without one (a proxy's page, an empty
      // answer) counts as not arrived, and the same reply goes again.
      if (ack?.type !== 'ack' || typeof ack.seq !== 'number') throw new ApiError(0, 'network', '');
      seq = ack.seq;
    } catch (e) {
      this.posting.delete(conversation);
      if (recordRefusal(this.outbox, item.client_msg_id, e)) this.refusedForGood(conversation, (e as ApiError).message);
      return;
    }
    this.posting.delete(conversation);
    this.stored(conversation, item.client_msg_id, seq);
  }
}
