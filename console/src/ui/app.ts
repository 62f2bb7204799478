// The signed-in console: top bar, inbox lists, conversation tabs, the open conversation and
// the visitor sidebar.
import { setTitleCount } from '../alerts';
import { api } from '../api';
import { h, icon, mount, rafThrottle } from '../dom';
import { lang, onLangChange, t } from '../i18n';
import { load, save } from '../storage';
import { Store } from '../store';
import { isAdmin, type Agent, type Me, type TeamAgent } from '../types';
import { ConversationView } from './conversation';
import { confirmDialog } from './dialog';
import { renderInbox } from './inbox';
import { PageHost } from './pages';
import { VisitorPanel } from './sidebar';
import { renderTabs } from './tabs';
import { TopBar } from './topbar';

export class AppView {
  readonly store: Store;
  private topbar = h('header.topbar', { role: 'banner' });
  private inboxEl = h('nav.inbox', { 'aria-label': '' });
  private tabsEl = h('div.convtabs');
  private stage = h('div.stage');
  private main = h('main.workspace#main', { tabindex: '-1' }, this.tabsEl, this.stage);
  private sidebarEl = h('aside.sidebar', { 'aria-label': '' });
  private toasts = h('div.toasts', { role: 'status', 'aria-live': 'polite' });
  private announcer = h('div.sr-only', { 'aria-live': 'polite', 'aria-atomic': 'true' });
  private views = new Map<string, ConversationView>();
  private panel: VisitorPanel;
  private top: TopBar;
  /** Wide screens give the sidebar a column (remembered); narrower ones float it on demand. */
  private wide = window.matchMedia('(min-width: 1280px)');
  private sidebarWide = load<boolean>('sidebar', true) ?? true;
  private sidebarNarrow = false;
  private get sidebarOpen(): boolean {
    return this.wide.matches ? this.sidebarWide : this.sidebarNarrow;
  }
  private offs: (() => void)[] = [];
  private clock: ReturnType<typeof setInterval>;
  private bodyEl = h('div.body');
  private pages: PageHost;
  private skipLink = h('a.skip', { href: '#main' });
  private teamCache: Promise<TeamAgent[]> | null = null;

  constructor(private root: HTMLElement, readonly me: Agent, private signOut: () => void) {
    this.store = new Store(me);
    this.panel = new VisitorPanel(this.store, this.sidebarEl, () => this.toggleSidebar(false), (id) => this.openConversation(id),
      isAdmin(me) ? (vid) => this.eraseVisitor(vid) : null);
    this.pages = new PageHost({
      store: this.store,
      me,
      toast: (text, kind) => this.toast(text, kind),
      openConversation: (id) => {
        this.pages.go('inbox');
        this.openConversation(id);
      },
      teamAgents: (force) => this.teamAgents(force),
    }, (name) => this.pageChanged(name));
    this.top = new TopBar(this.topbar, this.store, () => this.signOut(), this.pages.nav);
    this.bodyEl.append(this.inboxEl, this.main, this.sidebarEl);
    // The skip link goes to whatever is the main content now, without touching the route.
    this.skipLink.addEventListener('click', (ev) => {
      ev.preventDefault();
      (this.pages.current === 'inbox' ? this.main : this.pages.el).focus();
    });
    mount(root,
      this.skipLink,
      h('div.app', null, this.topbar, this.bodyEl, this.pages.el),
      this.toasts,
      this.announcer);

    const inbox = rafThrottle(() => this.renderInbox());
    const tabs = rafThrottle(() => this.renderTabsAndStage());
    const top = rafThrottle(() => this.renderTopbar());
    this.offs.push(
      this.store.on('inbox', inbox),
      this.store.on('tabs', tabs),
      this.store.on('presence', top),
      this.store.on('conn', top),
      this.store.on('toast', (text, kind) => this.toast(text, kind)),
      this.store.on('announce', (text) => this.announce(text)),
      this.store.on('visitor', () => this.panel.render()),
      onLangChange(() => {
        document.documentElement.lang = lang();
        this.renderAll();
        for (const v of this.views.values()) v.relabel();
        this.pages.relabel();
      }),
    );
    const vis = () => this.updateVisible();
    document.addEventListener('visibilitychange', vis);
    window.addEventListener('focus', vis);
    this.offs.push(() => document.removeEventListener('visibilitychange', vis), () => window.removeEventListener('focus', vis));
    const relayout = () => {
      this.sidebarNarrow = false;
      this.renderTabsAndStage();
    };
    this.wide.addEventListener('change', relayout);
    this.offs.push(() => this.wide.removeEventListener('change', relayout));
    // Escape closes the floating sidebar.
    const esc = (ev: KeyboardEvent) => {
      if (ev.key === 'Escape' && !this.wide.matches && this.sidebarNarrow && this.sidebarEl.contains(document.activeElement)) {
        this.toggleSidebar(false);
        (this.main.querySelector('.info-toggle') as HTMLElement | null)?.focus();
      }
    };
    document.addEventListener('keydown', esc);
    this.offs.push(() => document.removeEventListener('keydown', esc));
    window.addEventListener('online', top);
    window.addEventListener('offline', top);
    this.offs.push(() => window.removeEventListener('online', top), () => window.removeEventListener('offline', top));
    this.clock = setInterval(() => {
      this.renderInbox();
      this.panel.tick();
    }, 30_000);
    this.renderAll();
    this.pages.route();
    void this.store.start().catch(() => this.renderAll()).then(() => {
      // Pages that list sites (settings, reports) need the list the store has now.
      if (this.pages.current !== 'inbox') this.pages.route();
    });
    // Permissions (export) are not in the sign-in answer: ask once.
    api<Me>('/api/v1/me').then((m) => {
      if (!m?.permissions) return;
      this.me.permissions = m.permissions;
      this.pages.refresh();
    }).catch(() => {});
  }

