//! Endpoints of the agent console besides the conversation itself: the team's sites, the
//! site's live socket, claiming and transferring, tags, quick replies, the visitor sidebar and
//! the audited reveal of masked personal data.

use parley_core::ids::{self, IdKind};
use parley_core::routing::TransferTarget;
use parley_core::token::Principal;
use parley_core::ErrorCode;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{Headers, Method, Request};

use crate::api::{
    authenticate, d1_failed, db, header, mint, ok_json, operate, origin_allowed, Ctx, D1Statement,
};
use crate::http::{read_json, ApiError, ApiResult, JsonBody};
use crate::internal::{Operation, INTERNAL_BASE, IP_HEADER, LANG_HEADER, SITE_HEADER};
use crate::log::Log;
use crate::query::from_query;
use crate::row::from_row;
use crate::site_object::{self, SiteRequest};
use crate::sql_text::D1Rows;

/// The caller, who must be an agent: (id, team, name).
fn agent(ctx: &Ctx) -> Result<(Principal, String, String, String), ApiError> {
    let principal = authenticate(ctx)?;
    match &principal {
        Principal::Agent { id, team, name, .. } => {
            let (id, team, name) = (id.clone(), team.clone(), name.clone());
            Ok((principal, id, team, name))
        }
        Principal::Visitor { .. } => Err(ErrorCode::Forbidden.into()),
    }
}

fn agent_of(principal: &Principal) -> Result<(String, String, String), ApiError> {
    match principal {
        Principal::Agent { id, team, name, .. } => Ok((id.clone(), team.clone(), name.clone())),
        Principal::Visitor { .. } => Err(ErrorCode::Forbidden.into()),
    }
}

/// `GET /api/v1/sites`: the caller's team's sites.
pub async fn sites(ctx: &Ctx) -> ApiResult {
    from_row! {
        #[derive(Serialize)]
        struct Row {
            id: String,
            name: String,
            site_key: String,
        }
    }
    let (_, _, team, _) = agent(ctx)?;
    let rows = db(ctx)?
        .prepare("SELECT id, name, site_key FROM sites WHERE team_id = ?1 ORDER BY name")
        .bind(&[team.into()])
        .rows::<Row>(ctx)
        .await?;
    ok_json(&serde_json::json!({ "sites": rows }), 200)
}

/// `GET /api/v1/console/ws?site=<site id>`: the site's live feed for a console.
pub async fn open_console(req: &Request, ctx: &Ctx) -> ApiResult {
    from_query! {
        struct Query {
            site: String,
        }
    }
    let upgrade = header(req, "upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ErrorCode::InvalidRequest.into());
    }
    // The console is served by this Worker: other origins never get its feed.
    if !origin_allowed(ctx, None) {
        return Err(ErrorCode::OriginNotAllowed.into());
    }
    let query: Query = crate::http::query(req)?;
    if !ids::is_valid(IdKind::Site, &query.site) {
        return Err(ErrorCode::NotFound.into());
    }
    let headers = Headers::new();
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|_| ApiError::from(ErrorCode::Internal))
    };
    set("upgrade", "websocket")?;
    set(SITE_HEADER, &query.site)?;
    set(LANG_HEADER, ctx.lang.tag())?;
    // Sockets that have not signed in are counted per address.
    set(IP_HEADER, &ctx.ip)?;
    let mut init = worker::RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&format!("{INTERNAL_BASE}/ws"), &init)
        .map_err(|_| ApiError::from(ErrorCode::Internal))?;
    let stub = ctx
        .env
        .durable_object("SITE")
        .and_then(|ns| ns.id_from_name(&query.site)?.get_stub())
        .map_err(|_| ApiError::from(ErrorCode::Internal))?;
    stub.fetch_with_request(request)
        .await
        .map_err(|_| ErrorCode::StorageUnavailable.into())
}

#[derive(Deserialize)]
struct Info {
    site: String,
    #[serde(default)]
    status: Option<String>,
}

