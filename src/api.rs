//! The Worker's HTTP surface: routing, authentication, validation, and forwarding to the
//! Durable Objects. Stateless; every decision about a conversation is made by its object.

use parley_core::i18n::Lang;
use parley_core::ids::{self, IdKind};
use parley_core::password::{StoredHash, HASH_LEN, PBKDF2_ITERATIONS};
use parley_core::token::{self, AgentRole, Principal};
use parley_core::ErrorCode;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{Context, Env, Headers, Method, Request, RequestInit, Response, Result};

use crate::config::Config;
use crate::credentials;
use crate::http::{
    json_response, json_text_response, read_json, request_lang, ApiError, ApiResult, JsonBody,
};
use crate::internal::{
    CreateConversation, Operation, OperationRequest, INTERNAL_BASE, IP_HEADER, LANG_HEADER,
    PRINCIPAL_HEADER, SITE_HEADER, TRACE_HEADER,
};
use crate::limiter_object::{Limit, TakeAnswer, TakeRequest};
use crate::log::Log;
use crate::platform::{now_ms, pbkdf2_sha256, random_16};
use crate::query::from_query;
use crate::row::{from_row, FromRow};
use crate::sites::{self, Lookup, Site};
use crate::sql_text::D1Rows;
use crate::{admin, api_keys, console, erasure, export, files, reports, search, widget};

/// What every handler needs to know about the request it serves.
pub struct Ctx {
    pub env: Env,
    pub worker_ctx: Context,
    pub config: Config,
    pub lang: Lang,
    pub trace: String,
    pub ip: String,
    pub origin: Option<String>,
    /// The origin this Worker is served from; the console and demo pages live here.
    pub own_origin: String,
    pub now: i64,
    /// Who is calling, worked out once before routing (see `credentials::identify`).
    pub caller: Result<Principal, ApiError>,
}

pub async fn handle(mut req: Request, env: Env, worker_ctx: Context) -> Result<Response> {
    let (own_origin, path) =
        crate::http::with_url(&req, |url| (url.origin.to_string(), url.path.to_string()));
    if !path.starts_with("/api/") && path != "/healthz" {
        let response = env.assets("ASSETS")?.fetch_request(req).await?;
        // The widget script is embedded by other sites: only the pages get page headers.
        if path.starts_with("/console") || path.starts_with("/demo") || path == "/" {
            let mut headers = mutable_headers(&response)?;
            add_page_headers(&mut headers, &path)?;
            return Ok(response.with_headers(headers));
        }
        return Ok(response);
    }
    let trace = header(&req, "cf-ray").unwrap_or_else(|| {
        random_16()
            .map(|b| ids::mint(IdKind::Trace, &b))
            .unwrap_or_default()
    });
    let mut ctx = Ctx {
        config: Config::from_env(&env),
        env,
        worker_ctx,
        lang: request_lang(&req),
        ip: header(&req, "cf-connecting-ip").unwrap_or_else(|| "unknown".into()),
        origin: header(&req, "origin"),
        own_origin,
        now: now_ms(),
        trace,
        caller: Err(ErrorCode::TokenMissing.into()),
    };
    ctx.caller = crate::credentials::identify(&req, &ctx).await;
    let method = req.method();
    // For a preflight, the request it asks leave for.
    let asked = if method == Method::Options {
        header(&req, "access-control-request-method")
    } else {
        Some(method.to_string())
    };
    let widget_start = asked.is_some_and(|asked| starts_widget(&asked, &path));
    let standing_before = if widget_start {
        Some(origin_standing(&ctx).await)
    } else {
        None
    };
    let result = if standing_before == Some(Standing::Unlisted) && method != Method::Options {
        // No site allows this origin, so any site would refuse it: refused before the body, the
        // rate limits or the site key are looked at, so the answer tells nothing about them.
        Err(ErrorCode::OriginNotAllowed.into())
    } else {
        route(&mut req, &ctx, &method, &path).await
    };
    // Whatever the handler did not read is read now, so the connection stays usable.
    drain_unread_body(&mut req).await;
    let mut refused = None;
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            refused = Some(error.code);
            error.response(ctx.lang)?
        }
    };
    // One line per request: what operators count, time and alert on.
    let status = response.status_code();
    let failed = refused.is_some_and(|code| code.http_status() >= 500);
    if failed || crate::log::info_written() {
        let log = if failed {
            Log::error("request")
        } else {
            Log::info("request")
        };
        let mut log = log
            .trace(&ctx.trace)
            .field("method", method.to_string())
            .field("route", route_name(&path))
            .field("status", status)
            .field("duration_ms", now_ms() - ctx.now);
        if let Some(code) = refused {
            log = log.error_class(code.as_str()).field("fault", code.fault());
        }
        log.emit();
    }
    if response.status_code() == 101 {
        return Ok(response);
    }
    let standing = match standing_before {
        Some(standing) => standing,
        None => origin_standing(&ctx).await,
    };
    let readable_refusal =
        widget_start && (method == Method::Options || refused == Some(ErrorCode::OriginNotAllowed));
    let mut headers = mutable_headers(&response)?;
    add_cors(&mut headers, &ctx, standing, readable_refusal)?;
    Ok(response.with_headers(headers))
}

/// A writable copy of a response's headers: those of fetched responses (assets, the objects)
/// are immutable.
fn mutable_headers(response: &Response) -> Result<Headers> {
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        headers.append(&name, &value)?;
    }
    Ok(headers)
}

/// Reads a small body the handler left unread: the runtime may otherwise reset the keep-alive
/// connection, failing the client's next request on it.
async fn drain_unread_body(req: &mut Request) {
    let small = header(req, "content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|n| n > 0 && n <= parley_core::limits::MAX_FRAME_BYTES);
    if small && !req.inner().body_used() {
        let _ = req.bytes().await;
    }
}

pub(crate) fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
}

