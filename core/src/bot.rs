//! A bot in front of the humans, and the hand-off to a person (a button or a keyword). Two
//! kinds: a language-model assistant answering from the site's knowledge text, or the team's
//! own bot behind a webhook, which Parley tells about each visitor message (signed like the
//! site's webhooks) and which answers through the REST API with an API key.

use serde::{Deserialize, Serialize};

use crate::protocol::{Event, EventPayload, Role};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotKind {
    /// An OpenAI-compatible chat endpoint answering from `knowledge`.
    #[default]
    Llm,
    /// A Cloudflare Workers AI text model (the `AI` binding) answering from `knowledge`.
    WorkersAi,
    /// The team's own service at `endpoint`, answering through the API.
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BotSettings {
    pub enabled: bool,
    pub kind: BotKind,
    /// Shown as the author of the bot's messages.
    pub name: String,
    /// The OpenAI-compatible endpoint (base URL), or the webhook bot's URL (unused by
    /// Workers AI).
    pub endpoint: String,
    /// The endpoint's API key, or the secret the webhook posts are signed with.
    pub api_key: Option<String>,
    pub model: String,
    /// What the bot knows: the admin's text (products, shipping, returns…).
    pub knowledge: String,
    /// A visitor message containing one of these asks for a person.
    pub handoff_keywords: Vec<String>,
    pub timeout_ms: u32,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            enabled: false,
            kind: BotKind::Llm,
            name: "Assistant".into(),
            endpoint: String::new(),
            api_key: None,
            model: "gpt-4o-mini".into(),
            knowledge: String::new(),
            handoff_keywords: vec![
                "human".into(),
                "agent".into(),
                "person".into(),
                "人工".into(),
                "转人工".into(),
            ],
            timeout_ms: 15_000,
        }
    }
}

/// Whether the visitor asks for a person.
pub fn wants_human(settings: &BotSettings, text: &str) -> bool {
    let lower = text.to_lowercase();
    settings
        .handoff_keywords
        .iter()
        .map(|k| k.trim().to_lowercase())
        .any(|k| !k.is_empty() && lower.contains(&k))
}

/// The Workers AI model used when the settings name none of its own.
pub const DEFAULT_WORKERS_AI_MODEL: &str = "@cf/meta/llama-3.1-8b-instruct";

/// The model a bot of `settings` asks: Workers AI models are named `@cf/…`.
pub fn model(settings: &BotSettings) -> &str {
    match settings.kind {
        BotKind::WorkersAi if !settings.model.starts_with("@cf/") => DEFAULT_WORKERS_AI_MODEL,
        _ => settings.model.as_str(),
    }
}

/// One message of a chat request (OpenAI-compatible and Workers AI text models alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

/// The chat: the knowledge as instructions, then the conversation so far (at most the last 20
/// messages; notes and other kinds are left out).
pub fn chat(settings: &BotSettings, history: &[Event]) -> Vec<ChatMessage> {
    let system = format!(
        "You are {name}, the customer-service assistant of this website. Answer briefly and \
         politely, in the visitor's language, only from the knowledge below. If the answer is \
         not in it, say you don't know and that the visitor can ask for a person.\n\n\
         Knowledge:\n{knowledge}",
        name = settings.name,
        knowledge = settings.knowledge.chars().take(20_000).collect::<String>(),
    );
    let mut messages = vec![ChatMessage {
        role: "system",
        content: system,
    }];
    let recent: Vec<&Event> = history
        .iter()
        .filter(|e| matches!(e.payload, EventPayload::Message { .. }))
        .collect();
    for event in recent.iter().rev().take(20).rev() {
        if let EventPayload::Message { text } = &event.payload {
            let role = if event.author.role == Role::Visitor {
                "user"
            } else {
                "assistant"
            };
            messages.push(ChatMessage {
                role,
                content: text.clone(),
            });
        }
    }
    messages
}

