//! The Webhook Durable Object, one per site: a durable queue of deliveries to the site's
//! webhooks, sent from its alarm with signatures, retried with backoff, logged, and a webhook
//! switched off after failing for hours (`webhook::FailureStreak`).
//!
//! A delivery is `pending` (waiting for its next attempt), `delivered`, `failed` (given up), or
//! `paused`: its webhook is switched off, and it waits, body and all, until the webhook is
//! switched on again (then it is sent), or for 30 days from when it was queued (then it goes
//! with the log). The queue's rules (`webhook::queue`): due deliveries go oldest first; once a
//! webhook's delivery fails (any answer but a 2xx), its others wait for its next retry, but one
//! goes ahead as a probe once the first has failed twice; a delivery failing while others go
//! through is set aside: it keeps its own retries, holds no other, and does not count toward
//! switching the webhook off, until the receiver fails one that is not set aside (then those set
//! aside rejoin the queue); a delivered attempt frees everything waiting for its webhook. A
//! delivery is given up only while its receiver demonstrably takes the others, and not within
//! 6 h of being queued; one failing with the others is kept until the webhook is switched off,
//! then paused. When the webhooks cannot be read from D1, nothing is concluded: the due
//! deliveries stay as they are and the alarm looks again shortly.
//!
//! A delivery's body (message text, form fields) is kept only while it may still be sent: a
//! finished delivery keeps its log line (status, attempts, error) for [`LOG_KEEP_MS`], and an
//! erased conversation's deliveries are dropped at once, sent or not.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::{select, Either};
use parley_core::outbound_url;
use parley_core::webhook::queue::{self, Attempt, Turn, Verdict};
use parley_core::webhook::{
    self, DeliveryFailure, DueAction, FailureStreak, HookLookup, Notice, PAUSED_RECHECK_MS,
};
use serde::Serialize;
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
use crate::row::from_row;
use crate::sql_text::{self, D1Rows};

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

from_row! {
    #[derive(Debug, Clone)]
    struct Hook {
        id: String,
        url: String,
        events: String,
        secret: String,
        enabled: i64,
        failures: i64,
        failing_since: Option<i64>,
    }
}

impl Hook {
    fn streak(&self) -> FailureStreak {
        FailureStreak {
            failures: u32::try_from(self.failures.max(0)).unwrap_or(u32::MAX),
            since: self.failing_since,
        }
    }
}

from_row! {
    #[derive(Debug, Clone)]
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
        /// 1 when it fails on its own (`webhook::queue`); absent (read as 0) from a table whose
        /// upgrade has not run yet, which the delivery log can still list.
        set_aside: Option<i64>,
    }
}

impl Delivery {
    /// Whether it fails on its own (the column's 1; absent is 0).
    fn is_set_aside(&self) -> bool {
        self.set_aside.is_some_and(|flag| flag != 0)
    }
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
    /// Whether the queue's table is as this release needs it (see [`prepare_table`]).
    table_ready: Cell<bool>,
    /// Alarm runs in a row that found the table not ready and could not make it so.
    failed_upgrades: Cell<u32>,
}

