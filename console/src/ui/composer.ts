// The reply box: Enter sends, Shift+Enter breaks the line (IME composition never sends), "/"
// opens quick replies, an emoji picker, and a private-note mode that looks clearly different.
// The draft is kept per conversation in localStorage, so nothing typed is lost on reload: saved
// a moment after typing stops, and at once when the page goes away or the conversation closes.
import type { ConvSession } from '../conversation';
import { h, icon } from '../dom';
import { t } from '../i18n';
import { load, save } from '../storage';
import type { Store } from '../store';
import { EmojiPicker } from './emoji';
import { QuickPicker } from './quick';

const MAX = 4000;

export class Composer {
  readonly el: HTMLFormElement;
  readonly textarea: HTMLTextAreaElement;
  private note = false;
  private noteBtn: HTMLButtonElement;
  private emojiBtn: HTMLButtonElement;
  private quickBtn: HTMLButtonElement;
  private attachBtn: HTMLButtonElement;
  private fileInput: HTMLInputElement;
  private sendBtn: HTMLButtonElement;
  private counter = h('span.counter', { 'aria-live': 'polite' });
  private hint = h('span.composer-hint', { 'aria-hidden': 'true' });
  private noteHint = h('span.note-hint');
  private quick: QuickPicker;
  private emoji: EmojiPicker;
  private draftKey: string;
  /** Set while a draft change waits to be saved. */
  private draftTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(store: Store, private session: ConvSession, private toast: (s: string, kind?: 'info' | 'error') => void) {
    this.draftKey = `draft.${store.me.id}.${session.id}`;
    const draft = load<{ text: string; note: boolean }>(this.draftKey);
    this.note = Boolean(draft?.note);
    this.textarea = h('textarea.composer-input', {
      rows: 1,
      dataset: { testid: 'composer' },
      oninput: () => this.onInput(),
      onkeydown: (ev: KeyboardEvent) => this.onKey(ev),
      onpaste: (ev: ClipboardEvent) => {
        const files = Array.from(ev.clipboardData?.files ?? []);
        if (files.length) {
          ev.preventDefault();
          this.sendFiles(files);
        }
      },
      onblur: () => {
        this.session.setTyping(false);
        // Later, so a click in the list lands first; and only if focus did not come back.
        setTimeout(() => document.activeElement !== this.textarea && this.quick.close(), 150);
      },
    });
    this.textarea.value = draft?.text ?? '';

    this.quick = new QuickPicker(store, this.textarea, (r) => this.insertQuick(r.body), toast);
    this.emoji = new EmojiPicker((c) => this.insertAtCaret(c), () => this.textarea.focus());

    this.noteBtn = h('button.tool-btn.note-toggle', { type: 'button', onclick: () => this.setNote(!this.note) }, icon('note', 16), h('span.tool-label'));
    this.emojiBtn = h('button.tool-btn', {
      type: 'button', 'aria-haspopup': 'dialog',
      onclick: () => (this.emoji.isOpen ? this.emoji.close() : (this.quick.close(), this.emoji.open())),
    }, icon('smile', 16));
    this.quickBtn = h('button.tool-btn', {
      type: 'button', 'aria-haspopup': 'listbox',
      onclick: () => {
        this.emoji.close();
        if (this.quick.isOpen) return this.quick.close();
        const v = this.textarea.value;
        if (!/(^|\s)\/\S*$/.test(v.slice(0, this.textarea.selectionStart))) {
          this.insertAtCaret(v && !/\s$/.test(v.slice(0, this.textarea.selectionStart)) ? ' /' : '/');
        }
        this.textarea.focus();
        this.onInput();
      },
    }, icon('bolt', 16));
    this.fileInput = h('input.sr-only', {
      type: 'file', multiple: true, tabindex: -1, 'aria-hidden': 'true',
      onchange: () => {
        this.sendFiles(Array.from(this.fileInput.files ?? []));
        this.fileInput.value = '';
      },
    });
    this.attachBtn = h('button.tool-btn', { type: 'button', onclick: () => this.fileInput.click() }, icon('clip', 16));
    this.sendBtn = h('button.btn.btn-primary.send-btn', { type: 'submit' }, icon('send', 16), h('span.send-label'));

    this.el = h('form.composer', {
      onsubmit: (ev: SubmitEvent) => {
        ev.preventDefault();
        this.submit();
      },
      onkeydown: (ev: KeyboardEvent) => {
        if (ev.key === 'Escape' && this.emoji.isOpen) {
          ev.preventDefault();
          this.emoji.close();
        }
      },
    },
    this.quick.el,
    this.emoji.el,
    h('div.composer-box', null,
      h('div.composer-notebar', null, icon('lock', 12), this.noteHint),
      this.textarea,
      h('div.composer-tools', null,
        this.noteBtn, this.emojiBtn, this.quickBtn, this.attachBtn, this.fileInput,
        h('span.spacer'),
        this.hint,
        this.counter,
        this.sendBtn)));
    document.addEventListener('mousedown', this.outside, true);
    // A reload or a closed tab would otherwise lose what was typed in the last moment.
    window.addEventListener('pagehide', this.saveDraftNow);
    this.relabel();
    this.setNote(this.note, false);
    this.onInput(false);
  }

