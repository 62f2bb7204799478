//! A site's share of the D1 mirror. Its conversations send their new events with the
//! notification they send it anyway; the site writes what arrived within a short window in one
//! D1 batch, and answers each conversation whether its rows are in D1. At a thousand quiet
//! conversations that is a few D1 calls a second instead of one per message, and D1 (a single
//! database for the whole deployment) sees the same. A conversation that gets no confirmation
//! copies its events itself, so nothing depends on this path.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use parley_core::mirror::{MirrorQueue, MirrorRows, Ticket};
use worker::{Env, State};

use crate::log::Log;

/// How long rows wait for others before they are written: well inside the conversations' own
/// one-second timer, so a confirmation normally comes before it rings. Short, because every
/// conversation of a batch hears back at once: at 400 messages a second a 250 ms window made
/// a 30–60 ms stall every 300 ms (the bench's slow slices); 50 ms made none.
const WINDOW_MS: u64 = 50;
/// D1 statements per batch; more rows wait for the next batch, straight after.
const MAX_STATEMENTS: usize = 400;
/// Conversations erased in this instance that are remembered, so rows sent just before an
/// erasure and arriving after it are not written back.
const REMEMBERED_ERASURES: usize = 256;

/// Rows waiting for the next batch, and who waits for them.
pub struct SiteMirror {
    env: Env,
    queue: RefCell<MirrorQueue>,
    waiting: RefCell<HashMap<Ticket, oneshot::Sender<bool>>>,
    /// A flush is scheduled or under way: rows that arrive join it.
    flushing: Cell<bool>,
    /// A batch is on its way to D1; an erasure waits for it before its rows leave D1.
    writing: Cell<bool>,
    written: RefCell<Vec<oneshot::Sender<()>>>,
    erased: RefCell<VecDeque<String>>,
}

impl SiteMirror {
    pub fn new(env: Env) -> Rc<SiteMirror> {
        Rc::new(SiteMirror {
            env,
            queue: RefCell::default(),
            waiting: RefCell::default(),
            flushing: Cell::new(false),
            writing: Cell::new(false),
            written: RefCell::default(),
            erased: RefCell::default(),
        })
    }

    /// Queues a conversation's rows for the next batch. The answer says whether they are in
    /// D1; dropped (an erased conversation) or failed reads as `false`.
    pub fn queue(self: &Rc<Self>, state: &State, rows: MirrorRows) -> oneshot::Receiver<bool> {
        let (answer, confirmation) = oneshot::channel();
        if self.erased.borrow().contains(&rows.conversation.id) {
            let _ = answer.send(false);
            return confirmation;
        }
        let ticket = self.queue.borrow_mut().push(rows);
        self.waiting.borrow_mut().insert(ticket, answer);
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
            let batch = self.queue.borrow_mut().take(MAX_STATEMENTS);
            if batch.is_empty() {
                break;
            }
            self.writing.set(true);
            let outcome = match self.env.d1("DB") {
                Ok(db) => crate::mirror::write(&db, batch.iter().map(|(_, rows)| rows)).await,
                Err(e) => Err(e.to_string()),
            };
            self.writing.set(false);
            for done in self.written.borrow_mut().drain(..) {
                let _ = done.send(());
            }
            let written = outcome.is_ok();
            match outcome {
                Ok(()) => Log::info("mirror_batch_written")
                    .field("conversations", batch.len())
                    .emit(),
                // The conversations copy their own rows, with their own retries.
                Err(detail) => Log::warn("mirror_batch_failed")
                    .error_class("d1_unavailable")
                    .field("conversations", batch.len())
                    .field("detail", detail)
                    .emit(),
            }
            self.answer(batch.into_iter().map(|(ticket, _)| ticket), written);
        }
        self.flushing.set(false);
    }

    fn answer(&self, tickets: impl IntoIterator<Item = Ticket>, written: bool) {
        let mut waiting = self.waiting.borrow_mut();
        for ticket in tickets {
            if let Some(answer) = waiting.remove(&ticket) {
                let _ = answer.send(written);
            }
        }
    }

    /// An erased conversation: its queued rows are dropped, and the batch on its way to D1
    /// (which may carry some) lands before the caller deletes its rows from D1.
    pub async fn forget(&self, conversation: &str) {
        {
            let mut erased = self.erased.borrow_mut();
            if erased.len() == REMEMBERED_ERASURES {
                erased.pop_front();
            }
            erased.push_back(conversation.to_string());
        }
        let dropped = self.queue.borrow_mut().drop_conversation(conversation);
        self.answer(dropped, false);
        while self.writing.get() {
            let (done, landed) = oneshot::channel();
            self.written.borrow_mut().push(done);
            let _ = landed.await;
        }
    }
}
