//! Endpoints the visitor widget calls besides the conversation itself: its configuration,
//! the visitor's context (page trail, device, source) and identity verification.

use parley_core::site_settings::WidgetSettings;
use parley_core::token::Principal;
use parley_core::visitor::{identity_verified, VisitorContext};
use parley_core::ErrorCode;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::Request;

use crate::api::{
    authenticate, d1_failed, db, ok_json, origin_allowed, rate_limit, site_or_error, Ctx,
};
use crate::http::{no_content, read_json, ApiError, ApiResult, JsonBody};
use crate::limiter_object::Limit;
use crate::log::Log;
use crate::query::from_query;
use crate::row::from_row;
use crate::sites;
use crate::sql_text::D1Rows;

/// `GET /api/v1/widget/config?site=KEY`: what the widget shows, public and briefly cacheable.
pub async fn config(req: &Request, ctx: &Ctx) -> ApiResult {
    from_query! {
        struct Query {
            site: String,
        }
    }
    let query: Query = crate::http::query(req)?;
    let site = site_or_error(sites::by_key(&db(ctx)?, &query.site, ctx.now).await, ctx).await?;
    if !origin_allowed(ctx, Some(&site)) {
        return Err(ErrorCode::OriginNotAllowed.into());
    }
    let open = site.routing.hours.is_open(ctx.now);
    let invitations = crate::automation::load(&ctx.env, &site.id)
        .await
        .settings
        .invitations
        .clone();
    let online = open && agents_online(ctx, &site.id).await;
    let WidgetSettings {
        appearance,
        welcome,
        prechat,
        offline,
        attachments,
    } = site.settings;
    let mut response = ok_json(
        &serde_json::json!({
            "site": { "name": site.name },
            "appearance": appearance,
            "welcome": welcome,
            "prechat": prechat,
            "offline": offline,
            "attachments": attachments,
            "invitations": invitations,
            "online": online,
            "open": open,
            "identity": { "verification": site.identity_secret.is_some() },
        }),
        200,
    )?;
    response
        .headers_mut()
        .set("cache-control", "public, max-age=15")
        .map_err(|_| ApiError::from(ErrorCode::Internal))?;
    Ok(response)
}

/// Whether an agent can take a conversation now; when the site's object cannot be asked, the
/// widget offers live chat anyway (the conversation then waits in the queue, never lost).
async fn agents_online(ctx: &Ctx, site: &str) -> bool {
    #[derive(Deserialize)]
    struct Answer {
        online: bool,
    }
    match crate::site_object::send(&ctx.env, site, &crate::site_object::SiteRequest::Online).await {
        Ok(mut response) => response
            .json_body::<Answer>()
            .await
            .map(|a| a.online)
            .unwrap_or(true),
        Err(_) => true,
    }
}

/// The visitor and site of the request. These writes make the visitor's record, so the token
/// of a visitor erased since is refused (`token_invalid`: the widget renews it as someone new)
/// rather than bringing the erased identity back.
async fn visitor_of(ctx: &Ctx) -> Result<(String, String), ApiError> {
    match authenticate(ctx)? {
        Principal::Visitor { id, .. } if crate::erasure::is_erased_visitor(ctx, &id).await? => {
            Err(ErrorCode::TokenInvalid.into())
        }
        Principal::Visitor { id, site } => Ok((id, site)),
        Principal::Agent { .. } => Err(ErrorCode::Forbidden.into()),
    }
}

async fn run(ctx: &Ctx, statements: Vec<worker::D1PreparedStatement>) -> Result<(), ApiError> {
    db(ctx)?
        .batch(statements)
        .await
        .map(|_| ())
        .map_err(d1_failed(ctx))
}

fn bind_err(e: worker::Error) -> ApiError {
    Log::error("internal_error")
        .error_class("d1_bind")
        .field("detail", e.to_string())
        .emit();
    ErrorCode::Internal.into()
}

