//! Data protection: erasing a visitor with everything of theirs, and the retention purge that
//! a cron trigger runs daily. A conversation is erased by its own object (its log, files in R2,
//! open sockets), its site's objects let go of it (routing, rows waiting for D1, webhook
//! deliveries), then its rows leave D1.

use parley_core::ids::{self, IdKind};
use parley_core::token::{AgentRole, Principal};
use parley_core::ErrorCode;
use wasm_bindgen::JsValue;
use worker::Env;

use crate::api::{authenticate, d1_failed, db, ok_json, Ctx, D1Statement};
use crate::console::audit;
use crate::http::ApiResult;
use crate::internal::SystemRequest;
use crate::log::Log;
use crate::row::from_row;
use crate::site_object::{self, SiteRequest};
use crate::sql_text::D1Rows;
use crate::webhook_object::{self, WebhookRequest};

/// Conversations erased per retention run and site; the next run continues.
const PURGE_BATCH: u32 = 200;
/// Conversations erased per retention run in all: each costs about four subrequests (its
/// object, its site's two objects, D1), and a run has a budget of them. The sites' first
/// conversations come first, so every site with expired conversations gets a turn.
const PURGE_RUN_LIMIT: u32 = 1000;
/// Page views, visitors and routing history rows removed per retention run and site.
const PURGE_ROWS_BATCH: u32 = 5000;

from_row! {
    /// A conversation to erase, as its D1 row names it.
    struct Listed {
        id: String,
        site_id: String,
    }
}

/// Erases a conversation its visitor started while their erasure began: the creation saw no
/// mark before it started the conversation, but one by the time the conversation was listed.
/// Should this fail, the daily purge takes the conversation (see [`purge_expired`]).
pub async fn erase_raced(env: &Env, conversation: &str, site: &str) -> worker::Result<()> {
    let listed = Listed {
        id: conversation.to_string(),
        site_id: site.to_string(),
    };
    erase_conversation(env, &listed).await
}

/// Erases one conversation: its object's storage and files, then its D1 rows; and its site
/// lets go of it (its agent's seat, its place in the queue, rows waiting for D1).
async fn erase_conversation(env: &Env, conversation: &Listed) -> worker::Result<()> {
    let db = env.d1("DB")?;
    let Listed {
        id: conversation,
        site_id: site,
    } = conversation;
    let response =
        crate::internal::system_request(env, conversation, &SystemRequest::Erase).await?;
    // 404: never created, or already erased.
    if response.status_code() >= 300 && response.status_code() != 404 {
        return Err(worker::Error::RustError(format!(
            "erase answered {}",
            response.status_code()
        )));
    }
    // Rows the site has yet to write would bring the conversation back into D1: without the
    // site's word that none are left, the erasure stops here and is tried again.
    forget_in_site(env, site, conversation).await?;
    // Deliveries still queued would send erased messages out later: likewise.
    forget_in_webhooks(env, site, conversation).await?;
    let statements = [
        "DELETE FROM messages WHERE conversation_id = ?1",
        "DELETE FROM conversation_tags WHERE conversation_id = ?1",
        "DELETE FROM routing_events WHERE conversation_id = ?1",
        "DELETE FROM conversations WHERE id = ?1",
    ]
    .iter()
    .map(|sql| db.prepare(*sql).bind(&[conversation.into()]))
    .collect::<worker::Result<Vec<_>>>()?;
    db.batch(statements).await?;
    Ok(())
}

/// Tells the site's object the conversation is gone: routing lets go of it, and its rows
/// waiting for D1 are dropped (those already on their way have landed when it answers).
async fn forget_in_site(env: &Env, site: &str, conversation: &str) -> worker::Result<()> {
    let request = SiteRequest::Erased {
        conversation: conversation.to_string(),
    };
    let answer = site_object::send(env, site, &request).await;
    forgotten(
        answer,
        ("routing_forget_failed", "site_unavailable", "site"),
        site,
        conversation,
    )
}

