// The message thread of one conversation. Nodes are built once per event (keyed by seq) and
// reordered in place, so live updates keep scroll position, focus and selection. Scrolling to
// the top loads older history.
import type { ConvSession } from '../conversation';
import { h, icon, linkify, reconcile } from '../dom';
import { lang, t } from '../i18n';
import type { OutboxItem } from '../outbox';
import type { Store } from '../store';
import { clock, dayLabel, full, sameDay } from '../time';
import type { Ev } from '../types';
import { download, fileUrl, formatSize, type FileInfo } from '../files';

const GROUP_MS = 5 * 60_000;

export class Thread {
  readonly el: HTMLElement;
  private list = h('div.thread-list');
  private topEl = h('div.thread-top');
  private jump: HTMLButtonElement;
  private nodes = new Map<string, HTMLElement>();
  private first = true;
  private olderPending = false;
  /** Seqs of translated visitor messages the agent switched to the original. */
  private originals = new Set<number>();
  /** Rendered once the view has been attached (scroll metrics need layout). */
  attached = false;
  /** The agent's uploads under way, by the session's key. */
  private uploadNodes = new Map<string, UploadRow>();
  /** The agent's failed uploads on screen, by the session's key, with the failure shown. */
  private failedNodes = new Map<string, { failed: object; el: HTMLElement }>();

  constructor(
    private store: Store,
    private session: ConvSession,
    private hooks: { atBottom: () => void; reveal: (seq: number) => Promise<void>; retry: (id: string) => void; discard: (id: string) => void },
  ) {
    this.jump = h('button.jump', { type: 'button', hidden: true, onclick: () => this.scrollToBottom(true) }, '↓');
    this.el = h('div.thread', {
      role: 'log',
      'aria-live': 'off',
      tabindex: '0',
      onscroll: () => this.onScroll(),
    }, this.topEl, this.list);
    this.relabel();
  }

  /** The floating "new messages" button; the view places it next to the thread. */
  get jumpButton(): HTMLButtonElement {
    return this.jump;
  }

  relabel(): void {
    this.el.setAttribute('aria-label', t('messages'));
    this.jump.setAttribute('aria-label', t('jumpToLatest'));
    this.jump.title = t('jumpToLatest');
    this.nodes.clear();
    this.uploadNodes.clear();
    this.failedNodes.clear();
    this.render({ reset: false, prepended: false });
  }

  isAtBottom(): boolean {
    return this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < 48;
  }

  scrollToBottom(smooth = false): void {
    this.el.scrollTo({ top: this.el.scrollHeight, behavior: smooth ? 'smooth' : 'auto' });
    this.jump.hidden = true;
  }

  private onScroll(): void {
    if (this.isAtBottom()) {
      this.jump.hidden = true;
      this.hooks.atBottom();
    }
    if (this.el.scrollTop < 120) void this.loadOlder();
  }

  async loadOlder(): Promise<void> {
    if (this.olderPending || !this.session.loaded || this.session.nextBefore == null) return;
    this.olderPending = true;
    this.renderTop();
    try {
      await this.session.loadOlder();
    } catch {
      /* the button stays for a retry */
    } finally {
      this.olderPending = false;
      this.renderTop();
    }
  }

  private renderTop(): void {
    const s = this.session;
    if (!s.loaded) {
      this.topEl.replaceChildren(h('div.thread-loading', null, h('span.spinner', { 'aria-hidden': 'true' }), t('loading')));
    } else if (s.nextBefore == null) {
      this.topEl.replaceChildren(h('div.thread-begin', null, t('beginning')));
    } else {
      this.topEl.replaceChildren(h('button.btn.btn-ghost.btn-sm.load-earlier', {
        type: 'button', disabled: this.olderPending, onclick: () => this.loadOlder(),
      }, this.olderPending ? t('loading') : t('loadEarlier')));
    }
  }

