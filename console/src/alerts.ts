// New-conversation and new-message alerts: a short chime generated with WebAudio (no audio
// files), a desktop notification when the console is not in front, and the unread count in the
// tab title.
import { load, save } from './storage';

let ctx: AudioContext | null = null;
let lastChime = 0;
let muted = Boolean(load<boolean>('muted', false));

/** Browsers only start audio after a user gesture: unlock on the first one. */
export function unlockAudioOnGesture(): void {
  const unlock = () => {
    try {
      ctx ??= new AudioContext();
      if (ctx.state === 'suspended') void ctx.resume();
    } catch {
      /* no audio */
    }
  };
  for (const ev of ['pointerdown', 'keydown']) window.addEventListener(ev, unlock, { capture: true, passive: true });
}

export function isMuted(): boolean {
  return muted;
}

export function setMuted(m: boolean): void {
  muted = m;
  save('muted', m);
}

/** Two soft sine notes (new conversation), or one (new message). */
export function chime(kind: 'conversation' | 'message' = 'conversation'): void {
  if (muted) return;
  const now = Date.now();
  if (now - lastChime < 1200) return;
  lastChime = now;
  try {
    ctx ??= new AudioContext();
    if (ctx.state === 'suspended') void ctx.resume();
    const notes = kind === 'conversation' ? [880, 1318.5] : [1046.5];
    const t0 = ctx.currentTime + 0.01;
    notes.forEach((freq, i) => {
      const osc = ctx!.createOscillator();
      const gain = ctx!.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      const start = t0 + i * 0.14;
      gain.gain.setValueAtTime(0, start);
      gain.gain.linearRampToValueAtTime(0.18, start + 0.015);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.35);
      osc.connect(gain).connect(ctx!.destination);
      osc.start(start);
      osc.stop(start + 0.4);
    });
    chimes += 1;
    document.documentElement.dataset.chimes = String(chimes);
  } catch {
    /* audio unavailable */
  }
}
let chimes = 0;

export function notificationPermission(): NotificationPermission | 'unsupported' {
  return typeof Notification === 'undefined' ? 'unsupported' : Notification.permission;
}

/** Must be called from a user gesture (a click), as browsers require. */
export async function askNotificationPermission(): Promise<NotificationPermission | 'unsupported'> {
  if (typeof Notification === 'undefined') return 'unsupported';
  if (Notification.permission !== 'default') return Notification.permission;
  try {
    return await Notification.requestPermission();
  } catch {
    return Notification.permission;
  }
}

/** A desktop notification when the console is not what the agent is looking at. */
export function desktopNotify(title: string, body: string, tag: string, onClick: () => void): void {
  if (notificationPermission() !== 'granted') return;
  if (document.visibilityState === 'visible' && document.hasFocus()) return;
  try {
    const n = new Notification(title, { body, tag, silent: true });
    n.onclick = () => {
      window.focus();
      onClick();
      n.close();
    };
  } catch {
    /* some platforms only allow notifications from a service worker */
  }
}

let baseTitle = document.title;
let count = 0;
export function setBaseTitle(t: string): void {
  baseTitle = t;
  renderTitle();
}
export function setTitleCount(n: number): void {
  count = n;
  renderTitle();
}
function renderTitle(): void {
  const next = count > 0 ? `(${count > 99 ? '99+' : count}) ${baseTitle}` : baseTitle;
  if (document.title !== next) document.title = next;
}
