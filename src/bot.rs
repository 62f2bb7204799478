//! The bot in front of the humans, in the background of each visitor message. The language-
//! model bot answers from the site's knowledge text through an OpenAI-compatible endpoint; the
//! webhook bot is told about the message and answers later through the API. If the bot cannot
//! be reached (timeout, error, nonsense), the conversation goes to people instead: the visitor
//! is never left alone.

use parley_core::bot::{BotKind, BotSettings};
use parley_core::webhook::url_allowed;
use parley_core::Event;

use worker::Env;

use crate::config::Config;
use crate::internal::SystemRequest;
use crate::log::Log;

pub async fn answer(
    env: Env,
    settings: BotSettings,
    site: String,
    conversation: String,
    of: u64,
    history: Vec<Event>,
) {
    let reply = match settings.kind {
        BotKind::Llm => ask(&env, &settings, &history).await.map(Some),
        BotKind::WorkersAi => ask_workers_ai(&env, &settings, &history).await.map(Some),
        BotKind::Webhook => tell(&env, &settings, &site, &conversation, of, &history)
            .await
            .map(|()| None),
    };
    let request = match reply {
        // The webhook bot took the message: its answer comes through the API.
        Ok(None) => return,
        Ok(Some(text)) => SystemRequest::Automated {
            key: format!("bot:{of}"),
            text,
            name: Some(settings.name.clone()),
        },
        Err(reason) => {
            Log::warn("bot_failed")
                .conversation(&conversation)
                .seq(of)
                .error_class(&reason)
                .emit();
            SystemRequest::Handoff
        }
    };
    let sent = crate::internal::system_request(&env, &conversation, &request).await;
    if let Err(e) = sent {
        Log::warn("bot_unrecorded")
            .conversation(&conversation)
            .error_class("storage_unavailable")
            .field("detail", e.to_string())
            .emit();
    }
}

/// Posts the message to the webhook bot; any 2xx answer means it took it.
async fn tell(
    env: &Env,
    settings: &BotSettings,
    site: &str,
    conversation: &str,
    of: u64,
    history: &[Event],
) -> Result<(), String> {
    let url = settings.endpoint.trim();
    if !url_allowed(url, Config::from_env(env).webhook_allow_private) {
        return Err("not_configured".into());
    }
    let body = parley_core::bot::webhook_payload(conversation, site, of, history);
    crate::outbound::post_signed(
        url,
        settings.api_key.as_deref().unwrap_or_default(),
        "bot.message",
        &format!("bot-{conversation}-{of}"),
        &body,
        settings.timeout_ms.clamp(1000, 60_000),
    )
    .await
    .map(|_| ())
}

/// Cloudflare Workers AI (binding `AI`): a text model given the same messages.
async fn ask_workers_ai(
    env: &Env,
    settings: &BotSettings,
    history: &[Event],
) -> Result<String, String> {
    // Structs, not serde_json values: the binding takes plain objects, and a json map would
    // cross into JavaScript as a Map.
    #[derive(serde::Serialize)]
    struct Input {
        messages: Vec<parley_core::bot::ChatMessage>,
        max_tokens: u32,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        response: Option<String>,
    }
    let ai = env.ai("AI").map_err(|_| "not_configured".to_string())?;
    let input = Input {
        messages: parley_core::bot::chat(settings, history),
        max_tokens: 512,
    };
    let call = ai.run::<_, Answer>(parley_core::bot::model(settings), input);
    let answer = crate::outbound::within(settings.timeout_ms.clamp(1000, 60_000), call)
        .await?
        .map_err(|_| "provider_error".to_string())?;
    answer
        .response
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t.chars().count() <= 4000)
        .ok_or_else(|| "bad_response".into())
}

async fn ask(env: &Env, settings: &BotSettings, history: &[Event]) -> Result<String, String> {
    let base = settings.endpoint.trim_end_matches('/');
    if !url_allowed(base, Config::from_env(env).webhook_allow_private) {
        return Err("not_configured".into());
    }
    let body = parley_core::bot::request(settings, history);
    let url = format!("{base}/chat/completions");
    let answer = crate::outbound::post_json(
        &url,
        settings.api_key.as_deref(),
        &body,
        settings.timeout_ms.clamp(1000, 60_000),
    )
    .await?;
    parley_core::translate::openai_response(&answer)
        .filter(|t| t.chars().count() <= 4000)
        .ok_or_else(|| "bad_response".into())
}
