// Modal dialogs on the native <dialog> element: focus is trapped and Escape closes, and focus
// returns to whatever opened the dialog. A dialog showing something once (a new secret) closes
// only by its own button, so a stray click or key does not lose it. A dialog something was typed
// or chosen in holds unsaved edits until it closes (see edits.ts).
import { ApiError } from '../api';
import { h, icon } from '../dom';
import { holdEdits } from '../edits';
import { t } from '../i18n';

export function openDialog(
  title: string,
  body: (close: () => void) => Node,
  opts: { className?: string; dismissable?: boolean; holdsEdits?: boolean } = {},
): () => void {
  const dismissable = opts.dismissable ?? true;
  const opener = document.activeElement as HTMLElement | null;
  const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
  const dialog = h('dialog.dialog', { 'aria-labelledby': titleId, class: opts.className ?? '' });
  const close = () => {
    if (dialog.open) dialog.close();
  };
  let edited = false;
  const release = opts.holdsEdits === false ? () => {} : holdEdits(() => edited);
  dialog.addEventListener('input', () => (edited = true));
  dialog.addEventListener('change', () => (edited = true));
  dialog.addEventListener('close', () => {
    release();
    dialog.remove();
    opener?.focus?.();
  });
  if (dismissable) {
    // A click on the backdrop (outside the panel) closes.
    dialog.addEventListener('mousedown', (ev) => {
      if (ev.target === dialog) close();
    });
  } else {
    dialog.addEventListener('cancel', (ev) => ev.preventDefault());
  }
  dialog.append(
    h('div.dialog-head', null,
      h('h2.dialog-title', { id: titleId }, title),
      dismissable ? h('button.icon-btn', { type: 'button', 'aria-label': t('cancel'), onclick: close }, icon('close')) : null),
    body(close));
  document.body.appendChild(dialog);
  dialog.showModal();
  const first = dialog.querySelector<HTMLElement>('[autofocus], input:not([type=hidden]):not([disabled]), select, textarea, .dialog-body button');
  first?.focus();
  return close;
}

/** Closes every open dialog (the console they belong to is going away). */
export function closeAllDialogs(): void {
  for (const d of document.querySelectorAll<HTMLDialogElement>('dialog.dialog[open]')) d.close();
}

/** The server's words for a refusal, or a generic apology. */
export function errorText(e: unknown): string {
  return e instanceof ApiError && e.message ? e.message : t('genericError');
}

/** What a form says of one of its fields that the server refused: the words, and the `data-k` of its control. */
export interface FieldRefusal {
  text: () => string;
  key?: string;
}

/** The entry of `fields` for the field an `invalid_request` names (its `field`), if the form has one. */
export function refusedField(e: unknown, fields: Record<string, FieldRefusal>): FieldRefusal | null {
  if (!(e instanceof ApiError) || e.code !== 'invalid_request' || !e.field) return null;
  return Object.hasOwn(fields, e.field) ? fields[e.field] : null;
}

/** Marks the control a refusal is about as the one to correct, and focuses it. */
export function markRefused(control: HTMLElement | null | undefined): void {
  control?.setAttribute('aria-invalid', 'true');
  control?.focus();
}

/** Asks before something that cannot be undone; `run` does it (its refusal is shown in the dialog). */
export function confirmDialog(opts: { title: string; body: string | Node; confirm: string; danger?: boolean; run: () => Promise<void> }): void {
  openDialog(opts.title, (close) => {
    const err = h('div.form-error', { role: 'alert' });
    const go = h('button.btn', { type: 'submit', class: opts.danger ? 'btn-danger' : 'btn-primary' }, opts.confirm);
    return h('form.dialog-body', {
      onsubmit: async (ev: SubmitEvent) => {
        ev.preventDefault();
        go.disabled = true;
        err.textContent = '';
        try {
          await opts.run();
          close();
        } catch (e) {
          err.textContent = errorText(e);
          go.disabled = false;
        }
      },
    },
    typeof opts.body === 'string' ? h('p.dialog-text', null, opts.body) : opts.body,
    err,
    h('div.dialog-actions', null, h('button.btn.btn-ghost', { type: 'button', autofocus: true, onclick: close }, t('cancel')), go));
  }, { className: 'dialog--confirm' });
}

