//! A conversation's standing line to its site's object: one WebSocket that carries its
//! activity notifications (and their rows for D1) and brings back the site's answers.
//!
//! Why not a request per notification: every request to another object makes a Request, a
//! Response and their headers and bodies on both sides, and under load the runtime's garbage
//! collector frees those in one go, stalling every conversation of the process for tens of
//! milliseconds (the benchmark's p99). A frame on an open socket makes none of them.
//!
//! The line opens when a conversation is busy (a second notification within 5 s of the last),
//! is shared by those that follow, and closes after 5 quiet seconds so the conversation can
//! hibernate (an outgoing socket keeps an object in memory). Nothing depends on it: a notification
//! that cannot go on the line goes as a request, and one whose answer is lost (the line broke,
//! the site restarted, no answer in time) reads as "not copied", which the conversation's own
//! mirror run then covers.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use worker::{Env, Headers, Method, Request, RequestInit, State, WebSocket, WebsocketEvent};

use crate::internal::{INTERNAL_BASE, SITE_HEADER};
use crate::log::Log;
use crate::platform::now_ms;
use crate::site_object::SiteRequest;

/// The site object's path that upgrades to a line.
pub const LINK_PATH: &str = "/link";
/// The hibernation tag of a line on the site's side (its consoles carry another).
pub const LINK_TAG: &str = "link";
/// A line unused this long closes (an open one keeps the conversation from hibernating).
const IDLE_CLOSE_MS: i64 = 5_000;
/// An answer not back in this long reads as "not copied".
const ANSWER_TIMEOUT_MS: i64 = 10_000;
/// How often an open line looks for overdue answers and for idleness.
const SWEEP_MS: u64 = 1_000;

/// A notification on the line, as the site reads it.
#[derive(Deserialize)]
pub struct LinkFrame {
    pub id: u64,
    pub request: SiteRequest,
}

/// The same, as the conversation writes it.
#[derive(Serialize)]
struct OutgoingFrame<'a> {
    id: u64,
    request: &'a SiteRequest,
}

/// The site's answer to notification `id`: whether its rows are in D1.
#[derive(Serialize, Deserialize)]
pub struct LinkAnswer {
    pub id: u64,
    pub mirrored: bool,
}

/// The notification could not go on the line; the caller sends it as a request.
pub struct NotSent;

enum Line {
    Closed,
    /// Being opened by one notification; the others meanwhile go as requests.
    Opening,
    Open {
        socket: WebSocket,
        /// Which opening this is, so a reader that ends late does not close a newer line.
        generation: u64,
    },
}

/// Notifications sent on the line and not answered yet: when each was sent, and its waiter.
type Pending = BTreeMap<u64, (i64, oneshot::Sender<bool>)>;

pub struct SiteLink {
    /// Called when the line closes after a quiet spell (the conversation saves what it learnt).
    on_quiet: Box<dyn Fn()>,
    line: RefCell<Line>,
    pending: RefCell<Pending>,
    next_id: Cell<u64>,
    generation: Cell<u64>,
    last_used: Cell<i64>,
    /// When the conversation last had something to tell its site.
    last_notified: Cell<i64>,
}

impl SiteLink {
    pub fn new(on_quiet: Box<dyn Fn()>) -> Rc<SiteLink> {
        Rc::new(SiteLink {
            on_quiet,
            line: RefCell::new(Line::Closed),
            pending: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(0),
            generation: Cell::new(0),
            last_used: Cell::new(0),
            last_notified: Cell::new(i64::MIN / 2),
        })
    }

    /// Sends `request` to the site on the line (opening it if need be) and waits for the
    /// answer: whether the rows it carries are in D1. `Err(NotSent)` when it did not go.
    pub async fn notify(
        self: &Rc<Self>,
        state: &State,
        env: &Env,
        site: &str,
        conversation: &str,
        request: &SiteRequest,
    ) -> Result<bool, NotSent> {
        // A line pays off for a conversation that is busy; one event after a quiet spell goes
        // as a request, so a sparse conversation does not open (and close) a line per event.
        let now = now_ms();
        let busy = now - self.last_notified.replace(now) < IDLE_CLOSE_MS;
        if matches!(*self.line.borrow(), Line::Closed) {
            if !busy {
                return Err(NotSent);
            }
            self.open(state, env, site, conversation).await?;
        }
        let answer = self.send(request)?;
        Ok(answer.await.unwrap_or(false))
    }