/// Tells the site's webhook object the conversation is gone: every delivery of it, sent or
/// still waiting for a retry, is dropped with its body (the message text, the form's fields).
async fn forget_in_webhooks(env: &Env, site: &str, conversation: &str) -> worker::Result<()> {
    let request = WebhookRequest::Erased {
        conversation: conversation.to_string(),
    };
    let answer = webhook_object::send(env, site, &request).await;
    forgotten(
        answer,
        (
            "webhook_forget_failed",
            "webhooks_unavailable",
            "webhook queue",
        ),
        site,
        conversation,
    )
}

/// An object's answer to "forget this conversation": done, or a logged error that makes the
/// erasure fail, to be run again.
fn forgotten(
    answer: worker::Result<worker::Response>,
    (event, class, who): (&str, &str, &str),
    site: &str,
    conversation: &str,
) -> worker::Result<()> {
    let detail = match answer {
        Ok(response) if response.status_code() < 300 => return Ok(()),
        Ok(response) => format!("status {}", response.status_code()),
        Err(e) => e.to_string(),
    };
    Log::warn(event)
        .site(site)
        .conversation(conversation)
        .error_class(class)
        .field("detail", detail.clone())
        .emit();
    Err(worker::Error::RustError(format!(
        "{who} did not forget: {detail}"
    )))
}

/// `DELETE /api/v1/visitors/{id}` (owners and admins): the visitor and everything of theirs —
/// conversations, messages, files, page views, identity — is erased, and the audit log says so.
pub async fn erase_visitor(ctx: &Ctx, visitor: &str) -> ApiResult {
    let principal = authenticate(ctx)?;
    let Principal::Agent {
        id: actor,
        team,
        role,
        ..
    } = &principal
    else {
        return Err(ErrorCode::Forbidden.into());
    };
    if !matches!(role, AgentRole::Owner | AgentRole::Admin) {
        return Err(ErrorCode::Forbidden.into());
    }
    if !ids::is_valid(IdKind::Visitor, visitor) {
        return Err(ErrorCode::NotFound.into());
    }
    from_row! {
        /// Only whether a row came back matters.
        struct Known {}
    }
    let db = db(ctx)?;
    // The visitor must belong to the caller's team, by their record or their conversations.
    let known = db
        .prepare(
            "SELECT id FROM visitors WHERE id = ?1 AND site_id IN (SELECT id FROM sites WHERE team_id = ?2)
             UNION SELECT visitor_id FROM conversations WHERE visitor_id = ?1
               AND site_id IN (SELECT id FROM sites WHERE team_id = ?2) LIMIT 1",
        )
        .bind(&[visitor.into(), team.as_str().into()])
        .map_err(d1_failed(ctx))?
        .first_row::<Known>()
        .await
        .map_err(d1_failed(ctx))?;
    if known.is_none() {
        return Err(ErrorCode::NotFound.into());
    }
    // Remembered first: from here on their token starts nothing new (see `is_erased_visitor`),
    // and it stays remembered while a token of theirs may still be valid, so the identity cannot
    // come back. A conversation whose creation got past the check just before is either listed
    // below (its row was in D1 before the mark) or erases itself (the creation checks again
    // once its row is in: `erase_raced`). Listing twice catches one listed mid-round. One that
    // escapes both (D1 failing for the creation at that moment) is left to the daily purge.
    db.prepare(
        "INSERT INTO erased_visitors (visitor_id, erased_at) VALUES (?1, ?2)
         ON CONFLICT (visitor_id) DO UPDATE SET erased_at = excluded.erased_at",
    )
    .bind(&[visitor.into(), JsValue::from_f64(ctx.now as f64)])
    .map_err(d1_failed(ctx))?
    .run()
    .await
    .map_err(d1_failed(ctx))?;
    let mut erased_conversations = 0;
    for _round in 0..2 {
        let conversations = db
            .prepare("SELECT id, site_id FROM conversations WHERE visitor_id = ?1")
            .bind(&[visitor.into()])
            .rows::<Listed>(ctx)
            .await?;
        if conversations.is_empty() {
            break;
        }
        for conversation in &conversations {
            erase_conversation(&ctx.env, conversation)
                .await
                .map_err(d1_failed(ctx))?;
        }
        erased_conversations += conversations.len();
    }
    let statements = [
        "DELETE FROM page_views WHERE visitor_id = ?1",
        "DELETE FROM visitors WHERE id = ?1",
    ]
    .iter()
    .map(|sql| db.prepare(*sql).bind(&[visitor.into()]))
    .collect::<worker::Result<Vec<_>>>()
    .map_err(d1_failed(ctx))?;
    db.batch(statements).await.map_err(d1_failed(ctx))?;
    audit(
        ctx,
        team,
        actor,
        "visitor_erased",
        visitor,
        serde_json::json!({ "conversations": erased_conversations }),
    )
    .await?;
    ok_json(
        &serde_json::json!({ "erased_conversations": erased_conversations }),
        200,
    )
}