/// A log-safe name for a path: ids replaced, so logs group by route and leak nothing.
fn route_name(path: &str) -> String {
    path.split('/')
        .map(|part| {
            // Ids (conversation, visitor, site) become placeholders: logs group by route and
            // carry no identifiers of people.
            let id_like = part.len() > 20 && part.as_bytes().get(1) == Some(&b'_');
            if id_like {
                ":id"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The requests a widget makes before it has a visitor session (`widget/src/loader.ts`): its
/// configuration and the session itself. Everything else it asks carries the session.
const WIDGET_START: [(&str, &str); 2] = [
    ("GET", "api/v1/widget/config"),
    ("POST", "api/v1/visitor/session"),
];

/// Whether `method` on `path` is one of the requests a widget starts with (paths as routed).
fn starts_widget(method: &str, path: &str) -> bool {
    WIDGET_START.contains(&(method, path.trim_matches('/')))
}

/// How the request's origin stands with the deployment's sites, for CORS.
#[derive(Clone, Copy, PartialEq)]
enum Standing {
    /// No `Origin` (not a browser page) or the Worker's own: not a cross-origin request.
    Own,
    /// Some site allows it.
    Listed,
    /// No site allows it.
    Unlisted,
    /// D1 could not say: no CORS answer, and nothing is refused on this account.
    Unknown,
}

async fn origin_standing(ctx: &Ctx) -> Standing {
    let Some(origin) = &ctx.origin else {
        return Standing::Own;
    };
    if *origin == ctx.own_origin {
        return Standing::Own;
    }
    let Ok(db) = ctx.env.d1("DB") else {
        return Standing::Unknown;
    };
    match sites::origin_allowed_anywhere(&db, origin, ctx.now).await {
        Some(true) => Standing::Listed,
        Some(false) => Standing::Unlisted,
        None => Standing::Unknown,
    }
}

/// Exact CORS: the API answers cross-origin to origins some site allows (the widget's hosts);
/// the Worker's own pages are same-origin. Which origin may act for which site is checked
/// again per request (sessions, sockets).
///
/// An origin that no site allows may read one thing: the refusal of a widget's first requests
/// ([`WIDGET_START`], and their preflights), so that a widget embedded where its site's owner
/// forgot to allow it says why instead of retrying a network error for ever. What a page there
/// (an attacker's, say) gains is that refusal and nothing more: `handle` refuses those requests
/// for such an origin before reading anything, so the answer is `origin_not_allowed` whatever
/// site key or visitor token it sends, which it could tell already (no other answer is readable
/// to it). No credentials are allowed, so no cookie rides along. A success never becomes
/// readable: no site would give one (an empty allow-list admits no page but the Worker's own),
/// and only `origin_not_allowed` gets the header.
fn add_cors(
    headers: &mut Headers,
    ctx: &Ctx,
    standing: Standing,
    readable_refusal: bool,
) -> Result<()> {
    let Some(origin) = &ctx.origin else {
        return Ok(());
    };
    headers.set("vary", "Origin")?;
    match standing {
        Standing::Listed => {
            headers.set("access-control-allow-origin", origin)?;
            headers.set("access-control-expose-headers", "retry-after")?;
        }
        Standing::Unlisted if readable_refusal => {
            headers.set("access-control-allow-origin", origin)?;
        }
        Standing::Own | Standing::Unlisted | Standing::Unknown => {}
    }
    Ok(())
}

/// Security headers for the Worker's own pages (console, demo): no framing, a strict CSP.
fn add_page_headers(headers: &mut Headers, path: &str) -> Result<()> {
    headers.set("x-frame-options", "DENY")?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("x-content-type-options", "nosniff")?;
    if path.starts_with("/console") {
        headers.set(
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        )?;
    }
    Ok(())
}

async fn route(req: &mut Request, ctx: &Ctx, method: &Method, path: &str) -> ApiResult {
    if *method == Method::Options {
        // Granted only together with the allow-origin header that add_cors adds (or not).
        return preflight();
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::Get, ["healthz"]) => ok_json(&serde_json::json!({ "ok": true }), 200),
        (Method::Get, ["api", "v1", "openapi.json"]) => {
            json_text_response(crate::openapi::DOCUMENT, 200)
                .map_err(|_| ErrorCode::Internal.into())
        }
        (Method::Post, ["api", "v1", "visitor", "session"]) => visitor_session(req, ctx).await,
        (Method::Post, ["api", "v1", "agent", "login"]) => agent_login(req, ctx).await,
        (Method::Post, ["api", "v1", "agent", "logout"]) => agent_logout(ctx).await,
        (Method::Post, ["api", "v1", "agent", "socket-token"]) => socket_token(ctx).await,
        (_, ["api", "v1", "api-keys", rest @ ..]) => api_keys::route(req, ctx, method, rest).await,
        (Method::Get, ["api", "v1", "me"]) => {
            let principal = authenticate(ctx)?;
            let permissions = serde_json::json!({
                "view_personal_data": principal.sees_pii(),
                "export": principal.can_export(),
            });
            ok_json(
                &serde_json::json!({ "principal": principal, "permissions": permissions }),
                200,
            )
        }
        (Method::Get, ["api", "v1", "widget", "config"]) => widget::config(req, ctx).await,
        (Method::Get, ["api", "v1", "sites"]) => console::sites(ctx).await,
        (Method::Get, ["api", "v1", "export", file]) => export::export(req, ctx, file).await,
        (Method::Get, ["api", "v1", "search"]) => search::search(req, ctx).await,
        (Method::Get, ["api", "v1", "reports"]) => reports::report(req, ctx).await,
        (_, ["api", "v1", "agents", rest @ ..]) => admin::agents(req, ctx, method, rest).await,
        (_, ["api", "v1", "sites", site, "webhooks", rest @ ..]) => {
            admin::webhooks(req, ctx, method, site, rest).await
        }
        (_, ["api", "v1", "sites", site, rest @ ..]) => {
            admin::site(req, ctx, method, site, rest).await
        }
        (Method::Get, ["api", "v1", "departments"]) => admin::departments(ctx).await,
        (Method::Get, ["api", "v1", "console", "ws"]) => console::open_console(req, ctx).await,
        (Method::Get, ["api", "v1", "quick-replies"]) => console::quick_replies(ctx).await,
        (Method::Post, ["api", "v1", "quick-replies"]) => console::add_quick_reply(req, ctx).await,
        (Method::Patch | Method::Delete, ["api", "v1", "quick-replies", id]) => {
            console::change_quick_reply(req, ctx, method, id).await
        }
        (Method::Get, ["api", "v1", "visitors", visitor]) => console::visitor(ctx, visitor).await,
        (Method::Delete, ["api", "v1", "visitors", visitor]) => {
            erasure::erase_visitor(ctx, visitor).await
        }
        (Method::Post, ["api", "v1", "maintenance", "purge"]) => erasure::purge_now(ctx).await,
        (Method::Post, ["api", "v1", "visitor", "context"]) => widget::context(req, ctx).await,
        (Method::Post, ["api", "v1", "visitor", "identify"]) => widget::identify(req, ctx).await,
        (Method::Post, ["api", "v1", "visitor", "attributes"]) => {
            widget::attributes(req, ctx).await
        }
        (Method::Post, ["api", "v1", "conversations"]) => create_conversation(req, ctx).await,
        (Method::Get, ["api", "v1", "conversations"]) => list_conversations(req, ctx).await,
        (_, ["api", "v1", "conversations", id, rest @ ..]) => {
            if !ids::is_valid(IdKind::Conversation, id) {
                return Err(ErrorCode::NotFound.into());
            }
            conversation_route(req, ctx, method, id, rest).await
        }
        (_, ["api", ..]) | (_, ["healthz"]) => {
            let known = matches!(
                segments.as_slice(),
                ["api", "v1", "visitor", "session"]
                    | ["api", "v1", "visitor", "context"]
                    | ["api", "v1", "visitor", "identify"]
                    | ["api", "v1", "visitor", "attributes"]
                    | ["api", "v1", "widget", "config"]
                    | ["api", "v1", "sites"]
                    | ["api", "v1", "openapi.json"]
                    | ["api", "v1", "departments"]
                    | ["api", "v1", "search"]
                    | ["api", "v1", "reports"]
                    | ["api", "v1", "console", "ws"]
                    | ["api", "v1", "quick-replies"]
                    | ["api", "v1", "agent", "login"]
                    | ["api", "v1", "agent", "logout"]
                    | ["api", "v1", "agent", "socket-token"]
                    | ["api", "v1", "me"]
                    | ["api", "v1", "conversations"]
                    | ["api", "v1", "quick-replies", _]
                    | ["api", "v1", "visitors", _]
                    | ["api", "v1", "export", _]
                    | ["api", "v1", "maintenance", "purge"]
                    | ["healthz"]
            );
            Err(if known {
                ErrorCode::MethodNotAllowed
            } else {
                ErrorCode::NotFound
            }
            .into())
        }
        _ => Err(ErrorCode::NotFound.into()),
    }
}

fn preflight() -> ApiResult {
    let headers = Headers::new();
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|_| ApiError::from(ErrorCode::Internal))
    };
    set(
        "access-control-allow-methods",
        "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    )?;
    set(
        "access-control-allow-headers",
        "authorization, content-type",
    )?;
    set("access-control-max-age", "600")?;
    Ok(Response::empty()
        .map_err(|_| ApiError::from(ErrorCode::Internal))?
        .with_status(204)
        .with_headers(headers))
}

pub(crate) fn ok_json<T: serde::Serialize>(value: &T, status: u16) -> ApiResult {
    json_response(value, status).map_err(|_| ErrorCode::Internal.into())
}

pub(crate) fn internal<'a, E: std::fmt::Display>(
    ctx: &'a Ctx,
    what: &str,
) -> impl FnOnce(E) -> ApiError + 'a {
    let what = what.to_string();
    move |e| {
        Log::error("internal_error")
            .trace(&ctx.trace)
            .error_class(&what)
            .field("detail", e.to_string())
            .emit();
        ErrorCode::Internal.into()
    }
}

