//! The rate-limiter Durable Object: one per key (an IP address or an e-mail and an action),
//! holding a token bucket, for limits that span conversations.

use parley_core::ratelimit::{Rate, TokenBucket};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::platform::now_ms;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    IpCreations,
    Logins,
    Uploads,
    IpUploads,
    PageViews,
}

impl Limit {
    /// The limit's rate: the environment's setting (`RATE_IP_CREATIONS`, `RATE_LOGINS`,
    /// `RATE_UPLOADS`, `RATE_IP_UPLOADS`, `RATE_PAGE_VIEWS`, as `"<burst>/<per second>"`) or
    /// the default. Sites
    /// whose visitors share an address (a company network) raise the per-address ones.
    fn rate(self, env: &Env) -> Rate {
        let (name, default) = match self {
            Limit::IpCreations => ("RATE_IP_CREATIONS", Rate::IP_CREATIONS),
            Limit::Logins => ("RATE_LOGINS", Rate::LOGINS),
            Limit::Uploads => ("RATE_UPLOADS", Rate::UPLOADS),
            Limit::IpUploads => ("RATE_IP_UPLOADS", Rate::IP_UPLOADS),
            Limit::PageViews => ("RATE_PAGE_VIEWS", Rate::PAGE_VIEWS),
        };
        crate::config::rate(env, name, default)
    }
}

#[derive(Serialize, Deserialize)]
pub struct TakeRequest {
    pub limit: Limit,
}

#[derive(Serialize, Deserialize)]
pub struct TakeAnswer {
    pub allowed: bool,
    pub retry_after_ms: u64,
}

#[durable_object]
pub struct RateLimiterObject {
    state: State,
    env: Env,
}

impl DurableObject for RateLimiterObject {
    fn new(state: State, env: Env) -> Self {
        crate::log::configure(&env);
        RateLimiterObject { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request: TakeRequest = parley_core::json::from_str(&req.text().await?)?;
        let rate = request.limit.rate(&self.env);
        let now = now_ms();
        let storage = self.state.storage();
        let mut bucket = storage
            .get::<TokenBucket>("bucket")
            .await?
            .unwrap_or_else(|| TokenBucket::full(rate, now));
        let outcome = bucket.try_take(rate, now);
        storage.put("bucket", bucket).await?;
        Response::from_json(&TakeAnswer {
            allowed: outcome.is_ok(),
            retry_after_ms: outcome.err().unwrap_or(0),
        })
    }
}
