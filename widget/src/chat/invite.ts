// Proactive invitations (`invitations` of the widget configuration): on a page whose URL
// contains `url_contains`, once the visitor has stayed `after_seconds` on it, the chat greets
// them. Time counts per page: from the page load, or from the last single-page-app navigation.
// Each page gets an invitation once per session (sessionStorage), whether it was taken up,
// dismissed, or ignored. The loader loads the chat when an invitation may apply to the page.
import type { Invitation, Store } from '../types';

export interface InviteHost {
  ls: Store;
  /** when the current page began: 0 for the page load, else the last single-page-app navigation */
  since: number;
  invitations(): Invitation[];
  /** Whether the chat may greet now: no conversation going on, nothing being sent. */
  allowed(): boolean;
  /** Time to greet. */
  invite(inv: Invitation): void;
  /** The visitor went to another page (single-page app): the bubble of the last page goes. */
  moved(): void;
}

const TICK = 250;

/** The page, for "once per page and session": the path, without query or fragment. */
const pageKey = () => location.pathname;

export function watchInvitations(x: InviteHost): void {
  const key = x.ls.full('iv');
  const done = (): string[] => {
    try {
      return JSON.parse(sessionStorage.getItem(key) || '[]');
    } catch {
      return [];
    }
  };
  const remember = (page: string) => {
    try {
      sessionStorage.setItem(key, JSON.stringify([...done(), page].slice(-50)));
    } catch { /* storage blocked: once per page view then */ }
  };
  // performance.now() counts from the page load; the loader saw any navigation since.
  let url = location.href.split('#')[0];
  let since = x.since;
  let shown = '';
  const tick = () => {
    const here = location.href.split('#')[0];
    if (here !== url) {
      url = here;
      since = performance.now();
      x.moved();
    }
    const page = pageKey();
    if (shown === page) return;
    const list = x.invitations();
    if (!list.length) return;
    const inv = list.find((i) => here.includes(i.url_contains));
    if (!inv || performance.now() - since < inv.after_seconds * 1000) return;
    if (done().includes(page)) {
      shown = page;
      return;
    }
    if (!x.allowed()) return;
    shown = page;
    remember(page);
    x.invite(inv);
  };
  setInterval(tick, TICK);
  tick();
}