impl DurableObject for WebhookObject {
    fn new(state: State, env: Env) -> Self {
        crate::log::configure(&env);
        // Once per instance, not per statement (again by requests and alarms only if it failed):
        // everything after assumes the tables exist.
        let sql = state.storage().sql();
        let table_ready = prepare_table(&sql);
        let kv = ObjectKv::open(sql.clone());
        drop_finished_bodies_once(&sql, &kv);
        WebhookObject {
            state,
            env,
            kv,
            alarm_checked: Cell::new(false),
            failed_reads: Cell::new(0),
            table_ready: Cell::new(table_ready),
            failed_upgrades: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.table_ready();
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
                let rows = sql_text::rows::<Delivery>(
                    &self.sql(),
                    "SELECT * FROM deliveries WHERE webhook_id = ? ORDER BY created_at DESC LIMIT 100",
                    vec![webhook.as_str().into()],
                )?;
                let list: Vec<serde_json::Value> = rows.into_iter().map(log_line).collect();
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
                    .field("told", true)
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
        if !self.table_ready() {
            // Its statements would fail on the table as it is, holds among them: nothing is
            // sent until it is upgraded, tried again shortly.
            let failed = self.failed_upgrades.get().saturating_add(1);
            self.failed_upgrades.set(failed);
            let delay = webhook::unreadable_retry_ms(failed);
            Log::warn("webhook_queue_not_ready")
                .error_class("storage_unavailable")
                .field("failed_upgrades", failed)
                .field("retry_in_ms", delay)
                .emit();
            self.state
                .storage()
                .set_alarm(Duration::from_millis(
                    u64::try_from(delay).unwrap_or(60_000),
                ))
                .await?;
            return Response::ok("not ready");
        }
        self.failed_upgrades.set(0);
        self.deliver_due().await?;
        Response::ok("ok")
    }
}

impl WebhookObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Whether the queue's table is ready, preparing it again if it was not.
    fn table_ready(&self) -> bool {
        if !self.table_ready.get() {
            self.table_ready.set(prepare_table(&self.sql()));
        }
        self.table_ready.get()
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

    /// A delivery still waiting to be sent, read again just before sending it: the
    /// conversation may have been erased while earlier deliveries of the run were sent, and the
    /// webhook switched on meanwhile (its paused deliveries resumed with fewer attempts counted).
    fn pending(&self, id: &str) -> Option<Delivery> {
        sql_text::rows::<Delivery>(&self.sql(), queue::PENDING, vec![id.into()])
            .ok()?
            .into_iter()
            .next()
    }

    async fn hooks(&self) -> Result<Vec<Hook>> {
        let site = self.site().unwrap_or_default();
        self.env
            .d1("DB")?
            .prepare(
                "SELECT id, url, events, secret, enabled, failures, failing_since FROM webhooks WHERE site_id = ?1",
            )
            .bind(&[site.into()])?
            .all_rows::<Hook>()
            .await
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
                let inserted = sql
                    .exec(
                        queue::ENQUEUE,
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
                    )?
                    .to_array::<serde_json::Value>()?;
                queued += inserted.len() as u32;
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

    /// Due deliveries at `now`, oldest first, at most `limit`.
    fn due(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        sql_text::rows(
            &self.sql(),
            queue::DUE,
            vec![
                SqlStorageValue::Integer(now),
                SqlStorageValue::Integer(i64::from(limit)),
            ],
        )
    }

    async fn deliver_due(&self) -> Result<()> {
        let config = Config::from_env(&self.env);
        self.prune_log(now_ms());
        let mut due = self.due(now_ms(), BATCH)?;
        if due.is_empty() {
            // Only the log's expiry rang: no need to read the webhooks from D1.
            return self.schedule_next().await;
        }
        // A failed read is not an empty list: concluding "deleted" from it would give up every
        // due delivery. The rows stay as they are and the alarm looks again shortly.
        let mut hooks = match self.hooks().await {
            Ok(hooks) => {
                self.failed_reads.set(0);
                hooks
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
                let delay = webhook::unreadable_retry_ms(failed_reads);
                self.state
                    .storage()
                    .set_alarm(Duration::from_millis(
                        u64::try_from(delay).unwrap_or(60_000),
                    ))
                    .await?;
                return Ok(());
            }
        };
        let mut runs: HashMap<String, WebhookRun> = HashMap::new();
        let mut sends_left = BATCH;
        // One pass over what is due, and another when it made more due (deliveries freed by a
        // delivered attempt, or resumed), so that those go in this run, in their order.
        loop {
            let now = now_ms();
            let mut more_due = false;
            // Deliveries already tried in this pass (as a probe): the list read is older.
            let mut tried: HashSet<String> = HashSet::new();
            // Webhooks whose waiting deliveries a delivered attempt freed in this pass: their
            // other deliveries wait for the next pass, which reads them in order with the freed.
            let mut freed_hooks: HashSet<String> = HashSet::new();
            for delivery in due {
                if sends_left == 0 {
                    break;
                }
                if tried.contains(&delivery.id) || freed_hooks.contains(&delivery.webhook_id) {
                    continue;
                }
                let found = hooks.iter().position(|h| h.id == delivery.webhook_id);
                let lookup = match found {
                    Some(at) => HookLookup::Found {
                        enabled: hooks[at].enabled != 0,
                    },
                    None => HookLookup::Missing,
                };
                let run = runs.entry(delivery.webhook_id.clone()).or_default();
                if lookup == (HookLookup::Found { enabled: true }) && !run.resume_checked {
                    run.resume_checked = true;
                    // Switched on again without this object hearing of it: what it kept paused
                    // is older than this delivery and goes first (in the next pass).
                    let resumed = self.resume(&delivery.webhook_id, now).unwrap_or(0);
                    if resumed > 0 {
                        Log::info("webhook_deliveries_resumed")
                            .field("webhook", delivery.webhook_id.as_str())
                            .field("resumed", resumed)
                            .field("told", false)
                            .emit();
                        // The rest of its list is stale (paused, attempts uncapped): the next
                        // pass reads it again, with the resumed ones, in order.
                        freed_hooks.insert(delivery.webhook_id.clone());
                        more_due = true;
                        continue;
                    }
                }
                match run.turn.decide(lookup) {
                    // Held: already moved to the webhook's next retry.
                    DueAction::Wait | DueAction::Hold => continue,
                    DueAction::GiveUp(reason) => {
                        self.finish(&delivery, "failed", None, Some(&reason));
                        continue;
                    }
                    DueAction::Pause => {
                        self.pause(&delivery, run, now);
                        continue;
                    }
                    DueAction::Send => {}
                }
                let Some(at) = found else {
                    continue;
                };
                let hook = &mut hooks[at];
                let mut next = Some(delivery);
                while let Some(delivery) = next.take() {
                    if sends_left == 0 {
                        break;
                    }
                    tried.insert(delivery.id.clone());
                    let holder = delivery.id.clone();
                    match self.attempt(hook, &mut run.turn, delivery, &config).await {
                        Tried::NotSent => {}
                        Tried::Delivered { freed } => {
                            sends_left -= 1;
                            if freed {
                                more_due = true;
                                freed_hooks.insert(hook.id.clone());
                            }
                        }
                        Tried::OnItsOwn => sends_left -= 1,
                        Tried::Counted => {
                            sends_left -= 1;
                            if hook.enabled != 0 && run.turn.take_probe() {
                                next = self.probe(&hook.id, &holder);
                            }
                        }
                    }
                }
            }
            if !more_due || sends_left == 0 {
                break;
            }
            due = self.due(now_ms(), sends_left)?;
            if due.is_empty() {
                break;
            }
        }
        self.schedule_next().await
    }

    /// Sends one delivery of `hook` and records what became of it, and of the webhook's others.
    async fn attempt(
        &self,
        hook: &mut Hook,
        turn: &mut Turn,
        delivery: Delivery,
        config: &Config,
    ) -> Tried {
        if let Err(refusal) = outbound_url::check(&hook.url, config.webhook_allow_private) {
            let refused = DeliveryFailure::AddressRefused(refusal);
            self.finish(&delivery, "failed", None, Some(&refused));
            return Tried::NotSent;
        }
        let Some(delivery) = self.pending(&delivery.id) else {
            return Tried::NotSent;
        };
        let attempts = delivery.attempts + 1;
        let (status, failure) = match post(hook, &delivery).await {
            Ok(status) => (Some(i64::from(status)), DeliveryFailure::of_status(status)),
            Err(failure) => (None, Some(failure)),
        };
        let at = now_ms();
        let outcome = queue::outcome(status);
        let attempt = Attempt {
            id: &delivery.id,
            attempts,
            set_aside: delivery.is_set_aside(),
            queued_at: delivery.created_at,
            at,
            outcome,
        };
        let failure = failure.unwrap_or(DeliveryFailure::NotDelivered);
        match turn.after(attempt, hook.streak(), config.webhook_retry_base_ms) {
            Verdict::Delivered {
                set_aside,
                retry_queued_by,
            } => {
                self.finish(&delivery, "delivered", status, None);
                if let Some(holder) = set_aside {
                    self.set_aside(&holder);
                    Log::info("webhook_delivery_set_aside")
                        .field("webhook", hook.id.as_str())
                        .field("reason", "others_delivered")
                        .emit();
                }
                // Those set aside and out of attempts go right after this one: failing then
                // gives them up (their last failure may have been an outage's).
                let retried = self.retry_set_aside(&hook.id, retry_queued_by);
                if hook.streak().is_failing() {
                    self.record_success(hook).await;
                }
                let freed = self.release(&hook.id, now_ms()) + retried;
                if freed > 0 {
                    Log::info("webhook_deliveries_released")
                        .field("webhook", hook.id.as_str())
                        .field("released", freed)
                        .emit();
                }
                Tried::Delivered { freed: freed > 0 }
            }
            Verdict::OnItsOwn { next_at, give_up } => {
                if give_up {
                    self.finish(&delivery, "failed", status, Some(&failure));
                } else {
                    self.retry(&delivery.id, attempts, next_at, status, &failure);
                    if !delivery.is_set_aside() {
                        self.set_aside(&delivery.id);
                    }
                }
                Log::warn("webhook_failed")
                    .field("webhook", hook.id.as_str())
                    .field("event", delivery.event.as_str())
                    .field("attempts", attempts)
                    .field("on_its_own", true)
                    .field("given_up", give_up)
                    .error_class("webhook_target")
                    .field("error_code", failure.code())
                    .field("detail", failure.to_string())
                    .emit();
                Tried::OnItsOwn
            }
            Verdict::Counted {
                next_at,
                streak,
                disable,
                hold_until,
            } => {
                // Never given up: the receiver may be down for everyone. Retried until the
                // webhook is switched off, then paused with the others.
                self.retry(&delivery.id, attempts, next_at, status, &failure);
                Log::warn("webhook_failed")
                    .field("webhook", hook.id.as_str())
                    .field("event", delivery.event.as_str())
                    .field("attempts", attempts)
                    .field("given_up", false)
                    .error_class("webhook_target")
                    .field("error_code", failure.code())
                    .field("detail", failure.to_string())
                    .emit();
                // Failing for others again: those set aside are no longer known to fail on
                // their own, and wait in the queue with the rest.
                let rejoined = self.count(queue::REJOIN, vec![hook.id.as_str().into()]);
                match rejoined {
                    Ok(0) => {}
                    Ok(rejoined) => Log::info("webhook_deliveries_rejoined")
                        .field("webhook", hook.id.as_str())
                        .field("rejoined", rejoined)
                        .emit(),
                    Err(e) => storage_failed(&e),
                }
                // The webhook's other deliveries wait, in their order, for its next retry.
                self.hold(&hook.id, hold_until);
                if self.record_failure(hook, streak, disable).await {
                    hook.failures = i64::from(streak.failures);
                    hook.failing_since = streak.since;
                    if disable {
                        self.switch_off(hook, streak, at).await;
                    }
                }
                Tried::Counted
            }
        }
    }

    /// A due delivery of a webhook found switched off: a pending one is paused; paused ones look
    /// again later, all of the webhook's together, once per run.
    fn pause(&self, delivery: &Delivery, run: &mut WebhookRun, now: i64) {
        let later = SqlStorageValue::Integer(now + PAUSED_RECHECK_MS);
        if delivery.status != "paused" {
            let _ = self.sql().exec(
                queue::PAUSE_ONE,
                vec![
                    later,
                    delivery.id.as_str().into(),
                    delivery.status.as_str().into(),
                    SqlStorageValue::Integer(delivery.next_at),
                ],
            );
        } else if !run.paused_rescheduled {
            run.paused_rescheduled = true;
            let _ = self.sql().exec(
                queue::LOOK_AGAIN_LATER,
                vec![later, delivery.webhook_id.as_str().into()],
            );
        }
    }

    /// Pauses every delivery still waiting for `webhook`, just switched off here; how many.
    fn pause_all(&self, webhook: &str, now: i64) -> usize {
        self.count(
            queue::PAUSE_ALL,
            vec![
                SqlStorageValue::Integer(now + PAUSED_RECHECK_MS),
                webhook.into(),
            ],
        )
        .unwrap_or(0)
    }

    /// Makes the paused deliveries of `webhook` (switched on again) due at `now`, each with
    /// attempts left; how many.
    fn resume(&self, webhook: &str, now: i64) -> Result<usize> {
        self.count(
            queue::RESUME,
            vec![
                SqlStorageValue::Integer(now),
                SqlStorageValue::Integer(i64::from(queue::RESUMED_ATTEMPTS_AT_MOST)),
                webhook.into(),
            ],
        )
    }

    /// The deliveries of `webhook` waiting for it are due at `now` (it delivered); how many.
    fn release(&self, webhook: &str, now: i64) -> usize {
        self.count(
            queue::RELEASE,
            vec![
                SqlStorageValue::Integer(now),
                webhook.into(),
                SqlStorageValue::Integer(now),
            ],
        )
        .unwrap_or(0)
    }

    /// The deliveries of `webhook` due before `until` wait until then.
    fn hold(&self, webhook: &str, until: i64) {
        let _ = self.sql().exec(
            queue::HOLD,
            vec![
                SqlStorageValue::Integer(until),
                webhook.into(),
                SqlStorageValue::Integer(until),
            ],
        );
    }

    /// The delivery of `webhook` to try as a probe while `holder` holds the others up.
    fn probe(&self, webhook: &str, holder: &str) -> Option<Delivery> {
        sql_text::rows::<Delivery>(
            &self.sql(),
            queue::PROBE,
            vec![webhook.into(), holder.into()],
        )
        .ok()?
        .into_iter()
        .next()
    }

    /// Runs a statement returning ids; how many rows it returned.
    fn count(&self, statement: &str, values: Vec<SqlStorageValue>) -> Result<usize> {
        Ok(self
            .sql()
            .exec(statement, values)?
            .to_array::<serde_json::Value>()?
            .len())
    }

    /// A failed attempt, to be tried again at `next_at`.
    fn retry(
        &self,
        id: &str,
        attempts: u32,
        next_at: i64,
        http: Option<i64>,
        failure: &DeliveryFailure,
    ) {
        let _ = self.sql().exec(
            queue::RETRY,
            vec![
                SqlStorageValue::Integer(i64::from(attempts)),
                SqlStorageValue::Integer(next_at),
                http.map_or(SqlStorageValue::Null, SqlStorageValue::Integer),
                failure.to_string().into(),
                id.into(),
            ],
        );
    }

    /// Marks a delivery as failing on its own.
    fn set_aside(&self, id: &str) {
        let _ = self.sql().exec(queue::SET_ASIDE, vec![id.into()]);
    }

    /// Makes the deliveries of `webhook` set aside, out of attempts, and queued by `queued_by`
    /// due now: its receiver just took another one; how many.
    fn retry_set_aside(&self, webhook: &str, queued_by: i64) -> usize {
        let now = now_ms();
        self.count(
            queue::RETRY_SET_ASIDE,
            vec![
                SqlStorageValue::Integer(now),
                webhook.into(),
                SqlStorageValue::Integer(i64::from(webhook::MAX_ATTEMPTS)),
                SqlStorageValue::Integer(queued_by),
            ],
        )
        .unwrap_or_else(|e| {
            storage_failed(&e);
            0
        })
    }

    /// Records how a delivery ended; its body is not needed any more and goes.
    fn finish(
        &self,
        delivery: &Delivery,
        status: &str,
        http: Option<i64>,
        failure: Option<&DeliveryFailure>,
    ) {
        let _ = self.sql().exec(
            queue::FINISH,
            vec![
                status.into(),
                http.map_or(SqlStorageValue::Null, SqlStorageValue::Integer),
                failure.map_or(SqlStorageValue::Null, |f| f.to_string().into()),
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
            Err(e) => bookkeeping_failed(&hook.id, "streak", &e),
        }
    }

    /// Writes the webhook's longer streak of failures to D1, switching it off when `disable`
    /// (with a note in the team's audit log, so the admin sees why). Only over the streak read
    /// (an admin switching it on meanwhile resets it, and wins); whether it was written. The
    /// audit note failing does not undo the switch-off: it is logged.
    async fn record_failure(&self, hook: &Hook, streak: FailureStreak, disable: bool) -> bool {
        let written = async {
            let since = streak.since.map_or(JsValue::NULL, |t| JsValue::from_f64(t as f64));
            let rows = self
                .env
                .d1("DB")?
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
            Ok::<bool, worker::Error>(!rows.is_empty())
        }
        .await;
        let written = written.unwrap_or_else(|e| {
            bookkeeping_failed(&hook.id, "streak", &e);
            false
        });
        if written && disable {
            if let Err(e) = self.audit_switch_off(&hook.id, streak).await {
                bookkeeping_failed(&hook.id, "audit_log", &e);
            }
        }
        written
    }

    /// The audit log's note that the queue switched `webhook` off.
    async fn audit_switch_off(&self, webhook: &str, streak: FailureStreak) -> Result<()> {
        let detail = serde_json::json!({
            "reason": "too_many_failures",
            "failures": streak.failures,
            "failing_since": streak.since,
        })
        .to_string();
        self.env
            .d1("DB")?
            .prepare(
                "INSERT INTO audit_log (team_id, actor_id, action, target, detail, created_at)
                 SELECT s.team_id, 'system', 'webhook_disabled', w.id, ?2, ?3
                 FROM webhooks w JOIN sites s ON s.id = w.site_id WHERE w.id = ?1",
            )
            .bind(&[
                webhook.into(),
                detail.as_str().into(),
                JsValue::from_f64(now_ms() as f64),
            ])?
            .run()
            .await?;
        Ok(())
    }

    /// After the webhook was switched off in D1: its deliveries pause, unless an admin switched
    /// it on again meanwhile (their switch-on comes after the switch-off in D1, so reading it
    /// again tells; the queue would otherwise pause what that switch-on had just resumed).
    async fn switch_off(&self, hook: &mut Hook, streak: FailureStreak, at: i64) {
        let back_on = self.enabled_now(&hook.id).await;
        let paused = if back_on {
            hook.enabled = 1;
            hook.failures = 0;
            hook.failing_since = None;
            0
        } else {
            hook.enabled = 0;
            self.pause_all(&hook.id, at)
        };
        Log::warn("webhook_disabled")
            .field("webhook", hook.id.as_str())
            .field("failures", streak.failures)
            .field("failing_since", streak.since.unwrap_or(at))
            .field("paused", paused)
            .field("switched_on_meanwhile", back_on)
            .error_class("webhook_target")
            .emit();
    }

    /// Whether `webhook` is switched on in D1 now; not when that cannot be read (its deliveries
    /// then pause, and resume when the queue next finds it on).
    async fn enabled_now(&self, webhook: &str) -> bool {
        from_row! {
            struct Row {
                enabled: i64,
            }
        }
        let read = async {
            self.env
                .d1("DB")?
                .prepare("SELECT enabled FROM webhooks WHERE id = ?1")
                .bind(&[webhook.into()])?
                .first_row::<Row>()
                .await
        }
        .await;
        match read {
            Ok(row) => row.is_some_and(|r| r.enabled != 0),
            Err(e) => {
                bookkeeping_failed(webhook, "switch_off_check", &e);
                false
            }
        }
    }

    /// Sets the alarm for the next delivery due, or else for the oldest log line to go.
    async fn schedule_next(&self) -> Result<()> {
        from_row! {
            struct Row {
                at: Option<i64>,
            }
        }
        let first = |sql: &str| -> Result<Option<i64>> {
            Ok(sql_text::rows::<Row>(&self.sql(), sql, vec![])?
                .into_iter()
                .next()
                .and_then(|r| r.at))
        };
        let due = first(queue::NEXT_DUE)?;
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

/// What one alarm run knows of one webhook: its [`Turn`], and what it did about paused
/// deliveries.
#[derive(Default)]
struct WebhookRun {
    turn: Turn,
    /// Whether its paused deliveries were looked for, the webhook being found switched on.
    resume_checked: bool,
    /// Whether its paused deliveries were told to look again later, it being found off.
    paused_rescheduled: bool,
}

/// What became of a delivery taken from the queue.
enum Tried {
    /// Not sent: given up before (its target not allowed), or gone meanwhile (erased).
    NotSent,
    /// Delivered; `freed`: deliveries waiting for its webhook are due now.
    Delivered { freed: bool },
    /// Failed on its own (`webhook::queue`).
    OnItsOwn,
    /// Failed in a way that counts against its webhook: the others wait.
    Counted,
}

/// A delivery's line in the log the admin reads. `error_code` (and `error_detail`, the refusal's
/// code for a refused address) are read from the stored text (`DeliveryFailure`), so lines
/// stored before codes existed have them too; `last_error` stays for clients that read it.
fn log_line(d: Delivery) -> serde_json::Value {
    let failure = d.last_error.as_deref().map(DeliveryFailure::parse);
    serde_json::json!({
        "delivery_id": d.delivery_id, "event": d.event, "status": d.status,
        "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
        "error_code": failure.as_ref().map(DeliveryFailure::code),
        "error_detail": failure.as_ref().and_then(DeliveryFailure::detail_code),
        "created_at": d.created_at, "delivered_at": d.delivered_at, "next_at": d.next_at,
    })
}

/// Logs a failure of the queue's bookkeeping in D1 for a webhook: `step` is `streak` (the
/// next attempt records it again), `audit_log` (a switch-off's note, the switch-off stands) or
/// `switch_off_check` (whether it was switched on again: its deliveries pause).
fn bookkeeping_failed(webhook: &str, step: &str, e: &worker::Error) {
    Log::warn("webhook_bookkeeping_failed")
        .field("webhook", webhook)
        .field("step", step)
        .error_class("d1_unavailable")
        .field("detail", e.to_string())
        .emit();
}

/// Creates the queue's table, and applies the changes of later releases that a stored one lacks
/// (`queue::UPGRADES`); whether it is now as this release needs it. A failure is logged and
/// tried again by the next request or alarm: until then the queue sends nothing, as without the
/// `set_aside` column its holds (statements naming it) would fail and it would run without them.
fn prepare_table(sql: &SqlStorage) -> bool {
    let mut ready = true;
    if let Err(e) = sql.exec(queue::SCHEMA, None) {
        storage_failed(&e);
        ready = false;
    }
    for (check, change) in queue::UPGRADES {
        if sql.exec(check, None).is_err() {
            if let Err(e) = sql.exec(change, None) {
                storage_failed(&e);
                ready = false;
            }
        }
    }
    ready
}

/// Logs a failure of the object's own storage.
fn storage_failed(e: &worker::Error) {
    Log::error("storage_failed")
        .error_class("storage_unavailable")
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
async fn post(hook: &Hook, delivery: &Delivery) -> std::result::Result<u16, DeliveryFailure> {
    let headers = Headers::new();
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|e| DeliveryFailure::network(e.to_string()))
    };
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
    let request = Request::new_with_init(&hook.url, &init)
        .map_err(|e| DeliveryFailure::network(e.to_string()))?;
    let fetcher = Fetch::Request(request);
    let fetch = Box::pin(fetcher.send());
    let timeout = worker::Delay::from(Duration::from_millis(TIMEOUT_MS));
    let outcome = match select(fetch, timeout).await {
        Either::Left((Ok(response), _)) => Ok(response.status_code()),
        Either::Left((Err(e), _)) => Err(DeliveryFailure::network(e.to_string())),
        Either::Right(_) => Err(DeliveryFailure::Timeout),
    };
    outcome
}
