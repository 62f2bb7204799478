//! Simple automations a site sets up to save its agents' time: an away reply outside business
//! hours, keyword auto-replies, closing idle conversations, and proactive invitations (shown by
//! the widget). Pure decisions; the conversation's object posts what they produce.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Text in several languages, keyed by language tag (`en`, `zh-CN`).
pub type Localized = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeywordReply {
    /// Any of these triggers the reply (case-insensitive): a keyword found anywhere in a
    /// visitor's message, or a pattern with `*` (any text) or `?` (one character) that the
    /// whole message matches, e.g. `where is order *`.
    pub keywords: Vec<String>,
    pub reply: Localized,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Pages whose URL contains this text.
    pub url_contains: String,
    pub after_seconds: u32,
    pub message: Localized,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutomationSettings {
    /// Sent once a day per conversation when a visitor writes outside business hours.
    pub away_reply: Option<Localized>,
    pub keyword_replies: Vec<KeywordReply>,
    /// Close a conversation nobody wrote in for this many seconds, with `close_notice`.
    pub auto_close_seconds: Option<u32>,
    pub close_notice: Option<Localized>,
    pub invitations: Vec<Invitation>,
}

/// The text for `lang` (exact tag, then primary subtag, then English, then any).
pub fn localized(text: &Localized, lang: &str) -> Option<String> {
    let primary = lang.split('-').next().unwrap_or("");
    text.get(lang)
        .or_else(|| {
            text.iter()
                .find(|(k, _)| k.split('-').next() == Some(primary))
                .map(|(_, v)| v)
        })
        .or_else(|| text.get("en"))
        .or_else(|| text.values().next())
        .filter(|t| !t.trim().is_empty())
        .cloned()
}

/// An automated message to post, with the key that makes it happen once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoReply {
    pub key: String,
    pub text: String,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// What to answer a visitor's message automatically. `open` says whether the team is within
/// its business hours; the keys (away reply once a day, each keyword rule once a conversation)
/// are deduplicated by the log like client message ids.
pub fn replies(
    settings: &AutomationSettings,
    text: &str,
    lang: &str,
    open: bool,
    now: i64,
) -> Vec<AutoReply> {
    let mut out = Vec::new();
    if !open {
        if let Some(reply) = settings
            .away_reply
            .as_ref()
            .and_then(|t| localized(t, lang))
        {
            out.push(AutoReply {
                key: format!("auto:away:{}", now.div_euclid(DAY_MS)),
                text: reply,
            });
        }
    }
    let lower = text.to_lowercase();
    for (i, rule) in settings.keyword_replies.iter().enumerate().take(50) {
        let hit = rule
            .keywords
            .iter()
            .map(|k| k.trim().to_lowercase())
            .any(|k| keyword_hit(&k, lower.trim()));
        if hit {
            if let Some(reply) = localized(&rule.reply, lang) {
                out.push(AutoReply {
                    key: format!("auto:keyword:{i}"),
                    text: reply,
                });
            }
        }
    }
    out
}

/// Whether a (lowercased) keyword or pattern hits a (lowercased) message.
fn keyword_hit(keyword: &str, message: &str) -> bool {
    if keyword.is_empty() {
        return false;
    }
    if !keyword.contains(['*', '?']) {
        return message.contains(keyword);
    }
    let pattern: Vec<char> = keyword.chars().collect();
    let text: Vec<char> = message.chars().collect();
    glob(&pattern, &text)
}

/// Wildcard matching of the whole text: `*` any run of characters, `?` one character. Linear
/// in practice: on a mismatch only the most recent `*` is retried, one character further.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// When an open conversation last active at `last_activity` is due to be closed, if ever.
pub fn close_due(settings: &AutomationSettings, last_activity: i64) -> Option<i64> {
    settings
        .auto_close_seconds
        .filter(|s| *s > 0)
        .map(|s| last_activity + i64::from(s) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, by recursion: what `glob` must agree with.
    fn glob_by_definition(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| glob_by_definition(rest, &t[i..])),
            Some((c, rest)) => {
                !t.is_empty() && (*c == '?' || *c == t[0]) && glob_by_definition(rest, &t[1..])
            }
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_its_definition(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            let (p, t): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            prop_assert_eq!(glob(&p, &t), glob_by_definition(&p, &t));
        }
    }

    #[test]
    fn keywords_anywhere_patterns_for_the_whole_message() {
        assert!(keyword_hit("refund", "i want a refund please"));
        assert!(!keyword_hit("", "anything"));
        assert!(keyword_hit("where is order *", "where is order 4711"));
        assert!(!keyword_hit("where is order *", "hi, where is order 4711"));
        assert!(keyword_hit("*order ????*", "hi, where is order 4711?"));
        assert!(!keyword_hit("*order ????*", "hi, where is order 47"));
        assert!(keyword_hit("订单*到", "订单什么时候到"));
    }

    fn text(en: &str, zh: &str) -> Localized {
        BTreeMap::from([("en".into(), en.into()), ("zh-CN".into(), zh.into())])
    }

    fn settings() -> AutomationSettings {
        AutomationSettings {
            away_reply: Some(text(
                "We're away; we'll answer soon.",
                "我们暂时不在，稍后回复您。",
            )),
            keyword_replies: vec![KeywordReply {
                keywords: vec!["refund".into(), "退款".into()],
                reply: text("Refunds take 3–5 days.", "退款需要 3–5 天。"),
            }],
            auto_close_seconds: Some(1800),
            close_notice: None,
            invitations: vec![],
        }
    }

    #[test]
    fn away_reply_only_outside_hours_once_a_day() {
        let open = replies(&settings(), "hello", "en", true, 0);
        assert!(open.is_empty());
        let closed = replies(&settings(), "hello", "zh-CN", false, 1000);
        assert_eq!(closed[0].text, "我们暂时不在，稍后回复您。");
        let later_same_day = replies(&settings(), "hi again", "zh-CN", false, 2000);
        assert_eq!(closed[0].key, later_same_day[0].key);
        let next_day = replies(&settings(), "hi", "en", false, DAY_MS + 1);
        assert_ne!(closed[0].key, next_day[0].key);
    }

    #[test]
    fn keywords_match_case_insensitively_in_any_language() {
        let en = replies(&settings(), "How do I get a REFUND?", "en-GB", true, 0);
        assert_eq!(
            en,
            vec![AutoReply {
                key: "auto:keyword:0".into(),
                text: "Refunds take 3–5 days.".into()
            }]
        );
        let zh = replies(&settings(), "我要退款", "zh-CN", true, 0);
        assert_eq!(zh[0].text, "退款需要 3–5 天。");
        assert!(replies(&settings(), "where is my parcel", "en", true, 0).is_empty());
    }

    #[test]
    fn languages_fall_back_sensibly() {
        let t = text("Hi", "你好");
        assert_eq!(localized(&t, "zh-TW").as_deref(), Some("你好"));
        assert_eq!(localized(&t, "fr").as_deref(), Some("Hi"));
        assert_eq!(close_due(&settings(), 1000), Some(1000 + 1800 * 1000));
        assert_eq!(close_due(&AutomationSettings::default(), 1000), None);
    }
}