/// The verified principal of the request (from its bearer token, API key or session cookie).
pub(crate) fn authenticate(ctx: &Ctx) -> Result<Principal, ApiError> {
    ctx.caller.clone()
}

/// Takes a token from the limiter object for `key`; fails open if the limiter is unreachable.
pub(crate) async fn rate_limit(ctx: &Ctx, key: &str, limit: Limit) -> Result<(), ApiError> {
    let answer = async {
        let stub = ctx
            .env
            .durable_object("LIMITER")?
            .id_from_name(key)?
            .get_stub()?;
        let body = serde_json::to_string(&TakeRequest { limit })?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        let req = Request::new_with_init(&format!("{INTERNAL_BASE}/take"), &init)?;
        stub.fetch_with_request(req)
            .await?
            .json_body::<TakeAnswer>()
            .await
    }
    .await;
    match answer {
        Ok(answer) if !answer.allowed => Err(ApiError::rate_limited(answer.retry_after_ms)),
        Ok(_) => Ok(()),
        Err(e) => {
            Log::warn("rate_limiter_unavailable")
                .trace(&ctx.trace)
                .error_class("limiter")
                .field("detail", e.to_string())
                .emit();
            Ok(())
        }
    }
}

pub(crate) fn db(ctx: &Ctx) -> Result<worker::D1Database, ApiError> {
    ctx.env.d1("DB").map_err(internal(ctx, "d1_binding"))
}

/// Finishes a bound D1 statement on a request path: any D1 fault (binding or execution)
/// becomes `storage_unavailable` through [`d1_failed`].
pub(crate) trait D1Statement {
    /// Runs a read and decodes its rows.
    async fn rows<T: FromRow>(self, ctx: &Ctx) -> Result<Vec<T>, ApiError>;
    /// Runs a write.
    async fn execute(self, ctx: &Ctx) -> Result<(), ApiError>;
    /// Runs a write and counts the rows it changed (zero: its condition held nowhere).
    async fn changes(self, ctx: &Ctx) -> Result<usize, ApiError>;
}

