//! The D1 mirror: copies a conversation's new events from the Durable Object's log into D1,
//! in batches, idempotently on `(conversation_id, seq)`. Run by the object after it answers
//! (and by its alarm), so a slow or failing D1 never delays a message; the next run picks up
//! where this one stopped.

use parley_core::{Event, EventPayload, Meta};
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

use crate::sql_store::{body_json, SqlStore};
use parley_core::Store;

/// Events copied per D1 batch; the rest follow in the next batch, straight after.
pub const BATCH: u32 = 100;

/// Delay before retrying after the `failures`-th consecutive D1 error: 0.5 s doubling, at most 10 s.
pub fn retry_delay_ms(failures: u32) -> i64 {
    (500i64 << failures.min(5)).min(10_000)
}

/// How far a mirror run got.
pub struct Drained {
    /// Every event up to this one is in D1.
    pub mirrored_seq: u64,
    /// More events remain after it.
    pub more: bool,
}

fn num(v: u64) -> JsValue {
    JsValue::from_f64(v as f64)
}

fn role(event: &Event) -> &'static str {
    match event.author.role {
        parley_core::Role::Visitor => "visitor",
        parley_core::Role::Agent => "agent",
        parley_core::Role::System => "system",
    }
}

fn upsert_conversation(
    db: &D1Database,
    meta: &Meta,
    batch: &[Event],
) -> worker::Result<D1PreparedStatement> {
    let last = batch.last();
    let last_seq = last.map_or(0, |e| e.seq);
    let updated_at = last.map_or(meta.created_at, |e| e.at);
    let last_message_at = batch
        .iter()
        .rev()
        .find(|e| matches!(e.payload, EventPayload::Message { .. }))
        .map(|e| JsValue::from_f64(e.at as f64))
        .unwrap_or(JsValue::NULL);
    db.prepare(
        "INSERT INTO conversations (id, site_id, visitor_id, status, assignee_id, created_at, updated_at, last_seq, last_message_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET
           created_at = excluded.created_at,
           status = excluded.status,
           assignee_id = excluded.assignee_id,
           updated_at = MAX(conversations.updated_at, excluded.updated_at),
           last_seq = MAX(conversations.last_seq, excluded.last_seq),
           last_message_at = COALESCE(MAX(conversations.last_message_at, excluded.last_message_at),
                                      conversations.last_message_at, excluded.last_message_at)",
    )
    .bind(&[
        meta.id.as_str().into(),
        meta.site.as_str().into(),
        meta.visitor.as_str().into(),
        meta.status.as_str().into(),
        meta.assignee.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        JsValue::from_f64(meta.created_at as f64),
        JsValue::from_f64(updated_at as f64),
        num(last_seq),
        last_message_at,
    ])
}

fn insert_event(
    db: &D1Database,
    conversation: &str,
    event: &Event,
) -> worker::Result<D1PreparedStatement> {
    db.prepare(
        "INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, author_name, client_msg_id, body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (conversation_id, seq) DO NOTHING",
    )
    .bind(&[
        conversation.into(),
        num(event.seq),
        event.payload.kind().into(),
        event.author.id.as_str().into(),
        role(event).into(),
        event.author.name.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        event.client_msg_id.as_deref().map_or(JsValue::NULL, JsValue::from_str),
        body_json(&event.payload).into(),
        JsValue::from_f64(event.at as f64),
    ])
}

/// Copies the next batch of events after `mirrored_seq` to D1. Recording how far it got is the
/// caller's: the watermark can ride on the object's next write.
pub async fn drain(
    store: &SqlStore,
    meta: &Meta,
    db: &D1Database,
    mirrored_seq: u64,
) -> Result<Drained, String> {
    if mirrored_seq >= meta.head {
        return Ok(Drained {
            mirrored_seq,
            more: false,
        });
    }
    let batch = store
        .events_after(mirrored_seq, BATCH)
        .map_err(|e| e.to_string())?;
    let mut statements = Vec::with_capacity(batch.len() + 1);
    statements.push(upsert_conversation(db, meta, &batch).map_err(|e| e.to_string())?);
    for event in &batch {
        statements.push(insert_event(db, &meta.id, event).map_err(|e| e.to_string())?);
    }
    let results = db.batch(statements).await.map_err(|e| e.to_string())?;
    if let Some(failed) = results.iter().find(|r| !r.success()) {
        return Err(failed.error().unwrap_or_else(|| "d1 batch failed".into()));
    }
    let mirrored_seq = batch.last().map_or(mirrored_seq, |e| e.seq);
    Ok(Drained {
        mirrored_seq,
        more: mirrored_seq < meta.head,
    })
}
