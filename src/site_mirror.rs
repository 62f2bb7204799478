//! A site's share of the D1 mirror. Its conversations send their new events with the
//! notification they send it anyway; the site writes what arrived within a short window in one
//! D1 batch, and answers each conversation whether its rows are in D1. At a thousand busy
//! conversations that is a few D1 calls a second instead of one per message, and D1 (a single
//! database for the whole deployment) sees the same. A conversation that gets no confirmation
//! copies its events itself, so nothing depends on this path: when D1 is slow or failing the
//! site stops taking rows for a while rather than piling them up.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use parley_core::mirror::{MirrorQueue, MirrorRows, Ticket};
use worker::{Env, State};

use crate::answers::Answers;
use crate::log::Log;
use crate::platform::now_ms;

/// How long rows wait for others before they are written: well inside the conversations' own
/// one-second timer, so a confirmation normally comes before it rings. Short, because every
/// conversation of a batch hears back at once: at 400 messages a second a 250 ms window made
/// a 30–60 ms stall every 300 ms (the bench's slow slices); 50 ms made none.
const WINDOW_MS: u64 = 50;
/// Rows per batch (its statements split at `MAX_STATEMENT_JSON` bytes); more rows wait for the
/// next batch, straight after.
const MAX_ROWS: usize = 400;
/// Rows the queue holds at most; rows past it are turned away (their conversations copy
/// them), so a slow D1 cannot fill the site's memory.
const MAX_QUEUED_ROWS: usize = 4_000;
/// After a failed batch, rows are turned away this long.
const PAUSE_AFTER_FAILURE_MS: i64 = 2_000;
/// Longest a notification waits for its batch; past it the answer is "not copied".
const CONFIRMATION_TIMEOUT_MS: u64 = 10_000;
/// Conversations erased in this instance that are remembered, so rows sent just before an
/// erasure and arriving after it are not written back.
const REMEMBERED_ERASURES: usize = 256;

/// Rows waiting for the next batch, and who waits for them.
pub struct SiteMirror {
    env: Env,
    queue: RefCell<MirrorQueue>,
    /// Who waits for which rows.
    waiting: Rc<Answers<Ticket>>,
    /// A flush is scheduled or under way: rows that arrive join it.
    flushing: Cell<bool>,
    /// The batch on its way to D1 (one flush runs at a time); an erasure waits for the one
    /// under way when it came.
    writing: Cell<Option<u64>>,
    next_batch: Cell<u64>,
    written: RefCell<Vec<oneshot::Sender<()>>>,
    /// Rows are turned away until then (a batch failed).
    paused_until: Cell<i64>,
    erased: RefCell<VecDeque<String>>,
}

impl SiteMirror {
    pub fn new(env: Env) -> Rc<SiteMirror> {
        Rc::new(SiteMirror {
            env,
            queue: RefCell::default(),
            waiting: Answers::new(),
            flushing: Cell::new(false),
            writing: Cell::new(None),
            next_batch: Cell::new(0),
            written: RefCell::default(),
            paused_until: Cell::new(0),
            erased: RefCell::default(),
        })
    }

    /// Takes a conversation's rows for the next batch, and answers whether they are in D1.
    /// Turned away (an erased conversation, a full queue, D1 failing), failed or timed out
    /// reads as `false`. The rows join the batch at once; the answer is awaited after.
    pub fn submit(
        self: &Rc<Self>,
        state: &State,
        rows: MirrorRows,
    ) -> impl std::future::Future<Output = bool> {
        let turned_away = self.erased.borrow().contains(&rows.conversation.id)
            || now_ms() < self.paused_until.get()
            || self.queue.borrow().row_count() + rows.row_count() > MAX_QUEUED_ROWS;
        let confirmation = if turned_away {
            None
        } else {
            Some(self.enqueue(state, rows))
        };
        async move {
            match confirmation {
                Some(confirmation) => confirmation.await.unwrap_or(false),
                None => false,
            }
        }
    }

