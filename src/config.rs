//! Settings from the Worker's environment (wrangler.toml [vars] and secrets).

use parley_core::limits::DEFAULT_REPLAY_WINDOW;
use parley_core::ratelimit::Rate;
use parley_core::upload_buffer::DEFAULT_BUDGET_MB;
use parley_core::EngineConfig;
use worker::Env;

pub struct Config {
    /// HMAC key of visitor and agent tokens; at least 32 bytes.
    pub token_secret: String,
    pub replay_window: u64,
    pub visitor_token_ttl_ms: i64,
    pub agent_token_ttl_ms: i64,
    pub visitor_messages: Rate,
    pub agent_messages: Rate,
    pub ip_messages: Rate,
    /// How long an upload may wait to be posted before it is deleted.
    pub upload_grace_ms: i64,
    /// Upload bytes one isolate holds in memory at once (`UPLOAD_BUFFER_MB`).
    pub upload_buffer_bytes: usize,
    pub webhook_retry_base_ms: i64,
    pub webhook_allow_private: bool,
    /// Set by a private deployment after restoring a backup: every conversation starts a new
    /// epoch, so clients that saw events newer than the backup reload instead of resuming.
    pub restore_id: Option<String>,
}

fn text(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|s| s.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}

fn number(env: &Env, name: &str, default: i64) -> i64 {
    text(env, name)
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

impl Config {
    pub fn from_env(env: &Env) -> Config {
        Config {
            token_secret: text(env, "TOKEN_SECRET").unwrap_or_default(),
            replay_window: number(env, "REPLAY_WINDOW", DEFAULT_REPLAY_WINDOW as i64) as u64,
            visitor_token_ttl_ms: number(env, "VISITOR_TOKEN_TTL", 30 * 24 * 3600) * 1000,
            agent_token_ttl_ms: number(env, "AGENT_TOKEN_TTL", 12 * 3600) * 1000,
            visitor_messages: rate(env, "RATE_VISITOR_MESSAGES", Rate::VISITOR_MESSAGES),
            agent_messages: rate(env, "RATE_AGENT_MESSAGES", Rate::AGENT_MESSAGES),
            ip_messages: rate(env, "RATE_IP_MESSAGES", Rate::IP_MESSAGES),
            upload_grace_ms: number(env, "UPLOAD_GRACE_SECONDS", 24 * 3600) * 1000,
            upload_buffer_bytes: (number(env, "UPLOAD_BUFFER_MB", DEFAULT_BUDGET_MB as i64)
                as usize)
                .saturating_mul(1 << 20),
            webhook_retry_base_ms: number(env, "WEBHOOK_RETRY_BASE_MS", 5000),
            webhook_allow_private: text(env, "WEBHOOK_ALLOW_PRIVATE").is_some_and(|v| v == "true"),
            restore_id: text(env, "PARLEY_RESTORE_ID"),
        }
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            replay_window: self.replay_window,
            visitor_messages: self.visitor_messages,
            agent_messages: self.agent_messages,
            ip_messages: self.ip_messages,
        }
    }
}

/// A `"<burst>/<per second>"` setting, or the default when absent or invalid.
pub fn rate(env: &Env, name: &str, default: Rate) -> Rate {
    text(env, name)
        .and_then(|t| Rate::parse(&t))
        .unwrap_or(default)
}
