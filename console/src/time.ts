// Times are UTC milliseconds on the wire; they are shown in the agent's time zone.
import { lang, t } from './i18n';

const cache = new Map<string, Intl.DateTimeFormat>();
function fmt(opts: Intl.DateTimeFormatOptions, timeZone?: string): Intl.DateTimeFormat {
  const key = `${lang()}|${timeZone ?? ''}|${JSON.stringify(opts)}`;
  let f = cache.get(key);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat(lang(), { ...opts, ...(timeZone ? { timeZone } : {}) });
    } catch {
      f = new Intl.DateTimeFormat(lang(), opts); // an unknown time zone
    }
    cache.set(key, f);
  }
  return f;
}

function dayKey(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function sameDay(a: number, b: number): boolean {
  return dayKey(a) === dayKey(b);
}

/** 14:05 */
export function clock(ms: number): string {
  return fmt({ hour: 'numeric', minute: '2-digit' }).format(ms);
}

/** Full date and time, for tooltips. */
export function full(ms: number): string {
  return fmt({ dateStyle: 'medium', timeStyle: 'medium' }).format(ms);
}

/** "Today", "Yesterday" or a date: for separators in a conversation. */
export function dayLabel(ms: number, now = Date.now()): string {
  if (sameDay(ms, now)) return t('today');
  if (sameDay(ms, now - 86_400_000)) return t('yesterday');
  const sameYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  return fmt(sameYear ? { weekday: 'short', month: 'short', day: 'numeric' } : { dateStyle: 'medium' }).format(ms);
}

/** Compact time for lists: clock today, weekday this week, date otherwise. */
export function listTime(ms: number, now = Date.now()): string {
  if (sameDay(ms, now)) return clock(ms);
  if (now - ms < 6 * 86_400_000) return fmt({ weekday: 'short' }).format(ms);
  return fmt({ month: 'short', day: 'numeric' }).format(ms);
}

/** "3 min", "2 h": how long something has been going on. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const nf = (n: number, unit: 'second' | 'minute' | 'hour' | 'day') =>
    new Intl.NumberFormat(lang(), { style: 'unit', unit, unitDisplay: 'narrow' }).format(n);
  if (s < 60) return nf(s, 'second');
  if (s < 3600) return nf(Math.floor(s / 60), 'minute');
  if (s < 86400) return nf(Math.floor(s / 3600), 'hour');
  return nf(Math.floor(s / 86400), 'day');
}

/** The current time in another time zone, e.g. the visitor's; null if the zone is unknown. */
export function timeIn(timeZone: string, now = Date.now()): string | null {
  try {
    return new Intl.DateTimeFormat(lang(), { hour: 'numeric', minute: '2-digit', weekday: 'short', timeZone }).format(now);
  } catch {
    return null;
  }
}

export function agentTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}