/// The conversation's site and visitor, asked of its object (which also checks access).
async fn info(ctx: &Ctx, id: &str, principal: &Principal) -> Result<Info, ApiError> {
    let mut response = operate(ctx, id, principal, Operation::Info).await?;
    if response.status_code() != 200 {
        return Err(ErrorCode::NotFound.into());
    }
    response
        .json_body::<Info>()
        .await
        .map_err(|_| ErrorCode::Internal.into())
}

async fn site_answer(ctx: &Ctx, site: &str, request: &SiteRequest) -> ApiResult {
    site_object::send(&ctx.env, site, request)
        .await
        .map_err(|e| {
            Log::error("site_unreachable")
                .site(site)
                .trace(&ctx.trace)
                .error_class("storage_unavailable")
                .field("detail", e.to_string())
                .emit();
            ErrorCode::StorageUnavailable.into()
        })
}

/// `POST …/claim`: take a waiting conversation; of two agents claiming at once, one wins. An
/// open conversation that routing never saw (its site's object was unreachable when it
/// started) can be claimed too; a closed one cannot.
pub async fn claim(_req: &mut Request, ctx: &Ctx, id: &str, principal: &Principal) -> ApiResult {
    let (agent_id, _, name) = agent_of(principal)?;
    let info = info(ctx, id, principal).await?;
    if info.status.as_deref() != Some("open") {
        return Err(ErrorCode::NotFound.into());
    }
    let profile = site_object::agent_profile(&ctx.env, &agent_id, &name).await;
    let request = SiteRequest::Claim {
        conversation: id.to_string(),
        agent: profile,
    };
    site_answer(ctx, &info.site, &request).await
}

/// `POST …/transfer {"agent"} | {"department"}, "note"?`: hand over, with a private note.
pub async fn transfer(req: &mut Request, ctx: &Ctx, id: &str, principal: &Principal) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        agent: Option<String>,
        department: Option<String>,
        note: Option<String>,
    }
    let (agent_id, team, _) = agent_of(principal)?;
    let body: Body = read_json(req).await?;
    let to = match (body.agent, body.department) {
        (Some(id), None) => TransferTarget::Agent { id },
        (None, Some(name)) => {
            let name = name.trim().to_string();
            // Only the team's departments: a typo would otherwise wait for nobody, forever.
            if !department_exists(ctx, &team, &name).await? {
                return Err(ErrorCode::NotFound.into());
            }
            TransferTarget::Department { name }
        }
        _ => return Err(ErrorCode::InvalidRequest.into()),
    };
    let note = body
        .note
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.trim().to_string());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > parley_core::limits::MAX_TEXT_CHARS)
    {
        return Err(ErrorCode::MessageTooLong.into());
    }
    let info = info(ctx, id, principal).await?;
    let request = SiteRequest::Transfer {
        conversation: id.to_string(),
        by: agent_id,
        to,
    };
    let mut answer = site_answer(ctx, &info.site, &request).await?;
    let Some(note) = note else {
        return Ok(answer);
    };
    if answer.status_code() >= 300 {
        // Refused: the note is not written, so nothing speaks of a transfer that did not happen.
        return Ok(answer);
    }
    // Written once the transfer stands; whoever receives the conversation reads it next to the
    // history (and live, if they already have it open).
    let send = Operation::Send {
        client_msg_id: mint(IdKind::Trace, ctx)?,
        text: note,
        note: true,
        file: None,
    };
    let written = operate(ctx, id, principal, send).await;
    let note_seq = match written {
        Ok(mut response) if response.status_code() < 300 => response
            .json_body::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("seq").and_then(|s| s.as_u64())),
        other => {
            let detail = match other {
                Ok(response) => format!("status {}", response.status_code()),
                Err(e) => e.code.as_str().to_string(),
            };
            Log::warn("transfer_note_failed")
                .site(&info.site)
                .conversation(id)
                .trace(&ctx.trace)
                .error_class("storage_unavailable")
                .field("detail", detail)
                .emit();
            None
        }
    };
    // The transfer happened either way: say whether its note is in.
    let mut outcome: serde_json::Value = answer
        .json_body()
        .await
        .map_err(|_| ApiError::from(ErrorCode::Internal))?;
    if let Some(map) = outcome.as_object_mut() {
        map.insert("note_seq".into(), note_seq.into());
    }
    ok_json(&outcome, 200)
}

