//! The D1 mirror: copies a conversation's new events from the Durable Object's log into D1,
//! in batches, idempotently on `(conversation_id, seq)`. Run by the object after it answers
//! (and by its alarm), so a slow or failing D1 never delays a message; the next run picks up
//! where this one stopped.

use parley_core::mirror::{
    placeholders, rows_per_statement, ConversationRow, EventRow, MirrorRows,
};
use parley_core::Meta;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

use crate::sql_store::SqlStore;
use crate::sql_text;
use parley_core::Store;

/// Values a conversation row binds, and an event row (the statements below check it).
const CONVERSATION_COLUMNS: usize = 9;
const EVENT_COLUMNS: usize = 9;

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

fn text_or_null(v: Option<&str>) -> JsValue {
    v.map_or(JsValue::NULL, JsValue::from_str)
}

/// One statement for several rows: `insert`, the `VALUES` list with a numbered parameter for
/// each value, then `rest` (the conflict clause).
fn several_rows<const N: usize>(
    db: &D1Database,
    insert: &str,
    rest: &str,
    rows: impl ExactSizeIterator<Item = [JsValue; N]>,
) -> worker::Result<D1PreparedStatement> {
    let query = format!("{insert} VALUES {} {rest}", placeholders(rows.len(), N));
    let values: Vec<JsValue> = rows.flatten().collect();
    sql_text::prepare(db, &query)?.bind(&values)
}

/// The conversations' rows, several to a statement. Copies may reach D1 out of order (a site's
/// batch, the conversation's own copy): what a row says of its state is taken only from a copy
/// at least as recent as the one it holds, and the times and `last_seq` only move forward. Two
/// copies of one conversation in one statement are applied in order, as two statements were.
fn upsert_conversations(
    db: &D1Database,
    rows: &[&ConversationRow],
) -> worker::Result<D1PreparedStatement> {
    several_rows(
        db,
        "INSERT INTO conversations (id, site_id, visitor_id, status, assignee_id, created_at, updated_at, last_seq, last_message_at)",
        "ON CONFLICT (id) DO UPDATE SET
           created_at = excluded.created_at,
           status = CASE WHEN excluded.last_seq >= conversations.last_seq
                         THEN excluded.status ELSE conversations.status END,
           assignee_id = CASE WHEN excluded.last_seq >= conversations.last_seq
                              THEN excluded.assignee_id ELSE conversations.assignee_id END,
           updated_at = MAX(conversations.updated_at, excluded.updated_at),
           last_seq = MAX(conversations.last_seq, excluded.last_seq),
           last_message_at = COALESCE(MAX(conversations.last_message_at, excluded.last_message_at),
                                      conversations.last_message_at, excluded.last_message_at)",
        rows.iter().map(|row| -> [JsValue; CONVERSATION_COLUMNS] {
            [
                row.id.as_str().into(),
                row.site.as_str().into(),
                row.visitor.as_str().into(),
                row.status.as_str().into(),
                text_or_null(row.assignee.as_deref()),
                JsValue::from_f64(row.created_at as f64),
                JsValue::from_f64(row.updated_at as f64),
                num(row.last_seq),
                row.last_message_at
                    .map_or(JsValue::NULL, |at| JsValue::from_f64(at as f64)),
            ]
        }),
    )
}

/// Events, several to a statement; an event D1 already has is left as it is.
fn insert_events(
    db: &D1Database,
    rows: &[(&str, &EventRow)],
) -> worker::Result<D1PreparedStatement> {
    several_rows(
        db,
        "INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, author_name, client_msg_id, body, created_at)",
        "ON CONFLICT (conversation_id, seq) DO NOTHING",
        rows.iter().map(|(conversation, event)| -> [JsValue; EVENT_COLUMNS] {
            [
                (*conversation).into(),
                num(event.seq),
                event.kind.as_str().into(),
                event.author_id.as_str().into(),
                event.author_role.as_str().into(),
                text_or_null(event.author_name.as_deref()),
                text_or_null(event.client_msg_id.as_deref()),
                event.body.as_str().into(),
                JsValue::from_f64(event.at as f64),
            ]
        }),
    )
}

/// Writes the rows of one or more conversations in one D1 batch, a single transaction: all of
/// them, or (on an error) none. Each conversation then copies its own, so one bad row costs its
/// batch a round of single copies, not an event.
pub async fn write<'a>(
    db: &D1Database,
    copies: impl IntoIterator<Item = &'a MirrorRows>,
) -> Result<(), String> {
    // Several rows to a statement: D1 parses, plans and carries each statement's text once.
    let copies: Vec<&MirrorRows> = copies.into_iter().collect();
    let conversations: Vec<&ConversationRow> = copies.iter().map(|c| &c.conversation).collect();
    let events: Vec<(&str, &EventRow)> = copies
        .iter()
        .flat_map(|c| c.events.iter().map(|e| (c.conversation.id.as_str(), e)))
        .collect();
    let mut statements = Vec::new();
    for chunk in conversations.chunks(rows_per_statement(CONVERSATION_COLUMNS)) {
        statements.push(upsert_conversations(db, chunk).map_err(|e| e.to_string())?);
    }
    for chunk in events.chunks(rows_per_statement(EVENT_COLUMNS)) {
        statements.push(insert_events(db, chunk).map_err(|e| e.to_string())?);
    }
    if statements.is_empty() {
        return Ok(());
    }
    let results = db.batch(statements).await.map_err(|e| e.to_string())?;
    if let Some(failed) = results.iter().find(|r| !r.success()) {
        return Err(failed.error().unwrap_or_else(|| "d1 batch failed".into()));
    }
    Ok(())
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
    write(db, [&MirrorRows::of(meta, &batch)]).await?;
    let mirrored_seq = batch.last().map_or(mirrored_seq, |e| e.seq);
    Ok(Drained {
        mirrored_seq,
        more: mirrored_seq < meta.head,
    })
}
