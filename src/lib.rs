//! Parley's Worker: the thin shell around parley-core. It routes and authenticates HTTP
//! requests, serves the static assets, and hosts the Durable Objects that run the core.

mod admin;
mod answers;
mod api;
mod api_keys;
mod automation;
mod bot;
mod config;
mod console;
mod conversation_object;
mod credentials;
mod erasure;
mod export;
mod files;
mod http;
mod internal;
mod limiter_object;
mod log;
mod mirror;
mod named;
mod object_kv;
mod openapi;
mod outbound;
mod platform;
mod query;
mod recovery;
mod remembered;
mod reports;
mod row;
mod search;
mod sessions;
mod site_link;
mod site_mirror;
mod site_object;
mod sites;
mod sql_store;
mod sql_text;
mod translation;
mod turns;
mod unsigned_sockets;
mod webhook_object;
mod widget;
mod zones;

pub use conversation_object::ConversationObject;
pub use limiter_object::RateLimiterObject;
pub use site_object::SiteObject;
pub use webhook_object::WebhookObject;

use worker::{event, Context, Env, Request, Response, Result};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
    platform::run_futures_on_promise_microtasks();
    parley_core::zone::use_rules(&zones::IntlZones);
}

/// The daily retention purge (wrangler.toml `[triggers]`).
#[event(scheduled)]
async fn scheduled(_event: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    log::configure(&env);
    if let Err(e) = erasure::purge_expired(&env, platform::now_ms(), None).await {
        log::Log::error("retention_purge_failed")
            .error_class("storage_unavailable")
            .field("detail", e.to_string())
            .emit();
    }
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    log::configure(&env);
    if let Some(sweep) = recovery::once(&env) {
        ctx.wait_until(sweep);
    }
    api::handle(req, env, ctx).await
}
