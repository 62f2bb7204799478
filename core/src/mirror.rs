//! The D1 mirror's rows, and the bookkeeping that lets a site copy many conversations' new
//! events in one D1 call.
//!
//! A conversation hands its new events to its site with the notification it sends anyway; the
//! site gathers what its conversations send for a short while and writes it in one batch, then
//! answers each conversation with what is in D1. A conversation moves its watermark only over
//! what was confirmed without a gap, and copies anything else itself: the site's batch only
//! saves D1 calls, nothing relies on it.

use serde::{Deserialize, Serialize};

use crate::conversation::Meta;
use crate::protocol::{Event, EventPayload, Participant, Role};

/// The JSON of an event's body, as stored in the conversation's log and mirrored to D1: cut
/// out of the payload's own text (`{"kind":…,"body":…}`), with no `serde_json::Value` tree
/// built and dropped on the message path.
pub fn body_json(payload: &EventPayload) -> String {
    serde_json::to_string(payload)
        .ok()
        .and_then(|text| crate::json::member(&text, "body").ok().map(str::to_string))
        .unwrap_or_else(|| "{}".to_string())
}

/// A conversation's row in D1, as of the last event of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRow {
    pub id: String,
    pub site: String,
    pub visitor: String,
    pub status: String,
    pub assignee: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_seq: u64,
    pub last_message_at: Option<i64>,
}

impl ConversationRow {
    /// The row after `batch` (consecutive events of the conversation `meta` describes).
    pub fn after(meta: &Meta, batch: &[Event]) -> ConversationRow {
        let last = batch.last();
        ConversationRow {
            id: meta.id.clone(),
            site: meta.site.clone(),
            visitor: meta.visitor.clone(),
            status: meta.status.as_str().to_string(),
            assignee: meta.assignee.clone(),
            created_at: meta.created_at,
            updated_at: last.map_or(meta.created_at, |e| e.at),
            last_seq: last.map_or(0, |e| e.seq),
            last_message_at: batch
                .iter()
                .rev()
                .find(|e| matches!(e.payload, EventPayload::Message { .. }))
                .map(|e| e.at),
        }
    }
}

/// One event's row in D1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub seq: u64,
    pub kind: String,
    pub author_id: String,
    pub author_role: String,
    pub author_name: Option<String>,
    pub client_msg_id: Option<String>,
    pub body: String,
    pub at: i64,
}

impl EventRow {
    pub fn of(event: &Event) -> EventRow {
        EventRow {
            seq: event.seq,
            kind: event.payload.kind().to_string(),
            author_id: event.author.id.clone(),
            author_role: event.author.role.as_str().to_string(),
            author_name: event.author.name.clone(),
            client_msg_id: event.client_msg_id.clone(),
            body: body_json(&event.payload),
            at: event.at,
        }
    }

    /// The event the row was made from: how a conversation reads its own log back. The body
    /// goes to the payload's decoder as it is stored, not through a `serde_json::Value`.
    pub fn into_event(self) -> serde_json::Result<Event> {
        let payload = EventPayload::from_json_as(&self.body, &self.kind)?;
        Ok(Event {
            seq: self.seq,
            payload,
            author: Participant {
                id: self.author_id,
                role: Role::from_stored(&self.author_role),
                name: self.author_name,
            },
            at: self.at,
            client_msg_id: self.client_msg_id,
            masked: false,
        })
    }
}

/// The most JSON one D1 statement carries in its single parameter, under D1's limit on a string
/// (1,000,000 bytes in its documented limits). A batch over it takes several statements; a row
/// longer than it goes alone.
pub const MAX_STATEMENT_JSON: usize = 900_000;

impl ConversationRow {
    /// The row's values as a JSON array, in the order of the D1 statement's columns: `id, site_id,
    /// visitor_id, status, assignee_id, created_at, updated_at, last_seq, last_message_at`.
    pub fn values_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&(
            &self.id,
            &self.site,
            &self.visitor,
            &self.status,
            &self.assignee,
            self.created_at,
            self.updated_at,
            self.last_seq,
            self.last_message_at,
        ))
    }
}