pub(crate) fn text_or_null(value: Option<String>) -> JsValue {
    value.map_or(JsValue::NULL, |v| JsValue::from_str(&v))
}

/// `POST /api/v1/visitor/context`: where the visitor is now; each call extends the page trail.
/// Every call stores a row, so each visitor has a page-view bucket (`RATE_PAGE_VIEWS`).
pub async fn context(req: &mut Request, ctx: &Ctx) -> ApiResult {
    let (visitor, site) = visitor_of(ctx).await?;
    rate_limit(ctx, &format!("page_views:{visitor}"), Limit::PageViews).await?;
    let reported: VisitorContext = read_json(req).await?;
    let context = reported.sanitized();
    let cf = req.cf();
    let geo = |f: fn(&worker::Cf) -> Option<String>| cf.and_then(f).filter(|v| !v.is_empty());
    let (country, region, city) = (geo(|c| c.country()), geo(|c| c.region()), geo(|c| c.city()));
    let context_json =
        serde_json::to_string(&context).map_err(|_| ApiError::from(ErrorCode::Internal))?;
    let now = JsValue::from_f64(ctx.now as f64);
    let db = db(ctx)?;
    let mut statements = vec![db
        .prepare(
            "INSERT INTO visitors (id, site_id, created_at, last_seen_at, context, country, region, city)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, context = excluded.context,
               country = COALESCE(excluded.country, visitors.country),
               region = COALESCE(excluded.region, visitors.region),
               city = COALESCE(excluded.city, visitors.city)",
        )
        .bind(&[
            visitor.as_str().into(),
            site.as_str().into(),
            now.clone(),
            context_json.into(),
            text_or_null(country),
            text_or_null(region),
            text_or_null(city),
        ])
        .map_err(bind_err)?];
    if let Some(url) = context.page.url.clone() {
        statements.push(
            db.prepare(
                "INSERT INTO page_views (visitor_id, site_id, url, title, referrer, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(&[
                visitor.as_str().into(),
                site.as_str().into(),
                url.into(),
                text_or_null(context.page.title.clone()),
                text_or_null(context.referrer.clone()),
                now,
            ])
            .map_err(bind_err)?,
        );
    }
    run(ctx, statements).await?;
    no_content().map_err(|_| ErrorCode::Internal.into())
}

/// `POST /api/v1/visitor/identify`: the host site names its logged-in user; the name counts as
/// verified only with a valid HMAC of the id under the site's identity secret.
pub async fn identify(req: &mut Request, ctx: &Ctx) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        id: String,
        name: Option<String>,
        email: Option<String>,
        hash: Option<String>,
    }
    let (visitor, site_id) = visitor_of(ctx).await?;
    let body: Body = read_json(req).await?;
    let id = body.id.trim();
    if id.is_empty() || id.len() > 128 {
        return Err(ErrorCode::InvalidRequest.into());
    }
    let clip = |s: Option<String>, n: usize| {
        s.map(|v| v.trim().chars().take(n).collect::<String>())
            .filter(|v| !v.is_empty())
    };
    let name = clip(body.name, 100);
    let email = clip(body.email, 254);
    let site = site_or_error(sites::by_id(&db(ctx)?, &site_id, ctx.now).await, ctx).await?;
    let verified = match &body.hash {
        Some(hash) => sites::current_identity_secret(&db(ctx)?, &site_id)
            .await
            .map_err(d1_failed(ctx))?
            .is_some_and(|secret| identity_verified(&secret, id, hash)),
        None => false,
    };
    let now = JsValue::from_f64(ctx.now as f64);
    let statement = db(ctx)?
        .prepare(
            "INSERT INTO visitors (id, site_id, created_at, last_seen_at, external_id, name, email, identity_verified)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, external_id = excluded.external_id,
               name = excluded.name, email = excluded.email, identity_verified = excluded.identity_verified",
        )
        .bind(&[
            visitor.as_str().into(),
            site.id.as_str().into(),
            now,
            id.into(),
            text_or_null(name),
            text_or_null(email),
            JsValue::from(u8::from(verified)),
        ])
        .map_err(bind_err)?;
    run(ctx, vec![statement]).await?;
    Log::info("visitor_identified")
        .site(&site.id)
        .trace(&ctx.trace)
        .field("verified", verified)
        .emit();
    ok_json(&serde_json::json!({ "verified": verified }), 200)
}