/// Whether the team has a department of this name.
async fn department_exists(ctx: &Ctx, team: &str, name: &str) -> Result<bool, ApiError> {
    if name.is_empty() {
        return Ok(false);
    }
    let row = db(ctx)?
        .prepare("SELECT id FROM departments WHERE team_id = ?1 AND name = ?2")
        .bind(&[team.into(), name.into()])
        .map_err(d1_failed(ctx))?
        .first::<serde_json::Value>(None)
        .await
        .map_err(d1_failed(ctx))?;
    Ok(row.is_some())
}

/// `GET …/queue`: the conversation's place in the waiting queue (`null` when not waiting).
pub async fn queue_position(ctx: &Ctx, id: &str, principal: &Principal) -> ApiResult {
    let info = info(ctx, id, principal).await?;
    let request = SiteRequest::Position {
        conversation: id.to_string(),
    };
    site_answer(ctx, &info.site, &request).await
}

/// `POST …/reveal {"seq"}`: the unmasked text of a visitor message; written to the audit log.
pub async fn reveal(req: &mut Request, ctx: &Ctx, id: &str, principal: &Principal) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        seq: u64,
    }
    let (agent_id, team, _) = agent_of(principal)?;
    // A reveal is a person's, one value at a time when the conversation needs it; a key made
    // without the personal_data scope must not unmask in bulk.
    if principal.is_api_key() && !principal.sees_pii() {
        return Err(ErrorCode::Forbidden.into());
    }
    let body: Body = read_json(req).await?;
    let response = operate(ctx, id, principal, Operation::Reveal { seq: body.seq }).await?;
    if response.status_code() == 200 {
        // A reveal that cannot be audited is not given.
        audit(
            ctx,
            &team,
            &agent_id,
            "reveal_personal_data",
            id,
            serde_json::json!({ "seq": body.seq }),
        )
        .await?;
    }
    Ok(response)
}

/// Appends to the team's audit log.
pub async fn audit(
    ctx: &Ctx,
    team: &str,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    db(ctx)?
        .prepare(
            "INSERT INTO audit_log (team_id, actor_id, action, target, detail, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&[
            team.into(),
            actor.into(),
            action.into(),
            target.into(),
            detail.to_string().into(),
            JsValue::from_f64(ctx.now as f64),
        ])
        .execute(ctx)
        .await?;
    Ok(())
}

from_row! {
    #[derive(Serialize)]
    struct TagRow {
        tag: String,
    }
}

async fn read_tags(ctx: &Ctx, id: &str) -> Result<Vec<String>, ApiError> {
    Ok(db(ctx)?
        .prepare("SELECT tag FROM conversation_tags WHERE conversation_id = ?1 ORDER BY tag")
        .bind(&[id.into()])
        .rows::<TagRow>(ctx)
        .await?
        .into_iter()
        .map(|r| r.tag)
        .collect())
}

/// `GET …/tags`.
pub async fn tags(ctx: &Ctx, id: &str, principal: &Principal) -> ApiResult {
    agent_of(principal)?;
    info(ctx, id, principal).await?;
    ok_json(
        &serde_json::json!({ "tags": read_tags(ctx, id).await? }),
        200,
    )
}

