// The visitor sidebar: who (name, e-mail, verified badge), where (country/city, local time),
// how (language, device, browser, OS), from where (referrer, UTM), what they are looking at
// (current page, page trail) and their other conversations.
import type { ConvSession } from '../conversation';
import { h, icon, mount, safeHref } from '../dom';
import { t } from '../i18n';
import type { Store } from '../store';
import { full, listTime, timeIn } from '../time';
import { isSelfStated, type VisitorInfo } from '../types';
import { countryName, flag, hue, initials, languageName, selfStatedMark, trustMark } from './util';

export class VisitorPanel {
  private session: ConvSession | null = null;
  private refresh: ReturnType<typeof setInterval> | undefined;

  constructor(
    private store: Store,
    private el: HTMLElement,
    private close: () => void,
    private open: (id: string) => void,
    /** Owners and admins: erase the visitor (asks first). */
    private erase: ((visitorId: string) => void) | null = null,
  ) {}

  show(session: ConvSession | null): void {
    if (session !== this.session) {
      this.session = session;
      clearInterval(this.refresh);
      if (session) {
        // The page trail moves as the visitor browses: refresh while the panel shows them.
        this.refresh = setInterval(() => {
          if (this.session?.visitorId && !this.el.hidden && document.visibilityState === 'visible') {
            void this.store.loadVisitor(this.session.visitorId, true);
          }
        }, 30_000);
        if (session.visitorId) void this.store.loadVisitor(session.visitorId);
      }
    }
    this.render();
  }

  tick(): void {
    this.render();
  }

