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
}

impl Limit {
    fn rate(self) -> Rate {
        match self {
            Limit::IpCreations => Rate::IP_CREATIONS,
            Limit::Logins => Rate::LOGINS,
            Limit::Uploads => Rate::UPLOADS,
            Limit::IpUploads => Rate::IP_UPLOADS,
        }
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
}

impl DurableObject for RateLimiterObject {
    fn new(state: State, _env: Env) -> Self {
        RateLimiterObject { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request: TakeRequest = req.json().await?;
        let rate = request.limit.rate();
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
