// localStorage under one prefix, JSON-encoded, never throwing (private mode, quota, disabled).
const PREFIX = 'parley.console.';

export function load<T>(key: string, fallback?: T): T | undefined {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : (JSON.parse(raw) as T);
  } catch {
    return fallback;
  }
}

export function save(key: string, value: unknown): void {
  try {
    if (value === undefined || value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    /* storage full or unavailable: the app keeps working from memory */
  }
}

export function remove(key: string): void {
  try {
    localStorage.removeItem(PREFIX + key);
  } catch {
    /* ignore */
  }
}

/** Calls fn when another tab of this origin changes key. */
export function onExternalChange(key: string, fn: () => void): void {
  window.addEventListener('storage', (e) => {
    if (e.key === PREFIX + key) fn();
  });
}
