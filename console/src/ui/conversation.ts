// One conversation on screen: header with actions (accept, transfer, close/reopen), tags,
// status banner, the thread, the typing indicator and the composer.
import { ApiError } from '../api';
import type { ConvSession } from '../conversation';
import { h, icon, rafThrottle } from '../dom';
import { t } from '../i18n';
import { eventText, type Store } from '../store';
import { Composer } from './composer';
import { TagEditor } from './tags';
import { Thread } from './thread';
import { openTransferDialog } from './transfer';
import { hue, initials, oneLine, selfStatedMark } from './util';

export interface ViewHooks {
  toggleSidebar: () => void;
  sidebarOpen: () => boolean;
  toast: (s: string, kind?: 'info' | 'error') => void;
  openConversation: (id: string) => void;
  back: () => void;
}

export class ConversationView {
  readonly root: HTMLElement;
  private avatar = h('span.avatar.avatar--md', { 'aria-hidden': 'true' });
  private backBtn: HTMLButtonElement;
  private title = h('h2.conv-title');
  private sub = h('div.conv-sub');
  private actions = h('div.conv-actions');
  private banner = h('div.banner', { hidden: true });
  private typingEl = h('div.typing', { 'aria-live': 'polite' });
  private announcer = h('div.sr-only', { 'aria-live': 'polite' });
  private thread: Thread;
  private composer: Composer;
  private tags: TagEditor;
  private offs: (() => void)[] = [];
  private busy = new Set<string>();
  private isShown = false;

  constructor(private store: Store, private session: ConvSession, private hooks: ViewHooks) {
    this.thread = new Thread(store, session, {
      atBottom: () => this.maybeRead(),
      reveal: async (seq) => {
        try {
          await session.reveal(seq);
          this.thread.render({ reset: false, prepended: false });
        } catch (e) {
          hooks.toast((e as Error).message || t('genericError'), 'error');
          throw e;
        }
      },
      retry: (id) => session.retry(id),
      discard: (id) => session.discard(id),
    });
    this.composer = new Composer(store, session, hooks.toast);
    this.tags = new TagEditor(session, hooks.toast);
    this.backBtn = h('button.icon-btn.back-btn', { type: 'button', onclick: () => hooks.back() }, icon('back'));
    this.root = h('section.conv', { dataset: { conversation: session.id } },
      h('header.conv-head', null,
        this.backBtn,
        this.avatar,
        h('div.conv-id', null, this.title, this.sub),
        this.actions),
      this.tags.el,
      this.banner,
      h('div.thread-wrap', null, this.thread.el, this.thread.jumpButton),
      this.typingEl,
      this.composer.el,
      this.announcer);

    // Files dropped anywhere on the conversation are sent.
    this.root.addEventListener('dragover', (ev) => {
      if (ev.dataTransfer?.types.includes('Files')) {
        ev.preventDefault();
        this.root.classList.add('is-dropping');
      }
    });
    this.root.addEventListener('dragleave', (ev) => {
      if (!this.root.contains(ev.relatedTarget as Node)) this.root.classList.remove('is-dropping');
    });
    this.root.addEventListener('drop', (ev) => {
      this.root.classList.remove('is-dropping');
      const files = Array.from(ev.dataTransfer?.files ?? []);
      if (!files.length) return;
      ev.preventDefault();
      this.composer.sendFiles(files);
    });
    const renderThread = (opts: { reset: boolean; prepended: boolean; incoming?: boolean }) => {
      this.thread.render(opts);
      this.maybeRead();
    };
    const header = rafThrottle(() => this.update());
    this.offs.push(
      session.on('events', (ev) => {
        const incoming = ev.added.some((e) => e.kind !== 'translation' && (e.author?.role !== 'agent' || e.author.id !== store.me.id));
        renderThread({ reset: ev.reset, prepended: ev.prepended, incoming });
      }),
      session.on('outbox', () => renderThread({ reset: false, prepended: false })),
      session.on('upload', () => this.thread.showUploadProgress()),
      session.on('reads', () => this.thread.render({ reset: false, prepended: false })),
      session.on('typing', () => this.renderTyping()),
      session.on('status', header),
      session.on('conn', header),
      session.on('gone', header),
      session.on('error', (e: ApiError) => hooks.toast(e.message || t('genericError'), 'error')),
      session.on('incoming', (e) => {
        if (this.isShown && store.active === session.id) {
          this.announce(t('announceMessage', { name: store.visitorName(session.id), text: oneLine(eventText(e), 200) }));
        }
      }),
      store.on('visitor', (vid) => {
        if (vid === session.visitorId) {
          this.thread.relabel();
          header();
        }
      }),
      store.on('presence', header),
      store.on('inbox', header),
    );
    this.update();
    this.thread.render({ reset: true, prepended: false });
  }

  destroy(): void {
    for (const off of this.offs) off();
    this.composer.destroy();
  }

  /** Attached to the page (became the active tab). */
  shown(): void {
    this.isShown = true;
    this.thread.attached = true;
    this.thread.render({ reset: false, prepended: false });
    this.maybeRead();
  }

  focusComposer(): void {
    this.composer.focus();
  }

  relabel(): void {
    this.composer.relabel();
    this.thread.relabel();
    this.tags.render();
    this.update();
  }

  /** Sends a read marker when the newest messages are actually on screen. */
  maybeRead(): void {
    if (!this.root.isConnected || this.store.active !== this.session.id) return;
    // Not while another page (search, reports…) covers the inbox.
    if (document.visibilityState !== 'visible' || !this.store.visible) return;
    if (!this.thread.isAtBottom()) return;
    this.session.markRead();
  }

