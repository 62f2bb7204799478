//! Why a delivery attempt failed, as the queue records it: a value with a stable [`code`] for
//! clients (the delivery log's `error_code`), written to the queue's `last_error` column as the
//! English text it has always been stored as, and read back from that text.
//!
//! The texts are the ones the queue wrote before it had codes, unchanged, so rows already
//! stored read the same way (two texts of early development versions, "webhook disabled" and a
//! refused address without its code, read as network failures). Any text not recognized is a [`DeliveryFailure::Network`] failure with that text as
//! its detail: the runtime's connection errors are stored in its own words, which are not ours
//! to list.
//!
//! [`code`]: DeliveryFailure::code

use std::fmt;

use crate::outbound_url::Refusal;

const HTTP_PREFIX: &str = "HTTP ";
const REDIRECT_SUFFIX: &str = ": redirects are not followed";
const ADDRESS_REFUSED_PREFIX: &str = "target address not allowed: ";
const TIMEOUT: &str = "timed out";
const WEBHOOK_DELETED: &str = "webhook deleted";
const NOT_DELIVERED: &str = "not delivered";

/// Why one attempt of a delivery failed, or why it was given up without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// The receiver answered with this status (neither a 2xx, delivered, nor a 3xx, below).
    HttpStatus(u16),
    /// The receiver answered with a redirect (this status), which is not followed: where it
    /// points was never checked.
    RedirectRefused(u16),
    /// The webhook's target address is not one Parley sends to (checked again before each
    /// attempt: the rules or the deployment's settings may have changed since it was added).
    AddressRefused(Refusal),
    /// No answer within the receiver's time.
    Timeout,
    /// The webhook was deleted before the delivery went.
    WebhookDeleted,
    /// Not delivered, without anything more specific to say.
    NotDelivered,
    /// The connection failed; the runtime's words for why.
    Network(NetworkError),
}

/// The runtime's words for a failed connection. Never one of the texts the other failures are
/// stored as (those words would read back as that failure): it is made only by
/// [`DeliveryFailure::network`] and [`DeliveryFailure::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkError(String);

impl NetworkError {
    pub fn detail(&self) -> &str {
        &self.0
    }
}

impl DeliveryFailure {
    /// Every [`code`](DeliveryFailure::code), for documentation and clients.
    pub const CODES: [&'static str; 7] = [
        "http_status",
        "redirect_refused",
        "address_refused",
        "timeout",
        "webhook_deleted",
        "not_delivered",
        "network",
    ];

    /// What a receiver's HTTP `status` means for a delivery: `None` when delivered (any 2xx).
    /// Redirects are not followed: they could lead anywhere, past the check on the target, so a
    /// 3xx is a failed attempt like any other.
    pub fn of_status(status: u16) -> Option<DeliveryFailure> {
        match status {
            200..=299 => None,
            300..=399 => Some(DeliveryFailure::RedirectRefused(status)),
            _ => Some(DeliveryFailure::HttpStatus(status)),
        }
    }

    /// A connection that failed, in the runtime's `words`. Words that read as one of the other
    /// failures are taken as that failure, which is how they would read back once stored.
    pub fn network(words: impl Into<String>) -> DeliveryFailure {
        let words = words.into();
        Self::recognize(&words).unwrap_or(DeliveryFailure::Network(NetworkError(words)))
    }

    /// The failure a stored `last_error` text records; any text not recognized is a network
    /// failure with the text as its detail.
    pub fn parse(stored: &str) -> DeliveryFailure {
        Self::recognize(stored)
            .unwrap_or_else(|| DeliveryFailure::Network(NetworkError(stored.to_string())))
    }

