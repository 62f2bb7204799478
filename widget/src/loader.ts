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
import { colour } from './config';
import type { ApiOptions, ApiResult, Host, Listener, Locale, Session, Store } from './types';

declare const __CHAT_URL__: string;
declare const __VERSION__: string;

const W = window as any;
const D = document;
const N = navigator as any;
const UA = N.userAgent as string;

const T: Record<Locale, string[]> = {
  en: ['Open chat', 'Close chat', '{n} unread'],
  'zh-CN': ['打开在线客服', '关闭在线客服', '{n} 条未读消息'],
};

/** en or zh-CN from BCP 47 tags (Traditional Chinese falls back to English, as on the server). */
const pickLocale = (tags: readonly string[]): Locale => {
  for (const tag of tags) {
    const t = String(tag || '').toLowerCase();
    if (t.startsWith('zh')) return /hant|-tw|-hk|-mo/.test(t) ? 'en' : 'zh-CN';
    if (t.startsWith('en')) return 'en';
  }
  return 'en';
};

const svg = (d: string, cls: string) => {
  const ns = 'http://www.w3.org/2000/svg';
  const s = D.createElementNS(ns, 'svg');
  const p = D.createElementNS(ns, 'path');
  s.setAttribute('viewBox', '0 0 24 24');
  s.setAttribute('aria-hidden', 'true');
  s.setAttribute('class', cls);
  p.setAttribute('d', d);
  s.append(p);
  return s;
};

/** Text colour with the better contrast on the accent colour (#rrggbb). */
const onColour = (hex: string) => {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const v = parseInt(hex.slice(i, i + 2), 16) / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  const l = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 ? '#fff' : '#111827';
};

/** Where and on what the visitor is, for the agents (the Worker adds the place). */
const context = (utm: Record<string, string>) => {
  const m = (re: RegExp) => UA.match(re);
  let b: RegExpMatchArray | null = null;
  let browser = 'Other';
  for (const [re, name] of [
    [/MicroMessenger\/(\d+)/, 'WeChat'], [/Edg\w*\/(\d+)/, 'Edge'],
    [/(?:Firefox|FxiOS)\/(\d+)/, 'Firefox'], [/(?:Chrome|CriOS)\/(\d+)/, 'Chrome'], [/Version\/(\d+).*Safari/, 'Safari'],
  ] as [RegExp, string][]) {
    if ((b = m(re))) {
      browser = `${name} ${b[1]}`;
      break;
    }
  }
  const touchMac = /Macintosh/.test(UA) && N.maxTouchPoints > 1;
  let os = 'Other';
  if ((b = m(/Android ([\d.]+)/))) os = `Android ${b[1]}`;
  else if ((b = m(/(?:iPhone|iPad|iPod).*? OS (\d+)/))) os = `iOS ${b[1]}`;
  else if (/Mac OS X/.test(UA)) os = touchMac ? 'iPadOS' : 'macOS';
  else if ((b = m(/Windows|CrOS|Linux/))) os = b[0] === 'CrOS' ? 'ChromeOS' : b[0];
  return {
    page: { url: location.href, title: D.title },
    referrer: D.referrer,
    utm,
    lang: N.language,
    tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
    screen: { w: screen.width, h: screen.height },
    device: /iPad|Tablet|Silk|Android(?!.*Mobile)/i.test(UA) || touchMac ? 'tablet' : /Mobi|iPhone|iPod|Android/i.test(UA) ? 'mobile' : 'desktop',
    browser,
    os,
  };
};

