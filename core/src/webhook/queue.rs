//! The delivery queue of a site's webhooks: what a receiver's answer means for the delivery and
//! for the others waiting for the same webhook, which of them wait, which one goes ahead as a
//! probe, what a delivered attempt frees, how many attempts a resumed delivery has left, and the
//! statements on the queue's table that carry it out (the Webhook object runs them on its SQLite
//! storage; the tests run them on SQLite too).
//!
//! Within one webhook, due deliveries go oldest first. When one fails (any answer but a 2xx may
//! be the receiver's), the webhook's other deliveries wait for its next retry ([`hold_until`]): a
//! receiver that is down is asked once per retry, not once per waiting delivery. A delivery that
//! fails on its own is *set aside*: the receiver took another delivery of the same webhook right
//! before or right after it failed a second time. A delivery set aside keeps its own retries,
//! holds no other delivery, waits for none, and its failures do not count toward switching the
//! webhook off. That lasts while the receiver takes the others: once it fails a delivery that is
//! not set aside, the evidence is gone, and the webhook's deliveries set aside rejoin the queue
//! ([`REJOIN`]): they wait in their order again, the oldest failing one holds the others, and
//! their failures count. A delivered attempt frees every delivery waiting for its webhook
//! ([`RELEASE`]): the receiver is back, so they are due at once and go in their order.
//!
//! Nothing is given up while the receiver may be down for everyone. A delivery whose failure
//! counts against its webhook is never given up: it is retried until the webhook has been
//! failing for [`DISABLE_AFTER_FAILING_MS`], whatever the retry base, and is then switched off
//! and its deliveries kept, paused. A delivery is given up only when it has made
//! [`MAX_ATTEMPTS`] attempts, was queued [`GIVE_UP_AFTER_MS`] ago or more, and failed right
//! after the receiver took another delivery of the same webhook, in the same run. Until then it
//! is retried, at its backoff (at most 6 h); one that failed its last attempt alone is tried
//! again as soon as the receiver takes another delivery ([`RETRY_SET_ASIDE`]), so that its
//! failure then, not one from an outage, decides.
//!
//! [`DISABLE_AFTER_FAILING_MS`]: super::DISABLE_AFTER_FAILING_MS

use super::{
    hold_until, retry_delay_ms, DeliveryFailure, DueAction, FailureStreak, HookLookup,
    GIVE_UP_AFTER_MS, MAX_ATTEMPTS,
};

/// Failed attempts after which a delivery holding up the others lets one of them go ahead as a
/// probe: when that one is delivered, the receiver is up and the first one's failures are its
/// own. One failure is not enough to tell: it may be the first of an outage.
pub const PROBE_AFTER_ATTEMPTS: u32 = 2;

/// Attempts a paused delivery has at least when its webhook is switched on again: its count is
/// set back to `MAX_ATTEMPTS - ATTEMPTS_AFTER_RESUME` when higher, so a delivery paused at its
/// last attempt is not given up at the first failure after the switch-on.
pub const ATTEMPTS_AFTER_RESUME: u32 = 3;

/// The highest attempt count of a resumed delivery (see [`ATTEMPTS_AFTER_RESUME`]).
pub const RESUMED_ATTEMPTS_AT_MOST: u32 = MAX_ATTEMPTS - ATTEMPTS_AFTER_RESUME;

/// The attempt count of a delivery resumed with `attempts`; [`RESUME`] does the same in SQL.
pub fn resumed_attempts(attempts: u32) -> u32 {
    attempts.min(RESUMED_ATTEMPTS_AT_MOST)
}

/// What the answer to one attempt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any 2xx.
    Delivered,
    /// Anything else: no answer in time, a network error, a redirect (not followed), a 5xx or
    /// a 4xx. A 4xx is not taken for a refusal of this one delivery: a receiver whose address or
    /// credentials went wrong refuses every delivery with one, and its deliveries must be kept
    /// (paused with the webhook), not given up one by one. A delivery only one receiver that
    /// takes the others refuses is found by the probe and set aside.
    Failed,
}

/// The outcome of an attempt answered with HTTP `status`, or not answered (`None`).
pub fn outcome(status: Option<i64>) -> Outcome {
    match status {
        Some(200..=299) => Outcome::Delivered,
        _ => Outcome::Failed,
    }
}

