//! Agent sign-in sessions in D1. A token names its session; logging out (or an admin disabling
//! the agent) ends it, and every entrance refuses a token of an ended session. Checks are
//! cached briefly per isolate, so a live session costs one D1 read per half minute.

use wasm_bindgen::JsValue;
use worker::Env;

use crate::remembered::Remembered;
use crate::row::from_row;
use crate::sql_text::D1Rows;

/// How long a "still live" answer is reused. An ended session is refused from the moment it
/// ended in the isolate that ended it, and everywhere else within this time.
const CACHE_MS: i64 = 30_000;

thread_local! {
    static LIVE: Remembered<()> = Remembered::new(CACHE_MS);
}

/// Records a new session.
pub async fn start(
    env: &Env,
    sid: &str,
    agent: &str,
    team: &str,
    now: i64,
    ttl_ms: i64,
) -> worker::Result<()> {
    env.d1("DB")?
        .prepare(
            "INSERT INTO sessions (id, agent_id, team_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&[
            sid.into(),
            agent.into(),
            team.into(),
            JsValue::from_f64(now as f64),
            JsValue::from_f64((now + ttl_ms) as f64),
        ])?
        .run()
        .await?;
    Ok(())
}

/// Whether the session may still act: not ended, not expired, its agent not disabled.
pub async fn is_live(env: &Env, sid: &str, now: i64) -> worker::Result<bool> {
    if LIVE.with(|c| c.fresh(sid, now).is_some()) {
        return Ok(true);
    }
    from_row! {
        struct Row {
            live: f64,
        }
    }
    let live = env
        .d1("DB")?
        .prepare(
            "SELECT COUNT(*) AS live FROM sessions s JOIN agents a ON a.id = s.agent_id
             WHERE s.id = ?1 AND s.ended_at IS NULL AND s.expires_at > ?2 AND a.disabled = 0",
        )
        .bind(&[sid.into(), JsValue::from_f64(now as f64)])?
        .first_row::<Row>()
        .await?
        .is_some_and(|r| r.live > 0.0);
    LIVE.with(|c| {
        if live {
            c.remember(sid, (), now);
        } else {
            c.forget(sid);
        }
    });
    Ok(live)
}

/// Whether a socket's session (`None`: an API key, no session) may go on: a session D1
/// cannot be asked about counts as live, so a D1 outage cuts nobody off.
pub async fn still_live(env: &Env, sid: Option<&str>, now: i64) -> bool {
    match sid {
        Some(sid) => is_live(env, sid, now).await.unwrap_or(true),
        None => true,
    }
}

/// Ends a session (logout).
pub async fn end(env: &Env, sid: &str, now: i64) -> worker::Result<()> {
    LIVE.with(|c| c.forget(sid));
    env.d1("DB")?
        .prepare("UPDATE sessions SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL")
        .bind(&[sid.into(), JsValue::from_f64(now as f64)])?
        .run()
        .await?;
    Ok(())
}

/// The statement that ends every session of an agent (disabled, or their role or permissions
/// changed), except `keep` (the agent's own session when they changed their own password): it
/// goes in the batch of the change itself. Run [`forget_cached`] after it.
pub fn end_all_statement(
    db: &worker::D1Database,
    agent: &str,
    keep: Option<&str>,
    now: i64,
) -> worker::Result<worker::D1PreparedStatement> {
    db.prepare(
        "UPDATE sessions SET ended_at = ?2 WHERE agent_id = ?1 AND ended_at IS NULL AND id != ?3",
    )
    .bind(&[
        agent.into(),
        JsValue::from_f64(now as f64),
        keep.unwrap_or("").into(),
    ])
}

/// Forgets this isolate's "still live" answers, after sessions ended.
pub fn forget_cached() {
    LIVE.with(|c| c.forget_all());
}