  /** Renders what the session holds. `prepended`: older history arrived (keep the view still). */
  render(opts: { reset: boolean; prepended: boolean; incoming?: boolean }): void {
    const el = this.el;
    const wasAtBottom = this.first || this.isAtBottom();
    const fromBottom = el.scrollHeight - el.scrollTop;
    if (opts.reset) this.nodes.clear();
    this.renderTop();

    const all = this.session.sortedEvents();
    // Translations render with the message they name (`of`), never as their own line.
    const trs = new Map<number, Ev[]>();
    for (const e of all) {
      if (e.kind !== 'translation') continue;
      const of = Number(e.body?.of);
      trs.set(of, [...(trs.get(of) ?? []), e]);
    }
    const events = all.filter((e) => e.kind !== 'hidden' && e.kind !== 'translation');
    const out: HTMLElement[] = [];
    let prev: Ev | null = null;
    const visitorRead = this.session.visitorRead();
    let seenSeq = 0;
    for (const e of events) if (e.kind === 'message' && e.author?.role === 'agent' && e.seq <= visitorRead) seenSeq = e.seq;

    for (const e of events) {
      if (!prev || !sameDay(prev.at, e.at)) out.push(this.dayNode(e.at));
      const node = this.eventNode(e, trs.get(e.seq));
      if (node.classList.contains('msg')) {
        const cont = Boolean(prev && isMessage(prev) && prev.author?.id === e.author?.id && (prev.kind === 'note') === (e.kind === 'note')
          && e.at - prev.at < GROUP_MS && sameDay(prev.at, e.at));
        node.classList.toggle('msg--cont', cont);
        node.classList.toggle('is-seen', e.seq === seenSeq);
      }
      out.push(node);
      prev = e;
    }
    for (const item of this.session.pending()) out.push(this.pendingNode(item));
    out.push(...this.uploadRows());
    reconcile(this.list, out);

    if (!this.attached) return;
    if (opts.prepended && !this.first) {
      el.scrollTop = el.scrollHeight - fromBottom;
    } else if (wasAtBottom || opts.reset) {
      this.scrollToBottom();
    } else if (opts.incoming) {
      this.jump.hidden = false;
    }
    if (this.session.loaded) this.first = false;
    if (this.isAtBottom()) this.hooks.atBottom();
  }

  // ---- uploads under way: a progress bar and percentage each, moved as the bytes go ------------

  /** The agent's uploads under way, each built once and updated in place. */
  private uploadRows(): HTMLElement[] {
    const uploads = this.session.uploads;
    for (const key of [...this.uploadNodes.keys()]) if (!uploads.has(key)) this.uploadNodes.delete(key);
    for (const key of [...this.failedNodes.keys()]) if (!uploads.get(key)?.failed) this.failedNodes.delete(key);
    const rows = [...uploads].map(([key, { name, failed }]) => {
      if (failed) {
        this.uploadNodes.delete(key);
        // Built once per failure: a row rebuilt on every render would be announced again
        // (it is an alert) and take the keyboard's focus from its buttons.
        let shown = this.failedNodes.get(key);
        if (shown?.failed !== failed) {
          shown = { failed, el: this.failedUploadRow(key, name, failed) };
          this.failedNodes.set(key, shown);
        }
        return shown.el;
      }
      let row = this.uploadNodes.get(key);
      if (!row) {
        row = this.uploadRow(key, name);
        this.uploadNodes.set(key, row);
      }
      return row.el;
    });
    this.showUploadProgress();
    return rows;
  }

  private uploadRow(key: string, name: string): UploadRow {
    const bar = h('progress.upload-progress', {
      max: '100', 'aria-valuenow': '0', 'aria-label': t('uploading', { name }), style: 'width: 8em; height: 0.5em; vertical-align: middle;',
    });
    bar.value = 0;
    const pct = h('span.upload-pct', null, percent(0));
    const el = h('div.msg.msg--out.msg--mine.msg--pending.msg--uploading', { dataset: { upload: key } },
      h('div.msg-row', null, h('div.bubble', null, h('div.file-card', null,
        h('span.file-icon', { 'aria-hidden': 'true' }, icon('file', 20)),
        h('span.file-main', null, h('span.file-name', null, name))))),
      h('div.msg-status', null, bar, ' ', pct, ' · ', t('uploading', { name })));
    return { el, bar, pct };
  }

