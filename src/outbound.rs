//! Calls to services the site configured (translation providers, the bot's model endpoint):
//! a JSON POST with a deadline, failures reduced to a class the caller records.

use std::time::Duration;

use futures::future::{select, Either};
use wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit};

/// POSTs `body` to `url` (with a bearer `key` if given) and returns the answer's text, or why
/// not: `not_configured`, `provider_error` (no answer or not 2xx), `bad_response`, `timeout`.
pub async fn post_json(
    url: &str,
    key: Option<&str>,
    body: &serde_json::Value,
    timeout_ms: u32,
) -> Result<String, String> {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    if let Some(key) = key {
        let _ = headers.set("authorization", &format!("Bearer {key}"));
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&body.to_string())));
    let request = Request::new_with_init(url, &init).map_err(|_| "not_configured".to_string())?;
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
    let timeout = worker::Delay::from(Duration::from_millis(u64::from(timeout_ms)));
    let outcome = match select(call, timeout).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err("timeout".into()),
    };
    outcome
}