/// One attempt of one delivery, as it ended.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The delivery (its row id).
    pub id: &'a str,
    /// Its attempts, this one included.
    pub attempts: u32,
    /// Whether it had already been set aside.
    pub set_aside: bool,
    /// When it was queued (`created_at`).
    pub queued_at: i64,
    /// When this attempt ended.
    pub at: i64,
    pub outcome: Outcome,
}

/// What becomes of a delivery after an attempt, and of its webhook's other deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered. `set_aside` names the delivery whose failures held the others in this run:
    /// the receiver took this one right after it failed again, so they are its own. The
    /// webhook's deliveries set aside that are out of attempts and were queued by
    /// `retry_queued_by` are due now ([`RETRY_SET_ASIDE`]): their last failure may have been an
    /// outage's, and one more attempt right after this one tells. Every delivery waiting for the
    /// webhook is due now ([`RELEASE`]).
    Delivered {
        set_aside: Option<String>,
        retry_queued_by: i64,
    },
    /// Failed on its own: the delivery is set aside and retried at `next_at`, or given up
    /// (`give_up`: out of attempts, queued long enough ago, and failed right after the receiver
    /// took another delivery). The webhook's streak and its other deliveries are untouched.
    OnItsOwn { next_at: i64, give_up: bool },
    /// Failed in a way that counts against the webhook (never given up): `streak` is its streak
    /// now, `disable` whether that switches it off (its deliveries are then paused, this one
    /// too), the delivery is retried at `next_at`, the webhook's deliveries set aside rejoin the
    /// queue ([`REJOIN`]) and its waiting ones wait until `hold_until` ([`HOLD`]).
    Counted {
        next_at: i64,
        streak: FailureStreak,
        disable: bool,
        hold_until: i64,
    },
}

/// Deliveries queued at or before this, out of attempts and set aside, may be given up at
/// `now` (see [`GIVE_UP_AFTER_MS`]); younger ones have attempts to come either way.
pub fn give_up_queued_by(now: i64) -> i64 {
    now.saturating_sub(GIVE_UP_AFTER_MS)
}

/// What one run of the queue has seen of one webhook, which decides for its next deliveries.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// Set when a delivery's failure counted: the others wait for it, those that were set aside
    /// too (they rejoined the queue).
    hold: Option<Hold>,
    /// Whether the one probe of this run was handed out.
    probe_taken: bool,
    /// Whether the webhook's last attempt in this run (not counting deliveries set aside) was
    /// delivered.
    last_delivered: bool,
}

#[derive(Debug, Clone)]
struct Hold {
    holder: String,
    holder_attempts: u32,
    until: i64,
}

impl Turn {
    /// What to do with a due delivery of this webhook. Once a failure counted in this run, every
    /// other delivery of the webhook waits, one set aside too: the receiver failed one that was
    /// not set aside, so those set aside rejoined the queue ([`REJOIN`]), whatever the list read
    /// before said.
    pub fn decide(&self, hook: HookLookup) -> DueAction {
        match hook {
            HookLookup::Unreadable => DueAction::Wait,
            HookLookup::Missing => DueAction::GiveUp(DeliveryFailure::WebhookDeleted),
            HookLookup::Found { enabled: false } => DueAction::Pause,
            HookLookup::Found { enabled: true } if self.hold.is_some() => DueAction::Hold,
            HookLookup::Found { enabled: true } => DueAction::Send,
        }
    }

    /// Whether one more delivery of this webhook goes now, ahead of the wait, as a probe ([`PROBE`]
    /// picks it): once a run, when the delivery holding the others up has failed
    /// [`PROBE_AFTER_ATTEMPTS`] times. Asking says yes only once.
    pub fn take_probe(&mut self) -> bool {
        let due = !self.probe_taken
            && self
                .hold
                .as_ref()
                .is_some_and(|hold| hold.holder_attempts >= PROBE_AFTER_ATTEMPTS);
        if due {
            self.probe_taken = true;
        }
        due
    }