  destroy(): void {
    this.saveDraftNow();
    document.removeEventListener('mousedown', this.outside, true);
    window.removeEventListener('pagehide', this.saveDraftNow);
  }

  /** Saves the draft a moment after typing stops, not on every key. */
  private saveDraft(): void {
    clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(this.saveDraftNow, 250);
  }

  /** Saves a draft change still waiting at once (none waiting: another tab's newer draft stays). */
  private saveDraftNow = (): void => {
    if (this.draftTimer === undefined) return;
    clearTimeout(this.draftTimer);
    this.draftTimer = undefined;
    save(this.draftKey, this.textarea.value || this.note ? { text: this.textarea.value, note: this.note } : null);
  };

  private outside = (ev: MouseEvent) => {
    if (this.emoji.isOpen && !this.emoji.el.contains(ev.target as Node) && !this.emojiBtn.contains(ev.target as Node)) this.emoji.close();
  };

  relabel(): void {
    this.textarea.placeholder = this.note ? t('notePlaceholder') : t('placeholder');
    this.textarea.setAttribute('aria-label', this.note ? t('noteMode') : t('composer'));
    this.noteBtn.setAttribute('aria-label', t('noteToggle'));
    this.noteBtn.title = `${t('noteToggle')}`;
    (this.noteBtn.querySelector('.tool-label') as HTMLElement).textContent = t('note');
    this.attachBtn.setAttribute('aria-label', t('attach'));
    this.attachBtn.title = t('attach');
    this.emojiBtn.setAttribute('aria-label', t('emoji'));
    this.emojiBtn.title = t('emoji');
    this.quickBtn.setAttribute('aria-label', t('quickReplies'));
    this.quickBtn.title = `${t('quickReplies')} (/)`;
    (this.sendBtn.querySelector('.send-label') as HTMLElement).textContent = this.note ? t('addNote') : t('send');
    this.noteHint.textContent = t('notesOnlyAgents');
    this.hint.textContent = t('composerHint');
    this.textarea.setAttribute('aria-description', t('composerHint'));
    this.emoji.relabel();
    this.updateCounter();
  }

  focus(): void {
    this.textarea.focus();
  }

  private setNote(on: boolean, persist = true): void {
    this.note = on;
    this.noteBtn.setAttribute('aria-pressed', String(on));
    this.el.classList.toggle('composer--note', on);
    this.attachBtn.hidden = on;
    this.relabel();
    if (persist) {
      this.saveDraft();
      this.textarea.focus();
    }
  }

  private onInput(typing = true): void {
    const el = this.textarea;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, Math.max(120, window.innerHeight * 0.35))}px`;
    this.updateCounter();
    this.saveDraft();
    if (typing && !this.note) this.session.typed(el.value.trim().length > 0);
    // "/word" right before the caret opens the quick replies, filtered by word.
    const before = el.value.slice(0, el.selectionStart ?? el.value.length);
    const m = /(?:^|\s)\/([^\s/]*)$/.exec(before);
    if (m) this.quick.open(m[1]);
    else this.quick.close();
  }

  private updateCounter(): void {
    const n = this.textarea.value.length;
    const over = n - MAX;
    this.counter.textContent = over > 0 ? t('tooLong', { n: over }) : n > MAX - 200 ? t('charsLeft', { n: MAX - n }) : '';
    this.counter.classList.toggle('counter--over', over > 0);
    this.hint.hidden = Boolean(this.counter.textContent);
    this.sendBtn.disabled = !this.textarea.value.trim() || over > 0;
  }

  private onKey(ev: KeyboardEvent): void {
    if (ev.isComposing || ev.keyCode === 229) return;
    if (this.quick.handleKey(ev)) {
      ev.preventDefault();
      return;
    }
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      this.submit();
    }
  }

  private submit(): void {
    const text = this.textarea.value;
    if (!text.trim() || text.length > MAX) return;
    this.session.send(text.replace(/\s+$/, ''), this.note);
    this.textarea.value = '';
    save(this.draftKey, this.note ? { text: '', note: true } : null);
    this.onInput(false);
    this.quick.close();
    this.textarea.focus();
  }

  /** Files from the picker, a paste or a drop: each is uploaded, then posted. */
  sendFiles(files: File[]): void {
    // A failure stays in the thread with its reason (and a retry where one may work); once
    // the conversation's tab is closed, it is told here instead.
    for (const f of files) {
      this.session.sendFile(f).catch((e) => this.toast(`${f.name}: ${(e as Error).message || t('genericError')}`, 'error'));
    }
  }

  private insertAtCaret(s: string): void {
    const el = this.textarea;
    const start = el.selectionStart ?? el.value.length;
    const end = el.selectionEnd ?? start;
    el.setRangeText(s, start, end, 'end');
    el.focus();
    this.onInput();
  }

  private insertQuick(body: string): void {
    const el = this.textarea;
    const caret = el.selectionStart ?? el.value.length;
    const before = el.value.slice(0, caret);
    const m = /(?:^|\s)(\/[^\s/]*)$/.exec(before);
    const start = m ? caret - m[1].length : caret;
    el.setRangeText(body, start, caret, 'end');
    el.focus();
    this.onInput();
    this.quick.close();
  }
}
