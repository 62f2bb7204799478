// Quick replies: typing "/" in the composer opens a list filtered by what follows; arrows
// choose, Enter or Tab inserts, Escape closes. Also the dialog that writes a new one or edits
// one (the Quick replies page lists them for editing and deleting).
import { api } from '../api';
import { h, icon } from '../dom';
import { t } from '../i18n';
import type { Store } from '../store';
import { isAdmin, type QuickReply } from '../types';
import { errorText, markRefused, openDialog, refusedField, type FieldRefusal } from './dialog';
import { oneLine } from './util';

export class QuickPicker {
  readonly el: HTMLElement;
  private listEl: HTMLElement;
  private items: QuickReply[] = [];
  private index = 0;
  private query = '';
  private listId = `qr-${Math.random().toString(36).slice(2)}`;

  constructor(
    private store: Store,
    private textarea: HTMLTextAreaElement,
    private choose: (r: QuickReply) => void,
    private toast: (s: string, kind?: 'info' | 'error') => void,
  ) {
    this.listEl = h('ul.qr-list', { role: 'listbox', id: this.listId });
    this.el = h('div.popover.qr-popover', { hidden: true });
    this.textarea.setAttribute('aria-autocomplete', 'list');
    this.textarea.setAttribute('aria-controls', this.listId);
    this.textarea.setAttribute('aria-expanded', 'false');
    store.on('quick', () => this.isOpen && this.render());
  }

  get isOpen(): boolean {
    return !this.el.hidden;
  }

  open(query: string): void {
    this.query = query;
    const wasOpen = this.isOpen;
    this.el.hidden = false;
    this.textarea.setAttribute('aria-expanded', 'true');
    if (!wasOpen) {
      this.index = 0;
      void this.store.loadQuickReplies().catch(() => {});
    }
    this.render();
  }

  close(): void {
    if (!this.isOpen) return;
    this.el.hidden = true;
    this.textarea.setAttribute('aria-expanded', 'false');
    this.textarea.removeAttribute('aria-activedescendant');
  }

  private filtered(): QuickReply[] {
    const all = this.store.quickReplies ?? [];
    const q = this.query.toLowerCase();
    if (!q) return all.slice();
    const score = (r: QuickReply) => {
      const title = r.title.toLowerCase();
      if (title.startsWith(q)) return 0;
      if (title.includes(q)) return 1;
      if ((r.group ?? '').toLowerCase().includes(q)) return 2;
      if (r.body.toLowerCase().includes(q)) return 3;
      return 9;
    };
    return all.map((r) => [score(r), r] as const).filter(([s]) => s < 9).sort((a, b) => a[0] - b[0]).map(([, r]) => r);
  }

  private render(): void {
    this.items = this.filtered();
    this.index = Math.min(this.index, Math.max(0, this.items.length - 1));
    const loaded = this.store.quickReplies !== null;
    this.listEl.replaceChildren(...this.items.map((r, i) => h('li.qr-item', {
      role: 'option', id: `${this.listId}-${i}`, 'aria-selected': String(i === this.index),
      onmousedown: (ev: MouseEvent) => ev.preventDefault(),
      onclick: () => this.pick(i),
    },
    h('div.qr-top', null,
      h('span.qr-title', null, r.title),
      r.group ? h('span.chip', null, r.group) : null,
      r.personal ? h('span.chip.chip--me', null, t('personal')) : null),
    h('div.qr-body', null, oneLine(r.body, 140)))));
    const empty = !this.items.length
      ? h('div.qr-empty', null, loaded ? ((this.store.quickReplies ?? []).length ? t('quickEmpty') : t('quickNone')) : t('loading'))
      : null;
    this.el.replaceChildren(
      h('div.popover-head', null, h('span', null, t('quickReplies')), h('span.popover-hint', null, t('quickHint'))),
      this.listEl,
      empty ?? '',
      h('div.popover-foot', null, h('button.link-btn', {
        type: 'button',
        onmousedown: (ev: MouseEvent) => ev.preventDefault(),
        onclick: () => {
          this.close();
          openQuickReplyDialog(this.store, this.toast);
        },
      }, icon('plus', 14), t('quickNew')),
      h('a.link-btn', {
        href: '#/replies',
        onmousedown: (ev: MouseEvent) => ev.preventDefault(),
        onclick: () => this.close(),
      }, icon('edit', 14), t('quickManage'))));
    if (this.items.length) {
      this.textarea.setAttribute('aria-activedescendant', `${this.listId}-${this.index}`);
      document.getElementById(`${this.listId}-${this.index}`)?.scrollIntoView({ block: 'nearest' });
    } else {
      this.textarea.removeAttribute('aria-activedescendant');
    }
  }

