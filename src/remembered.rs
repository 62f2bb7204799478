//! What an isolate remembers for a short while: D1 answers that every request would otherwise
//! ask again (sites, settings, live sessions, API keys). Per isolate, so a change made
//! elsewhere is seen within the time to live; a change made here can be forgotten at once.

use std::cell::RefCell;
use std::collections::HashMap;

/// Entries kept at most; past that the whole table is dropped (the next reads refill it).
const MAX_ENTRIES: usize = 10_000;

pub struct Remembered<V> {
    entries: RefCell<HashMap<String, (i64, V)>>,
    ttl_ms: i64,
}

impl<V: Clone> Remembered<V> {
    pub fn new(ttl_ms: i64) -> Self {
        Remembered {
            entries: RefCell::new(HashMap::new()),
            ttl_ms,
        }
    }

    /// The value remembered for `key` within the time to live.
    pub fn fresh(&self, key: &str, now: i64) -> Option<V> {
        self.entries
            .borrow()
            .get(key)
            .filter(|(at, _)| now - at < self.ttl_ms)
            .map(|(_, value)| value.clone())
    }

    /// The value remembered for `key`, however old: a stale copy beats none while the source
    /// is down.
    pub fn any(&self, key: &str) -> Option<V> {
        self.entries
            .borrow()
            .get(key)
            .map(|(_, value)| value.clone())
    }

    pub fn remember(&self, key: &str, value: V, now: i64) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            entries.clear();
        }
        entries.insert(key.to_string(), (now, value));
    }

    pub fn forget(&self, key: &str) {
        self.entries.borrow_mut().remove(key);
    }

    pub fn forget_all(&self) {
        self.entries.borrow_mut().clear();
    }
}