impl EventRow {
    /// The row's values as a JSON array, in the order of the D1 statement's columns:
    /// `conversation_id, seq, kind, author_id, author_role, author_name, client_msg_id, body,
    /// created_at`.
    pub fn values_json(&self, conversation: &str) -> serde_json::Result<String> {
        serde_json::to_string(&(
            conversation,
            self.seq,
            &self.kind,
            &self.author_id,
            &self.author_role,
            &self.author_name,
            &self.client_msg_id,
            &self.body,
            self.at,
        ))
    }
}

/// Rows, each a JSON array, gathered in order into JSON arrays of at most `max` bytes: one per
/// statement. A row longer than `max` goes alone.
pub fn json_batches(rows: impl IntoIterator<Item = String>, max: usize) -> Vec<String> {
    let mut batches = Vec::new();
    let mut current = String::new();
    for row in rows {
        if !current.is_empty() && current.len() + 1 + row.len() + 1 > max {
            current.push(']');
            batches.push(std::mem::take(&mut current));
        }
        current.push(if current.is_empty() { '[' } else { ',' });
        current.push_str(&row);
    }
    if !current.is_empty() {
        current.push(']');
        batches.push(current);
    }
    batches
}

/// Consecutive events of one conversation and its row after them: what one copy writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRows {
    pub conversation: ConversationRow,
    pub events: Vec<EventRow>,
}

impl MirrorRows {
    /// The rows for `batch`, consecutive events of the conversation `meta` describes.
    pub fn of(meta: &Meta, batch: &[Event]) -> MirrorRows {
        MirrorRows {
            conversation: ConversationRow::after(meta, batch),
            events: batch.iter().map(EventRow::of).collect(),
        }
    }

    /// Rows in D1 these make: the conversation's row and one per event.
    pub fn row_count(&self) -> usize {
        1 + self.events.len()
    }

    /// The events' sequence numbers, first and last (`None` for no events).
    pub fn seqs(&self) -> Option<(u64, u64)> {
        Some((self.events.first()?.seq, self.events.last()?.seq))
    }
}

/// Most confirmations past a gap a conversation keeps; older ones are forgotten, and the
/// conversation's own copy repeats those events (which D1 ignores).
const MAX_AHEAD: usize = 64;

/// A conversation's D1 watermark as its site confirms copies: it moves only over events
/// confirmed without a gap. Confirmations may arrive out of order; one past a gap waits here
/// until the gap is confirmed too (or the conversation's own copy fills it).
#[derive(Debug, Default)]
pub struct Confirmations {
    ahead: Vec<(u64, u64)>,
}

impl Confirmations {
    /// The watermark after the site confirmed that events `first..=last` are in D1, from
    /// `mirrored` (every event up to it is known to be in D1).
    pub fn confirm(&mut self, mirrored: u64, first: u64, last: u64) -> u64 {
        self.ahead.push((first, last));
        // In order of their first event, one pass joins every confirmation the watermark
        // reaches; past the first that does not join, none does.
        self.ahead.sort_unstable();
        let mut mirrored = mirrored;
        self.ahead.retain(|&(first, last)| {
            let joins = first <= mirrored.saturating_add(1);
            if joins {
                mirrored = mirrored.max(last);
            }
            !joins
        });
        // Over the cap, the confirmations farthest from joining go.
        self.ahead.truncate(MAX_AHEAD);
        mirrored
    }
}

/// Identifies one conversation's rows in a site's queue, to tell it how they fared.
pub type Ticket = u64;

/// A site's rows waiting for the next D1 batch, in the order they arrived.
#[derive(Debug, Default)]
pub struct MirrorQueue {
    pending: Vec<(Ticket, MirrorRows)>,
    next: Ticket,
    rows: usize,
}