    /// Records an attempt of one of this webhook's deliveries; what becomes of it. `streak` is the
    /// webhook's streak before the attempt, `base_ms` the first retry delay.
    pub fn after(&mut self, attempt: Attempt<'_>, streak: FailureStreak, base_ms: i64) -> Verdict {
        if attempt.outcome == Outcome::Delivered {
            self.last_delivered = true;
            let set_aside = self
                .hold
                .take()
                .filter(|hold| {
                    hold.holder_attempts >= PROBE_AFTER_ATTEMPTS && hold.holder != attempt.id
                })
                .map(|hold| hold.holder);
            return Verdict::Delivered {
                set_aside,
                retry_queued_by: give_up_queued_by(attempt.at),
            };
        }
        let own_retry = attempt
            .at
            .saturating_add(retry_delay_ms(base_ms, attempt.attempts));
        let out_of_attempts = attempt.attempts >= MAX_ATTEMPTS;
        // Failed again while the receiver took another delivery just before: this one's own.
        let right_after_a_delivery =
            self.last_delivered && attempt.attempts >= PROBE_AFTER_ATTEMPTS;
        if attempt.set_aside || right_after_a_delivery {
            // Given up only while the receiver demonstrably takes the others: a delivery set
            // aside that fails alone may be failing with everyone now, and waits for that to
            // show (a later delivery gives it up, a counted failure makes it rejoin the queue).
            let give_up = out_of_attempts
                && right_after_a_delivery
                && attempt.queued_at <= give_up_queued_by(attempt.at);
            // Any failure is the latest word on the receiver: the next one to fail is right
            // after a delivery only if another is taken in between (it may be down by now).
            self.last_delivered = false;
            return Verdict::OnItsOwn {
                next_at: own_retry,
                give_up,
            };
        }
        self.last_delivered = false;
        let streak = streak.failed(attempt.at);
        let disable = streak.disables(attempt.at, out_of_attempts);
        // A probe that fails waits with the others, not before the one they wait for.
        let next_at = self
            .hold
            .as_ref()
            .map_or(own_retry, |hold| own_retry.max(hold.until));
        let until = hold_until(attempt.at, base_ms, streak, next_at);
        match &mut self.hold {
            Some(hold) => hold.until = hold.until.max(until),
            None => {
                self.hold = Some(Hold {
                    holder: attempt.id.to_string(),
                    holder_attempts: attempt.attempts,
                    until,
                })
            }
        }
        Verdict::Counted {
            next_at,
            streak,
            disable,
            hold_until: until,
        }
    }
}

/// The queue's table. `set_aside` (added after the first release: see [`UPGRADES`]) is 1 for a
/// delivery that fails on its own.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
  id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, delivery_id TEXT NOT NULL, event TEXT NOT NULL,
  body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL,
  last_status INTEGER, last_error TEXT, created_at INTEGER NOT NULL, delivered_at INTEGER,
  set_aside INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS deliveries_by_webhook ON deliveries (webhook_id, created_at);
CREATE INDEX IF NOT EXISTS deliveries_by_delivery ON deliveries (delivery_id);
CREATE INDEX IF NOT EXISTS deliveries_by_age ON deliveries (created_at);
";

// Statements on one webhook's waiting deliveries compare `+webhook_id`: SQLite then searches
// the few waiting rows by status (`deliveries_due`), not every delivery the webhook logged in
// 30 days (`deliveries_by_webhook`). The tests check the plans.

/// Changes to a table made by an earlier release, after [`SCHEMA`], as (check, change): the
/// change is run when the check fails. Only additions: rows stored before keep working.
pub const UPGRADES: [(&str, &str); 1] = [(
    "SELECT set_aside FROM deliveries LIMIT 0",
    "ALTER TABLE deliveries ADD COLUMN set_aside INTEGER NOT NULL DEFAULT 0",
)];

/// A new delivery: (id, webhook_id, delivery_id, event, body, status, next_at, created_at).
pub const ENQUEUE: &str = "INSERT OR IGNORE INTO deliveries
  (id, webhook_id, delivery_id, event, body, status, attempts, next_at, created_at)
  VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING id";

/// Due deliveries (pending, or paused and looking again whether their webhook is back on), at
/// `now`, oldest first (the row id breaks ties within a millisecond), at most `limit`:
/// (now, limit).
pub const DUE: &str = "SELECT * FROM deliveries
  WHERE status IN ('pending', 'paused') AND next_at <= ?
  ORDER BY created_at, rowid LIMIT ?";

/// A failed attempt, retried later: (attempts, next_at, last_status, last_error, id).
pub const RETRY: &str = "UPDATE deliveries SET status = 'pending', attempts = ?, next_at = ?,
  last_status = ?, last_error = ? WHERE id = ?";