/// `PUT …/tags {"tags": [...]}`: replaces the conversation's tags.
pub async fn set_tags(req: &mut Request, ctx: &Ctx, id: &str, principal: &Principal) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        tags: Vec<String>,
    }
    agent_of(principal)?;
    let body: Body = read_json(req).await?;
    let mut tags: Vec<String> = body
        .tags
        .into_iter()
        .map(|t| t.trim().chars().take(32).collect::<String>())
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort();
    tags.dedup();
    if tags.len() > 20 {
        return Err(ErrorCode::InvalidRequest.into());
    }
    info(ctx, id, principal).await?;
    let db = db(ctx)?;
    let mut statements = vec![db
        .prepare("DELETE FROM conversation_tags WHERE conversation_id = ?1")
        .bind(&[id.into()])
        .map_err(d1_failed(ctx))?];
    for tag in &tags {
        statements.push(
            db.prepare("INSERT INTO conversation_tags (conversation_id, tag) VALUES (?1, ?2)")
                .bind(&[id.into(), tag.as_str().into()])
                .map_err(d1_failed(ctx))?,
        );
    }
    db.batch(statements).await.map_err(d1_failed(ctx))?;
    ok_json(&serde_json::json!({ "tags": tags }), 200)
}

/// `GET /api/v1/quick-replies`: the team's replies and the caller's own.
pub async fn quick_replies(ctx: &Ctx) -> ApiResult {
    from_row! {
        #[derive(Serialize)]
        struct Row {
            id: String,
            title: String,
            body: String,
            group: String,
            personal: u8,
        }
    }
    let (_, agent_id, team, _) = agent(ctx)?;
    let rows = db(ctx)?
        .prepare(
            "SELECT id, title, body, group_name AS \"group\", (agent_id IS NOT NULL) AS personal
             FROM quick_replies WHERE team_id = ?1 AND (agent_id IS NULL OR agent_id = ?2)
             ORDER BY group_name, title",
        )
        .bind(&[team.into(), agent_id.into()])
        .rows::<Row>(ctx)
        .await?;
    let replies: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            serde_json::json!({ "id": r.id, "title": r.title, "body": r.body, "group": r.group, "personal": r.personal != 0 })
        })
        .collect();
    ok_json(&serde_json::json!({ "replies": replies }), 200)
}

/// Longest quick reply title (what the composer's "/" finds it by), in characters.
const QUICK_TITLE_MAX: usize = 100;
/// Longest quick reply group name, in characters.
const QUICK_GROUP_MAX: usize = 50;

/// Refuses the first of a quick reply's fields (trimmed; a change leaves out what it keeps) that
/// does not fit, by name (`invalid_field`): a title or text empty or too long, a group too long.
/// A reply goes whole into a message, so one too long is refused rather than cut.
fn check_quick_reply(
    title: Option<&str>,
    text: Option<&str>,
    group: Option<&str>,
) -> Result<(), ApiError> {
    let over = |v: Option<&str>, max: usize| v.is_some_and(|v| v.chars().count() > max);
    ApiError::first_refused(&[
        ("title", title == Some("") || over(title, QUICK_TITLE_MAX)),
        (
            "body",
            text == Some("") || over(text, parley_core::limits::MAX_TEXT_CHARS),
        ),
        ("group", over(group, QUICK_GROUP_MAX)),
    ])
}

/// `POST /api/v1/quick-replies {"title","body","group","personal"}`.
pub async fn add_quick_reply(req: &mut Request, ctx: &Ctx) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        // Left out, they are refused by name like empty ones.
        #[serde(default)]
        title: String,
        #[serde(default)]
        body: String,
        #[serde(default)]
        group: String,
        #[serde(default)]
        personal: bool,
    }
    let (principal, agent_id, team, _) = agent(ctx)?;
    let body: Body = read_json(req).await?;
    let (title, text, group) = (body.title.trim(), body.body.trim(), body.group.trim());
    check_quick_reply(Some(title), Some(text), Some(group))?;
    // Team replies are the admins' to write; everyone may keep personal ones.
    let is_admin = matches!(
        principal,
        Principal::Agent {
            role: parley_core::token::AgentRole::Owner | parley_core::token::AgentRole::Admin,
            ..
        }
    );
    if !body.personal && !is_admin {
        return Err(ErrorCode::Forbidden.into());
    }
    let id = mint(IdKind::Trace, ctx)?.replacen("r_", "q_", 1);
    db(ctx)?
        .prepare(
            "INSERT INTO quick_replies (id, team_id, agent_id, group_name, title, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&[
            id.as_str().into(),
            team.into(),
            if body.personal {
                agent_id.into()
            } else {
                JsValue::NULL
            },
            group.into(),
            title.into(),
            text.into(),
            JsValue::from_f64(ctx.now as f64),
        ])
        .execute(ctx)
        .await?;
    ok_json(
        &serde_json::json!({ "id": id, "title": title, "body": text, "group": group, "personal": body.personal }),
        201,
    )
}