impl MirrorQueue {
    /// Queues `rows`; the ticket names them when the batch that carried them is done.
    pub fn push(&mut self, rows: MirrorRows) -> Ticket {
        self.next += 1;
        self.rows += rows.row_count();
        self.pending.push((self.next, rows));
        self.next
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Rows waiting, all conversations together.
    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// Takes the rows of an erased conversation out, so no batch writes them after its rows
    /// left D1. Answers their tickets.
    pub fn drop_conversation(&mut self, conversation: &str) -> Vec<Ticket> {
        let mut dropped = Vec::new();
        let mut left = self.rows;
        self.pending.retain(|(ticket, rows)| {
            let keep = rows.conversation.id != conversation;
            if !keep {
                dropped.push(*ticket);
                left -= rows.row_count();
            }
            keep
        });
        self.rows = left;
        dropped
    }

    /// The next batch: the oldest rows, whole, up to `max_rows` rows (always at least one
    /// conversation's rows, however many they are).
    pub fn take(&mut self, max_rows: usize) -> Vec<(Ticket, MirrorRows)> {
        let mut taken = 0;
        let mut count = 0;
        for (_, rows) in &self.pending {
            if count > 0 && taken + rows.row_count() > max_rows {
                break;
            }
            taken += rows.row_count();
            count += 1;
        }
        self.rows -= taken;
        self.pending.drain(..count).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FileRef, Status};
    use proptest::prelude::*;

    #[test]
    fn rows_travel_as_json_arrays_split_at_the_size_limit() {
        let rows = ["[1]".to_string(), "[22]".to_string(), "[333]".to_string()];
        assert_eq!(json_batches(rows.clone(), 1000), vec!["[[1],[22],[333]]"]);
        // "[[1],[22]]" is 10 bytes: a limit of 10 holds two rows, 9 only one.
        assert_eq!(
            json_batches(rows.clone(), 10),
            vec!["[[1],[22]]", "[[333]]"]
        );
        assert_eq!(
            json_batches(rows.clone(), 9),
            vec!["[[1]]", "[[22]]", "[[333]]"]
        );
        // A row longer than the limit still goes, alone.
        assert_eq!(json_batches(rows, 2), vec!["[[1]]", "[[22]]", "[[333]]"]);
        assert!(json_batches(Vec::new(), 10).is_empty());
    }

    #[test]
    fn row_values_keep_the_statement_column_order() {
        let event = EventRow {
            seq: 7,
            kind: "message".into(),
            author_id: "vis_1".into(),
            author_role: "visitor".into(),
            author_name: None,
            client_msg_id: Some("c1".into()),
            body: r#"{"text":"a \"quote\""}"#.into(),
            at: 1_700_000_000_000,
        };
        let values: serde_json::Value =
            crate::json::from_str(&event.values_json("cnv_1").unwrap()).unwrap();
        assert_eq!(
            values,
            serde_json::json!([
                "cnv_1",
                7,
                "message",
                "vis_1",
                "visitor",
                null,
                "c1",
                r#"{"text":"a \"quote\""}"#,
                1_700_000_000_000i64
            ])
        );
        let row = ConversationRow::after(&meta("cnv_1"), &[]);
        let values: serde_json::Value = crate::json::from_str(&row.values_json().unwrap()).unwrap();
        assert_eq!(values[0], "cnv_1");
        assert_eq!(values[1], "site_1");
        assert_eq!(values[7], 0);
        assert!(values[8].is_null());
    }

    fn meta(id: &str) -> Meta {
        Meta {
            id: id.into(),
            site: "site_1".into(),
            team: String::new(),
            visitor: "v_1".into(),
            epoch: String::new(),
            created_at: 1_000,
            status: Status::Open,
            assignee: None,
            head: 0,
            assigned_since: None,
        }
    }

    fn event(seq: u64, payload: EventPayload) -> Event {
        Event {
            seq,
            payload,
            author: Participant {
                id: "v_1".into(),
                role: Role::Visitor,
                name: Some("Ann".into()),
            },
            at: 1_000 + seq as i64,
            client_msg_id: Some(format!("c{seq}")),
            masked: false,
        }
    }

    fn rows(conversation: &str, seqs: std::ops::RangeInclusive<u64>) -> MirrorRows {
        let events: Vec<Event> = seqs
            .map(|seq| {
                event(
                    seq,
                    EventPayload::Message {
                        text: format!("m{seq}"),
                    },
                )
            })
            .collect();
        MirrorRows::of(&meta(conversation), &events)
    }

    #[test]
    fn rows_carry_what_d1_stores() {
        let events = [
            event(4, EventPayload::Message { text: "hi".into() }),
            event(5, EventPayload::Closed {}),
        ];
        let rows = MirrorRows::of(&meta("c_1"), &events);
        assert_eq!(rows.conversation.last_seq, 5);
        assert_eq!(rows.conversation.updated_at, 1_005);
        assert_eq!(rows.conversation.last_message_at, Some(1_004));
        assert_eq!(rows.seqs(), Some((4, 5)));
        assert_eq!(rows.row_count(), 3);
        assert_eq!(rows.events[0].body, r#"{"text":"hi"}"#);
        assert_eq!(rows.events[0].author_role, "visitor");
        assert_eq!(rows.events[1].kind, "closed");
        assert_eq!(rows.events[1].body, "{}");
        // What the site is sent comes back whole.
        let json = serde_json::to_string(&rows).unwrap();
        assert_eq!(crate::json::from_str::<MirrorRows>(&json).unwrap(), rows);
    }

    #[test]
    fn a_batch_without_a_message_leaves_the_last_message_time_alone() {
        let rows = MirrorRows::of(&meta("c_1"), &[event(2, EventPayload::Closed {})]);
        assert_eq!(rows.conversation.last_message_at, None);
    }

    #[test]
    fn the_watermark_moves_only_over_confirmations_without_a_gap() {
        let mut confirmations = Confirmations::default();
        assert_eq!(confirmations.confirm(3, 4, 6), 6);
        assert_eq!(confirmations.confirm(6, 4, 5), 6);
        assert_eq!(confirmations.confirm(6, 9, 9), 6);
        assert_eq!(confirmations.confirm(6, 8, 8), 6);
        // The gap is confirmed: the two waiting confirmations join.
        assert_eq!(confirmations.confirm(6, 7, 7), 9);
        // The conversation's own copy filled a gap: a later confirmation builds on it.
        assert_eq!(confirmations.confirm(9, 12, 12), 9);
        assert_eq!(confirmations.confirm(11, 13, 13), 13);
    }

    #[test]
    fn a_full_list_of_waiting_confirmations_still_takes_the_one_that_fills_the_gap() {
        let mut confirmations = Confirmations::default();
        for seq in 6..6 + MAX_AHEAD as u64 {
            assert_eq!(confirmations.confirm(4, seq, seq), 4);
        }
        assert_eq!(confirmations.confirm(4, 5, 5), 5 + MAX_AHEAD as u64);
        // Past the cap, the farthest are forgotten (the conversation's own copy repeats them).
        for seq in 100..100 + MAX_AHEAD as u64 + 1 {
            confirmations.confirm(90, seq, seq);
        }
        assert_eq!(confirmations.ahead.len(), MAX_AHEAD);
        assert_eq!(confirmations.confirm(90, 91, 99), 99 + MAX_AHEAD as u64);
    }

    #[test]
    fn an_erased_conversation_leaves_the_queue() {
        let mut queue = MirrorQueue::default();
        let a = queue.push(rows("c_a", 1..=2));
        let b = queue.push(rows("c_b", 1..=1));
        let a2 = queue.push(rows("c_a", 3..=3));
        assert_eq!(queue.row_count(), 7);
        assert_eq!(queue.drop_conversation("c_a"), vec![a, a2]);
        assert_eq!(queue.row_count(), 2);
        let taken = queue.take(100);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, b);
        assert!(queue.is_empty());
        assert_eq!(queue.row_count(), 0);
    }

    #[test]
    fn rows_larger_than_a_batch_still_go_whole() {
        let mut queue = MirrorQueue::default();
        queue.push(rows("c_a", 1..=10));
        queue.push(rows("c_b", 1..=1));
        let first = queue.take(5);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].1.events.len(), 10);
        assert_eq!(queue.take(5).len(), 1);
        assert!(queue.take(5).is_empty());
    }

    proptest! {
        /// Whatever order confirmations come in, and whichever are lost, the watermark never
        /// passes an event that was not confirmed.
        #[test]
        fn the_watermark_never_passes_an_unconfirmed_event(
            sizes in proptest::collection::vec(1u64..4, 1..12),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 12),
            lost in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let mut ranges = Vec::new();
            let mut next = 1;
            for size in &sizes {
                ranges.push((next, next + size - 1));
                next += size;
            }
            let mut pending: Vec<usize> = (0..ranges.len()).collect();
            let mut confirmed = vec![false; next as usize];
            let mut confirmations = Confirmations::default();
            let mut mirrored = 0;
            let mut step = 0;
            while !pending.is_empty() {
                let index = order[step % order.len()].index(pending.len());
                let (first, last) = ranges[pending.remove(index)];
                if !lost[step % lost.len()] {
                    for seq in first..=last {
                        confirmed[seq as usize] = true;
                    }
                    mirrored = confirmations.confirm(mirrored, first, last);
                }
                step += 1;
                prop_assert!((1..=mirrored).all(|seq| confirmed[seq as usize]));
            }
            // With nothing lost, whatever the order, every event is confirmed in the end.
            if lost.iter().take(ranges.len()).all(|lost| !lost) {
                prop_assert_eq!(mirrored, next - 1);
            }
        }

        /// Batches hand on every queued row once, in arrival order, within their size unless
        /// one conversation's rows alone are larger.
        #[test]
        fn batches_keep_every_row_once_and_in_order(
            sizes in proptest::collection::vec(1u64..8, 0..30),
            max in 2usize..12,
        ) {
            let mut queue = MirrorQueue::default();
            let tickets: Vec<Ticket> = sizes
                .iter()
                .enumerate()
                .map(|(i, size)| queue.push(rows(&format!("c_{i}"), 1..=*size)))
                .collect();
            let mut seen = Vec::new();
            loop {
                let batch = queue.take(max);
                if batch.is_empty() {
                    break;
                }
                let taken: usize = batch.iter().map(|(_, r)| r.row_count()).sum();
                prop_assert!(batch.len() == 1 || taken <= max);
                seen.extend(batch.into_iter().map(|(ticket, _)| ticket));
                let left: usize = sizes.iter().skip(seen.len()).map(|size| 1 + *size as usize).sum();
                prop_assert_eq!(queue.row_count(), left);
            }
            prop_assert_eq!(seen, tickets);
        }
    }

    #[test]
    fn a_row_reads_back_as_the_event_it_was_made_from() {
        let payloads = [
            EventPayload::Message {
                text: "你好 \"quoted\" \u{0} line\nbreak".into(),
            },
            EventPayload::Created {
                form: Some("prechat".into()),
                fields: [("email".to_string(), "a@b.c".to_string())].into(),
            },
            EventPayload::Created {
                form: None,
                fields: std::collections::BTreeMap::new(),
            },
            EventPayload::Assigned {
                agent: Participant {
                    id: "a_1".into(),
                    role: Role::Agent,
                    name: Some("Ann".into()),
                },
            },
            EventPayload::Closed {},
            EventPayload::Reopened {},
            EventPayload::Note { text: "n".into() },
            EventPayload::File {
                file: FileRef {
                    id: "f_1".into(),
                    name: "a.png".into(),
                    mime: "image/png".into(),
                    size: 3,
                    image: true,
                },
            },
            EventPayload::Rated {
                score: 5,
                comment: None,
            },
            EventPayload::Translation {
                of: 2,
                from: "zh".into(),
                to: "en".into(),
                text: None,
                provider: "p".into(),
                failed: Some("timeout".into()),
            },
            EventPayload::Handoff {},
            EventPayload::Hidden {},
        ];
        for (i, payload) in payloads.into_iter().enumerate() {
            for role in [Role::Visitor, Role::Agent, Role::System] {
                let event = Event {
                    seq: i as u64 + 1,
                    payload: payload.clone(),
                    author: Participant {
                        id: "x_1".into(),
                        role,
                        name: (role == Role::Agent).then(|| "Ann".into()),
                    },
                    at: 1_700_000_000_000,
                    client_msg_id: (role == Role::Visitor).then(|| "m-1".into()),
                    masked: false,
                };
                assert_eq!(EventRow::of(&event).into_event().unwrap(), event);
            }
            // The body is the payload's `body` member (its fields in declaration order, where a
            // `serde_json::Value` sorted them: the same JSON either way).
            let whole = serde_json::to_value(&payload).unwrap();
            let body: serde_json::Value = serde_json::from_str(&body_json(&payload)).unwrap();
            assert_eq!(body, whole["body"]);
        }
    }

    #[test]
    fn a_body_is_the_payloads_own_text_of_it() {
        let tricky = EventPayload::Message {
            text: "} \"body\": {\\".into(),
        };
        assert_eq!(body_json(&tricky), r#"{"text":"} \"body\": {\\"}"#);
        let rated = EventPayload::Rated {
            score: 4,
            comment: Some("ok".into()),
        };
        assert_eq!(body_json(&rated), r#"{"score":4,"comment":"ok"}"#);
        assert_eq!(body_json(&EventPayload::Closed {}), "{}");
    }
}