impl D1Statement for Result<worker::D1PreparedStatement> {
    async fn rows<T: FromRow>(self, ctx: &Ctx) -> Result<Vec<T>, ApiError> {
        self.map_err(d1_failed(ctx))?
            .all_rows::<T>()
            .await
            .map_err(d1_failed(ctx))
    }

    async fn execute(self, ctx: &Ctx) -> Result<(), ApiError> {
        self.map_err(d1_failed(ctx))?
            .run()
            .await
            .map(|_| ())
            .map_err(d1_failed(ctx))
    }

    async fn changes(self, ctx: &Ctx) -> Result<usize, ApiError> {
        let result = self
            .map_err(d1_failed(ctx))?
            .run()
            .await
            .map_err(d1_failed(ctx))?;
        Ok(result
            .meta()
            .ok()
            .flatten()
            .and_then(|m| m.changes)
            .unwrap_or(0))
    }
}

/// Maps a D1 failure to `storage_unavailable`, logged as a storage fault.
pub(crate) fn d1_failed<E: std::fmt::Display>(ctx: &Ctx) -> impl FnOnce(E) -> ApiError + '_ {
    move |e| {
        Log::error("d1_unavailable")
            .trace(&ctx.trace)
            .error_class("storage_unavailable")
            .field("detail", e.to_string())
            .emit();
        ErrorCode::StorageUnavailable.into()
    }
}

/// Runs an operation on a conversation's object as `principal` (which it checks for access).
pub(crate) async fn operate(
    ctx: &Ctx,
    id: &str,
    principal: &Principal,
    operation: Operation,
) -> ApiResult {
    let body = serde_json::to_string(&OperationRequest {
        principal: principal.clone(),
        operation,
    })
    .map_err(internal(ctx, "json"))?;
    forward(
        ctx,
        id,
        "/operation",
        Method::Post,
        Some(body),
        Headers::new(),
    )
    .await
}

pub(crate) async fn site_or_error(lookup: Lookup, ctx: &Ctx) -> Result<Site, ApiError> {
    match lookup {
        Lookup::Found(site) => Ok(*site),
        Lookup::Unknown => Err(ErrorCode::UnknownSite.into()),
        Lookup::Unavailable(detail) => Err(d1_failed(ctx)(detail)),
    }
}

/// Browsers send Origin on cross-origin requests and on every WebSocket; the Worker's own
/// pages and non-browser clients (no Origin) pass, other pages only if the site allows them.
pub(crate) fn origin_allowed(ctx: &Ctx, site: Option<&Site>) -> bool {
    match &ctx.origin {
        None => true,
        Some(origin) if *origin == ctx.own_origin => true,
        Some(origin) => site.is_some_and(|s| s.allows_origin(origin)),
    }
}

pub(crate) fn mint(kind: IdKind, ctx: &Ctx) -> Result<String, ApiError> {
    random_16()
        .map(|bytes| ids::mint(kind, &bytes))
        .map_err(internal(ctx, "random"))
}

async fn visitor_session(req: &mut Request, ctx: &Ctx) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        site_key: String,
        token: Option<String>,
    }
    let body: Body = read_json(req).await?;
    rate_limit(ctx, &format!("create:ip:{}", ctx.ip), Limit::IpCreations).await?;
    let site = site_or_error(sites::by_key(&db(ctx)?, &body.site_key, ctx.now).await, ctx).await?;
    if !origin_allowed(ctx, Some(&site)) {
        return Err(ErrorCode::OriginNotAllowed.into());
    }
    // A returning visitor keeps their id when their token is still valid for this site.
    let returning = body
        .token
        .as_deref()
        .and_then(|t| token::verify(ctx.config.token_secret.as_bytes(), t, ctx.now).ok())
        .and_then(|claims| match claims.principal {
            Principal::Visitor { id, site: s } if s == site.id => Some(id),
            _ => None,
        });
    // An erased visitor's token does not bring the identity back: they start as someone new.
    // A D1 that cannot answer does not keep a returning visitor from chatting.
    let returning = match returning {
        Some(id) if matches!(crate::erasure::is_erased_visitor(ctx, &id).await, Ok(true)) => None,
        other => other,
    };
    let is_new = returning.is_none();
    let visitor_id = match returning {
        Some(id) => id,
        None => mint(IdKind::Visitor, ctx)?,
    };
    let principal = Principal::Visitor {
        id: visitor_id.clone(),
        site: site.id.clone(),
    };
    let ttl = ctx.config.visitor_token_ttl_ms;
    let token = token::sign(ctx.config.token_secret.as_bytes(), principal, ctx.now, ttl)
        .map_err(internal(ctx, "token_secret"))?;
    record_visitor(ctx, &visitor_id, &site.id);
    Log::info("visitor_session")
        .site(&site.id)
        .trace(&ctx.trace)
        .field("new_visitor", is_new)
        .emit();
    ok_json(
        &serde_json::json!({ "visitor_id": visitor_id, "token": token, "expires_at": ctx.now + ttl }),
        200,
    )
}

/// Records the visitor in D1 after answering: analytics, never on the chat path.
fn record_visitor(ctx: &Ctx, visitor_id: &str, site_id: &str) {
    let Ok(db) = ctx.env.d1("DB") else { return };
    let now = JsValue::from_f64(ctx.now as f64);
    let statement = db
        .prepare(
            "INSERT INTO visitors (id, site_id, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at",
        )
        .bind(&[visitor_id.into(), site_id.into(), now]);
    let trace = ctx.trace.clone();
    ctx.worker_ctx.wait_until(async move {
        let result = match statement {
            Ok(s) => s.run().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            Log::warn("visitor_record_failed")
                .trace(&trace)
                .error_class("d1_unavailable")
                .field("detail", e.to_string())
                .emit();
        }
    });
}

