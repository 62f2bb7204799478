//! The Webhook Durable Object, one per site: a durable queue of deliveries to the site's
//! webhooks, sent from its alarm with signatures, retried with backoff, logged, and a webhook
//! switched off after failing for hours (`webhook::FailureStreak`).
//!
//! A delivery is `pending` (waiting for its next attempt), `delivered`, `failed` (given up), or
//! `paused`: its webhook is switched off, and it waits, body and all, until the webhook is
//! switched on again (then it is sent), or for 30 days from when it was queued (then it goes
//! with the log). Once a webhook's delivery fails in an alarm run, its other deliveries are not
//! sent in that run: they wait for the webhook's next retry (`webhook::hold_until`). When the
//! webhooks cannot be read from D1, nothing is concluded: the due deliveries stay as they are
//! and the alarm looks again shortly.
//!
//! A delivery's body (message text, form fields) is kept only while it may still be sent: a
//! finished delivery keeps its log line (status, attempts, error) for [`LOG_KEEP_MS`], and an
//! erased conversation's deliveries are dropped at once, sent or not.

use std::cell::Cell;
use std::collections::HashSet;
use std::time::Duration;

use futures::future::{select, Either};
use parley_core::outbound_url;
use parley_core::webhook::{
    self, DueAction, FailureStreak, HookLookup, Notice, MAX_ATTEMPTS, PAUSED_RECHECK_MS,
};
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
    /// deliveries (and the bodies of those still waiting) go with it; `WebhookEnabled` a webhook
    /// switched on again, whose paused deliveries are sent now.
    #[derive(Debug, Clone, Serialize)]
    pub enum WebhookRequest {
        Enqueue { notices: Vec<Notice> },
        Deliveries { webhook: String },
        Erased { conversation: String },
        WebhookDeleted { webhook: String },
        WebhookEnabled { webhook: String },
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
    failures: i64,
    failing_since: Option<i64>,
}

impl Hook {
    fn streak(&self) -> FailureStreak {
        FailureStreak {
            failures: u32::try_from(self.failures.max(0)).unwrap_or(u32::MAX),
            since: self.failing_since,
        }
    }
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
    alarm_checked: Cell<bool>,
    /// Alarm runs in a row that could not read the webhooks from D1 (sets the backoff).
    failed_reads: Cell<u32>,
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
            alarm_checked: Cell::new(false),
            failed_reads: Cell::new(0),
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
            WebhookRequest::WebhookEnabled { webhook } => {
                let resumed = self.resume(&webhook, now_ms())?;
                if resumed > 0 {
                    self.state
                        .storage()
                        .set_alarm(Duration::from_millis(0))
                        .await?;
                }
                Log::info("webhook_deliveries_resumed")
                    .field("webhook", webhook.as_str())
                    .field("resumed", resumed)
                    .emit();
                Response::from_json(&serde_json::json!({ "resumed": resumed }))
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

    /// Deletes the log lines of deliveries finished and queued over [`LOG_KEEP_MS`] ago, and
    /// deliveries paused that long (their webhook was never switched on again), bodies and all.
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
                "SELECT body FROM deliveries WHERE id = ? AND status IN ('pending', 'paused')",
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
            .prepare(
                "SELECT id, url, events, secret, enabled, failures, failing_since FROM webhooks WHERE site_id = ?1",
            )
            .bind(&[site.into()])?
            .all()
            .await?
            .results::<Hook>()
    }

