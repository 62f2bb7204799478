//! API keys: made and revoked by a team's owners and admins in the console, used by the
//! team's own servers (a CRM, a bot) with `Authorization: Bearer pk_…`.
//!
//! Lookups are cached per isolate for half a minute, like sessions: a revoked key is refused
//! at once in the isolate that revoked it and everywhere else within that time.

use parley_core::api_key::{self, Scope};
use parley_core::token::{AgentRole, Principal};
use parley_core::ErrorCode;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{Method, Request};

use crate::api::{authenticate, db, internal, ok_json, Ctx, D1Statement};
use crate::console::audit;
use crate::http::{no_content, read_json, ApiError, ApiResult};
use crate::remembered::Remembered;
use crate::row::from_row;

const CACHE_MS: i64 = 30_000;

#[derive(Clone)]
struct CachedKey {
    team: String,
    name: String,
    scopes: Vec<Scope>,
    secret_hash: String,
}

thread_local! {
    static KEYS: Remembered<CachedKey> = Remembered::new(CACHE_MS);
}

from_row! {
    struct KeyRow {
        id: String,
        team_id: String,
        name: String,
        scopes: String,
        secret_hash: String,
        created_by: String,
        created_at: i64,
        last_used_at: Option<i64>,
        revoked_at: Option<i64>,
    }
}

/// Who a request made with `credential` acts as, if the key is live and its scopes allow
/// `method`.
pub async fn principal_for(
    ctx: &Ctx,
    credential: &str,
    method: &Method,
) -> Result<Principal, ApiError> {
    let (id, secret) = api_key::parse(credential).ok_or(ErrorCode::TokenInvalid)?;
    let key = match KEYS.with(|c| c.fresh(id, ctx.now)) {
        Some(key) => key,
        None => {
            let key = load(ctx, id).await?.ok_or(ErrorCode::TokenInvalid)?;
            KEYS.with(|c| c.remember(id, key.clone(), ctx.now));
            key
        }
    };
    if !api_key::secret_matches(secret, &key.secret_hash) {
        return Err(ErrorCode::TokenInvalid.into());
    }
    if !api_key::allows_method(&key.scopes, matches!(method, Method::Get | Method::Head)) {
        return Err(ErrorCode::Forbidden.into());
    }
    Ok(api_key::principal(id, &key.team, &key.name, &key.scopes))
}

