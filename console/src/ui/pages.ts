// The console's pages besides the inbox, addressed by the URL's hash (#/search, #/replies,
// #/reports, #/agents, #/settings[/<site>], #/api-keys, #/export) so that reloads and the back
// button keep them. Each page is offered only to those who may use it: search and quick replies
// to everyone, export to those with the permission, the rest to owners and admins. The server
// refuses the others all the same.
import { h, icon, mount } from '../dom';
import { t, type Key } from '../i18n';
import { isAdmin, type Agent } from '../types';
import type { Page, PageCtx } from './admin/common';

export type PageName = 'inbox' | 'search' | 'replies' | 'reports' | 'agents' | 'settings' | 'api-keys' | 'export';

interface PageDef {
  name: PageName;
  icon: string;
  label: Key;
  allowed: (me: Agent) => boolean;
}

const PAGES: PageDef[] = [
  { name: 'inbox', icon: 'chat', label: 'navInbox', allowed: () => true },
  { name: 'search', icon: 'search', label: 'navSearch', allowed: () => true },
  { name: 'replies', icon: 'bolt', label: 'quickReplies', allowed: () => true },
  { name: 'reports', icon: 'chart', label: 'navReports', allowed: isAdmin },
  { name: 'agents', icon: 'users', label: 'navAgents', allowed: isAdmin },
  { name: 'settings', icon: 'gear', label: 'navSettings', allowed: isAdmin },
  { name: 'api-keys', icon: 'key', label: 'navApiKeys', allowed: isAdmin },
  { name: 'export', icon: 'download', label: 'navExport', allowed: (me) => isAdmin(me) || Boolean(me.permissions?.export) },
];

/** The pages' stylesheet (`./pages.css?v=<hash>`, set by console/build.mjs). */
declare const __PAGES_CSS__: string;

function loadStyles(): Promise<void> {
  return new Promise((resolve, reject) => {
    const old = document.querySelector<HTMLLinkElement>('link[data-pages]');
    if (old?.dataset.loaded) return resolve();
    old?.remove();
    const link = h('link', { rel: 'stylesheet', href: __PAGES_CSS__, 'data-pages': '' });
    link.onload = () => {
      link.dataset.loaded = '1';
      resolve();
    };
    link.onerror = () => reject(new Error('pages.css'));
    document.head.appendChild(link);
  });
}

type Chunk = typeof import('./admin/admin');
/** The pages' chunk and its styles, loaded once on first use. */
let chunk: Promise<Chunk> | null = null;
function loadPages(): Promise<Chunk> {
  chunk ??= Promise.all([import('./admin/admin'), loadStyles()]).then(([m]) => m);
  chunk.catch(() => (chunk = null));
  return chunk;
}

export class PageHost {
  readonly nav = h('nav.topnav');
  readonly el = h('main.pages#page', { tabindex: '-1', hidden: true });
  current: PageName = 'inbox';
  private pages = new Map<PageName, Page>();

  constructor(private ctx: PageCtx, private changed: (name: PageName) => void) {
    window.addEventListener('hashchange', this.route);
    this.renderNav();
  }

  destroy(): void {
    window.removeEventListener('hashchange', this.route);
    for (const p of this.pages.values()) p.destroy?.();
    this.pages.clear();
  }

  /** Goes to a page (the hash changes; the route follows). */
  go(name: PageName, arg?: string): void {
    const hash = name === 'inbox' ? '#/inbox' : `#/${name}${arg ? `/${encodeURIComponent(arg)}` : ''}`;
    if (location.hash === hash) this.route();
    else location.hash = hash;
  }

  /** Shows what the hash names; anything else (an in-page anchor) is left alone. */
  route = (): void => {
    const hash = location.hash;
    if (hash && hash !== '#' && !hash.startsWith('#/')) return;
    const [, rawName = 'inbox', rawArg] = /^#\/([a-z-]*)(?:\/(.*))?$/.exec(hash) ?? [];
    const def = PAGES.find((p) => p.name === (rawName || 'inbox'));
    if (!def || !def.allowed(this.ctx.me)) {
      history.replaceState(null, '', '#/inbox');
      this.show('inbox');
      return;
    }
    this.show(def.name, rawArg ? decodeURIComponent(rawArg) : undefined);
  };

  private show(name: PageName, arg?: string): void {
    const moved = name !== this.current;
    this.current = name;
    this.renderNav();
    if (name === 'inbox') {
      this.el.hidden = true;
      mount(this.el);
    } else {
      this.el.hidden = false;
      const page = this.pages.get(name);
      if (page) this.present(page, arg, moved);
      else this.load(name, arg);
    }
    this.changed(name);
  }

  private load(name: PageName, arg?: string): void {
    mount(this.el, h('div.page', null, h('div.page-loading', { role: 'status' }, h('span.spinner', { 'aria-hidden': 'true' }), t('loading'))));
    loadPages().then((m) => {
      let page = this.pages.get(name);
      if (!page) {
        page = m.makePage(name, this.ctx);
        this.pages.set(name, page);
      }
      if (this.current === name) this.present(page, arg, true);
    }, () => {
      if (this.current !== name) return;
      // Most likely a new version was deployed and this chunk is gone: reloading fixes it.
      mount(this.el, h('div.page', null, h('div.page-error', { role: 'alert' }, icon('warn', 16), h('span', null, t('pageLoadFailed')),
        h('button.btn.btn-secondary.btn-sm', { type: 'button', onclick: () => location.reload() }, t('reloadConsole')))));
    });
  }

  private present(page: Page, arg: string | undefined, moved: boolean): void {
    if (this.el.firstElementChild !== page.el) {
      mount(this.el, page.el);
      this.el.scrollTop = 0;
    }
    page.show(arg);
    if (moved) requestAnimationFrame(() => (this.el.querySelector('.page-title') as HTMLElement | null)?.focus({ preventScroll: true }));
  }

  /** The permissions may have arrived (/me): pages may appear or go. */
  refresh(): void {
    this.renderNav();
    const def = PAGES.find((p) => p.name === this.current);
    if (def && !def.allowed(this.ctx.me)) this.go('inbox');
  }

  relabel(): void {
    this.renderNav();
    if (this.current !== 'inbox') this.pages.get(this.current)?.relabel();
  }

  private renderNav(): void {
    const focused = (document.activeElement as HTMLElement | null)?.dataset?.page;
    this.nav.setAttribute('aria-label', t('navLabel'));
    mount(this.nav, PAGES.filter((p) => p.allowed(this.ctx.me)).map((p) => h('a.topnav-link', {
      href: p.name === 'inbox' ? '#/inbox' : `#/${p.name}`,
      dataset: { page: p.name },
      'aria-current': p.name === this.current ? 'page' : undefined,
      title: t(p.label),
    }, icon(p.icon, 17), h('span.topnav-label', null, t(p.label)))));
    if (focused) (this.nav.querySelector(`[data-page="${focused}"]`) as HTMLElement | null)?.focus();
  }
}