from_row! {
    /// A row of [`erasure_mark`]'s answer.
    struct Marked {}
}

/// The statement that looks for `visitor`'s erasure mark: a row when they were erased.
pub fn erasure_mark(
    db: &worker::D1Database,
    visitor: &str,
) -> worker::Result<worker::D1PreparedStatement> {
    db.prepare("SELECT 1 AS found FROM erased_visitors WHERE visitor_id = ?1")
        .bind(&[visitor.into()])
}

/// Whether [`erasure_mark`]'s answer, the `index`-th statement of a batch, found the mark.
pub fn found_mark(results: &crate::sql_text::BatchResults, index: usize) -> worker::Result<bool> {
    Ok(!results.rows::<Marked>(index)?.is_empty())
}

/// Whether `visitor` was erased on request while tokens of theirs may still be valid.
pub async fn is_erased_visitor(ctx: &Ctx, visitor: &str) -> Result<bool, crate::http::ApiError> {
    let found = erasure_mark(&db(ctx)?, visitor)
        .map_err(d1_failed(ctx))?
        .first_row::<Marked>()
        .await
        .map_err(d1_failed(ctx))?;
    Ok(found.is_some())
}

/// Erases conversations older than their site's retention (by last activity), and any left of
/// an erased visitor (one whose erasure could not be finished as it started, or that reached
/// D1 only after the erasure), the oldest [`PURGE_BATCH`] of each site; then page views, routing history of conversations no longer
/// there, and visitors nothing is left of who were not seen within the retention period.
/// Returns how many conversations were erased. Run by the daily cron trigger and by
/// `POST /api/v1/maintenance/purge`.
pub async fn purge_expired(env: &Env, now: i64, team: Option<&str>) -> worker::Result<u32> {
    let db = env.d1("DB")?;
    // Ranked within each site: a site with a backlog (or erasures that keep failing) takes its
    // own slots, never another site's.
    let expired = db
        .prepare(
            "SELECT id, site_id FROM (
               SELECT c.id, c.site_id, c.updated_at,
                      ROW_NUMBER() OVER (PARTITION BY c.site_id ORDER BY c.updated_at, c.id) AS place
               FROM conversations c JOIN sites s ON s.id = c.site_id
               WHERE (?2 = '' OR s.team_id = ?2)
                 AND ((s.retention_days IS NOT NULL
                       AND c.updated_at < ?1 - s.retention_days * 86400000)
                      OR c.visitor_id IN (SELECT visitor_id FROM erased_visitors)))
             WHERE place <= ?3
             ORDER BY place, updated_at LIMIT ?4",
        )
        .bind(&[
            JsValue::from_f64(now as f64),
            team.unwrap_or("").into(),
            JsValue::from(PURGE_BATCH),
            JsValue::from(PURGE_RUN_LIMIT),
        ])?
        .all_rows::<Listed>()
        .await?;
    let mut erased = 0;
    // A site that failed one erasure (its object unreachable, its batch stuck) is left for the
    // next run: each try could wait for it again.
    let mut failing_sites = std::collections::BTreeSet::new();
    for row in expired {
        if failing_sites.contains(&row.site_id) {
            continue;
        }
        match erase_conversation(env, &row).await {
            Ok(()) => erased += 1,
            Err(e) => {
                Log::warn("purge_failed")
                    .site(&row.site_id)
                    .conversation(&row.id)
                    .error_class("storage_unavailable")
                    .field("detail", e.to_string())
                    .emit();
                failing_sites.insert(row.site_id.clone());
            }
        }
    }
    let bound = [
        JsValue::from_f64(now as f64),
        team.unwrap_or("").into(),
        JsValue::from(PURGE_ROWS_BATCH),
    ];
    // Page views follow the same rule, each site's oldest first and a bounded number per run:
    // a busy site's backlog would otherwise be one statement over D1's time limit, every day.
    let page_views = db
        .prepare(
            "DELETE FROM page_views WHERE id IN (
               SELECT id FROM (
                 SELECT p.id, ROW_NUMBER() OVER (PARTITION BY p.site_id ORDER BY p.created_at, p.id) AS place
                 FROM page_views p JOIN sites s ON s.id = p.site_id
                 WHERE s.retention_days IS NOT NULL AND (?2 = '' OR s.team_id = ?2)
                   AND p.created_at < ?1 - s.retention_days * 86400000)
               WHERE place <= ?3)",
        )
        .bind(&bound)?
        .run()
        .await?;
    // Routing history of conversations erased before their erasure took it along.
    let routing = db
        .prepare(
            "DELETE FROM routing_events WHERE id IN (
               SELECT id FROM (
                 SELECT r.id, ROW_NUMBER() OVER (PARTITION BY r.site_id ORDER BY r.created_at) AS place
                 FROM routing_events r JOIN sites s ON s.id = r.site_id
                 WHERE s.retention_days IS NOT NULL AND (?2 = '' OR s.team_id = ?2)
                   AND r.created_at < ?1 - s.retention_days * 86400000
                   AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = r.conversation_id))
               WHERE place <= ?3)",
        )
        .bind(&bound)?
        .run()
        .await?;
    // A visitor record (name, e-mail, external id, attributes, where they were) outlives its
    // conversations by the retention period since the visitor was last seen, no longer.
    let visitors = db
        .prepare(
            "DELETE FROM visitors WHERE id IN (
               SELECT id FROM (
                 SELECT v.id, ROW_NUMBER() OVER (PARTITION BY v.site_id ORDER BY v.last_seen_at) AS place
                 FROM visitors v JOIN sites s ON s.id = v.site_id
                 WHERE s.retention_days IS NOT NULL AND (?2 = '' OR s.team_id = ?2)
                   AND v.last_seen_at < ?1 - s.retention_days * 86400000
                   AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = v.id))
               WHERE place <= ?3)",
        )
        .bind(&bound)?
        .run()
        .await?;
    // Erased visitors are remembered only while a token of theirs can still be valid.
    if team.is_none() {
        let ttl = crate::config::Config::from_env(env).visitor_token_ttl_ms;
        db.prepare("DELETE FROM erased_visitors WHERE erased_at < ?1")
            .bind(&[JsValue::from_f64((now - ttl) as f64)])?
            .run()
            .await?;
    }
    let changed = |result: &worker::D1Result| {
        result
            .meta()
            .ok()
            .flatten()
            .and_then(|m| m.changes)
            .unwrap_or(0)
    };
    Log::info("retention_purge")
        .field("erased", erased)
        .field("page_views_removed", changed(&page_views))
        .field("routing_events_removed", changed(&routing))
        .field("visitors_removed", changed(&visitors))
        .emit();
    Ok(erased)
}

/// `POST /api/v1/maintenance/purge` (owners): runs the retention purge for the team now.
pub async fn purge_now(ctx: &Ctx) -> ApiResult {
    let principal = authenticate(ctx)?;
    let Principal::Agent {
        id,
        team,
        role: AgentRole::Owner,
        ..
    } = &principal
    else {
        return Err(ErrorCode::Forbidden.into());
    };
    let erased = purge_expired(&ctx.env, ctx.now, Some(team))
        .await
        .map_err(d1_failed(ctx))?;
    audit(
        ctx,
        team,
        id,
        "retention_purge",
        team,
        serde_json::json!({ "erased": erased }),
    )
    .await?;
    ok_json(&serde_json::json!({ "erased_conversations": erased }), 200)
}
