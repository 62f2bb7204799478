//! Webhooks: which log events a site's systems hear about, the signed payload they receive,
//! the retry schedule, and which target URLs are acceptable. The delivery queue's rules are in
//! [`queue`], and why an attempt failed, as the queue records it, in [`failure`].

pub mod failure;
pub mod queue;

pub use failure::DeliveryFailure;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::protocol::{Event, EventPayload};

/// Events a webhook may subscribe to.
pub const EVENTS: [&str; 5] = [
    "conversation.created",
    "message.created",
    "conversation.assigned",
    "conversation.closed",
    "offline_message.created",
];

/// Attempts a delivery makes at least before it may be given up (and only on the terms of
/// [`queue`]: never while its receiver may be down for everyone).
pub const MAX_ATTEMPTS: u32 = 8;
/// How long after it was queued a delivery may be given up at the soonest: the attempts of the
/// default schedule take longer (about 11 h), and a shorter `WEBHOOK_RETRY_BASE_MS` does not
/// shorten it; a delivery out of attempts sooner is retried (at its backoff, at most 6 h).
pub const GIVE_UP_AFTER_MS: i64 = 6 * 3600 * 1000;
/// Consecutive failed attempts a webhook needs before it may be switched off...
pub const DISABLE_AFTER_FAILURES: u32 = 20;
/// ...and how long ago the first of them must be: a receiver that fails for less than this is
/// never switched off, however many deliveries fail meanwhile, and whatever the retry base.
/// Six hours is longer than any ordinary outage or deployment. A delivery whose failures count
/// against its webhook is never given up (see [`queue`]): in a long outage it is retried until
/// the webhook is switched off, and then kept, paused (a delivery out of attempts switches it
/// off too, when the count has not been reached).
pub const DISABLE_AFTER_FAILING_MS: i64 = 6 * 3600 * 1000;
/// How often deliveries paused by a switched-off webhook look again whether it is back on, all
/// of a webhook's together (switching it on resumes them at once; this is for when that message
/// was lost and the webhook has nothing new to send).
pub const PAUSED_RECHECK_MS: i64 = 3600 * 1000;

/// A webhook's current run of failed attempts (`failures` and `failing_since` in D1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureStreak {
    /// Consecutive failed attempts, reset by a delivered one.
    pub failures: u32,
    /// When the first of them failed; `None` when there is none, or for a streak recorded
    /// before this was kept (it then counts from its next failure).
    pub since: Option<i64>,
}

impl FailureStreak {
    /// The streak after one more failed attempt at `now`.
    pub fn failed(self, now: i64) -> FailureStreak {
        FailureStreak {
            failures: self.failures.saturating_add(1),
            since: Some(match self.since {
                Some(since) if self.failures > 0 => since,
                _ => now,
            }),
        }
    }

    /// Whether the webhook is failing (its streak is recorded, started or not).
    pub fn is_failing(&self) -> bool {
        self.failures > 0 || self.since.is_some()
    }

    /// Whether the webhook is to be switched off at `now`: failing for at least
    /// [`DISABLE_AFTER_FAILING_MS`], and either [`DISABLE_AFTER_FAILURES`] attempts in a row or
    /// a delivery at its last attempt (`last_attempt`: a quiet site's webhook fails few
    /// attempts, and its delivery is then paused rather than given up). A count alone would
    /// switch a webhook off in the first seconds of an outage when many deliveries are waiting.
    pub fn disables(&self, now: i64, last_attempt: bool) -> bool {
        let long = self
            .since
            .is_some_and(|since| now.saturating_sub(since) >= DISABLE_AFTER_FAILING_MS);
        long && (self.failures >= DISABLE_AFTER_FAILURES || last_attempt)
    }
}

/// What the delivery queue knows of a delivery's webhook when it comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookLookup {
    /// The webhooks could not be read (D1 failed): nothing is known, nothing is concluded.
    Unreadable,
    /// The webhooks were read and this one is not among them: it was deleted.
    Missing,
    /// The webhook, switched on or off.
    Found { enabled: bool },
}

