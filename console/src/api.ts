// HTTP to the Worker (same origin). The agent's session is an HttpOnly cookie that script
// never sees; sockets sign in with a short-lived token of that session, fetched just before
// each connect. Errors become ApiError with the server's stable code and localized message.
import { lang, t } from './i18n';

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public retryAfterMs?: number,
  ) {
    super(message);
  }
}

let signedIn = false;
let onUnauthorized: ((code: string) => void) | null = null;

/** Codes that mean the sign-in is over: back to the login screen. */
export const SIGNED_OUT_CODES = ['token_missing', 'token_invalid', 'token_expired', 'session_ended'];

/** Whether this page holds a session (the cookie itself is out of script's reach). */
export function setSignedIn(value: boolean): void {
  signedIn = value;
  if (!value) socketTokenCache = null;
}

export function isSignedIn(): boolean {
  return signedIn;
}

// Socket tokens live two minutes on the server; one is reused for a minute so that opening
// several conversations at once costs one request.
const SOCKET_TOKEN_REUSE_MS = 60_000;
let socketTokenCache: { token: string; until: number } | null = null;
let socketTokenPending: Promise<string | null> | null = null;

/**
 * A token for a socket's hello frame; null once signed out. Rejects (network) so the socket
 * retries later.
 */
export function socketToken(): Promise<string | null> {
  if (!signedIn) return Promise.resolve(null);
  if (socketTokenCache && socketTokenCache.until > Date.now()) return Promise.resolve(socketTokenCache.token);
  socketTokenPending ??= api<{ token: string }>('/api/v1/agent/socket-token', { method: 'POST' })
    .then((r) => {
      socketTokenCache = { token: r.token, until: Date.now() + SOCKET_TOKEN_REUSE_MS };
      return r.token;
    })
    .catch((e) => {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return null;
      throw e;
    })
    .finally(() => {
      socketTokenPending = null;
    });
  return socketTokenPending;
}

/** Called when the server says the token is missing, invalid or expired, or its session ended. */
export function setUnauthorizedHandler(fn: (code: string) => void): void {
  onUnauthorized = fn;
}

/**
 * A token error from a socket's error frame or an upload. Resolves to whether the sign-in is
 * over: `session_ended` says so itself; other token errors (a socket token that expired or was
 * refused) are confirmed over HTTP, and only a 401 from /me signs out. Either way the cached
 * socket token is dropped, so a reconnect signs in with a fresh one.
 */
export async function confirmSignedOut(code: string): Promise<boolean> {
  socketTokenCache = null;
  if (code === 'session_ended') {
    onUnauthorized?.(code);
    return true;
  }
  try {
    await api('/api/v1/me');
    return false;
  } catch (e) {
    return e instanceof ApiError && e.status === 401;
  }
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  signal?: AbortSignal;
  /** Do not sign out on 401 (the login form). */
  anonymous?: boolean;
}

export async function api<T = any>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', 'accept-language': lang() };
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(path, { method: opts.method ?? (body ? 'POST' : 'GET'), headers, body, signal: opts.signal, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', t('networkError'));
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const code = typeof parsed?.code === 'string' ? parsed.code : `http_${res.status}`;
    const message = typeof parsed?.message === 'string' ? parsed.message : t('genericError');
    const retry = Number(parsed?.retry_after_ms ?? 0) || Number(res.headers.get('retry-after') ?? 0) * 1000 || undefined;
    const err = new ApiError(res.status, code, message, retry);
    if (res.status === 401 && !opts.anonymous && SIGNED_OUT_CODES.includes(code)) onUnauthorized?.(code);
    throw err;
  }
  return parsed as T;
}

/**
 * A download (CSV, JSON) fetched with the session cookie, never a token in a URL: resolves to the bytes
 * and the server's file name. Errors are ApiErrors with the server's message, as for api().
 */
export async function fetchBlob(path: string, signal?: AbortSignal): Promise<{ blob: Blob; name: string | null }> {
  let res: Response;
  try {
    res = await fetch(path, {
      headers: { 'accept-language': lang() },
      credentials: 'same-origin', cache: 'no-store', signal,
    });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', t('networkError'));
  }
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    const code = typeof body?.code === 'string' ? body.code : `http_${res.status}`;
    if (res.status === 401 && SIGNED_OUT_CODES.includes(code)) onUnauthorized?.(code);
    throw new ApiError(res.status, code, typeof body?.message === 'string' ? body.message : t('genericError'));
  }
  const disposition = res.headers.get('content-disposition') ?? '';
  const name = /filename="?([^";]+)"?/i.exec(disposition)?.[1] ?? null;
  return { blob: await res.blob(), name };
}

/** Hands a blob to the browser as a file download. */
export function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.rel = 'noopener';
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Whether an error means "this server does not have that endpoint yet". */
export function isMissingEndpoint(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 404 || e.status === 405) && (e.code === 'not_found' || e.code === 'method_not_allowed' || e.code.startsWith('http_'));
}

/** A client message id: 1–64 of [A-Za-z0-9-_.:], unique per sender. */
export function clientMsgId(): string {
  const rnd = new Uint8Array(8);
  crypto.getRandomValues(rnd);
  return `cm-${Date.now().toString(36)}-${Array.from(rnd, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export function wsUrl(path: string): string {
  const u = new URL(path, location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}
