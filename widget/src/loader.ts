// The Parley loader: public/widget.js, the only script a site embeds.
//
//   <script src="https://HOST/widget.js" data-site="pk_…" async></script>
//
// It stays tiny (budget: 5 KB gzip): it renders the launcher in a shadow root (fixed position,
// so the host page never shifts), defines window.Parley, reports the visitor's context, and
// loads the full chat (public/widget/chat.js) on first interaction, when an agent message
// arrives, when the outbox holds unsent messages, or when the panel was open on the last page.
//
// Optional attributes: data-lang="en|zh-CN" (otherwise the browser's language), data-theme=
// "light|dark|auto", data-department="…" (asked for when a conversation starts).
// Calls made before the script arrives are queued with the usual stub:
//   window.Parley = window.Parley || function () { (Parley.q = Parley.q || []).push(arguments) };
import css from './loader.css';
import type {
  ApiOptions, ApiResult, Config, Host, Listener, Locale, Session, Store,
} from './types';

declare const __CHAT_URL__: string;
declare const __VERSION__: string;

const W = window as any;
const D = document;
const DAY = 864e5;

/** The default configuration, used until (or when) the server's arrives. */
const DEFAULTS: Config = {
  site: { name: '' },
  appearance: { color: '#2563eb', position: 'right', launcher_text: {} },
  welcome: {},
  prechat: { enabled: false, fields: [] },
  offline: { message: {} },
  online: true,
  identity: { verification: false },
};

const T: Record<Locale, Record<string, string>> = {
  en: { open: 'Open chat', close: 'Close chat', unread: '{n} unread' },
  'zh-CN': { open: '打开在线客服', close: '关闭在线客服', unread: '{n} 条未读消息' },
};

/** en or zh-CN from a list of BCP 47 tags (Traditional Chinese falls back to English, as on the server). */
export function pickLocale(tags: readonly string[]): Locale {
  for (const tag of tags) {
    const t = (tag || '').toLowerCase();
    if (t.startsWith('zh')) return /hant|-tw|-hk|-mo/.test(t) ? 'en' : 'zh-CN';
    if (t.startsWith('en')) return 'en';
  }
  return 'en';
}

function svg(d: string, cls: string): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const s = D.createElementNS(ns, 'svg');
  s.setAttribute('viewBox', '0 0 24 24');
  s.setAttribute('aria-hidden', 'true');
  s.setAttribute('focusable', 'false');
  s.setAttribute('class', cls);
  const p = D.createElementNS(ns, 'path');
  p.setAttribute('d', d);
  s.append(p);
  return s;
}

