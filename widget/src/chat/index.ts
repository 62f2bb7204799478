// The full widget (public/widget/chat.js), loaded by the loader on demand: the chat panel,
// the durable outbox, the connection, notifications, forms.
//
// Never lose a message: a message is written to the outbox in localStorage (one key per
// client_msg_id) before anything else happens, shown as pending, and removed only when the
// server acknowledged it (or its event arrived). Sending happens under a Web Lock, so two tabs
// of the same visitor never send the same pending message at once; storage events keep every
// tab's view of the outbox, conversation, unread count and language in step.
import css from './chat.css';
import { h, icon, richText } from './dom';
import { EMOJI } from './emoji';
import { pick, t, type Key } from './i18n';
import { watchInvitations } from './invite';
import { bounded, Link, type LinkState } from './link';
import { ratingForm, ratingThanks, type Draft } from './rating';
import { normalize } from '../config';
import type { Config, Conv, Ev, FileRef, Host, Invitation, OutboxItem, PendingForm, Texts } from '../types';

declare const __VERSION__: string;

const MAX_CHARS = 4000;
/** The longest answer to a form field the server takes: MAX_FIELD_VALUE in core/src/visitor.rs. */
const MAX_FIELD = 1000;
const ACK_WITHIN = 10e3;
/** Codes that will fail the same way on every retry. */
const PERMANENT = ['message_too_long', 'empty_message', 'invalid_client_msg_id', 'frame_too_large', 'bad_frame', 'forbidden'];
/** The codes worth retrying unchanged, as `retryable()` in core/src/error.rs lists them. */
const RETRYABLE = ['rate_limited', 'storage_unavailable', 'uploads_busy', 'internal'];
/** Refusals of a creation that are about the form's answers: the visitor corrects them. */
const FORM_FAULT = ['invalid_request', 'message_too_long', 'empty_message'];
/** Raster images the server may accept as images (shown as thumbnails while uploading). */
const IMAGE = /^image\/(png|jpeg|gif|webp)$/;
/** What the file picker offers (the server checks the bytes anyway). */
const ACCEPT = 'image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain,text/csv,.txt,.csv,.log,.md,.zip,.doc,.docx,.xls,.xlsx,.ppt,.pptx';

/** The primary language subtag, lower case: zh-CN → zh. */
const primary = (tag: unknown) => String(tag || '').split('-')[0].toLowerCase();

/** 1 KB, 2.5 MB… */
const bytes = (n: number) => (n < 1024 ? `${n} B` : n < 1048576 ? `${+(n / 1024).toFixed(1)} KB` : `${+(n / 1048576).toFixed(1)} MB`);

interface Item {
  key: string;
  kind: 'msg' | 'sys' | 'day' | 'rate';
  mine?: boolean;
  /** author identity, for grouping */
  who?: string;
  name?: string;
  text: string;
  at?: number;
  seq?: number;
  status?: 'sending' | 'queued' | 'sent' | 'read' | 'failed';
  err?: string;
  welcome?: boolean;
  /** an attachment */
  file?: FileRef;
  /** upload progress, percent */
  prog?: number;
  /** a message for the visitor about this item (the server's refusal, a rate limit…) */
  note?: string;
  /** what the visitor can do with it: remove it, or choose its file again */
  acts?: 'rm' | 'lost';
  /** an automated message of the site (away reply, keyword reply, closing notice) */
  auto?: boolean;
  /** its translation into the visitor's language: the text, or failed */
  tr?: { text?: string; from?: string; failed?: boolean };
  /** a rating card: the score once rated */
  score?: number;
}

/** How an attempt to send (or upload) one outbox item ended. */
interface Sent {
  ok?: boolean;
  /** the seq of an acknowledged message */
  seq?: number;
  code?: string;
  retry?: number;
  /** the server's message, for people */
  msg?: string;
  /** the visitor's session was refused for good (not this message) */
  stop?: Refusal;
}

interface Refusal {
  code: string;
  /** the server's message, in the widget's language */
  msg: string;
}

interface Waiter {
  resolve(r: Sent): void;
}

let counter = 0;
/** A client_msg_id: time, a per-page counter and randomness; unique per visitor across tabs. */
function newMsgId(): string {
  const r = new Uint32Array(2);
  crypto.getRandomValues(r);
  return `w-${Date.now().toString(36)}-${(counter++).toString(36)}-${r[0].toString(36)}${r[1].toString(36)}`;
}

/** Form answers the server refused, with its reason. */
type Redo = PendingForm & { why: string };

/** The server's refusal that no retry will change, from its answer (or the answer a failed
 * session carries); null for what may pass later: network failures, rate limits, outages. */
const refusal = (r: any): Refusal | null => {
  const code = r?.b?.code;
  return typeof code === 'string' && !RETRYABLE.includes(code) ? { code, msg: String(r.b.message || code) } : null;
};

/** The first letter of a name, for an avatar. */
const initial = (name: string) => Array.from(name.trim())[0]?.toUpperCase() || '?';

const sameDay = (a: number, b: number) => new Date(a).toDateString() === new Date(b).toDateString();

class Chat {
  private h: Host;
  private conv: Conv | null;
  private events = new Map<number, Ev>();
  private cursor = 0;
  /**
   * The newest seq the visitor has seen of the conversation, on this page or an earlier one:
   * team messages after it that arrive with a history load (the loader woke the chat for a
   * reply, or the page is new) are new to the visitor, like live ones.
   */
  private seen = 0;
  private agentRead = 0;
  private status = 'open';
  private historyLoaded = false;
  private nextBefore: number | null = null;
  /** Bumped whenever the events held are dropped (another conversation or log, a reset): a
   * history page asked for before then is of what was dropped. */
  private logGen = 0;
  /** Counts the loads of the latest history started: a newer one takes over from a retrying one. */
  private latestLoads = 0;
  private failed = new Map<string, { t: string; a: number; err: string; f?: FileRef; m?: string }>();
  /** This page's id: a Web Lock held while the page lives tells other tabs its files' bytes exist. */
  private page = newMsgId();
  /**
   * Outbox (`o:`) and lost-attachment (`x:`) entries that storage refused (full, blocked), by
   * key: kept for this page's life, so what the visitor wrote is still shown and sent.
   */
  private mem = new Map<string, OutboxItem>();
  /** The `client_req_id` of the creation under way (see `ensureConversation`). */
  private creation = '';
  /** Bytes of attachments until they are posted, by client_msg_id (a Blob cannot be stored). */
  private blobs = new Map<string, Blob>();
  private uploads = new Map<string, Promise<Sent>>();
  private xhrs = new Map<string, XMLHttpRequest>();
  private prog = new Map<string, number>();
  private hints = new Map<string, string>();
  private tries = new Map<string, number>();
  /** object URLs of thumbnails, by list item key; revoked when the item leaves the list */
  private urls = new Map<string, string>();
  /** the lost attachment whose file the visitor is choosing again */
  private replacing = '';
  private unzoom: (() => void) | null = null;
  private waiters = new Map<string, Waiter>();
  private link: Link;
  private isOpen = false;
  private flushing = false;
  private flushAgain = false;
  private flushTimer: any = 0;
  private sentRead = 0;
  private unread = 0;
  private typingSentAt = 0;
  private typingStop: any = 0;
  private agentTyping: { name: string; timer: any } | null = null;
  private renderQueued = false;
  private stickToBottom = true;
  private leader = !(navigator as any).locks;
  private audio: AudioContext | null = null;
  private flashTimer: any = 0;
  private plainTitle = '';
  private nodes = new Map<string, HTMLElement>();
  private live = new Set<number>();
  /** messages the visitor switched back to their original text */
  private originals = new Set<string>();
  /** the rating being chosen, by the seq of the `closed` event it is for */
  private drafts = new Map<number, Draft>();
  /** ratings the server took, by the seq of the `closed` event, until their event arrives */
  private rated = new Map<number, number>();
  /** a list item to focus once painted */
  private focusKey = '';
  /** the invitation of this page, once it showed (its greeting joins the conversation view) */
  private inv: { m: Texts; at: number } | null = null;
  private invBox!: HTMLElement;

  // DOM
  private panel!: HTMLElement;
  private scroller!: HTMLElement;
  private list!: HTMLElement;
  private earlier!: HTMLButtonElement;
  private typingEl!: HTMLElement;
  private banner!: HTMLElement;
  private view!: HTMLElement;
  private composer!: HTMLFormElement;
  private input!: HTMLTextAreaElement;
  private sendBtn!: HTMLButtonElement;
  private counterEl!: HTMLElement;
  private emojiBtn!: HTMLButtonElement;
  private fileInput!: HTMLInputElement;
  private notice!: HTMLElement;
  private dropZone!: HTMLElement;
  private picker!: HTMLElement;
  private soundBtn!: HTMLButtonElement;
  private titleEl!: HTMLElement;
  private subEl!: HTMLElement;
  private avatar!: HTMLElement;
  private announcer!: HTMLElement;
  private queueEl!: HTMLElement;
  /** The visitor's place in the waiting queue; null when not waiting (or not known). */
  private place: number | null = null;
  /** Counts queue news (frames, assignments): an answer to an older question never overrides it. */
  private placeNews = 0;
  private bannerTimer: any = 0;
  private formDirty = false;
  /** Why the server refused, for good, to start the conversation (or to let the visitor in):
   * nothing is sent again on this page until the visitor sends something new. */
  private refused: Refusal | null = null;
  /** Form answers the server refused, shown again in their form to be corrected; kept in
   * storage too (`rf`), so a reload or the next page brings them back rather than losing them. */
  private redoHere: Redo | null = null;
  private get redo(): Redo | null {
    return this.redoHere ?? this.h.ls.get<Redo>('rf') ?? null;
  }
  private set redo(v: Redo | null) {
    this.redoHere = v;
    if (v) this.h.ls.set('rf', v);
    else this.h.ls.del('rf');
  }

