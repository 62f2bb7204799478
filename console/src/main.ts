// The agent console: sign in, then the inbox and conversations. Served at /console/.
import { setBaseTitle, unlockAudioOnGesture } from './alerts';
import { api, ApiError, setSignedIn, setSignInLostHandler } from './api';
import { holdsUnsavedEdits } from './edits';
import { lang, onLangChange, t } from './i18n';
import { load, onExternalChange, remove, save } from './storage';
import type { Agent, Me, Session } from './types';
import { AppView } from './ui/app';
import { closeAllDialogs } from './ui/dialog';
import { renderLogin, withAccess } from './ui/login';
import { askToSignInAgain, type SignInAgain } from './ui/reauth';

const root = document.getElementById('app')!;
let app: AppView | null = null;

function validSession(s: Session | undefined): s is Session {
  if (!s || !s.agent?.id) return false;
  const exp = s.expires_at < 1e12 ? s.expires_at * 1000 : s.expires_at;
  return !exp || exp > Date.now() + 5000;
}

function showLogin(notice?: string): void {
  signInAgain?.settle(null);
  app?.destroy();
  app = null;
  closeAllDialogs();
  setSignedIn(false);
  root.removeAttribute('aria-busy');
  root.className = 'login-root';
  renderLogin(root, notice, (session) => {
    save('session', session);
    showApp(session);
  });
}

function showApp(session: Session): void {
  setSignedIn(true);
  root.removeAttribute('aria-busy');
  root.className = 'app-root';
  app?.destroy();
  // Whatever was left open belonged to the console going away (perhaps another account's).
  closeAllDialogs();
  app = new AppView(root, session.agent, () => void signOutByUser());
}

/** The sign-in dialog over the console, while one is open. */
let signInAgain: SignInAgain | null = null;
/** What the sign-in dialog comes to: whether the console carries on as the same agent. */
let carryingOn: Promise<boolean> | null = null;

/**
 * Whether a new sign-in may take over the console as it is: the same agent with the same role
 * and permissions (as /api/v1/me gave them, for both). A changed permission changes what the
 * console may show (personal data unmasked, exports); when either side's permissions are not
 * known, the console starts afresh.
 */
function sameAccess(next: Agent, current: Agent): boolean {
  const access = (a: Agent) => JSON.stringify([
    a.id, a.role, a.permissions?.view_personal_data ?? null, a.permissions?.export ?? null,
  ]);
  return access(next) === access(current);
}

/**
 * The server refused the sign-in (expired, ended elsewhere or by an admin). With nothing unsaved
 * the console goes back to the login screen. With unsaved edits it stays, under a dialog to sign
 * in again: the same agent carries on where they were (resolves true, and what was refused
 * meanwhile is sent again); another account gets a fresh console, without the edits (they are
 * not theirs to save), and so does signing out from the dialog.
 */
function signInLost(code: string): Promise<boolean> {
  if (signingOut || !app) return Promise.resolve(false);
  if (carryingOn) return carryingOn;
  const notice = code === 'session_ended' ? 'sessionEnded' : 'sessionExpired';
  if (!holdsUnsavedEdits()) {
    signOut(t(notice));
    return Promise.resolve(false);
  }
  // Other tabs learn that the sign-in is over.
  remove('session');
  const current = app;
  const dialog = askToSignInAgain(current.me, notice);
  signInAgain = dialog;
  carryingOn = dialog.done.then((session) => {
    signInAgain = null;
    carryingOn = null;
    if (!session) {
      if (app === current) signOut();
      return false;
    }
    save('session', session);
    if (app === current && sameAccess(session.agent, current.me)) {
      setSignedIn(true);
      return true;
    }
    showApp(session);
    return false;
  });
  return carryingOn;
}

/** Signed out by the server (token dead, session ended elsewhere): straight to the login. */
function signOut(notice?: string): void {
  remove('session');
  showLogin(notice);
}

let signingOut = false;

/**
 * The agent signs out: the live parts stop first (so the server's own session_ended frames
 * are not mistaken for an outside sign-out), then the server ends the session, then the local
 * state goes. A server that cannot be reached does not keep anyone signed in on this device.
 */
async function signOutByUser(): Promise<void> {
  if (signingOut) return;
  signingOut = true;
  app?.destroy();
  app = null;
  root.setAttribute('aria-busy', 'true');
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 5000);
  try {
    await api('/api/v1/agent/logout', { method: 'POST', signal: abort.signal });
  } catch {
    /* already ended, offline or slow: sign out locally all the same */
  } finally {
    clearTimeout(timer);
    signingOut = false;
  }
  signOut();
}

async function boot(): Promise<void> {
  document.documentElement.lang = lang();
  setBaseTitle(t('appTitle'));
  onLangChange(() => setBaseTitle(t('appTitle')));
  unlockAudioOnGesture();
  setSignInLostHandler(signInLost);
  // Signing out in one tab signs out the others (keeping unsaved edits behind the sign-in
  // dialog); signing in again in one carries on in the others, and another account signed in
  // there replaces this one's console.
  onExternalChange('session', () => {
    const s = load<Session>('session');
    if (!validSession(s)) {
      if (app && !signInAgain) {
        if (holdsUnsavedEdits()) void signInLost('session_ended');
        else showLogin();
      }
    } else if (signInAgain) {
      signInAgain.settle(s);
    } else if (!app || s.agent.id !== app.me.id) {
      showApp(s);
    }
  });

  const session = load<Session>('session');
  if (!validSession(session)) {
    if (session) remove('session');
    return showLogin();
  }
  setSignedIn(true);
  try {
    const me = await api<Me>('/api/v1/me');
    if (me?.principal?.kind !== 'agent') return signOut();
    session.agent = withAccess(session.agent, me);
    save('session', session);
  } catch (e) {
    // 401 already signed us out; a network error keeps the saved session (offline start).
    if (e instanceof ApiError && e.status === 401) return;
  }
  showApp(session);
}

void boot();