  private announce(text: string): void {
    this.announcer.textContent = '';
    setTimeout(() => (this.announcer.textContent = text), 30);
  }

  private renderTyping(): void {
    const who = Array.from(this.session.typing.values()).map((x) =>
      x.who.role === 'visitor' ? this.store.visitorName(this.session.id) : x.who.name || this.store.agentLabel(x.who.id));
    this.typingEl.replaceChildren(...(who.length
      ? [h('span.typing-dots', { 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), h('span', null, t('typing', { name: who.join(', ') }))]
      : []));
  }

  /** Header, banner and actions from the current state. */
  update(): void {
    const s = this.session;
    const store = this.store;
    const name = store.visitorName(s.id);
    this.root.setAttribute('aria-label', t('conversationWith', { name }));
    this.avatar.textContent = initials(name);
    this.avatar.style.setProperty('--h', String(hue(s.visitorId || s.id)));
    this.title.replaceChildren(h('span.conv-name', null, name), ...(store.nameSelfStated(s.id) ? selfStatedMark() : []));
    this.backBtn.setAttribute('aria-label', t('backToInbox'));
    this.backBtn.title = t('backToInbox');

    const status = store.status(s.id);
    const assignee = store.assignee(s.id);
    const mine = assignee === store.me.id;
    const row = store.rows.get(s.id);
    const site = store.sites.length > 1 ? store.sites.find((x) => x.id === (s.siteId ?? row?.site_id)) : null;
    const assignment = store.assignment(s.id);
    this.sub.replaceChildren(...[
      h('span.pill', { class: `pill--${status}` }, status === 'open' ? t('statusOpen') : t('statusClosed')),
      h('span.sub-item', null, icon('user', 13), assignee ? (mine ? t('assignedToYou') : store.agentLabel(assignee)) : t('unassigned')),
      site?.name ? h('span.sub-item', null, site.name) : null,
      s.conn !== 'live' && !s.gone ? h('span.sub-item.sub-conn', null, h('span.spinner.spinner--xs', { 'aria-hidden': 'true' }), t('connConnecting')) : null,
    ].filter((x): x is HTMLElement => x !== null));

    const btn = (key: string, label: string, cls: string, iconName: string | null, run: () => Promise<void>) => {
      const b = h('button.btn', { type: 'button', class: cls, disabled: this.busy.has(key) || s.gone, dataset: { action: key } }, iconName ? icon(iconName, 16) : null, h('span', null, label));
      b.addEventListener('click', async () => {
        this.busy.add(key);
        this.update();
        try {
          await run();
        } catch (e) {
          const msg = e instanceof ApiError ? (e.code === 'already_assigned' ? e.message || t('alreadyAssigned') : e.message) : t('genericError');
          this.hooks.toast(msg, 'error');
        } finally {
          this.busy.delete(key);
          this.update();
        }
      });
      return b;
    };
    const acts: Node[] = [];
    const canAccept = status === 'open' && !mine && (!assignee || (assignment !== null && !assignment.answered));
    if (canAccept) acts.push(btn('accept', this.busy.has('accept') ? t('accepting') : t('accept'), 'btn-primary', 'check', () => s.accept()));
    if (status === 'open' && mine) {
      acts.push(btn('transfer', t('transfer'), 'btn-secondary', 'transfer', async () => openTransferDialog(store, s, this.hooks.toast)));
    }
    if (status === 'open') {
      acts.push(btn('close', t('close'), 'btn-secondary', 'close', async () => {
        await s.close();
        this.hooks.toast(t('closed'));
      }));
    } else {
      acts.push(btn('reopen', t('reopen'), 'btn-secondary', null, async () => {
        await s.reopen();
        this.hooks.toast(t('reopened'));
      }));
    }
    const open = this.hooks.sidebarOpen();
    acts.push(h('button.icon-btn.info-toggle', {
      type: 'button', 'aria-pressed': String(open), 'aria-label': open ? t('hideVisitorInfo') : t('visitorInfo'),
      title: open ? t('hideVisitorInfo') : t('visitorInfo'), onclick: () => this.hooks.toggleSidebar(), dataset: { action: 'info' },
    }, icon('info')));
    // Keep keyboard focus on the same action across re-renders.
    const focused = this.actions.contains(document.activeElement) ? (document.activeElement as HTMLElement).dataset.action : null;
    this.actions.replaceChildren(...acts);
    if (focused) (this.actions.querySelector(`[data-action="${focused}"]`) as HTMLElement | null)?.focus();

    // Banner
    let banner: Node[] | null = null;
    let kind = '';
    if (s.gone) {
      banner = [h('span', null, t('notFound'))];
      kind = 'error';
    } else if (status === 'closed') {
      banner = [h('span', null, t('closedBanner'))];
      kind = 'closed';
    } else if (!assignee && s.loaded) {
      banner = [h('span', null, t('waitingBanner'))];
      kind = 'waiting';
    } else if (assignee && !mine) {
      banner = [h('span', null, t('assignedBanner', { name: store.agentLabel(assignee) }))];
      kind = 'info';
    }
    this.banner.hidden = !banner;
    this.banner.className = `banner banner--${kind}`;
    this.banner.replaceChildren(...(banner ?? []));
    this.composer.el.classList.toggle('is-disabled', s.gone);
    this.textareaDisabled(s.gone);
  }

  private textareaDisabled(off: boolean): void {
    this.composer.textarea.disabled = off;
  }
}
