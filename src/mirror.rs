//! The D1 mirror: copies a conversation's new events from the Durable Object's log into D1,
//! in batches, idempotently on `(conversation_id, seq)`. Run by the object after it answers
//! (and by its alarm), so a slow or failing D1 never delays a message; the next run picks up
//! where this one stopped.

use parley_core::mirror::{json_batches, MirrorRows, MAX_STATEMENT_JSON};
use parley_core::Meta;
use worker::D1Database;

use crate::sql_store::SqlStore;
use crate::sql_text;
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

/// The rows of both statements below: the nine values of each array in the JSON array `?1`, in
/// its order. (`WHERE true` keeps SQLite from reading the `ON` of the upsert as a join's.)
macro_rules! nine_values_of_each_array {
    () => {
        "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
                value ->> 6, value ->> 7, value ->> 8
         FROM json_each(?1) WHERE true ORDER BY key"
    };
}

/// The conversations' rows, from a JSON array of `ConversationRow::values_json` arrays. Copies
/// may reach D1 out of order (a site's batch, the conversation's own copy): what a row says of
/// its state is taken only from a copy at least as recent as the one it holds, and the times and
/// `last_seq` only move forward. Two copies of one conversation in one statement are applied in
/// the array's order, as two statements would be.
const UPSERT_CONVERSATIONS: &str = concat!(
    "INSERT INTO conversations (id, site_id, visitor_id, status, assignee_id, created_at,
                                updated_at, last_seq, last_message_at) ",
    nine_values_of_each_array!(),
    " ON CONFLICT (id) DO UPDATE SET
       created_at = excluded.created_at,
       status = CASE WHEN excluded.last_seq >= conversations.last_seq
                     THEN excluded.status ELSE conversations.status END,
       assignee_id = CASE WHEN excluded.last_seq >= conversations.last_seq
                          THEN excluded.assignee_id ELSE conversations.assignee_id END,
       updated_at = MAX(conversations.updated_at, excluded.updated_at),
       last_seq = MAX(conversations.last_seq, excluded.last_seq),
       last_message_at = COALESCE(MAX(conversations.last_message_at, excluded.last_message_at),
                                  conversations.last_message_at, excluded.last_message_at)"
);

/// Events, from a JSON array of `EventRow::values_json` arrays; an event D1 already has is left
/// as it is.
const INSERT_EVENTS: &str = concat!(
    "INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, author_name,
                           client_msg_id, body, created_at) ",
    nine_values_of_each_array!(),
    " ON CONFLICT (conversation_id, seq) DO NOTHING"
);

/// Writes the rows of one or more conversations in one D1 batch, a single transaction: all of
/// them, or (on an error) none. Each conversation then copies its own, so one bad row costs its
/// batch a round of single copies, not an event.
pub async fn write<'a>(
    db: &D1Database,
    copies: impl IntoIterator<Item = &'a MirrorRows>,
) -> Result<(), String> {
    // All the rows of a table travel as one JSON text in one parameter: one statement (and one
    // string handed to D1) per table, where bound values would take a parameter each and D1
    // binds at most 100 to a statement.
    let copies: Vec<&MirrorRows> = copies.into_iter().collect();
    let to_text = |e: serde_json::Error| e.to_string();
    let conversations = copies
        .iter()
        .map(|c| c.conversation.values_json())
        .collect::<Result<Vec<_>, _>>()
        .map_err(to_text)?;
    let events = copies
        .iter()
        .flat_map(|c| c.events.iter().map(|e| e.values_json(&c.conversation.id)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(to_text)?;
    let mut statements = Vec::new();
    for (query, rows) in [
        (UPSERT_CONVERSATIONS, conversations),
        (INSERT_EVENTS, events),
    ] {
        for values in json_batches(rows, MAX_STATEMENT_JSON) {
            let statement = sql_text::prepare(db, query)
                .and_then(|s| s.bind(&[values.into()]))
                .map_err(|e| e.to_string())?;
            statements.push(statement);
        }
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
