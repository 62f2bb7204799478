// Building blocks of the console's pages (search, reports, agents, site settings, export):
// page and card frames, labelled fields, confirmation and show-once dialogs, dates and
// durations. User text only ever goes in through textContent (h() children).
import { domId, h, icon } from '../../dom';
import { lang } from '../../i18n';
import { t, type Key } from './strings';
import type { Store } from '../../store';
import type { Agent, TeamAgent } from '../../types';
import { openDialog } from '../dialog';

export { confirmDialog, errorText, markRefused, refusedField, type FieldRefusal } from '../dialog';

/** What a page may use of the signed-in console. */
export interface PageCtx {
  store: Store;
  me: Agent;
  toast: (text: string, kind?: 'info' | 'error') => void;
  /** Opens a conversation in a tab of the inbox. */
  openConversation: (id: string) => void;
  /** The team's agents (owners and admins only; cached, `force` reloads). */
  teamAgents: (force?: boolean) => Promise<TeamAgent[]>;
}

export interface Page {
  readonly el: HTMLElement;
  /** Shown (again), with the route's argument (`#/settings/<site>` → the site id). */
  show(arg?: string): void;
  /** The language changed. */
  relabel(): void;
  destroy?(): void;
}

/** The head of a page: title, one line about it, and actions on the right. */
export function pageHead(title: string, sub: string | null, ...actions: (Node | null)[]): HTMLElement {
  return h('header.page-head', null,
    h('div.page-head-text', null, h('h1.page-title', { tabindex: -1 }, title), sub ? h('p.page-sub', null, sub) : null),
    h('div.page-actions', null, actions));
}

/** A titled panel of a page. */
export function card(title: string | null, opts: { id?: string; sub?: string; actions?: Node[]; className?: string } | null, ...body: (Node | null | false)[]): HTMLElement {
  return h('section.card', { id: opts?.id, class: opts?.className },
    title || opts?.actions ? h('div.card-head', null,
      h('div', null, title ? h('h2.card-title', null, title) : null, opts?.sub ? h('p.card-sub', null, opts.sub) : null),
      opts?.actions ? h('div.card-actions', null, opts.actions) : null) : null,
    body);
}

/**
 * A label above a control; `hint` below it (wired with aria-describedby). `target` is the
 * element the label names when `control` is a wrapper around it.
 */
export function field(label: string, control: HTMLElement, opts: { hint?: string; className?: string; target?: HTMLElement } = {}): HTMLElement {
  const target = opts.target ?? control;
  const id = target.id || domId('f');
  target.id = id;
  let hint: HTMLElement | null = null;
  if (opts.hint) {
    hint = h('span.field-hint', { id: `${id}-hint` }, opts.hint);
    target.setAttribute('aria-describedby', hint.id);
  }
  return h('div.field', { class: opts.className }, h('label.field-label', { for: id }, label), control, hint);
}

/** A checkbox with its label on the right. */
export function checkbox(label: string, checked: boolean, onchange: (on: boolean) => void, attrs: Record<string, unknown> = {}): HTMLLabelElement {
  const input = h('input', { type: 'checkbox', checked, ...attrs, onchange: () => onchange(input.checked) } as any);
  return h('label.check', null, input, h('span', null, label));
}

