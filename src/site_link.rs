//! The line between a conversation and its site's object: one WebSocket that carries the
//! conversation's activity notifications (with their rows for D1) and brings back the site's
//! answers.
//!
//! Why not a request per notification: every request to another object makes a Request, a
//! Response and their headers and bodies on both sides, and under load the runtime's garbage
//! collector frees those in one go, stalling every object of the process for tens of
//! milliseconds (the benchmark's p99). A frame on an open socket makes none of them.
//!
//! The site opens the line, when a conversation without one sends it a notification as a
//! request. The conversation accepts it as a hibernatable socket, so the line costs the
//! conversation nothing while it sleeps; the site holds the outgoing end (which keeps the site
//! in memory) and closes lines that stay quiet for a minute, so a quiet site can hibernate too.
//!
//! Nothing depends on the line: a conversation without one sends its notification as a request,
//! and a notification whose answer is lost (the line broke, the site restarted, no answer within
//! 10 s) reads as "not copied", which the conversation's own mirror run then covers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use worker::{
    Env, Headers, Method, Request, RequestInit, Response, State, WebSocket, WebSocketPair,
    WebsocketEvent,
};

use crate::answers::Answers;
use crate::internal::INTERNAL_BASE;
use crate::log::Log;
use crate::platform::now_ms;
use crate::site_object::{Site, SiteRequest};

/// The conversation object's path that takes a line.
pub const LINE_PATH: &str = "/site-line";
/// The hibernation tag of the line on the conversation's side.
pub const LINE_TAG: &str = "site-line";
/// An answer not back in this long reads as "not copied".
const ANSWER_TIMEOUT_MS: i64 = 10_000;
/// A line the site has not heard on for this long is closed.
const LINE_IDLE_MS: i64 = 60_000;
/// How often a site with lines looks for quiet ones.
const LINE_SWEEP_MS: u64 = 10_000;

/// A notification on the line, as the site reads it.
struct LineFrame {
    id: u64,
    request: SiteRequest,
}

impl LineFrame {
    /// Reads a frame as [`OutgoingFrame`] writes it; the request's text goes to its own
    /// decoder as it is, not through a `serde_json::Value` (one frame per stored message).
    fn from_json(text: &str) -> serde_json::Result<LineFrame> {
        let part = |key| parley_core::json::member(text, key);
        Ok(LineFrame {
            id: parley_core::json::from_str(part("id")?)?,
            request: SiteRequest::from_json(part("request")?)?,
        })
    }
}

/// The same, as the conversation writes it.
#[derive(Serialize)]
struct OutgoingFrame<'a> {
    id: u64,
    request: &'a SiteRequest,
}

/// What the site did with a notification: whether its rows are in D1, and whether routing
/// took its news. The default, "neither", is also what no answer means. A notification sent as
/// a request gets it as its answer's body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteHeard {
    #[serde(default)]
    pub mirrored: bool,
    /// A site of an earlier release does not say: read as "no", so the news is told again
    /// (routing takes it twice without harm).
    #[serde(default)]
    pub routed: bool,
}

/// The site's answer to notification `id` (`SiteHeard`'s fields beside it, not nested: the
/// shape sites of an earlier release send).
#[derive(Serialize, Deserialize)]
struct LineAnswer {
    id: u64,
    #[serde(default)]
    mirrored: bool,
    #[serde(default)]
    routed: bool,
}

/// The notification could not go on a line; the caller sends it as a request.
pub struct NotSent;

// ---------------------------------------------------------------------------------------------
// The conversation's end.

pub struct ConversationLine {
    /// Notifications sent on the line and not answered yet.
    answers: Rc<Answers<u64, SiteHeard>>,
    /// The next notification's id. Starts at a random point in each instance, so an answer
    /// meant for an earlier instance (the line outlives it) cannot confirm another notification.
    next_id: Cell<u64>,
}

