//! Webhooks: which log events a site's systems hear about, the signed payload they receive,
//! the retry schedule, and which target URLs are acceptable.

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

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// Consecutive failed deliveries after which a webhook is switched off.
pub const DISABLE_AFTER_FAILURES: u32 = 20;

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

/// What a receiver's HTTP status means for a delivery: `None` when delivered (any 2xx), else
/// the error recorded. Redirects are not followed: they could lead anywhere, past the check on
/// the target, so a 3xx is a failed attempt like any other.
pub fn status_error(status: i64) -> Option<String> {
    match status {
        200..=299 => None,
        300..=399 => Some(format!("HTTP {status}: redirects are not followed")),
        _ => Some(format!("HTTP {status}")),
    }
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

    #[test]
    fn redirects_are_failures() {
        assert_eq!(status_error(204), None);
        assert_eq!(status_error(299), None);
        for status in [300, 301, 302, 303, 307, 308] {
            assert_eq!(
                status_error(status).as_deref(),
                Some(format!("HTTP {status}: redirects are not followed").as_str())
            );
        }
        assert_eq!(status_error(500).as_deref(), Some("HTTP 500"));
        assert_eq!(status_error(404).as_deref(), Some("HTTP 404"));
    }
}
