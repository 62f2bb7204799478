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
    /** With `invalid_request`: the body's field that was refused, as a path (`routing.hours`). */
    public field?: string,
  ) {
    super(message);
  }
}

let signedIn = false;
let onSignInLost: ((code: string) => Promise<boolean>) | null = null;

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

/** How long a request may take before it counts as failed (and is retried): one hung on a
 *  half-open connection would otherwise hold back everything waiting on it. */
export const HTTP_WAIT = 15_000;

// Socket tokens live two minutes on the server; one is reused for a minute so that opening
// several conversations at once costs one request.
const SOCKET_TOKEN_REUSE_MS = 60_000;
let socketTokenCache: { token: string; until: number } | null = null;
let socketTokenPending: Promise<string | null> | null = null;

/**
 * A token for a socket's hello frame; null once signed out. Rejects (network, or no answer in
 * time) so the socket retries later.
 */
export function socketToken(): Promise<string | null> {
  if (!signedIn) return Promise.resolve(null);
  if (socketTokenCache && socketTokenCache.until > Date.now()) return Promise.resolve(socketTokenCache.token);
  socketTokenPending ??= api<{ token: string }>('/api/v1/agent/socket-token', { method: 'POST', signal: AbortSignal.timeout(HTTP_WAIT) })
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

/**
 * Called when the server says the token is missing, invalid or expired, or its session ended.
 * Resolves to whether the same agent signed in again and the console carries on (so a request
 * refused meanwhile is sent again); false when the console signed out.
 */
export function setSignInLostHandler(fn: (code: string) => Promise<boolean>): void {
  onSignInLost = fn;
}

function signInLost(code: string): Promise<boolean> {
  socketTokenCache = null;
  return onSignInLost?.(code) ?? Promise.resolve(false);
}

/**
 * A token error from a socket's error frame or an upload. Resolves to whether the sign-in is
 * over: `session_ended` says so itself (unless the agent signs in again over the console);
 * other token errors (a socket token that expired or was refused) are confirmed over HTTP, and
 * only a 401 from /me signs out. Either way the cached socket token is dropped, so a reconnect
 * signs in with a fresh one.
 */
export async function confirmSignedOut(code: string): Promise<boolean> {
  socketTokenCache = null;
  if (code === 'session_ended') return !(await signInLost(code));
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

/** An ApiError from a refusal's status and JSON body (an error frame, or anything else). */
function refusal(status: number, body: any, retryAfter: string | null): ApiError {
  const code = typeof body?.code === 'string' ? body.code : `http_${status}`;
  const message = typeof body?.message === 'string' ? body.message : t('genericError');
  const retry = Number(body?.retry_after_ms ?? 0) || Number(retryAfter ?? 0) * 1000 || undefined;
  return new ApiError(status, code, message, retry, typeof body?.field === 'string' ? body.field : undefined);
}

/** Whether a refusal means the sign-in is over (rather than a wrong password, say). */
const isSignedOut = (e: ApiError) => e.status === 401 && SIGNED_OUT_CODES.includes(e.code);

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
    const err = refusal(res.status, parsed, res.headers.get('retry-after'));
    // Refused before anything was done: sent again once the agent has signed in again.
    if (!opts.anonymous && isSignedOut(err) && (await signInLost(err.code))) return api<T>(path, opts);
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
    const err = refusal(res.status, await res.json().catch(() => null), null);
    if (isSignedOut(err) && (await signInLost(err.code))) return fetchBlob(path, signal);
    throw err;
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