impl ConversationLine {
    pub fn new() -> ConversationLine {
        let start = crate::platform::random_16()
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], 0]))
            .unwrap_or(0);
        ConversationLine {
            answers: Answers::new(),
            next_id: Cell::new(start),
        }
    }

    /// Sends `request` on the line, if the site has opened one; the answer says what the site
    /// did with it.
    pub fn send(
        &self,
        state: &State,
        request: &SiteRequest,
    ) -> Result<oneshot::Receiver<SiteHeard>, NotSent> {
        let line = state
            .get_websockets_with_tag(LINE_TAG)
            .into_iter()
            .next()
            .ok_or(NotSent)?;
        // A line whose answers stopped coming is given up: this notification goes as a
        // request, and the site opens a new line.
        if self.answers.take_overdue() > 0 {
            let _ = line.close(Some(1011), Some("no answer"));
            return Err(NotSent);
        }
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        let text = serde_json::to_string(&OutgoingFrame { id, request }).map_err(|_| NotSent)?;
        let answered = self.answers.wait(state, id, ANSWER_TIMEOUT_MS);
        if line.send_with_str(&text).is_err() {
            self.answers.answer(id, SiteHeard::default());
            return Err(NotSent);
        }
        Ok(answered)
    }

    /// A frame from the site on the line: an answer.
    pub fn answered(&self, text: &str) {
        if let Ok(answer) = parley_core::json::from_str::<LineAnswer>(text) {
            let heard = SiteHeard {
                mirrored: answer.mirrored,
                routed: answer.routed,
            };
            self.answers.answer(answer.id, heard);
        }
    }

    /// Line `ws` closed: what it still owed reads as "not copied", unless a newer line has
    /// taken its place (the answers outstanding are then the new line's).
    pub fn closed(&self, state: &State, ws: &WebSocket) {
        let replaced = state
            .get_websockets_with_tag(LINE_TAG)
            .iter()
            .any(|other| other != ws);
        if !replaced {
            self.answers.refuse_all();
        }
    }
}

/// Whether `ws` is the conversation's line to its site.
pub fn is_line(state: &State, ws: &WebSocket) -> bool {
    state.get_tags(ws).iter().any(|tag| tag == LINE_TAG)
}

/// The conversation takes a line its site opens (replacing any older one).
pub fn accept(state: &State) -> worker::Result<Response> {
    for old in state.get_websockets_with_tag(LINE_TAG) {
        let _ = old.close(Some(1000), Some("replaced"));
    }
    let pair = WebSocketPair::new()?;
    state.accept_websocket_with_tags(&pair.server, &[LINE_TAG]);
    Response::from_websocket(pair.client)
}

// ---------------------------------------------------------------------------------------------
// The site's end.

struct Line {
    /// `None` while it is being opened.
    socket: Option<WebSocket>,
    generation: u64,
    last_heard: Cell<i64>,
}

/// The lines a site holds, by conversation.
#[derive(Default)]
pub struct SiteLines {
    lines: RefCell<HashMap<String, Line>>,
    generation: Cell<u64>,
    sweeping: Cell<bool>,
}

impl Site {
    /// Opens a line to `conversation` unless one is open or being opened.
    pub(crate) fn open_line(self: &Rc<Self>, conversation: String) {
        let generation = self.lines.generation.get() + 1;
        {
            let mut lines = self.lines.lines.borrow_mut();
            if lines.contains_key(&conversation) {
                return;
            }
            self.lines.generation.set(generation);
            lines.insert(
                conversation.clone(),
                Line {
                    socket: None,
                    generation,
                    last_heard: Cell::new(now_ms()),
                },
            );
        }
        let me = self.clone();
        self.state.wait_until(async move {
            match connect(&me.env, &conversation).await {
                Ok(socket) => {
                    if let Some(line) = me.lines.lines.borrow_mut().get_mut(&conversation) {
                        line.socket = Some(socket.clone());
                    }
                    Log::info("site_line_opened")
                        .conversation(&conversation)
                        .emit();
                    me.sweep_lines();
                    me.read_line(&conversation, socket, generation).await;
                }
                Err(e) => {
                    Log::warn("site_line_failed")
                        .conversation(&conversation)
                        .field("detail", e.to_string())
                        .emit();
                }
            }
            me.forget_line(&conversation, generation);
        });
    }

