//! Admin endpoints (owners and admins of the team): webhooks of a site and their delivery log.

use parley_core::ids::IdKind;
use parley_core::token::{AgentRole, Principal};
use parley_core::webhook;
use parley_core::ErrorCode;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{Method, Request};

use crate::api::{authenticate, d1_failed, db, mint, ok_json, Ctx, D1Statement};
use crate::console::audit;
use crate::http::{no_content, read_json, ApiError, ApiResult};
use crate::log::Log;
use crate::platform::random_16;
use crate::row::from_row;
use crate::sql_text::D1Rows;
use crate::webhook_object::{self, WebhookRequest};

/// The caller, who must be an owner or admin of the team owning `site`: (agent id, team).
async fn admin_of_site(ctx: &Ctx, site: &str) -> Result<(String, String), ApiError> {
    let principal = authenticate(ctx)?;
    let Principal::Agent { id, team, role, .. } = principal else {
        return Err(ErrorCode::Forbidden.into());
    };
    if !matches!(role, AgentRole::Owner | AgentRole::Admin) {
        return Err(ErrorCode::Forbidden.into());
    }
    from_row! {
        struct Row {
            team_id: String,
        }
    }
    let row = db(ctx)?
        .prepare("SELECT team_id FROM sites WHERE id = ?1")
        .bind(&[site.into()])
        .map_err(|_| ApiError::from(ErrorCode::Internal))?
        .first_row::<Row>()
        .await
        .map_err(|_| ApiError::from(ErrorCode::StorageUnavailable))?;
    // Another team's site is as unknown as a missing one.
    match row {
        Some(r) if r.team_id == team => Ok((id, team)),
        _ => Err(ErrorCode::NotFound.into()),
    }
}

from_row! {
    struct HookRow {
        id: String,
        url: String,
        events: String,
        enabled: i64,
        failures: i64,
        disabled_reason: Option<String>,
        created_at: i64,
    }
}

