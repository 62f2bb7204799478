//! After a restart of a runtime that keeps Durable Object alarms in memory only (workerd on one
//! machine): every object reschedules its stored alarm the first time it runs
//! (`platform::recover_alarm`), and this wakes every site (routing timers: answer timeouts,
//! vanished devices, opening hours), every site's webhook queue (retries) and every
//! conversation open or written to in the last day (the D1 copy, idle close, upload clean-up;
//! agents may write to closed ones) once, so the ones nobody returns to still get theirs. Sites
//! and conversations are listed in D1 when they are created, so none is missed.
//!
//! Only where `RECOVER_ALARMS_ON_START` is set (the local launcher sets it): on Cloudflare alarms
//! are durable, and isolates start far too often to sweep on each start.

use std::cell::Cell;

use futures::stream::{self, StreamExt};
use worker::{Env, Request};

use crate::internal::INTERNAL_BASE;
use crate::log::Log;
use crate::row::from_row;
use crate::sql_text::D1Rows;

/// Objects woken at once. The sweep runs unpaced: it keeps the runtime from taking new
/// connections while it lasts (about a second at 1,000 conversations), but the objects it warms
/// are ready when the restart's clients come back. Paced or delayed (tried with `npm run bench`),
/// the first answer after a start was fast, but the reconnect storm took about three times as
/// long.
const CONCURRENCY: usize = 8;

thread_local! {
    /// Whether this isolate has started the sweep.
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this runtime needs its objects' alarms recovered (`RECOVER_ALARMS_ON_START`).
pub fn wanted(env: &Env) -> bool {
    env.var("RECOVER_ALARMS_ON_START")
        .is_ok_and(|v| v.to_string() == "true")
}

/// Starts the sweep the first time it is called in this isolate (`ctx.wait_until` the result).
/// Only the first request of an isolate asks whether the sweep is wanted at all.
pub fn once(env: &Env) -> Option<impl std::future::Future<Output = ()>> {
    if STARTED.with(|s| s.replace(true)) || !wanted(env) {
        return None;
    }
    let env = env.clone();
    Some(async move {
        match wake_all(&env).await {
            Ok((sites, conversations)) => Log::info("alarms_recovered")
                .field("sites", sites)
                .field("conversations", conversations)
                .emit(),
            Err(e) => Log::error("alarms_recovery_failed")
                .error_class("d1_unavailable")
                .field("detail", e.to_string())
                .emit(),
        }
    })
}

from_row! {
    struct Id {
        id: String,
    }
}

async fn ids(env: &Env, sql: &str) -> worker::Result<Vec<String>> {
    let rows = env.d1("DB")?.prepare(sql).all_rows::<Id>().await?;
    Ok(rows.into_iter().map(|row| row.id).collect())
}

/// The kinds of object the sweep wakes.
#[derive(Clone, Copy)]
enum Kind {
    Site,
    Webhooks,
    Conversation,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Site => "site",
            Kind::Webhooks => "webhooks",
            Kind::Conversation => "conversation",
        }
    }

    fn namespace(self, env: &Env) -> worker::Result<worker::ObjectNamespace> {
        match self {
            Kind::Site => env.durable_object("SITE"),
            Kind::Webhooks => env.durable_object("WEBHOOKS"),
            Kind::Conversation => env.durable_object("CONVERSATION"),
        }
    }
}

/// Wakes one object; a failure is logged and the sweep goes on.
async fn wake(env: &Env, kind: Kind, id: String) {
    let woken = async {
        let stub = kind.namespace(env)?.id_from_name(&id)?.get_stub()?;
        stub.fetch_with_request(Request::new(
            &format!("{INTERNAL_BASE}/wake"),
            worker::Method::Get,
        )?)
        .await
    }
    .await;
    if let Err(e) = woken {
        Log::warn("wake_failed")
            .field("object", kind.name())
            .field("id", id)
            .field("detail", e.to_string())
            .emit();
    }
}

async fn wake_all(env: &Env) -> worker::Result<(usize, usize)> {
    let sites = ids(env, "SELECT id FROM sites").await?;
    let day_ago = crate::platform::now_ms() - 86_400_000;
    let conversations = ids(
        env,
        &format!("SELECT id FROM conversations WHERE status = 'open' OR updated_at > {day_ago}"),
    )
    .await?;
    let counts = (sites.len(), conversations.len());
    let targets = sites
        .iter()
        .map(|id| (Kind::Site, id.clone()))
        .chain(sites.iter().map(|id| (Kind::Webhooks, id.clone())))
        .chain(conversations.into_iter().map(|id| (Kind::Conversation, id)));
    stream::iter(targets)
        .for_each_concurrent(CONCURRENCY, |(kind, id)| wake(env, kind, id))
        .await;
    Ok(counts)
}
