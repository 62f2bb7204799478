//! A site's widget settings: what the widget looks like and asks. Stored as JSON in D1;
//! anything missing or invalid falls back to a sensible default, so a half-configured site
//! still shows a working widget.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Text in several languages, keyed by language tag (`en`, `zh-CN`).
pub type Localized = BTreeMap<String, String>;

fn localized(en: &str, zh: &str) -> Localized {
    BTreeMap::from([
        ("en".to_string(), en.to_string()),
        ("zh-CN".to_string(), zh.to_string()),
    ])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    #[default]
    Right,
    Left,
}

/// Light or dark widget. `Auto` follows the visitor's system (`prefers-color-scheme`); an
/// embed's `data-theme` attribute overrides the site's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    #[default]
    Auto,
    Light,
    Dark,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Appearance {
    pub color: String,
    pub position: Position,
    pub launcher_text: Localized,
    pub theme: Theme,
}

impl Default for Appearance {
    fn default() -> Self {
        Appearance {
            color: "#2563eb".into(),
            position: Position::Right,
            launcher_text: localized("Chat with us", "在线咨询"),
            theme: Theme::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    #[default]
    Text,
    Email,
    Tel,
    Textarea,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormField {
    pub name: String,
    pub label: Localized,
    #[serde(default, rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Prechat {
    pub enabled: bool,
    pub fields: Vec<FormField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Offline {
    pub message: Localized,
}

impl Default for Offline {
    fn default() -> Self {
        Offline {
            message: localized(
                "We're away right now. Leave a message and we'll get back to you.",
                "我们暂时不在线，请留言，我们会尽快回复您。",
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attachments {
    /// Largest upload, in bytes.
    pub max_bytes: usize,
}

impl Default for Attachments {
    fn default() -> Self {
        Attachments {
            max_bytes: crate::attachment::DEFAULT_MAX_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WidgetSettings {
    pub appearance: Appearance,
    pub welcome: Localized,
    pub prechat: Prechat,
    pub offline: Offline,
    pub attachments: Attachments,
}

impl Default for WidgetSettings {
    fn default() -> Self {
        WidgetSettings {
            appearance: Appearance::default(),
            welcome: localized(
                "Hi! How can we help you today?",
                "您好！请问有什么可以帮您？",
            ),
            prechat: Prechat::default(),
            offline: Offline::default(),
            attachments: Attachments::default(),
        }
    }
}

/// Longest configurable text.
const MAX_TEXT: usize = 500;
const MAX_FIELDS: usize = 10;

fn is_hex_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn clean_localized(text: Localized, fallback: Localized) -> Localized {
    let kept: Localized = text
        .into_iter()
        .filter(|(lang, value)| lang.len() <= 16 && !value.trim().is_empty())
        .map(|(lang, value)| (lang, value.chars().take(MAX_TEXT).collect()))
        .collect();
    if kept.is_empty() {
        fallback
    } else {
        kept
    }
}

impl WidgetSettings {
    /// Reads stored settings; invalid parts are replaced by defaults.
    pub fn from_stored(json: &str) -> WidgetSettings {
        let parsed: WidgetSettings = crate::json::from_str(json).unwrap_or_default();
        parsed.sanitized()
    }

    /// The settings with every value brought within its bounds.
    pub fn sanitized(self) -> WidgetSettings {
        let defaults = WidgetSettings::default();
        let color = if is_hex_colour(&self.appearance.color) {
            self.appearance.color.to_ascii_lowercase()
        } else {
            defaults.appearance.color.clone()
        };
        let fields = self
            .prechat
            .fields
            .into_iter()
            .filter(|f| is_field_name(&f.name))
            .take(MAX_FIELDS)
            .map(|f| FormField {
                label: clean_localized(f.label, localized(&f.name, &f.name)),
                ..f
            })
            .collect();
        WidgetSettings {
            appearance: Appearance {
                color,
                position: self.appearance.position,
                launcher_text: clean_localized(
                    self.appearance.launcher_text,
                    defaults.appearance.launcher_text,
                ),
                theme: self.appearance.theme,
            },
            welcome: clean_localized(self.welcome, defaults.welcome),
            prechat: Prechat {
                enabled: self.prechat.enabled,
                fields,
            },
            offline: Offline {
                message: clean_localized(self.offline.message, defaults.offline.message),
            },
            // Between 1 KB and 25 MB (the most the Worker accepts).
            attachments: Attachments {
                max_bytes: self.attachments.max_bytes.clamp(1024, 25 * 1024 * 1024),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_broken_settings_give_defaults() {
        assert_eq!(WidgetSettings::from_stored("{}"), WidgetSettings::default());
        assert_eq!(
            WidgetSettings::from_stored("not json"),
            WidgetSettings::default()
        );
    }

    #[test]
    fn invalid_parts_are_replaced_valid_parts_kept() {
        let stored = r##"{
            "appearance": {"color": "red; background: url(x)", "position": "left"},
            "welcome": {"en": "Welcome!"},
            "prechat": {"enabled": true, "fields": [
                {"name": "email", "label": {"en": "E-mail"}, "type": "email", "required": true},
                {"name": "Bad Name", "label": {"en": "x"}}
            ]}
        }"##;
        let s = WidgetSettings::from_stored(stored);
        assert_eq!(s.appearance.color, "#2563eb");
        assert_eq!(s.appearance.position, Position::Left);
        assert_eq!(s.welcome.get("en").map(String::as_str), Some("Welcome!"));
        assert_eq!(s.prechat.fields.len(), 1);
        assert_eq!(s.prechat.fields[0].kind, FieldType::Email);
    }

    #[test]
    fn theme_is_auto_light_or_dark_and_defaults_to_auto() {
        // Settings stored before the theme existed follow the visitor's system.
        let before = WidgetSettings::from_stored(r##"{"appearance": {"color": "#0f766e"}}"##);
        assert_eq!(before.appearance.theme, Theme::Auto);
        assert_eq!(before.appearance.color, "#0f766e");
        for (name, theme) in [
            ("auto", Theme::Auto),
            ("light", Theme::Light),
            ("dark", Theme::Dark),
        ] {
            let stored = format!(r#"{{"appearance": {{"theme": "{name}"}}}}"#);
            let s = WidgetSettings::from_stored(&stored);
            assert_eq!(s.appearance.theme, theme);
            // The widget reads it back by the same name.
            let json = serde_json::to_value(&s).unwrap();
            assert_eq!(json["appearance"]["theme"], name);
        }
        // Anything else is refused, so a settings change naming it fails as a bad request
        // instead of being stored.
        for bad in [r#""purple""#, r#""Dark""#, "1", "null"] {
            let body = format!(r#"{{"appearance": {{"theme": {bad}}}}}"#);
            assert!(
                crate::json::from_str::<WidgetSettings>(&body).is_err(),
                "{body} accepted"
            );
        }
    }
}