    fn send(&self, request: &SiteRequest) -> Result<oneshot::Receiver<bool>, NotSent> {
        let Line::Open { socket, .. } = &*self.line.borrow() else {
            return Err(NotSent);
        };
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let text = serde_json::to_string(&OutgoingFrame { id, request }).map_err(|_| NotSent)?;
        let (answer, answered) = oneshot::channel();
        self.pending.borrow_mut().insert(id, (now_ms(), answer));
        if socket.send_with_str(&text).is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(NotSent);
        }
        self.last_used.set(now_ms());
        Ok(answered)
    }

    async fn open(
        self: &Rc<Self>,
        state: &State,
        env: &Env,
        site: &str,
        conversation: &str,
    ) -> Result<(), NotSent> {
        *self.line.borrow_mut() = Line::Opening;
        let socket = match connect(env, site).await {
            Ok(socket) => socket,
            Err(e) => {
                *self.line.borrow_mut() = Line::Closed;
                Log::warn("site_link_failed")
                    .site(site)
                    .conversation(conversation)
                    .field("detail", e.to_string())
                    .emit();
                return Err(NotSent);
            }
        };
        Log::info("site_link_opened")
            .site(site)
            .conversation(conversation)
            .emit();
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        self.last_used.set(now_ms());
        *self.line.borrow_mut() = Line::Open {
            socket: socket.clone(),
            generation,
        };
        let reader = self.clone();
        state.wait_until(async move { reader.read(socket, generation).await });
        let sweeper = self.clone();
        state.wait_until(async move { sweeper.sweep(generation).await });
        Ok(())
    }

    /// Takes the site's answers until the line ends, then gives up on what is still unanswered.
    async fn read(&self, socket: WebSocket, generation: u64) {
        if let Ok(mut events) = socket.events() {
            while let Some(event) = events.next().await {
                match event {
                    Ok(WebsocketEvent::Message(message)) => {
                        let Some(answer) = message
                            .text()
                            .and_then(|t| serde_json::from_str::<LinkAnswer>(&t).ok())
                        else {
                            continue;
                        };
                        if let Some((_, waiter)) = self.pending.borrow_mut().remove(&answer.id) {
                            let _ = waiter.send(answer.mirrored);
                        }
                    }
                    Ok(WebsocketEvent::Close(_)) | Err(_) => break,
                }
            }
        }
        self.end(generation);
    }

    /// While the line is open: answers overdue read as "not copied", and a quiet line closes.
    async fn sweep(&self, generation: u64) {
        loop {
            worker::Delay::from(Duration::from_millis(SWEEP_MS)).await;
            if !self.is_open(generation) {
                return;
            }
            let now = now_ms();
            let overdue: Vec<u64> = self
                .pending
                .borrow()
                .iter()
                .filter(|(_, (sent, _))| now - sent >= ANSWER_TIMEOUT_MS)
                .map(|(id, _)| *id)
                .collect();
            for id in overdue {
                if let Some((_, waiter)) = self.pending.borrow_mut().remove(&id) {
                    let _ = waiter.send(false);
                }
            }
            if self.pending.borrow().is_empty() && now - self.last_used.get() >= IDLE_CLOSE_MS {
                if let Line::Open { socket, .. } = &*self.line.borrow() {
                    let _ = socket.close(Some(1000), Some("idle"));
                }
                self.end(generation);
                (self.on_quiet)();
                return;
            }
        }
    }

    fn is_open(&self, generation: u64) -> bool {
        matches!(*self.line.borrow(), Line::Open { generation: g, .. } if g == generation)
    }

    /// The line of `generation` is over: what it still owed reads as "not copied".
    fn end(&self, generation: u64) {
        if !self.is_open(generation) {
            return;
        }
        *self.line.borrow_mut() = Line::Closed;
        let unanswered = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, (_, waiter)) in unanswered {
            let _ = waiter.send(false);
        }
    }
}

/// Opens a line to the object of `site`.
async fn connect(env: &Env, site: &str) -> worker::Result<WebSocket> {
    let stub = env.durable_object("SITE")?.id_from_name(site)?.get_stub()?;
    let headers = Headers::new();
    headers.set(SITE_HEADER, site)?;
    headers.set("upgrade", "websocket")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&format!("{INTERNAL_BASE}{LINK_PATH}"), &init)?;
    let response = stub.fetch_with_request(request).await?;
    let status = response.status_code();
    let socket = response
        .websocket()
        .ok_or_else(|| worker::Error::RustError(format!("status {status}")))?;
    socket.accept()?;
    Ok(socket)
}