  /** An upload that failed: why, and sending it again (when that may work) or dropping it. */
  private failedUploadRow(key: string, name: string, failed: { message: string; retryable: boolean }): HTMLElement {
    return h('div.msg.msg--out.msg--mine.msg--pending.msg--failed.msg--upload-failed', { dataset: { upload: key } },
      h('div.msg-row', null, h('div.bubble', null, h('div.file-card', null,
        h('span.file-icon', { 'aria-hidden': 'true' }, icon('file', 20)),
        h('span.file-main', null, h('span.file-name', null, name))))),
      h('div.msg-status.msg-status--error', { role: 'alert' },
        h('span', null, `${t('notSent')}: ${failed.message}`),
        failed.retryable ? h('button.link-btn', { type: 'button', dataset: { action: 'retry-upload' }, onclick: () => this.afterUploadAction(() => this.session.retryUpload(key)) }, t('retry')) : null,
        h('button.link-btn', { type: 'button', dataset: { action: 'discard-upload' }, onclick: () => this.afterUploadAction(() => this.session.discardUpload(key)) }, t('discard'))));
  }

  /** Runs a failed upload's action; its row goes, so the keyboard's focus goes to the composer. */
  private afterUploadAction(action: () => void): void {
    action();
    (this.el.closest('.conv')?.querySelector('.composer-input') as HTMLElement | null)?.focus();
  }

  /** Shows how far each upload on screen has gone. */
  showUploadProgress(): void {
    for (const [key, row] of this.uploadNodes) {
      const p = this.session.uploads.get(key);
      const n = p && p.total > 0 ? Math.min(100, Math.floor((p.loaded / p.total) * 100)) : 0;
      if (row.bar.value === n) continue;
      row.bar.value = n;
      row.bar.setAttribute('aria-valuenow', String(n));
      row.pct.textContent = percent(n);
    }
  }