  render(): void {
    const s = this.session;
    if (!s) {
      mount(this.el);
      return;
    }
    const vid = s.visitorId ?? this.store.rows.get(s.id)?.visitor_id ?? '';
    const info: VisitorInfo | null | undefined = vid ? this.store.visitors.get(vid) : undefined;
    const v = info?.visitor;
    const ctx = v?.context ?? {};
    const name = this.store.visitorName(s.id);
    const scroll = this.el.scrollTop;

    const head = h('div.vp-head', null,
      h('span.avatar.avatar--lg', { 'aria-hidden': 'true' }, initials(name)),
      h('div.vp-who', null,
        h('h2.vp-name', null, name,
          v?.identity_verified ? trustMark('verified', t('verified'), t('verifiedTitle', { id: v.external_id ?? '' }), icon('check', 12)) : null,
          // Claimed by identify() without a valid signature: anyone could have claimed it.
          !v?.identity_verified && v?.external_id
            ? trustMark('unverified', t('unverified'), t('unverifiedTitle', { id: v.external_id }))
            : null,
          // Typed into a form (pre-chat, offline) by the visitor: nobody vouches for it.
          isSelfStated(v) ? selfStatedMark() : null),
        v?.email ? emailLink(v.email) : null),
      h('button.icon-btn.vp-close', { type: 'button', 'aria-label': t('hideVisitorInfo'), title: t('hideVisitorInfo'), onclick: this.close }, icon('close')));
    (head.querySelector('.avatar') as HTMLElement).style.setProperty('--h', String(hue(vid || s.id)));

    const facts: [string, Node | string | null][] = [];
    const place = [v?.city, v?.region, v?.country ? countryName(v.country) : null]
      .filter((x, i, all): x is string => Boolean(x) && x !== all[i - 1]).join(', ');
    facts.push([t('location'), place ? `${flag(v?.country)} ${place}`.trim() : null]);
    const tz = ctx.tz;
    const local = tz ? timeIn(tz) : null;
    facts.push([t('localTime'), local ? h('span', null, local, h('span.fact-sub', null, tz)) : null]);
    facts.push([t('languageLabel'), ctx.lang ? h('span', { title: ctx.lang }, languageName(ctx.lang)) : null]);
    // The widget reports one of a known few; anything else is shown as it came.
    const device = ctx.device && ['desktop', 'mobile', 'tablet'].includes(ctx.device)
      ? h('span', { title: ctx.device, 'data-device': ctx.device }, t(`device_${ctx.device}` as 'device_desktop')) : ctx.device ?? null;
    facts.push([t('device'), device]);
    facts.push([t('browser'), ctx.browser ?? null]);
    facts.push([t('os'), ctx.os ?? null]);
    if (ctx.screen?.w && ctx.screen?.h) facts.push([t('screen'), `${ctx.screen.w} × ${ctx.screen.h}`]);

    const sections: Node[] = [head];
    if (info === undefined && vid) {
      sections.push(h('div.vp-loading', null, h('span.spinner', { 'aria-hidden': 'true' }), t('loading')));
    }
    const known = facts.filter(([, val]) => val);
    sections.push(known.length
      ? h('dl.facts', null, known.map(([k, val]) => h('div.fact', null, h('dt', null, k), h('dd', null, val))))
      : h('p.vp-empty.muted', null, info === undefined ? '' : t('noInfo')));

    const hasContext = Object.keys(ctx).length > 0;
    // Source
    const ref = safeHref(ctx.referrer);
    const utm = ctx.utm && typeof ctx.utm === 'object' ? Object.entries(ctx.utm).filter(([, x]) => x) : [];
    if (hasContext) sections.push(section(t('source'),
      h('div.fact-line', null, h('span.fact-key', null, t('referrer')),
        ref ? link(ref, hostOf(ref)) : h('span.muted', null, info ? t('direct') : '—')),
      utm.length ? h('div.utm', null, utm.map(([k, x]) => h('span.chip', { title: `utm_${k}` }, `${k.replace(/^utm_/, '')}: ${String(x)}`))) : null));

    // Current page and trail
    const page = ctx.page;
    const pageHref = safeHref(page?.url);
    if (hasContext) sections.push(section(t('currentPage'),
      pageHref ? h('div.vp-page', null, h('div.vp-page-title', null, page?.title || hostOf(pageHref)), link(pageHref, shortUrl(pageHref), 'vp-page-url')) : h('span.muted', null, '—')));
    const pages = (info?.pages ?? []).slice().sort((a, b) => b.at - a.at).slice(0, 20);
    if (pages.length) {
      sections.push(section(t('pageTrail'),
        h('ol.trail', null, pages.map((p) => {
          const href = safeHref(p.url);
          return h('li', null,
            h('time.trail-time', { datetime: new Date(p.at).toISOString(), title: full(p.at) }, listTime(p.at)),
            h('div.trail-main', null,
              h('div.trail-title', null, p.title || (href ? hostOf(href) : p.url)),
              href ? link(href, shortUrl(href), 'trail-url') : null));
        }))));
    }

    // Past conversations
    const convs = (info?.conversations ?? []).slice().sort((a, b) => (b.last_message_at ?? b.created_at) - (a.last_message_at ?? a.created_at));
    if (convs.length) {
      sections.push(section(t('pastConversations'),
        h('ul.past', null, convs.slice(0, 20).map((c) => {
          // What the console knows live (this one, those in the inbox) is newer than the list.
          const live = this.store.sessions.get(c.id)?.loaded || this.store.rows.has(c.id);
          const status = live ? this.store.status(c.id) : c.status;
          return h('li', null,
            h('button.past-item', { type: 'button', disabled: c.id === s.id, onclick: () => this.open(c.id) },
              h('span.pill', { class: `pill--${status}` }, status === 'open' ? t('statusOpen') : t('statusClosed')),
              h('span.past-date', { title: full(c.created_at) }, listTime(c.last_message_at ?? c.created_at)),
              c.id === s.id ? h('span.muted', null, `(${t('thisConversation')})`) : null));
        }))));
    }

    // Attributes set by the site
    const attrs = v?.attributes && typeof v.attributes === 'object' ? Object.entries(v.attributes) : [];
    if (attrs.length) {
      sections.push(section(t('attributes'),
        h('dl.attrs', null, attrs.map(([k, x]) => h('div.fact', null, h('dt', null, k), h('dd', null, typeof x === 'string' ? x : JSON.stringify(x)))))));
    }
    sections.push(h('div.vp-id', null, h('span.muted', null, `${t('visitorId')}: `), h('code', null, vid || '—')));
    if (this.erase && vid) {
      const erase = this.erase;
      sections.push(h('section.vp-section.vp-danger', null,
        h('h3.vp-h', null, t('dataProtection')),
        h('p.vp-danger-text', null, t('eraseHint')),
        h('button.btn.btn-danger-outline.btn-sm', { type: 'button', 'data-action': 'erase-visitor', onclick: () => erase(vid) }, icon('trash', 14), t('eraseVisitor'))));
    }

    mount(this.el, h('div.vp', null, sections));
    this.el.scrollTop = scroll;
  }
}

/**
 * The visitor's e-mail address, as a mailto: link when it is one plain address (its parts
 * percent-encoded, so nothing in it adds headers, recipients or a body to the mail), or else as
 * text. The server checks the addresses visitors type into forms, not those a site's page
 * names, and the console counts on neither.
 */
function emailLink(email: string): HTMLElement {
  const at = email.lastIndexOf('@');
  const plain = at > 0 && at < email.length - 1 && !/[\s\p{Cc}]/u.test(email);
  if (!plain) return h('span.vp-email', null, email);
  const href = `mailto:${encodeURIComponent(email.slice(0, at))}@${encodeURIComponent(email.slice(at + 1))}`;
  return h('a.vp-email', { href }, email);
}

function section(title: string, ...body: (Node | null)[]): HTMLElement {
  return h('section.vp-section', null, h('h3.vp-h', null, title), body);
}

function link(href: string, text: string, cls = ''): HTMLAnchorElement {
  return h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow', class: cls, title: href }, text);
}

function hostOf(href: string): string {
  try {
    return new URL(href).host;
  } catch {
    return href;
  }
}

function shortUrl(href: string): string {
  try {
    const u = new URL(href);
    const s = u.host + u.pathname + u.search;
    return s.length > 60 ? `${s.slice(0, 59)}…` : s;
  } catch {
    return href;
  }
}