  /** The team's members (owners and admins), fetched once and shared by the pages. */
  private teamAgents(force = false): Promise<TeamAgent[]> {
    if (!this.teamCache || force) {
      const p = api<{ agents: TeamAgent[] }>('/api/v1/agents').then((r) => r?.agents ?? []);
      p.catch(() => {
        if (this.teamCache === p) this.teamCache = null;
      });
      this.teamCache = p;
    }
    return this.teamCache;
  }

  /** The inbox is "visible" (reads count, no alert for the open conversation) only when shown. */
  private updateVisible(): void {
    this.store.visible = document.visibilityState === 'visible' && this.pages.current === 'inbox';
    this.activeView()?.maybeRead();
  }

  private pageChanged(name: string): void {
    const inbox = name === 'inbox';
    this.bodyEl.classList.toggle('is-covered', !inbox);
    this.bodyEl.inert = !inbox;
    this.root.classList.toggle('on-page', !inbox);
    this.updateVisible();
    if (inbox) {
      this.renderTabsAndStage();
      this.activeView()?.shown();
    }
  }

  /** Owners and admins erase a visitor and everything of theirs, after confirming. */
  private eraseVisitor(vid: string): void {
    const convs = this.store.visitors.get(vid)?.conversations?.length ?? 0;
    confirmDialog({
      title: t('eraseTitle'),
      body: h('div', null,
        h('p.dialog-text', null, t('eraseText')),
        convs ? h('p.dialog-text', null, t('eraseCount', { n: convs })) : null,
        h('p.dialog-text.danger-text', null, t('eraseWarning'))),
      confirm: t('eraseConfirm'),
      danger: true,
      run: async () => {
        const r = await api<{ erased_conversations: number }>(`/api/v1/visitors/${encodeURIComponent(vid)}`, { method: 'DELETE' });
        this.store.forgetVisitor(vid);
        this.toast(t('erased', { n: r?.erased_conversations ?? 0 }));
      },
    });
  }

  destroy(): void {
    clearInterval(this.clock);
    this.pages.destroy();
    for (const off of this.offs) off();
    for (const v of this.views.values()) v.destroy();
    this.store.stop();
    setTitleCount(0);
  }

  private renderAll(): void {
    this.renderTopbar();
    this.renderInbox();
    this.renderTabsAndStage();
  }

