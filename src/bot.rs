//! The language-model bot: answers a visitor's message from the site's knowledge text through
//! an OpenAI-compatible endpoint, in the background. If it cannot answer (timeout, error,
//! nonsense), the conversation goes to people instead: the visitor is never left alone.

use std::time::Duration;

use futures::future::{select, Either};
use parley_core::bot::BotSettings;
use parley_core::webhook::url_allowed;
use parley_core::Event;
use wasm_bindgen::JsValue;
use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

use crate::config::Config;
use crate::internal::{SystemRequest, INTERNAL_BASE};
use crate::log::Log;

pub async fn answer(
    env: Env,
    settings: BotSettings,
    conversation: String,
    of: u64,
    history: Vec<Event>,
) {
    let reply = ask(&env, &settings, &history).await;
    let request = match reply {
        Ok(text) => SystemRequest::Automated {
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
    let sent = async {
        let stub = env
            .durable_object("CONVERSATION")?
            .id_from_name(&conversation)?
            .get_stub()?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&serde_json::to_string(&request)?)));
        stub.fetch_with_request(Request::new_with_init(
            &format!("{INTERNAL_BASE}/system"),
            &init,
        )?)
        .await
    }
    .await;
    if let Err(e) = sent {
        Log::warn("bot_unrecorded")
            .conversation(&conversation)
            .error_class("storage_unavailable")
            .field("detail", e.to_string())
            .emit();
    }
}

async fn ask(env: &Env, settings: &BotSettings, history: &[Event]) -> Result<String, String> {
    let base = settings.endpoint.trim_end_matches('/');
    if !url_allowed(base, Config::from_env(env).webhook_allow_private) {
        return Err("not_configured".into());
    }
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    if let Some(key) = &settings.api_key {
        let _ = headers.set("authorization", &format!("Bearer {key}"));
    }
    let body = parley_core::bot::request(settings, history).to_string();
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init(&format!("{base}/chat/completions"), &init)
        .map_err(|_| "not_configured".to_string())?;
    let fetcher = Fetch::Request(request);
    let call = Box::pin(async {
        let mut response = fetcher
            .send()
            .await
            .map_err(|_| "provider_error".to_string())?;
        if !(200..300).contains(&response.status_code()) {
            return Err("provider_error".to_string());
        }
        response
            .text()
            .await
            .map_err(|_| "bad_response".to_string())
    });
    let timeout = worker::Delay::from(Duration::from_millis(u64::from(
        settings.timeout_ms.clamp(1000, 60_000),
    )));
    let answer = match select(call, timeout).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => return Err("timeout".into()),
    };
    parley_core::translate::openai_response(&answer)
        .filter(|t| t.chars().count() <= 4000)
        .ok_or_else(|| "bad_response".into())
}