/** A <select> of value → label pairs. */
export function select<V extends string>(options: [V, string][], value: V, onchange: (v: V) => void, attrs: Record<string, unknown> = {}): HTMLSelectElement {
  const el = h('select', { ...attrs, onchange: () => onchange(el.value as V) } as any,
    options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
  el.value = value;
  return el;
}

/** A secret shown this once, with a copy button; `warning` says what it means that it is never shown again. */
export function secretDialog(title: string, intro: string, secret: string, warning = t('secretOnce')): void {
  openDialog(title, (close) => h('div.dialog-body', null,
    h('p.dialog-text', null, intro),
    secretBox(secret),
    h('p.secret-warning', { role: 'note' }, icon('warn', 15), h('span', null, warning)),
    h('div.dialog-actions', null, h('button.btn.btn-primary', { type: 'button', onclick: close }, t('done')))),
  { className: 'dialog--secret', dismissable: false });
}

/** Read-only text with a copy button (which selects the text where the clipboard is out of reach). */
export function secretBox(text: string): HTMLElement {
  const code = h('code.secret-text', { tabindex: 0 }, text);
  const btn = copyButton(() => text, 'copy', code);
  return h('div.secret', null, code, btn);
}

/**
 * A button that copies `text()`. Without a clipboard it selects `shown` (the text on screen) so
 * that a keyboard shortcut copies it, and says so.
 */
export function copyButton(text: () => string, label: Key = 'copy', shown?: HTMLElement): HTMLButtonElement {
  const btn: HTMLButtonElement = h('button.btn.btn-secondary.btn-sm.copy-btn', {
    type: 'button',
    onclick: async () => {
      const ok = await copyText(text());
      if (!ok && shown) selectContents(shown);
      btn.replaceChildren(icon(ok ? 'check' : 'copy', 14), ok ? t('copied') : shown ? t('copySelected') : t(label));
      btn.dataset.copied = String(ok);
      setTimeout(() => btn.replaceChildren(icon('copy', 14), t(label)), ok ? 2000 : 5000);
    },
  }, icon('copy', 14), t(label));
  return btn;
}

function selectContents(el: HTMLElement): void {
  const range = document.createRange();
  range.selectNodeContents(el);
  const selection = getSelection();
  selection?.removeAllRanges();
  selection?.addRange(range);
}

async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (or not a secure context): select the text instead.
    const area = h('textarea.sr-only', { readonly: true }, text);
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

/** A loading line, an error with a retry, or nothing. */
export function loadingRow(): HTMLElement {
  return h('div.page-loading', { role: 'status' }, h('span.spinner', { 'aria-hidden': 'true' }), t('loading'));
}

export function errorRow(text: string, retry?: () => void): HTMLElement {
  return h('div.page-error', { role: 'alert' }, icon('warn', 16), h('span', null, text),
    retry ? h('button.btn.btn-secondary.btn-sm', { type: 'button', onclick: retry }, t('retry')) : null);
}

// ---- dates -------------------------------------------------------------------------------------

const pad = (n: number) => String(n).padStart(2, '0');

/** `YYYY-MM-DD` of a moment, in the browser's time zone (what date inputs hold). */
export function dateValue(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Local midnight starting a `YYYY-MM-DD` day (the browser's time zone), in ms; null if invalid. */
export function dayStart(value: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!m) return null;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return Number.isNaN(d.getTime()) ? null : d.getTime();
}

/** Local midnight ending a day (the start of the next), in ms. */
export function dayEnd(value: string): number | null {
  const start = dayStart(value);
  if (start === null) return null;
  const d = new Date(start);
  d.setDate(d.getDate() + 1);
  return d.getTime();
}

/** The days from `from` to `to` (inclusive), as `YYYY-MM-DD`. */
export function daysBetween(from: string, to: string, max = 400): string[] {
  const start = dayStart(from);
  const end = dayStart(to);
  if (start === null || end === null || end < start) return [];
  const out: string[] = [];
  const d = new Date(start);
  while (d.getTime() <= end && out.length < max) {
    out.push(dateValue(d.getTime()));
    d.setDate(d.getDate() + 1);
  }
  return out;
}

/** `YYYY-MM-DD` `days` before today (0 = today). */
export function daysAgo(days: number): string {
  const d = new Date();
  d.setDate(d.getDate() - days);
  return dateValue(d.getTime());
}

/** A date input (`YYYY-MM-DD`) with a label. */
export function dateInput(value: string, onchange: (v: string) => void, attrs: Record<string, unknown> = {}): HTMLInputElement {
  const el = h('input', { type: 'date', value, ...attrs, onchange: () => onchange(el.value) } as any);
  return el;
}

/** "1 min 5 s", "2 h 3 min", "0.4 s": a span of time for people. */
export function humanDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const nf = (n: number, unit: 'second' | 'minute' | 'hour' | 'day', digits = 0) =>
    new Intl.NumberFormat(lang(), { style: 'unit', unit, unitDisplay: 'short', maximumFractionDigits: digits }).format(n);
  const s = ms / 1000;
  if (s < 10) return nf(s, 'second', 1);
  if (s < 60) return nf(Math.round(s), 'second');
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const rest = Math.round(s - m * 60);
    return rest ? `${nf(m, 'minute')} ${nf(rest, 'second')}` : nf(m, 'minute');
  }
  if (s < 86400) {
    const hrs = Math.floor(s / 3600);
    const m = Math.round((s - hrs * 3600) / 60);
    return m ? `${nf(hrs, 'hour')} ${nf(m, 'minute')}` : nf(hrs, 'hour');
  }
  return nf(Math.round((s / 86400) * 10) / 10, 'day', 1);
}

export function number(n: number, digits = 0): string {
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(n);
}

/** The browser's own IANA time zone. */
export function browserZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}