function boot(): void {
  if (W.Parley?.version) return; // the script was included twice
  const script = (D.currentScript || D.querySelector('script[data-site][src*="widget.js"]')) as HTMLScriptElement | null;
  if (!script?.src) return;
  const src = new URL(script.src, location.href);
  const ds = script.dataset;
  const site = ds.site || src.searchParams.get('site');
  if (!site) return console.warn('parley: no data-site');
  const base = src.origin;
  const ns = `parley:${site}:`;

  // First-party storage of the host page; plain objects where storage is blocked (writes to
  // a full or read-only storage fail quietly in ls.set).
  const storage = (name: string) => {
    try {
      return W[name] || {};
    } catch {
      return {};
    }
  };
  const st = storage('localStorage');
  const ss = storage('sessionStorage');
  const full = (k: string) => ns + k;
  const ls: Store = {
    get(k) {
      try { return JSON.parse(st[full(k)]); } catch { return null; }
    },
    set(k, v) {
      try { st[full(k)] = JSON.stringify(v); } catch { /* full */ }
    },
    del: (k) => { delete st[full(k)]; },
    keys: (p) => Object.keys(st).filter((k) => k.startsWith(full(p))).map((k) => k.slice(ns.length)),
    full,
  };

  const listeners: Record<string, Listener[]> = {};
  const internal: Record<string, Listener[]> = {};
  const emit = (name: string, data?: unknown) => {
    for (const fn of (listeners[name] || []).slice()) {
      try { fn(data); } catch (e) { console.error(e); }
    }
  };
  const fire = (name: string) => (internal[name] || []).forEach((fn) => fn());

  let cfg: any = {};
  // The stored choice is read back through the picker too: storage is the host page's to change.
  let locale: Locale = pickLocale(ds.lang ? [ds.lang] : [ls.get('l'), ...(N.languages || [N.language])]);

  // ---- the visitor session: one token per site, shared by the tabs, renewed before expiry
  let pending: Promise<Session> | null = null;
  // The session this page renewed, preferred to the stored one: storage that refuses writes
  // (full) would otherwise make every request start a new visitor, who cannot reach the
  // conversation the last one began, or keep offering an older token it still holds.
  let held: Session | null = null;
  // How often the site's owner was told in the console that this origin is not allowed.
  let hinted = 0;
  const usable = (s: Session | null, bad?: unknown): s is Session => !!s && s.t !== bad && s.x - Date.now() > 6048e5;
  const session = (bad?: string | boolean): Promise<Session> => {
    const s = held || ls.get('s');
    if (!bad && usable(s)) return Promise.resolve(s);
    const renew = async () => {
      const cur = held || ls.get('s');
      if (bad !== true && usable(cur, bad)) return cur; // another tab renewed it meanwhile
      // A refusal's message comes in the widget's language (api sends it): the chat shows it.
      const r = await api('/api/v1/visitor/session', { auth: false, body: { site_key: site, token: cur?.t } });
      const b = r.b;
      // The server's answer ({ code, message } when it refused): the chat tells a refusal apart
      // from a network failure (thrown by fetch) by it.
      if (!b?.token) {
        // For the site's owner, in devtools, once a page: the code and the origin to allow
        // (nothing the visitor wrote). Worded short: the loader's size budget is nearly spent.
        if (b?.code == 'origin_not_allowed' && !hinted++) console.warn(`parley: origin_not_allowed: allow ${location.origin}`);
        throw r;
      }
      const next = { t: b.token, v: b.visitor_id, x: b.expires_at };
      // A new visitor id: the old conversation is not reachable with this token.
      if (cur && cur.v !== next.v) ['c', 'q', 'r', 'n', 'u'].forEach(ls.del);
      ls.set('s', (held = next));
      return next;
    };
    return (pending ||= (N.locks ? N.locks.request(full('session'), renew) : renew()).finally(() => { pending = null; }));
  };

  async function api(path: string, o: ApiOptions = {}, again?: boolean): Promise<ApiResult> {
    const token = o.auth === false ? '' : (await session()).t;
    // The widget's language (setLocale, data-lang), not the browser's: replies and translations.
    const headers: Record<string, string> = { 'accept-language': locale };
    if (token) headers.authorization = `Bearer ${token}`;
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(base + path, {
      method: o.method || (o.body ? 'POST' : 'GET'),
      headers,
      body: (o.body && JSON.stringify(o.body)) as string | undefined,
      signal: o.signal,
      keepalive: o.keepalive,
      credentials: 'omit',
      cache: 'no-store',
    });
    if (res.status === 401 && token && !again) {
      await session(token);
      return api(path, o, true);
    }
    return { s: res.status, b: await res.json().catch(() => null) };
  }

  // ---- the shadow root and the launcher
  // A custom element with inline !important styles: no rule of the page can hide or move it.
  const hostEl = D.createElement('parley-widget');
  hostEl.setAttribute('data-parley', site);
  hostEl.style.cssText = 'all:initial!important;position:fixed!important;z-index:2147483000!important';
  const root = hostEl.attachShadow({ mode: 'open' });
  const style = D.createElement('style');
  const box = D.createElement('div');
  const launcher = D.createElement('button');
  const label = D.createElement('span');
  const badge = D.createElement('span');
  style.textContent = css;
  launcher.type = 'button';
  launcher.className = 'launch';
  launcher.setAttribute('aria-expanded', 'false');
  launcher.setAttribute('aria-controls', 'parley-panel');
  label.className = 'lt';
  badge.className = 'badge';
  badge.setAttribute('aria-hidden', 'true');
  launcher.append(
    svg('M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.2 3.6c-.6.5-1.3.1-1.3-.6V16A2.5 2.5 0 0 1 4 13.5z', 'ic chat'),
    svg('M6 9l6 6 6-6', 'ic x'),
    label,
    badge,
  );
  box.append(launcher);
  root.append(style, box);

  let unread = 0;
  let open = false;
  let shown = false;
  let loading = false;
  const paint = () => {
    const [tOpen, tClose, tUnread] = T[locale];
    const a = cfg.appearance || {};
    const text = String(a.launcher_text?.[locale] || a.launcher_text?.en || '');
    const accent = colour(a.color);
    label.textContent = text;
    badge.textContent = unread > 99 ? '99+' : String(unread);
    badge.hidden = !unread || open;
    launcher.setAttribute('aria-label', (open ? tClose : tOpen) + (unread && !open ? ` (${tUnread.replace('{n}', String(unread))})` : ''));
    // The embed's data-theme first, then the site's appearance.theme, then the OS (auto).
    const theme = [ds.theme, a.theme].find((t) => /^(dark|light|auto)$/.test(t)) || 'auto';
    box.className = `w ${theme} ${a.position === 'left' ? 'left' : 'right'}${text && !open ? ' pill' : ''}${open ? ' is-open' : ''}${shown ? ' ready' : ''}${loading ? ' loading' : ''}`;
    box.lang = locale;
    box.style.setProperty('--pa', accent);
    box.style.setProperty('--pf', onColour(accent));
  };

  // A proactive invitation may apply to this page: the chat times it.
  const invite = () => (cfg.invitations || []).some((i: any) => location.href.includes(i?.url_contains)) && loadChat();
  const applyConfig = (c: any) => {
    cfg = c && typeof c === 'object' ? c : {};
    shown = true;
    paint();
    fire('cfg');
    invite();
  };
  const loadConfig = async () => {
    const cached = ls.get('k');
    if (cached?.d) applyConfig(cached.d);
    if (Date.now() - (cached?.a || 0) < 15e3) return;
    try {
      const res = await fetch(`${base}/api/v1/widget/config?site=${encodeURIComponent(site)}`, { credentials: 'omit' });
      if (res.ok) {
        const d = await res.json();
        ls.set('k', { a: Date.now(), d });
        applyConfig(d);
      }
    } catch { /* offline: the cached or default configuration stays */ }
  };

  // ---- loading the chat
  let requested = false;
  const host: Host = {
    base,
    site,
    root,
    box,
    launcher,
    ls,
    cfg: () => cfg,
    refresh: loadConfig,
    lang: () => locale,
    api,
    session,
    emit,
    sub: (name, fn) => { (internal[name] ||= []).push(fn); },
    // The one place 'unread' fires: on every change, whichever tab or part made it.
    setBadge(n) {
      n - unread && emit('unread', n);
      unread = n;
      paint();
    },
    setOpen(v) {
      open = v;
      try { v ? (ss[full('open')] = 1) : delete ss[full('open')]; } catch { /* blocked */ }
      paint();
    },
    department: ds.department,
    wantOpen: false,
  };
  const loadChat = () => {
    if (requested) return;
    requested = true;
    const s = D.createElement('script');
    s.src = new URL(__CHAT_URL__, src).href;
    s.onerror = () => {
      requested = loading = false;
      paint();
    };
    D.head.append(s);
  };
  // The chat script calls this when it has arrived.
  W[Symbol.for('parley.mount')] = (mount: (h: Host) => void) => {
    mount(host);
    loading = false;
    paint();
  };
  const requestOpen = () => {
    host.wantOpen = true;
    if (host.chat) return host.chat.open();
    loading = true;
    paint();
    loadChat();
  };
  launcher.onclick = () => (host.chat ? host.chat.toggle() : requestOpen());
  // Hover or keyboard focus is a strong hint: fetch the chat before the click.
  launcher.onpointerenter = launcher.onfocus = loadChat;

  // ---- visitor context: on load and on every single-page-app navigation
  let lastUrl = '';
  let trackTimer = 0;
  const track = () => {
    clearTimeout(trackTimer);
    // A short pause lets a single-page app set the new title.
    trackTimer = setTimeout(() => {
      if (location.href === lastUrl) return;
      // When this page began (single-page-app navigation), for the invitations' timing.
      host.t = lastUrl ? performance.now() : 0;
      lastUrl = location.href;
      invite();
      const q = new URL(lastUrl).searchParams;
      let utm: Record<string, string> = {};
      for (const k of ['source', 'medium', 'campaign', 'term', 'content']) if (q.get(`utm_${k}`)) utm[k] = q.get(`utm_${k}`)!;
      if (Object.keys(utm).length) ls.set('utm', utm);
      else utm = ls.get('utm') || {};
      api('/api/v1/visitor/context', { body: context(utm), keepalive: true }).catch(() => { lastUrl = ''; });
    }, 300) as any;
  };
  for (const m of ['pushState', 'replaceState'] as const) {
    const orig = history[m];
    history[m] = function (this: History, ...args: any[]) {
      track(); // reads the address only after a pause
      return (orig as any).apply(this, args);
    };
  }
  for (const e of ['popstate', 'hashchange', 'online']) addEventListener(e, track);

  // ---- identity: kept until the server has it
  const sendIdentity = async () => {
    const who = ls.get('id');
    const r = await api('/api/v1/visitor/identify', { body: who });
    if (r.s !== 200) throw r;
    if (ls.get('id')?.hash === who.hash) ls.set('id', { ...who, ok: 1 });
    return { verified: !!r.b?.verified };
  };

  // ---- while the chat is not loaded, a light long-poll watches for replies (agents, automatic)
  let watching = false;
  const watch = async () => {
    if (watching) return;
    watching = true;
    for (let delay = 1e3, c; !requested && (c = ls.get('c'));) {
      const q = ls.get('q');
      try {
        const r = await api(`/api/v1/conversations/${c.id}/events?after=${q?.e === c.e ? q.s : 0}&epoch=${encodeURIComponent(c.e)}&wait=25`);
        if (r.s === 404 || requested) break;
        if (r.s !== 200) throw r;
        delay = 1e3;
        const events: any[] = r.b.events || [];
        if (r.b.type === 'reset' || events.some((e) => /^(message|file)$/.test(e.kind) && e.author?.role !== 'visitor')) {
          loadChat();
          break;
        }
        // Our own messages from another tab: watch on from there.
        if (events.length) ls.set('q', { s: events[events.length - 1].seq, e: c.e });
      } catch {
        await new Promise((res) => setTimeout(res, delay * (0.5 + Math.random() / 2)));
        delay = Math.min(delay * 2, 6e4);
      }
    }
    watching = false;
  };

  // ---- the public API
  const P: any = (method: string, ...args: unknown[]) => P[method]?.(...args);
  Object.assign(P, {
    version: __VERSION__,
    open: requestOpen,
    close() {
      host.wantOpen = false;
      host.chat?.close();
    },
    toggle: () => (host.chat ? host.chat.toggle() : requestOpen()),
    on(name: string, fn: Listener) {
      (listeners[name] ||= []).push(fn);
      return () => P.off(name, fn);
    },
    off(name: string, fn: Listener) {
      listeners[name] = (listeners[name] || []).filter((f) => f !== fn);
    },
    /**
     * Names the site's logged-in user. hash = hex HMAC-SHA256(site identity secret, id),
     * computed by the site's server; without a valid hash the identity shows as unverified.
     * Resolves to { verified }.
     */
    identify(u: any) {
      const who: Record<string, string> = { id: String(u?.id ?? '') };
      for (const k of ['name', 'email', 'hash']) if (typeof u?.[k] === 'string') who[k] = u[k];
      ls.set('id', who);
      fire('id');
      return sendIdentity();
    },
    /** Free-form facts about the visitor for the agents (plan, cart value…); null removes one. */
    setAttributes(attrs: Record<string, unknown>) {
      // null goes to the server (it removes the key there) but is not kept here.
      const merged: any = { ...ls.get('at'), ...attrs };
      for (const k in merged) if (merged[k] === undefined || (merged[k] && typeof merged[k] === 'object')) delete merged[k];
      ls.set('at', JSON.parse(JSON.stringify(merged, (k, v) => (k && v === null ? undefined : v))));
      return api('/api/v1/visitor/attributes', { body: { attributes: merged } }).then((r) => r.s < 300);
    },
    setLocale(tag: string) {
      locale = pickLocale([tag]);
      ls.set('l', locale);
      paint();
      fire('lang');
      return locale;
    },
    diagnostics: () => host.chat?.diagnostics() || { loaded: false, unread },
  });
  const queued: IArguments[] = W.Parley?.q || [];
  W.Parley = P;
  for (const args of queued) P(...args);

  // Other tabs: the badge, the language, a conversation started elsewhere.
  addEventListener('storage', (e) => {
    if (host.chat) return;
    if (e.key === full('u')) host.setBadge(ls.get('u') || 0);
    if (e.key === full('l') && ls.get('l')) P.setLocale(ls.get('l'));
    if (e.key === full('c')) watch();
  });

  // ---- start
  const start = () => {
    D.body.append(hostEl);
    unread = ls.get('u') || 0;
    paint();
    // Replies that came while no page of the site was open: the site hears of them at once.
    unread && emit('unread', unread);
    // The launcher appears once the configuration is known (cached, fetched, or after 2 s).
    setTimeout(() => {
      shown = true;
      paint();
    }, 2e3);
    loadConfig();
    (W.requestIdleCallback || setTimeout)(() => {
      track();
      if (ls.get('id') && !ls.get('id').ok) sendIdentity().catch(() => {});
      if (ss[full('open')]) requestOpen();
      else if (ls.keys('o:').length || ls.get('pf')) loadChat();
      else watch();
    }, { timeout: 2e3 });
  };
  if (D.body) start();
  else D.addEventListener('DOMContentLoaded', start);
}

boot();
