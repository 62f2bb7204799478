// DOM helpers. Text always goes in as text nodes (append(string) / textContent); nothing in
// the widget parses HTML, so no message, name or configured text can become markup.

type Kid = Node | string | null | undefined | false;

/** createElement with attributes (`text` sets textContent, `on<event>` adds a listener). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: Record<string, any> | null,
  ...kids: Kid[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    for (const k in props) {
      const v = props[k];
      if (v == null || v === false) continue;
      if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k === 'cls' ? 'class' : k, v === true ? '' : String(v));
    }
  }
  for (const kid of kids) if (kid != null && kid !== false) el.append(kid);
  return el;
}

const NS = 'http://www.w3.org/2000/svg';

export const ICONS = {
  send: 'M21 3L10.5 13.5M21 3l-6.5 18-4-7.5L3 9.5z',
  smile: 'M12 21.5a9.5 9.5 0 1 0 0-19 9.5 9.5 0 0 0 0 19zM8 14.5s1.5 2 4 2 4-2 4-2M9 9.5h.01M15 9.5h.01',
  down: 'M6 9l6 6 6-6',
  soundOn: 'M11 5L6 9H3v6h3l5 4zM15.5 8.5a5 5 0 0 1 0 7M18.5 5.5a9 9 0 0 1 0 13',
  soundOff: 'M11 5L6 9H3v6h3l5 4zM22 9l-6 6M16 9l6 6',
  clock: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 7v5l3 2',
  check: 'M20 6L9 17l-5-5',
  checks: 'M17 7l-8 10-5-5M22 7l-8 10-1.5-1.5',
  alert: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 8v5M12 16.5h.01',
  clip: 'M21 11.5l-8.8 8.8a5.6 5.6 0 0 1-7.9-7.9l8.8-8.8a3.8 3.8 0 0 1 5.3 5.3l-8.8 8.8a1.9 1.9 0 0 1-2.7-2.7l8.1-8.1',
  file: 'M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5M9 13h6M9 17h4',
  x: 'M18 6L6 18M6 6l12 12',
  dl: 'M12 4v11M7 10l5 5 5-5M5 20h14',
  star: 'M12 3.2l2.7 5.5 6 .9-4.35 4.25 1.03 6L12 17l-5.38 2.85 1.03-6L3.3 9.6l6-.9z',
  offline: 'M2 2l20 20M8.5 16.4a5 5 0 0 1 7 0M5 12.9a10 10 0 0 1 4.5-2.5M19 12.9a10 10 0 0 0-2-1.4M2 8.8a15 15 0 0 1 4.4-2.7M22 8.8A15 15 0 0 0 10.5 5M12 20h.01',
};

export function icon(name: keyof typeof ICONS, cls = 'i'): SVGSVGElement {
  const s = document.createElementNS(NS, 'svg');
  s.setAttribute('viewBox', '0 0 24 24');
  s.setAttribute('aria-hidden', 'true');
  s.setAttribute('focusable', 'false');
  s.setAttribute('class', cls);
  const p = document.createElementNS(NS, 'path');
  p.setAttribute('d', ICONS[name]);
  s.append(p);
  return s;
}

// http(s) URLs only; stops at whitespace, quotes, angle brackets and CJK text or punctuation.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+/gi;
const TRAILING = /[.,;:!?'")\]}]+$/;

/** Text with http(s) links made clickable; everything else stays plain text. */
export function richText(text: string): DocumentFragment {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let url = m[0];
    const trail = url.match(TRAILING);
    if (trail) {
      // Keep a closing parenthesis that belongs to the URL, as in …/Foo_(bar)
      let cut = trail[0];
      if (cut.startsWith(')') && (url.split('(').length > url.split(')').length - 1)) cut = cut.slice(1);
      url = url.slice(0, url.length - cut.length);
    }
    let href: URL | null = null;
    try { href = new URL(url); } catch { /* not a URL after all */ }
    if (!href || (href.protocol !== 'http:' && href.protocol !== 'https:')) continue;
    const at = m.index ?? 0;
    frag.append(text.slice(last, at), h('a', { href: href.href, target: '_blank', rel: 'noopener noreferrer nofollow', text: url }));
    last = at + url.length;
  }
  frag.append(text.slice(last));
  return frag;
}
