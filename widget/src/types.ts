// Types shared by the loader (public/widget.js) and the lazily loaded chat (public/widget/chat.js).
// Only types live here: anything with code would be bundled twice. The chat reaches the
// loader's helpers through the Host object it is mounted with.

export type Locale = 'en' | 'zh-CN';
/** A text in several languages, as the site configuration gives it. */
export type Texts = Partial<Record<string, string>>;

export interface FieldConfig {
  name: string;
  label: Texts;
  type: 'text' | 'email' | 'tel' | 'textarea';
  required: boolean;
}

/** GET /api/v1/widget/config?site=KEY */
export interface Config {
  site: { name: string };
  appearance: { color: string; position: 'right' | 'left'; launcher_text: Texts };
  welcome: Texts;
  prechat: { enabled: boolean; fields: FieldConfig[] };
  offline: { message: Texts };
  /** an agent can take a conversation now */
  online: boolean;
  /** within the site's business hours */
  open: boolean;
  identity: { verification: boolean };
  /** the site's largest upload, in bytes */
  attachments: { max_bytes: number };
  /** proactive invitations: on pages whose URL contains url_contains, after after_seconds there */
  invitations: Invitation[];
}

export interface Invitation {
  url_contains: string;
  after_seconds: number;
  message: Texts;
}

export interface Session {
  /** visitor token */
  t: string;
  /** visitor id */
  v: string;
  /** expiry, Unix ms */
  x: number;
}

/** The visitor's conversation: id and the epoch of the log we hold. */
export interface Conv {
  id: string;
  e: string;
}

/** A file as the server describes it (`body.file` of a `file` event, the upload's answer). */
export interface FileRef {
  /** the server's id; absent until the upload succeeded */
  id?: string;
  name: string;
  type: string;
  size: number;
  image?: boolean;
}

/**
 * A queued message of the durable outbox, stored under `o:<client_msg_id>`; an attachment
 * whose upload can no longer finish moves to `x:<client_msg_id>`.
 */
export interface OutboxItem {
  i: string;
  t: string;
  /** created at, Unix ms */
  a: number;
  /** ordering key: creation time and a per-tab counter */
  n: number;
  /** an attachment: its description, with the server's id once uploaded */
  f?: FileRef;
  /** the page holding the attachment's bytes until it is uploaded (a Web Lock name) */
  p?: string;
  /** acknowledged: the seq the server stored it under, in conversation `c`; kept (shown as
   * sent) until the server's copy reaches this page, so the message never blinks out */
  k?: number;
  c?: string;
}

/** A form waiting to become a conversation (stored under `pf`). */
export interface PendingForm {
  form: 'prechat' | 'offline';
  fields: Record<string, string>;
  message?: string;
}

export type { Ev, Participant } from '../../web/wire';

export interface ApiResult {
  /** HTTP status, 0 when the network failed */
  s: number;
  /** parsed JSON body, or null */
  b: any;
}

export interface ApiOptions {
  method?: string;
  body?: unknown;
  auth?: boolean;
  signal?: AbortSignal;
  keepalive?: boolean;
}

/** Namespaced JSON in localStorage: `parley:<site key>:<key>`. */
export interface Store {
  get<T = any>(key: string): T | null;
  set(key: string, value: unknown): void;
  del(key: string): void;
  /** Keys (without namespace) that start with prefix. */
  keys(prefix: string): string[];
  /** The full storage key of a short key, to compare with StorageEvent.key. */
  full(key: string): string;
}

export type Listener = (data?: any) => void;

/** What the loader hands to the chat when it mounts it. */
export interface Host {
  base: string;
  site: string;
  root: ShadowRoot;
  box: HTMLElement;
  launcher: HTMLButtonElement;
  ls: Store;
  /** the configuration as the server sent it (or {}); the chat normalizes it */
  cfg(): any;
  /** fetch the configuration again (agents may have come online) */
  refresh(): Promise<void>;
  lang(): Locale;
  api(path: string, opts?: ApiOptions): Promise<ApiResult>;
  /**
   * The visitor session; pass the token that just failed (or true) to renew it. Rejects with
   * the server's answer (an ApiResult) when it refuses one, else with the network's error;
   * api() passes either on.
   */
  session(bad?: string | boolean): Promise<Session>;
  emit(name: string, data?: unknown): void;
  /** subscribe to loader-side changes: 'cfg', 'lang' */
  sub(name: string, fn: Listener): void;
  /** shows the unread count on the launcher; fires the API's 'unread' event when it changed */
  setBadge(n: number): void;
  setOpen(open: boolean): void;
  /** The chat's entry points, set by the chat when it mounts. */
  chat?: {
    open(): void;
    close(): void;
    toggle(): void;
    diagnostics(): Record<string, unknown>;
  };
  /** data-department of the embed, asked for when the conversation starts */
  department?: string;
  /** open the panel right after mounting */
  wantOpen: boolean;
  /** performance.now() of the last single-page-app navigation (0: none since the page loaded) */
  t?: number;
}
