// The agent console: sign in, then the inbox and conversations. Served at /console/.
import { setBaseTitle, unlockAudioOnGesture } from './alerts';
import { api, ApiError, setSignedIn, setUnauthorizedHandler } from './api';
import { lang, onLangChange, t } from './i18n';
import { load, onExternalChange, remove, save } from './storage';
import type { Agent, Me, Session } from './types';
import { AppView } from './ui/app';
import { renderLogin } from './ui/login';

const root = document.getElementById('app')!;
let app: AppView | null = null;

function validSession(s: Session | undefined): s is Session {
  if (!s || !s.agent?.id) return false;
  const exp = s.expires_at < 1e12 ? s.expires_at * 1000 : s.expires_at;
  return !exp || exp > Date.now() + 5000;
}

function showLogin(notice?: string): void {
  app?.destroy();
  app = null;
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
  app = new AppView(root, session.agent, () => void signOutByUser());
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
  setUnauthorizedHandler((code) => {
    if (signingOut) return;
    signOut(t(code === 'session_ended' ? 'sessionEnded' : 'sessionExpired'));
  });
  // Signing out in one tab signs out the others.
  onExternalChange('session', () => {
    const s = load<Session>('session');
    if (!validSession(s)) {
      if (app) showLogin();
    } else if (!app) {
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
    const agent: Agent = {
      ...session.agent, name: me.principal.name ?? session.agent.name, role: me.principal.role ?? session.agent.role,
      permissions: me.permissions ?? session.agent.permissions,
    };
    session.agent = agent;
    save('session', session);
  } catch (e) {
    // 401 already signed us out; a network error keeps the saved session (offline start).
    if (e instanceof ApiError && e.status === 401) return;
  }
  showApp(session);
}

void boot();
