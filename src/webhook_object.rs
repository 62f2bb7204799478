//! The Webhook Durable Object, one per site: a durable queue of deliveries to the site's
//! webhooks, sent from its alarm with signatures, retried with backoff, logged, and a webhook
//! switched off after too many failures in a row.
//!
//! A delivery's body (message text, form fields) is kept only while it may still be sent: a
//! finished delivery keeps its log line (status, attempts, error) for [`LOG_KEEP_MS`], and an
//! erased conversation's deliveries are dropped at once, sent or not.

use std::time::Duration;

use futures::future::{select, Either};
use parley_core::outbound_url;
use parley_core::webhook::{self, Notice, DISABLE_AFTER_FAILURES, MAX_ATTEMPTS};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit,
    RequestRedirect, Response, Result, SqlStorage, SqlStorageValue, State,
};

use crate::config::Config;
use crate::internal::{INTERNAL_BASE, SITE_HEADER};
use crate::log::Log;
use crate::object_kv::ObjectKv;
use crate::platform::now_ms;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
  id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, delivery_id TEXT NOT NULL, event TEXT NOT NULL,
  body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL,
  last_status INTEGER, last_error TEXT, created_at INTEGER NOT NULL, delivered_at INTEGER);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS deliveries_by_webhook ON deliveries (webhook_id, created_at);
CREATE INDEX IF NOT EXISTS deliveries_by_delivery ON deliveries (delivery_id);
CREATE INDEX IF NOT EXISTS deliveries_by_age ON deliveries (created_at);
";

/// How long a receiver has to answer.
const TIMEOUT_MS: u64 = 10_000;
/// Deliveries sent per alarm run.
const BATCH: u32 = 20;
/// How long the log line of a finished delivery is kept (from when it was queued).
const LOG_KEEP_MS: i64 = 30 * 24 * 3600 * 1000;
/// Expired log lines are pruned at most this often: their times are spread over the day, and
/// an alarm per line would wake the object once per delivery.
const LOG_PRUNE_EVERY_MS: i64 = 3600 * 1000;
/// Marks an object whose deliveries finished under an earlier release have lost their bodies.
const FINISHED_BODIES_DROPPED: &str = "finished_bodies_dropped";

parley_core::tagged_enum! {
    tag = "op";
    /// Requests to a site's webhook object (one shape across releases: see `internal`); `Erased`
    /// names a conversation whose deliveries go, sent or not; `WebhookDeleted` a webhook whose
    /// deliveries (and the bodies of those still waiting) go with it.
    #[derive(Debug, Clone, Serialize)]
    pub enum WebhookRequest {
        Enqueue { notices: Vec<Notice> },
        Deliveries { webhook: String },
        Erased { conversation: String },
        WebhookDeleted { webhook: String },
    }
}

/// Sends a request to the webhook object of `site`.
pub async fn send(env: &Env, site: &str, request: &WebhookRequest) -> Result<Response> {
    let stub = env
        .durable_object("WEBHOOKS")?
        .id_from_name(site)?
        .get_stub()?;
    let headers = Headers::new();
    headers.set(SITE_HEADER, site)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&serde_json::to_string(request)?)));
    stub.fetch_with_request(Request::new_with_init(
        &format!("{INTERNAL_BASE}/request"),
        &init,
    )?)
    .await
}

