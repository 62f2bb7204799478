// Modal dialogs on the native <dialog> element: focus is trapped and Escape closes, and focus
// returns to whatever opened the dialog.
import { h, icon } from '../dom';
import { t } from '../i18n';

export function openDialog(title: string, body: (close: () => void) => Node, opts: { className?: string } = {}): () => void {
  const opener = document.activeElement as HTMLElement | null;
  const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
  const dialog = h('dialog.dialog', { 'aria-labelledby': titleId, class: opts.className ?? '' });
  const close = () => {
    if (dialog.open) dialog.close();
  };
  dialog.addEventListener('close', () => {
    dialog.remove();
    opener?.focus?.();
  });
  // A click on the backdrop (outside the panel) closes.
  dialog.addEventListener('mousedown', (ev) => {
    if (ev.target === dialog) close();
  });
  dialog.append(
    h('div.dialog-head', null,
      h('h2.dialog-title', { id: titleId }, title),
      h('button.icon-btn', { type: 'button', 'aria-label': t('cancel'), onclick: close }, icon('close'))),
    body(close));
  document.body.appendChild(dialog);
  dialog.showModal();
  const first = dialog.querySelector<HTMLElement>('[autofocus], input:not([type=hidden]):not([disabled]), select, textarea, .dialog-body button');
  first?.focus();
  return close;
}
