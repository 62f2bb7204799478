//! Admin endpoints (owners and admins of the team): webhooks of a site and their delivery log.

use parley_core::ids::IdKind;
use parley_core::token::{AgentRole, Principal};
use parley_core::webhook;
use parley_core::ErrorCode;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{Method, Request};

use crate::api::{authenticate, d1_failed, db, mint, ok_json, Ctx};
use crate::console::audit;
use crate::http::{no_content, read_json, ApiError, ApiResult};
use crate::platform::random_16;
use crate::webhook_object::{self, WebhookRequest};

/// The caller, who must be an owner or admin of the team owning `site`: (agent id, team).
async fn admin_of_site(req: &Request, ctx: &Ctx, site: &str) -> Result<(String, String), ApiError> {
    let principal = authenticate(req, ctx)?;
    let Principal::Agent { id, team, role, .. } = principal else {
        return Err(ErrorCode::Forbidden.into());
    };
    if !matches!(role, AgentRole::Owner | AgentRole::Admin) {
        return Err(ErrorCode::Forbidden.into());
    }
    #[derive(Deserialize)]
    struct Row {
        team_id: String,
    }
    let row = db(ctx)?
        .prepare("SELECT team_id FROM sites WHERE id = ?1")
        .bind(&[site.into()])
        .map_err(|_| ApiError::from(ErrorCode::Internal))?
        .first::<Row>(None)
        .await
        .map_err(|_| ApiError::from(ErrorCode::StorageUnavailable))?;
    // Another team's site is as unknown as a missing one.
    match row {
        Some(r) if r.team_id == team => Ok((id, team)),
        _ => Err(ErrorCode::NotFound.into()),
    }
}

#[derive(Deserialize, Serialize)]
struct HookRow {
    id: String,
    url: String,
    events: String,
    enabled: i64,
    failures: i64,
    disabled_reason: Option<String>,
    created_at: i64,
}

fn hook_json(row: &HookRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id, "url": row.url,
        "events": serde_json::from_str::<Vec<String>>(&row.events).unwrap_or_default(),
        "enabled": row.enabled != 0, "failures": row.failures,
        "disabled_reason": row.disabled_reason, "created_at": row.created_at,
    })
}

/// `/api/v1/sites/{site}/webhooks[/{id}[/deliveries|/enable]]`
pub async fn webhooks(
    req: &mut Request,
    ctx: &Ctx,
    method: &Method,
    site: &str,
    rest: &[&str],
) -> ApiResult {
    let (actor, team) = admin_of_site(req, ctx, site).await?;
    match (method, rest) {
        (Method::Get, []) => {
            let rows = db(ctx)?
                .prepare("SELECT * FROM webhooks WHERE site_id = ?1 ORDER BY created_at")
                .bind(&[site.into()])
                .map_err(d1_failed(ctx))?
                .all()
                .await
                .and_then(|r| r.results::<HookRow>())
                .map_err(d1_failed(ctx))?;
            ok_json(
                &serde_json::json!({ "webhooks": rows.iter().map(hook_json).collect::<Vec<_>>() }),
                200,
            )
        }
        (Method::Post, []) => {
            #[derive(Deserialize)]
            struct Body {
                url: String,
                events: Vec<String>,
            }
            let body: Body = read_json(req).await?;
            if !webhook::url_allowed(&body.url, ctx.config.webhook_allow_private)
                || body.events.is_empty()
                || body
                    .events
                    .iter()
                    .any(|e| !webhook::EVENTS.contains(&e.as_str()))
            {
                return Err(ErrorCode::InvalidRequest.into());
            }
            let id = mint(IdKind::Trace, ctx)?.replacen("r_", "w_", 1);
            let secret_bytes = random_16().map_err(|_| ApiError::from(ErrorCode::Internal))?;
            let secret = format!("whsec_{}", parley_core::ids::base32(&secret_bytes));
            let events = serde_json::to_string(&body.events)
                .map_err(|_| ApiError::from(ErrorCode::Internal))?;
            db(ctx)?
                .prepare(
                    "INSERT INTO webhooks (id, site_id, url, events, secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind(&[
                    id.as_str().into(),
                    site.into(),
                    body.url.as_str().into(),
                    events.as_str().into(),
                    secret.as_str().into(),
                    JsValue::from_f64(ctx.now as f64),
                ])
                .map_err(d1_failed(ctx))?
                .run()
                .await
                .map_err(d1_failed(ctx))?;
            audit(
                ctx,
                &team,
                &actor,
                "webhook_created",
                &id,
                serde_json::json!({ "site": site, "url": body.url }),
            )
            .await?;
            // The secret is shown this once; it is needed to verify signatures.
            ok_json(
                &serde_json::json!({ "id": id, "url": body.url, "events": body.events, "enabled": true, "secret": secret }),
                201,
            )
        }
        (Method::Delete, [id]) => {
            let sql = "DELETE FROM webhooks WHERE id = ?1 AND site_id = ?2";
            change_webhook(ctx, (&team, &actor), site, id, sql, "webhook_deleted").await
        }
        (Method::Post, [id, "enable"]) => {
            let sql = "UPDATE webhooks SET enabled = 1, failures = 0, disabled_reason = NULL
                       WHERE id = ?1 AND site_id = ?2";
            change_webhook(ctx, (&team, &actor), site, id, sql, "webhook_enabled").await
        }
        (Method::Get, [id, "deliveries"]) => {
            let request = WebhookRequest::Deliveries {
                webhook: (*id).to_string(),
            };
            webhook_object::send(&ctx.env, site, &request)
                .await
                .map_err(|_| ErrorCode::StorageUnavailable.into())
        }
        (_, [] | [_] | [_, "enable"] | [_, "deliveries"]) => {
            Err(ErrorCode::MethodNotAllowed.into())
        }
        _ => Err(ErrorCode::NotFound.into()),
    }
}

/// Runs one change to a site's webhook (`?1` its id, `?2` the site) and audits it.
async fn change_webhook(
    ctx: &Ctx,
    (team, actor): (&str, &str),
    site: &str,
    id: &str,
    sql: &str,
    action: &str,
) -> ApiResult {
    db(ctx)?
        .prepare(sql)
        .bind(&[id.into(), site.into()])
        .map_err(d1_failed(ctx))?
        .run()
        .await
        .map_err(d1_failed(ctx))?;
    audit(
        ctx,
        team,
        actor,
        action,
        id,
        serde_json::json!({ "site": site }),
    )
    .await?;
    no_content().map_err(|_| ErrorCode::Internal.into())
}