    /// The stable code, one of [`CODES`](DeliveryFailure::CODES).
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryFailure::HttpStatus(_) => "http_status",
            DeliveryFailure::RedirectRefused(_) => "redirect_refused",
            DeliveryFailure::AddressRefused(_) => "address_refused",
            DeliveryFailure::Timeout => "timeout",
            DeliveryFailure::WebhookDeleted => "webhook_deleted",
            DeliveryFailure::NotDelivered => "not_delivered",
            DeliveryFailure::Network(_) => "network",
        }
    }

    /// A stable code saying more, where there is one: the refusal's code (`outbound_url`) for
    /// a refused address. A status is in the delivery log's `last_status` already, and the
    /// runtime's words are not stable.
    pub fn detail_code(&self) -> Option<&'static str> {
        match self {
            DeliveryFailure::AddressRefused(refusal) => Some(refusal.code()),
            _ => None,
        }
    }

    /// The failure one of our own texts records; `None` for any other text.
    fn recognize(text: &str) -> Option<DeliveryFailure> {
        match text {
            TIMEOUT => return Some(DeliveryFailure::Timeout),
            WEBHOOK_DELETED => return Some(DeliveryFailure::WebhookDeleted),
            NOT_DELIVERED => return Some(DeliveryFailure::NotDelivered),
            _ => {}
        }
        if let Some(code) = text.strip_prefix(ADDRESS_REFUSED_PREFIX) {
            return Refusal::from_code(code).map(DeliveryFailure::AddressRefused);
        }
        let status = text.strip_prefix(HTTP_PREFIX)?;
        match status.strip_suffix(REDIRECT_SUFFIX) {
            Some(status) => written_status(status).map(DeliveryFailure::RedirectRefused),
            None => written_status(status).map(DeliveryFailure::HttpStatus),
        }
    }
}

/// A status as [`DeliveryFailure`]'s texts write it. Other spellings ("0503", "+503") are not
/// ours, and are kept word for word as a network failure's detail instead.
fn written_status(digits: &str) -> Option<u16> {
    let status: u16 = digits.parse().ok()?;
    (status.to_string() == digits).then_some(status)
}