/// Marks a delivery as failing on its own: (id).
pub const SET_ASIDE: &str = "UPDATE deliveries SET set_aside = 1 WHERE id = ?";

/// The webhook's deliveries set aside rejoin its queue: its receiver failed one that was not set
/// aside, so theirs may be its failures too. Their ids: (webhook_id).
pub const REJOIN: &str = "UPDATE deliveries SET set_aside = 0
  WHERE +webhook_id = ? AND status = 'pending' AND set_aside = 1 RETURNING id";

/// The webhook's deliveries set aside that are out of attempts and were queued by a time are due
/// now, to be tried right after the delivery the receiver just took (in the run's next pass):
/// failing then is failing on their own, and gives them up; their last failure before may have
/// been during an outage. Those already due count too: the run's next pass is to try them.
/// Their ids: (now, webhook_id, [`MAX_ATTEMPTS`], queued by: [`give_up_queued_by`]).
pub const RETRY_SET_ASIDE: &str = "UPDATE deliveries SET next_at = MIN(next_at, ?)
  WHERE +webhook_id = ? AND status = 'pending' AND set_aside = 1 AND attempts >= ?
  AND +created_at <= ? RETURNING id";

/// A delivery as it stands just before its attempt, only while it is still pending: an erasure
/// or a resume may have changed it since the run read its list.
pub const PENDING: &str = "SELECT * FROM deliveries WHERE id = ? AND status = 'pending'";

/// How a delivery ended (`delivered`, or `failed`: given up); its body goes:
/// (status, last_status, last_error, status, delivered_at, id).
pub const FINISH: &str = "UPDATE deliveries SET status = ?, attempts = attempts + 1,
  last_status = ?, last_error = ?, body = '',
  delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?";

/// The webhook's deliveries wait until `until` (those due earlier, not set aside):
/// (until, webhook_id, until).
pub const HOLD: &str = "UPDATE deliveries SET next_at = ?
  WHERE +webhook_id = ? AND status = 'pending' AND set_aside = 0 AND next_at < ?";

/// Every delivery waiting for the webhook (not set aside) is due at `now`; their ids:
/// (now, webhook_id, now).
pub const RELEASE: &str = "UPDATE deliveries SET next_at = ?
  WHERE +webhook_id = ? AND status = 'pending' AND set_aside = 0 AND next_at > ? RETURNING id";

/// The delivery to try as a probe for a webhook held up by `holder`: one not tried yet if
/// there is one (those tried with the holder may fail like it), oldest first:
/// (webhook_id, holder).
pub const PROBE: &str = "SELECT * FROM deliveries
  WHERE +webhook_id = ? AND status = 'pending' AND set_aside = 0 AND id != ?
  ORDER BY attempts > 0, created_at, rowid LIMIT 1";

/// Pauses one due delivery of a webhook found switched off, unless it changed since it was read
/// (the webhook switched on again meanwhile resumed it): (next_at, id, status, next_at as read).
pub const PAUSE_ONE: &str = "UPDATE deliveries SET status = 'paused', next_at = ?
  WHERE id = ? AND status = ? AND next_at = ?";

/// Pauses every delivery still waiting for the webhook, just switched off; their ids:
/// (next_at, webhook_id).
pub const PAUSE_ALL: &str = "UPDATE deliveries SET status = 'paused', next_at = ?
  WHERE +webhook_id = ? AND status = 'pending' RETURNING id";

/// The webhook's paused deliveries look again whether it is back on, all at `next_at`, so a
/// webhook left off wakes the queue once per look, not once per delivery. Only rows still
/// paused: those just resumed are left alone. Their ids: (next_at, webhook_id).
pub const LOOK_AGAIN_LATER: &str = "UPDATE deliveries SET next_at = ?
  WHERE +webhook_id = ? AND status = 'paused' RETURNING id";

/// The paused deliveries of a webhook switched on again are due at `now`, in its queue (one set
/// aside before has to show again that it fails on its own), each with at least
/// [`ATTEMPTS_AFTER_RESUME`] attempts left; their ids: (now, [`RESUMED_ATTEMPTS_AT_MOST`],
/// webhook_id).
pub const RESUME: &str = "UPDATE deliveries SET status = 'pending', next_at = ?,
  attempts = MIN(attempts, ?), set_aside = 0 WHERE +webhook_id = ? AND status = 'paused'
  RETURNING id";