/// `POST /api/v1/visitor/attributes {"attributes": {key: value}}`: facts the host site knows
/// about its visitor (plan, order count…), merged into what is stored; `null` removes a key.
/// What is stored is bounded (`MAX_VISITOR_ATTRIBUTES` keys, `MAX_VISITOR_ATTRIBUTES_BYTES`):
/// a merge past either is refused whole, one that does not grow what is stored always passes.
pub async fn attributes(req: &mut Request, ctx: &Ctx) -> ApiResult {
    use parley_core::limits::{
        MAX_VISITOR_ATTRIBUTES, MAX_VISITOR_ATTRIBUTES_BYTES, MAX_VISITOR_ATTRIBUTES_PER_REQUEST,
    };
    #[derive(Deserialize)]
    struct Body {
        attributes: serde_json::Map<String, serde_json::Value>,
    }
    from_row! {
        struct Stored {}
    }
    let (visitor, site) = visitor_of(ctx).await?;
    let body: Body = read_json(req).await?;
    if body.attributes.len() > MAX_VISITOR_ATTRIBUTES_PER_REQUEST {
        return Err(ErrorCode::InvalidRequest.into());
    }
    let mut patch = serde_json::Map::new();
    for (key, value) in body.attributes {
        if !parley_core::site_settings::is_field_name(&key) {
            return Err(ErrorCode::InvalidRequest.into());
        }
        let value = match value {
            serde_json::Value::String(s) => {
                serde_json::Value::String(s.chars().take(500).collect())
            }
            v @ (serde_json::Value::Number(_)
            | serde_json::Value::Bool(_)
            | serde_json::Value::Null) => v,
            _ => return Err(ErrorCode::InvalidRequest.into()),
        };
        patch.insert(key, value);
    }
    let patch = serde_json::Value::Object(patch).to_string();
    // A visitor's first attributes are the patch itself.
    if patch.len() > MAX_VISITOR_ATTRIBUTES_BYTES {
        return Err(ErrorCode::TooManyAttributes.into());
    }
    let now = JsValue::from_f64(ctx.now as f64);
    // The bound is checked in the write itself, so concurrent merges cannot together pass it.
    // A row already past it (stored before the bound) may shrink but never grow.
    let stored = db(ctx)?
        .prepare(
            "INSERT INTO visitors (id, site_id, created_at, last_seen_at, attributes)
             VALUES (?1, ?2, ?3, ?3, json_patch('{}', ?4))
             ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at,
               attributes = json_patch(visitors.attributes, ?4)
             WHERE (SELECT COUNT(*) FROM json_each(json_patch(visitors.attributes, ?4)))
                     <= MAX(?5, (SELECT COUNT(*) FROM json_each(visitors.attributes)))
               AND length(CAST(json_patch(visitors.attributes, ?4) AS BLOB))
                     <= MAX(?6, length(CAST(visitors.attributes AS BLOB)))
             RETURNING 1 AS stored",
        )
        .bind(&[
            visitor.as_str().into(),
            site.as_str().into(),
            now,
            patch.into(),
            JsValue::from_f64(MAX_VISITOR_ATTRIBUTES as f64),
            JsValue::from_f64(MAX_VISITOR_ATTRIBUTES_BYTES as f64),
        ])
        .map_err(bind_err)?
        .all_rows::<Stored>()
        .await
        .map_err(d1_failed(ctx))?;
    if stored.is_empty() {
        return Err(ErrorCode::TooManyAttributes.into());
    }
    no_content().map_err(|_| ErrorCode::Internal.into())
}