/// The text stored in `last_error`.
impl fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryFailure::HttpStatus(status) => write!(f, "{HTTP_PREFIX}{status}"),
            DeliveryFailure::RedirectRefused(status) => {
                write!(f, "{HTTP_PREFIX}{status}{REDIRECT_SUFFIX}")
            }
            DeliveryFailure::AddressRefused(refusal) => {
                write!(f, "{ADDRESS_REFUSED_PREFIX}{}", refusal.code())
            }
            DeliveryFailure::Timeout => f.write_str(TIMEOUT),
            DeliveryFailure::WebhookDeleted => f.write_str(WEBHOOK_DELETED),
            DeliveryFailure::NotDelivered => f.write_str(NOT_DELIVERED),
            DeliveryFailure::Network(words) => f.write_str(words.detail()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_stored_texts_are_those_written_before_codes() {
        let texts = [
            (DeliveryFailure::HttpStatus(503), "HTTP 503"),
            (DeliveryFailure::HttpStatus(404), "HTTP 404"),
            (
                DeliveryFailure::RedirectRefused(302),
                "HTTP 302: redirects are not followed",
            ),
            (
                DeliveryFailure::AddressRefused(Refusal::Scheme),
                "target address not allowed: scheme_not_allowed",
            ),
            (
                DeliveryFailure::AddressRefused(Refusal::Malformed),
                "target address not allowed: malformed_url",
            ),
            (
                DeliveryFailure::AddressRefused(Refusal::UserInfo),
                "target address not allowed: credentials_in_url",
            ),
            (
                DeliveryFailure::AddressRefused(Refusal::NotPublic),
                "target address not allowed: address_not_public",
            ),
            (DeliveryFailure::Timeout, "timed out"),
            (DeliveryFailure::WebhookDeleted, "webhook deleted"),
            (DeliveryFailure::NotDelivered, "not delivered"),
            (
                DeliveryFailure::network("Network connection lost."),
                "Network connection lost.",
            ),
        ];
        for (failure, text) in texts {
            assert_eq!(failure.to_string(), text);
            assert_eq!(DeliveryFailure::parse(text), failure, "{text:?}");
        }
    }

    #[test]
    fn redirects_are_failures_and_a_2xx_is_not() {
        for status in [200, 204, 299] {
            assert_eq!(DeliveryFailure::of_status(status), None);
        }
        for status in [300, 301, 302, 303, 307, 308, 399] {
            assert_eq!(
                DeliveryFailure::of_status(status),
                Some(DeliveryFailure::RedirectRefused(status))
            );
        }
        for status in [100, 199, 400, 404, 429, 500, 502, 503] {
            assert_eq!(
                DeliveryFailure::of_status(status),
                Some(DeliveryFailure::HttpStatus(status))
            );
        }
    }

    #[test]
    fn codes_are_stable_and_listed() {
        let one_of_each = [
            DeliveryFailure::HttpStatus(500),
            DeliveryFailure::RedirectRefused(301),
            DeliveryFailure::AddressRefused(Refusal::NotPublic),
            DeliveryFailure::Timeout,
            DeliveryFailure::WebhookDeleted,
            DeliveryFailure::NotDelivered,
            DeliveryFailure::network("connection refused"),
        ];
        let codes: Vec<&str> = one_of_each.iter().map(DeliveryFailure::code).collect();
        assert_eq!(codes, DeliveryFailure::CODES);
        assert_eq!(
            DeliveryFailure::AddressRefused(Refusal::UserInfo).detail_code(),
            Some("credentials_in_url")
        );
        for failure in &one_of_each {
            if !matches!(failure, DeliveryFailure::AddressRefused(_)) {
                assert_eq!(failure.detail_code(), None, "{failure:?}");
            }
        }
    }

    #[test]
    fn texts_not_ours_are_network_failures_kept_word_for_word() {
        for text in [
            "",
            "fetch failed",
            "HTTP",
            "HTTP ",
            "HTTP 0503",
            "HTTP +503",
            "HTTP 70000",
            "HTTP 503 ",
            "http 503",
            "HTTP 302: redirects are followed",
            "target address not allowed: ",
            "target address not allowed: somewhere_else",
            "Timed out",
            "timed out.",
        ] {
            let failure = DeliveryFailure::parse(text);
            assert_eq!(failure.code(), "network", "{text:?}");
            assert!(
                matches!(&failure, DeliveryFailure::Network(words) if words.detail() == text),
                "{text:?}"
            );
            assert_eq!(failure.to_string(), text);
        }
    }

    #[test]
    fn a_runtime_error_worded_like_one_of_ours_reads_as_that_failure() {
        assert_eq!(
            DeliveryFailure::network("timed out"),
            DeliveryFailure::Timeout
        );
        assert_eq!(
            DeliveryFailure::network("HTTP 502"),
            DeliveryFailure::HttpStatus(502)
        );
    }

    fn any_failure() -> impl Strategy<Value = DeliveryFailure> {
        prop_oneof![
            any::<u16>().prop_map(DeliveryFailure::HttpStatus),
            any::<u16>().prop_map(DeliveryFailure::RedirectRefused),
            proptest::sample::select(Refusal::ALL.to_vec())
                .prop_map(DeliveryFailure::AddressRefused),
            Just(DeliveryFailure::Timeout),
            Just(DeliveryFailure::WebhookDeleted),
            Just(DeliveryFailure::NotDelivered),
            // Any words, and words close to ours, which must stay apart from them.
            prop_oneof![
                any::<String>(),
                "(HTTP |target address not allowed: )?[ +0-9a-z_:]{0,12}",
                "(timed out|webhook deleted|not delivered)[ .]?",
            ]
            .prop_map(DeliveryFailure::network),
        ]
    }

    proptest! {
        #[test]
        fn any_failure_reads_back_from_its_stored_text(failure in any_failure()) {
            prop_assert_eq!(DeliveryFailure::parse(&failure.to_string()), failure);
        }

        #[test]
        fn any_stored_text_reads_back_word_for_word(text in any::<String>()) {
            prop_assert_eq!(DeliveryFailure::parse(&text).to_string(), text);
        }
    }
}