async fn agent_login(req: &mut Request, ctx: &Ctx) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        email: String,
        password: String,
        /// The console: the session goes in an HttpOnly cookie, not in the answer.
        #[serde(default)]
        cookie: bool,
    }
    from_row! {
        struct AgentRow {
            id: String,
            team_id: String,
            email: String,
            name: String,
            role: String,
            password_hash: String,
            password_salt: String,
            password_iterations: i64,
            disabled: i64,
            permissions: String,
        }
    }
    let body: Body = read_json(req).await?;
    let email = body.email.trim().to_lowercase();
    if email.is_empty() || email.len() > 254 || body.password.len() > 1024 {
        return Err(ErrorCode::InvalidCredentials.into());
    }
    rate_limit(ctx, &format!("login:ip:{}", ctx.ip), Limit::Logins).await?;
    rate_limit(ctx, &format!("login:email:{email}"), Limit::Logins).await?;
    let row = db(ctx)?
        .prepare("SELECT * FROM agents WHERE email = ?1")
        .bind(&[email.as_str().into()])
        .map_err(internal(ctx, "d1_bind"))?
        .first_row::<AgentRow>()
        .await
        .map_err(d1_failed(ctx))?;
    let stored = row.as_ref().filter(|r| r.disabled == 0).and_then(|r| {
        StoredHash::decode(&r.password_hash, &r.password_salt, r.password_iterations)
    });
    // Derive a key even for unknown accounts so timing does not reveal which e-mails exist.
    let (salt, iterations) = match &stored {
        Some(s) => (s.salt.clone(), s.iterations),
        None => (vec![0u8; 16], PBKDF2_ITERATIONS),
    };
    let derived = pbkdf2_sha256(&body.password, &salt, iterations, HASH_LEN)
        .await
        .map_err(internal(ctx, "webcrypto"))?;
    let (Some(row), Some(stored)) = (row, stored) else {
        Log::info("login_failed")
            .trace(&ctx.trace)
            .error_class("invalid_credentials")
            .emit();
        return Err(ErrorCode::InvalidCredentials.into());
    };
    if !stored.matches(&derived) {
        // A wrong password for a real account is the team's business: it goes in its audit log.
        crate::console::audit(
            ctx,
            &row.team_id,
            &row.id,
            "login_failed",
            &row.id,
            serde_json::json!({}),
        )
        .await?;
        Log::info("login_failed")
            .trace(&ctx.trace)
            .error_class("invalid_credentials")
            .emit();
        return Err(ErrorCode::InvalidCredentials.into());
    }
    let role = AgentRole::parse(&row.role).ok_or_else(|| ApiError::from(ErrorCode::Internal))?;
    let permissions: Vec<String> =
        parley_core::json::from_str(&row.permissions).unwrap_or_default();
    let sid = mint(IdKind::Trace, ctx)?.replacen("r_", "sn_", 1);
    crate::sessions::start(
        &ctx.env,
        &sid,
        &row.id,
        &row.team_id,
        ctx.now,
        ctx.config.agent_token_ttl_ms,
    )
    .await
    .map_err(d1_failed(ctx))?;
    let principal = Principal::Agent {
        id: row.id.clone(),
        team: row.team_id.clone(),
        name: row.name.clone(),
        role,
        view_pii: permissions.iter().any(|p| p == "view_personal_data"),
        export: permissions.iter().any(|p| p == "export"),
        sid: Some(sid),
    };
    let ttl = ctx.config.agent_token_ttl_ms;
    let token = token::sign(ctx.config.token_secret.as_bytes(), principal, ctx.now, ttl)
        .map_err(internal(ctx, "token_secret"))?;
    Log::info("login")
        .trace(&ctx.trace)
        .field("agent", row.id.as_str())
        .emit();
    crate::console::audit(
        ctx,
        &row.team_id,
        &row.id,
        "login",
        &row.id,
        serde_json::json!({}),
    )
    .await?;
    let agent = serde_json::json!({ "id": row.id, "name": row.name, "email": row.email, "role": row.role, "team": row.team_id });
    if body.cookie {
        let response = ok_json(
            &serde_json::json!({ "agent": agent, "expires_at": ctx.now + ttl }),
            200,
        )?;
        return with_cookie(response, &credentials::session_cookie(&token, ttl), ctx);
    }
    ok_json(
        &serde_json::json!({ "agent": agent, "token": token, "expires_at": ctx.now + ttl }),
        200,
    )
}

fn with_cookie(response: Response, cookie: &str, ctx: &Ctx) -> ApiResult {
    let headers = mutable_headers(&response).map_err(internal(ctx, "headers"))?;
    headers
        .append("set-cookie", cookie)
        .map_err(internal(ctx, "headers"))?;
    Ok(response.with_headers(headers))
}

/// How long a socket token lives: long enough to open a socket, useless soon after.
const SOCKET_TOKEN_TTL_MS: i64 = 120_000;

/// `POST /api/v1/agent/socket-token`: a short-lived token of the caller's session for the
/// `hello` frame of a socket (the console's session cookie never reaches script).
async fn socket_token(ctx: &Ctx) -> ApiResult {
    let principal = authenticate(ctx)?;
    let Principal::Agent { sid: Some(_), .. } = &principal else {
        return Err(ErrorCode::Forbidden.into());
    };
    let token = token::sign(
        ctx.config.token_secret.as_bytes(),
        principal,
        ctx.now,
        SOCKET_TOKEN_TTL_MS,
    )
    .map_err(internal(ctx, "token_secret"))?;
    ok_json(
        &serde_json::json!({ "token": token, "expires_at": ctx.now + SOCKET_TOKEN_TTL_MS }),
        200,
    )
}

/// `POST /api/v1/agent/logout`: ends the session; its console sockets are closed at once, its
/// conversation sockets refuse their next frame, and the token stops working everywhere.
async fn agent_logout(ctx: &Ctx) -> ApiResult {
    let principal = authenticate(ctx)?;
    let (Principal::Agent { id, team, .. }, Some(sid)) = (&principal, principal.session()) else {
        return Err(ErrorCode::Forbidden.into());
    };
    crate::sessions::end(&ctx.env, sid, ctx.now)
        .await
        .map_err(d1_failed(ctx))?;
    crate::console::close_session_sockets(ctx, team, sid).await;
    Log::info("logout")
        .trace(&ctx.trace)
        .field("agent", id.as_str())
        .emit();
    let response = crate::http::no_content().map_err(internal(ctx, "response"))?;
    with_cookie(response, &credentials::cleared_session_cookie(), ctx)
}

