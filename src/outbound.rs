//! Calls to services the site configured (translation providers, the bot's endpoint): a JSON
//! POST with a deadline, failures reduced to a class the caller records.

use std::time::Duration;

use futures::future::{select, Either};
use wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit, RequestRedirect};

use crate::log::Log;

/// POSTs `body` to `url` (with a bearer `key` if given) and returns the answer's text, or why
/// not: `not_configured`, `provider_error` (no answer or not 2xx; redirects are not followed),
/// `bad_response`, `timeout`.
pub async fn post_json(
    url: &str,
    key: Option<&str>,
    body: &serde_json::Value,
    timeout_ms: u32,
) -> Result<String, String> {
    let headers = Headers::new();
    if let Some(key) = key {
        let _ = headers.set("authorization", &format!("Bearer {key}"));
    }
    post(url, headers, &body.to_string(), timeout_ms).await
}

/// POSTs `body` to `url` signed with `secret` the way the site's webhooks are (the
/// `parley-signature` header), with `delivery` as its id for deduplication.
pub async fn post_signed(
    url: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    body: &serde_json::Value,
    timeout_ms: u32,
) -> Result<String, String> {
    let text = body.to_string();
    let signature =
        parley_core::webhook::signature(secret, crate::platform::now_ms() / 1000, &text);
    let headers = Headers::new();
    let _ = headers.set("parley-event", event);
    let _ = headers.set("parley-delivery", delivery);
    let _ = headers.set("parley-signature", &signature);
    post(url, headers, &text, timeout_ms).await
}

async fn post(url: &str, headers: Headers, body: &str, timeout_ms: u32) -> Result<String, String> {
    let _ = headers.set("content-type", "application/json");
    let mut init = RequestInit::new();
    // Not followed: the URL was checked (`outbound_url`), where a redirect points was not.
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(JsValue::from_str(body)));
    let request = Request::new_with_init(url, &init).map_err(|_| "not_configured".to_string())?;
    let fetcher = Fetch::Request(request);
    let call = async {
        let mut response = fetcher
            .send()
            .await
            .map_err(|_| "provider_error".to_string())?;
        let status = response.status_code();
        if (300..400).contains(&status) {
            Log::warn("outbound_redirect_refused")
                .error_class("provider_error")
                .field("status", status)
                .field("detail", "redirects are not followed")
                .emit();
        }
        if !(200..300).contains(&status) {
            return Err("provider_error".to_string());
        }
        response
            .text()
            .await
            .map_err(|_| "bad_response".to_string())
    };
    within(timeout_ms, call).await?
}

/// `call`'s result, or `Err("timeout")` if it takes longer than `timeout_ms`.
pub async fn within<T>(
    timeout_ms: u32,
    call: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    let timeout = worker::Delay::from(Duration::from_millis(u64::from(timeout_ms)));
    match select(Box::pin(call), timeout).await {
        Either::Left((result, _)) => Ok(result),
        Either::Right(_) => Err("timeout".into()),
    }
}