/** Text colour with the better contrast on the accent colour (#rrggbb). */
function onColour(hex: string): string {
  const c = [1, 3, 5].map((i) => {
    const v = parseInt(hex.slice(i, i + 2), 16) / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  const l = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  return 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 ? '#fff' : '#111827';
}

const isObj = (v: unknown): v is Record<string, any> => !!v && typeof v === 'object' && !Array.isArray(v);
const texts = (v: unknown): Record<string, string> => {
  const out: Record<string, string> = {};
  if (isObj(v)) for (const k in v) if (typeof v[k] === 'string') out[k] = v[k];
  return out;
};

/** The server's configuration, checked field by field; anything odd takes the default. */
function normalize(c: any): Config {
  const a = isObj(c?.appearance) ? c.appearance : {};
  const colour = typeof a.color === 'string' && /^#[0-9a-f]{6}$/i.test(a.color) ? a.color : DEFAULTS.appearance.color;
  const fields = Array.isArray(c?.prechat?.fields) ? c.prechat.fields : [];
  return {
    site: { name: typeof c?.site?.name === 'string' ? c.site.name : '' },
    appearance: { color: colour, position: a.position === 'left' ? 'left' : 'right', launcher_text: texts(a.launcher_text) },
    welcome: texts(c?.welcome),
    prechat: {
      enabled: c?.prechat?.enabled === true,
      fields: fields
        .filter((f: any) => isObj(f) && typeof f.name === 'string' && /^[a-z0-9_]{1,32}$/.test(f.name))
        .map((f: any) => ({
          name: f.name,
          label: texts(f.label),
          type: ['email', 'tel', 'textarea'].includes(f.type) ? f.type : 'text',
          required: f.required === true,
        })),
    },
    offline: { message: texts(c?.offline?.message) },
    online: c?.online !== false,
    identity: { verification: c?.identity?.verification === true },
  };
}

// ---------------------------------------------------------------------------------------------
// Visitor context

const UA = navigator.userAgent;

function deviceType(): 'desktop' | 'mobile' | 'tablet' {
  if (/iPad|Tablet|PlayBook|Silk|Android(?!.*Mobile)/i.test(UA) || (/Macintosh/.test(UA) && navigator.maxTouchPoints > 1)) return 'tablet';
  return /Mobi|iPhone|iPod|Android|Windows Phone/i.test(UA) ? 'mobile' : 'desktop';
}

function browserName(): string {
  const known: [RegExp, string][] = [
    [/MicroMessenger\/(\d+)/, 'WeChat'],
    [/Edg(?:e|A|iOS)?\/(\d+)/, 'Edge'],
    [/OPR\/(\d+)/, 'Opera'],
    [/SamsungBrowser\/(\d+)/, 'Samsung Internet'],
    [/(?:Firefox|FxiOS)\/(\d+)/, 'Firefox'],
    [/(?:Chrome|CriOS)\/(\d+)/, 'Chrome'],
    [/Version\/(\d+).*Safari/, 'Safari'],
  ];
  for (const [re, name] of known) {
    const m = UA.match(re);
    if (m) return `${name} ${m[1]}`;
  }
  return 'Other';
}

function osName(): string {
  let m = UA.match(/Android ([\d.]+)/);
  if (m) return `Android ${m[1]}`;
  m = UA.match(/(?:iPhone|iPad|iPod).*? OS (\d+)/);
  if (m) return `iOS ${m[1]}`;
  if (/Mac OS X/.test(UA)) return navigator.maxTouchPoints > 1 ? 'iPadOS' : 'macOS';
  if (/Windows/.test(UA)) return 'Windows';
  if (/CrOS/.test(UA)) return 'ChromeOS';
  return /Linux/.test(UA) ? 'Linux' : 'Other';
}

// ---------------------------------------------------------------------------------------------

function boot(): void {
  if (W.Parley && W.Parley.version) return; // the script was included twice
  const script = (D.currentScript || D.querySelector('script[data-site][src*="widget.js"]')) as HTMLScriptElement | null;
  if (!script || !script.src) return;
  const src = new URL(script.src, location.href);
  const ds = script.dataset;
  const site = ds.site || src.searchParams.get('site') || '';
  if (!site) {
    console.warn('[parley] the widget script needs data-site="<site key>"');
    return;
  }
  const base = src.origin;
  const ns = `parley:${site}:`;

  // First-party storage on the host page; an in-memory stand-in where storage is blocked.
  const mem = new Map<string, string>();
  const raw = {
    get: (k: string) => { try { return localStorage.getItem(k); } catch { return mem.get(k) ?? null; } },
    set: (k: string, v: string) => { try { localStorage.setItem(k, v); } catch { mem.set(k, v); } },
    del: (k: string) => { try { localStorage.removeItem(k); } catch { /* blocked */ } mem.delete(k); },
  };
  const ls: Store = {
    get(k) {
      try { return JSON.parse(raw.get(ns + k) as string); } catch { return null; }
    },
    set: (k, v) => raw.set(ns + k, JSON.stringify(v)),
    del: (k) => raw.del(ns + k),
    keys(prefix) {
      const out = new Set<string>();
      const p = ns + prefix;
      try {
        for (let i = 0; i < localStorage.length; i++) {
          const k = localStorage.key(i);
          if (k && k.startsWith(p)) out.add(k.slice(ns.length));
        }
      } catch { /* blocked */ }
      for (const k of mem.keys()) if (k.startsWith(p)) out.add(k.slice(ns.length));
      return [...out];
    },
    full: (k) => ns + k,
  };
  const ss = {
    get: (k: string) => { try { return sessionStorage.getItem(ns + k); } catch { return null; } },
    set: (k: string, v: string | null) => {
      try { v === null ? sessionStorage.removeItem(ns + k) : sessionStorage.setItem(ns + k, v); } catch { /* blocked */ }
    },
  };

  // ---- events, config, locale
  const listeners: Record<string, Listener[]> = {};
  const internal: Record<string, Listener[]> = {};
  const emit = (name: string, data?: unknown) => {
    for (const fn of (listeners[name] || []).slice()) {
      try { fn(data); } catch (e) { console.error(e); }
    }
  };
  const fire = (name: string) => { for (const fn of internal[name] || []) fn(); };

  let cfg = DEFAULTS;
  let locale: Locale = ds.lang ? pickLocale([ds.lang]) : ls.get('l') || pickLocale(navigator.languages || [navigator.language]);

  // ---- session: one visitor token per site, shared by every tab, renewed well before expiry
  const lock = <R>(name: string, fn: () => Promise<R>): Promise<R> => {
    const locks = (navigator as any).locks;
    return locks ? locks.request(ns + name, fn) : fn();
  };
  let pendingSession: Promise<Session> | null = null;
  const fresh = (s: Session | null, bad?: string): s is Session => !!s && s.t !== bad && s.x - Date.now() > 7 * DAY;
  function session(badToken?: string | boolean): Promise<Session> {
    const bad = typeof badToken === 'string' ? badToken : undefined;
    const s = ls.get<Session>('s');
    if (!badToken && fresh(s)) return Promise.resolve(s);
    return (pendingSession ||= lock('session', async () => {
      const cur = ls.get<Session>('s');
      if (fresh(cur, bad) && (bad || !badToken)) return cur; // another tab renewed it meanwhile
      const res = await fetch(`${base}/api/v1/visitor/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(cur ? { site_key: site, token: cur.t } : { site_key: site }),
        credentials: 'omit',
      });
      const b = await res.json().catch(() => null);
      if (res.status !== 200 || !b?.token) throw Object.assign(new Error(`parley: session ${res.status}`), { status: res.status, body: b });
      const next: Session = { t: b.token, v: b.visitor_id, x: b.expires_at };
      // A new visitor id: the old conversation is no longer reachable with this token.
      if (cur && cur.v !== next.v) for (const k of ['c', 'q', 'r', 'n', 'u']) ls.del(k);
      ls.set('s', next);
      return next;
    }).finally(() => { pendingSession = null; }));
  }

  async function api(path: string, o: ApiOptions = {}, retried = false): Promise<ApiResult> {
    const headers: Record<string, string> = {};
    let token = '';
    if (o.auth !== false) {
      token = (await session()).t;
      headers.authorization = `Bearer ${token}`;
    }
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(base + path, {
      method: o.method || 'GET',
      headers,
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
      signal: o.signal,
      keepalive: o.keepalive,
      credentials: 'omit',
      cache: 'no-store',
    });
    const b = res.status === 204 ? null : await res.json().catch(() => null);
    if (res.status === 401 && token && !retried) {
      await session(token);
      return api(path, o, true);
    }
    return { s: res.status, b };
  }

  // ---- the shadow root and the launcher
  const hostEl = D.createElement('div');
  hostEl.setAttribute('data-parley', site);
  hostEl.style.cssText = 'all:initial;position:fixed;top:0;left:0;width:0;height:0;z-index:2147483000';
  const root = hostEl.attachShadow({ mode: 'open' });
  const style = D.createElement('style');
  style.textContent = css;
  const box = D.createElement('div');
  const launcher = D.createElement('button');
  launcher.type = 'button';
  launcher.className = 'launch';
  launcher.setAttribute('aria-expanded', 'false');
  launcher.setAttribute('aria-controls', 'parley-panel');
  const label = D.createElement('span');
  label.className = 'lt';
  const badge = D.createElement('span');
  badge.className = 'badge';
  badge.setAttribute('aria-hidden', 'true');
  badge.hidden = true;
  launcher.append(
    svg('M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.2 3.6c-.6.5-1.3.1-1.3-.6V16A2.5 2.5 0 0 1 4 13.5z', 'ic ic-chat'),
    svg('M6 9l6 6 6-6', 'ic ic-close'),
    label,
    badge,
  );
  box.append(launcher);
  root.append(style, box);

  let unread = 0;
  let open = false;
  const paint = () => {
    const t = T[locale];
    const text = cfg.appearance.launcher_text[locale] || cfg.appearance.launcher_text.en || '';
    label.textContent = text;
    launcher.classList.toggle('pill', !!text && !open);
    badge.textContent = unread > 99 ? '99+' : String(unread);
    badge.hidden = !unread || open;
    launcher.setAttribute('aria-label', (open ? t.close : t.open) + (unread && !open ? ` (${t.unread.replace('{n}', String(unread))})` : ''));
    const theme = ds.theme === 'dark' || ds.theme === 'light' ? ds.theme : 'auto';
    box.className = `w ${theme} ${cfg.appearance.position}${open ? ' is-open' : ''}`;
    box.lang = locale;
    box.style.setProperty('--pa', cfg.appearance.color);
    box.style.setProperty('--pf', onColour(cfg.appearance.color));
  };

  function applyConfig(c: unknown) {
    cfg = normalize(c);
    paint();
    fire('cfg');
  }

  async function loadConfig() {
    const cached = ls.get('k');
    if (cached?.d) applyConfig(cached.d);
    if (cached?.d && Date.now() - cached.a < 60e3) return;
    try {
      const res = await fetch(`${base}/api/v1/widget/config?site=${encodeURIComponent(site)}`, { credentials: 'omit' });
      if (res.ok) {
        const d = await res.json();
        ls.set('k', { a: Date.now(), d });
        applyConfig(d);
      }
    } catch { /* offline: the cached or default configuration stays */ }
  }

  // ---- loading the chat
  let chatRequested = false;
  const host: Host = {
    base,
    site,
    root,
    box,
    launcher,
    ls,
    cfg: () => cfg,
    lang: () => locale,
    api,
    session: (force) => session(force),
    emit,
    sub: (name, fn) => { (internal[name] ||= []).push(fn); },
    setBadge(n) {
      if (n !== unread) {
        unread = n;
        paint();
      }
    },
    setOpen(v) {
      open = v;
      ss.set('open', v ? '1' : null);
      paint();
    },
    department: ds.department,
    wantOpen: false,
  };

  function loadChat(): void {
    if (chatRequested) return;
    chatRequested = true;
    const s = D.createElement('script');
    s.src = new URL(__CHAT_URL__, src).href;
    s.async = true;
    s.onerror = () => { chatRequested = false; box.classList.remove('loading'); };
    (D.head || D.documentElement).append(s);
  }
  // The chat script calls this once it has arrived.
  W[Symbol.for('parley.mount')] = (mount: (h: Host) => void) => {
    mount(host);
    box.classList.remove('loading');
  };

  const requestOpen = () => {
    host.wantOpen = true;
    if (host.chat) host.chat.open();
    else {
      box.classList.add('loading');
      loadChat();
    }
  };
  launcher.addEventListener('click', () => (host.chat ? host.chat.toggle() : requestOpen()));
  // Hover or keyboard focus is a strong hint: fetch the chat before the click.
  launcher.addEventListener('pointerenter', loadChat, { once: true });
  launcher.addEventListener('focus', loadChat, { once: true });

  // ---- visitor context: on load and on every single-page-app navigation
  let lastUrl = '';
  let trackTimer = 0;
  const context = () => {
    const q = new URL(location.href).searchParams;
    let utm: Record<string, string> = {};
    for (const k of ['source', 'medium', 'campaign', 'term', 'content']) {
      const v = q.get(`utm_${k}`);
      if (v) utm[k] = v;
    }
    if (Object.keys(utm).length) ls.set('utm', utm);
    else utm = ls.get('utm') || {};
    return {
      page: { url: location.href, title: D.title },
      referrer: D.referrer || undefined,
      utm,
      lang: navigator.language,
      tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
      screen: { w: screen.width, h: screen.height },
      device: deviceType(),
      browser: browserName(),
      os: osName(),
    };
  };
  const track = () => {
    clearTimeout(trackTimer);
    // A short pause lets a single-page app set the new title.
    trackTimer = W.setTimeout(() => {
      if (location.href === lastUrl) return;
      lastUrl = location.href;
      api('/api/v1/visitor/context', { method: 'POST', body: context(), keepalive: true })
        .then((r) => { if (r.s >= 500) lastUrl = ''; })
        .catch(() => { lastUrl = ''; });
    }, 300);
  };
  for (const m of ['pushState', 'replaceState'] as const) {
    const orig = history[m];
    history[m] = function (this: History, ...args: any[]) {
      const r = (orig as any).apply(this, args);
      track();
      return r;
    } as any;
  }
  addEventListener('popstate', track);
  addEventListener('hashchange', track);
  addEventListener('online', () => { if (!lastUrl) track(); });

  // ---- identity
  async function sendIdentity(): Promise<{ verified: boolean }> {
    const who = ls.get('id');
    if (!who) return { verified: false };
    const r = await api('/api/v1/visitor/identify', { method: 'POST', body: who });
    if (r.s !== 200) throw Object.assign(new Error(`parley: identify ${r.s}`), { status: r.s, body: r.b });
    const cur = ls.get('id');
    if (cur && cur.id === who.id && cur.hash === who.hash) ls.set('id', { ...cur, ok: 1, verified: !!r.b?.verified });
    return { verified: !!r.b?.verified };
  }

  // ---- a light watch for agent replies while the chat is not loaded
  let watching = false;
  async function watch() {
    if (watching) return;
    watching = true;
    let delay = 1000;
    while (!chatRequested) {
      const c = ls.get('c');
      if (!c) break;
      const q = ls.get('q');
      const after = q && q.e === c.e ? q.s : 0;
      try {
        const r = await api(`/api/v1/conversations/${c.id}/events?after=${after}&epoch=${encodeURIComponent(c.e)}&wait=25`);
        if (chatRequested) break;
        if (r.s === 404) break;
        if (r.s === 200) {
          delay = 1000;
          if (r.b?.type === 'reset' || (r.b?.events || []).some((e: any) => e.kind === 'message' && e.author?.role === 'agent')) {
            loadChat();
            break;
          }
          // Our own messages from another tab: keep watching from there.
          if (r.b?.events?.length) ls.set('q', { s: r.b.events[r.b.events.length - 1].seq, e: c.e });
          continue;
        }
        throw new Error(String(r.s));
      } catch {
        await new Promise((res) => setTimeout(res, delay * (0.5 + Math.random() / 2)));
        delay = Math.min(delay * 2, 60e3);
      }
    }
    watching = false;
  }

  // ---- the public API
  const P: any = function (method: string, ...args: unknown[]) {
    return typeof P[method] === 'function' ? P[method](...args) : undefined;
  };
  Object.assign(P, {
    version: __VERSION__,
    open: requestOpen,
    close() {
      host.wantOpen = false;
      host.chat?.close();
    },
    toggle() {
      if (host.chat) host.chat.toggle();
      else requestOpen();
    },
    on(name: string, fn: Listener) {
      if (typeof fn === 'function') (listeners[name] ||= []).push(fn);
      return () => P.off(name, fn);
    },
    off(name: string, fn: Listener) {
      listeners[name] = (listeners[name] || []).filter((f) => f !== fn);
    },
    /**
     * Names the site's logged-in user. hash = hex HMAC-SHA256(site identity secret, id),
     * computed by the site's server; without a valid hash the identity shows as unverified.
     */
    identify(user: { id: string | number; name?: string; email?: string; hash?: string }) {
      if (!isObj(user) || (typeof user.id !== 'string' && typeof user.id !== 'number')) {
        return Promise.reject(new TypeError('Parley.identify({ id, name, email, hash })'));
      }
      const who: Record<string, string> = { id: String(user.id) };
      for (const k of ['name', 'email', 'hash'] as const) if (typeof user[k] === 'string') who[k] = user[k] as string;
      ls.set('id', who);
      fire('id');
      return sendIdentity();
    },
    setAttributes(attrs: Record<string, unknown>) {
      if (!isObj(attrs)) return Promise.reject(new TypeError('Parley.setAttributes({ key: value })'));
      const merged = { ...(ls.get('at') || {}) };
      for (const k in attrs) {
        const v = attrs[k];
        if (v === null || v === undefined) delete merged[k];
        else if (['string', 'number', 'boolean'].includes(typeof v)) merged[k] = v;
      }
      ls.set('at', merged);
      return api('/api/v1/visitor/attributes', { method: 'POST', body: { attributes: merged } }).then((r) => r.s < 300);
    },
    setLocale(tag: string) {
      locale = pickLocale([String(tag || '')]);
      ls.set('l', locale);
      paint();
      fire('lang');
      return locale;
    },
    diagnostics() {
      return host.chat ? host.chat.diagnostics() : { version: __VERSION__, loaded: false, site, unread };
    },
  });
  const queued: IArguments[] = (W.Parley && W.Parley.q) || [];
  W.Parley = P;
  for (const args of queued) P(...Array.from(args));

  // Other tabs: badge, locale, a conversation started elsewhere.
  addEventListener('storage', (e) => {
    if (e.key === ls.full('u') && !host.chat) host.setBadge(Number(ls.get('u')) || 0);
    if (e.key === ls.full('l') && ls.get('l') && ls.get('l') !== locale) P.setLocale(ls.get('l'));
    if (e.key === ls.full('c') && !host.chat && ls.get('c')) watch();
  });

  // ---- start
  const start = () => {
    (D.body || D.documentElement).append(hostEl);
    unread = Number(ls.get('u')) || 0;
    paint();
    // The launcher shows once the configuration is known (cached, fetched, or after 2 s).
    const shown = () => box.classList.add('ready');
    const timer = setTimeout(shown, 2000);
    loadConfig().finally(() => { clearTimeout(timer); shown(); });
    const idle = W.requestIdleCallback || ((f: () => void) => setTimeout(f, 1));
    idle(() => {
      track();
      const who = ls.get('id');
      if (who && !who.ok) sendIdentity().catch(() => {});
      if (ss.get('open') === '1') requestOpen();
      else if (ls.keys('o:').length || ls.get('pf')) loadChat();
      else watch();
    }, { timeout: 2000 });
  };
  if (D.readyState === 'loading') D.addEventListener('DOMContentLoaded', start);
  else start();
}

boot();