/// What to do with a delivery that came due (pending, or paused and looking again), decided by
/// [`queue::Turn::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueAction {
    /// Leave it as it is and look again later (the webhooks could not be read).
    Wait,
    /// Give it up, for this reason (its webhook is gone).
    GiveUp(DeliveryFailure),
    /// Keep it, paused, until its webhook is switched on again.
    Pause,
    /// Not now: a delivery to the same webhook failed in this run, so it waits for the
    /// webhook's next retry (it was moved there when that one failed).
    Hold,
    /// Send it.
    Send,
}

/// Until when a webhook's other due deliveries wait after one of them failed at `now`: the
/// failed delivery's own next retry (`failed_next_at`), but no longer than the webhook's own
/// backoff for its streak of failures, so one delivery its receiver always refuses (deep in its
/// own backoff) does not hold up the rest for hours.
pub fn hold_until(now: i64, base_ms: i64, streak: FailureStreak, failed_next_at: i64) -> i64 {
    failed_next_at.min(now.saturating_add(retry_delay_ms(base_ms, streak.failures.max(1))))
}

/// Delay before the queue looks again after its webhooks could not be read
/// (`failed_reads` in a row, from 1): one second, doubling, at most a minute.
pub fn unreadable_retry_ms(failed_reads: u32) -> i64 {
    crate::backoff::doubling(1000, 60_000, failed_reads)
}

/// One thing to tell a site's systems, derived from a log event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Stable across retries and re-derivation: receivers deduplicate on it.
    pub delivery_id: String,
    pub event: String,
    pub data: serde_json::Value,
}

/// What a log event means to webhooks (notes and visitors' hidden events mean nothing).
pub fn notices(conversation: &str, site: &str, visitor: &str, event: &Event) -> Vec<Notice> {
    let base = |name: &str, extra: serde_json::Value| {
        let mut data = serde_json::json!({
            "conversation": conversation, "site": site, "visitor": visitor,
            "seq": event.seq, "at": event.at,
        });
        if let (Some(map), serde_json::Value::Object(more)) = (data.as_object_mut(), extra) {
            map.extend(more);
        }
        Notice {
            delivery_id: format!("{conversation}:{}:{name}", event.seq),
            event: name.to_string(),
            data,
        }
    };
    match &event.payload {
        EventPayload::Created { form, fields } => {
            let mut out = vec![base(
                "conversation.created",
                serde_json::json!({ "form": form }),
            )];
            if form.as_deref() == Some("offline") {
                out.push(base(
                    "offline_message.created",
                    serde_json::json!({ "fields": fields }),
                ));
            }
            out
        }
        EventPayload::Message { text } => vec![base(
            "message.created",
            serde_json::json!({
                "author": { "id": event.author.id, "role": event.author.role, "name": event.author.name },
                "text": text,
            }),
        )],
        EventPayload::File { file } => vec![base(
            "message.created",
            serde_json::json!({
                "author": { "id": event.author.id, "role": event.author.role, "name": event.author.name },
                "file": file,
            }),
        )],
        EventPayload::Assigned { agent } => vec![base(
            "conversation.assigned",
            serde_json::json!({ "agent": { "id": agent.id, "name": agent.name } }),
        )],
        EventPayload::Closed {} => vec![base(
            "conversation.closed",
            serde_json::json!({ "by": { "id": event.author.id, "role": event.author.role } }),
        )],
        EventPayload::Reopened {}
        | EventPayload::Note { .. }
        | EventPayload::Rated { .. }
        | EventPayload::Translation { .. }
        | EventPayload::Handoff {}
        | EventPayload::Hidden {} => Vec::new(),
    }
}

/// The `Parley-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
/// Receivers recompute it with their secret and reject stale timestamps.
pub fn signature(secret: &str, unix_seconds: i64, body: &str) -> String {
    // HMAC accepts keys of any length, so this never fails; an empty signature would be refused.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{unix_seconds}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix_seconds},v1={hex}")
}

