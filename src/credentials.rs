//! Who is calling: one place turns a request's credential into a principal, once per request.
//!
//! - `Authorization: Bearer <signed token>`: visitors, API clients that signed in, and agent
//!   sockets' short-lived tokens;
//! - `Authorization: Bearer pk_…`: an API key (see [`crate::api_keys`]);
//! - the console's session cookie (HttpOnly, Secure, SameSite=Strict), which never reaches
//!   script. A cookie-borne request that changes something must also come from the Worker's
//!   own origin, so no other page can make the browser act for the agent.
//!
//! An agent token names its session: a token of an ended session is refused here.

use parley_core::token::{self, Principal};
use parley_core::ErrorCode;
use worker::{Method, Request};

use crate::api::{header, Ctx};
use crate::http::ApiError;
use crate::log::Log;

/// The console's session cookie. Its path covers the API only: pages and assets never see it.
pub const SESSION_COOKIE: &str = "parley_session";

/// The `Set-Cookie` value that starts a console session of `max_age_ms`.
pub fn session_cookie(token: &str, max_age_ms: i64) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/api/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        max_age_ms / 1000
    )
}

/// The `Set-Cookie` value that ends it in the browser.
pub fn cleared_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/api/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// The request's principal, or why it has none.
pub async fn identify(req: &Request, ctx: &Ctx) -> Result<Principal, ApiError> {
    let method = req.method();
    let (credential, from_cookie) = match bearer(req)? {
        Some(credential) => (credential, false),
        None => {
            let credential = cookie(req, SESSION_COOKIE).ok_or(ErrorCode::TokenMissing)?;
            if changes_state(&method) && ctx.origin.as_deref() != Some(ctx.own_origin.as_str()) {
                return Err(ErrorCode::OriginNotAllowed.into());
            }
            (credential, true)
        }
    };
    if parley_core::api_key::is_api_key(&credential) {
        // Keys are for servers: a browser's cookie never carries one.
        if from_cookie {
            return Err(ErrorCode::TokenInvalid.into());
        }
        return crate::api_keys::principal_for(ctx, &credential, &method).await;
    }
    let principal = token::verify(ctx.config.token_secret.as_bytes(), &credential, ctx.now)
        .map(|claims| claims.principal)
        .map_err(|e| ApiError::from(e.code()))?;
    if let Some(sid) = principal.session() {
        match crate::sessions::is_live(&ctx.env, sid, ctx.now).await {
            Ok(true) => {}
            Ok(false) => return Err(ErrorCode::SessionEnded.into()),
            Err(e) => {
                // Through a D1 outage the signed token alone decides, as it does for chat.
                Log::warn("session_check_failed")
                    .trace(&ctx.trace)
                    .error_class("d1_unavailable")
                    .field("detail", e.to_string())
                    .emit();
            }
        }
    }
    Ok(principal)
}

fn changes_state(method: &Method) -> bool {
    !matches!(method, Method::Get | Method::Head | Method::Options)
}

/// The bearer credential, if the request has an Authorization header.
fn bearer(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = header(req, "authorization") else {
        return Ok(None);
    };
    let credential = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or(ErrorCode::TokenInvalid)?;
    Ok(Some(credential.to_string()))
}

/// A cookie's value from the Cookie header.
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    let all = header(req, "cookie")?;
    all.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name && !value.is_empty()).then(|| value.to_string())
    })
}