/// When the next delivery comes due: `at`, NULL when none waits.
pub const NEXT_DUE: &str =
    "SELECT MIN(next_at) AS at FROM deliveries WHERE status IN ('pending', 'paused')";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::DISABLE_AFTER_FAILING_MS;

    const BASE: i64 = 1_000;

    fn failed(id: &str, attempts: u32, at: i64) -> Attempt<'_> {
        Attempt {
            id,
            attempts,
            set_aside: false,
            queued_at: 0,
            at,
            outcome: Outcome::Failed,
        }
    }

    fn delivered(id: &str, at: i64) -> Attempt<'_> {
        Attempt {
            id,
            attempts: 1,
            set_aside: false,
            queued_at: 0,
            at,
            outcome: Outcome::Delivered,
        }
    }

    fn delivered_verdict(set_aside: Option<&str>, at: i64) -> Verdict {
        Verdict::Delivered {
            set_aside: set_aside.map(str::to_string),
            retry_queued_by: at - GIVE_UP_AFTER_MS,
        }
    }

    const ON: HookLookup = HookLookup::Found { enabled: true };

    #[test]
    fn only_a_2xx_is_delivered() {
        for status in [200, 201, 204, 299] {
            assert_eq!(outcome(Some(status)), Outcome::Delivered, "{status}");
        }
        // A 4xx too counts against the webhook: every delivery gets one from a receiver whose
        // address or credentials went wrong, and those must be kept, not given up.
        for status in [
            100, 301, 302, 400, 401, 403, 404, 408, 410, 422, 429, 500, 502, 503,
        ] {
            assert_eq!(outcome(Some(status)), Outcome::Failed, "{status}");
        }
        assert_eq!(outcome(None), Outcome::Failed);
    }

    #[test]
    fn a_receiver_refusing_every_delivery_is_switched_off_not_given_up_on() {
        let mut turn = Turn::default();
        let failing_for_hours = FailureStreak {
            failures: 30,
            since: Some(0),
        };
        // A probe refused too: nothing is set aside, the failures count and switch it off (its
        // deliveries are then paused and kept).
        turn.after(failed("p", 3, 1_000), failing_for_hours, BASE);
        assert!(turn.take_probe());
        let probe = turn.after(
            failed("q", 1, DISABLE_AFTER_FAILING_MS + 2_000),
            failing_for_hours,
            BASE,
        );
        assert!(matches!(probe, Verdict::Counted { disable: true, .. }));
    }

    #[test]
    fn a_failure_holds_the_others_until_its_retry() {
        let mut turn = Turn::default();
        let verdict = turn.after(failed("p", 1, 10_000), FailureStreak::default(), BASE);
        assert_eq!(
            verdict,
            Verdict::Counted {
                next_at: 10_000 + BASE,
                streak: FailureStreak {
                    failures: 1,
                    since: Some(10_000)
                },
                disable: false,
                hold_until: 10_000 + BASE,
            }
        );
        // Every other delivery waits, one set aside too (it rejoined the queue).
        assert_eq!(turn.decide(ON), DueAction::Hold);
        // One failure may be the first of an outage: no probe yet.
        assert!(!turn.take_probe());
        // A switched-off or deleted webhook is not a matter of holding.
        assert_eq!(
            turn.decide(HookLookup::Found { enabled: false }),
            DueAction::Pause
        );
        assert_eq!(
            turn.decide(HookLookup::Missing),
            DueAction::GiveUp(DeliveryFailure::WebhookDeleted)
        );
        assert_eq!(turn.decide(HookLookup::Unreadable), DueAction::Wait);
    }

    #[test]
    fn a_holder_failing_twice_lets_one_probe_go_and_a_delivered_probe_sets_it_aside() {
        let mut turn = Turn::default();
        let streak = FailureStreak {
            failures: 1,
            since: Some(0),
        };
        let Verdict::Counted { hold_until, .. } = turn.after(failed("p", 2, 10_000), streak, BASE)
        else {
            panic!("a receiver failure counts");
        };
        assert_eq!(hold_until, 10_000 + 5 * BASE);
        assert!(turn.take_probe());
        // Only one probe per run.
        assert!(!turn.take_probe());
        assert_eq!(
            turn.after(delivered("q", 10_100), streak, BASE),
            delivered_verdict(Some("p"), 10_100)
        );
        // The others are free again.
        assert_eq!(turn.decide(ON), DueAction::Send);
    }

    #[test]
    fn a_failed_probe_waits_with_the_others() {
        let mut turn = Turn::default();
        let streak = FailureStreak {
            failures: 3,
            since: Some(0),
        };
        // The holder waits 25 s (its third attempt); the probe's own retry would be in 1 s.
        let Verdict::Counted {
            hold_until: held, ..
        } = turn.after(failed("p", 3, 10_000), streak, BASE)
        else {
            panic!("counts");
        };
        assert_eq!(held, 10_000 + 25 * BASE);
        assert!(turn.take_probe());
        let Verdict::Counted {
            next_at,
            hold_until,
            streak,
            ..
        } = turn.after(failed("q", 1, 10_100), streak.failed(10_000), BASE)
        else {
            panic!("counts");
        };
        assert_eq!(streak.failures, 5);
        assert!(next_at >= held, "the probe waits with the others");
        assert!(hold_until >= held);
        assert_eq!(turn.decide(ON), DueAction::Hold);
    }

    #[test]
    fn a_delivery_failing_again_right_after_another_was_delivered_is_set_aside() {
        let mut turn = Turn::default();
        let none = FailureStreak::default();
        assert_eq!(
            turn.after(delivered("n", 10_000), none, BASE),
            delivered_verdict(None, 10_000)
        );
        // Its second failure, just after the receiver took another one: its own.
        assert_eq!(
            turn.after(failed("p", 2, 10_050), none, BASE),
            Verdict::OnItsOwn {
                next_at: 10_050 + 5 * BASE,
                give_up: false
            }
        );
        assert_eq!(turn.decide(ON), DueAction::Send);
        // A first failure may be the start of an outage: it counts and holds.
        assert!(matches!(
            turn.after(failed("r", 1, 10_060), none, BASE),
            Verdict::Counted { .. }
        ));
        assert_eq!(turn.decide(ON), DueAction::Hold);
        // ...and after it, a failure is no longer right after a delivery: it counts too.
        assert!(matches!(
            turn.after(failed("s", 3, 10_070), none, BASE),
            Verdict::Counted { .. }
        ));
    }

    #[test]
    fn a_delivery_set_aside_keeps_failing_on_its_own() {
        let mut turn = Turn::default();
        let verdict = turn.after(
            Attempt {
                set_aside: true,
                ..failed("p", 4, 10_000)
            },
            FailureStreak::default(),
            BASE,
        );
        assert_eq!(
            verdict,
            Verdict::OnItsOwn {
                next_at: 10_000 + 125 * BASE,
                give_up: false
            }
        );
        assert_eq!(turn.decide(ON), DueAction::Send);
    }

    #[test]
    fn a_delivered_attempt_without_a_probe_sets_nothing_aside() {
        // The holder failed once only: a delivery after it frees the others, and the holder is
        // tried again with them (its next failure, right after a delivery, is then its own).
        let mut turn = Turn::default();
        turn.after(failed("p", 1, 10_000), FailureStreak::default(), BASE);
        assert_eq!(
            turn.after(
                Attempt {
                    set_aside: true,
                    ..delivered("s", 10_010)
                },
                FailureStreak::default(),
                BASE
            ),
            delivered_verdict(None, 10_010)
        );
        assert_eq!(turn.decide(ON), DueAction::Send);
    }

    #[test]
    fn counted_failures_still_switch_a_webhook_off_after_hours() {
        let mut turn = Turn::default();
        let long = FailureStreak {
            failures: 3,
            since: Some(0),
        };
        let at = DISABLE_AFTER_FAILING_MS + 1;
        let Verdict::Counted { disable, .. } =
            turn.after(failed("p", MAX_ATTEMPTS, at), long, BASE)
        else {
            panic!("counts");
        };
        // Out of attempts, after 6 h: switched off, and the delivery is paused with the others.
        assert!(disable);
    }

    #[test]
    fn a_delivery_whose_failures_count_is_not_given_up_before_its_webhook_is_switched_off() {
        // Out of attempts before the webhook has failed for 6 h (a short retry base does that):
        // the receiver may be down for everyone, so it is retried, not given up.
        let at = 5 * 3600 * 1000;
        let mut turn = Turn::default();
        let verdict = turn.after(
            failed("p", MAX_ATTEMPTS, at),
            FailureStreak {
                failures: 3,
                since: Some(at - 1000),
            },
            BASE,
        );
        assert_eq!(
            verdict,
            Verdict::Counted {
                next_at: at + retry_delay_ms(BASE, MAX_ATTEMPTS),
                streak: FailureStreak {
                    failures: 4,
                    since: Some(at - 1000)
                },
                disable: false,
                hold_until: at + 125 * BASE,
            }
        );
        // Further failures keep it, at its backoff (at most 6 h), until the webhook is off.
        let mut turn = Turn::default();
        let Verdict::Counted {
            next_at, disable, ..
        } = turn.after(
            failed("p", MAX_ATTEMPTS + 3, at),
            FailureStreak {
                failures: 4,
                since: Some(at - 1000),
            },
            BASE,
        )
        else {
            panic!("counts");
        };
        assert!(!disable);
        assert_eq!(next_at, at + 6 * 3600 * 1000);
    }

    #[test]
    fn a_delivery_set_aside_is_given_up_only_while_the_receiver_takes_the_others() {
        let queued_long_ago = Attempt {
            set_aside: true,
            ..failed("p", MAX_ATTEMPTS, 7 * 3600 * 1000)
        };
        // Out of attempts, failing alone in its run: the receiver may be down for everyone
        // since it was set aside. Kept, at its backoff.
        let mut turn = Turn::default();
        assert_eq!(
            turn.after(queued_long_ago, FailureStreak::default(), BASE),
            Verdict::OnItsOwn {
                next_at: queued_long_ago.at + 6 * 3600 * 1000,
                give_up: false
            }
        );
        // Right after the receiver took another one: given up.
        let mut turn = Turn::default();
        turn.after(
            delivered("n", queued_long_ago.at - 5),
            FailureStreak::default(),
            BASE,
        );
        assert!(matches!(
            turn.after(queued_long_ago, FailureStreak::default(), BASE),
            Verdict::OnItsOwn { give_up: true, .. }
        ));
        // ...unless it was queued less than 6 h ago (a short retry base spends its attempts
        // sooner): retried.
        let mut turn = Turn::default();
        turn.after(
            delivered("n", queued_long_ago.at - 5),
            FailureStreak::default(),
            BASE,
        );
        let recent = Attempt {
            queued_at: queued_long_ago.at - GIVE_UP_AFTER_MS + 1,
            ..queued_long_ago
        };
        assert!(matches!(
            turn.after(recent, FailureStreak::default(), BASE),
            Verdict::OnItsOwn { give_up: false, .. }
        ));
        // A delivered attempt later makes those set aside, out of attempts and queued by then,
        // due at once: tried right after it, they are given up if they fail then.
        let mut turn = Turn::default();
        assert_eq!(
            turn.after(
                delivered("n", 9 * 3600 * 1000),
                FailureStreak::default(),
                BASE
            ),
            delivered_verdict(None, 9 * 3600 * 1000)
        );
        assert_eq!(
            give_up_queued_by(9 * 3600 * 1000),
            9 * 3600 * 1000 - GIVE_UP_AFTER_MS
        );
    }

    #[test]
    fn a_counted_failure_holds_deliveries_that_were_set_aside() {
        // The receiver fails one not set aside: those set aside rejoin the queue and wait too.
        let mut turn = Turn::default();
        turn.after(
            Attempt {
                set_aside: true,
                ..failed("s", 3, 10_000)
            },
            FailureStreak::default(),
            BASE,
        );
        assert_eq!(turn.decide(ON), DueAction::Send);
        assert!(matches!(
            turn.after(failed("n", 1, 10_010), FailureStreak::default(), BASE),
            Verdict::Counted { .. }
        ));
        assert_eq!(turn.decide(ON), DueAction::Hold);
    }

    #[test]
    fn a_resumed_delivery_has_attempts_left() {
        assert_eq!(resumed_attempts(0), 0);
        assert_eq!(resumed_attempts(2), 2);
        assert_eq!(
            resumed_attempts(MAX_ATTEMPTS),
            MAX_ATTEMPTS - ATTEMPTS_AFTER_RESUME
        );
        assert_eq!(
            resumed_attempts(MAX_ATTEMPTS - 1),
            MAX_ATTEMPTS - ATTEMPTS_AFTER_RESUME
        );
        for attempts in 0..=MAX_ATTEMPTS {
            assert!(MAX_ATTEMPTS - resumed_attempts(attempts) >= ATTEMPTS_AFTER_RESUME);
        }
    }
}