    /// Takes the conversation's notifications until the line ends. Each is handled beside the
    /// others, so one waiting for its D1 batch does not hold up the next.
    async fn read_line(self: &Rc<Self>, conversation: &str, socket: WebSocket, generation: u64) {
        let Ok(mut events) = socket.events() else {
            let _ = socket.close(Some(1011), Some("unreadable"));
            return;
        };
        let mut handling = FuturesUnordered::new();
        loop {
            let event = if handling.is_empty() {
                events.next().await
            } else {
                match select(events.next(), handling.next()).await {
                    Either::Left((event, _)) => event,
                    Either::Right(_) => continue,
                }
            };
            let text = match event {
                Some(Ok(WebsocketEvent::Message(message))) => message.text(),
                Some(Ok(WebsocketEvent::Close(_)) | Err(_)) | None => break,
            };
            if let Some(line) = self.lines.lines.borrow().get(conversation) {
                if line.generation == generation {
                    line.last_heard.set(now_ms());
                }
            }
            match text.and_then(|t| LineFrame::from_json(&t).ok()) {
                Some(frame) => handling.push(self.answer(frame, socket.clone())),
                None => Log::warn("site_line_bad_frame")
                    .conversation(conversation)
                    .emit(),
            }
        }
        // What was taken is carried through (routing, the feed, the batch) even though its
        // answer can no longer be sent.
        while handling.next().await.is_some() {}
        // However it ended, the conversation is to know, so it stops sending on this line.
        let _ = socket.close(Some(1000), Some("closing"));
    }

    async fn answer(self: &Rc<Self>, frame: LineFrame, socket: WebSocket) {
        let heard = match frame.request {
            SiteRequest::Activity { events, mirror } => self.activity(events, mirror).await,
            // Only activity travels on a line; anything else is answered "not taken".
            _ => SiteHeard::default(),
        };
        let answer = LineAnswer {
            id: frame.id,
            mirrored: heard.mirrored,
            routed: heard.routed,
        };
        if let Ok(text) = serde_json::to_string(&answer) {
            let _ = socket.send_with_str(&text);
        }
    }

    fn forget_line(&self, conversation: &str, generation: u64) {
        let mut lines = self.lines.lines.borrow_mut();
        if lines
            .get(conversation)
            .is_some_and(|line| line.generation == generation)
        {
            lines.remove(conversation);
        }
    }

    /// While the site holds lines, those quiet for a minute are closed.
    fn sweep_lines(self: &Rc<Self>) {
        if self.lines.sweeping.replace(true) {
            return;
        }
        let me = self.clone();
        self.state.wait_until(async move {
            while !me.lines.lines.borrow().is_empty() {
                worker::Delay::from(Duration::from_millis(LINE_SWEEP_MS)).await;
                let now = now_ms();
                for line in me.lines.lines.borrow().values() {
                    if now - line.last_heard.get() >= LINE_IDLE_MS {
                        if let Some(socket) = &line.socket {
                            let _ = socket.close(Some(1000), Some("idle"));
                        }
                    }
                }
            }
            me.lines.sweeping.set(false);
        });
    }
}

/// Opens a line to the object of `conversation`.
async fn connect(env: &Env, conversation: &str) -> worker::Result<WebSocket> {
    let stub = crate::internal::conversation_stub(env, conversation)?;
    let headers = Headers::new();
    headers.set("upgrade", "websocket")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&format!("{INTERNAL_BASE}{LINE_PATH}"), &init)?;
    let response = stub.fetch_with_request(request).await?;
    let status = response.status_code();
    let socket = response
        .websocket()
        .ok_or_else(|| worker::Error::RustError(format!("status {status}")))?;
    socket.accept()?;
    Ok(socket)
}
