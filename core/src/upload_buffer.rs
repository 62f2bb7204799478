//! How many bytes of uploads one Worker isolate holds in memory at once. An upload is read whole
//! (its type is checked from its bytes and a JPEG's location data removed before it is stored),
//! and WebAssembly memory, once grown, is never given back: a few large uploads at the same
//! moment would otherwise take an isolate, shared with every other request it serves, past its
//! memory limit. An upload holds its share as its bytes arrive; one that would take the isolate
//! past the budget is refused as retryable (`uploads_busy`) and the client sends it again. One
//! upload alone always goes, whatever its size.
//!
//! A hold also ends by itself after [`HOLD_LIFETIME_MS`]: a request the runtime cancels (its
//! client went away) may never run its clean-up, and what it held must not stay held for the
//! isolate's lifetime.

/// Default budget: `UPLOAD_BUFFER_MB`.
pub const DEFAULT_BUDGET_MB: usize = 64;

/// The longest an upload's hold counts: past it, an upload still arriving (25 MiB at under
/// 350 kbit/s) no longer counts toward the budget.
pub const HOLD_LIFETIME_MS: i64 = 10 * 60_000;

/// What an upload buffer of `capacity` bytes may hold: those bytes and, for a JPEG, the copy
/// without its metadata.
pub fn bytes_held_for(capacity: usize) -> usize {
    capacity.saturating_mul(2)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldId(u64);

#[derive(Debug)]
struct Hold {
    id: HoldId,
    bytes: usize,
    since: i64,
}

#[derive(Debug, Default)]
pub struct UploadBuffer {
    holds: Vec<Hold>,
    next_id: u64,
}

impl UploadBuffer {
    /// A new hold of nothing, for an upload starting at `now`.
    pub fn open(&mut self, now: i64) -> HoldId {
        self.forget_expired(now);
        self.next_id += 1;
        let id = HoldId(self.next_id);
        self.holds.push(Hold {
            id,
            bytes: 0,
            since: now,
        });
        id
    }

    /// Grows hold `id` to `bytes` if that fits in `budget` with the other holds, or if no other
    /// upload holds anything; `false` (the hold unchanged) when the upload must wait. A hold
    /// that ended (expired) cannot grow.
    pub fn try_grow(&mut self, id: HoldId, bytes: usize, budget: usize, now: i64) -> bool {
        self.forget_expired(now);
        let others: usize = self
            .holds
            .iter()
            .filter(|h| h.id != id)
            .map(|h| h.bytes)
            .sum();
        let Some(hold) = self.holds.iter_mut().find(|h| h.id == id) else {
            return false;
        };
        if bytes <= hold.bytes {
            return true;
        }
        if others > 0 && others.saturating_add(bytes) > budget {
            return false;
        }
        hold.bytes = bytes;
        true
    }

    /// Ends hold `id` (its upload was stored, refused, failed or cancelled).
    pub fn close(&mut self, id: HoldId) {
        self.holds.retain(|h| h.id != id);
    }

    /// Bytes held by the holds that still count at `now`.
    pub fn held(&self, now: i64) -> usize {
        self.holds
            .iter()
            .filter(|h| now - h.since < HOLD_LIFETIME_MS)
            .map(|h| h.bytes)
            .sum()
    }

    fn forget_expired(&mut self, now: i64) {
        self.holds.retain(|h| now - h.since < HOLD_LIFETIME_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uploads_share_the_budget_and_one_alone_always_goes() {
        let mut buffer = UploadBuffer::default();
        let a = buffer.open(0);
        assert!(
            buffer.try_grow(a, 900, 1000, 0),
            "alone, even near the budget"
        );
        let b = buffer.open(0);
        assert!(
            !buffer.try_grow(b, 200, 1000, 0),
            "past the budget with another held"
        );
        assert!(buffer.try_grow(b, 100, 1000, 0), "what still fits goes");
        assert!(
            buffer.try_grow(b, 50, 1000, 0),
            "a hold never shrinks by growing"
        );
        assert_eq!(buffer.held(0), 1000);
        buffer.close(a);
        assert!(
            buffer.try_grow(b, 5000, 1000, 0),
            "alone again, larger than the budget"
        );
        buffer.close(b);
        assert_eq!(buffer.held(0), 0);
    }

    #[test]
    fn a_hold_never_closed_stops_counting_after_its_lifetime() {
        let mut buffer = UploadBuffer::default();
        let lost = buffer.open(0);
        assert!(buffer.try_grow(lost, 900, 1000, 0));
        let later = buffer.open(HOLD_LIFETIME_MS - 1);
        assert!(!buffer.try_grow(later, 200, 1000, HOLD_LIFETIME_MS - 1));
        assert!(buffer.try_grow(later, 200, 1000, HOLD_LIFETIME_MS));
        assert_eq!(buffer.held(HOLD_LIFETIME_MS), 200);
        assert!(!buffer.try_grow(lost, 950, 1000, HOLD_LIFETIME_MS), "ended");
        buffer.close(lost);
        buffer.close(later);
        assert_eq!(buffer.held(HOLD_LIFETIME_MS), 0);
    }

    proptest! {
        /// Whatever the order of growths and closes, the bytes held never pass the budget
        /// unless one upload alone holds them, and closing every hold gives everything back.
        #[test]
        fn held_stays_within_the_budget(steps in proptest::collection::vec((0usize..4, 1usize..1500), 1..80)) {
            let budget = 1000;
            let mut buffer = UploadBuffer::default();
            let mut open: Vec<(HoldId, usize)> = Vec::new();
            for (what, bytes) in steps {
                match what {
                    0 => open.push((buffer.open(0), 0)),
                    1 | 2 if !open.is_empty() => {
                        let i = bytes % open.len();
                        let (id, mine) = open[i];
                        if buffer.try_grow(id, mine + bytes, budget, 0) {
                            open[i].1 = mine + bytes;
                        }
                    }
                    _ if !open.is_empty() => {
                        let (id, _) = open.remove(bytes % open.len());
                        buffer.close(id);
                    }
                    _ => {}
                }
                let total: usize = open.iter().map(|(_, b)| b).sum();
                let holders = open.iter().filter(|(_, b)| *b > 0).count();
                prop_assert_eq!(buffer.held(0), total);
                prop_assert!(total <= budget || holders == 1);
            }
            for (id, _) in open.drain(..) {
                buffer.close(id);
            }
            prop_assert_eq!(buffer.held(0), 0);
        }
    }
}