/// The OpenAI-compatible chat-completions request.
pub fn request(settings: &BotSettings, history: &[Event]) -> serde_json::Value {
    serde_json::json!({
        "model": model(settings),
        "temperature": 0.2,
        "messages": chat(settings, history),
    })
}

/// What the webhook bot receives for a visitor message: the message, the recent messages
/// (notes and other kinds left out) and how to answer.
pub fn webhook_payload(
    conversation: &str,
    site: &str,
    of: u64,
    history: &[Event],
) -> serde_json::Value {
    let messages: Vec<serde_json::Value> = history
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::Message { text } => Some(serde_json::json!({
                "seq": e.seq, "role": e.author.role, "name": e.author.name, "text": text, "at": e.at,
            })),
            _ => None,
        })
        .collect();
    let recent = &messages[messages.len().saturating_sub(20)..];
    let message = history
        .iter()
        .find(|e| e.seq == of)
        .and_then(|e| match &e.payload {
            EventPayload::Message { text } => {
                Some(serde_json::json!({ "seq": e.seq, "text": text, "at": e.at }))
            }
            _ => None,
        });
    serde_json::json!({
        "type": "bot.message",
        "conversation": conversation,
        "site": site,
        "message": message,
        "history": recent,
        "reply": {
            "method": "POST",
            "path": format!("/api/v1/conversations/{conversation}/messages"),
            "client_msg_id": format!("bot-{of}"),
            "handoff_path": format!("/api/v1/conversations/{conversation}/handoff"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Participant;

    fn msg(seq: u64, role: Role, text: &str) -> Event {
        Event {
            seq,
            payload: EventPayload::Message { text: text.into() },
            author: Participant {
                id: "x".into(),
                role,
                name: None,
            },
            at: 0,
            client_msg_id: None,
            masked: false,
        }
    }

    #[test]
    fn webhook_payload_names_the_message_and_how_to_answer() {
        let history = vec![
            msg(2, Role::Visitor, "How long is shipping?"),
            msg(3, Role::Agent, "About 3 days."),
            msg(4, Role::Visitor, "And to Canada?"),
        ];
        let p = webhook_payload("c_1", "s_1", 4, &history);
        assert_eq!(p["type"], "bot.message");
        assert_eq!(p["message"]["text"], "And to Canada?");
        assert_eq!(p["history"].as_array().map(Vec::len), Some(3));
        assert_eq!(p["history"][1]["role"], "agent");
        assert_eq!(p["reply"]["path"], "/api/v1/conversations/c_1/messages");
        assert_eq!(p["reply"]["client_msg_id"], "bot-4");
        let settings: BotSettings = crate::json::from_str(r#"{"enabled":true}"#).unwrap();
        assert_eq!(
            settings.kind,
            BotKind::Llm,
            "stored settings from before kinds are LLM bots"
        );
        let workers_ai: BotSettings = crate::json::from_str(r#"{"kind":"workers_ai"}"#).unwrap();
        assert_eq!(model(&workers_ai), DEFAULT_WORKERS_AI_MODEL);
        assert_eq!(model(&settings), "gpt-4o-mini");
    }

    #[test]
    fn handoff_keywords() {
        let s = BotSettings::default();
        assert!(wants_human(&s, "Can I talk to a HUMAN please"));
        assert!(wants_human(&s, "转人工"));
        assert!(!wants_human(&s, "Where is my order?"));
    }

    #[test]
    fn request_carries_knowledge_and_history() {
        let s = BotSettings {
            knowledge: "Shipping takes 3 days.".into(),
            ..BotSettings::default()
        };
        let history = vec![
            msg(2, Role::Visitor, "How long is shipping?"),
            msg(3, Role::System, "About 3 days."),
            msg(4, Role::Visitor, "Thanks"),
        ];
        let r = request(&s, &history);
        let messages = r["messages"].as_array().unwrap();
        assert!(messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("Shipping takes 3 days."));
        let roles: Vec<&str> = messages[1..]
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
    }
}
