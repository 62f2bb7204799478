// Unsaved edits the console holds (a settings draft, a form in a dialog): what a sign-in that
// ends must not throw away. Each holder says whether it holds any at the moment it is asked.
const holders = new Set<() => boolean>();

/** Registers a holder's check; returns its removal (call it when the holder goes). */
export function holdEdits(check: () => boolean): () => void {
  holders.add(check);
  return () => holders.delete(check);
}

export function holdsUnsavedEdits(): boolean {
  for (const check of holders) if (check()) return true;
  return false;
}