  private pick(i: number): void {
    const r = this.items[i];
    if (!r) return;
    this.close();
    this.choose(r);
  }

  /** Keys while the list is open; true when consumed. */
  handleKey(ev: KeyboardEvent): boolean {
    if (!this.isOpen) return false;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      if (!this.items.length) return true;
      this.index = (this.index + (ev.key === 'ArrowDown' ? 1 : this.items.length - 1)) % this.items.length;
      this.render();
      return true;
    }
    if ((ev.key === 'Enter' && !ev.shiftKey) || ev.key === 'Tab') {
      if (!this.items.length) {
        if (ev.key === 'Tab') return false;
        this.close();
        return false;
      }
      this.pick(this.index);
      return true;
    }
    if (ev.key === 'Escape') {
      this.close();
      return true;
    }
    return false;
  }
}

/** What the dialog says of each of its fields the server may refuse (its `field`), keyed by that field. */
const REFUSED_FIELDS: Record<string, FieldRefusal> = {
  title: { text: () => t('quickTitleRefused'), key: 'title' },
  body: { text: () => t('quickBodyRefused'), key: 'body' },
  group: { text: () => t('quickGroupRefused'), key: 'group' },
};

/**
 * The dialog that saves a new quick reply, or changes `reply` (its text, title and group; whether
 * it is personal stays). Agents who are not admins write personal replies only: the server
 * keeps team replies to admins.
 */
export function openQuickReplyDialog(store: Store, toast: (s: string, kind?: 'info' | 'error') => void, reply?: QuickReply): void {
  openDialog(reply ? t('quickEdit') : t('quickNew'), (close) => {
    const title = h('input#qr-title', { required: true, maxlength: 100, value: reply?.title ?? '' });
    const text = h('textarea#qr-body', { required: true, rows: 4, maxlength: 4000 }, reply?.body ?? '');
    const group = h('input#qr-group', { maxlength: 50, value: reply?.group ?? '' });
    const teamAllowed = isAdmin(store.me);
    const personal = h('input#qr-personal', { type: 'checkbox', checked: !teamAllowed, disabled: !teamAllowed });
    const err = h('div.form-error', { role: 'alert' });
    const save = h('button.btn.btn-primary', { type: 'submit' }, t('quickSave'));
    const controls: Record<string, HTMLElement> = { title, body: text, group };
    /** Says what is wrong with the field `refused` is about, at its control (none: the server's words). */
    const refuse = (refused: FieldRefusal | null, e?: unknown) => {
      err.textContent = refused?.text() ?? errorText(e);
      markRefused(refused?.key ? controls[refused.key] : null);
    };
    return h('form.dialog-body', {
      onsubmit: async (ev: SubmitEvent) => {
        ev.preventDefault();
        for (const control of Object.values(controls)) control.removeAttribute('aria-invalid');
        // A title or text of spaces only passes `required`: the same words as the server's refusal.
        if (!title.value.trim()) return refuse(REFUSED_FIELDS.title);
        if (!text.value.trim()) return refuse(REFUSED_FIELDS.body);
        save.disabled = true;
        err.textContent = '';
        const fields = { title: title.value.trim(), body: text.value, group: group.value.trim() };
        try {
          if (reply) {
            await api(`/api/v1/quick-replies/${encodeURIComponent(reply.id)}`, { method: 'PATCH', body: fields });
            await store.loadQuickReplies(true);
          } else {
            await store.createQuickReply({ ...fields, personal: personal.checked });
          }
          toast(t('quickSaved'));
          close();
        } catch (e) {
          refuse(refusedField(e, REFUSED_FIELDS), e);
          save.disabled = false;
        }
      },
    },
    h('label.field', { for: 'qr-title' }, h('span.field-label', null, t('quickTitle')), title),
    h('label.field', { for: 'qr-body' }, h('span.field-label', null, t('quickBody')), text),
    h('label.field', { for: 'qr-group' }, h('span.field-label', null, t('quickGroup')), group),
    reply ? null : h('label.check', { for: 'qr-personal' }, personal, h('span', null, t('quickPersonal'))),
    err,
    h('div.dialog-actions', null, h('button.btn.btn-ghost', { type: 'button', onclick: close }, t('cancel')), save));
  });
}
