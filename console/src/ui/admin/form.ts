// Building blocks of the settings forms that edit a draft in place (the site page): a text in
// each language, a list of like items (add, reorder, remove), a write-only API key, and plain
// fields described by a spec (so that a section is a list of fields, and adding one is adding
// an entry). User text only ever goes in through values and textContent.
import { h, icon } from '../../dom';
import { LANGS } from '../../i18n';
import type { Localized } from '../../types';
import { chipsInput } from './agents';
import { checkbox, field, select } from './common';
import { t, type Key } from './strings';

/** What a section needs of the page that holds the draft. */
export interface FormCtx {
  /** Called after every edit (the save bar follows). */
  edited(): void;
  /** Draws the page again (a list changed shape, a choice shows other fields), focusing `[data-k=focus]`. */
  render(focus?: string): void;
}

/** A problem in the draft, in words, with the `data-k` of the control to fix it in. */
export interface Problem {
  text: string;
  key: string;
}

/** Inputs for one text in each of the console's languages; `text` is edited in place. */
export function localizedInputs(label: string, text: Localized, key: string, onchange: () => void, opts: { multiline?: boolean; max?: number } = {}): HTMLElement {
  return h('fieldset.fieldset.localized', null, h('legend.field-label', null, label),
    h('div.localized-row', null, LANGS.map((l) => {
      const attrs = {
        'data-k': `${key}-${l.tag}`, lang: l.tag, maxlength: opts.max ?? 500, value: text[l.tag] ?? '', 'aria-label': `${label} (${l.label})`,
        oninput: (ev: Event) => {
          const v = (ev.target as HTMLInputElement).value;
          if (v) text[l.tag] = v;
          else delete text[l.tag];
          onchange();
        },
      };
      const input = opts.multiline ? h('textarea', { ...attrs, rows: 2 }) : h('input', attrs);
      if (opts.multiline) (input as HTMLTextAreaElement).value = text[l.tag] ?? '';
      return h('label.localized-item', null, h('span.lang-tag', null, l.label), input);
    })));
}

/** A text that may be absent (null): emptied in every language, it becomes null again. */
export function optionalLocalized(ctx: FormCtx, label: string, value: Localized | null, set: (v: Localized | null) => void, key: string, opts: { multiline?: boolean; max?: number } = {}): HTMLElement {
  const text = { ...(value ?? {}) };
  return localizedInputs(label, text, key, () => {
    set(Object.keys(text).length ? text : null);
    ctx.edited();
  }, opts);
}

/** Whether a text says something in at least one language. */
export const hasText = (text: Localized | null | undefined): boolean => Object.values(text ?? {}).some((v) => v.trim());

/**
 * An editable list of like items (`items` is edited in place): each a numbered group of
 * controls from `row`, with move up, move down and remove, and an add button below.
 * `focusOf(i)` names the `data-k` of item i's first control, focused after adding or moving.
 */
export function listEditor<T>(ctx: FormCtx, opts: {
  items: T[];
  key: string;
  max: number;
  addLabel: Key;
  empty: Key;
  itemLabel: (i: number) => string;
  make: () => T;
  row: (item: T, i: number) => (Node | null)[];
  focusOf: (i: number) => string;
}): HTMLElement {
  const { items } = opts;
  const addKey = `${opts.key}-add`;
  const changed = (focus: string) => {
    ctx.edited();
    ctx.render(focus);
  };
  const move = (i: number, by: number) => {
    [items[i], items[i + by]] = [items[i + by], items[i]];
    changed(opts.focusOf(i + by));
  };
  const tool = (label: string, name: string, disabled: boolean, onclick: () => void) =>
    h('button.icon-btn.icon-btn--sm', { type: 'button', 'aria-label': label, title: label, disabled, onclick }, icon(name, name === 'trash' ? 16 : 18));
  return h('div.list-editor', null,
    items.length
      ? h('ol.list-items', null, items.map((item, i) => h('li.list-item', { role: 'group', 'aria-label': opts.itemLabel(i) },
        h('div.list-item-head', null,
          h('span.list-item-n', { 'aria-hidden': 'true' }, opts.itemLabel(i)),
          h('span.rule-tools', null,
            tool(t('moveUp'), 'up', i === 0, () => move(i, -1)),
            tool(t('moveDown'), 'down', i === items.length - 1, () => move(i, 1)),
            tool(t('removeItem', { item: opts.itemLabel(i) }), 'trash', false, () => {
              items.splice(i, 1);
              changed(items.length ? opts.focusOf(Math.min(i, items.length - 1)) : addKey);
            }))),
        h('div.list-item-body', null, opts.row(item, i)))))
      : h('p.muted.empty-line', null, t(opts.empty)),
    h('button.btn.btn-secondary.btn-sm', {
      type: 'button', 'data-k': addKey, disabled: items.length >= opts.max,
      onclick: () => {
        items.push(opts.make());
        changed(opts.focusOf(items.length - 1));
      },
    }, icon('plus', 14), t(opts.addLabel)));
}