#[derive(Debug, Clone, Deserialize)]
struct Hook {
    id: String,
    url: String,
    events: String,
    secret: String,
    enabled: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct Delivery {
    id: String,
    webhook_id: String,
    delivery_id: String,
    event: String,
    body: String,
    status: String,
    attempts: u32,
    next_at: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
}

#[durable_object]
pub struct WebhookObject {
    state: State,
    env: Env,
    kv: ObjectKv,
    /// Whether this instance rescheduled its stored alarm (`platform::recover_alarm`).
    alarm_checked: std::cell::Cell<bool>,
}

impl DurableObject for WebhookObject {
    fn new(state: State, env: Env) -> Self {
        crate::log::configure(&env);
        // Once per instance, not per statement: everything after assumes the tables exist.
        let sql = state.storage().sql();
        let _ = sql.exec(SCHEMA, None);
        let kv = ObjectKv::open(sql.clone());
        drop_finished_bodies_once(&sql, &kv);
        WebhookObject {
            state,
            env,
            kv,
            alarm_checked: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        crate::platform::recover_alarm(&self.state, &self.env, &self.alarm_checked).await;
        if req.path() == "/wake" {
            // After a restart: nothing to do but what every request does first.
            return crate::http::no_content();
        }
        if let Some(site) = req.headers().get(SITE_HEADER)? {
            self.remember_site(&site);
        }
        match WebhookRequest::from_json(&req.text().await?)? {
            WebhookRequest::Enqueue { notices } => {
                let queued = self.enqueue(notices).await?;
                Response::from_json(&serde_json::json!({ "queued": queued }))
            }
            WebhookRequest::Deliveries { webhook } => {
                let rows = self
                    .sql()
                    .exec(
                        "SELECT * FROM deliveries WHERE webhook_id = ? ORDER BY created_at DESC LIMIT 100",
                        vec![webhook.as_str().into()],
                    )?
                    .to_array::<Delivery>()?;
                let list: Vec<serde_json::Value> = rows
                    .into_iter()
                    .map(|d| {
                        serde_json::json!({
                            "delivery_id": d.delivery_id, "event": d.event, "status": d.status,
                            "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
                            "created_at": d.created_at, "delivered_at": d.delivered_at, "next_at": d.next_at,
                        })
                    })
                    .collect();
                Response::from_json(&serde_json::json!({ "deliveries": list }))
            }
            WebhookRequest::WebhookDeleted { webhook } => {
                let dropped = self
                    .sql()
                    .exec(
                        "DELETE FROM deliveries WHERE webhook_id = ? RETURNING id",
                        vec![webhook.as_str().into()],
                    )?
                    .to_array::<serde_json::Value>()?
                    .len();
                Response::from_json(&serde_json::json!({ "dropped": dropped }))
            }
            WebhookRequest::Erased { conversation } => {
                let dropped = self.forget(&conversation)?;
                Log::info("webhook_deliveries_erased")
                    .conversation(&conversation)
                    .field("dropped", dropped)
                    .emit();
                Response::from_json(&serde_json::json!({ "dropped": dropped }))
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm_checked.set(true);
        self.deliver_due().await?;
        Response::ok("ok")
    }
}

impl WebhookObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn remember_site(&self, site: &str) {
        let _ = self.kv.put_if_absent("site", site);
    }

    fn site(&self) -> Option<String> {
        self.kv.get("site")
    }

    /// Drops every delivery of `conversation` (their ids start with it: see
    /// `webhook::notices`); a retry already on its way is not sent (see `deliver_due`).
    fn forget(&self, conversation: &str) -> Result<usize> {
        // `;` follows `:`: the range is every id starting with "<conversation>:".
        let dropped = self
            .sql()
            .exec(
                "DELETE FROM deliveries WHERE delivery_id >= ? AND delivery_id < ? RETURNING id",
                vec![
                    format!("{conversation}:").into(),
                    format!("{conversation};").into(),
                ],
            )?
            .to_array::<serde_json::Value>()?
            .len();
        Ok(dropped)
    }

    /// Deletes the log lines of deliveries finished and queued over [`LOG_KEEP_MS`] ago.
    fn prune_log(&self, now: i64) {
        let _ = self.sql().exec(
            "DELETE FROM deliveries WHERE created_at <= ? AND status != 'pending'",
            vec![SqlStorageValue::Integer(now - LOG_KEEP_MS)],
        );
    }

    /// The body of a delivery still waiting to be sent, read again just before sending it:
    /// the conversation may have been erased while earlier deliveries of the run were sent.
    fn pending_body(&self, id: &str) -> Option<String> {
        #[derive(Deserialize)]
        struct Row {
            body: String,
        }
        self.sql()
            .exec(
                "SELECT body FROM deliveries WHERE id = ? AND status = 'pending'",
                vec![id.into()],
            )
            .and_then(|c| c.to_array::<Row>())
            .ok()?
            .into_iter()
            .next()
            .map(|r| r.body)
    }

    async fn hooks(&self) -> Result<Vec<Hook>> {
        let site = self.site().unwrap_or_default();
        self.env
            .d1("DB")?
            .prepare("SELECT id, url, events, secret, enabled FROM webhooks WHERE site_id = ?1")
            .bind(&[site.into()])?
            .all()
            .await?
            .results::<Hook>()
    }

    /// Records one delivery per enabled webhook that wants each notice; duplicates are ignored.
    async fn enqueue(&self, notices: Vec<Notice>) -> Result<u32> {
        let hooks: Vec<Hook> = self
            .hooks()
            .await?
            .into_iter()
            .filter(|h| h.enabled != 0)
            .collect();
        let now = now_ms();
        let mut queued = 0;
        let sql = self.sql();
        for notice in &notices {
            for hook in &hooks {
                let wanted: Vec<String> =
                    parley_core::json::from_str(&hook.events).unwrap_or_default();
                if !wanted.contains(&notice.event) {
                    continue;
                }
                let body = serde_json::json!({
                    "id": notice.delivery_id, "event": notice.event, "created_at": now, "data": notice.data,
                })
                .to_string();
                let cursor = sql.exec(
                    "INSERT OR IGNORE INTO deliveries (id, webhook_id, delivery_id, event, body, status, attempts, next_at, created_at)
                     VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    vec![
                        format!("{}:{}", hook.id, notice.delivery_id).into(),
                        hook.id.as_str().into(),
                        notice.delivery_id.as_str().into(),
                        notice.event.as_str().into(),
                        body.into(),
                        SqlStorageValue::Integer(now),
                        SqlStorageValue::Integer(now),
                    ],
                )?;
                queued += cursor.rows_written() as u32;
            }
        }
        if queued > 0 {
            self.state
                .storage()
                .set_alarm(Duration::from_millis(0))
                .await?;
        }
        Ok(queued)
    }

    async fn deliver_due(&self) -> Result<()> {
        let config = Config::from_env(&self.env);
        let now = now_ms();
        self.prune_log(now);
        let due = self
            .sql()
            .exec(
                "SELECT * FROM deliveries WHERE status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?",
                vec![SqlStorageValue::Integer(now), SqlStorageValue::Integer(i64::from(BATCH))],
            )?
            .to_array::<Delivery>()?;
        if due.is_empty() {
            // Only the log's expiry rang: no need to read the webhooks from D1.
            return self.schedule_next().await;
        }
        let hooks = self.hooks().await.unwrap_or_default();
        for delivery in due {
            let Some(hook) = hooks.iter().find(|h| h.id == delivery.webhook_id) else {
                self.finish(&delivery, "failed", None, Some("webhook deleted"));
                continue;
            };
            if hook.enabled == 0 {
                self.finish(&delivery, "failed", None, Some("webhook disabled"));
                continue;
            }
            if let Err(refusal) = outbound_url::check(&hook.url, config.webhook_allow_private) {
                let error = format!("target address not allowed: {}", refusal.code());
                self.finish(&delivery, "failed", None, Some(&error));
                continue;
            }
            let Some(body) = self.pending_body(&delivery.id) else {
                continue;
            };
            let delivery = Delivery { body, ..delivery };
            let attempts = delivery.attempts + 1;
            let (status, failure) = match post(hook, &delivery).await {
                Ok(status) => (Some(status), webhook::status_error(status)),
                Err(error) => (None, Some(error)),
            };
            match failure {
                None => {
                    self.finish(&delivery, "delivered", status, None);
                    self.record_result(hook, true).await;
                }
                Some(error) => {
                    if attempts >= MAX_ATTEMPTS {
                        self.finish(&delivery, "failed", status, Some(&error));
                    } else {
                        let next = now_ms()
                            + webhook::retry_delay_ms(config.webhook_retry_base_ms, attempts);
                        let _ = self.sql().exec(
                            "UPDATE deliveries SET attempts = ?, next_at = ?, last_status = ?, last_error = ? WHERE id = ?",
                            vec![
                                SqlStorageValue::Integer(i64::from(attempts)),
                                SqlStorageValue::Integer(next),
                                status.map_or(SqlStorageValue::Null, SqlStorageValue::Integer),
                                error.as_str().into(),
                                delivery.id.as_str().into(),
                            ],
                        );
                    }
                    Log::warn("webhook_failed")
                        .field("webhook", hook.id.as_str())
                        .field("event", delivery.event.as_str())
                        .field("attempts", attempts)
                        .error_class("webhook_target")
                        .field("detail", error)
                        .emit();
                    self.record_result(hook, false).await;
                }
            }
        }
        self.schedule_next().await
    }

    /// Records how a delivery ended; its body is not needed any more and goes.
    fn finish(&self, delivery: &Delivery, status: &str, http: Option<i64>, error: Option<&str>) {
        let _ = self.sql().exec(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_status = ?, last_error = ?, body = '',
               delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
            vec![
                status.into(),
                http.map_or(SqlStorageValue::Null, SqlStorageValue::Integer),
                error.map_or(SqlStorageValue::Null, SqlStorageValue::from),
                status.into(),
                SqlStorageValue::Integer(now_ms()),
                delivery.id.as_str().into(),
            ],
        );
    }

    /// Counts consecutive failures in D1; too many switch the webhook off, with a note in the
    /// team's audit log so the admin sees why.
    async fn record_result(&self, hook: &Hook, ok: bool) {
        let result = async {
            let db = self.env.d1("DB")?;
            if ok {
                db.prepare("UPDATE webhooks SET failures = 0 WHERE id = ?1")
                    .bind(&[hook.id.as_str().into()])?
                    .run()
                    .await?;
                return Ok::<(), worker::Error>(());
            }
            db.prepare(
                "UPDATE webhooks SET failures = failures + 1,
                   enabled = CASE WHEN failures + 1 >= ?2 THEN 0 ELSE enabled END,
                   disabled_reason = CASE WHEN failures + 1 >= ?2 THEN 'too_many_failures' ELSE disabled_reason END
                 WHERE id = ?1",
            )
            .bind(&[hook.id.as_str().into(), JsValue::from(DISABLE_AFTER_FAILURES)])?
            .run()
            .await?;
            db.prepare(
                "INSERT INTO audit_log (team_id, actor_id, action, target, detail, created_at)
                 SELECT s.team_id, 'system', 'webhook_disabled', w.id, '{\"reason\":\"too_many_failures\"}', ?2
                 FROM webhooks w JOIN sites s ON s.id = w.site_id
                 WHERE w.id = ?1 AND w.enabled = 0 AND w.failures = ?3",
            )
            .bind(&[
                hook.id.as_str().into(),
                JsValue::from_f64(now_ms() as f64),
                JsValue::from(DISABLE_AFTER_FAILURES),
            ])?
            .run()
            .await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            Log::warn("webhook_bookkeeping_failed")
                .error_class("d1_unavailable")
                .field("detail", e.to_string())
                .emit();
        }
    }

    /// Sets the alarm for the next delivery due, or else for the oldest log line to go.
    async fn schedule_next(&self) -> Result<()> {
        #[derive(Deserialize)]
        struct Row {
            at: Option<i64>,
        }
        let first = |sql: &str| -> Result<Option<i64>> {
            Ok(self
                .sql()
                .exec(sql, None)?
                .to_array::<Row>()?
                .into_iter()
                .next()
                .and_then(|r| r.at))
        };
        let due = first("SELECT MIN(next_at) AS at FROM deliveries WHERE status = 'pending'")?;
        let expires =
            first("SELECT MIN(created_at) AS at FROM deliveries WHERE status != 'pending'")?
                .map(|at| (at + LOG_KEEP_MS).max(now_ms() + LOG_PRUNE_EVERY_MS));
        let next = due.into_iter().chain(expires).min();
        if let Some(at) = next {
            let delay = (at - now_ms()).max(0) as u64;
            self.state
                .storage()
                .set_alarm(Duration::from_millis(delay))
                .await?;
        }
        Ok(())
    }
}

/// Drops the bodies of deliveries that finished under an earlier release, which kept them:
/// once per object.
fn drop_finished_bodies_once(sql: &SqlStorage, kv: &ObjectKv) {
    if kv.get(FINISHED_BODIES_DROPPED).is_some() {
        return;
    }
    let dropped = sql.exec(
        "UPDATE deliveries SET body = '' WHERE status != 'pending' AND body != ''",
        None,
    );
    if dropped.is_ok() {
        let _ = kv.put(FINISHED_BODIES_DROPPED, "1");
    }
}

/// POSTs one delivery, signed; the receiver's HTTP status, or why there was none. A redirect is
/// returned as its own status, not followed: where it points was never checked.
async fn post(hook: &Hook, delivery: &Delivery) -> std::result::Result<i64, String> {
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| e.to_string());
    set("content-type", "application/json")?;
    set("user-agent", "Parley-Webhooks/1")?;
    set("parley-event", &delivery.event)?;
    set("parley-delivery", &delivery.delivery_id)?;
    set(
        "parley-signature",
        &webhook::signature(&hook.secret, now_ms() / 1000, &delivery.body),
    )?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers.clone())
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(JsValue::from_str(&delivery.body)));
    let request = Request::new_with_init(&hook.url, &init).map_err(|e| e.to_string())?;
    let fetcher = Fetch::Request(request);
    let fetch = Box::pin(fetcher.send());
    let timeout = worker::Delay::from(Duration::from_millis(TIMEOUT_MS));
    let outcome = match select(fetch, timeout).await {
        Either::Left((Ok(response), _)) => Ok(i64::from(response.status_code())),
        Either::Left((Err(e), _)) => Err(e.to_string()),
        Either::Right(_) => Err("timed out".into()),
    };
    outcome
}