/// The live key `id` from D1 (recording its use), or `None` if unknown or revoked.
async fn load(ctx: &Ctx, id: &str) -> Result<Option<CachedKey>, ApiError> {
    let db = db(ctx)?;
    let rows = db
        .prepare("SELECT * FROM api_keys WHERE id = ?1 AND revoked_at IS NULL")
        .bind(&[id.into()])
        .rows::<KeyRow>(ctx)
        .await?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    // Last use, to the half minute: recorded when the cache is refreshed, off the request.
    if let Ok(touch) = db
        .prepare("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
        .bind(&[id.into(), JsValue::from_f64(ctx.now as f64)])
    {
        ctx.worker_ctx.wait_until(async move {
            let _ = touch.run().await;
        });
    }
    Ok(Some(CachedKey {
        team: row.team_id,
        name: row.name,
        scopes: api_key::stored_scopes(&row.scopes),
        secret_hash: row.secret_hash,
    }))
}

fn key_json(row: &KeyRow) -> serde_json::Value {
    let scopes: Vec<&str> = api_key::stored_scopes(&row.scopes)
        .into_iter()
        .map(Scope::as_str)
        .collect();
    serde_json::json!({
        "id": row.id, "name": row.name, "scopes": scopes, "created_by": row.created_by,
        "created_at": row.created_at, "last_used_at": row.last_used_at, "revoked_at": row.revoked_at,
    })
}

/// The caller, if a person who is an owner or admin: keys never make keys.
fn key_admin(ctx: &Ctx) -> Result<(String, String), ApiError> {
    let caller = authenticate(ctx)?;
    let is_key = caller.is_api_key();
    match caller {
        Principal::Agent { id, team, role, .. }
            if matches!(role, AgentRole::Owner | AgentRole::Admin) && !is_key =>
        {
            Ok((id, team))
        }
        _ => Err(ErrorCode::Forbidden.into()),
    }
}

/// `/api/v1/api-keys[/{id}]`: list (GET), make (POST `{"name","scopes"}`, the key is in the
/// answer and nowhere else, ever), revoke (DELETE).
pub async fn route(req: &mut Request, ctx: &Ctx, method: &Method, rest: &[&str]) -> ApiResult {
    let (actor, team) = key_admin(ctx)?;
    let db = db(ctx)?;
    match (method, rest) {
        (Method::Get, []) => {
            let rows = db
                .prepare("SELECT * FROM api_keys WHERE team_id = ?1 ORDER BY created_at DESC")
                .bind(&[team.as_str().into()])
                .rows::<KeyRow>(ctx)
                .await?;
            let keys: Vec<_> = rows.iter().map(key_json).collect();
            ok_json(&serde_json::json!({ "keys": keys }), 200)
        }
        (Method::Post, []) => {
            #[derive(Deserialize)]
            struct Body {
                name: String,
                scopes: Vec<String>,
            }
            let body: Body = read_json(req).await?;
            let (name, scopes) =
                api_key::validate_request(&body.name, &body.scopes).map_err(|e| {
                    ApiError::invalid_field(match e {
                        api_key::KeyRequestError::EmptyName
                        | api_key::KeyRequestError::NameTooLong => "name",
                        api_key::KeyRequestError::NoScopes
                        | api_key::KeyRequestError::UnknownScope(_) => "scopes",
                    })
                })?;
            let id_random = crate::platform::random_16().map_err(internal(ctx, "random"))?;
            let secret_random = crate::platform::random::<32>().map_err(internal(ctx, "random"))?;
            let minted = api_key::mint(&id_random, &secret_random);
            let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            let scopes_json = serde_json::to_string(&names).map_err(internal(ctx, "json"))?;
            db.prepare(
                "INSERT INTO api_keys (id, team_id, name, scopes, secret_hash, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(&[
                minted.id.as_str().into(),
                team.as_str().into(),
                name.as_str().into(),
                scopes_json.as_str().into(),
                minted.secret_hash.as_str().into(),
                actor.as_str().into(),
                JsValue::from_f64(ctx.now as f64),
            ])
            .execute(ctx)
            .await?;
            audit(
                ctx,
                &team,
                &actor,
                "api_key_created",
                &minted.id,
                serde_json::json!({ "name": name, "scopes": names }),
            )
            .await?;
            ok_json(
                &serde_json::json!({
                    "id": minted.id, "name": name, "scopes": names, "key": minted.key,
                    "created_by": actor, "created_at": ctx.now, "last_used_at": null, "revoked_at": null,
                }),
                201,
            )
        }
        (Method::Delete, [id]) => {
            let revoked = db
                .prepare(
                    "UPDATE api_keys SET revoked_at = ?3 WHERE id = ?1 AND team_id = ?2 AND revoked_at IS NULL",
                )
                .bind(&[(*id).into(), team.as_str().into(), JsValue::from_f64(ctx.now as f64)])
                .changes(ctx)
                .await?;
            if revoked == 0 {
                return Err(ErrorCode::NotFound.into());
            }
            KEYS.with(|c| c.forget(id));
            audit(
                ctx,
                &team,
                &actor,
                "api_key_revoked",
                id,
                serde_json::json!({}),
            )
            .await?;
            no_content().map_err(|_| ErrorCode::Internal.into())
        }
        (_, [] | [_]) => Err(ErrorCode::MethodNotAllowed.into()),
        _ => Err(ErrorCode::NotFound.into()),
    }
}