    /// Records one delivery per webhook that wants each notice (paused for a webhook switched
    /// off: it is sent if the webhook is switched on again); duplicates are ignored.
    async fn enqueue(&self, notices: Vec<Notice>) -> Result<u32> {
        let hooks: Vec<Hook> = self.hooks().await?;
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
                let (status, next_at) = if hook.enabled != 0 {
                    ("pending", now)
                } else {
                    ("paused", now + PAUSED_RECHECK_MS)
                };
                let cursor = sql.exec(
                    "INSERT OR IGNORE INTO deliveries (id, webhook_id, delivery_id, event, body, status, attempts, next_at, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                    vec![
                        format!("{}:{}", hook.id, notice.delivery_id).into(),
                        hook.id.as_str().into(),
                        notice.delivery_id.as_str().into(),
                        notice.event.as_str().into(),
                        body.into(),
                        status.into(),
                        SqlStorageValue::Integer(next_at),
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
                "SELECT * FROM deliveries WHERE status IN ('pending', 'paused') AND next_at <= ?
                 ORDER BY next_at, created_at LIMIT ?",
                vec![
                    SqlStorageValue::Integer(now),
                    SqlStorageValue::Integer(i64::from(BATCH)),
                ],
            )?
            .to_array::<Delivery>()?;
        if due.is_empty() {
            // Only the log's expiry rang: no need to read the webhooks from D1.
            return self.schedule_next().await;
        }
        // A failed read is not an empty list: concluding "deleted" from it would give up every
        // due delivery. The rows stay as they are and the alarm looks again shortly.
        let mut hooks = match self.hooks().await {
            Ok(hooks) => {
                self.failed_reads.set(0);
                Some(hooks)
            }
            Err(e) => {
                let failed_reads = self.failed_reads.get().saturating_add(1);
                self.failed_reads.set(failed_reads);
                Log::warn("webhook_hooks_unreadable")
                    .error_class("d1_unavailable")
                    .field("due", due.len())
                    .field("failed_reads", failed_reads)
                    .field("detail", e.to_string())
                    .emit();
                None
            }
        };
        // Webhooks one of whose deliveries failed in this run.
        let mut held: HashSet<String> = HashSet::new();
        for delivery in due {
            let found = hooks
                .as_ref()
                .map(|list| list.iter().position(|h| h.id == delivery.webhook_id));
            let lookup = match (&hooks, found) {
                (Some(list), Some(Some(at))) => HookLookup::Found {
                    enabled: list[at].enabled != 0,
                },
                (Some(_), _) => HookLookup::Missing,
                (None, _) => HookLookup::Unreadable,
            };
            match webhook::due_action(lookup, held.contains(&delivery.webhook_id)) {
                // Unreadable: left as it is. Held: already moved to the webhook's next retry.
                DueAction::Wait | DueAction::Hold => continue,
                DueAction::GiveUp(reason) => {
                    self.finish(&delivery, "failed", None, Some(reason));
                    continue;
                }
                DueAction::Pause => {
                    self.pause_one(&delivery, now);
                    continue;
                }
                DueAction::Send => {}
            }
            let (Some(list), Some(Some(at))) = (hooks.as_mut(), found) else {
                continue;
            };
            let hook = &mut list[at];
            if delivery.status == "paused" {
                // Switched on again without this object hearing of it: all of it resumes.
                let _ = self.resume(&hook.id, now);
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
            let Some(error) = failure else {
                self.finish(&delivery, "delivered", status, None);
                if hook.failures != 0 || hook.failing_since.is_some() {
                    self.record_success(hook).await;
                }
                continue;
            };
            let failed_at = now_ms();
            let next = failed_at + webhook::retry_delay_ms(config.webhook_retry_base_ms, attempts);
            let streak = hook.streak().failed(failed_at);
            let disable = streak.disables(failed_at, attempts >= MAX_ATTEMPTS);
            // A last attempt that switches the webhook off leaves its delivery to be paused
            // with the others, not given up.
            if attempts >= MAX_ATTEMPTS && !disable {
                self.finish(&delivery, "failed", status, Some(&error));
            } else {
                let _ = self.sql().exec(
                    "UPDATE deliveries SET status = 'pending', attempts = ?, next_at = ?, last_status = ?, last_error = ? WHERE id = ?",
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
            // The webhook's other deliveries are not sent in this run: they wait, in their
            // order, for its next retry.
            held.insert(hook.id.clone());
            let until = webhook::hold_until(failed_at, config.webhook_retry_base_ms, streak, next);
            let _ = self.sql().exec(
                "UPDATE deliveries SET status = 'pending', next_at = ?
                 WHERE webhook_id = ? AND status IN ('pending', 'paused') AND next_at < ?",
                vec![
                    SqlStorageValue::Integer(until),
                    hook.id.as_str().into(),
                    SqlStorageValue::Integer(until),
                ],
            );
            if self.record_failure(hook, streak, disable).await {
                hook.failures = i64::from(streak.failures);
                hook.failing_since = streak.since;
                if disable {
                    hook.enabled = 0;
                    let kept = self.pause_all(&hook.id, failed_at);
                    Log::warn("webhook_disabled")
                        .field("webhook", hook.id.as_str())
                        .field("failures", streak.failures)
                        .field("failing_since", streak.since.unwrap_or(failed_at))
                        .field("paused", kept)
                        .error_class("webhook_target")
                        .emit();
                }
            }
        }
        if hooks.is_none() {
            let delay = webhook::unreadable_retry_ms(self.failed_reads.get());
            self.state
                .storage()
                .set_alarm(Duration::from_millis(
                    u64::try_from(delay).unwrap_or(60_000),
                ))
                .await?;
            return Ok(());
        }
        self.schedule_next().await
    }

    /// Pauses one due delivery of a webhook found switched off, unless it changed since it was
    /// read (the webhook switched on again meanwhile resumed it). Its others pause as they
    /// come due.
    fn pause_one(&self, delivery: &Delivery, now: i64) {
        let _ = self.sql().exec(
            "UPDATE deliveries SET status = 'paused', next_at = ? WHERE id = ? AND status = ? AND next_at = ?",
            vec![
                SqlStorageValue::Integer(now + PAUSED_RECHECK_MS),
                delivery.id.as_str().into(),
                delivery.status.as_str().into(),
                SqlStorageValue::Integer(delivery.next_at),
            ],
        );
    }

    /// Pauses every delivery still waiting for `webhook`, just switched off here; how many.
    fn pause_all(&self, webhook: &str, now: i64) -> usize {
        self.move_all(webhook, "pending", "paused", now + PAUSED_RECHECK_MS)
            .unwrap_or(0)
    }

    /// Makes the paused deliveries of `webhook` (switched on again) due at `now`; how many.
    fn resume(&self, webhook: &str, now: i64) -> Result<usize> {
        self.move_all(webhook, "paused", "pending", now)
    }

    /// Moves every delivery of `webhook` in status `from` to `to`, due at `next_at`; how many.
    fn move_all(&self, webhook: &str, from: &str, to: &str, next_at: i64) -> Result<usize> {
        Ok(self
            .sql()
            .exec(
                "UPDATE deliveries SET status = ?, next_at = ? WHERE webhook_id = ? AND status = ? RETURNING id",
                vec![
                    to.into(),
                    SqlStorageValue::Integer(next_at),
                    webhook.into(),
                    from.into(),
                ],
            )?
            .to_array::<serde_json::Value>()?
            .len())
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

    /// A delivery went through: the webhook's streak of failures ends.
    async fn record_success(&self, hook: &mut Hook) {
        let result = async {
            self.env
                .d1("DB")?
                .prepare("UPDATE webhooks SET failures = 0, failing_since = NULL WHERE id = ?1")
                .bind(&[hook.id.as_str().into()])?
                .run()
                .await?;
            Ok::<(), worker::Error>(())
        }
        .await;
        match result {
            Ok(()) => {
                hook.failures = 0;
                hook.failing_since = None;
            }
            Err(e) => bookkeeping_failed(&hook.id, &e),
        }
    }

    /// Writes the webhook's longer streak of failures to D1, switching it off when `disable`
    /// (with a note in the team's audit log, so the admin sees why). Only over the streak read
    /// (an admin switching it on meanwhile resets it, and wins); whether it was written.
    async fn record_failure(&self, hook: &Hook, streak: FailureStreak, disable: bool) -> bool {
        let result = async {
            let db = self.env.d1("DB")?;
            let since = streak.since.map_or(JsValue::NULL, |t| JsValue::from_f64(t as f64));
            let written = db
                .prepare(
                    "UPDATE webhooks SET failures = ?2, failing_since = ?3,
                       enabled = CASE WHEN ?4 = 1 THEN 0 ELSE enabled END,
                       disabled_reason = CASE WHEN ?4 = 1 THEN 'too_many_failures' ELSE disabled_reason END
                     WHERE id = ?1 AND enabled = 1 AND failures = ?5
                     RETURNING id",
                )
                .bind(&[
                    hook.id.as_str().into(),
                    JsValue::from(streak.failures),
                    since,
                    JsValue::from(u32::from(disable)),
                    JsValue::from_f64(hook.failures as f64),
                ])?
                .all()
                .await?
                .results::<serde_json::Value>()?;
            if written.is_empty() {
                return Ok::<bool, worker::Error>(false);
            }
            if disable {
                let detail = serde_json::json!({
                    "reason": "too_many_failures",
                    "failures": streak.failures,
                    "failing_since": streak.since,
                })
                .to_string();
                db.prepare(
                    "INSERT INTO audit_log (team_id, actor_id, action, target, detail, created_at)
                     SELECT s.team_id, 'system', 'webhook_disabled', w.id, ?2, ?3
                     FROM webhooks w JOIN sites s ON s.id = w.site_id WHERE w.id = ?1",
                )
                .bind(&[
                    hook.id.as_str().into(),
                    detail.as_str().into(),
                    JsValue::from_f64(now_ms() as f64),
                ])?
                .run()
                .await?;
            }
            Ok(true)
        }
        .await;
        result.unwrap_or_else(|e| {
            bookkeeping_failed(&hook.id, &e);
            false
        })
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
        let due = first(
            "SELECT MIN(next_at) AS at FROM deliveries WHERE status IN ('pending', 'paused')",
        )?;
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

/// Logs a failure to record a webhook's result in D1 (the next attempt records it again).
fn bookkeeping_failed(webhook: &str, e: &worker::Error) {
    Log::warn("webhook_bookkeeping_failed")
        .field("webhook", webhook)
        .error_class("d1_unavailable")
        .field("detail", e.to_string())
        .emit();
}

/// Drops the bodies of deliveries that finished under an earlier release, which kept them:
/// once per object.
fn drop_finished_bodies_once(sql: &SqlStorage, kv: &ObjectKv) {
    if kv.get(FINISHED_BODIES_DROPPED).is_some() {
        return;
    }
    let dropped = sql.exec(
        "UPDATE deliveries SET body = '' WHERE status IN ('delivered', 'failed') AND body != ''",
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
