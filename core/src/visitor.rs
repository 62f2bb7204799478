//! What the widget tells us about a visitor, bounded and cleaned before it is stored, and the
//! check of identities that the site's own server signed.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ErrorCode;
use crate::site_settings::is_field_name;

const MAX_URL: usize = 2048;
const MAX_SHORT: usize = 200;
const MAX_FIELDS: usize = 20;
const MAX_FIELD_VALUE: usize = 1000;

fn clip(s: Option<String>, max: usize) -> Option<String> {
    s.map(|v| v.trim().chars().take(max).collect::<String>())
        .filter(|v| !v.is_empty())
}

/// Only http(s) URLs are kept: anything else could be a script URL shown to an agent.
fn clip_url(s: Option<String>) -> Option<String> {
    clip(s, MAX_URL).filter(|u| {
        let lower = u.to_ascii_lowercase();
        lower.starts_with("https://") || lower.starts_with("http://")
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub url: Option<String>,
    pub title: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screen {
    pub w: u32,
    pub h: u32,
}

/// The widget's report of where the visitor is and what they use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisitorContext {
    pub page: Page,
    pub referrer: Option<String>,
    pub utm: Utm,
    pub lang: Option<String>,
    pub tz: Option<String>,
    pub screen: Option<Screen>,
    pub device: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
}

impl VisitorContext {
    /// The context with every field bounded; URLs that are not http(s) are dropped.
    pub fn sanitized(self) -> VisitorContext {
        let short = |s| clip(s, MAX_SHORT);
        VisitorContext {
            page: Page {
                url: clip_url(self.page.url),
                title: short(self.page.title),
            },
            referrer: clip_url(self.referrer),
            utm: Utm {
                source: short(self.utm.source),
                medium: short(self.utm.medium),
                campaign: short(self.utm.campaign),
                term: short(self.utm.term),
                content: short(self.utm.content),
            },
            lang: clip(self.lang, 35),
            tz: clip(self.tz, 64),
            screen: self.screen.map(|s| Screen {
                w: s.w.min(100_000),
                h: s.h.min(100_000),
            }),
            device: short(self.device)
                .filter(|d| matches!(d.as_str(), "desktop" | "mobile" | "tablet")),
            browser: short(self.browser),
            os: short(self.os),
        }
    }
}

/// Form answers (pre-chat or offline form), validated.
pub fn clean_fields(
    fields: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ErrorCode> {
    if fields.len() > MAX_FIELDS {
        return Err(ErrorCode::InvalidRequest);
    }
    fields
        .into_iter()
        .map(|(name, value)| {
            if !is_field_name(&name) || value.chars().count() > MAX_FIELD_VALUE {
                Err(ErrorCode::InvalidRequest)
            } else {
                Ok((name, value.trim().to_string()))
            }
        })
        .filter(|r| !matches!(r, Ok((_, v)) if v.is_empty()))
        .collect()
}

/// The name and e-mail address a visitor gave in a form (the fields named `name` and `email`,
/// as the offline form and a usual pre-chat form name them), so agents see who is writing
/// instead of an anonymous label. Self-stated: kept apart from what the site's server vouches
/// for (`identity_verified`). An address that is not one is left out rather than shown.
pub fn stated_identity(fields: &BTreeMap<String, String>) -> (Option<String>, Option<String>) {
    let name = fields
        .get("name")
        .map(|n| crate::protocol::display_name(n, crate::protocol::MAX_DISPLAY_NAME_CHARS))
        .filter(|n| !n.is_empty());
    let email = fields
        .get("email")
        .map(|e| e.trim())
        .filter(|e| looks_like_email(e))
        .map(str::to_string);
    (name, email)
}

/// `local@domain.tld`, one `@`, no spaces or controls, at most 254 characters: what a form's
/// e-mail field lets through, checked again as the form's answers are the visitor's to send.
fn looks_like_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.chars().count() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || NOT_IN_AN_ADDRESS.contains(c))
}

/// Characters a usual address has no use for, and that would change a `mailto:` link made of it
/// (`?cc=…`, `#`, `&body=…`) or the markup around it.
const NOT_IN_AN_ADDRESS: &str = "?&#%/\\<>\"(),;:[]";

/// Whether `hash` (hex) is HMAC-SHA256(secret, id): the site's server vouches for this id.
pub fn identity_verified(secret: &str, id: &str, hash: &str) -> bool {
    if secret.is_empty() || id.is_empty() || hash.len() != 64 {
        return false;
    }
    let Ok(expected) = decode_hex(hash) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(id.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(s: &str) -> Result<Vec<u8>, ()> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or(())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_names_its_visitor_when_it_asks_for_a_name_or_an_address() {
        let fields = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            stated_identity(&fields(&[
                ("name", " 王小明\u{202E} "),
                ("email", " xm@example.com ")
            ])),
            (Some("王小明".into()), Some("xm@example.com".into()))
        );
        assert_eq!(
            stated_identity(&fields(&[("name", "\u{0}"), ("email", "not an address")])),
            (None, None)
        );
        for bad in [
            "a@b",
            "@example.com",
            "a@@example.com",
            "a b@example.com",
            "a@example.com.",
        ] {
            assert_eq!(stated_identity(&fields(&[("email", bad)])).1, None, "{bad}");
        }
        assert_eq!(
            stated_identity(&fields(&[("company", "Acme")])),
            (None, None)
        );
    }

    #[test]
    fn context_is_bounded_and_script_urls_dropped() {
        let ctx = VisitorContext {
            page: Page {
                url: Some("javascript:alert(1)".into()),
                title: Some("x".repeat(500)),
            },
            referrer: Some("https://search.example/?q=1".into()),
            device: Some("toaster".into()),
            ..Default::default()
        }
        .sanitized();
        assert_eq!(ctx.page.url, None);
        assert_eq!(ctx.page.title.map(|t| t.chars().count()), Some(200));
        assert_eq!(ctx.referrer.as_deref(), Some("https://search.example/?q=1"));
        assert_eq!(ctx.device, None);
    }

    #[test]
    fn form_fields_are_validated() {
        let ok = BTreeMap::from([
            ("email".to_string(), " a@b.example ".to_string()),
            ("note".to_string(), "  ".to_string()),
        ]);
        assert_eq!(
            clean_fields(ok),
            Ok(BTreeMap::from([(
                "email".to_string(),
                "a@b.example".to_string()
            )]))
        );
        let bad = BTreeMap::from([("Bad Name".to_string(), "x".to_string())]);
        assert_eq!(clean_fields(bad), Err(ErrorCode::InvalidRequest));
    }

    #[test]
    fn identity_hash_is_checked() {
        // HMAC-SHA256("secret", "user-42"), computed independently.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"user-42");
        let good: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(identity_verified("secret", "user-42", &good));
        assert!(!identity_verified("secret", "user-43", &good));
        assert!(!identity_verified("other", "user-42", &good));
        assert!(!identity_verified("secret", "user-42", "zz"));
        assert!(!identity_verified("", "user-42", &good));
    }
}
