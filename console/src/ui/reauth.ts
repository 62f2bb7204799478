// Signing in again over the console, when the sign-in ends (expired, signed out elsewhere, ended
// by an admin) while something is unsaved: the page underneath stays as it was, edits included,
// but hidden (visitors' data, conversations, admin pages, other dialogs are not for whoever
// comes to the screen), and what was refused meanwhile is sent again once the same agent is
// back (main.ts decides that).
import { h } from '../dom';
import { t } from '../i18n';
import type { Agent, Session } from '../types';
import { openDialog } from './dialog';
import { signInSubmit } from './login';

export interface SignInAgain {
  /** The new sign-in, or null when the agent chose to sign out (and discard the changes). */
  readonly done: Promise<Session | null>;
  /** Ends it from outside (another tab signed in or out): closes the dialog. */
  settle(session: Session | null): void;
}

/** Opens the dialog; `notice` says why the sign-in ended. */
export function askToSignInAgain(agent: Agent, notice: string): SignInAgain {
  let resolve!: (session: Session | null) => void;
  const done = new Promise<Session | null>((r) => (resolve = r));
  let closeDialog = () => {};
  let uncover = () => {};
  let settled = false;
  const settle = (session: Session | null) => {
    if (settled) return;
    settled = true;
    // Shown again before the dialog closes, so that focus can go back where it was. Another
    // account gets a fresh console before anything is painted (main.ts, in the same turn).
    uncover();
    closeDialog();
    resolve(session);
  };
  let password: HTMLInputElement | null = null;
  closeDialog = openDialog(t('reauthTitle'), () => {
    const error = h('div.form-error', { role: 'alert', id: 'reauth-msg' });
    const email = h('input#reauth-email', {
      type: 'email', name: 'email', autocomplete: 'username', required: true, spellcheck: 'false', autocapitalize: 'none',
      value: agent.email ?? '', 'aria-describedby': 'reauth-msg',
    });
    password = h('input#reauth-password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'reauth-msg' });
    const pw = password;
    const submit = h('button.btn.btn-primary', { type: 'submit' }, t('signIn'));
    const form: HTMLFormElement = h('form.dialog-body.reauth', {
      novalidate: true,
      onsubmit: signInSubmit({
        email,
        password: pw,
        submit,
        clear: () => (error.textContent = ''),
        fail: (text) => (error.textContent = text),
        signedIn: settle,
      }),
    },
    h('p.dialog-text', null, notice),
    h('p.dialog-text', null, t('reauthText')),
    h('div.field', null, h('label.field-label', { for: 'reauth-email' }, t('email')), email),
    h('div.field', null, h('label.field-label', { for: 'reauth-password' }, t('password')), password),
    h('p.field-hint', null, t('reauthOtherAccount')),
    error,
    h('div.dialog-actions', null,
      h('button.btn.btn-ghost', { type: 'button', 'data-action': 'reauth-sign-out', onclick: () => settle(null) }, t('reauthSignOut')),
      submit));
    return form;
  }, { className: 'dialog--reauth', dismissable: false, holdsEdits: false });
  const dialog = (password as HTMLInputElement | null)?.closest('dialog');
  if (dialog) {
    uncover = hideAllBut(dialog);
    dialog.addEventListener('close', uncover);
  }
  // The e-mail is filled in: the password is what is left to type.
  if (agent.email) (password as HTMLInputElement | null)?.focus();
  return { done, settle };
}

/**
 * Hides everything on the page (the console, any other dialog) but `keep`: not shown, not
 * focusable, out of the accessibility tree, and left as it is underneath. Returns the undoing.
 */
function hideAllBut(keep: Element): () => void {
  const made: HTMLElement[] = [];
  for (const el of Array.from(document.body.children)) {
    if (el === keep || !(el instanceof HTMLElement) || el.inert) continue;
    el.inert = true;
    made.push(el);
  }
  // Anything added meanwhile (a toast, another dialog) is hidden too (app.css).
  document.body.classList.add('behind-sign-in');
  let undone = false;
  return () => {
    if (undone) return;
    undone = true;
    document.body.classList.remove('behind-sign-in');
    for (const el of made) el.inert = false;
  };
}