/** Words typed one by one (Enter or comma adds one); `onchange` gets the whole list. */
export function wordsInput(values: string[], key: string, opts: { max: number; placeholder?: string; onchange: (values: string[]) => void }): { el: HTMLElement; input: HTMLInputElement } {
  let current = values;
  const words = chipsInput(values, {
    placeholder: opts.placeholder ?? '', max: opts.max,
    onchange: (next) => {
      // chipsInput also reports its first drawing: only real changes count.
      if (next.join('\n') === current.join('\n')) return;
      current = next;
      opts.onchange(next);
    },
  });
  words.input.dataset.k = key;
  return { el: words.el, input: words.input };
}

// ---- write-only keys ---------------------------------------------------------------------------

/**
 * An edit of a write-only key: undefined keeps the stored one, a string is a new key being typed
 * (blank: none yet, so still kept), null removes the stored one.
 */
export type KeyEdit = string | null | undefined;

/** What a change sends for a key edit: a new key, '' (the server removes the stored one), or null (nothing: kept). */
export function keyToSend(edit: KeyEdit): string | null {
  if (edit === null) return '';
  return edit?.trim() || null;
}

/**
 * A write-only key: the server says only whether one is stored, keeps it when a change sends
 * none and removes it when a change sends ''. Stored: "a key is set" with Replace, which opens
 * an input for the new one, and Remove; either can be taken back with Keep. Not stored: the
 * input. `edit` is what was done so far (see KeyEdit).
 */
export function keyField(ctx: FormCtx, opts: { label: string; hint?: string; key: string; stored: boolean; edit: KeyEdit; onedit: (edit: KeyEdit) => void }): HTMLElement {
  const { key } = opts;
  const switchTo = (edit: KeyEdit, focus: string) => {
    opts.onedit(edit);
    ctx.edited();
    ctx.render(focus);
  };
  const button = (text: Key, k: string, onclick: () => void, danger = false) =>
    h('button.btn.btn-sm', { type: 'button', class: danger ? 'btn-ghost btn-ghost-danger' : 'btn-secondary', 'data-k': k, onclick }, t(text));
  const keep = () => button('keyKeep', `${key}-keep`, () => switchTo(undefined, `${key}-replace`));
  if (opts.stored && (opts.edit === undefined || opts.edit === null)) {
    const labelId = `${key}-label`;
    const hintId = opts.hint ? `${key}-hint` : undefined;
    const removing = opts.edit === null;
    return h('div.field', null,
      h('span.field-label', { id: labelId }, opts.label),
      h('div.key-row', { role: 'group', 'aria-labelledby': labelId, 'aria-describedby': hintId, 'data-key-state': removing ? 'removing' : 'set' },
        removing
          ? [h('span.pill.pill--off', null, icon('trash', 13), t('keyRemoving')), keep()]
          : [h('span.pill.pill--open', null, icon('key', 13), t('keyIsSet')),
            button('keyReplace', `${key}-replace`, () => switchTo('', key)),
            button('keyRemove', `${key}-remove`, () => switchTo(null, `${key}-keep`), true)]),
      opts.hint ? h('span.field-hint', { id: hintId }, opts.hint) : null);
  }
  const input = h('input.mono', {
    type: 'password', 'data-k': key, autocomplete: 'new-password', spellcheck: 'false', maxlength: 500,
    placeholder: opts.stored ? t('keyNewPlaceholder') : t('keyNonePlaceholder'), value: opts.edit ?? '',
    oninput: () => {
      // Replacing a stored key stays a replacement while emptied (saved as no change).
      opts.onedit(input.value || opts.stored ? input.value : undefined);
      ctx.edited();
    },
  });
  return field(opts.label, h('div.key-row', null, input, opts.stored ? keep() : null), { target: input, hint: opts.hint });
}

// ---- fields from a spec ------------------------------------------------------------------------

type SpecText<S> = Key | ((s: S) => Key);
const specText = <S>(text: SpecText<S>, s: S): string => t(typeof text === 'function' ? text(s) : text);

interface SpecBase<S> {
  key: keyof S & string;
  /** Label and hint are functions when they depend on other settings (a choice redraws the form). */
  label: SpecText<S>;
  hint?: SpecText<S>;
  /** Spans the form's two columns. */
  wide?: boolean;
  /** Shown (and checked) only when this says so; a choice it depends on redraws the form. */
  shown?: (s: S) => boolean;
  required?: (s: S) => boolean;
}