async fn create_conversation(req: &mut Request, ctx: &Ctx) -> ApiResult {
    #[derive(Deserialize, Default)]
    struct Body {
        form: Option<String>,
        #[serde(default)]
        fields: std::collections::BTreeMap<String, String>,
        message: Option<String>,
        /// Where the visitor is, for routing: the page and a department asked for by the embed.
        page_url: Option<String>,
        department: Option<String>,
        language: Option<String>,
        /// Makes creation idempotent: a retry with the same id gets the same conversation.
        client_req_id: Option<String>,
    }
    let Principal::Visitor { id: visitor, site } = authenticate(ctx)? else {
        return Err(ErrorCode::Forbidden.into());
    };
    // The token of a visitor erased since: the widget renews it (as someone new) and retries.
    // One indexed D1 read when a conversation starts and one once it is listed (not per
    // message); a D1 that cannot answer does not refuse the conversation.
    if matches!(
        crate::erasure::is_erased_visitor(ctx, &visitor).await,
        Ok(true)
    ) {
        return Err(ErrorCode::TokenInvalid.into());
    }
    let body: Body = crate::http::read_optional_json(req).await?;
    if body
        .form
        .as_deref()
        .is_some_and(|f| f != "prechat" && f != "offline")
    {
        return Err(ErrorCode::InvalidRequest.into());
    }
    let fields = parley_core::visitor::clean_fields(body.fields)?;
    let (stated_name, stated_email) = parley_core::visitor::stated_identity(&fields);
    let offline = body.form.as_deref() == Some("offline");
    if let Some(text) = &body.message {
        if text.trim().is_empty() {
            return Err(ErrorCode::EmptyMessage.into());
        }
        if text.chars().count() > parley_core::limits::MAX_TEXT_CHARS {
            return Err(ErrorCode::MessageTooLong.into());
        }
    }
    rate_limit(ctx, &format!("create:ip:{}", ctx.ip), Limit::IpCreations).await?;
    let site = site_or_error(sites::by_id(&db(ctx)?, &site, ctx.now).await, ctx).await?;
    if !origin_allowed(ctx, Some(&site)) {
        return Err(ErrorCode::OriginNotAllowed.into());
    }
    let id = match body.client_req_id.as_deref() {
        Some(req_id) if ids::is_valid_client_msg_id(req_id) => {
            // Derived with the server's secret: as unguessable as a random id, yet stable.
            token::derive_id(
                ctx.config.token_secret.as_bytes(),
                &format!("conversation:{visitor}:{req_id}"),
            )
            .map(|bytes| ids::mint(IdKind::Conversation, &bytes))
            .map_err(internal(ctx, "token_secret"))?
        }
        Some(_) => return Err(ErrorCode::InvalidRequest.into()),
        None => mint(IdKind::Conversation, ctx)?,
    };
    let clip = |s: Option<String>, n: usize| s.map(|v| v.chars().take(n).collect::<String>());
    let routing = parley_core::routing::RoutingContext {
        url: clip(body.page_url.clone(), 2048),
        language: clip(body.language.clone(), 35).or_else(|| {
            header(req, "accept-language")
                .map(|l| l.split(',').next().unwrap_or_default().trim().to_string())
        }),
        country: req.cf().and_then(|cf| cf.country()),
        param: clip(body.department.clone(), 64),
    };
    let create = CreateConversation {
        id,
        site: site.id.clone(),
        team: site.team_id.clone(),
        visitor,
        epoch: mint(IdKind::Epoch, ctx)?,
        form: body.form,
        fields,
        message: body.message,
        // Offline-form messages go to people; live chats meet the bot first when there is one.
        bot: !offline
            && crate::automation::load(&ctx.env, &site.id)
                .await
                .bot
                .enabled,
        language: body.language.clone().or_else(|| {
            header(req, "accept-language").map(|l| {
                l.split([',', ';'])
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
        }),
        routing: routing.clone(),
    };
    let payload = serde_json::to_string(&create).map_err(internal(ctx, "json"))?;
    let response = forward(
        ctx,
        &create.id,
        "/create",
        Method::Post,
        Some(payload),
        Headers::new(),
    )
    .await?;
    if response.status_code() == 201 {
        // Checked again as the conversation is listed: an erasure whose mark came after the
        // first check either lists it (the mark came after the row) or is seen here.
        if register_conversation(ctx, &create.id, &site.id, &create.visitor).await {
            // Should this fail, the daily purge takes it: it is listed under an erased visitor.
            crate::erasure::erase_raced(&ctx.env, &create.id, &site.id)
                .await
                .map_err(internal(ctx, "erase_raced"))?;
            return Err(ErrorCode::TokenInvalid.into());
        }
        if stated_name.is_some() || stated_email.is_some() {
            remember_stated_identity(ctx, &create.visitor, &site.id, stated_name, stated_email)
                .await;
        }
    }
    if response.status_code() == 201 && !create.bot {
        // Routing follows creation (once: a repeated creation answers 200; with a bot, at the
        // hand-off); if the site's object is unreachable the conversation still exists and
        // agents find it in the team list.
        let request = crate::site_object::SiteRequest::NewConversation {
            conversation: create.id.clone(),
            context: routing,
        };
        if let Err(e) = crate::site_object::send(&ctx.env, &site.id, &request).await {
            Log::error("routing_failed")
                .site(&site.id)
                .conversation(&create.id)
                .trace(&ctx.trace)
                .error_class("site_unavailable")
                .field("detail", e.to_string())
                .emit();
        }
    }
    Ok(response)
}

/// Lists a new conversation in D1 at once, so erasing its visitor finds it even before the
/// object's mirror has run, and answers whether the visitor has been erased meanwhile: one D1
/// batch (one transaction) writes the row and reads the erasure's mark after it. The mirror
/// fills in the rest (and the object's own creation time); a D1 failure here loses nothing
/// and finds no erasure: the first check at the start of the creation stands, and a
/// conversation that reaches D1 later under an erased visitor is the daily purge's.
async fn register_conversation(ctx: &Ctx, id: &str, site: &str, visitor: &str) -> bool {
    let now = JsValue::from_f64(ctx.now as f64);
    let registered = async {
        let db = db(ctx)?;
        let list = db
            .prepare(
                "INSERT OR IGNORE INTO conversations (id, site_id, visitor_id, status, created_at, updated_at, last_seq)
                 VALUES (?1, ?2, ?3, 'open', ?4, ?4, 0)",
            )
            .bind(&[id.into(), site.into(), visitor.into(), now])
            .map_err(d1_failed(ctx))?;
        let erased = crate::erasure::erasure_mark(&db, visitor).map_err(d1_failed(ctx))?;
        let results = crate::sql_text::batch(&db, &[list, erased])
            .await
            .map_err(d1_failed(ctx))?;
        crate::erasure::found_mark(&results, 1).map_err(d1_failed(ctx))
    }
    .await;
    match registered {
        Ok(erased) => erased,
        Err(e) => {
            Log::warn("conversation_unlisted")
                .conversation(id)
                .trace(&ctx.trace)
                .error_class(e.code.as_str())
                .emit();
            false
        }
    }
}

/// Keeps the name and address a visitor gave in a form on their record, for agents; never over
/// what the site's server vouched for (`identity_verified`). The record of an erased visitor is
/// not to come back, even if their erasure lands between the creation's check and this write:
/// the write itself looks for the erasure's mark. A D1 failure costs the label, not the chat.
async fn remember_stated_identity(
    ctx: &Ctx,
    visitor: &str,
    site: &str,
    name: Option<String>,
    email: Option<String>,
) {
    let now = JsValue::from_f64(ctx.now as f64);
    let remembered = ctx.env.d1("DB").and_then(|db| {
        db.prepare(
            "INSERT INTO visitors (id, site_id, created_at, last_seen_at, name, email)
             SELECT ?1, ?2, ?3, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM erased_visitors WHERE visitor_id = ?1)
             ON CONFLICT (id) DO UPDATE SET
               name = CASE WHEN visitors.identity_verified = 1 THEN visitors.name ELSE COALESCE(excluded.name, visitors.name) END,
               email = CASE WHEN visitors.identity_verified = 1 THEN visitors.email ELSE COALESCE(excluded.email, visitors.email) END",
        )
        .bind(&[
            visitor.into(),
            site.into(),
            now,
            crate::widget::text_or_null(name),
            crate::widget::text_or_null(email),
        ])
    });
    let result = match remembered {
        Ok(statement) => statement.run().await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        Log::warn("visitor_name_unsaved")
            .site(site)
            .trace(&ctx.trace)
            .error_class("d1_unavailable")
            .field("detail", e.to_string())
            .emit();
    }
}

async fn list_conversations(req: &Request, ctx: &Ctx) -> ApiResult {
    from_query! {
        struct Query {
            limit: Option<u32>,
            before: Option<String>,
        }
    }
    from_row! {
        #[derive(serde::Serialize)]
        struct Row {
            id: String,
            site_id: String,
            visitor_id: String,
            status: String,
            assignee_id: Option<String>,
            created_at: i64,
            updated_at: i64,
            last_seq: i64,
            last_message_at: Option<i64>,
        }
    }
    let principal = authenticate(ctx)?;
    let query: Query = crate::http::query(req)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    // Keyset cursor "<updated_at>:<id>", newest first.
    let (before_at, before_id) = match query.before.as_deref() {
        None => (i64::MAX, String::new()),
        Some(cursor) => {
            let (at, id) = cursor.split_once(':').ok_or(ErrorCode::InvalidRequest)?;
            (
                at.parse::<i64>().map_err(|_| ErrorCode::InvalidRequest)?,
                id.to_string(),
            )
        }
    };
    let (filter, owner) = match &principal {
        Principal::Visitor { id, .. } => ("visitor_id = ?1", id.clone()),
        Principal::Agent { team, .. } => (
            "site_id IN (SELECT id FROM sites WHERE team_id = ?1)",
            team.clone(),
        ),
    };
    let sql = format!(
        "SELECT id, site_id, visitor_id, status, assignee_id, created_at, updated_at, last_seq, last_message_at
         FROM conversations WHERE {filter}
           AND (updated_at < ?2 OR (updated_at = ?2 AND ?3 <> '' AND id < ?3))
         ORDER BY updated_at DESC, id DESC LIMIT ?4"
    );
    let before_at_js = JsValue::from_f64(before_at.min(9_007_199_254_740_991) as f64);
    let rows = db(ctx)?
        .prepare(sql)
        .bind(&[
            owner.into(),
            before_at_js,
            before_id.into(),
            JsValue::from(limit),
        ])
        .rows::<Row>(ctx)
        .await?;
    let next_before = if rows.len() as u32 == limit {
        rows.last().map(|r| format!("{}:{}", r.updated_at, r.id))
    } else {
        None
    };
    ok_json(
        &serde_json::json!({ "conversations": rows, "next_before": next_before }),
        200,
    )
}

async fn conversation_route(
    req: &mut Request,
    ctx: &Ctx,
    method: &Method,
    id: &str,
    rest: &[&str],
) -> ApiResult {
    if let (Method::Get, ["ws"]) = (method, rest) {
        return open_socket(req, ctx, id).await;
    }
    let principal = authenticate(ctx)?;
    let operation = match (method, rest) {
        (Method::Get, []) => Operation::Info,
        (Method::Get, ["events"]) => return poll(req, ctx, id, &principal).await,
        (Method::Get, ["history"]) => {
            from_query! {
                struct Query {
                    before: Option<u64>,
                    limit: Option<u32>,
                }
            }
            let q: Query = crate::http::query(req)?;
            Operation::History {
                before: q.before,
                limit: q.limit,
            }
        }
        (Method::Post, ["messages"]) => {
            #[derive(Deserialize)]
            struct Body {
                client_msg_id: String,
                #[serde(default)]
                text: String,
                #[serde(default)]
                note: bool,
                file: Option<String>,
            }
            let body: Body = read_json(req).await?;
            Operation::Send {
                client_msg_id: body.client_msg_id,
                text: body.text,
                note: body.note,
                file: body.file,
            }
        }
        (Method::Post, ["typing"]) => {
            #[derive(Deserialize)]
            struct Body {
                active: Option<bool>,
            }
            let body: Body = read_json(req).await?;
            Operation::Typing {
                active: body.active.unwrap_or(true),
            }
        }
        (Method::Post, ["read"]) => {
            #[derive(Deserialize)]
            struct Body {
                seq: u64,
            }
            let body: Body = read_json(req).await?;
            Operation::Read { seq: body.seq }
        }
        (Method::Post, ["files"]) => return files::upload(req, ctx, id, &principal).await,
        (Method::Get, ["files", file]) => return files::download(ctx, id, file, &principal).await,
        (Method::Post, ["claim"]) => return console::claim(req, ctx, id, &principal).await,
        (Method::Post, ["transfer"]) => return console::transfer(req, ctx, id, &principal).await,
        (Method::Post, ["reveal"]) => return console::reveal(req, ctx, id, &principal).await,
        (Method::Get, ["tags"]) => return console::tags(ctx, id, &principal).await,
        (Method::Put, ["tags"]) => return console::set_tags(req, ctx, id, &principal).await,
        (Method::Get, ["queue"]) => return console::queue_position(ctx, id, &principal).await,
        (Method::Post, ["rating"]) => {
            #[derive(Deserialize)]
            struct Body {
                score: u8,
                comment: Option<String>,
            }
            let body: Body = read_json(req).await?;
            Operation::Rate {
                score: body.score,
                comment: body.comment,
            }
        }
        (Method::Post, ["handoff"]) => Operation::Handoff,
        (Method::Post, ["close"]) => Operation::Close,
        (Method::Post, ["reopen"]) => Operation::Reopen,
        (Method::Post, ["assign"]) => Operation::Assign,
        (
            _,
            []
            | ["events"]
            | ["history"]
            | ["messages"]
            | ["typing"]
            | ["read"]
            | ["close"]
            | ["claim"]
            | ["handoff"]
            | ["rating"]
            | ["files"]
            | ["transfer"]
            | ["reveal"]
            | ["tags"]
            | ["queue"]
            | ["reopen"]
            | ["assign"]
            | ["files", _]
            | ["ws"],
        ) => {
            return Err(ErrorCode::MethodNotAllowed.into());
        }
        _ => return Err(ErrorCode::NotFound.into()),
    };
    operate(ctx, id, &principal, operation).await
}

async fn open_socket(req: &Request, ctx: &Ctx, id: &str) -> ApiResult {
    let upgrade = header(req, "upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ErrorCode::InvalidRequest.into());
    }
    from_query! {
        struct Query {
            site: Option<String>,
        }
    }
    let query: Query = crate::http::query(req)?;
    let headers = Headers::new();
    let site = match query.site.as_deref() {
        Some(key) => Some(site_or_error(sites::by_key(&db(ctx)?, key, ctx.now).await, ctx).await?),
        None => None,
    };
    // Checked before the upgrade: a page of a foreign origin never gets a socket.
    if !origin_allowed(ctx, site.as_ref()) {
        return Err(ErrorCode::OriginNotAllowed.into());
    }
    if let Some(site) = &site {
        headers
            .set(SITE_HEADER, &site.id)
            .map_err(internal(ctx, "headers"))?;
    }
    headers
        .set("upgrade", "websocket")
        .map_err(internal(ctx, "headers"))?;
    forward(ctx, id, "/ws", Method::Get, None, headers).await
}

async fn poll(req: &Request, ctx: &Ctx, id: &str, principal: &Principal) -> ApiResult {
    from_query! {
        struct Query {
            after: Option<u64>,
            epoch: Option<String>,
            wait: Option<u32>,
        }
    }
    let q: Query = crate::http::query(req)?;
    let mut path = format!(
        "/poll?after={}&wait={}",
        q.after.unwrap_or(0),
        q.wait.unwrap_or(0)
    );
    if let Some(epoch) = q.epoch.filter(|e| ids::is_valid(IdKind::Epoch, e)) {
        path.push_str("&epoch=");
        path.push_str(&epoch);
    } else if crate::http::query_has(req, "epoch") {
        // An epoch that is not even well-formed cannot be the current one.
        path.push_str("&epoch=e_invalid");
    }
    let headers = Headers::new();
    let principal_json = serde_json::to_string(principal).map_err(internal(ctx, "json"))?;
    headers
        .set(PRINCIPAL_HEADER, &principal_json)
        .map_err(internal(ctx, "headers"))?;
    forward(ctx, id, &path, Method::Get, None, headers).await
}

/// Sends an internal request to the conversation's object and relays its answer.
pub(crate) async fn forward(
    ctx: &Ctx,
    id: &str,
    path: &str,
    method: Method,
    body: Option<String>,
    headers: Headers,
) -> ApiResult {
    let set = |k: &str, v: &str| headers.set(k, v).map_err(internal(ctx, "headers"));
    set(IP_HEADER, &ctx.ip)?;
    set(LANG_HEADER, ctx.lang.tag())?;
    set(TRACE_HEADER, &ctx.trace)?;
    if body.is_some() {
        set("content-type", "application/json")?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers.clone());
    if let Some(body) = body {
        init.with_body(Some(JsValue::from_str(&body)));
    }
    let request = Request::new_with_init(&format!("{INTERNAL_BASE}{path}"), &init)
        .map_err(internal(ctx, "request"))?;
    let stub =
        crate::internal::conversation_stub(&ctx.env, id).map_err(internal(ctx, "do_binding"))?;
    stub.fetch_with_request(request).await.map_err(|e| {
        Log::error("conversation_unreachable")
            .conversation(id)
            .trace(&ctx.trace)
            .error_class("storage_unavailable")
            .field("detail", e.to_string())
            .emit();
        ErrorCode::StorageUnavailable.into()
    })
}
