// The satisfaction rating asked when a conversation is closed: five stars (native radio
// buttons in a fieldset, so arrow keys, Tab and screen readers work as with any radio group)
// and an optional comment; then a thank-you in its place.
import { h, icon } from './dom';
import type { Key } from './i18n';

type Tr = (key: Key, vars?: Record<string, string | number>) => string;

export interface Draft {
  score: number;
  comment: string;
}

const STARS = [1, 2, 3, 4, 5];

/**
 * The rating form. `draft` keeps what the visitor chose while the panel is rebuilt (another
 * language); `send` resolves to true when the server took the rating, else to the server's
 * message ('' when there is none: the form's own text says it failed).
 */
export function ratingForm(id: string, tr: Tr, draft: Draft, send: (d: Draft) => Promise<true | string>): HTMLElement {
  const labels: HTMLElement[] = [];
  const paint = (n: number) => labels.forEach((l, i) => l.classList.toggle('on', i < n));
  const group = h('div', { cls: 'stars' });
  const submit = h('button', { type: 'submit', cls: 'primary rs', text: tr('sendRating'), disabled: !draft.score });
  const error = h('p', { cls: 'err', role: 'alert' });
  for (const n of STARS) {
    const input = h('input', { type: 'radio', name: `${id}-s`, value: String(n), cls: 'sr', 'aria-label': tr('stars', { n }) });
    input.checked = draft.score === n;
    input.addEventListener('change', () => {
      draft.score = n;
      submit.disabled = false;
      paint(n);
    });
    const label = h('label', { cls: 'star', title: tr('stars', { n }), onpointerenter: () => paint(n) }, input, icon('star', 'si2'));
    labels.push(label);
    group.append(label);
  }
  group.addEventListener('pointerleave', () => paint(draft.score));
  paint(draft.score);
  const comment = h('textarea', { cls: 'rc', rows: '2', maxlength: '1000', dir: 'auto', placeholder: tr('comment'), 'aria-label': tr('comment') });
  comment.value = draft.comment;
  comment.addEventListener('input', () => { draft.comment = comment.value; });
  const form = h('form', { cls: 'rf' },
    h('fieldset', null, h('legend', { text: tr('rateTitle') }), group),
    comment, error, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!draft.score || submit.disabled) return;
    submit.disabled = true;
    error.textContent = '';
    const r = await send(draft);
    if (r !== true) {
      error.textContent = r || tr('rateFailed');
      submit.disabled = false;
    }
  });
  return form;
}

/** The thank-you that replaces the form once the conversation is rated. */
export function ratingThanks(tr: Tr, score: number): HTMLElement {
  const stars = h('span', { cls: 'stars ro', role: 'img', 'aria-label': tr('youRated', { n: score }) });
  for (const n of STARS) stars.append(icon('star', `si2${n <= score ? ' on' : ''}`));
  return h('div', { cls: 'rt' }, icon('check', 'si'), h('span', { text: tr('rateThanks') }), stars);
}