fn hook_json(row: &HookRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id, "url": row.url,
        "events": parley_core::json::from_str::<Vec<String>>(&row.events).unwrap_or_default(),
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
    let (actor, team) = admin_of_site(ctx, site).await?;
    match (method, rest) {
        (Method::Get, []) => {
            let rows = db(ctx)?
                .prepare("SELECT * FROM webhooks WHERE site_id = ?1 ORDER BY created_at")
                .bind(&[site.into()])
                .rows::<HookRow>(ctx)
                .await?;
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
            if !webhook::url_allowed(&body.url, ctx.config.webhook_allow_private) {
                return Err(ApiError::invalid_field("url"));
            }
            if body.events.is_empty()
                || body
                    .events
                    .iter()
                    .any(|e| !webhook::EVENTS.contains(&e.as_str()))
            {
                return Err(ApiError::invalid_field("events"));
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
                .execute(ctx)
        .await?;
            crate::automation::forget(site);
            audit(
                ctx,
                &team,
                &actor,
                "webhook_created",
                &id,
                // Not the URL: its path and query often carry a token, and the audit log is
                // readable by everyone allowed to export.
                serde_json::json!({ "site": site, "target": parley_core::outbound_url::origin(&body.url) }),
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
            let answer =
                change_webhook(ctx, (&team, &actor), site, id, sql, "webhook_deleted").await?;
            // Its queued deliveries hold message bodies: they go now, not at their next retry
            // (which would find the webhook gone and give them up).
            let request = WebhookRequest::WebhookDeleted {
                webhook: (*id).to_string(),
            };
            let dropped = webhook_object::send(&ctx.env, site, &request).await;
            if !dropped.as_ref().is_ok_and(|r| r.status_code() < 300) {
                Log::warn("webhook_deliveries_not_dropped")
                    .site(site)
                    .trace(&ctx.trace)
                    .error_class("storage_unavailable")
                    .emit();
            }
            Ok(answer)
        }
        (Method::Post, [id, "enable"]) => {
            let sql = "UPDATE webhooks SET enabled = 1, failures = 0, failing_since = NULL,
                       disabled_reason = NULL WHERE id = ?1 AND site_id = ?2";
            let answer =
                change_webhook(ctx, (&team, &actor), site, id, sql, "webhook_enabled").await?;
            // Its paused deliveries go now. Should this not arrive, the queue finds it switched
            // on when it next sends to it, or within the hour (`webhook::PAUSED_RECHECK_MS`).
            let request = WebhookRequest::WebhookEnabled {
                webhook: (*id).to_string(),
            };
            let resumed = webhook_object::send(&ctx.env, site, &request).await;
            if !resumed.as_ref().is_ok_and(|r| r.status_code() < 300) {
                Log::warn("webhook_deliveries_not_resumed")
                    .site(site)
                    .trace(&ctx.trace)
                    .error_class("storage_unavailable")
                    .emit();
            }
            Ok(answer)
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
        .execute(ctx)
        .await?;
    crate::automation::forget(site);
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

/// The caller, who must be an owner or admin: (agent id, team, role).
fn admin(ctx: &Ctx) -> Result<(String, String, AgentRole), ApiError> {
    match authenticate(ctx)? {
        Principal::Agent { id, team, role, .. }
            if matches!(role, AgentRole::Owner | AgentRole::Admin) =>
        {
            Ok((id, team, role))
        }
        _ => Err(ErrorCode::Forbidden.into()),
    }
}

const PERMISSIONS: [&str; 2] = ["view_personal_data", "export"];

from_row! {
    struct AgentRow {
        id: String,
        email: String,
        name: String,
        role: String,
        capacity: i64,
        permissions: String,
        disabled: i64,
        departments: Option<String>,
        created_at: i64,
    }
}

fn agent_json(row: &AgentRow) -> serde_json::Value {
    let list = |s: Option<&str>| {
        let mut items =
            parley_core::json::from_str::<Vec<String>>(s.unwrap_or("[]")).unwrap_or_default();
        items.sort();
        items
    };
    serde_json::json!({
        "id": row.id, "email": row.email, "name": row.name, "role": row.role, "capacity": row.capacity,
        "permissions": list(Some(&row.permissions)), "disabled": row.disabled != 0,
        "departments": list(row.departments.as_deref()), "created_at": row.created_at,
    })
}

const AGENT_SELECT: &str = "SELECT a.id, a.email, a.name, a.role, a.capacity, a.permissions, a.disabled, a.created_at,
       (SELECT json_group_array(d.name) FROM agent_departments ad JOIN departments d ON d.id = ad.department_id
         WHERE ad.agent_id = a.id) AS departments
     FROM agents a";

#[derive(Deserialize, Default)]
struct AgentChange {
    email: Option<String>,
    name: Option<String>,
    role: Option<String>,
    password: Option<String>,
    capacity: Option<i64>,
    permissions: Option<Vec<String>>,
    disabled: Option<bool>,
    departments: Option<Vec<String>>,
}

/// An agent's name as stored and shown: see [`parley_core::protocol::display_name`].
fn agent_name(raw: &str) -> String {
    parley_core::protocol::display_name(raw, parley_core::protocol::MAX_DISPLAY_NAME_CHARS)
}

/// Checks a change against the caller's powers: only owners make or touch owners and admins.
fn check_change(
    change: &AgentChange,
    caller: AgentRole,
    target_role: Option<&str>,
) -> Result<(), ApiError> {
    let privileged = |r: &str| matches!(r, "owner" | "admin");
    if caller != AgentRole::Owner
        && (change.role.as_deref().is_some_and(privileged) || target_role.is_some_and(privileged))
    {
        return Err(ErrorCode::Forbidden.into());
    }
    let refused = [
        (
            "role",
            change
                .role
                .as_deref()
                .is_some_and(|r| AgentRole::parse(r).is_none()),
        ),
        (
            "capacity",
            change.capacity.is_some_and(|c| !(0..=100).contains(&c)),
        ),
        (
            "permissions",
            change
                .permissions
                .as_ref()
                .is_some_and(|p| p.iter().any(|x| !PERMISSIONS.contains(&x.as_str()))),
        ),
        (
            "password",
            change
                .password
                .as_ref()
                .is_some_and(|p| p.chars().count() < 10 || p.len() > 1024),
        ),
        (
            "name",
            change.name.as_ref().is_some_and(|n| {
                agent_name(n).is_empty()
                    || n.trim().chars().count() > parley_core::protocol::MAX_DISPLAY_NAME_CHARS
            }),
        ),
        (
            "email",
            change
                .email
                .as_ref()
                .is_some_and(|e| !e.contains('@') || e.len() > 254),
        ),
    ];
    ApiError::first_refused(&refused)
}

/// Statements that set an agent's departments (by name, created when new) to `names`.
fn department_statements(
    db: &worker::D1Database,
    ctx: &Ctx,
    team: &str,
    agent: &str,
    names: &[String],
) -> Result<Vec<worker::D1PreparedStatement>, ApiError> {
    let now = JsValue::from_f64(ctx.now as f64);
    let mut statements = vec![db
        .prepare("DELETE FROM agent_departments WHERE agent_id = ?1")
        .bind(&[agent.into()])
        .map_err(d1_failed(ctx))?];
    for name in names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .take(20)
    {
        let id = mint(IdKind::Trace, ctx)?.replacen("r_", "d_", 1);
        statements.push(
            db.prepare("INSERT OR IGNORE INTO departments (id, team_id, name, created_at) VALUES (?1, ?2, ?3, ?4)")
                .bind(&[id.into(), team.into(), name.into(), now.clone()])
                .map_err(d1_failed(ctx))?,
        );
        statements.push(
            db.prepare(
                "INSERT OR IGNORE INTO agent_departments (agent_id, department_id)
                 SELECT ?1, id FROM departments WHERE team_id = ?2 AND name = ?3",
            )
            .bind(&[agent.into(), team.into(), name.into()])
            .map_err(d1_failed(ctx))?,
        );
    }
    Ok(statements)
}

/// Changes an agent's sign-in e-mail, unless another account already uses it.
async fn change_email(
    db: &worker::D1Database,
    ctx: &Ctx,
    agent: &str,
    current: &str,
    wanted: &str,
) -> Result<(), ApiError> {
    let wanted = wanted.trim().to_lowercase();
    if wanted == current {
        return Ok(());
    }
    let changed = db
        .prepare(
            "UPDATE agents SET email = ?1 WHERE id = ?2
               AND NOT EXISTS (SELECT 1 FROM agents WHERE email = ?1 AND id != ?2)",
        )
        .bind(&[wanted.as_str().into(), agent.into()])
        .changes(ctx)
        .await?;
    if changed == 0 {
        return Err(ErrorCode::EmailTaken.into());
    }
    Ok(())
}

/// Whether the change gives the agent another role or other permissions than they have.
fn access_changed(change: &AgentChange, current: &AgentRow) -> bool {
    let role_changed = change
        .role
        .as_ref()
        .is_some_and(|r| r.as_str() != current.role);
    let permissions_changed = change.permissions.as_ref().is_some_and(|wanted| {
        let mut had =
            parley_core::json::from_str::<Vec<String>>(&current.permissions).unwrap_or_default();
        let mut wanted = wanted.clone();
        had.sort();
        had.dedup();
        wanted.sort();
        wanted.dedup();
        had != wanted
    });
    role_changed || permissions_changed
}

/// The sign-in session the request came with (none for an API key).
fn caller_session(ctx: &Ctx) -> Option<String> {
    match authenticate(ctx) {
        Ok(Principal::Agent { sid, .. }) => sid,
        _ => None,
    }
}

async fn hash_password(password: &str) -> Result<(String, String), ApiError> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let salt = random_16().map_err(|_| ApiError::from(ErrorCode::Internal))?;
    let hash = crate::platform::pbkdf2_sha256(
        password,
        &salt,
        parley_core::password::PBKDF2_ITERATIONS,
        parley_core::password::HASH_LEN,
    )
    .await
    .map_err(|_| ApiError::from(ErrorCode::Internal))?;
    Ok((STANDARD.encode(hash), STANDARD.encode(salt)))
}

/// `/api/v1/agents[/{id}]`: the team's agents, for owners and admins.
pub async fn agents(req: &mut Request, ctx: &Ctx, method: &Method, rest: &[&str]) -> ApiResult {
    let (actor, team, caller_role) = admin(ctx)?;
    let db = db(ctx)?;
    match (method, rest) {
        (Method::Get, []) => {
            let rows = db
                .prepare(format!(
                    "{AGENT_SELECT} WHERE a.team_id = ?1 ORDER BY a.created_at"
                ))
                .bind(&[team.as_str().into()])
                .rows::<AgentRow>(ctx)
                .await?;
            ok_json(
                &serde_json::json!({ "agents": rows.iter().map(agent_json).collect::<Vec<_>>() }),
                200,
            )
        }
        (Method::Post, []) => {
            let change: AgentChange = read_json(req).await?;
            check_change(&change, caller_role, None)?;
            let (Some(email), Some(name), Some(password)) =
                (&change.email, &change.name, &change.password)
            else {
                let missing = match (&change.email, &change.name) {
                    (None, _) => "email",
                    (_, None) => "name",
                    _ => "password",
                };
                return Err(ApiError::invalid_field(missing));
            };
            let (hash, salt) = hash_password(password).await?;
            let id = mint(IdKind::Agent, ctx)?;
            let role = change.role.clone().unwrap_or_else(|| "agent".into());
            let permissions =
                serde_json::to_string(&change.permissions.clone().unwrap_or_default())
                    .map_err(|_| ApiError::from(ErrorCode::Internal))?;
            let mut statements = vec![db
                .prepare(
                    "INSERT INTO agents (id, team_id, email, name, role, password_hash, password_salt,
                       password_iterations, created_at, capacity, permissions)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
                     WHERE NOT EXISTS (SELECT 1 FROM agents WHERE email = ?3)",
                )
                .bind(&[
                    id.as_str().into(),
                    team.as_str().into(),
                    email.trim().to_lowercase().into(),
                    agent_name(name).into(),
                    role.as_str().into(),
                    hash.into(),
                    salt.into(),
                    JsValue::from(parley_core::password::PBKDF2_ITERATIONS),
                    JsValue::from_f64(ctx.now as f64),
                    JsValue::from_f64(change.capacity.unwrap_or(5) as f64),
                    permissions.into(),
                ])
                .map_err(d1_failed(ctx))?];
            statements.extend(department_statements(
                &db,
                ctx,
                &team,
                &id,
                change.departments.as_deref().unwrap_or(&[]),
            )?);
            let results = db.batch(statements).await.map_err(d1_failed(ctx))?;
            let created = results
                .first()
                .and_then(|r| r.meta().ok().flatten())
                .and_then(|m| m.changes)
                .unwrap_or(0);
            if created == 0 {
                // The e-mail is taken (here or in another team): nothing was added.
                return Err(ErrorCode::EmailTaken.into());
            }
            audit(
                ctx,
                &team,
                &actor,
                "agent_created",
                &id,
                serde_json::json!({ "role": role }),
            )
            .await?;
            let row = db
                .prepare(format!("{AGENT_SELECT} WHERE a.id = ?1"))
                .bind(&[id.as_str().into()])
                .map_err(d1_failed(ctx))?
                .first_row::<AgentRow>()
                .await
                .map_err(d1_failed(ctx))?
                .ok_or(ErrorCode::Internal)?;
            ok_json(&agent_json(&row), 201)
        }
        (Method::Patch, [id]) => {
            let change: AgentChange = read_json(req).await?;
            let current = db
                .prepare(format!("{AGENT_SELECT} WHERE a.id = ?1 AND a.team_id = ?2"))
                .bind(&[(*id).into(), team.as_str().into()])
                .map_err(d1_failed(ctx))?
                .first_row::<AgentRow>()
                .await
                .map_err(d1_failed(ctx))?
                .ok_or(ErrorCode::NotFound)?;
            check_change(&change, caller_role, Some(&current.role))?;
            if *id == actor && (change.disabled == Some(true) || change.role.is_some()) {
                // Nobody locks themselves out or changes their own role.
                return Err(ErrorCode::Forbidden.into());
            }
            if let Some(email) = &change.email {
                change_email(&db, ctx, id, &current.email, email).await?;
            }
            let mut statements = Vec::new();
            let mut set = |column: &str, value: JsValue| -> Result<(), ApiError> {
                statements.push(
                    db.prepare(format!("UPDATE agents SET {column} = ?1 WHERE id = ?2"))
                        .bind(&[value, (*id).into()])
                        .map_err(d1_failed(ctx))?,
                );
                Ok(())
            };
            if let Some(name) = &change.name {
                set("name", agent_name(name).into())?;
            }
            if let Some(role) = &change.role {
                set("role", role.as_str().into())?;
            }
            if let Some(capacity) = change.capacity {
                set("capacity", JsValue::from_f64(capacity as f64))?;
            }
            if let Some(permissions) = &change.permissions {
                let json = serde_json::to_string(permissions)
                    .map_err(|_| ApiError::from(ErrorCode::Internal))?;
                set("permissions", json.into())?;
            }
            if let Some(disabled) = change.disabled {
                set("disabled", JsValue::from(u8::from(disabled)))?;
            }
            if let Some(password) = &change.password {
                let (hash, salt) = hash_password(password).await?;
                set("password_hash", hash.into())?;
                set("password_salt", salt.into())?;
            }
            if let Some(departments) = &change.departments {
                statements.extend(department_statements(&db, ctx, &team, id, departments)?);
            }
            if statements.is_empty() && change.email.is_none() {
                return Err(ErrorCode::InvalidRequest.into());
            }
            // A disabled account, or a password reset by someone else, signs the agent out
            // everywhere: whoever held the old password keeps no session. So does a new role or
            // new permissions: a session's token carries the ones it was signed in with. Agents
            // who change their own password keep the session they did it from. The sessions end
            // in the change's own batch: a change saved with its sessions still live could not
            // be put right by sending it again (the role would no longer look new).
            let reset_by_other = change.password.is_some() && *id != actor;
            let ending = if change.disabled == Some(true)
                || reset_by_other
                || access_changed(&change, &current)
            {
                Some(None)
            } else if change.password.is_some() {
                Some(caller_session(ctx))
            } else {
                None
            };
            if let Some(keep) = &ending {
                statements.push(
                    crate::sessions::end_all_statement(&db, id, keep.as_deref(), ctx.now)
                        .map_err(d1_failed(ctx))?,
                );
            }
            if !statements.is_empty() {
                db.batch(statements).await.map_err(d1_failed(ctx))?;
            }
            if let Some(keep) = &ending {
                crate::sessions::forget_cached();
                crate::console::close_agent_sockets(ctx, &team, id, keep.as_deref()).await;
            }
            let changed: Vec<&str> = [
                ("email", change.email.is_some()),
                ("name", change.name.is_some()),
                ("role", change.role.is_some()),
                ("capacity", change.capacity.is_some()),
                ("permissions", change.permissions.is_some()),
                ("disabled", change.disabled.is_some()),
                ("password", change.password.is_some()),
                ("departments", change.departments.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.then_some(k))
            .collect();
            audit(
                ctx,
                &team,
                &actor,
                "agent_updated",
                id,
                serde_json::json!({ "changed": changed }),
            )
            .await?;
            no_content().map_err(|_| ErrorCode::Internal.into())
        }
        (_, [] | [_]) => Err(ErrorCode::MethodNotAllowed.into()),
        _ => Err(ErrorCode::NotFound.into()),
    }
}

from_row! {
    struct SiteRow {
        id: String,
        name: String,
        site_key: String,
        allowed_origins: String,
        settings: String,
        routing: String,
        retention_days: Option<i64>,
        identity_secret: Option<String>,
        translation: String,
        automation: String,
        bot: String,
        created_at: i64,
    }
}

fn site_json(row: &SiteRow) -> serde_json::Value {
    let json = |s: &str| {
        parley_core::json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::json!({}))
    };
    serde_json::json!({
        "id": row.id, "name": row.name, "site_key": row.site_key,
        "allowed_origins": json(&row.allowed_origins),
        // Settings as the widget sees them: defaults filled in, invalid parts replaced.
        "settings": parley_core::site_settings::WidgetSettings::from_stored(&row.settings),
        "routing": parley_core::json::from_str::<parley_core::routing::RoutingConfig>(&row.routing).unwrap_or_default(),
        "retention_days": row.retention_days,
        "translation": without_key::<parley_core::translate::TranslationSettings>(&row.translation),
        "automation": parley_core::json::from_str::<parley_core::automation::AutomationSettings>(&row.automation)
            .unwrap_or_default(),
        "bot": without_key::<parley_core::bot::BotSettings>(&row.bot),
        "identity_verification": row.identity_secret.is_some(),
        "created_at": row.created_at,
    })
}

/// Settings holding a key (translation, bot) as admins see them: the key is write-only, they
/// see only whether one is set.
fn without_key<T: serde::Serialize + serde::de::DeserializeOwned + Default>(
    stored: &str,
) -> serde_json::Value {
    let settings: T = parley_core::json::from_str(stored).unwrap_or_default();
    let mut value = serde_json::to_value(settings).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        let key_set = map.remove("api_key").is_some_and(|k| !k.is_null());
        map.insert("api_key_set".into(), key_set.into());
    }
    value
}

/// The key of a site's settings column (`translation`, `bot`) after a change: a new one given,
/// removed with `""`, else the stored one kept (admins never see it, so cannot send it back) —
/// but only for the same use: a change of provider, bot kind or endpoint needs the key again,
/// so a stored key never goes to a service it was not given for.
async fn key_after_change<T: serde::Serialize + serde::de::DeserializeOwned>(
    given: Option<String>,
    db: &worker::D1Database,
    ctx: &Ctx,
    site: &str,
    column: &'static str,
    kind_field: &str,
    new_settings: &serde_json::Value,
) -> Result<Option<String>, ApiError> {
    match given {
        Some(key) if key.is_empty() => return Ok(None),
        Some(key) => return Ok(Some(key)),
        None => {}
    }
    from_row! {
        struct Current {
            settings: String,
        }
    }
    let rows = db
        .prepare(format!(
            "SELECT {column} AS settings FROM sites WHERE id = ?1"
        ))
        .bind(&[site.into()])
        .rows::<Current>(ctx)
        .await?;
    let same_use = |stored: &serde_json::Value| {
        [kind_field, "endpoint"]
            .iter()
            .all(|field| stored.get(field) == new_settings.get(field))
    };
    Ok(rows
        .first()
        // Through the type, so settings stored before a field existed compare with its default.
        .and_then(|c| parley_core::json::from_str::<T>(&c.settings).ok())
        .and_then(|t| serde_json::to_value(t).ok())
        .filter(same_use)
        .and_then(|v| {
            v.get("api_key")
                .and_then(|k| k.as_str())
                .map(str::to_string)
        }))
}

fn is_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' ']) && s.len() <= 200
}

