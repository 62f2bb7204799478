//! Two-way translation: which messages to translate into which language, and the wire formats
//! of the providers (any LibreTranslate-compatible service, any OpenAI-compatible chat endpoint,
//! or Cloudflare Workers AI). The shell does the HTTP; a failure never touches the message.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    Libretranslate,
    Openai,
    WorkersAi,
}

/// A site's translation settings (kept out of the public widget configuration: it holds a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TranslationSettings {
    pub enabled: bool,
    /// The language agents read and write, e.g. `en` or `zh`.
    pub agent_language: String,
    pub provider: Provider,
    /// Base URL of the service (LibreTranslate or OpenAI-compatible).
    pub endpoint: String,
    pub api_key: Option<String>,
    /// Model name for the OpenAI-compatible and Workers AI providers.
    pub model: String,
    pub timeout_ms: u32,
}

impl Default for TranslationSettings {
    fn default() -> Self {
        TranslationSettings {
            enabled: false,
            agent_language: "en".into(),
            provider: Provider::Libretranslate,
            endpoint: String::new(),
            api_key: None,
            model: "gpt-4o-mini".into(),
            timeout_ms: 8000,
        }
    }
}

/// The primary subtag of a language tag, lowercased: `zh-CN` → `zh`.
pub fn primary(tag: &str) -> String {
    tag.split(['-', '_'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A guess at a text's language from its script, for texts whose sender gave none.
pub fn guess_language(text: &str) -> Option<&'static str> {
    let mut counts = [0usize; 5]; // han, kana, hangul, cyrillic, arabic
    let mut letters = 0usize;
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        match c as u32 {
            0x4e00..=0x9fff | 0x3400..=0x4dbf => counts[0] += 1,
            0x3040..=0x30ff => counts[1] += 1,
            0xac00..=0xd7af => counts[2] += 1,
            0x0400..=0x04ff => counts[3] += 1,
            0x0600..=0x06ff => counts[4] += 1,
            _ => {}
        }
    }
    if letters == 0 {
        return None;
    }
    let most = counts.iter().enumerate().max_by_key(|(_, n)| **n)?;
    if *most.1 * 3 < letters {
        return None; // mostly Latin or mixed: leave it to the provider
    }
    Some(match most.0 {
        0 if counts[1] > 0 => "ja",
        0 => "zh",
        1 => "ja",
        2 => "ko",
        3 => "ru",
        _ => "ar",
    })
}

/// Whether and how to translate a message: `Some((from, to))` when the languages differ.
/// `from` may be `auto` (the provider detects it).
pub fn plan(text: &str, sender_language: Option<&str>, target: &str) -> Option<(String, String)> {
    let target = primary(target);
    if target.is_empty() || text.trim().is_empty() {
        return None;
    }
    let from = sender_language
        .map(primary)
        .filter(|l| !l.is_empty())
        .or_else(|| guess_language(text).map(str::to_string));
    match from {
        Some(from) if from == target => None,
        Some(from) => Some((from, target)),
        None => Some(("auto".into(), target)),
    }
}

/// The LibreTranslate `/translate` request body.
pub fn libretranslate_request(
    text: &str,
    from: &str,
    to: &str,
    api_key: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({ "q": text, "source": from, "target": to, "format": "text" });
    if let (Some(key), Some(map)) = (api_key, body.as_object_mut()) {
        map.insert("api_key".into(), key.into());
    }
    body
}

/// The translated text of a LibreTranslate answer.
pub fn libretranslate_response(body: &str) -> Option<String> {
    let value: serde_json::Value = crate::json::from_str(body).ok()?;
    value["translatedText"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// An OpenAI-compatible `/chat/completions` request that asks for the translation only.
pub fn openai_request(text: &str, from: &str, to: &str, model: &str) -> serde_json::Value {
    let source = if from == "auto" {
        "the source language".to_string()
    } else {
        format!("language code '{from}'")
    };
    serde_json::json!({
        "model": model,
        "temperature": 0,
        "messages": [
            { "role": "system", "content": format!(
                "You translate customer-service chat messages from {source} into language code '{to}'. \
                 Reply with the translation only, without quotes or notes. Keep URLs, numbers and names.") },
            { "role": "user", "content": text }
        ]
    })
}

/// The translated text of an OpenAI-compatible answer.
pub fn openai_response(body: &str) -> Option<String> {
    let value: serde_json::Value = crate::json::from_str(body).ok()?;
    value["choices"][0]["message"]["content"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Longest translation kept: a provider answering with an essay is broken, not helpful.
pub fn plausible(original: &str, translation: &str) -> bool {
    let (o, t) = (original.chars().count(), translation.chars().count());
    t > 0 && t <= o * 4 + 200
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_only_across_languages() {
        assert_eq!(plan("hello", Some("en-US"), "en"), None);
        assert_eq!(
            plan("你好，我想退货", None, "en"),
            Some(("zh".into(), "en".into()))
        );
        assert_eq!(
            plan("hola", Some("es"), "zh-CN"),
            Some(("es".into(), "zh".into()))
        );
        assert_eq!(
            plan("bonjour", None, "en"),
            Some(("auto".into(), "en".into()))
        );
        assert_eq!(plan("   ", Some("de"), "en"), None);
    }

    #[test]
    fn guesses_scripts() {
        assert_eq!(guess_language("请问发货了吗"), Some("zh"));
        assert_eq!(guess_language("ありがとうございます"), Some("ja"));
        assert_eq!(guess_language("안녕하세요"), Some("ko"));
        assert_eq!(guess_language("Здравствуйте"), Some("ru"));
        assert_eq!(guess_language("order 12345 please"), None);
    }

    #[test]
    fn provider_formats() {
        let lt = libretranslate_request("hi", "en", "zh", Some("k"));
        assert_eq!(lt["q"], "hi");
        assert_eq!(lt["api_key"], "k");
        assert_eq!(
            libretranslate_response(r#"{"translatedText":"你好"}"#).as_deref(),
            Some("你好")
        );
        assert_eq!(libretranslate_response("<html>502</html>"), None);
        assert_eq!(libretranslate_response(r#"{"error":"x"}"#), None);
        let oa = openai_request("hi", "en", "zh", "m");
        assert_eq!(oa["messages"][1]["content"], "hi");
        assert_eq!(
            openai_response(r#"{"choices":[{"message":{"role":"assistant","content":" 你好 "}}]}"#)
                .as_deref(),
            Some("你好")
        );
        assert_eq!(openai_response(r#"{"choices":[]}"#), None);
        assert!(!plausible("hi", &"x".repeat(500)));
    }
}