  constructor(host: Host) {
    this.h = host;
    const ls = host.ls;
    this.conv = ls.get<Conv>('c');
    this.cursor = this.seen = this.seenBefore();
    const style = document.createElement('style');
    style.textContent = css;
    host.root.append(style);
    this.build();

    this.link = new Link({
      base: host.base,
      site: host.site,
      ls,
      conv: () => this.conv,
      cursor: () => this.cursor,
      lang: () => host.lang(),
      token: async (bad) => (await host.session(bad)).t,
      api: host.api,
      frame: (f) => this.onFrame(f),
      state: (s) => this.onState(s),
      gone: () => this.gone(),
    });

    host.sub('lang', () => {
      this.rebuild();
      this.paintInvite();
      // The server learns the visitor's language from the socket's hello: sign in again.
      this.link.relang();
    });
    host.sub('cfg', () => {
      const key = JSON.stringify(this.cfg());
      if (key !== this.cfgKey) this.rebuild();
      this.cfgKey = key;
    });
    host.sub('id', () => this.renderView());
    addEventListener('storage', (e) => this.onStorage(e));
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) {
        this.stopFlash();
        this.updateUnread();
      }
    });
    // Browsers let audio start only after a user gesture on the page.
    const unlock = () => {
      try {
        this.audio ||= new (window.AudioContext || (window as any).webkitAudioContext)();
        this.audio.resume();
      } catch { /* no audio */ }
    };
    document.addEventListener('pointerdown', unlock, { once: true, capture: true });
    document.addEventListener('keydown', unlock, { once: true, capture: true });
    // One tab of the visitor's plays the notification sound.
    (navigator as any).locks?.request(ls.full('leader'), () => {
      this.leader = true;
      return new Promise(() => {});
    });
    // Held while this page lives: other tabs do not give up on the files it is uploading.
    (navigator as any).locks?.request(ls.full(`p:${this.page}`), () => new Promise(() => {}));
    // Back online: send what waits now. (Once there is a conversation its link going live does
    // too, but a first message typed offline has no link yet.)
    addEventListener('online', () => this.flush());
    // Safety net: retry the outbox now and then while it holds messages.
    setInterval(() => { if (this.pending().length) this.flush(); }, 30e3);

    host.chat = {
      open: () => this.open(),
      close: () => this.close(),
      toggle: () => (this.isOpen ? this.close() : this.open()),
      diagnostics: () => this.diagnostics(),
    };
    this.cfgKey = JSON.stringify(this.cfg());
    this.renderView();
    // The invitation bubble, next to the launcher; a live region, so it is announced.
    this.invBox = h('div', { cls: 'ivw', 'aria-live': 'polite' });
    host.box.append(this.invBox);
    watchInvitations({
      ls,
      since: host.t || 0,
      invitations: () => this.cfg().invitations,
      allowed: () => !this.pending().length && !ls.get('pf') && (!this.conv || (this.historyLoaded && this.status === 'closed')),
      invite: (inv) => this.invite(inv),
      moved: () => this.paintInvite(false),
    });
    if (this.conv) this.startConversation();
    if (this.pending().length || ls.get('pf')) this.flush();
    if (host.wantOpen) this.open();
  }

  private cfgKey = '';
  private rawCfg: unknown = null;
  private cfgN: Config = normalize({});
  /** The site's configuration, checked (the loader passes it on as the server sent it). */
  private cfg(): Config {
    const raw = this.h.cfg();
    if (raw !== this.rawCfg) {
      this.rawCfg = raw;
      this.cfgN = normalize(raw);
    }
    return this.cfgN;
  }

  private tr(key: Key, vars?: Record<string, string | number>) {
    return t(this.h.lang(), key, vars);
  }

  // ------------------------------------------------------------------------------------------
  // DOM

  private build() {
    const host = this.h;
    const cfg = this.cfg();
    const lang = host.lang();
    const name = cfg.site.name || this.tr('title');
    this.titleEl = h('h2', { cls: 'tt', id: 'parley-title', text: name });
    this.subEl = h('p', { cls: 'sub' });
    this.avatar = h('div', { cls: 'av', 'aria-hidden': 'true', text: Array.from(name.trim())[0]?.toUpperCase() || '?' });
    this.soundBtn = h('button', { type: 'button', cls: 'hb', onclick: () => this.toggleSound() });
    const minimize = h('button', { type: 'button', cls: 'hb', 'aria-label': this.tr('minimize'), title: this.tr('minimize'), onclick: () => this.close() }, icon('down'));
    const header = h('header', { cls: 'hd' }, this.avatar, h('div', { cls: 'hx' }, this.titleEl, this.subEl), this.soundBtn, minimize);

    this.earlier = h('button', { type: 'button', cls: 'earlier', hidden: true, text: this.tr('earlier'), onclick: () => this.loadEarlier() });
    this.list = h('ol', { cls: 'list', 'aria-label': this.tr('messages') });
    this.typingEl = h('div', { cls: 'typing', hidden: true, 'aria-hidden': 'true' },
      h('span', { cls: 'dots' }, h('i'), h('i'), h('i')), h('span', { cls: 'tl' }));
    this.queueEl = h('p', { cls: 'queue', role: 'status', hidden: true });
    this.scroller = h('div', { cls: 'scroll', tabindex: '-1' }, this.earlier, this.list, this.queueEl, this.typingEl);
    this.scroller.addEventListener('scroll', () => {
      const s = this.scroller;
      this.stickToBottom = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    }, { passive: true });
    this.banner = h('div', { cls: 'banner', role: 'status', hidden: true });

    this.input = h('textarea', {
      cls: 'in', rows: '1', dir: 'auto', maxlength: String(MAX_CHARS), enterkeyhint: 'send',
      placeholder: this.tr('placeholder'), 'aria-label': this.tr('placeholder'),
    });
    this.input.addEventListener('input', () => this.onInput());
    this.input.addEventListener('keydown', (e) => {
      // Enter sends, Shift+Enter breaks the line; never while an IME is composing (Chinese input).
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        this.submit();
      }
    });
    // Pasting a screenshot (or any file) attaches it; text (even with a picture of itself, as
    // office programs copy it) pastes as text.
    this.input.addEventListener('paste', (e) => {
      const files = Array.from(e.clipboardData?.files || []);
      if (files.length && !e.clipboardData!.types.includes('text/plain')) {
        e.preventDefault();
        this.attach(files);
      }
    });
    this.fileInput = h('input', { type: 'file', multiple: true, accept: ACCEPT, hidden: true, tabindex: '-1' });
    this.fileInput.addEventListener('change', () => {
      this.attach(Array.from(this.fileInput.files || []));
      this.fileInput.value = '';
    });
    const attachBtn = h('button', { type: 'button', cls: 'ab', 'aria-label': this.tr('attach'), title: this.tr('attach'), onclick: () => this.pick() }, icon('clip'));
    this.emojiBtn = h('button', { type: 'button', cls: 'cb', 'aria-label': this.tr('emoji'), title: this.tr('emoji'), 'aria-expanded': 'false', 'aria-haspopup': 'dialog', onclick: () => this.togglePicker() }, icon('smile'));
    this.sendBtn = h('button', { type: 'submit', cls: 'send', 'aria-label': this.tr('send'), title: this.tr('send') }, icon('send'));
    this.counterEl = h('div', { cls: 'count', 'aria-live': 'polite', hidden: true });
    this.picker = this.buildPicker();
    this.composer = h('form', { cls: 'comp', onsubmit: (e: Event) => { e.preventDefault(); this.submit(); } },
      this.picker, this.counterEl, this.input, this.fileInput, this.emojiBtn, attachBtn, this.sendBtn);
    this.notice = h('div', { cls: 'note', role: 'alert', hidden: true });
    this.dropZone = h('div', { cls: 'dz', hidden: true }, h('div', null, icon('clip'), h('span', { text: this.tr('dropHere') })));
    this.view = h('div', { cls: 'view' });
    this.announcer = h('div', { cls: 'sr', 'aria-live': 'polite', 'aria-atomic': 'true' });

    this.panel = h('section', {
      cls: 'panel', id: 'parley-panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'parley-title',
      lang, hidden: !this.isOpen,
    }, header, this.view, h('div', { cls: 'ft', 'aria-hidden': 'true', text: this.tr('powered') }), this.announcer, this.dropZone);
    this.panel.addEventListener('keydown', (e) => this.onPanelKey(e));
    // Files dragged over the chat: a drop zone over the whole panel.
    // (A file dropped on a form is ignored rather than opened by the browser in place of the page.)
    const dragged = (e: DragEvent) => !!e.dataTransfer && Array.from(e.dataTransfer.types).includes('Files');
    const chat = () => this.view.dataset.mode === 'chat';
    this.panel.addEventListener('dragover', (e) => {
      if (!dragged(e)) return;
      e.preventDefault();
      e.dataTransfer!.dropEffect = chat() ? 'copy' : 'none';
      this.dropZone.hidden = !chat();
    });
    this.dropZone.addEventListener('dragleave', () => { this.dropZone.hidden = true; });
    this.panel.addEventListener('drop', (e) => {
      this.dropZone.hidden = true;
      if (!dragged(e)) return;
      e.preventDefault();
      if (chat()) this.attach(Array.from(e.dataTransfer!.files));
    });
    host.box.append(this.panel);
    this.paintSound();
    this.paintHeader();
    this.paintQueue();
  }

  /** Language or configuration changed: build the panel again, keeping what the visitor typed. */
  private rebuild() {
    const draft = this.input.value;
    const focused = (this.h.root.activeElement as HTMLElement | null)?.getAttribute('name') || (this.h.root.activeElement === this.input ? 'in' : '');
    const form = this.view.querySelector('form.form');
    const values = form ? Array.from(form.querySelectorAll<HTMLInputElement>('[name]')).map((i) => [i.name, i.value]) : [];
    const mode = this.view.dataset.mode;
    this.unzoom?.();
    this.panel.remove();
    this.nodes.clear();
    for (const k of [...this.urls.keys()]) this.revoke(k);
    this.build();
    this.input.value = draft;
    // A form the visitor has begun stays as it was, whatever the new configuration says.
    this.renderView(this.formDirty ? mode : undefined);
    for (const [name, value] of values) {
      const el = this.view.querySelector<HTMLInputElement>(`[name="${name}"]`);
      if (el) el.value = value;
    }
    if (focused === 'in') this.input.focus();
    else if (focused) this.view.querySelector<HTMLElement>(`[name="${focused}"]`)?.focus();
  }

  private buildPicker(): HTMLElement {
    const cols = 8;
    const grid = h('div', { cls: 'grid', role: 'group', 'aria-label': this.tr('emojiPicker') });
    EMOJI.forEach((e, i) => grid.append(h('button', { type: 'button', cls: 'em', tabindex: i ? '-1' : '0', text: e, onclick: () => this.insertEmoji(e) })));
    grid.addEventListener('keydown', (ev) => {
      const buttons = Array.from(grid.children) as HTMLButtonElement[];
      const i = buttons.indexOf(ev.target as HTMLButtonElement);
      const moves: Record<string, number> = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
      let j = -1;
      if (ev.key in moves) j = i + moves[ev.key];
      else if (ev.key === 'Home') j = 0;
      else if (ev.key === 'End') j = buttons.length - 1;
      if (j < 0 || j >= buttons.length) return;
      ev.preventDefault();
      buttons[i].tabIndex = -1;
      buttons[j].tabIndex = 0;
      buttons[j].focus();
    });
    return h('div', { cls: 'picker', role: 'dialog', 'aria-label': this.tr('emojiPicker'), hidden: true }, grid);
  }

  private paintHeader() {
    const cfg = this.cfg();
    const name = cfg.site.name || this.tr('title');
    let agent = '';
    for (const e of this.events.values()) if (e.kind === 'assigned' && e.body?.agent?.name) agent = e.body.agent.name;
    this.titleEl.textContent = agent || name;
    this.avatar.textContent = Array.from((agent || name).trim())[0]?.toUpperCase() || '?';
    const available = cfg.online && cfg.open;
    this.subEl.textContent = agent ? name : this.tr(available ? 'online' : 'away');
    this.subEl.classList.toggle('on', available);
  }

  private muted(): boolean {
    return !!this.h.ls.get('m');
  }

  private paintSound() {
    const m = this.muted();
    this.soundBtn.replaceChildren(icon(m ? 'soundOff' : 'soundOn'));
    const label = this.tr(m ? 'soundOn' : 'soundOff');
    this.soundBtn.setAttribute('aria-label', label);
    this.soundBtn.title = label;
  }

  private toggleSound() {
    if (this.muted()) this.h.ls.del('m');
    else this.h.ls.set('m', 1);
    this.paintSound();
  }

  /** Which view the panel body shows: the chat, the pre-chat form or the offline form. */
  private renderView(keep?: string) {
    const cfg = this.cfg();
    // A conversation started meanwhile (another tab): the refused answers are moot.
    if (this.conv || this.h.ls.get('pf')) this.redo = null;
    // Refused answers come back in their form, before the messages that wait for it.
    const fresh = !this.conv && !this.h.ls.get('pf') && (!this.pending().length || !!this.redo);
    let mode = this.redo ? this.redo.form : fresh && (!cfg.online || !cfg.open) ? 'offline' : fresh && cfg.prechat.enabled && cfg.prechat.fields.length ? 'prechat' : 'chat';
    if (fresh && (keep === 'offline' || keep === 'prechat')) mode = keep;
    if (mode === 'chat') this.formDirty = false;
    if (this.view.dataset.mode === mode) {
      // Same view: never re-attach it, the visitor may be typing in it.
      if (mode === 'chat') this.paint();
      this.paintHeader();
      return;
    }
    this.view.dataset.mode = mode;
    if (mode === 'chat') {
      this.view.replaceChildren(this.scroller, this.banner, this.notice, this.composer);
      this.paint();
    } else {
      this.view.replaceChildren(this.buildForm(mode as 'offline' | 'prechat'));
    }
    this.paintHeader();
  }

  private buildForm(mode: 'prechat' | 'offline'): HTMLElement {
    const cfg = this.cfg();
    const lang = this.h.lang();
    const who = this.h.ls.get('id') || {};
    const fields = mode === 'prechat'
      ? cfg.prechat.fields.map((f) => ({ ...f, text: pick(f.label, lang, f.name) }))
      : [
        { name: 'name', type: 'text', required: false, text: this.tr('name') },
        { name: 'email', type: 'email', required: true, text: this.tr('email') },
        { name: 'message', type: 'textarea', required: true, text: this.tr('message') },
      ];
    const intro = mode === 'prechat' ? this.tr('prechatIntro') : pick(cfg.offline.message, lang, this.tr('awayDefault'));
    const form = h('form', { cls: 'form', novalidate: true, oninput: () => { this.formDirty = true; } });
    const inputs: (HTMLInputElement | HTMLTextAreaElement)[] = [];
    // An invitation's greeting, if one showed on this page, else the welcome text.
    const greeting = this.inv ? pick(this.inv.m, lang, '') : '';
    if (mode === 'prechat') form.append(h('div', { cls: 'bub', dir: 'auto', text: greeting || pick(cfg.welcome, lang, this.tr('welcome')) }));
    else form.append(greeting ? h('div', { cls: 'bub', dir: 'auto', text: greeting }) : '', h('h3', { cls: 'fh', text: this.tr('leaveMessage') }));
    form.append(h('p', { cls: 'intro', dir: 'auto', text: intro }));
    const redo = this.redo?.form === mode ? this.redo : null;
    fields.forEach((f, i) => {
      const id = `parley-f-${i}`;
      const auto = ({ name: 'name', email: 'email', tel: 'tel' } as Record<string, string>)[f.type === 'text' ? f.name : f.type];
      // The offline form's message is a message; every other answer is a form field.
      const max = String(mode === 'offline' && f.name === 'message' ? MAX_CHARS : MAX_FIELD);
      const attrs: Record<string, any> = { id, name: f.name, required: f.required, dir: 'auto', 'aria-describedby': `${id}-e`, autocomplete: auto || 'off', maxlength: max };
      const input = f.type === 'textarea' ? h('textarea', { ...attrs, rows: '4' }) : h('input', { ...attrs, type: f.type });
      const prefill = redo
        ? (mode === 'offline' && f.name === 'message' ? redo.message : redo.fields[f.name])
        : f.name === 'name' || f.name === 'email' ? who[f.name] : '';
      if (prefill) input.value = prefill;
      inputs.push(input);
      form.append(h('div', { cls: 'fld' },
        h('label', { for: id }, f.text, f.required ? h('span', { cls: 'req', text: ` (${this.tr('required')})` }) : null),
        input,
        h('div', { cls: 'err', id: `${id}-e` })));
    });
    const submit = h('button', { type: 'submit', cls: 'primary', text: this.tr(mode === 'prechat' ? 'startChat' : 'sendMessage') });
    // The server's word when it refused these answers.
    const why = h('p', { cls: 'err', role: 'alert', dir: 'auto', text: redo?.why || '' });
    form.append(why, submit);
    const check = () => {
      let firstBad: HTMLElement | null = null;
      const values: Record<string, string> = {};
      for (const input of inputs) {
        const value = input.value.trim();
        const problem = this.fieldProblem(input, value);
        const bad = !!problem;
        input.setAttribute('aria-invalid', String(bad));
        (form.querySelector(`#${input.id}-e`) as HTMLElement).textContent = problem;
        if (bad && !firstBad) firstBad = input;
        if (value) values[input.name] = value;
      }
      return { firstBad, values };
    };
    if (redo) check();
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const { firstBad, values } = check();
      why.textContent = '';
      if (firstBad) {
        firstBad.focus();
        return;
      }
      this.redo = null;
      const pf: PendingForm = { form: mode, fields: values };
      if (mode === 'offline') {
        pf.message = values.message;
        delete pf.fields.message;
      }
      this.h.ls.set('pf', pf);
      this.renderView();
      this.input.focus();
      this.flush();
    });
    return h('div', { cls: 'scroll fs' }, form);
  }

  // ------------------------------------------------------------------------------------------
  // Opening and closing

  /** Opens the panel; `auto` when the visitor did not ask (an invitation): focus stays where it is. */
  open(auto = false) {
    if (this.isOpen) return;
    this.isOpen = true;
    this.paintInvite(false);
    if (!auto) this.h.ls.set('wo', 1);
    this.panel.hidden = false;
    this.h.setOpen(true);
    this.h.launcher.setAttribute('aria-expanded', 'true');
    this.stickToBottom = true;
    this.render(true);
    this.stopFlash();
    this.updateUnread();
    // Agents may have come online (or left) since the page loaded.
    if (!this.conv) this.h.refresh();
    this.h.emit('open');
    if (auto) return;
    // On touch screens, focusing the field would pop the keyboard over the conversation.
    // A form's first field, or the message box (never a control in the list, such as a rating).
    const target = this.view.dataset.mode === 'chat' ? this.input : this.view.querySelector<HTMLElement>('input,textarea');
    if (matchMedia('(pointer: coarse)').matches) this.scroller.focus({ preventScroll: true });
    else (target || this.scroller).focus({ preventScroll: true });
  }

  close() {
    if (!this.isOpen) return;
    const hadFocus = this.panel.contains(this.h.root.activeElement);
    this.isOpen = false;
    this.togglePicker(false);
    this.panel.hidden = true;
    this.h.setOpen(false);
    this.h.launcher.setAttribute('aria-expanded', 'false');
    this.sendTyping(false);
    this.h.emit('close');
    if (hadFocus) this.h.launcher.focus();
  }

  // ------------------------------------------------------------------------------------------
  // Proactive invitations (timed by invite.ts)

  private invite(inv: Invitation) {
    this.inv = { m: inv.message, at: Date.now() };
    // A form the visitor has not touched shows the greeting too.
    if (this.view.dataset.mode !== 'chat' && !this.formDirty) {
      this.view.dataset.mode = '';
      this.renderView();
    }
    this.render(true);
    if (this.isOpen) return;
    // Someone who opened the chat before gets the panel, on larger screens; others a bubble.
    if (this.h.ls.get('wo') && !matchMedia('(max-width: 520px)').matches) this.open(true);
    else this.paintInvite(true);
  }

  private bubble = false;

  /** Shows (true) or hides (false) the invitation bubble; repaints it without an argument. */
  private paintInvite(show = this.bubble) {
    this.bubble = show && !!this.inv && !this.isOpen;
    const box = this.invBox;
    if (!box) return;
    if (!this.bubble) {
      const focused = box.contains(this.h.root.activeElement);
      box.replaceChildren();
      if (focused) this.h.launcher.focus();
      return;
    }
    const name = this.cfg().site.name || this.tr('support');
    const dismiss = () => {
      this.inv = null;
      this.paintInvite(false);
      this.render();
    };
    box.replaceChildren(h('div', {
      cls: 'inv', role: 'group', 'aria-label': this.tr('invitation', { name }),
      onkeydown: (e: KeyboardEvent) => { if (e.key === 'Escape') dismiss(); },
    },
    h('button', { type: 'button', cls: 'ib', onclick: () => this.open() },
      h('span', { cls: 'ih' }, h('span', { cls: 'iav', 'aria-hidden': 'true', text: initial(name) }), h('span', { cls: 'inm', text: name })),
      h('span', { cls: 'it', dir: 'auto', text: pick(this.inv!.m, this.h.lang(), '') }),
      h('span', { cls: 'ir', text: this.tr('reply') })),
    h('button', { type: 'button', cls: 'nx ix', 'aria-label': this.tr('close'), title: this.tr('close'), onclick: dismiss }, icon('x'))));
  }

  private onPanelKey(e: KeyboardEvent) {
    if (e.key === 'Escape') {
      e.stopPropagation();
      if (this.unzoom) this.unzoom();
      else if (!this.picker.hidden) {
        this.togglePicker(false);
        this.emojiBtn.focus();
      } else this.close();
      return;
    }
    // Full screen on small screens: keep Tab inside the panel, as in any modal view.
    if (e.key === 'Tab' && matchMedia('(max-width: 520px)').matches) {
      const items = Array.from(this.panel.querySelectorAll<HTMLElement>('button,textarea,input,a[href],[tabindex="0"]'))
        .filter((el) => !el.closest('[hidden],[inert]') && !(el as HTMLButtonElement).disabled);
      const first = items[0];
      const last = items[items.length - 1];
      const active = this.h.root.activeElement;
      if (e.shiftKey && active === first) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && active === last) {
        e.preventDefault();
        first.focus();
      }
    }
  }

  private togglePicker(show = this.picker.hidden) {
    this.picker.hidden = !show;
    this.emojiBtn.setAttribute('aria-expanded', String(show));
    if (show) {
      (this.picker.querySelector('[tabindex="0"]') as HTMLElement)?.focus();
      const away = (e: Event) => {
        if (!e.composedPath().some((n) => n === this.picker || n === this.emojiBtn)) {
          this.togglePicker(false);
          document.removeEventListener('pointerdown', away, true);
        }
      };
      document.addEventListener('pointerdown', away, true);
    }
  }

  private insertEmoji(e: string) {
    const el = this.input;
    el.focus();
    el.setRangeText(e, el.selectionStart ?? el.value.length, el.selectionEnd ?? el.value.length, 'end');
    this.togglePicker(false);
    this.onInput();
  }

  // ------------------------------------------------------------------------------------------
  // Composing and sending

  private onInput() {
    const el = this.input;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 132)}px`;
    const left = MAX_CHARS - el.value.length;
    this.counterEl.hidden = left > 400;
    this.counterEl.textContent = this.tr('charsLeft', { n: left });
    this.sendBtn.classList.toggle('ready', !!el.value.trim());
    if (!el.value.trim()) {
      this.sendTyping(false);
      return;
    }
    if (Date.now() - this.typingSentAt > 3000) this.sendTyping(true);
    clearTimeout(this.typingStop);
    this.typingStop = setTimeout(() => this.sendTyping(false), 4000);
  }

  private sendTyping(active: boolean) {
    clearTimeout(this.typingStop);
    if (!active && !this.typingSentAt) return;
    this.typingSentAt = active ? Date.now() : 0;
    const conv = this.conv;
    if (!conv || !this.link.live) return;
    if (!this.link.send({ type: 'typing', active })) {
      this.h.api(`/api/v1/conversations/${conv.id}/typing`, { method: 'POST', body: { active } }).catch(() => {});
    }
  }

  private submit() {
    const text = this.input.value.trim();
    if (!text || text.length > MAX_CHARS) return;
    const now = Date.now();
    const item: OutboxItem = { i: newMsgId(), t: text, a: now, n: now * 1000 + (counter % 1000) };
    // Durable first: the message exists in the outbox before any attempt to send it.
    this.keep(`o:${item.i}`, item);
    this.showNotice('');
    // Something new from the visitor: worth asking the server again, once.
    this.refused = null;
    this.input.value = '';
    this.onInput();
    this.sendTyping(false);
    this.stickToBottom = true;
    if (this.view.dataset.mode !== 'chat') this.renderView();
    this.render(true);
    this.flush();
  }

  // ------------------------------------------------------------------------------------------
  // Attachments

  private pick(replacing = '') {
    this.replacing = replacing;
    this.fileInput.click();
  }

  /**
   * Files picked, dropped or pasted: each over the site's limit is refused here; the others
   * go into the outbox like a message (their description durable, their bytes in memory).
   */
  private attach(files: File[]) {
    const max = this.cfg().attachments.max_bytes;
    const refused: string[] = [];
    let added = false;
    for (const file of files) {
      if (file.size > max) {
        refused.push(this.tr('tooLarge', { name: file.name, max: bytes(max) }));
        continue;
      }
      const now = Date.now();
      const i = newMsgId();
      const item: OutboxItem = { i, t: '', a: now, n: now * 1000 + (counter % 1000), f: { name: file.name || 'file', type: file.type, size: file.size }, p: this.page };
      this.blobs.set(i, file);
      this.keep(`o:${i}`, item);
      // The upload starts now, even while earlier messages are still being sent.
      if (this.conv && navigator.onLine) this.upload(this.conv, item).catch(() => {});
      added = true;
    }
    if (added && this.replacing) this.drop(`x:${this.replacing}`);
    if (added) this.refused = null;
    this.replacing = '';
    this.showNotice(refused.join('\n'));
    if (!added) return;
    this.stickToBottom = true;
    this.render(true);
    this.flush();
  }

  private showNotice(text: string) {
    this.notice.hidden = !text;
    this.notice.replaceChildren(
      icon('alert'),
      h('span', { text }),
      h('button', { type: 'button', cls: 'nx', 'aria-label': this.tr('close'), title: this.tr('close'), onclick: () => this.showNotice('') }, icon('x')),
    );
  }

  /** Drops an attachment that is pending, refused or lost (the visitor's choice). */
  private discard(i: string) {
    this.blobs.delete(i);
    this.xhrs.get(i)?.abort();
    this.failed.delete(i);
    this.drop(`o:${i}`);
    this.drop(`x:${i}`);
    this.render();
  }

  /** An attachment whose bytes are gone (the page that held them was closed or reloaded). */
  private lose(item: OutboxItem) {
    this.keep(`x:${item.i}`, item);
    this.drop(`o:${item.i}`);
    this.render();
  }

  /** Whether another page of this visitor still holds the bytes of this attachment. */
  private async holderAlive(item: OutboxItem): Promise<boolean> {
    const locks = (navigator as any).locks;
    if (!locks || !item.p || item.p === this.page) return false;
    const held = (await locks.query()).held || [];
    return held.some((l: { name: string }) => l.name === this.h.ls.full(`p:${item.p}`));
  }

  /** Uploads an attachment's bytes (once at a time); the item then carries the file's id. */
  private upload(conv: Conv, item: OutboxItem): Promise<Sent> {
    let p = this.uploads.get(item.i);
    if (!p) {
      p = this.put(conv, item).finally(() => this.uploads.delete(item.i));
      this.uploads.set(item.i, p);
    }
    return p;
  }

  private async put(conv: Conv, item: OutboxItem, again?: boolean): Promise<Sent> {
    const blob = this.blobs.get(item.i);
    if (!blob) return {};
    const token = (await this.h.session()).t;
    this.prog.set(item.i, 0);
    this.hints.delete(item.i);
    this.render();
    // XMLHttpRequest: fetch cannot report upload progress.
    const r = await new Promise<{ s: number; b: any }>((resolve) => {
      const x = new XMLHttpRequest();
      this.xhrs.set(item.i, x);
      x.open('POST', `${this.h.base}/api/v1/conversations/${conv.id}/files?name=${encodeURIComponent(item.f!.name)}`);
      x.setRequestHeader('authorization', `Bearer ${token}`);
      // text/markdown, text/x-log…: let the server go by the content (it keeps plain text).
      x.setRequestHeader('content-type', /^text\/(?!plain$|csv$)/.test(blob.type) || !blob.type ? 'application/octet-stream' : blob.type);
      // The server's refusals come in the widget's language.
      x.setRequestHeader('accept-language', this.h.lang());
      x.upload.onprogress = (e) => {
        if (!e.lengthComputable) return;
        this.prog.set(item.i, Math.floor((e.loaded / e.total) * 100));
        this.render();
      };
      x.onload = () => {
        let b = null;
        try { b = JSON.parse(x.responseText); } catch { /* not JSON */ }
        resolve({ s: x.status, b });
      };
      x.onerror = x.onabort = x.ontimeout = () => resolve({ s: 0, b: null });
      x.send(blob);
    });
    this.xhrs.delete(item.i);
    this.prog.delete(item.i);
    if (r.s === 401 && !again) {
      await this.h.session(token);
      return this.put(conv, item, true);
    }
    const cur = this.entry(`o:${item.i}`);
    // Removed by the visitor meanwhile: nothing more to do.
    if (!cur || !this.blobs.has(item.i)) return { ok: true };
    const file = r.b?.file;
    if (r.s === 201 && file?.id) {
      this.tries.delete(item.i);
      this.keep(`o:${item.i}`, { ...cur, f: { id: String(file.id), name: String(file.name), type: String(file.type), size: Number(file.size) || 0, image: file.image === true } });
      this.render();
      return { ok: true };
    }
    const msg = typeof r.b?.message === 'string' ? r.b.message : '';
    if (r.s === 404) return { code: 'not_found' };
    if (r.s >= 400 && r.s < 500 && r.s !== 408 && r.s !== 429) {
      // Refused for good (too large, not an allowed type, empty…): the server says why.
      this.blobs.delete(item.i);
      this.drop(`o:${item.i}`);
      this.failed.set(item.i, { t: '', a: item.a, err: r.b?.code || String(r.s), f: cur.f, m: msg });
      this.announce(`${cur.f!.name}: ${msg}`);
      this.render();
      return { ok: true };
    }
    const n = (this.tries.get(item.i) || 0) + 1;
    this.tries.set(item.i, n);
    if (msg && r.s === 429) this.hints.set(item.i, msg);
    return { retry: r.s === 429 ? Number(r.b?.retry_after_ms) || 5000 : Math.min(2000 * 2 ** n, 6e4) };
  }

  /** The blob of a posted file, fetched with the visitor's token (never in the URL). */
  private async fetchFile(id: string, again?: boolean): Promise<Blob> {
    const token = (await this.h.session()).t;
    const res = await fetch(`${this.h.base}/api/v1/conversations/${this.conv?.id}/files/${encodeURIComponent(id)}`, {
      headers: { authorization: `Bearer ${token}` },
      credentials: 'omit',
    });
    if (res.status === 401 && !again) {
      await this.h.session(token);
      return this.fetchFile(id, true);
    }
    if (!res.ok) throw res.status;
    return res.blob();
  }

  /** Saves a file under its (server-cleaned) name. */
  private async save(f: FileRef, key: string) {
    try {
      const blob = this.blobs.get(key) || (await this.fetchFile(f.id!));
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: f.name, hidden: true });
      this.panel.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 6e4);
    } catch {
      this.showNotice(this.tr('downloadFailed'));
    }
  }

  private revoke(key: string) {
    const url = this.urls.get(key);
    if (url) URL.revokeObjectURL(url);
    this.urls.delete(key);
  }

  /** An image, larger, over the panel; Escape or the close button returns to the thumbnail. */
  private zoom(src: string, f: FileRef, key: string, from: HTMLElement) {
    const others = Array.from(this.panel.children).filter((el) => el !== this.announcer) as HTMLElement[];
    const close = () => {
      box.remove();
      this.unzoom = null;
      for (const el of others) el.inert = false;
      from.focus();
    };
    const x = h('button', { type: 'button', cls: 'hb', 'aria-label': this.tr('close'), title: this.tr('close'), onclick: close }, icon('x'));
    const box = h('div', { cls: 'lb', role: 'dialog', 'aria-modal': 'true', 'aria-label': f.name },
      h('div', { cls: 'lbh' },
        h('span', { text: f.name }),
        h('button', { type: 'button', cls: 'hb', 'aria-label': `${this.tr('download')} ${f.name}`, title: this.tr('download'), onclick: () => this.save(f, key) }, icon('dl')),
        x),
      h('div', { cls: 'lbi' }, h('img', { src, alt: f.name })));
    box.addEventListener('click', (e) => { if ((e.target as HTMLElement).className === 'lbi') close(); });
    for (const el of others) el.inert = true;
    this.panel.append(box);
    this.unzoom = close;
    x.focus();
  }

  /** Stores an outbox or lost-attachment entry; in this page's memory when storage refuses it. */
  private keep(key: string, item: OutboxItem) {
    const ls = this.h.ls;
    ls.set(key, item);
    // ls.set fails quietly: read it back to know.
    if (JSON.stringify(ls.get(key)) === JSON.stringify(item)) this.mem.delete(key);
    else this.mem.set(key, item);
  }

  private drop(key: string) {
    this.h.ls.del(key);
    this.mem.delete(key);
  }

  private entry(key: string): OutboxItem | null {
    return this.mem.get(key) || this.h.ls.get<OutboxItem>(key);
  }

  /** The stored entries under a prefix merged with the ones only this page holds, oldest first. */
  private entries(prefix: string): OutboxItem[] {
    const keys = new Set([...this.h.ls.keys(prefix), ...[...this.mem.keys()].filter((k) => k.startsWith(prefix))]);
    return [...keys].map((k) => this.entry(k)).filter((x): x is OutboxItem => !!x?.i).sort((a, b) => a.n - b.n);
  }

  /** The outbox, oldest first: what waits to be sent and what was acknowledged but whose
   * server copy has not reached this page yet. */
  private outbox(): OutboxItem[] {
    return this.entries('o:');
  }

  /** What still has to be sent, oldest first. */
  private pending(): OutboxItem[] {
    return this.outbox().filter((o) => o.k == null);
  }

  /** The server stored it: shown as sent until its event arrives (the ack comes first). */
  private acknowledged(conv: Conv, item: OutboxItem, seq: number) {
    const key = `o:${item.i}`;
    if (this.cursor >= seq) return this.drop(key);
    const acked = { ...item, k: seq, c: conv.id };
    this.keep(key, acked);
    // Not stored (storage full): the stored copy still reads as unsent and would be sent
    // again by the other tabs and the next page, so it goes.
    if (this.mem.has(key)) this.h.ls.del(key);
    // This page keeps its own copy too: another tab may drop the shared one (its event came
    // there first) before this page has the event.
    this.mem.set(key, acked);
  }

  /** The conversation's log was replaced (a restore): its seqs say nothing of what was read,
   * and what was acknowledged in the old log may not be in the new one, so it goes again (the
   * server answers a duplicate for what it has). */
  private logReplaced() {
    this.forgetReads();
    let again = false;
    for (const o of this.outbox()) {
      if (o.k == null || o.c !== this.conv?.id) continue;
      this.keep(`o:${o.i}`, { ...o, k: undefined, c: undefined });
      again = true;
    }
    if (again) setTimeout(() => this.flush());
  }

  /** Drops acknowledged entries once their event is here, lies in history not loaded (the
   * cursor passed it), or belongs to another conversation. */
  private settleAcknowledged() {
    for (const o of this.outbox()) {
      if (o.k == null) continue;
      // Until history is loaded (after a reset) the cursor runs ahead of the events held.
      if (o.c === this.conv?.id && !(this.historyLoaded && this.cursor >= o.k)) continue;
      const key = `o:${o.i}`;
      this.mem.delete(key);
      // The stored copy only if it is still this acknowledgement (another tab may have made it
      // pending again).
      if (this.h.ls.get<OutboxItem>(key)?.k === o.k) this.h.ls.del(key);
    }
  }

  /** Attachments that can no longer be uploaded, until the visitor removes them or picks them again. */
  private lost(): OutboxItem[] {
    return this.entries('x:').filter((x) => x.f);
  }

  /** Sends what the outbox holds, in order, creating the conversation first if needed. */
  async flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = true;
    clearTimeout(this.flushTimer);
    try {
      do {
        this.flushAgain = false;
        if (!navigator.onLine || this.refused) break;
        if (!this.pending().length && !this.h.ls.get('pf')) break;
        const locks = (navigator as any).locks;
        const run = async () => {
          if (await this.ensureConversation()) await this.drain();
        };
        let ran = true;
        if (locks) {
          ran = await locks.request(this.h.ls.full('send'), { ifAvailable: true }, async (lock: unknown) => {
            if (!lock) return false;
            await run();
            return true;
          });
        } else await run();
        if (!ran) this.retryFlush(2000 + Math.random() * 2000); // another tab is sending
      } while (this.flushAgain);
    } catch {
      this.retryFlush(3000);
    } finally {
      this.flushing = false;
    }
    this.render();
  }

  private retryFlush(ms: number) {
    clearTimeout(this.flushTimer);
    this.flushTimer = setTimeout(() => this.flush(), ms);
  }

  private async ensureConversation(): Promise<boolean> {
    const ls = this.h.ls;
    const stored = ls.get<Conv>('c');
    if (stored) {
      if (!this.conv || this.conv.id !== stored.id) this.adopt(stored);
      return true;
    }
    // Storage refused to keep it (full): the conversation this page holds is the one.
    if (this.conv) return true;
    const pf = ls.get<PendingForm>('pf');
    // Refused answers wait to be corrected: the messages behind them are not to start a
    // conversation without them.
    if (!pf && this.redo) return false;
    // One id per intended creation, kept until it succeeded: a retry after a lost answer (or
    // a reload meanwhile) gets the same conversation, never a second one. Also kept in the
    // page, for when storage refuses it.
    const rid = ls.get<string>('cr') || this.creation || newMsgId();
    this.creation = rid;
    ls.set('cr', rid);
    // The language the visitor chose (setLocale), else the browser's, for routing rules.
    const body: Record<string, unknown> = { ...pf, page_url: location.href, language: ls.get('l') || navigator.language, client_req_id: rid };
    if (this.h.department) body.department = this.h.department;
    // A refused session rejects with the server's answer: a refusal like the others.
    // Bounded: a creation hung on a dead connection would hold the send lock of every tab.
    // Given up, it goes again with the same client_req_id.
    const r = await bounded(this.h.api, '/api/v1/conversations', { method: 'POST', body }).catch((e) => e);
    if ((r?.s === 200 || r?.s === 201) && r.b?.conversation) {
      const conv = { id: r.b.conversation, e: r.b.epoch };
      ls.set('c', conv);
      ls.del('pf');
      ls.del('cr');
      this.creation = '';
      this.adopt(conv);
      return true;
    }
    const no = refusal(r);
    if (no) this.refuse(no, pf);
    else this.retryFlush(r?.s === 429 ? Number(r.b?.retry_after_ms) || 2000 : r?.s ? 5000 : 3000);
    return false;
  }

  /**
   * The server refused, for good, to start the conversation (or to give the visitor a
   * session): no more retries here; the visitor learns why and loses nothing they wrote.
   */
  private refuse(no: Refusal, pf: PendingForm | null) {
    if (pf && FORM_FAULT.includes(no.code)) {
      // The answers themselves: their form comes back with them, to be corrected; the stored
      // copy goes (it would only be refused again). Waiting messages follow the new answers.
      this.h.ls.del('pf');
      this.redo = { ...pf, fields: { ...pf.fields }, why: no.msg };
      const had = this.panel.contains(this.h.root.activeElement);
      this.view.dataset.mode = '';
      this.renderView();
      if (had) this.view.querySelector<HTMLElement>('[aria-invalid=true],input,textarea')?.focus();
      return;
    }
    // Kept in the outbox (a later page asks once more), shown as not sent, with the reason.
    this.refused = no;
    this.showNotice(no.msg);
    this.render();
  }

  /** What is wrong with a form answer, in words the visitor can act on; '' when nothing. */
  private fieldProblem(input: HTMLInputElement | HTMLTextAreaElement, value: string): string {
    if (input.required && !value) return this.tr('missing');
    // maxlength stops typing, not a value put back into the field (refused answers).
    if (value.length > input.maxLength) return this.tr('tooLong', { n: input.maxLength });
    if (input.checkValidity()) return '';
    return input.type === 'email' ? this.tr('badEmail') : this.tr('invalid');
  }

  /** Sends outbox items one at a time, each waiting for its ack, so they arrive in order. */
  private async drain() {
    for (;;) {
      const conv = this.conv;
      const box = this.pending();
      const item = box[0];
      if (!conv || !item) return;
      // Uploads start at once, side by side; the files are posted in order.
      for (const o of box) if (o.f && !o.f.id && this.blobs.has(o.i)) this.upload(conv, o);
      let r: Sent;
      if (item.f && !item.f.id) {
        if (!this.blobs.has(item.i)) {
          // Its bytes are in another tab that is still open (that tab sends it), or gone.
          if (await this.holderAlive(item)) {
            this.retryFlush(3000);
            return;
          }
          this.lose(item);
          continue;
        }
        r = await this.upload(conv, item);
        if (r.ok) continue; // it has an id now (or was refused, or removed): next
      } else r = await this.sendOne(conv, item);
      if (r.code === 'file_gone') {
        // The upload expired (or belongs to an earlier conversation): upload it again if we
        // still hold its bytes.
        if (this.blobs.has(item.i) && !this.tries.has(`g${item.i}`)) {
          this.tries.set(`g${item.i}`, 1);
          this.keep(`o:${item.i}`, { ...item, f: { ...item.f!, id: undefined } });
        } else this.lose(item);
        continue;
      }
      if (r.ok) {
        this.acknowledged(conv, item, r.seq || 0);
        this.blobs.delete(item.i);
      } else if (r.code && PERMANENT.includes(r.code)) {
        this.drop(`o:${item.i}`);
        this.blobs.delete(item.i);
        this.failed.set(item.i, { t: item.t, a: item.a, err: r.code, f: item.f, m: r.msg });
      } else {
        if (r.code === 'not_found') this.gone();
        else if (r.stop) this.refuse(r.stop, null);
        else if (r.retry !== undefined) this.retryFlush(r.retry);
        return;
      }
      this.render();
    }
  }

  private sendOne(conv: Conv, item: OutboxItem): Promise<Sent> {
    const body = item.f ? { client_msg_id: item.i, file: item.f.id } : { client_msg_id: item.i, text: item.t };
    const frame = { type: 'send', ...body };
    if (this.link.mode === 'ws') {
      if (!this.link.live) return Promise.resolve({});
      return new Promise((resolve) => {
        const timer = setTimeout(() => done({ retry: 1000 }), ACK_WITHIN);
        const done = (r: Sent) => {
          clearTimeout(timer);
          this.waiters.delete(item.i);
          resolve(r);
        };
        this.waiters.set(item.i, { resolve: done });
        if (!this.link.send(frame)) done({});
      });
    }
    // Bounded, as the socket's ack is (ACK_WITHIN): given up, it goes again with the same client_msg_id.
    return bounded(this.h.api, `/api/v1/conversations/${conv.id}/messages`, { method: 'POST', body })
      .then((r) => {
        if (r.s === 200 && r.b?.type === 'ack') {
          this.onFrame(r.b);
          return { ok: true, seq: Number(r.b.seq) || 0 };
        }
        // A refusal naming the message (file_not_found): its file, not the conversation, is unknown.
        const code = r.s === 404 && r.b?.client_msg_id ? 'file_gone' : r.b?.code || String(r.s);
        return { code, msg: r.b?.message, retry: code === 'rate_limited' ? Number(r.b?.retry_after_ms) || 1000 : 3000 };
      }, (e) => ({ retry: 3000, stop: refusal(e) || undefined }));
  }

  // ------------------------------------------------------------------------------------------
  // The conversation

  /** The seq up to which the visitor has seen the conversation (kept with its epoch). */
  private seenBefore(): number {
    const q = this.h.ls.get('q');
    return this.conv && q && q.e === this.conv.e ? Number(q.s) || 0 : 0;
  }

  /** Take up a conversation (ours, created here or in another tab). */
  private adopt(conv: Conv) {
    const prev = this.conv;
    this.conv = conv;
    if (prev?.id !== conv.id) {
      this.dropLog(0);
      // Another tab may have shown it already.
      this.seen = this.seenBefore();
      this.queuePlace(null);
      this.startConversation();
    } else if (prev.e !== conv.e) {
      // Another tab saw the log replaced (a restore). This tab's own link would resume from its
      // old cursor in the new log without a `reset`, so it starts over as a reset does, from
      // where that tab got to.
      this.logReplaced();
      this.reloadFrom(this.seenBefore());
    }
  }

  private async startConversation() {
    this.renderView();
    await this.loadHistory();
    this.link.start();
  }

  /** The latest page of history (or the page before `before`). */
  private async loadHistory(before?: number): Promise<void> {
    const conv = this.conv;
    const gen = this.logGen;
    if (!conv) return;
    let r;
    try {
      r = await bounded(this.h.api, `/api/v1/conversations/${conv.id}/history?limit=50${before ? `&before=${before}` : ''}`);
    } catch {
      return;
    }
    if (this.conv !== conv || gen !== this.logGen) return;
    if (r.s === 404) {
      this.gone();
      return;
    }
    if (r.s !== 200 || !r.b) return;
    const b = r.b;
    if (!before) {
      if (b.epoch !== conv.e) {
        this.logReplaced();
        conv.e = b.epoch;
        this.h.ls.set('c', conv);
        this.dropLog(0);
      }
      this.cursor = Math.max(this.cursor, Number(b.head) || 0);
      this.saveCursor();
      this.historyLoaded = true;
    }
    this.nextBefore = b.next_before ?? null;
    const seen = this.seen;
    for (const e of b.events || []) this.addEvent(e, !before && e.seq > seen && e.author?.role !== 'visitor');
    this.render(!before);
    this.paintQueue();
    this.updateUnread(true);
  }

  /**
   * Loads the latest history, again with backoff while it fails, until it is here: nothing else
   * brings back the events a reset dropped while the link stays live. A newer load, another
   * conversation or the conversation gone ends it.
   */
  private async loadLatest() {
    const run = ++this.latestLoads;
    const conv = this.conv;
    const wanted = () => this.conv === conv && run === this.latestLoads && !this.historyLoaded;
    for (let delay = 1e3; wanted(); delay = Math.min(delay * 2, 30e3)) {
      await this.loadHistory();
      if (wanted()) await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random() / 2)));
    }
  }

  private async loadEarlier() {
    if (this.nextBefore == null) return;
    const s = this.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    await this.loadHistory(this.nextBefore);
    s.scrollTop = s.scrollHeight - fromBottom;
  }

  private saveCursor() {
    if (this.conv) this.h.ls.set('q', { s: this.cursor, e: this.conv.e });
  }

  /** The conversation is not ours (any more): start over, keeping the outbox. */
  private gone() {
    this.link.stop();
    this.conv = null;
    for (const k of ['c', 'q']) this.h.ls.del(k);
    this.dropLog(0);
    this.forgetReads();
    this.queuePlace(null);
    this.renderView();
    this.updateUnread();
    if (this.pending().length) this.flush();
  }

  private addEvent(e: Ev, live: boolean) {
    if (!e || typeof e.seq !== 'number' || this.events.has(e.seq)) return;
    this.events.set(e.seq, e);
    this.seen = Math.max(this.seen, e.seq);
    if (e.seq > this.cursor) {
      this.cursor = e.seq;
      this.saveCursor();
    }
    if (e.kind === 'closed') this.status = 'closed';
    if (e.kind === 'reopened') this.status = 'open';
    if (e.kind === 'assigned') this.paintHeader();
    // An agent took the conversation (or it was closed): nobody waits any more. Older events
    // of a history load say nothing about now; the server is asked when the link goes live.
    if (live && (e.kind === 'assigned' || e.kind === 'closed')) this.queuePlace(null);
    if (e.kind !== 'message' && e.kind !== 'file') return;
    const cid = e.client_msg_id;
    if (cid && e.author?.role === 'visitor') {
      this.drop(`o:${cid}`);
      this.failed.delete(cid);
      this.blobs.delete(cid);
    }
    if (e.author?.role === 'agent') this.showTyping(null);
    if (live) {
      this.live.add(e.seq);
      const f = e.body?.file;
      this.h.emit('message', {
        seq: e.seq, text: e.body?.text, at: e.at, author: { role: e.author?.role, name: e.author?.name },
        ...(f ? { file: { name: f.name, type: f.type, size: f.size, image: f.image } } : {}),
      });
      if (e.author?.role !== 'visitor') {
        this.announce(this.tr('announce', { name: this.authorName(e), text: e.body?.text || (f ? `${this.tr(f.image ? 'image' : 'file')}: ${f.name}` : '') }));
      }
    }
  }

  private onFrame(f: any) {
    if (!f || typeof f !== 'object') return;
    switch (f.type) {
      case 'welcome':
        this.status = f.status || 'open';
        this.applyReads(f.reads);
        break;
      case 'event':
        this.addEvent(f, true);
        break;
      case 'events':
        if (this.conv && f.epoch && f.epoch !== this.conv.e) {
          this.reset(f);
          return;
        }
        for (const e of f.events || []) this.addEvent(e, true);
        this.applyReads(f.reads);
        // Long-polling carries no queue frames: ask again with each answer while waiting (the
        // first answer makes the link live, which asks already).
        if (this.place != null && this.link.mode === 'poll' && this.link.live) this.fetchPlace();
        break;
      case 'queue':
        this.queuePlace(Number(f.position) > 0 ? Number(f.position) : null);
        return;
      case 'ack':
        this.waiters.get(f.client_msg_id)?.resolve({ ok: true, seq: Number(f.seq) || 0 });
        break;
      case 'error':
        if (f.client_msg_id && this.waiters.has(f.client_msg_id)) {
          // A send refused with not_found (the socket is signed in): its file is unknown.
          this.waiters.get(f.client_msg_id)!.resolve({ code: f.code === 'not_found' || f.code === 'file_not_found' ? 'file_gone' : f.code, msg: f.message, retry: f.code === 'rate_limited' ? Number(f.retry_after_ms) || 1000 : 3000 });
        } else if (f.code === 'not_found') this.gone();
        return;
      case 'typing':
        if (f.participant?.role === 'agent') this.showTyping(f.active ? f.participant.name || this.tr('support') : null);
        return;
      case 'read':
        if (typeof f.participant === 'string' && f.participant.startsWith('a_')) this.agentRead = Math.max(this.agentRead, Number(f.seq) || 0);
        break;
      case 'reset':
        this.reset(f);
        return;
      default:
        return;
    }
    this.render();
    this.updateUnread();
  }

  private applyReads(reads: unknown) {
    if (!reads || typeof reads !== 'object') return;
    for (const [id, seq] of Object.entries(reads as Record<string, number>)) {
      if (id.startsWith('a_')) this.agentRead = Math.max(this.agentRead, Number(seq) || 0);
    }
  }

  /** The server cannot replay what we missed: drop what we hold and load history again. */
  private reset(f: { epoch: string; head: number }) {
    const conv = this.conv;
    if (!conv) return;
    // Another log (not just a gap too large to replay): its seqs say nothing of what was read
    // or acknowledged.
    if (f.epoch !== conv.e) this.logReplaced();
    conv.e = f.epoch;
    this.h.ls.set('c', conv);
    this.reloadFrom(Number(f.head) || 0);
  }

  /** Drops the events held, goes on live from `head` and loads the latest history again. */
  private reloadFrom(head: number) {
    this.dropLog(head);
    this.saveCursor();
    this.loadLatest();
  }

  /** Forgets the events held and where history paging was; the cursor starts again at `cursor`. */
  private dropLog(cursor: number) {
    this.logGen++;
    this.events.clear();
    this.cursor = cursor;
    this.historyLoaded = false;
    this.nextBefore = null;
  }

  private onState(s: LinkState) {
    clearTimeout(this.bannerTimer);
    // The socket that carried a send is gone: its ack will not come. The message stays in
    // the outbox and goes again, with the same client_msg_id, once the link is live.
    if (s !== 'live') for (const w of [...this.waiters.values()]) w.resolve({});
    if (s === 'live') {
      this.banner.hidden = true;
      if (!this.historyLoaded) this.loadLatest();
      this.flush();
      this.updateUnread();
      this.fetchPlace();
    } else if (s === 'offline') {
      this.showBanner('offlineBanner');
    } else if (s === 'connecting') {
      // Short blips pass unnoticed; a real outage shows after a few seconds.
      this.bannerTimer = setTimeout(() => this.showBanner(navigator.onLine ? 'reconnecting' : 'offlineBanner'), 3000);
    }
    this.render();
  }

  // ------------------------------------------------------------------------------------------
  // The waiting queue

  private queuePlace(n: number | null) {
    this.place = n;
    this.placeNews++;
    this.paintQueue();
  }

  /**
   * Where the conversation waits, asked when the link goes live: the server tells the place
   * with `queue` frames when it changes, but does not keep them for sockets that connect later.
   */
  private async fetchPlace() {
    const conv = this.conv;
    const news = this.placeNews;
    if (!conv) return;
    try {
      const r = await this.h.api(`/api/v1/conversations/${conv.id}/queue`);
      if (r.s === 200 && this.conv === conv && news === this.placeNews) this.queuePlace(Number(r.b?.position) > 0 ? Number(r.b.position) : null);
    } catch { /* asked again when the link next goes live */ }
  }

  private paintQueue() {
    // A message left with the offline form waits for the team's return, not in a line.
    const offline = [...this.events.values()].some((e) => e.kind === 'created' && e.body?.form === 'offline');
    const show = this.place != null && !offline;
    this.queueEl.hidden = !show;
    this.queueEl.textContent = show ? this.tr('queuePosition', { n: this.place! }) : '';
    if (this.stickToBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  private showBanner(key: Key) {
    this.banner.replaceChildren(icon('offline'), h('span', { text: this.tr(key) }));
    this.banner.hidden = false;
  }

  private showTyping(name: string | null) {
    if (this.agentTyping) clearTimeout(this.agentTyping.timer);
    this.agentTyping = null;
    if (name) {
      // A lost "stopped typing" must not leave the dots forever.
      this.agentTyping = { name, timer: setTimeout(() => this.showTyping(null), 8000) };
      (this.typingEl.lastChild as HTMLElement).textContent = this.tr('typing', { name });
    }
    const atBottom = this.stickToBottom;
    this.typingEl.hidden = !name;
    if (atBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  private announce(text: string) {
    this.announcer.textContent = '';
    setTimeout(() => { this.announcer.textContent = text; }, 50);
  }

  // ------------------------------------------------------------------------------------------
  // Unread, read markers, notifications

  private visibleOpen(): boolean {
    return this.isOpen && !document.hidden;
  }

  /** Read and notification marks (seqs) are of one conversation and epoch: a new one starts afresh. */
  private forgetReads() {
    this.agentRead = this.sentRead = this.seen = 0;
    this.live.clear();
    for (const k of ['r', 'n']) this.h.ls.del(k);
  }

  /** A mark (`r` read, `n` notified) of the current conversation and epoch; 0 for another's. */
  private mark(key: 'r' | 'n'): number {
    const m = this.h.ls.get(key);
    const conv = this.conv;
    // A bare number was written by an earlier version, for the conversation held then.
    if (typeof m === 'number') return m;
    return conv && m && m.c === conv.id && m.e === conv.e ? Number(m.s) || 0 : 0;
  }

  private setMark(key: 'r' | 'n', seq: number) {
    if (this.conv) this.h.ls.set(key, { c: this.conv.id, e: this.conv.e, s: seq });
  }

  private updateUnread(quiet = false) {
    const ls = this.h.ls;
    let readTo = this.mark('r');
    let max = 0;
    for (const seq of this.events.keys()) max = Math.max(max, seq);
    if (this.visibleOpen() && max > readTo) {
      readTo = max;
      this.setMark('r', max);
    }
    if (this.visibleOpen() && max > this.sentRead && this.conv && this.link.live) {
      this.sentRead = max;
      if (!this.link.send({ type: 'read', seq: max })) {
        this.h.api(`/api/v1/conversations/${this.conv.id}/read`, { method: 'POST', body: { seq: max } }).catch(() => { this.sentRead = 0; });
      }
    }
    let unread = 0;
    let newest: Ev | null = null;
    for (const e of this.events.values()) {
      // Agents' and automated messages; never translations, ratings or other events.
      if ((e.kind === 'message' || e.kind === 'file') && e.author && e.author.role !== 'visitor' && e.seq > readTo) {
        unread++;
        if (!newest || e.seq > newest.seq) newest = e;
      }
    }
    ls.set('u', unread);
    // The loader fires the 'unread' event when the count changes.
    this.h.setBadge(unread);
    this.unread = unread;
    const notified = this.mark('n');
    if (newest && newest.seq > notified) {
      this.setMark('n', newest.seq);
      // Live arrivals, or ones the loader woke us for; not what a reload merely shows again.
      if (!quiet || this.live.has(newest.seq) || !this.isOpen) this.notify(newest, unread);
    }
    if (!unread) this.stopFlash();
  }

  private notify(e: Ev, unread: number) {
    if (this.visibleOpen()) return;
    if (this.leader && !this.muted()) this.chime();
    this.flash(unread, this.authorName(e));
  }

  /** Who wrote a message of the team: the agent, the site for automated ones. */
  private authorName(e: Ev): string {
    return e.author?.name || (e.author?.role === 'system' && this.cfg().site.name) || this.tr('support');
  }

  private chime() {
    try {
      const ac = (this.audio ||= new (window.AudioContext || (window as any).webkitAudioContext)());
      if (ac.state !== 'running') return;
      const now = ac.currentTime;
      [[880, 0], [1318.5, 0.13]].forEach(([freq, at]) => {
        const o = ac.createOscillator();
        const g = ac.createGain();
        o.frequency.value = freq;
        g.gain.setValueAtTime(0.0001, now + at);
        g.gain.exponentialRampToValueAtTime(0.15, now + at + 0.02);
        g.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.4);
        o.connect(g).connect(ac.destination);
        o.start(now + at);
        o.stop(now + at + 0.45);
      });
    } catch { /* no audio */ }
  }

  private flash(n: number, name: string) {
    const text = `${this.tr('titleFlash', { n })} · ${name}`;
    if (!this.flashTimer) this.plainTitle = document.title;
    clearInterval(this.flashTimer);
    let on = false;
    let ticks = document.hidden ? Infinity : 8;
    this.flashTimer = setInterval(() => {
      // The page may change its own title meanwhile (single-page apps).
      if (document.title !== text && document.title !== this.plainTitle) this.plainTitle = document.title;
      on = !on;
      document.title = on ? text : this.plainTitle;
      if (--ticks <= 0 && !on) this.stopFlash();
    }, 1000);
  }

  private stopFlash() {
    if (!this.flashTimer) return;
    clearInterval(this.flashTimer);
    this.flashTimer = 0;
    document.title = this.plainTitle;
  }

  // ------------------------------------------------------------------------------------------
  // Other tabs

  private onStorage(e: StorageEvent) {
    const ls = this.h.ls;
    if (!e.key) return;
    if (e.key.startsWith(ls.full('o:')) || e.key.startsWith(ls.full('x:'))) {
      this.render();
      // Another tab queued a message; if that tab goes away before sending, we send it.
      if (e.newValue) this.retryFlush(5000);
    } else if (e.key === ls.full('c')) {
      const c = ls.get<Conv>('c');
      if (c) this.adopt(c);
      else if (this.conv) this.gone();
    } else if (e.key === ls.full('r')) {
      this.updateUnread();
    } else if (e.key === ls.full('pf')) {
      this.renderView();
    } else if (e.key === ls.full('m')) {
      this.paintSound();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Rendering the message list

  private items(): Item[] {
    const cfg = this.cfg();
    const lang = this.h.lang();
    const out: Item[] = [];
    const me = this.h.ls.get('s')?.v;
    if (this.nextBefore == null) {
      out.push({ key: 'welcome', kind: 'msg', who: 'site', name: cfg.site.name || this.tr('support'), text: pick(cfg.welcome, lang, this.tr('welcome')), welcome: true });
    }
    const seen = new Set<string>();
    const events = [...this.events.values()].sort((a, b) => a.seq - b.seq);
    // Translations into the visitor's language, by the seq of the message they translate (one
    // that worked wins over one that failed); the closing that asks for a rating, if it is the
    // latest change of status, and the rating given since.
    const translations = new Map<number, Ev>();
    let closedAt = 0;
    let score = 0;
    for (const e of events) {
      const b = e.body || {};
      if (e.kind === 'translation' && primary(b.to) === primary(lang) && (b.text || !translations.get(b.of)?.body?.text)) translations.set(b.of, e);
      if (e.kind === 'closed' || e.kind === 'reopened') {
        closedAt = e.kind === 'closed' ? e.seq : 0;
        score = 0;
      }
      if (e.kind === 'rated' && closedAt && b.score >= 1 && b.score <= 5) score = b.score;
    }
    // The invitation's greeting, where it showed in time.
    const greeting: Item | null = this.inv && { key: 'inv', kind: 'msg', who: 'site', name: cfg.site.name || this.tr('support'), text: pick(this.inv.m, lang, ''), welcome: true };
    let greeted = !greeting;
    for (const e of events) {
      if (!greeted && e.at > this.inv!.at) {
        out.push(greeting!);
        greeted = true;
      }
      const base = { seq: e.seq, at: e.at };
      const file = e.kind === 'file' ? e.body?.file : undefined;
      if (e.kind === 'message' || (file && typeof file.id === 'string')) {
        const mine = e.author?.role === 'visitor' && (!me || e.author.id === me);
        // Agents' replies only: automated ones are written in the visitor's language already.
        const tb = e.author?.role === 'agent' && e.kind === 'message' ? translations.get(e.seq)?.body : undefined;
        if (e.client_msg_id) seen.add(e.client_msg_id);
        out.push({
          ...base,
          key: mine && e.client_msg_id ? e.client_msg_id : `s${e.seq}`,
          kind: 'msg',
          mine,
          who: e.author?.id,
          name: mine ? this.tr('you') : this.authorName(e),
          text: String(e.body?.text ?? ''),
          file: file && { id: file.id, name: String(file.name ?? ''), type: String(file.type ?? ''), size: Number(file.size) || 0, image: file.image === true },
          status: mine ? (this.agentRead >= e.seq ? 'read' : 'sent') : undefined,
          auto: e.author?.role === 'system',
          tr: tb && (typeof tb.text === 'string' && tb.text.trim() && !tb.failed ? { text: tb.text, from: tb.from } : tb.failed ? { failed: true } : undefined),
        });
      } else if (e.kind === 'assigned' && e.body?.agent?.name) {
        out.push({ ...base, key: `s${e.seq}`, kind: 'sys', text: this.tr('joined', { name: e.body.agent.name }) });
      } else if (e.kind === 'closed') {
        out.push({ ...base, key: `s${e.seq}`, kind: 'sys', text: this.tr('closed') });
        // Closed, not reopened since: ask for a rating (or thank for it).
        if (e.seq === closedAt && this.conv) {
          score ||= this.rated.get(e.seq) || 0;
          out.push({ key: `${score ? 't' : 'r'}${e.seq}`, kind: 'rate', seq: e.seq, score, text: '' });
        }
      } else if (e.kind === 'created' && e.body?.form === 'offline') {
        out.push({ ...base, key: `s${e.seq}`, kind: 'sys', text: this.tr('thanks') });
      }
    }
    if (!greeted) out.push(greeting!);
    const waiting = this.link?.live && navigator.onLine ? 'sending' : 'queued';
    // Refused for good: what waits is not being sent; it says why.
    const no = this.refused;
    const pf = this.h.ls.get<PendingForm>('pf');
    if (pf?.message) {
      out.push({ key: 'pf', kind: 'msg', mine: true, who: 'me', name: this.tr('you'), text: pf.message, at: Date.now(), status: no ? 'failed' : navigator.onLine ? 'sending' : 'queued', note: no?.msg });
    }
    const mine = { kind: 'msg', mine: true, who: me || 'me', name: this.tr('you') } as const;
    for (const o of this.outbox()) {
      if (o.k != null && o.c !== this.conv?.id) continue;
      if (!seen.has(o.i)) {
        const held = o.k == null && no;
        out.push({
          ...mine, key: o.i, text: o.t, at: o.a, status: o.k != null ? 'sent' : held ? 'failed' : this.conv ? waiting : navigator.onLine ? 'sending' : 'queued',
          file: o.f, prog: this.prog.get(o.i), note: held ? no.msg : this.hints.get(o.i), acts: o.f && !o.f.id ? 'rm' : undefined,
        });
      }
    }
    for (const [i, f] of this.failed) {
      if (!seen.has(i)) out.push({ ...mine, key: i, text: f.t, at: f.a, status: 'failed', err: f.err, file: f.f, note: f.m, acts: f.f && 'rm' });
    }
    for (const o of this.lost()) {
      if (!seen.has(o.i)) out.push({ ...mine, key: o.i, text: '', at: o.a, status: 'failed', file: o.f, note: this.tr('lost'), acts: 'lost' });
    }
    // Day separators between messages of different days.
    const withDays: Item[] = [];
    let lastAt = 0;
    for (const it of out) {
      if (it.at && (!lastAt || !sameDay(lastAt, it.at))) {
        withDays.push({ key: `d${new Date(it.at).toDateString()}`, kind: 'day', text: this.dayLabel(it.at) });
      }
      if (it.at) lastAt = it.at;
      withDays.push(it);
    }
    return withDays;
  }

  private dayLabel(at: number): string {
    const now = Date.now();
    if (sameDay(at, now)) return this.tr('today');
    if (sameDay(at, now - 864e5)) return this.tr('yesterday');
    const d = new Date(at);
    return d.toLocaleDateString(this.h.lang(), { month: 'short', day: 'numeric', ...(d.getFullYear() !== new Date().getFullYear() ? { year: 'numeric' } : {}) });
  }

  private time(at: number): string {
    return new Date(at).toLocaleTimeString(this.h.lang(), { hour: 'numeric', minute: '2-digit' });
  }

  private render(toBottom = false) {
    if (toBottom) this.stickToBottom = true;
    if (this.renderQueued) return;
    this.renderQueued = true;
    const run = () => {
      this.renderQueued = false;
      this.paint();
    };
    // Hidden tabs do not run animation frames; render there too, a little later.
    if (document.hidden) setTimeout(run, 16);
    else requestAnimationFrame(run);
  }

  private paint() {
    if (this.view.dataset.mode !== 'chat') return;
    this.settleAcknowledged();
    const items = this.items();
    const keep = new Set<string>();
    let cursor = this.list.firstChild;
    items.forEach((it, i) => {
      const prev = items[i - 1];
      const next = items[i + 1];
      const same = (a?: Item) => !!a && a.kind === 'msg' && a.who === it.who && a.mine === it.mine && !!a.at === !!it.at && Math.abs((a.at || 0) - (it.at || 0)) < 5 * 60e3;
      const node = this.node(it, !same(prev), !same(next));
      keep.add(it.key);
      if (node !== cursor) this.list.insertBefore(node, cursor);
      else cursor = cursor.nextSibling;
    });
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    for (const k of [...this.nodes.keys()]) {
      if (!keep.has(k)) {
        this.nodes.delete(k);
        this.revoke(k);
      }
    }
    this.earlier.hidden = this.nextBefore == null;
    if (this.stickToBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
    const focus = this.focusKey && this.nodes.get(this.focusKey);
    if (focus) {
      this.focusKey = '';
      focus.focus({ preventScroll: true });
    }
  }

  /** The list item of an item: created once, its grouping and delivery state updated. */
  private node(it: Item, first: boolean, last: boolean): HTMLElement {
    let li = this.nodes.get(it.key);
    if (!li) {
      if (it.kind === 'day' || it.kind === 'sys') {
        li = h('li', { cls: it.kind }, h('span', { text: it.text }));
      } else if (it.kind === 'rate') {
        li = h('li', { cls: 'rate', tabindex: '-1' }, it.score ? ratingThanks((k, v) => this.tr(k, v), it.score) : this.ratingForm(it.seq!));
      } else {
        // Automated messages are the team's too, labelled as such.
        const who = h('div', { cls: 'who' }, it.name || '', it.auto ? h('span', { cls: 'al', text: ` · ${this.tr('autoReply')}` }) : '');
        const bubble = h('div', { cls: 'bub', dir: 'auto' });
        li = h('li', { cls: `m ${it.mine ? 'me' : 'them'}${it.auto ? ' bot' : ''}` }, who, bubble, h('div', { cls: 'trn', hidden: true }), h('div', { cls: 'xt', hidden: true }), h('div', { cls: 'meta' }));
      }
      this.nodes.set(it.key, li);
    }
    if (it.kind !== 'msg') return li;
    li.classList.toggle('first', first);
    li.classList.toggle('last', last);
    li.classList.toggle('fail', it.status === 'failed');
    if (it.file) this.paintFile(li, it);
    else this.paintText(li, it);
    // What went wrong, in words, and what the visitor can do about it.
    const xt = li.children[3] as HTMLElement;
    const xk = `${it.note}|${it.acts}`;
    if (xt.dataset.k !== xk) {
      xt.dataset.k = xk;
      const name = it.file?.name || '';
      const act = (label: Key, fn: () => void) => h('button', { type: 'button', cls: 'act', 'aria-label': `${this.tr(label)} ${name}`, text: this.tr(label), onclick: fn });
      xt.replaceChildren(
        it.note ? h('p', { cls: 'why', dir: 'auto', text: it.note }) : '',
        it.acts === 'lost' ? act('chooseAgain', () => this.pick(it.key)) : '',
        it.acts ? act('remove', () => this.discard(it.key)) : '',
      );
      xt.hidden = !it.note && !it.acts;
    }
    const meta = li.lastChild as HTMLElement;
    const state = it.status || '';
    // Delivery state and time show under the last bubble of a group (and under any
    // message whose state differs); screen readers get them on every message.
    const key = `${state}|${last}|${it.at}`;
    if (meta.dataset.k !== key) {
      meta.dataset.k = key;
      const parts: (Node | string)[] = [];
      if (it.at) parts.push(h('time', { datetime: new Date(it.at).toISOString(), text: this.time(it.at) }));
      if (state) {
        const ic = { sending: 'clock', queued: 'clock', sent: 'check', read: 'checks', failed: 'alert' }[state] as 'clock';
        const label = state === 'sending' ? this.tr('sending') : this.tr(state as Key);
        parts.push(h('span', { cls: `st ${state}` }, icon(ic, 'si'), h('span', { text: label })));
      }
      meta.replaceChildren(...parts);
      meta.classList.toggle('sr', !last && (state === 'sent' || state === 'read' || !state));
    }
    return li;
  }

  /**
   * The text of a message: its translation into the visitor's language when there is one (a
   * translation arriving later updates the message in place), with a switch to the original;
   * a discreet mark when the translation failed.
   */
  private paintText(li: HTMLElement, it: Item) {
    const bub = li.children[1] as HTMLElement & { $t?: string };
    const tr = it.tr;
    const original = this.originals.has(it.key);
    const translated = !!tr?.text && !original;
    const text = translated ? tr!.text! : it.text;
    if (bub.$t !== text) {
      bub.$t = text;
      bub.replaceChildren(richText(text));
    }
    // The language of what is shown, for screen readers (and fonts).
    const lang = translated ? this.h.lang() : tr?.text ? tr.from : '';
    if (lang) bub.lang = lang;
    else bub.removeAttribute('lang');
    const line = li.children[2] as HTMLElement;
    const state = tr ? (tr.failed ? 'x' : original ? 'o' : 't') : '';
    if (line.dataset.k === state) return;
    line.dataset.k = state;
    line.hidden = !state;
    if (state === 'x') {
      line.replaceChildren(h('span', { text: this.tr('noTranslation') }));
      return;
    }
    if (!state) return;
    // The same button throughout, so keyboard focus stays on it when it is used.
    let toggle = line.querySelector('button');
    if (!toggle) {
      toggle = h('button', {
        type: 'button', cls: 'tg',
        onclick: () => {
          if (!this.originals.delete(it.key)) this.originals.add(it.key);
          this.render();
        },
      });
      line.replaceChildren(h('span'), h('span', { 'aria-hidden': 'true', text: ' · ' }), toggle);
    }
    (line.firstChild as HTMLElement).textContent = this.tr(state === 'o' ? 'original' : 'translated');
    toggle.textContent = this.tr(state === 'o' ? 'showTranslation' : 'showOriginal');
  }

  /** The rating form for the conversation closed at `seq`. */
  private ratingForm(seq: number): HTMLElement {
    let draft = this.drafts.get(seq);
    if (!draft) this.drafts.set(seq, (draft = { score: 0, comment: '' }));
    return ratingForm(`parley-r${seq}`, (k, v) => this.tr(k, v), draft, async (d) => {
      const conv = this.conv;
      if (!conv) return '';
      let r;
      try {
        r = await this.h.api(`/api/v1/conversations/${conv.id}/rating`, { body: { score: d.score, comment: d.comment.trim() || undefined } });
      } catch (e) {
        r = e as any;
      }
      // The server's reason (still open, too many tries…); the form's own text otherwise.
      if (!(r?.s < 300)) return typeof r?.b?.message === 'string' ? r.b.message : '';
      // Thanked at once; the `rated` event follows on the connection.
      this.rated.set(seq, d.score);
      this.drafts.delete(seq);
      this.focusKey = `t${seq}`;
      this.announce(this.tr('rateThanks'));
      this.render();
      return true;
    });
  }

  /** The bubble of an attachment: a thumbnail for images, a download chip for other files. */
  private paintFile(li: HTMLElement, it: Item) {
    const f = it.file!;
    const key = it.key;
    const bub = li.children[1] as HTMLElement;
    const blob = this.blobs.get(key);
    const has = !!(blob || f.id);
    const image = has && (f.image ?? IMAGE.test(f.type));
    const sig = `${f.name}|${image}|${has}`;
    if (bub.dataset.s !== sig) {
      bub.dataset.s = sig;
      this.revoke(key);
      const size = bytes(f.size);
      const chip = () => h('button', {
        type: 'button', cls: 'chip', disabled: !has, 'aria-label': `${this.tr('download')} ${f.name} (${size})`, title: f.name,
        onclick: () => this.save(f, key),
      }, h('span', { cls: 'fi' }, icon('file')), h('span', { cls: 'fx' }, h('span', { cls: 'fn', dir: 'auto', text: f.name }), h('span', { cls: 'fz', text: size })));
      let body: HTMLElement = chip();
      if (image) {
        const img = h('img', { alt: f.name });
        const th = h('button', { type: 'button', cls: 'th', title: f.name, onclick: () => img.src && this.zoom(img.src, f, key, th) }, img);
        const fallback = () => {
          if (!th.isConnected) return;
          bub.classList.remove('im');
          th.replaceWith(chip());
        };
        img.onload = () => {
          th.classList.add('ok');
          if (this.stickToBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
        };
        // Not shown (a page whose CSP forbids blob: images, a failed download): the chip.
        img.onerror = fallback;
        (blob ? Promise.resolve(blob) : this.fetchFile(f.id!)).then((b) => {
          if (this.nodes.get(key) !== li || bub.dataset.s !== sig) return;
          const url = URL.createObjectURL(b);
          this.urls.set(key, url);
          img.src = url;
        }, fallback);
        body = th;
      }
      bub.classList.add('fb');
      bub.classList.toggle('im', image);
      bub.replaceChildren(body);
    }
    // Upload progress, while it lasts.
    let bar = bub.querySelector<HTMLElement>('.pg');
    if (it.prog == null) bar?.remove();
    else {
      if (!bar) {
        bar = h('div', { cls: 'pg', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': this.tr('uploading', { n: '' }).replace(/[\s%]+$/, '') }, h('i'));
        bub.append(bar);
      }
      bar.setAttribute('aria-valuenow', String(it.prog));
      bar.setAttribute('aria-valuetext', this.tr('uploading', { n: it.prog }));
      (bar.firstChild as HTMLElement).style.width = `${it.prog}%`;
    }
  }

  private diagnostics() {
    return {
      version: __VERSION__,
      loaded: true,
      site: this.h.site,
      visitor: this.h.ls.get('s')?.v ?? null,
      conversation: this.conv?.id ?? null,
      epoch: this.conv?.e ?? null,
      seq: this.cursor,
      transport: this.link.mode,
      state: this.link.state,
      stats: { ...this.link.stats },
      outbox: this.pending().length,
      unread: this.unread,
      open: this.isOpen,
      status: this.status,
      lang: this.h.lang(),
    };
  }
}

(window as any)[Symbol.for('parley.mount')]?.((host: Host) => new Chat(host));