/// Delay before attempt `attempt + 1`, growing fivefold from `base_ms`, at most six hours.
pub fn retry_delay_ms(base_ms: i64, attempt: u32) -> i64 {
    let factor = 5i64.saturating_pow(attempt.saturating_sub(1).min(10));
    base_ms.saturating_mul(factor).min(6 * 3600 * 1000)
}

/// Whether a target URL may receive webhooks (and be the bot's or a provider's endpoint): https
/// to a public host, or also http and private hosts when those are allowed, for self-hosting
/// and tests. The reading of the URL, and the reasons for refusing it, are in [`outbound_url`].
///
/// [`outbound_url`]: crate::outbound_url
pub fn url_allowed(url: &str, allow_private: bool) -> bool {
    crate::outbound_url::check(url, allow_private).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Participant, Role};
    use std::collections::BTreeMap;

    fn event(payload: EventPayload, role: Role) -> Event {
        Event {
            seq: 7,
            payload,
            author: Participant {
                id: "v_1".into(),
                role,
                name: None,
            },
            at: 1000,
            client_msg_id: None,
            masked: false,
        }
    }

    #[test]
    fn log_events_map_to_webhook_events() {
        let msg = notices(
            "c_1",
            "s_1",
            "v_1",
            &event(EventPayload::Message { text: "hi".into() }, Role::Visitor),
        );
        assert_eq!(msg.len(), 1);
        assert_eq!(msg[0].event, "message.created");
        assert_eq!(msg[0].delivery_id, "c_1:7:message.created");
        assert_eq!(msg[0].data["text"], "hi");
        let offline = notices(
            "c_1",
            "s_1",
            "v_1",
            &event(
                EventPayload::Created {
                    form: Some("offline".into()),
                    fields: BTreeMap::from([("email".to_string(), "a@b.example".to_string())]),
                },
                Role::System,
            ),
        );
        let names: Vec<&str> = offline.iter().map(|n| n.event.as_str()).collect();
        assert_eq!(names, ["conversation.created", "offline_message.created"]);
        assert!(notices(
            "c_1",
            "s_1",
            "v_1",
            &event(EventPayload::Note { text: "x".into() }, Role::Agent)
        )
        .is_empty());
    }

    #[test]
    fn signature_is_hmac_of_timestamp_and_body() {
        let sig = signature("whsec", 1_700_000_000, "{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, format!("t=1700000000,v1={hex}"));
    }

    #[test]
    fn retries_back_off() {
        assert_eq!(retry_delay_ms(1000, 1), 1000);
        assert_eq!(retry_delay_ms(1000, 2), 5000);
        assert_eq!(retry_delay_ms(1000, 3), 25_000);
        assert_eq!(retry_delay_ms(1000, 30), 6 * 3600 * 1000);
    }

    #[test]
    fn a_failure_streak_counts_from_its_first_failure() {
        let start = FailureStreak::default().failed(1_000);
        assert_eq!(
            start,
            FailureStreak {
                failures: 1,
                since: Some(1_000)
            }
        );
        // Later failures keep the start.
        assert_eq!(start.failed(9_000).since, Some(1_000));
        assert_eq!(start.failed(9_000).failures, 2);
        // A streak recorded before its start was kept counts from its next failure.
        let legacy = FailureStreak {
            failures: 19,
            since: None,
        };
        assert_eq!(legacy.failed(5_000).since, Some(5_000));
        // A stale start with no failures is not carried over.
        let reset = FailureStreak {
            failures: 0,
            since: Some(1),
        };
        assert_eq!(reset.failed(5_000).since, Some(5_000));
    }

    #[test]
    fn a_webhook_is_switched_off_only_after_failing_for_hours() {
        let t0 = 1_700_000_000_000i64;
        // A burst of failures in the first seconds of an outage: many, but not for long.
        let mut streak = FailureStreak::default();
        for i in 0..200 {
            streak = streak.failed(t0 + i * 10);
        }
        assert_eq!(streak.failures, 200);
        assert!(!streak.disables(t0 + 2_000, false));
        assert!(!streak.disables(t0 + DISABLE_AFTER_FAILING_MS - 1, false));
        assert!(streak.disables(t0 + DISABLE_AFTER_FAILING_MS, false));
        // Failing for hours, but too few attempts: not yet.
        let few = FailureStreak {
            failures: DISABLE_AFTER_FAILURES - 1,
            since: Some(t0),
        };
        assert!(!few.disables(t0 + 48 * 3600 * 1000, false));
        // ...unless a delivery is at its last attempt: it is paused, not given up.
        assert!(few.disables(t0 + 48 * 3600 * 1000, true));
        assert!(!few.disables(t0 + DISABLE_AFTER_FAILING_MS - 1, true));
        assert!(few
            .failed(t0 + 48 * 3600 * 1000)
            .disables(t0 + 48 * 3600 * 1000, false));
        // A streak without a known start (recorded by an earlier release) never disables.
        let legacy = FailureStreak {
            failures: 1000,
            since: None,
        };
        assert!(!legacy.disables(t0, true));
        // Its next failure starts the clock.
        assert!(!legacy.failed(t0).disables(t0 + 1000, false));
        assert!(legacy
            .failed(t0)
            .disables(t0 + DISABLE_AFTER_FAILING_MS, false));
    }

    #[test]
    fn only_a_webhook_read_and_missing_is_deleted() {
        let turn = queue::Turn::default();
        // D1 failing is not the webhook being gone: the delivery is left for later.
        assert_eq!(turn.decide(HookLookup::Unreadable), DueAction::Wait);
        assert_eq!(
            turn.decide(HookLookup::Missing),
            DueAction::GiveUp(DeliveryFailure::WebhookDeleted)
        );
        // Switched off: kept, paused, not given up.
        assert_eq!(
            turn.decide(HookLookup::Found { enabled: false }),
            DueAction::Pause
        );
        assert_eq!(
            turn.decide(HookLookup::Found { enabled: true }),
            DueAction::Send
        );
    }

    #[test]
    fn the_rest_of_a_failing_webhooks_deliveries_wait_for_its_next_retry() {
        let now = 1_000_000;
        let one = FailureStreak {
            failures: 1,
            since: Some(now),
        };
        // A first failure: the others wait as long as the failed one.
        assert_eq!(hold_until(now, 5_000, one, now + 5_000), now + 5_000);
        // One delivery deep in its own backoff (6 h) while the webhook had been fine: the
        // others wait the webhook's backoff, not six hours.
        assert_eq!(
            hold_until(now, 5_000, one, now + 6 * 3600 * 1000),
            now + 5_000
        );
        // A longer streak waits longer, as far as the failed delivery waits.
        let three = FailureStreak {
            failures: 3,
            since: Some(now),
        };
        assert_eq!(
            hold_until(now, 5_000, three, now + 6 * 3600 * 1000),
            now + 125_000
        );
        assert_eq!(hold_until(now, 5_000, three, now + 5_000), now + 5_000);
    }

    #[test]
    fn unreadable_webhooks_are_looked_at_again_soon() {
        assert_eq!(unreadable_retry_ms(1), 1_000);
        assert_eq!(unreadable_retry_ms(2), 2_000);
        assert_eq!(unreadable_retry_ms(3), 4_000);
        assert_eq!(unreadable_retry_ms(7), 60_000);
        assert_eq!(unreadable_retry_ms(u32::MAX), 60_000);
        assert_eq!(unreadable_retry_ms(0), 1_000);
    }

    #[test]
    fn target_urls_are_checked() {
        assert!(url_allowed("https://hooks.example.com/parley", false));
        assert!(!url_allowed("http://hooks.example.com/parley", false));
        assert!(!url_allowed("https://127.0.0.1/x", false));
        assert!(!url_allowed("https://10.1.2.3/x", false));
        assert!(!url_allowed("https://localhost:8080/x", false));
        assert!(!url_allowed("https://[::1]/x", false));
        assert!(!url_allowed("https://user@evil.example/x", false));
        assert!(!url_allowed("javascript:alert(1)", true));
        assert!(url_allowed("http://127.0.0.1:9000/hook", true));
    }
}