/** One control of a settings object `S`, by the kind of its value. */
export type FieldSpec<S> = SpecBase<S> & (
  | { kind: 'check' }
  | { kind: 'text'; max: number; pattern?: RegExp; invalid?: Key; placeholder?: string; mono?: boolean; suggestions?: string[] }
  | { kind: 'textarea'; max: number; rows: number }
  /** `chosen` adjusts what depends on the choice, before the form is drawn again. */
  | { kind: 'select'; options: [string, Key][]; chosen?: (s: S) => void }
  /** A duration stored in ms, shown in seconds. */
  | { kind: 'seconds'; min: number; max: number }
  | { kind: 'words'; max: number }
  /** The write-only key (`key` is the `api_key_set` flag). */
  | { kind: 'key' }
);

/** What spec fields need besides the draft: the section's key edit, if any. */
export interface SpecCtx extends FormCtx {
  keyEdit: KeyEdit;
  setKeyEdit(edit: KeyEdit): void;
}

/** The controls of `specs` for the settings `s` (edited in place); `section` prefixes their `data-k`. */
export function specFields<S extends object>(ctx: SpecCtx, s: S, specs: FieldSpec<S>[], section: string): HTMLElement {
  const values = s as Record<string, unknown>;
  const set = (key: string, v: unknown) => {
    values[key] = v;
    ctx.edited();
  };
  const controls = specs.filter((spec) => !spec.shown || spec.shown(s)).map((spec) => {
    const k = `${section}-${spec.key}`;
    const label = specText(spec.label, s);
    const hint = spec.hint ? specText(spec.hint, s) : undefined;
    const wide = spec.wide ? 'field--wide' : undefined;
    switch (spec.kind) {
      case 'check':
        return h('div.field.field--wide', null, checkbox(label, Boolean(values[spec.key]), (on) => set(spec.key, on), { 'data-k': k }));
      case 'text': {
        const listId = spec.suggestions ? `${k}-suggestions` : undefined;
        const input = h(spec.mono ? 'input.mono' : 'input', {
          'data-k': k, maxlength: spec.max, value: String(values[spec.key] ?? ''), placeholder: spec.placeholder, list: listId, spellcheck: spec.mono ? 'false' : undefined,
          oninput: () => set(spec.key, spec.mono ? input.value.trim() : input.value),
        });
        const control = listId ? h('div', null, input, h('datalist', { id: listId }, spec.suggestions!.map((v) => h('option', { value: v })))) : input;
        return field(label, control, { hint, className: wide, target: input });
      }
      case 'textarea': {
        const area = h('textarea', { 'data-k': k, maxlength: spec.max, rows: spec.rows, oninput: () => set(spec.key, area.value) });
        area.value = String(values[spec.key] ?? '');
        return field(label, area, { hint, className: wide });
      }
      case 'select':
        return field(label, select(spec.options.map(([v, option]) => [v, t(option)] as [string, string]), String(values[spec.key]), (v) => {
          set(spec.key, v);
          spec.chosen?.(s);
          ctx.render(k);
        }, { 'data-k': k }), { hint, className: wide });
      case 'seconds': {
        const input = h('input', {
          'data-k': k, type: 'number', min: spec.min, max: spec.max, step: 0.5, value: Number(values[spec.key]) / 1000,
          oninput: () => set(spec.key, Math.round(Number(input.value) * 1000)),
        });
        return field(label, input, { hint, className: wide });
      }
      case 'words': {
        const words = wordsInput([...(values[spec.key] as string[])], k, { max: spec.max, onchange: (next) => set(spec.key, next) });
        return field(label, words.el, { hint, className: `field--words ${wide ?? ''}`, target: words.input });
      }
      case 'key':
        return keyField(ctx, {
          label, hint, key: `${section}-api-key`, stored: Boolean(values[spec.key]), edit: ctx.keyEdit, onedit: (edit) => ctx.setKeyEdit(edit),
        });
    }
  });
  return h('div.form-grid.form-grid--top', null, controls);
}

/** The first problem in `s` by its specs (shown fields only). */
export function checkSpec<S extends object>(s: S, specs: FieldSpec<S>[], section: string): Problem | null {
  const values = s as Record<string, unknown>;
  for (const spec of specs) {
    if (spec.shown && !spec.shown(s)) continue;
    const key = `${section}-${spec.key}`;
    const label = specText(spec.label, s);
    const value = values[spec.key];
    if (spec.kind === 'text' || spec.kind === 'textarea') {
      const text = String(value ?? '').trim();
      if (!text && spec.required?.(s)) return { text: t('valueRequired', { field: label }), key };
      if (text && spec.kind === 'text' && spec.pattern && !spec.pattern.test(text)) return { text: t(spec.invalid ?? 'valueInvalid', { field: label }), key };
    } else if (spec.kind === 'seconds') {
      const seconds = Number(value) / 1000;
      if (!(seconds >= spec.min && seconds <= spec.max)) return { text: t('secondsRange', { field: label, min: spec.min, max: spec.max }), key };
    }
  }
  return null;
}
