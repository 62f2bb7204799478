// Signing in again over the console, when the sign-in ends (expired, signed out elsewhere, ended
// by an admin) while something is unsaved: the page underneath stays as it was, edits included,
// but hidden (visitors' data, conversations, admin pages, other dialogs are not for whoever
// comes to the screen), and what was refused meanwhile is sent again once the same agent is
// back (main.ts decides that).
import { h, icon } from '../dom';
import { type Key, onLangChange, t } from '../i18n';
import type { Agent, Session } from '../types';
import { openDialog } from './dialog';
import { signInSubmit } from './login';
import { languageSelect, showLanguage } from './util';

export interface SignInAgain {
  /** The new sign-in, or null when the agent chose to sign out (and discard the changes). */
  readonly done: Promise<Session | null>;
  /** Ends it from outside (another tab signed in or out): closes the dialog. */
  settle(session: Session | null): void;
}

/**
 * Opens the dialog; `notice` says why the sign-in ended. It covers the console's language menu,
 * so it has one of its own, and its words follow a language picked there or in another tab.
 */
export function askToSignInAgain(agent: Agent, notice: Key): SignInAgain {
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
  // Each text of the dialog with its key, to be written again in another language.
  const labelled: [Node, Key][] = [];
  const text = <T extends Node>(node: T, key: Key): T => {
    labelled.push([node, key]);
    node.textContent = t(key);
    return node;
  };
  const langSelect = languageSelect();
  closeDialog = openDialog(t('reauthTitle'), () => {
    const error = h('div.form-error', { role: 'alert', id: 'reauth-msg' });
    const email = h('input#reauth-email', {
      type: 'email', name: 'email', autocomplete: 'username', required: true, spellcheck: 'false', autocapitalize: 'none',
      value: agent.email ?? '', 'aria-describedby': 'reauth-msg',
    });
    password = h('input#reauth-password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'reauth-msg' });
    const pw = password;
    const submit = text(h('button.btn.btn-primary', { type: 'submit' }), 'signIn');
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
    text(h('p.dialog-text'), notice),
    text(h('p.dialog-text'), 'reauthText'),
    h('div.field', null, text(h('label.field-label', { for: 'reauth-email' }), 'email'), email),
    h('div.field', null, text(h('label.field-label', { for: 'reauth-password' }), 'password'), password),
    text(h('p.field-hint'), 'reauthOtherAccount'),
    error,
    h('div.dialog-actions', null,
      h('span.reauth-lang', null, icon('globe', 16), langSelect),
      text(h('button.btn.btn-ghost', { type: 'button', 'data-action': 'reauth-sign-out', onclick: () => settle(null) }), 'reauthSignOut'),
      submit));
    return form;
  }, { className: 'dialog--reauth', dismissable: false, holdsEdits: false });
  const dialog = (password as HTMLInputElement | null)?.closest('dialog');
  const title = dialog?.querySelector('.dialog-title');
  if (title) labelled.push([title, 'reauthTitle']);
  // What is typed stays; a refusal already shown stays in the words it came in.
  const stopRelabelling = onLangChange(() => {
    for (const [node, key] of labelled) {
      // The submit button says "Signing in…" while it waits.
      node.textContent = t(node instanceof HTMLButtonElement && node.disabled ? 'signingIn' : key);
    }
    showLanguage(langSelect);
  });
  if (dialog) {
    uncover = hideAllBut(dialog);
    dialog.addEventListener('close', uncover);
    dialog.addEventListener('close', stopRelabelling);
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
