/** A minimal typed event emitter. */
export class Emitter<E extends Record<string, unknown[]>> {
  private handlers = new Map<keyof E, Set<(...a: any[]) => void>>();

  on<K extends keyof E>(name: K, fn: (...a: E[K]) => void): () => void {
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  emit<K extends keyof E>(name: K, ...args: E[K]): void {
    for (const fn of Array.from(this.handlers.get(name) ?? [])) {
      try {
        fn(...args);
      } catch (e) {
        console.error(e);
      }
    }
  }
}