/// `GET /api/v1/visitors/{id}`: the visitor sidebar.
pub async fn visitor(ctx: &Ctx, id: &str) -> ApiResult {
    from_row! {
        struct VisitorRow {
            id: String,
            name: Option<String>,
            email: Option<String>,
            external_id: Option<String>,
            identity_verified: i64,
            country: Option<String>,
            region: Option<String>,
            city: Option<String>,
            context: String,
            attributes: String,
        }
    }
    from_row! {
        #[derive(Serialize)]
        struct PageRow {
            url: String,
            title: Option<String>,
            at: i64,
        }
    }
    from_row! {
        #[derive(Serialize)]
        struct ConversationRow {
            id: String,
            status: String,
            created_at: i64,
            last_message_at: Option<i64>,
        }
    }
    let (principal, _, team, _) = agent(ctx)?;
    if !ids::is_valid(IdKind::Visitor, id) {
        return Err(ErrorCode::NotFound.into());
    }
    let db = db(ctx)?;
    let row = db
        .prepare(
            "SELECT v.id, v.name, v.email, v.external_id, v.identity_verified, v.country, v.region, v.city, v.context, v.attributes
             FROM visitors v JOIN sites s ON s.id = v.site_id WHERE v.id = ?1 AND s.team_id = ?2",
        )
        .bind(&[id.into(), team.into()])
        .map_err(d1_failed(ctx))?
        .first_row::<VisitorRow>()
        .await
        .map_err(d1_failed(ctx))?
        .ok_or(ErrorCode::NotFound)?;
    let pages = db
        .prepare("SELECT url, title, created_at AS at FROM page_views WHERE visitor_id = ?1 ORDER BY id DESC LIMIT 50")
        .bind(&[id.into()])
        .rows::<PageRow>(ctx)
        .await?;
    let conversations = db
        .prepare(
            "SELECT id, status, created_at, last_message_at FROM conversations WHERE visitor_id = ?1
             ORDER BY created_at DESC LIMIT 20",
        )
        .bind(&[id.into()])
        .rows::<ConversationRow>(ctx)
        .await?;
    // The e-mail is personal data: masked for agents without the permission; so is what a
    // name holds of it (a visitor may type an address or a number into a form's name field).
    let masked = |value: Option<String>| match (value, principal.sees_pii()) {
        (Some(v), false) => Some(parley_core::pii::mask(&v).0),
        (v, _) => v,
    };
    let email = masked(row.email);
    let name = masked(row.name);
    let parse = |s: &str| {
        parley_core::json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::json!({}))
    };
    ok_json(
        &serde_json::json!({
            "visitor": {
                "id": row.id, "name": name, "email": email,
                // The id the site's identify() claimed; without a valid hash it is unverified,
                // and the console says so.
                "external_id": row.external_id,
                "identity_verified": row.identity_verified != 0,
                "country": row.country, "region": row.region, "city": row.city,
                "context": parse(&row.context), "attributes": parse(&row.attributes),
            },
            "pages": pages,
            "conversations": conversations,
        }),
        200,
    )
}

/// Closes the console sockets of an ended session on each of the team's sites. Best effort: sockets that survive refuse their next frame anyway.
pub async fn close_session_sockets(ctx: &Ctx, team: &str, sid: &str) {
    end_on_sites(
        ctx,
        team,
        SiteRequest::EndSession {
            sid: Some(sid.to_string()),
            agent: None,
            keep: None,
        },
    )
    .await;
}