    fn enqueue(self: &Rc<Self>, state: &State, rows: MirrorRows) -> oneshot::Receiver<bool> {
        let ticket = self.queue.borrow_mut().push(rows);
        // From now, not from when the caller starts waiting.
        let confirmation = self
            .waiting
            .wait(state, ticket, CONFIRMATION_TIMEOUT_MS as i64);
        if !self.flushing.replace(true) {
            let me = self.clone();
            state.wait_until(async move {
                worker::Delay::from(Duration::from_millis(WINDOW_MS)).await;
                me.flush().await;
            });
        }
        confirmation
    }

    /// Writes everything queued, batch by batch, and answers each conversation.
    async fn flush(&self) {
        loop {
            let batch = self.queue.borrow_mut().take(MAX_ROWS);
            if batch.is_empty() {
                break;
            }
            let id = self.next_batch.get() + 1;
            self.next_batch.set(id);
            self.writing.set(Some(id));
            // Wall time, as diagnosis needs it: locally D1 shares the objects' thread, so this
            // includes the other work that ran meanwhile.
            let started = now_ms();
            let outcome = match self.env.d1("DB") {
                Ok(db) => crate::mirror::write(&db, batch.iter().map(|(_, rows)| rows)).await,
                Err(e) => Err(e.to_string()),
            };
            self.writing.set(None);
            let duration_ms = now_ms() - started;
            for done in self.written.borrow_mut().drain(..) {
                let _ = done.send(());
            }
            let written = outcome.is_ok();
            let site = batch
                .first()
                .map(|(_, rows)| rows.conversation.site.clone())
                .unwrap_or_default();
            let conversations = batch
                .iter()
                .map(|(_, rows)| rows.conversation.id.as_str())
                .collect::<BTreeSet<_>>()
                .len();
            match outcome {
                Ok(()) => Log::info("mirror_batch_written")
                    .site(&site)
                    .field("conversations", conversations)
                    .field("copies", batch.len())
                    .field("duration_ms", duration_ms)
                    .emit(),
                // The conversations copy their own rows, with their own retries; the next
                // rows wait for D1 to recover there, not here.
                Err(detail) => {
                    self.paused_until.set(now_ms() + PAUSE_AFTER_FAILURE_MS);
                    Log::warn("mirror_batch_failed")
                        .site(&site)
                        .error_class("d1_unavailable")
                        .field("conversations", conversations)
                        .field("copies", batch.len())
                        .field("duration_ms", duration_ms)
                        .field("detail", detail)
                        .emit()
                }
            }
            self.answer(batch.into_iter().map(|(ticket, _)| ticket), written);
        }
        self.flushing.set(false);
    }

    fn answer(&self, tickets: impl IntoIterator<Item = Ticket>, written: bool) {
        for ticket in tickets {
            self.waiting.answer(ticket, written);
        }
    }

    /// An erased conversation: its queued rows are dropped, and the batches on their way to D1
    /// (which may carry some) land before the caller deletes its rows from D1. Later batches
    /// cannot carry its rows, so it does not wait for them. `false` when they did not land in
    /// time: the erasure is to be tried again.
    pub async fn forget(&self, conversation: &str) -> bool {
        {
            let mut erased = self.erased.borrow_mut();
            if erased.len() == REMEMBERED_ERASURES {
                erased.pop_front();
            }
            erased.push_back(conversation.to_string());
        }
        let dropped = self.queue.borrow_mut().drop_conversation(conversation);
        self.answer(dropped, false);
        let Some(under_way) = self.writing.get() else {
            return true;
        };
        let landed = async move {
            while self.writing.get() == Some(under_way) {
                let (done, landed) = oneshot::channel();
                self.written.borrow_mut().push(done);
                let _ = landed.await;
            }
        };
        let timeout = worker::Delay::from(Duration::from_millis(CONFIRMATION_TIMEOUT_MS));
        matches!(
            select(std::pin::pin!(landed), timeout).await,
            Either::Left(_)
        )
    }
}