  private activeView(): ConversationView | null {
    return this.store.active ? this.views.get(this.store.active) ?? null : null;
  }

  private renderTopbar(): void {
    this.top.update();
    this.skipLink.textContent = t('skip');
  }

  // ---- inbox ------------------------------------------------------------------------------

  private renderInbox(): void {
    this.inboxEl.setAttribute('aria-label', t('inbox'));
    renderInbox(this.inboxEl, this.store, (id) => this.openConversation(id));
  }

  openConversation(id: string): void {
    this.store.open(id);
    requestAnimationFrame(() => this.activeView()?.focusComposer());
  }

  // ---- tabs, conversation, sidebar ----------------------------------------------------------

  private renderTabsAndStage(): void {
    const s = this.store;
    renderTabs(this.tabsEl, s, (id) => this.openConversation(id), (id) => this.closeTab(id));
    for (const [id, v] of this.views) {
      if (!s.tabs.includes(id)) {
        v.destroy();
        this.views.delete(id);
      }
    }
    const id = s.active;
    let view: ConversationView | null = null;
    if (id && s.sessions.has(id)) {
      view = this.views.get(id) ?? null;
      if (!view) {
        view = new ConversationView(s, s.sessions.get(id)!, {
          toggleSidebar: () => this.toggleSidebar(),
          sidebarOpen: () => this.sidebarOpen,
          toast: (text, kind) => this.toast(text, kind),
          openConversation: (cid) => this.openConversation(cid),
          back: () => {
            this.store.activate(null);
            requestAnimationFrame(() => (this.inboxEl.querySelector('.conv-item') as HTMLElement | null)?.focus());
          },
        });
        this.views.set(id, view);
      }
    }
    const current = this.stage.firstElementChild;
    if (view) {
      if (current !== view.root) {
        this.stage.replaceChildren(view.root);
        view.shown();
      }
      view.update();
    } else if (!current || !current.classList.contains('empty-state')) {
      this.stage.replaceChildren(
        h('div.empty-state', null,
          h('div.empty-illustration', { 'aria-hidden': 'true' }, icon('chat', 40)),
          h('h2', null, t('noConversation')),
          h('p', null, t('noConversationHint'))));
    } else {
      // language may have changed
      const [title, hint] = [current.querySelector('h2'), current.querySelector('p')];
      if (title) title.textContent = t('noConversation');
      if (hint) hint.textContent = t('noConversationHint');
    }
    this.root.classList.toggle('has-active', Boolean(view));
    this.panel.show(view ? s.sessions.get(id!)! : null);
    this.sidebarEl.setAttribute('aria-label', t('visitorDetails'));
    this.sidebarEl.hidden = !view || !this.sidebarOpen;
    this.root.classList.toggle('sidebar-open', Boolean(view) && this.sidebarOpen);
  }

  private closeTab(id: string): void {
    const wasActive = this.store.active === id;
    this.store.closeTab(id);
    if (wasActive) requestAnimationFrame(() => (this.tabsEl.querySelector('[aria-selected="true"]') as HTMLElement | null)?.focus());
  }

  private toggleSidebar(force?: boolean): void {
    const open = force ?? !this.sidebarOpen;
    if (this.wide.matches) {
      this.sidebarWide = open;
      save('sidebar', open);
    } else {
      this.sidebarNarrow = open;
    }
    this.renderTabsAndStage();
    this.activeView()?.update();
    if (this.sidebarOpen) (this.sidebarEl.querySelector('h2, button') as HTMLElement | null)?.focus();
  }

  // ---- toasts and announcements --------------------------------------------------------------

  toast(text: string, kind: 'info' | 'error' = 'info'): void {
    const el = h('div.toast', { class: `toast--${kind}` }, h('span', null, text),
      h('button.icon-btn.icon-btn--sm', { type: 'button', 'aria-label': t('cancel'), onclick: () => el.remove() }, icon('close', 14)));
    this.toasts.appendChild(el);
    setTimeout(() => el.remove(), kind === 'error' ? 8000 : 5000);
  }

  announce(text: string): void {
    this.announcer.textContent = '';
    setTimeout(() => (this.announcer.textContent = text), 50);
  }
}