  private dayNode(at: number): HTMLElement {
    const d = new Date(at);
    const key = `d:${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
    let node = this.nodes.get(key);
    if (!node) {
      node = h('div.day', { role: 'separator' }, h('span', null, dayLabel(at)));
      this.nodes.set(key, node);
    }
    return node;
  }

  private eventNode(e: Ev, trs: Ev[] = []): HTMLElement {
    const revealed = this.session.revealed.get(e.seq);
    // A translation arriving later gives the message a new key: rebuilt, swapped in place.
    const key = `e:${e.seq}:${revealed !== undefined ? 'r' : ''}:${trs.map((x) => x.seq).join(',')}`;
    let node = this.nodes.get(key);
    if (!node) {
      node = isMessage(e) ? this.messageNode(e, revealed, trs) : this.systemNode(e);
      node.dataset.seq = String(e.seq);
      this.nodes.set(key, node);
    }
    return node;
  }

  private messageNode(e: Ev, revealed: string | undefined, trs: Ev[]): HTMLElement {
    const role = e.author?.role ?? 'system';
    const mine = e.author?.id === this.store.me.id;
    const note = e.kind === 'note';
    // Automated messages (bot, away reply, keyword reply) are by `system`: the bot has a name.
    const name = role === 'visitor' ? this.store.visitorName(this.session.id) : mine ? t('you')
      : role === 'system' ? e.author?.name || t('autoReply') : e.author?.name || this.store.agentLabel(e.author?.id ?? '');
    const text = revealed ?? String(e.body?.text ?? '');
    const cls = ['msg', `msg--${role === 'visitor' ? 'in' : 'out'}`];
    if (mine) cls.push('msg--mine');
    if (note) cls.push('msg--note');
    if (role === 'system') cls.push('msg--auto');
    const file: FileInfo | undefined = e.kind === 'file' ? e.body?.file : undefined;
    if (file) cls.push('msg--file');
    const original = h('div.text', null, linkify(text));
    const bubble = h('div.bubble', null,
      note ? h('div.note-label', null, icon('lock', 12), t('note')) : null,
      file ? this.fileCard(file) : original);
    // Visitors' messages: the latest translation into the agents' language, with the original
    // a click away; a failure is a muted line. Other messages: what the visitor got ("Sent as").
    let sentAs: HTMLElement | null = null;
    const tr = trs[trs.length - 1];
    if (tr && !file && role === 'visitor') {
      if (tr.body?.failed || typeof tr.body?.text !== 'string') {
        bubble.append(h('div.tr-line', null, t('trFailed', { reason: failReason(tr.body?.failed) })));
      } else {
        const seq = e.seq;
        const translated = h('div.text', { lang: tr.body.to || null }, linkify(tr.body.text));
        const toggle = h('button.link-btn', { type: 'button', 'aria-pressed': 'false' });
        const show = (orig: boolean) => {
          original.hidden = !orig;
          translated.hidden = orig;
          toggle.textContent = orig ? t('trShowTranslation') : t('trShowOriginal');
          toggle.setAttribute('aria-pressed', String(orig));
          if (orig) this.originals.add(seq);
          else this.originals.delete(seq);
        };
        toggle.onclick = () => show(original.hidden);
        original.replaceWith(translated);
        translated.after(original);
        bubble.append(h('div.tr-line', null, t('trFrom', { from: langName(tr.body.from) }), ' · ', toggle));
        show(this.originals.has(seq));
      }
    } else if (!file && trs.length) {
      sentAs = h('div.tr-sent', null, trs.filter((x) => typeof x.body?.text === 'string' && !x.body.failed)
        .map((x) => h('div', { lang: x.body.to || null }, t('trSentAs', { text: x.body.text }))));
      if (!sentAs.childNodes.length) sentAs = null;
    }
    if (e.masked && revealed === undefined) {
      const btn = h('button.reveal-btn', {
        type: 'button',
        onclick: async () => {
          btn.disabled = true;
          btn.textContent = t('revealing');
          try {
            await this.hooks.reveal(e.seq);
          } catch {
            btn.disabled = false;
            btn.replaceChildren(icon('eye', 12), t('reveal'));
          }
        },
      }, icon('eye', 12), t('reveal'));
      bubble.append(h('div.masked', null, h('span.masked-label', null, icon('lock', 11), t('masked')), btn));
    } else if (revealed !== undefined) {
      bubble.append(h('div.masked.masked--revealed', null, icon('eye', 11), t('revealed')));
    }
    return h('div', { class: cls.join(' ') },
      h('div.msg-meta', null,
        h('span.msg-author', null, name),
        h('time.msg-time', { datetime: new Date(e.at).toISOString(), title: full(e.at) }, clock(e.at))),
      h('div.msg-row', null, bubble, h('time.msg-time-inline', { title: full(e.at), 'aria-hidden': 'true' }, clock(e.at))),
      sentAs,
      role === 'agent' && !note ? h('div.msg-receipt', null, icon('checks', 14), t('seen')) : null);
  }

  /** An image inline (fetched with the token, shown from a blob: URL), anything else as a card. */
  private fileCard(file: FileInfo): HTMLElement {
    const conv = this.session.id;
    const meta = h('span.file-meta', null, formatSize(file.size));
    const save = h('button.file-dl', {
      type: 'button', title: t('download'), 'aria-label': `${t('download')} ${file.name}`,
      onclick: () => download(conv, file).catch(() => (meta.textContent = t('fileUnavailable'))),
    }, icon('download', 16));
    const card = h('div.file-card', null,
      h('span.file-icon', { 'aria-hidden': 'true' }, icon('file', 20)),
      h('span.file-main', null, h('span.file-name', { title: file.name }, file.name), meta),
      save);
    if (!file.image) return card;
    const img = h('img.file-img', { alt: file.name, hidden: true, decoding: 'async' });
    const thumb = h('button.file-thumb', { type: 'button', 'aria-label': `${t('download')} ${file.name}`, onclick: () => download(conv, file).catch(() => {}) }, img);
    fileUrl(conv, file.id).then((url) => {
      img.onload = () => {
        img.hidden = false;
        if (this.isAtBottom()) this.scrollToBottom();
      };
      img.src = url;
    }, () => (meta.textContent = t('fileUnavailable')));
    return h('div.file-wrap', null, thumb, card);
  }

  private systemNode(e: Ev): HTMLElement {
    let text: string;
    const extra: Node[] = [];
    switch (e.kind) {
      case 'created': {
        const form = e.body?.form;
        text = form ? t('evCreatedForm', { form: form === 'prechat' ? t('form_prechat') : form === 'offline' ? t('form_offline') : String(form) }) : t('evCreated');
        const fields = e.body?.fields && typeof e.body.fields === 'object' ? Object.entries(e.body.fields as Record<string, unknown>) : [];
        if (fields.length) {
          extra.push(h('dl.form-fields', null, fields.map(([k, v]) => [h('dt', null, k), h('dd', null, linkify(String(v)))])));
        }
        break;
      }
      case 'assigned':
        text = t('evAssigned', { name: e.body?.agent?.name || this.store.agentLabel(e.body?.agent?.id ?? '') });
        break;
      case 'closed':
        text = e.author?.role === 'agent' && e.author.name ? t('evClosed', { name: e.author.name }) : t('evClosedSystem');
        break;
      case 'reopened':
        text = t('evReopened');
        break;
      case 'rated': {
        const score = Math.max(0, Math.min(5, Math.round(Number(e.body?.score) || 0)));
        text = t('evRated', { stars: '★'.repeat(score) + '☆'.repeat(5 - score), score });
        if (typeof e.body?.comment === 'string' && e.body.comment) extra.push(h('div.sys-note', null, e.body.comment));
        break;
      }
      case 'handoff':
        text = t('evHandoff');
        break;
      default:
        text = t('evOther', { kind: e.kind.replace(/_/g, ' ') });
        if (typeof e.body?.note === 'string' && e.body.note) extra.push(h('div.sys-note', null, e.body.note));
    }
    return h('div.sys', { class: `sys--${e.kind}` },
      h('div.sys-line', null, h('span.sys-text', null, text), h('time.sys-time', { datetime: new Date(e.at).toISOString(), title: full(e.at) }, clock(e.at))),
      extra);
  }

  private pendingNode(item: OutboxItem): HTMLElement {
    const cls = ['msg', 'msg--out', 'msg--mine', 'msg--pending'];
    if (item.note) cls.push('msg--note');
    if (item.error) cls.push('msg--failed');
    const status = item.error
      ? h('div.msg-status.msg-status--error', { role: 'alert' },
        h('span', null, `${t('notSent')}: ${item.error.message}`),
        h('button.link-btn', { type: 'button', onclick: () => this.hooks.retry(item.client_msg_id) }, t('retry')),
        h('button.link-btn', { type: 'button', onclick: () => this.hooks.discard(item.client_msg_id) }, t('discard')))
      : item.acked
        ? h('div.msg-status', null, t('sent'))
        : h('div.msg-status', null, h('span.spinner.spinner--xs', { 'aria-hidden': 'true' }), t('sending'));
    return h('div', { class: cls.join(' '), dataset: { pending: item.client_msg_id } },
      h('div.msg-row', null, h('div.bubble', null,
        item.note ? h('div.note-label', null, icon('lock', 12), t('note')) : null,
        item.file
          ? h('div.file-card', null, h('span.file-icon', { 'aria-hidden': 'true' }, icon('file', 20)),
            h('span.file-main', null, h('span.file-name', null, item.file.name), h('span.file-meta', null, formatSize(item.file.size))))
          : h('div.text', null, linkify(item.text)))),
      status);
  }
}

/** An upload shown in the thread; `progress` once matched with its transfer. */
interface UploadRow {
  el: HTMLElement;
  bar: HTMLProgressElement;
  pct: HTMLElement;
}

/** "42%" in the console's language. */
function percent(n: number): string {
  return new Intl.NumberFormat(lang(), { style: 'percent' }).format(n / 100);
}

function isMessage(e: Ev): boolean {
  return e.kind === 'message' || e.kind === 'note' || e.kind === 'file';
}

/** A language tag as a name in the console's language ("zh-CN" → "Chinese (China)"). */
function langName(tag: unknown): string {
  const code = String(tag ?? '');
  try {
    return new Intl.DisplayNames([lang()], { type: 'language' }).of(code) || code;
  } catch {
    return code || '?';
  }
}

function failReason(reason: unknown): string {
  switch (reason) {
    case 'timeout': return t('trTimeout');
    case 'not_configured': return t('trNotConfigured');
    default: return t('trError');
  }
}
