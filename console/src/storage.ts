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

/** Stores value (null or undefined removes the key); returns whether storage took it. */
export function save(key: string, value: unknown): boolean {
  try {
    if (value === undefined || value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
    return true;
  } catch {
    /* storage full or unavailable: the app keeps working from memory */
    return false;
  }
}

export function remove(key: string): void {
  try {
    localStorage.removeItem(PREFIX + key);
  } catch {
    /* ignore */
  }
}

/** The stored keys (without the prefix) that start with start. */
export function keysStartingWith(start: string): string[] {
  const keys: string[] = [];
  try {
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i);
      if (key?.startsWith(PREFIX + start)) keys.push(key.slice(PREFIX.length));
    }
  } catch {
    /* unavailable: nothing stored */
  }
  return keys;
}

/** Calls fn when another tab of this origin changes key; returns what stops it. */
export function onExternalChange(key: string, fn: () => void): () => void {
  const listener = (e: StorageEvent) => {
    if (e.key === PREFIX + key) fn();
  };
  window.addEventListener('storage', listener);
  return () => window.removeEventListener('storage', listener);
}

/**
 * Calls fn with the key (without the prefix) and its new value, null once removed, when another
 * tab of this origin changes a key that starts with start; returns what stops it.
 */
export function onExternalChangeUnder(start: string, fn: (key: string, value: unknown) => void): () => void {
  const listener = (e: StorageEvent) => {
    if (!e.key?.startsWith(PREFIX + start)) return;
    let value: unknown = null;
    try {
      if (e.newValue !== null) value = JSON.parse(e.newValue);
    } catch {
      return; // not ours to read
    }
    fn(e.key.slice(PREFIX.length), value);
  };
  window.addEventListener('storage', listener);
  return () => window.removeEventListener('storage', listener);
}