/// Closes the console sockets of every session of `agent` but `keep`.
pub async fn close_agent_sockets(ctx: &Ctx, team: &str, agent: &str, keep: Option<&str>) {
    end_on_sites(
        ctx,
        team,
        SiteRequest::EndSession {
            sid: None,
            agent: Some(agent.to_string()),
            keep: keep.map(str::to_string),
        },
    )
    .await;
}

async fn end_on_sites(ctx: &Ctx, team: &str, request: SiteRequest) {
    from_row! {
        struct Row {
            id: String,
        }
    }
    let sites = async {
        db(ctx)?
            .prepare("SELECT id FROM sites WHERE team_id = ?1")
            .bind(&[team.into()])
            .map_err(|_| ApiError::from(ErrorCode::Internal))?
            .all_rows::<Row>()
            .await
            .map_err(d1_failed(ctx))
    }
    .await
    .unwrap_or_default();
    for site in sites {
        if let Err(e) = site_object::send(&ctx.env, &site.id, &request).await {
            Log::warn("site_unreachable")
                .site(&site.id)
                .trace(&ctx.trace)
                .error_class("site_unavailable")
                .field("detail", e.to_string())
                .emit();
        }
    }
}

/// `PATCH /api/v1/quick-replies/{id} {"title"?,"body"?,"group"?}` and `DELETE …/{id}`: one's
/// own personal replies, or (owners and admins) the team's.
pub async fn change_quick_reply(
    req: &mut Request,
    ctx: &Ctx,
    method: &Method,
    id: &str,
) -> ApiResult {
    from_row! {
        struct Owner {
            agent_id: Option<String>,
        }
    }
    #[derive(Deserialize)]
    struct Body {
        title: Option<String>,
        body: Option<String>,
        group: Option<String>,
    }
    let (principal, agent_id, team, _) = agent(ctx)?;
    let db = db(ctx)?;
    let owner = db
        .prepare("SELECT agent_id FROM quick_replies WHERE id = ?1 AND team_id = ?2")
        .bind(&[id.into(), team.as_str().into()])
        .map_err(d1_failed(ctx))?
        .first_row::<Owner>()
        .await
        .map_err(d1_failed(ctx))?
        .ok_or(ErrorCode::NotFound)?;
    let is_admin = matches!(
        principal,
        Principal::Agent {
            role: parley_core::token::AgentRole::Owner | parley_core::token::AgentRole::Admin,
            ..
        }
    );
    match owner.agent_id.as_deref() {
        // Someone else's personal reply is not there for this caller.
        Some(other) if other != agent_id => return Err(ErrorCode::NotFound.into()),
        None if !is_admin => return Err(ErrorCode::Forbidden.into()),
        _ => {}
    }
    if *method == Method::Delete {
        db.prepare("DELETE FROM quick_replies WHERE id = ?1")
            .bind(&[id.into()])
            .execute(ctx)
            .await?;
        return crate::http::no_content().map_err(|_| ErrorCode::Internal.into());
    }
    let body: Body = read_json(req).await?;
    let trim = |s: Option<String>| s.map(|v| v.trim().to_string());
    let (title, text, group) = (trim(body.title), trim(body.body), trim(body.group));
    check_quick_reply(title.as_deref(), text.as_deref(), group.as_deref())?;
    if title.is_none() && text.is_none() && group.is_none() {
        return Err(ErrorCode::InvalidRequest.into());
    }
    let value = |v: Option<String>| v.map_or(JsValue::NULL, JsValue::from);
    db.prepare(
        "UPDATE quick_replies SET title = COALESCE(?2, title), body = COALESCE(?3, body),
           group_name = COALESCE(?4, group_name) WHERE id = ?1",
    )
    .bind(&[id.into(), value(title), value(text), value(group)])
    .execute(ctx)
    .await?;
    crate::http::no_content().map_err(|_| ErrorCode::Internal.into())
}
