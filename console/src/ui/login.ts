// The sign-in screen: e-mail and password; errors are the server's localized message.
import { api, ApiError } from '../api';
import { h, icon, mount } from '../dom';
import { onLangChange, t } from '../i18n';
import type { Agent, Me, Session } from '../types';
import { languageSelect } from './util';

/**
 * Signs in with the session cookie; rejects with the server's refusal, or `cookie_refused` when
 * the browser did not keep the cookie (a Secure cookie over plain http, not localhost). The
 * session's agent carries their role and permissions as /api/v1/me gives them (the login answer
 * has no permissions).
 */
export async function signInWith(email: string, password: string): Promise<Session> {
  const session = await api<Session>('/api/v1/agent/login', {
    method: 'POST', body: { email, password, cookie: true }, anonymous: true,
  });
  const me = await api<Me>('/api/v1/me', { anonymous: true }).catch((e) => {
    throw e instanceof ApiError && e.status === 401 ? new ApiError(401, 'cookie_refused', t('cookieRefused')) : e;
  });
  return { ...session, agent: withAccess(session.agent, me) };
}

/** The agent with the name, role and permissions /api/v1/me gives (those of the session now). */
export function withAccess(agent: Agent, me: Me | null | undefined): Agent {
  const p = me?.principal;
  return {
    ...agent,
    name: p?.name ?? agent.name,
    role: p?.role ?? agent.role,
    permissions: me?.permissions ?? agent.permissions,
  };
}

/** Shows a sign-in form busy (its button disabled, saying "Signing in…") or ready again. */
function showSigningIn(form: HTMLFormElement, submit: HTMLButtonElement, busy: boolean): void {
  submit.disabled = busy;
  submit.textContent = t(busy ? 'signingIn' : 'signIn');
  if (busy) form.setAttribute('aria-busy', 'true');
  else form.removeAttribute('aria-busy');
}

/** A sign-in form ready again after a refusal: the password selected, to be typed again. */
function readyAfterRefusal(form: HTMLFormElement, submit: HTMLButtonElement, password: HTMLInputElement): void {
  showSigningIn(form, submit, false);
  password.select();
  password.focus();
}

/**
 * The submit of a sign-in form (the sign-in page's and the sign-in-again dialog's): both fields
 * filled, the form busy while it signs in, then `signedIn`; a refusal goes to `fail` (the
 * server's message) and the password is given back to be typed again.
 */
export function signInSubmit(fields: {
  email: HTMLInputElement;
  password: HTMLInputElement;
  submit: HTMLButtonElement;
  clear: () => void;
  fail: (text: string) => void;
  signedIn: (session: Session) => void;
}): (ev: SubmitEvent) => Promise<void> {
  const { email, password, submit } = fields;
  return async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    if (!email.value.trim() || !password.value) {
      (email.value.trim() ? password : email).focus();
      return;
    }
    showSigningIn(form, submit, true);
    fields.clear();
    try {
      fields.signedIn(await signInWith(email.value.trim(), password.value));
    } catch (e) {
      fields.fail(e instanceof ApiError ? e.message : t('genericError'));
      readyAfterRefusal(form, submit, password);
    }
  };
}

export function renderLogin(root: HTMLElement, notice: string | undefined, done: (s: Session) => void): void {
  let off: (() => void) | null = null;
  // Kept across redraws in another language (picked here or in another tab): what is typed and
  // the message shown, in the words it came in.
  let email = '';
  let typedPassword = '';
  let shown: { text: string; kind: 'error' | 'info' } | undefined;
  // A sign-in under way when the page is drawn again shows on the newest form (busy, then its
  // refusal); the form it was sent from is gone.
  let signingIn = false;
  let newest: { form: HTMLFormElement; settle: (refusal: string) => void } | null = null;
  const draw = (message = shown) => {
    const errorBox = h('div.login-msg', { role: 'alert', 'aria-live': 'assertive', id: 'login-msg' });
    const emailInput = h('input#login-email', {
      type: 'email', name: 'email', autocomplete: 'username', required: true, spellcheck: 'false', value: email,
      autocapitalize: 'none', 'aria-describedby': 'login-msg',
      oninput: () => (email = emailInput.value),
    });
    const password = h('input#login-password', {
      type: 'password', name: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'login-msg',
      value: typedPassword, oninput: () => (typedPassword = password.value),
    });
    const submit = h('button.btn.btn-primary.btn-block', { type: 'submit' }, t('signIn'));
    const showMessage = (m?: { text: string; kind: 'error' | 'info' }) => {
      shown = m;
      errorBox.textContent = m?.text ?? '';
      errorBox.className = `login-msg${m ? ` login-msg--${m.kind}` : ''}`;
    };
    showMessage(message);
    const form = h('form.login-form', {
      novalidate: true,
      onsubmit: signInSubmit({
        email: emailInput,
        password,
        submit,
        clear: () => {
          signingIn = true;
          showMessage();
        },
        fail: (text) => {
          signingIn = false;
          // Refused after a redraw: the form shown now says so (unless the page is gone, the
          // console shown meanwhile); this one is no longer on the page.
          if (newest?.form === form) showMessage({ text, kind: 'error' });
          else if (newest?.form.isConnected) newest.settle(text);
        },
        signedIn: (r) => {
          signingIn = false;
          off?.();
          done(r);
        },
      }),
    },
    h('label.field', { for: 'login-email' }, h('span.field-label', null, t('email')), emailInput),
    h('label.field', { for: 'login-password' }, h('span.field-label', null, t('password')), password),
    errorBox,
    submit);

    const langSelect = languageSelect();

    mount(root,
      h('main.login', null,
        h('div.login-card', null,
          h('div.brand.brand--lg', null, h('span.brand-mark', { 'aria-hidden': 'true' }, icon('chat', 22)), h('span.brand-name', null, t('appName'))),
          h('h1.login-title', null, t('loginTitle')),
          h('p.login-sub', null, t('loginSubtitle')),
          form),
        h('div.login-foot', null, icon('globe', 16), langSelect)));
    if (signingIn) showSigningIn(form, submit, true);
    newest = {
      form,
      settle: (refusal) => {
        showMessage({ text: refusal, kind: 'error' });
        readyAfterRefusal(form, submit, password);
      },
    };
    (email ? password : emailInput).focus();
  };
  draw(notice ? { text: notice, kind: 'info' } : undefined);
  off = onLangChange(() => {
    // The console was shown without this page's sign-in (another tab signed in): not drawn
    // over it again.
    if (!newest?.form.isConnected) {
      off?.();
      return;
    }
    draw();
  });
}
