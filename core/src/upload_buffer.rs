//! How many bytes of uploads one Worker isolate holds in memory at once. An upload is read whole
//! (its type is checked from its bytes and a JPEG's location data removed before it is stored),
//! and WebAssembly memory, once grown, is never given back: a few large uploads at the same
//! moment would otherwise take an isolate, shared with every other request it serves, past its
//! memory limit. Past the budget an upload is refused as retryable (`uploads_busy`) and the
//! client sends it again; one upload alone always goes, whatever its size.

/// Default budget: `UPLOAD_BUFFER_MB`.
pub const DEFAULT_BUDGET_MB: usize = 64;

/// What an upload of at most `limit` bytes may hold: its bytes and, for a JPEG, the copy
/// without its metadata.
pub fn bytes_held_for(limit: usize) -> usize {
    limit.saturating_mul(2)
}

#[derive(Debug, Default)]
pub struct UploadBuffer {
    held: usize,
}

impl UploadBuffer {
    /// Holds `bytes` for an upload if they fit in `budget` with those already held, or if no
    /// other upload is held; `false` when the upload must wait.
    pub fn try_hold(&mut self, bytes: usize, budget: usize) -> bool {
        let fits = self.held == 0 || self.held.saturating_add(bytes) <= budget;
        if fits {
            self.held = self.held.saturating_add(bytes);
        }
        fits
    }

    /// Gives back what an upload held (it finished, failed or was cancelled).
    pub fn release(&mut self, bytes: usize) {
        self.held = self.held.saturating_sub(bytes);
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uploads_share_the_budget_and_one_alone_always_goes() {
        let mut buffer = UploadBuffer::default();
        assert!(buffer.try_hold(900, 1000), "alone, even near the budget");
        assert!(
            !buffer.try_hold(200, 1000),
            "past the budget with another held"
        );
        assert!(buffer.try_hold(100, 1000), "what still fits goes");
        buffer.release(900);
        assert!(buffer.try_hold(800, 1000));
        buffer.release(800);
        buffer.release(100);
        assert_eq!(buffer.held(), 0);
        assert!(
            buffer.try_hold(5000, 1000),
            "alone, larger than the whole budget"
        );
    }

    proptest! {
        /// Whatever the order of holds and releases, what is held never passes the budget
        /// unless a single upload larger than it is alone, and everything held is given back.
        #[test]
        fn held_stays_within_the_budget(steps in proptest::collection::vec((any::<bool>(), 1usize..2000), 1..60)) {
            let budget = 1000;
            let mut buffer = UploadBuffer::default();
            let mut holding: Vec<usize> = Vec::new();
            for (hold, bytes) in steps {
                if hold || holding.is_empty() {
                    if buffer.try_hold(bytes, budget) {
                        holding.push(bytes);
                    }
                } else {
                    let bytes = holding.remove(0);
                    buffer.release(bytes);
                }
                let total: usize = holding.iter().sum();
                prop_assert_eq!(buffer.held(), total);
                prop_assert!(total <= budget || holding.len() == 1);
            }
            for bytes in holding.drain(..) {
                buffer.release(bytes);
            }
            prop_assert_eq!(buffer.held(), 0);
        }
    }
}