/// `/api/v1/sites/{site}` (GET, PATCH) and `/api/v1/sites/{site}/identity-secret` (POST, rotates).
pub async fn site(
    req: &mut Request,
    ctx: &Ctx,
    method: &Method,
    site: &str,
    rest: &[&str],
) -> ApiResult {
    let (actor, team) = admin_of_site(ctx, site).await?;
    let db = db(ctx)?;
    match (method, rest) {
        (Method::Get, []) => {
            let row = db
                .prepare("SELECT * FROM sites WHERE id = ?1")
                .bind(&[site.into()])
                .map_err(d1_failed(ctx))?
                .first_row::<SiteRow>()
                .await
                .map_err(d1_failed(ctx))?
                .ok_or(ErrorCode::NotFound)?;
            ok_json(&site_json(&row), 200)
        }
        (Method::Patch, []) => {
            #[derive(Deserialize)]
            struct Body {
                name: Option<String>,
                allowed_origins: Option<Vec<String>>,
                settings: Option<parley_core::site_settings::WidgetSettings>,
                routing: Option<parley_core::routing::RoutingConfig>,
                retention_days: Option<Option<i64>>,
                translation: Option<parley_core::translate::TranslationSettings>,
                automation: Option<parley_core::automation::AutomationSettings>,
                bot: Option<parley_core::bot::BotSettings>,
            }
            let body: Body = read_json(req).await?;
            let mut statements = Vec::new();
            let mut changed = Vec::new();
            let mut set = |column: &str, value: JsValue| -> Result<(), ApiError> {
                statements.push(
                    db.prepare(format!("UPDATE sites SET {column} = ?1 WHERE id = ?2"))
                        .bind(&[value, site.into()])
                        .map_err(d1_failed(ctx))?,
                );
                changed.push(column.to_string());
                Ok(())
            };
            let json = |v: &dyn erased::Json| {
                v.to_json()
                    .map_err(|_| ApiError::from(ErrorCode::InvalidRequest))
            };
            if let Some(name) = body.name.map(|n| n.trim().to_string()) {
                if name.is_empty() || name.chars().count() > 100 {
                    return Err(ApiError::invalid_field("name"));
                }
                set("name", name.into())?;
            }
            if let Some(origins) = body.allowed_origins {
                if origins.len() > 50 || !origins.iter().all(|o| is_origin(o)) {
                    return Err(ApiError::invalid_field("allowed_origins"));
                }
                set("allowed_origins", json(&origins)?.into())?;
            }
            if let Some(settings) = body.settings {
                set("settings", json(&settings.sanitized())?.into())?;
            }
            if let Some(routing) = body.routing {
                // Hours are checked only when they apply, as they are read: a site that turned
                // them off can still save the rest of its routing.
                let hours_ok = !routing.hours.enabled
                    || (parley_core::hours::is_known_zone(&routing.hours.timezone)
                        && routing.hours.is_well_formed());
                let refused = [
                    ("routing.hours", !hours_ok),
                    (
                        "routing.answer_timeout_ms",
                        routing.answer_timeout_ms < 5_000,
                    ),
                    (
                        "routing.heartbeat_timeout_ms",
                        !(5_000..=86_400_000).contains(&routing.heartbeat_timeout_ms),
                    ),
                    (
                        "routing.reconnect_grace_ms",
                        !(0..=3_600_000).contains(&routing.reconnect_grace_ms),
                    ),
                ];
                ApiError::first_refused(&refused)?;
                set("routing", json(&routing)?.into())?;
            }
            if let Some(mut translation) = body.translation {
                let endpoint_ok = translation.provider
                    == parley_core::translate::Provider::WorkersAi
                    || parley_core::webhook::url_allowed(
                        &translation.endpoint,
                        ctx.config.webhook_allow_private,
                    );
                if translation.enabled && !endpoint_ok {
                    return Err(ApiError::invalid_field("translation.endpoint"));
                }
                if parley_core::translate::primary(&translation.agent_language).is_empty() {
                    return Err(ApiError::invalid_field("translation.agent_language"));
                }
                let new_settings = serde_json::to_value(&translation).unwrap_or_default();
                translation.api_key =
                    key_after_change::<parley_core::translate::TranslationSettings>(
                        translation.api_key,
                        &db,
                        ctx,
                        site,
                        "translation",
                        "provider",
                        &new_settings,
                    )
                    .await?;
                set("translation", json(&translation)?.into())?;
            }
            if let Some(automation) = body.automation {
                let refused = [
                    (
                        "automation.keyword_replies",
                        automation.keyword_replies.len() > 50,
                    ),
                    ("automation.invitations", automation.invitations.len() > 20),
                    (
                        "automation.auto_close_seconds",
                        automation
                            .auto_close_seconds
                            .is_some_and(|s| !(10..=30 * 86_400).contains(&s)),
                    ),
                ];
                ApiError::first_refused(&refused)?;
                set("automation", json(&automation)?.into())?;
            }
            if let Some(mut bot) = body.bot {
                bot.name = parley_core::protocol::display_name(
                    &bot.name,
                    parley_core::conversation::MAX_AUTOMATED_NAME_CHARS,
                );
                if bot.enabled
                    && bot.kind != parley_core::bot::BotKind::WorkersAi
                    && !parley_core::webhook::url_allowed(
                        &bot.endpoint,
                        ctx.config.webhook_allow_private,
                    )
                {
                    return Err(ApiError::invalid_field("bot.endpoint"));
                }
                let new_settings = serde_json::to_value(&bot).unwrap_or_default();
                bot.api_key = key_after_change::<parley_core::bot::BotSettings>(
                    bot.api_key,
                    &db,
                    ctx,
                    site,
                    "bot",
                    "kind",
                    &new_settings,
                )
                .await?;
                // A webhook bot's posts are signed with its secret: without one nobody could
                // tell them from forgeries.
                let unsigned = bot.api_key.as_deref().is_none_or(str::is_empty);
                if bot.enabled && bot.kind == parley_core::bot::BotKind::Webhook && unsigned {
                    return Err(ApiError::invalid_field("bot.api_key"));
                }
                set("bot", json(&bot)?.into())?;
            }
            if let Some(days) = body.retention_days {
                if days.is_some_and(|d| !(1..=3650).contains(&d)) {
                    return Err(ApiError::invalid_field("retention_days"));
                }
                set(
                    "retention_days",
                    days.map_or(JsValue::NULL, |d| JsValue::from_f64(d as f64)),
                )?;
            }
            if statements.is_empty() {
                return Err(ErrorCode::InvalidRequest.into());
            }
            db.batch(statements).await.map_err(d1_failed(ctx))?;
            crate::sites::forget_cached();
            audit(
                ctx,
                &team,
                &actor,
                "site_updated",
                site,
                serde_json::json!({ "changed": changed }),
            )
            .await?;
            no_content().map_err(|_| ErrorCode::Internal.into())
        }
        (Method::Post, ["identity-secret"]) => {
            // Rotation: the old secret stops verifying at once; shown this once.
            let bytes = random_16().map_err(|_| ApiError::from(ErrorCode::Internal))?;
            let more = random_16().map_err(|_| ApiError::from(ErrorCode::Internal))?;
            let secret: String = bytes
                .iter()
                .chain(more.iter())
                .map(|b| format!("{b:02x}"))
                .collect();
            db.prepare("UPDATE sites SET identity_secret = ?1 WHERE id = ?2")
                .bind(&[secret.as_str().into(), site.into()])
                .execute(ctx)
                .await?;
            crate::sites::forget_cached();
            audit(
                ctx,
                &team,
                &actor,
                "identity_secret_rotated",
                site,
                serde_json::json!({}),
            )
            .await?;
            ok_json(&serde_json::json!({ "identity_secret": secret }), 200)
        }
        (_, [] | ["identity-secret"]) => Err(ErrorCode::MethodNotAllowed.into()),
        _ => Err(ErrorCode::NotFound.into()),
    }
}

/// Serialisation to JSON text for the values stored in columns.
mod erased {
    pub trait Json {
        fn to_json(&self) -> serde_json::Result<String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}

/// `GET /api/v1/departments`: the team's departments (for transfers), for every agent.
pub async fn departments(ctx: &Ctx) -> ApiResult {
    from_row! {
        struct Row {
            id: String,
            name: String,
            agents: f64,
        }
    }
    let Principal::Agent { team, .. } = authenticate(ctx)? else {
        return Err(ErrorCode::Forbidden.into());
    };
    let rows = db(ctx)?
        .prepare(
            "SELECT d.id, d.name, (SELECT COUNT(*) FROM agent_departments ad WHERE ad.department_id = d.id) AS agents
             FROM departments d WHERE d.team_id = ?1 ORDER BY d.name",
        )
        .bind(&[team.into()])
        .rows::<Row>(ctx)
        .await?;
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({ "id": r.id, "name": r.name, "agents": r.agents as u32 }))
        .collect();
    ok_json(&serde_json::json!({ "departments": list }), 200)
}
