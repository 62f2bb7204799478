// Quick replies (every agent): the team's replies and one's own, by group, each with Edit and
// Delete where the server allows them: admins change team replies, everyone their own
// personal ones. The list is the store's (the composer's "/" picker reads the same), reloaded
// after every change.
import { api } from '../../api';
import { h, icon, mount } from '../../dom';
import { isAdmin, type QuickReply } from '../../types';
import { openQuickReplyDialog } from '../quick';
import { card, confirmDialog, errorRow, errorText, loadingRow, pageHead, type Page, type PageCtx } from './common';
import { t } from './strings';

export class QuickRepliesPage implements Page {
  readonly el = h('div.page.page--replies');
  private error: string | null = null;
  /** The control to focus once a dialog it opened has closed (`data-focus` of the control). */
  private returnFocus: string | null = null;
  private stopListening: () => void;

  constructor(private ctx: PageCtx) {
    this.stopListening = ctx.store.on('quick', () => this.render());
    // Focus back in the page (a dialog cancelled: its opener is still there) needs no help.
    this.el.addEventListener('focusin', () => {
      if (!document.querySelector('dialog[open]')) this.returnFocus = null;
    });
  }

  show(): void {
    this.render();
    void this.load();
  }

  relabel(): void {
    this.render();
  }

  destroy(): void {
    this.stopListening();
  }

  private async load(): Promise<void> {
    try {
      await this.ctx.store.loadQuickReplies(true);
      this.error = null;
    } catch (e) {
      this.error = errorText(e);
      this.render();
    }
  }

  private canChange(r: QuickReply): boolean {
    return Boolean(r.personal) || isAdmin(this.ctx.me);
  }

  private render(): void {
    const replies = this.ctx.store.quickReplies;
    const add = h('button.btn.btn-primary', {
      type: 'button', 'data-action': 'add-reply', 'data-focus': 'add',
      onclick: () => this.openDialog('add'),
    }, icon('plus', 15), t('quickNew'));
    let body: Node[];
    if (this.error && !replies) body = [errorRow(this.error, () => void this.load())];
    else if (!replies) body = [loadingRow()];
    else body = [
      this.section('team', replies.filter((r) => !r.personal)),
      this.section('mine', replies.filter((r) => r.personal)),
    ];
    // Drawing anew replaces the focused control too: its successor gets the focus.
    const focused = document.activeElement instanceof HTMLElement && this.el.contains(document.activeElement) ? document.activeElement.dataset.focus : undefined;
    if (focused) this.returnFocus = focused;
    mount(this.el, pageHead(t('quickReplies'), t('repliesSub'), add), ...body);
    this.restoreFocus();
  }

  private section(scope: 'team' | 'mine', replies: QuickReply[]): HTMLElement {
    const sub = scope === 'mine' ? t('repliesMineSub') : isAdmin(this.ctx.me) ? t('repliesTeamSub') : t('repliesTeamSubReadOnly');
    const groups = new Map<string, QuickReply[]>();
    for (const r of replies) {
      const name = r.group?.trim() ?? '';
      groups.set(name, [...(groups.get(name) ?? []), r]);
    }
    const titleId = `replies-${scope}-group`;
    return card(scope === 'mine' ? t('repliesMine') : t('repliesTeam'), { id: `replies-${scope}`, sub },
      ...(replies.length
        ? Array.from(groups, ([name, list], i) => h('section.reply-group', { 'aria-labelledby': `${titleId}-${i}` },
          h('h3.sub-title', { id: `${titleId}-${i}` }, name || t('repliesUngrouped')),
          h('ul.reply-list', null, list.map((r) => this.item(r)))))
        : [h('p.muted.empty-line', null, scope === 'mine' ? t('repliesNoMine') : t('repliesNoTeam'))]));
  }

  private item(r: QuickReply): HTMLElement {
    const actions = this.canChange(r)
      ? h('div.reply-actions', null,
        h('button.btn.btn-ghost.btn-sm', {
          type: 'button', 'data-action': 'edit-reply', 'data-focus': `edit:${r.id}`, 'aria-label': t('editItem', { item: r.title }),
          onclick: () => this.openDialog(`edit:${r.id}`, r),
        }, icon('edit', 14), t('edit')),
        h('button.btn.btn-ghost.btn-sm.btn-ghost-danger', {
          type: 'button', 'data-action': 'delete-reply', 'data-focus': `delete:${r.id}`, 'aria-label': t('deleteItem', { item: r.title }),
          onclick: () => this.confirmDelete(r),
        }, icon('trash', 14), t('delete')))
      : null;
    return h('li.reply', { dataset: { id: r.id } },
      h('div.reply-text', null, h('span.reply-title', null, r.title), h('p.reply-body', null, r.body)),
      actions);
  }

  private openDialog(focus: string, reply?: QuickReply): void {
    this.returnFocus = focus;
    openQuickReplyDialog(this.ctx.store, this.ctx.toast, reply);
  }

  private confirmDelete(r: QuickReply): void {
    this.returnFocus = `delete:${r.id}`;
    confirmDialog({
      title: t('replyDeleteTitle'),
      body: r.personal ? t('replyDeleteMine', { title: r.title }) : t('replyDeleteTeam', { title: r.title }),
      confirm: t('delete'),
      danger: true,
      run: async () => {
        try {
          await api(`/api/v1/quick-replies/${encodeURIComponent(r.id)}`, { method: 'DELETE' });
        } catch (e) {
          // Changed elsewhere meanwhile (gone, or no longer one's to delete): show it as it is now.
          void this.ctx.store.loadQuickReplies(true).catch(() => {});
          throw e;
        }
        await this.ctx.store.loadQuickReplies(true);
        this.ctx.toast(t('replyDeleted'));
      },
    });
  }

  /**
   * The list is drawn anew after every change, so the button that opened a dialog is gone when
   * the dialog returns focus to it: focus its successor (or, once deleted, the add button).
   * Dialogs close right after the reload that draws the list, so a task later they are shut.
   */
  private restoreFocus(): void {
    const want = this.returnFocus;
    if (!want) return;
    setTimeout(() => {
      if (this.returnFocus !== want || document.querySelector('dialog[open]')) return;
      this.returnFocus = null;
      const target = Array.from(this.el.querySelectorAll<HTMLElement>('[data-focus]')).find((e) => e.dataset.focus === want)
        ?? this.el.querySelector<HTMLElement>('[data-focus="add"]');
      target?.focus();
    });
  }
}
