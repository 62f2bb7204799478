//! The Conversation Durable Object: the single writer of one conversation. It runs the core
//! engine against its own SQLite, fans frames out to hibernatable WebSockets, answers the
//! plain-HTTP operations and long-polls, and copies new events to D1 shortly after they land (a
//! timer in the running instance, with the durable alarm as the safety net).

use crate::http::JsonBody;
use std::cell::{Cell, RefCell, RefMut};
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use parley_core::access::can_access;
use parley_core::i18n::Lang;
use parley_core::limits::MAX_POLL_WAIT_SECS;
use parley_core::protocol::{parse_client_frame, ClientFrame};
use parley_core::token::{self, Principal};
use parley_core::{conversation::system_participant, limits::MAX_FRAME_BYTES};
use parley_core::{
    Command, Effect, Engine, EngineConfig, EngineError, ErrorCode, Meta, ServerFrame,
};
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use crate::config::Config;
use crate::http::{
    frame_response, json_response, no_content, read_internal_json, read_internal_with, ApiError,
    ApiResult,
};
use crate::internal::{
    CreateConversation, Operation, OperationRequest, SystemRequest, IP_HEADER, LANG_HEADER,
    SITE_HEADER, TRACE_HEADER,
};
use crate::log::Log;
use crate::mirror;
use crate::platform::{now_ms, Attachments};
use crate::query::from_query;
use crate::site_link::{ConversationLine, NotSent};
use crate::sql_store::SqlStore;

/// WebSocket close codes.
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
/// How long new events wait in the running instance before they are copied to D1 and handed to
/// webhooks: whatever the message rate, a conversation costs at most about one mirror run a
/// second. Nothing waits on it: the log of record is the object's own storage.
const MIRROR_DELAY_MS: u64 = 1000;
/// The durable alarm behind that in-memory timer: should the instance be evicted before its
/// timer runs, the alarm copies what is left. One alarm write per this long of activity, not
/// one per burst (every alarm write and run is a commit of the object's storage).
const MIRROR_SAFETY_MS: i64 = 30_000;
/// Setting: the seq of the last `closed` or `reopened` event the site has not confirmed hearing
/// of ("0" when none). Written with the event, so it survives a crash that loses the
/// notification; the mirror timer and the alarm send the news again until the site takes it.
const ROUTING_NEWS: &str = "routing_news";
/// Setting: the seq of the last `assigned` event an agent wrote themselves (the API's `assign`)
/// that the site has not confirmed hearing of ("0" when none). Kept and told again as
/// `ROUTING_NEWS` is, beside it: routing needs both the status and who took the conversation.
const ASSIGNMENT_NEWS: &str = "assignment_news";
/// The settings routing news waits in until the site confirms it.
const NEWS_KEPT: [&str; 2] = [ROUTING_NEWS, ASSIGNMENT_NEWS];
/// How long a conversation stays quiet (no confirmation from its site, no watermark reached)
/// before the watermarks learnt since its last write are written on their own. Well under the
/// idle time after which the runtime may evict the instance (the pending timer also holds it):
/// a watermark lost to an eviction made the next alarm copy again rows D1 already had.
const MARKS_QUIET_MS: i64 = 5_000;
/// How far a watermark may run ahead of its stored value before an event's commit takes it
/// along. Short of that, the quiet timer or the alarm writes it, and an event costs one SQL
/// statement less. A crash loses about this many events' progress (more if it follows a copy of
/// the conversation's own): they are copied to D1 again, which ignores the repeats.
const MARKS_STRIDE: u64 = 32;
/// How long an erasure waits for the conversation's own copy to D1 to finish. A D1 call takes
/// well under this; past it the erasure goes on (and says so in the log) rather than leave the
/// conversation half erased.
const OWN_COPY_WAIT_MS: i64 = 30_000;
/// How often a conversation that sends events to an agent's socket checks the agent's session
/// again (the session cache's own time): a socket that only pings is answered by the runtime
/// and never shows the object a frame, so an agent signed out, disabled or given another role
/// would otherwise keep receiving the conversation.
const SESSION_RECHECK_MS: i64 = 30_000;

/// What started a mirror run, which decides whether it copies while the site is still to
/// answer for rows it was sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MirrorRun {
    /// The timer leaves them to the site: its batch is normally quicker, and its answer starts
    /// the timer again for anything it missed.
    Timer,
    /// The alarm, the safety net, copies whatever D1 lacks.
    Alarm,
}

/// The seq of the last event among `events` that changes the conversation's status for
/// routing (a close or a reopen).
fn routing_news(events: &[parley_core::Event]) -> Option<u64> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.payload,
                parley_core::EventPayload::Closed {} | parley_core::EventPayload::Reopened {}
            )
        })
        .map(|e| e.seq)
        .max()
}

/// The seq of the last event among `events` in which an agent took the conversation
/// themselves (routing's own assignments are the system's, and routing knows of them).
fn assignment_news(events: &[parley_core::Event]) -> Option<u64> {
    events
        .iter()
        .filter(|e| {
            matches!(e.payload, parley_core::EventPayload::Assigned { .. })
                && e.author.role == parley_core::Role::Agent
        })
        .map(|e| e.seq)
        .max()
}

/// Logs a notification the site did not take (no answer, or an error status).
fn site_notify_failed(meta: &Meta, answer: Result<Response>) {
    let detail = match answer {
        Ok(response) => format!("status {}", response.status_code()),
        Err(e) => e.to_string(),
    };
    Log::warn("site_notify_failed")
        .site(&meta.site)
        .conversation(&meta.id)
        .error_class("site_unavailable")
        .field("detail", detail)
        .emit();
}

/// What a socket carries across hibernation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SocketState {
    principal: Option<Principal>,
    ip: Option<String>,
    lang: Option<String>,
    /// The site the socket was opened through, when it named one.
    site: Option<String>,
    /// The trace id of the upgrade request: every log line of the socket carries it.
    #[serde(default)]
    trace: String,
    /// When the socket was accepted (ms), to close the ones that never sign in.
    #[serde(default)]
    opened_at: i64,
}

impl SocketState {
    fn lang(&self) -> Lang {
        self.lang
            .as_deref()
            .map(Lang::negotiate)
            .unwrap_or_default()
    }
}

/// Who to answer: a socket gets its replies at once, in order with broadcasts; HTTP collects them.
/// Either way replies are shown as the caller may see them (`None`: the system, sees all).
enum Caller<'a> {
    Socket(&'a WebSocket, &'a Principal),
    Http(&'a mut Vec<ServerFrame>, Option<&'a Principal>),
}

/// A frame as `reader` may see it: notes hidden from visitors, personal data masked for agents
/// without the permission.
fn view(frame: &ServerFrame, reader: Option<&Principal>) -> ServerFrame {
    match reader {
        Some(p) => frame.for_reader(p.role(), p.sees_pii()),
        None => frame.clone(),
    }
}

#[durable_object]
pub struct ConversationObject {
    conversation: Rc<Conversation>,
}

impl std::ops::Deref for ConversationObject {
    type Target = Conversation;
    fn deref(&self) -> &Conversation {
        &self.conversation
    }
}

/// The object's state, shared with the work it starts after answering (the mirror timer).
pub struct Conversation {
    /// This conversation itself, for work that outlives the call that starts it.
    me: Weak<Conversation>,
    state: State,
    env: Env,
    store: RefCell<Option<SqlStore>>,
    engine: RefCell<Option<Engine>>,
    pollers: RefCell<Vec<oneshot::Sender<()>>>,
    /// The environment's settings, read once per instance (every message consults them).
    config: Rc<Config>,
    sockets: Attachments<SocketState>,
    /// When the alarm this instance set will ring (`None`: unknown, or it rang), so a burst of
    /// messages costs one alarm write, not one each.
    alarm_at: Cell<Option<i64>>,
    /// The D1 binding, looked up once (a lookup is not free in every runtime).
    d1: std::cell::OnceCell<worker::D1Database>,
    /// A mirror run is due from this instance's timer.
    mirror_timer: Cell<bool>,
    /// A mirror run is under way (the timer's or the alarm's): the other one does not start a
    /// second (webhooks would be handed the same events twice) but asks it to go round again,
    /// for what was written meanwhile.
    draining: Cell<bool>,
    rerun: Cell<bool>,
    /// The conversation was erased in this instance: nothing may write its storage again.
    erased: Cell<bool>,
    /// How far D1 and a webhook-less site's watermark got since they were last written: they
    /// ride on an event's commit once far behind, else on the alarm's commit or a quiet
    /// spell's, so a mirror run costs no commit of its own. Losing them to a crash only repeats
    /// idempotent copying.
    unsaved_mirrored: Cell<Option<u64>>,
    unsaved_webhook: Cell<Option<u64>>,
    /// A timer waits for a quiet spell to write those watermarks, counted from this time.
    marks_timer: Cell<bool>,
    marks_news_at: Cell<i64>,
    /// Notifications to the site that carry rows for D1 and are not answered yet: while there
    /// are any, the timer leaves the copying to the site (see `site_mirror`).
    site_copies: Cell<u32>,
    /// The line its site opened, which carries those notifications (see `site_link`).
    site_line: ConversationLine,
    /// The site's confirmations past a gap, waiting for it to be confirmed too.
    site_confirmed: RefCell<parley_core::mirror::Confirmations>,
    /// Which life of the conversation site answers belong to: an erasure starts a new one, and
    /// answers about the old one are ignored.
    incarnation: Cell<u32>,
    /// An alarm asked for a mirror run that copies whatever D1 lacks.
    alarm_copy: Cell<bool>,
    /// The last alarm left the copying to the site's answers; the next one copies.
    alarm_deferred: Cell<bool>,
    /// The timers of the sockets that have yet to say `hello`.
    hello_timers: crate::unsigned_sockets::HelloTimers,
    /// Whether this instance made sure its stored alarm is really scheduled (see
    /// `recover_alarm`).
    alarm_checked: Cell<bool>,
    /// Held while a socket frame is handled: frames are taken in the order they arrived even
    /// when one waits (a session check in D1), so a participant's quick sends keep their order.
    frames: crate::turns::Turns,
    /// When each agent session with a socket here was last checked (see `SESSION_RECHECK_MS`).
    sessions_checked: RefCell<Vec<(String, i64)>>,
}

impl DurableObject for ConversationObject {
    fn new(state: State, env: Env) -> Self {
        crate::log::configure(&env);
        crate::platform::answer_pings_without_waking(&state);
        let config = Rc::new(Config::from_env(&env));
        let conversation = Rc::new_cyclic(|me| Conversation {
            me: me.clone(),
            state,
            env,
            store: RefCell::new(None),
            engine: RefCell::new(None),
            pollers: RefCell::new(Vec::new()),
            config,
            sockets: Attachments::new(),
            alarm_at: Cell::new(None),
            d1: std::cell::OnceCell::new(),
            mirror_timer: Cell::new(false),
            draining: Cell::new(false),
            rerun: Cell::new(false),
            erased: Cell::new(false),
            unsaved_mirrored: Cell::new(None),
            unsaved_webhook: Cell::new(None),
            marks_timer: Cell::new(false),
            marks_news_at: Cell::new(0),
            site_copies: Cell::new(0),
            site_line: ConversationLine::new(),
            site_confirmed: RefCell::default(),
            incarnation: Cell::new(0),
            alarm_copy: Cell::new(false),
            alarm_deferred: Cell::new(false),
            hello_timers: Default::default(),
            alarm_checked: Cell::new(false),
            frames: crate::turns::Turns::default(),
            sessions_checked: RefCell::new(Vec::new()),
        });
        ConversationObject { conversation }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let lang = header(&req, LANG_HEADER)
            .map(|l| Lang::negotiate(&l))
            .unwrap_or_default();
        let trace = header(&req, TRACE_HEADER).unwrap_or_default();
        self.recover_alarm().await;
        match self.route(&mut req, &trace).await {
            Ok(response) => Ok(response),
            Err(error) => error.response(lang),
        }
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        if self.is_site_line(&ws) {
            if let WebSocketIncomingMessage::String(text) = &message {
                self.site_line.answered(text);
            }
            return Ok(());
        }
        let _turn = self.frames.take().await;
        self.recover_alarm().await;
        let mut socket: SocketState = self
            .sockets
            .get(&ws)
            .map(|s| (*s).clone())
            .unwrap_or_default();
        let text = match message {
            WebSocketIncomingMessage::String(text) => text,
            WebSocketIncomingMessage::Binary(bytes) if bytes.len() > MAX_FRAME_BYTES => {
                return self.refuse_and_close(
                    &ws,
                    &socket,
                    ErrorCode::FrameTooLarge,
                    CLOSE_TOO_BIG,
                );
            }
            WebSocketIncomingMessage::Binary(_) if socket.principal.is_none() => {
                return self.refuse_and_close(&ws, &socket, ErrorCode::BadFrame, CLOSE_POLICY);
            }
            WebSocketIncomingMessage::Binary(_) => {
                send_frame(
                    &ws,
                    &ApiError::from(ErrorCode::BadFrame).frame(socket.lang()),
                );
                return Ok(());
            }
        };
        let frame = match parse_client_frame(&text) {
            Ok(frame) => frame,
            Err(ErrorCode::FrameTooLarge) => {
                return self.refuse_and_close(
                    &ws,
                    &socket,
                    ErrorCode::FrameTooLarge,
                    CLOSE_TOO_BIG,
                );
            }
            Err(code) if socket.principal.is_none() => {
                return self.refuse_and_close(&ws, &socket, code, CLOSE_POLICY);
            }
            Err(code) => {
                send_frame(&ws, &ApiError::from(code).frame(socket.lang()));
                return Ok(());
            }
        };
        let Some(principal) = socket.principal.clone() else {
            return match frame {
                ClientFrame::Hello {
                    token,
                    after,
                    epoch,
                    lang,
                } => {
                    if lang.is_some() {
                        socket.lang = lang;
                    }
                    self.hello(&ws, socket, &token, after, epoch).await
                }
                ClientFrame::Ping {} => {
                    send_frame(&ws, &ServerFrame::Pong {});
                    Ok(())
                }
                _ => self.refuse_and_close(&ws, &socket, ErrorCode::HelloRequired, CLOSE_POLICY),
            };
        };
        // An agent who signed out (or was disabled) is cut off at their next frame.
        if !crate::sessions::still_live(&self.env, principal.session(), now_ms()).await {
            return self.refuse_and_close(&ws, &socket, ErrorCode::SessionEnded, CLOSE_POLICY);
        }
        let who = principal.participant();
        let command = match frame {
            ClientFrame::Hello { .. } => {
                send_frame(
                    &ws,
                    &ApiError::from(ErrorCode::HelloRepeated).frame(socket.lang()),
                );
                return Ok(());
            }
            ClientFrame::Ping {} => {
                send_frame(&ws, &ServerFrame::Pong {});
                return Ok(());
            }
            ClientFrame::Send {
                client_msg_id,
                text,
                note,
                file,
            } => match self.post_command(who, socket.ip.clone(), client_msg_id, text, note, file) {
                Ok(command) => command,
                Err(error) => {
                    send_frame(&ws, &error.frame(socket.lang()));
                    return Ok(());
                }
            },
            ClientFrame::Typing { active } => Command::Typing { who, active },
            ClientFrame::Read { seq } => Command::Read { who, seq },
        };
        if let Err(error) = self
            .execute(command, Caller::Socket(&ws, &principal), &socket.trace)
            .await
        {
            send_frame(&ws, &error.frame(socket.lang()));
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        if self.is_site_line(&ws) {
            self.sockets.forget(&ws);
            self.site_line.closed(&self.state, &ws);
            let _ = ws.close(Some(1000), Some("closing"));
            return Ok(());
        }
        let trace = self
            .sockets
            .get(&ws)
            .map(|s| s.trace.clone())
            .unwrap_or_default();
        self.sockets.forget(&ws);
        self.stop_waiting_for_hello(&ws);
        self.log("socket_closed", &trace).field("code", code).emit();
        // Complete the closing handshake; the peer may already be gone.
        let code = u16::try_from(code)
            .ok()
            .filter(|c| *c == 1000 || (3000..5000).contains(c));
        let _ = ws.close(code.or(Some(1000)), Some("closing"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        let line = self.is_site_line(&ws);
        self.sockets.forget(&ws);
        if line {
            self.site_line.closed(&self.state, &ws);
            return Ok(());
        }
        self.stop_waiting_for_hello(&ws);
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm_at.set(None);
        self.alarm_checked.set(true);
        self.close_if_idle().await;
        self.hand_on(MirrorRun::Alarm).await;
        self.delete_abandoned_files().await;
        if let Ok(Some(store)) = self.with_engine(|_, store| store.clone()) {
            self.save_marks(&store);
        }
        Response::ok("ok")
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn send_frame(ws: &WebSocket, frame: &ServerFrame) {
    // A socket that is already closing cannot be told anything more; it will resume.
    let _ = ws.send_with_str(frame.to_json());
}

/// The engine and its store, borrowed for one step (`Conversation::loaded`).
type Loaded<'a> = (RefMut<'a, Engine>, RefMut<'a, SqlStore>);

impl Conversation {
    fn d1(&self) -> Result<&worker::D1Database> {
        if let Some(db) = self.d1.get() {
            return Ok(db);
        }
        let db = self.env.d1("DB")?;
        Ok(self.d1.get_or_init(|| db))
    }

    fn config(&self) -> Rc<Config> {
        self.config.clone()
    }

    /// Runs `f` with the store and the engine, loading them on first use after a wake-up.
    /// `Ok(None)` means the conversation does not exist.
    fn with_engine<R>(
        &self,
        f: impl FnOnce(&mut Engine, &mut SqlStore) -> R,
    ) -> std::result::Result<Option<R>, ApiError> {
        Ok(self
            .loaded()?
            .map(|(mut engine, mut store)| f(&mut engine, &mut store)))
    }

    /// The engine and its store, loaded on first use after a wake-up; `None` when the
    /// conversation does not exist. Kept out of the generic `with_engine`, so the Worker holds
    /// one copy of it rather than one per caller.
    fn loaded(&self) -> std::result::Result<Option<Loaded<'_>>, ApiError> {
        if self.erased.get() {
            // Opening the store would create its tables again.
            return Ok(None);
        }
        let mut store_slot = self.store.borrow_mut();
        if store_slot.is_none() {
            *store_slot = Some(
                SqlStore::open(self.state.storage().sql())
                    .map_err(|e| self.storage_error(&e.to_string()))?,
            );
        }
        let mut engine_slot = self.engine.borrow_mut();
        if engine_slot.is_none() {
            let store = store_slot.as_ref().ok_or(ErrorCode::Internal)?;
            self.after_restore(store)?;
            *engine_slot = Engine::load(store, self.engine_config())
                .map_err(|e| self.storage_error(&e.to_string()))?;
        }
        let Ok(engine) = RefMut::filter_map(engine_slot, Option::as_mut) else {
            return Ok(None);
        };
        let store = RefMut::filter_map(store_slot, Option::as_mut)
            .map_err(|_| ApiError::from(ErrorCode::Internal))?;
        Ok(Some((engine, store)))
    }

    /// After a backup was restored, the log may be older than what clients hold: a new epoch
    /// makes every resuming client reset and reload rather than continue on another history.
    fn after_restore(&self, store: &SqlStore) -> std::result::Result<(), ApiError> {
        let Some(restore_id) = self.config().restore_id.clone() else {
            return Ok(());
        };
        if parley_core::Store::load_meta(store)
            .map_err(|e| self.storage_error(&e.to_string()))?
            .is_none()
        {
            return Ok(());
        }
        let marker = store
            .restore_marker()
            .map_err(|e| self.storage_error(&e.to_string()))?;
        if marker.as_deref() == Some(restore_id.as_str()) {
            return Ok(());
        }
        let epoch = crate::platform::random_16()
            .map(|b| parley_core::ids::mint(parley_core::ids::IdKind::Epoch, &b))
            .map_err(|_| ApiError::from(ErrorCode::Internal))?;
        store
            .rotate_epoch(&epoch, &restore_id)
            .map_err(|e| self.storage_error(&e.to_string()))
    }

    /// Whether an agent's sign-in session still stands (visitors have none). If D1 cannot be
    /// asked, the token alone decides: chat goes on through a D1 outage.
    fn engine_config(&self) -> EngineConfig {
        self.config().engine()
    }

    fn storage_error(&self, detail: &str) -> ApiError {
        Log::error("storage_failed")
            .error_class("storage_unavailable")
            .field("detail", detail)
            .emit();
        ErrorCode::StorageUnavailable.into()
    }

    fn meta(&self) -> std::result::Result<Meta, ApiError> {
        self.with_engine(|engine, _| engine.meta().clone())?
            .ok_or_else(|| ErrorCode::NotFound.into())
    }

    /// Runs a command: storage first (inside the engine), then replies and broadcasts.
    async fn execute(
        &self,
        command: Command,
        mut caller: Caller<'_>,
        trace: &str,
    ) -> std::result::Result<(), ApiError> {
        let kind = command_name(&command);
        // Any failure to store names the message, so its sender retries that one at once
        // instead of waiting for an ack that will not come.
        let client_msg_id = command.client_msg_id().map(str::to_string);
        let about_message = |error: ApiError| ApiError {
            client_msg_id: error.client_msg_id.or_else(|| client_msg_id.clone()),
            ..error
        };
        if writes_log(&command) {
            // Armed before the write, so a crash straight after it still leaves the alarm that
            // copies the new event to D1.
            self.wake_within(MIRROR_SAFETY_MS).await;
        }
        let now = now_ms();
        let outcome = self
            .with_engine(|engine, store| {
                let outcome = engine.handle(store, command, now);
                if let Ok(effects) = &outcome {
                    if effects.iter().any(|e| matches!(e, Effect::Mirror)) {
                        // The same commit as the event: no write of its own.
                        self.save_marks_far_behind(store);
                    }
                }
                outcome
            })
            .map_err(about_message)?
            .ok_or(ErrorCode::NotFound)?;
        let effects = match outcome {
            Ok(effects) => effects,
            Err(EngineError::Rejected {
                code,
                client_msg_id,
                retry_after_ms,
            }) => {
                let over = match caller {
                    Caller::Socket(..) => "socket",
                    Caller::Http(..) => "http",
                };
                self.log("command_refused", trace)
                    .field("command", kind)
                    .field("over", over)
                    .error_class(code.as_str())
                    .emit();
                return Err(ApiError {
                    code,
                    client_msg_id,
                    retry_after_ms,
                    field: None,
                });
            }
            Err(EngineError::Store(e)) => {
                return Err(about_message(self.storage_error(&e.to_string())))
            }
        };
        let mut mirror = false;
        let mut appended = Vec::new();
        let mut agent_read = None;
        for effect in effects {
            match effect {
                Effect::Reply(frame) => match &mut caller {
                    Caller::Socket(ws, reader) => send_frame(ws, &view(&frame, Some(reader))),
                    Caller::Http(replies, reader) => replies.push(view(&frame, *reader)),
                },
                Effect::Broadcast(ServerFrame::Read { participant, seq }) => {
                    if participant.starts_with(parley_core::ids::IdKind::Agent.prefix()) {
                        agent_read = Some((participant.clone(), seq));
                    }
                    self.broadcast(&ServerFrame::Read { participant, seq }, None);
                }
                Effect::Broadcast(frame) => {
                    if let ServerFrame::Event(event) = &frame {
                        self.log("event_stored", trace)
                            .seq(event.seq)
                            .field("kind", event.payload.kind())
                            .emit();
                        appended.push(event.clone());
                    }
                    self.broadcast(&frame, None);
                }
                Effect::BroadcastExcept { participant, frame } => {
                    self.broadcast(&frame, Some(&participant))
                }
                Effect::Mirror => mirror = true,
                Effect::Wake => self.wake_pollers(),
            }
        }
        let mut site_told = false;
        let mut webhooks = true;
        if !appended.is_empty() {
            // The site hears of these events before anything here awaits: automation's replies
            // (told in their own turn) and a concurrent command's events would otherwise reach
            // it first, out of `seq` order, and the agents' feed would end on an older event.
            // In this turn, so in the events' own commit.
            for (key, seq) in [
                (ROUTING_NEWS, routing_news(&appended)),
                (ASSIGNMENT_NEWS, assignment_news(&appended)),
            ] {
                if let Some(seq) = seq {
                    let _ = self.with_engine(|_, store| store.set_setting(key, &seq.to_string()));
                }
            }
            if let Ok(meta) = self.meta() {
                let site = meta.site.clone();
                site_told = self.notify_site(meta, &appended);
                let automation = crate::automation::load(&self.env, &site).await;
                webhooks = automation.webhooks;
                self.automate(&automation, &appended).await;
            }
            self.translate_later(&appended).await;
        }
        // Once the site is told, its answer decides whether this instance copies the events to
        // D1 itself (`site_copied`): the timer is then needed only to offer them to webhooks.
        if mirror && (!site_told || webhooks) {
            self.start_mirror_timer();
        }
        if let Some((agent, seq)) = agent_read {
            self.tell_site_read(&agent, seq);
        }
        Ok(())
    }

    /// The site's automations after new events: replies to a visitor's message (away reply,
    /// keywords) and the idle timer that closes a quiet conversation.
    async fn automate(
        &self,
        site: &crate::automation::SiteAutomation,
        events: &[parley_core::Event],
    ) {
        let Ok(meta) = self.meta() else { return };
        let now = now_ms();
        // A reopen restarts the idle clock too: the conversation was just closed, and the idle
        // time before it would close it again under the agent who reopened it.
        let activity = events.iter().any(|e| {
            matches!(
                e.payload,
                parley_core::EventPayload::Message { .. }
                    | parley_core::EventPayload::File { .. }
                    | parley_core::EventPayload::Reopened { .. }
            )
        });
        if activity && meta.status == parley_core::Status::Open {
            if let Some(due) = parley_core::automation::close_due(&site.settings, now) {
                let _ = self
                    .with_engine(|_, store| store.set_setting("last_activity", &now.to_string()));
                self.wake_within(due - now + 1000).await;
            }
        }
        let language = self
            .setting("visitor_language")
            .unwrap_or_else(|| "en".into());
        let bot_active = self.setting("bot_active").is_some_and(|v| v == "1");
        if bot_active && site.bot.enabled {
            for event in events {
                let (parley_core::EventPayload::Message { text }, parley_core::Role::Visitor) =
                    (&event.payload, event.author.role)
                else {
                    continue;
                };
                if parley_core::bot::wants_human(&site.bot, text) {
                    let _ = Box::pin(self.hand_off(system_participant(), "")).await;
                    break;
                }
                let history = self
                    .with_engine(|engine, store| {
                        parley_core::Store::events_before(store, engine.meta().head + 1, 60)
                    })
                    .ok()
                    .flatten()
                    .and_then(|r| r.ok())
                    .unwrap_or_default();
                self.state.wait_until(crate::bot::answer(
                    self.env.clone(),
                    site.bot.clone(),
                    meta.site.clone(),
                    meta.id.clone(),
                    event.seq,
                    history,
                ));
            }
        }
        let open = site.routing.hours.is_open(now);
        for event in events {
            let (parley_core::EventPayload::Message { text }, parley_core::Role::Visitor) =
                (&event.payload, event.author.role)
            else {
                continue;
            };
            for reply in
                parley_core::automation::replies(&site.settings, text, &language, open, now)
            {
                let command = Command::Automated {
                    key: reply.key,
                    text: reply.text,
                    name: None,
                };
                let mut replies = Vec::new();
                // Box::pin: execute() ends by calling automate() again, for the new events.
                if let Err(e) =
                    Box::pin(self.execute(command, Caller::Http(&mut replies, None), "")).await
                {
                    self.in_context(Log::warn("automation_failed"), "")
                        .error_class(e.code.as_str())
                        .emit();
                }
            }
        }
    }

    /// Hands the conversation from the bot to people: a `handoff` event, then routing.
    async fn hand_off(&self, who: parley_core::Participant, trace: &str) -> ApiResult {
        let meta = self.meta()?;
        let active = self.setting("bot_active").is_some_and(|v| v == "1");
        if !active {
            return no_content().map_err(|_| ErrorCode::Internal.into());
        }
        self.with_engine(|_, store| store.set_setting("bot_active", "0"))?
            .ok_or(ErrorCode::NotFound)?
            .map_err(|e| self.storage_error(&e.to_string()))?;
        let mut replies = Vec::new();
        Box::pin(self.execute(
            Command::Handoff { who },
            Caller::Http(&mut replies, None),
            trace,
        ))
        .await?;
        // Routed as it would have been at creation (page, language, country, the embed's
        // department), had no bot answered first.
        let context = self
            .setting("routing_context")
            .and_then(|json| parley_core::json::from_str(&json).ok())
            .unwrap_or_default();
        let request = crate::site_object::SiteRequest::NewConversation {
            conversation: meta.id.clone(),
            context,
        };
        if let Err(e) = crate::site_object::send(&self.env, &meta.site, &request).await {
            self.in_context(Log::error("routing_failed"), trace)
                .error_class("site_unavailable")
                .field("detail", e.to_string())
                .emit();
        }
        match replies.into_iter().next() {
            Some(frame) => frame_response(&frame, 200),
            None => no_content(),
        }
        .map_err(|_| ErrorCode::Internal.into())
    }

    /// Closes the conversation if it has been idle past the site's limit (run from the alarm).
    async fn close_if_idle(&self) {
        let Ok(meta) = self.meta() else { return };
        if meta.status != parley_core::Status::Open {
            return;
        }
        let site = crate::automation::load(&self.env, &meta.site).await;
        let last = self
            .setting("last_activity")
            .and_then(|v| v.parse::<i64>().ok());
        let Some(last) = last else { return };
        let Some(due) = parley_core::automation::close_due(&site.settings, last) else {
            return;
        };
        let now = now_ms();
        if now < due {
            self.wake_within(due - now + 1000).await;
            return;
        }
        let language = self
            .setting("visitor_language")
            .unwrap_or_else(|| "en".into());
        if let Some(notice) = site
            .settings
            .close_notice
            .as_ref()
            .and_then(|t| parley_core::automation::localized(t, &language))
        {
            let command = Command::Automated {
                key: format!("auto:close:{last}"),
                text: notice,
                name: None,
            };
            let mut replies = Vec::new();
            let _ = self
                .execute(command, Caller::Http(&mut replies, None), "")
                .await;
        }
        let mut replies = Vec::new();
        let close = Command::Close {
            who: system_participant(),
        };
        if let Err(e) = self
            .execute(close, Caller::Http(&mut replies, None), "")
            .await
        {
            self.in_context(Log::warn("auto_close_failed"), "")
                .error_class(e.code.as_str())
                .emit();
        }
    }

    /// A small setting of this conversation (visitor language, bot mode, last activity).
    fn setting(&self, key: &str) -> Option<String> {
        self.with_engine(|_, store| store.setting(key))
            .ok()
            .flatten()
            .and_then(|r| r.ok())
            .flatten()
    }

    /// Remembers the language a visitor reads, for translating agents' replies to them.
    fn remember_visitor_language(&self, principal: &Principal, lang: Option<&str>) {
        let (Principal::Visitor { .. }, Some(lang)) = (principal, lang) else {
            return;
        };
        let tag = parley_core::translate::primary(lang);
        if tag.is_empty() || tag.len() > 8 {
            return;
        }
        let _ = self.with_engine(|_, store| store.set_setting("visitor_language", &tag));
    }

    /// Starts background translations of new messages when the site translates: visitors'
    /// messages into the agents' language, agents' replies into the visitor's.
    async fn translate_later(&self, events: &[parley_core::Event]) {
        let messages: Vec<&parley_core::Event> = events
            .iter()
            .filter(|e| matches!(e.payload, parley_core::EventPayload::Message { .. }))
            .collect();
        if messages.is_empty() {
            return;
        }
        let Ok(meta) = self.meta() else { return };
        let Some(settings) = crate::translation::settings(&self.env, &meta.site).await else {
            return;
        };
        let visitor_language = self.setting("visitor_language");
        for event in messages {
            let parley_core::EventPayload::Message { text } = &event.payload else {
                continue;
            };
            let (sender, target) = match event.author.role {
                // The site's own messages (automations, the bot) are written in the visitor's
                // language already.
                parley_core::Role::System => continue,
                parley_core::Role::Visitor => (
                    visitor_language.as_deref(),
                    Some(settings.agent_language.as_str()),
                ),
                _ => (
                    Some(settings.agent_language.as_str()),
                    visitor_language.as_deref(),
                ),
            };
            let Some(target) = target else { continue };
            let Some((from, to)) = parley_core::translate::plan(text, sender, target) else {
                continue;
            };
            let job = crate::translation::Job {
                conversation: meta.id.clone(),
                of: event.seq,
                text: text.clone(),
                from,
                to,
            };
            self.state.wait_until(crate::translation::run(
                self.env.clone(),
                settings.clone(),
                job,
            ));
        }
    }

    /// Tells the site's object what happened here (routing and the agents' inbox feed), with
    /// the events' rows for its next D1 batch. Not on the message path: it runs after the
    /// answer, and a failure loses no message (the timer copies what the site did not). False
    /// when the site was not told (see `send_to_site`).
    fn notify_site(&self, meta: Meta, events: &[parley_core::Event]) -> bool {
        let activity = events
            .iter()
            .map(|e| crate::site_object::Activity::from_event(&meta.id, e))
            .collect();
        let rows = parley_core::mirror::MirrorRows::of(&meta, events);
        self.send_to_site(meta, activity, rows)
    }

    /// Sends the site activity for its feed and routing, with rows for its next D1 batch, and
    /// takes its answer about them. False when nothing was sent.
    fn send_to_site(
        &self,
        meta: Meta,
        activity: Vec<crate::site_object::Activity>,
        rows: parley_core::mirror::MirrorRows,
    ) -> bool {
        // Erased while automation ran: nothing of it may reach D1 again.
        if self.erased.get() {
            return false;
        }
        let Some(me) = self.me.upgrade() else {
            return false;
        };
        let seqs = rows.seqs();
        let incarnation = self.incarnation.get();
        let request = crate::site_object::SiteRequest::Activity {
            events: activity,
            mirror: Some(rows),
        };
        self.site_copies.set(self.site_copies.get() + 1);
        self.state.wait_until(async move {
            let heard = match me.site_line.send(&me.state, &request) {
                Ok(answer) => answer.await.unwrap_or_default(),
                // No line yet: the site opens one when it gets this.
                Err(NotSent) => me.ask_site(&meta, &request).await,
            };
            me.site_copies.set(me.site_copies.get().saturating_sub(1));
            // An answer about an earlier life confirms nothing, but may be the last one
            // awaited: the timer then copies what this life's answers did not confirm.
            let this_life = me.incarnation.get() == incarnation;
            if let Some((first, last)) = seqs.filter(|_| heard.routed && this_life) {
                me.routing_news_heard(first, last);
            }
            me.site_copied(seqs.filter(|_| heard.mirrored && this_life));
        });
        true
    }

    /// The site answered a notification: `confirmed` names the events it wrote to D1. What is
    /// left uncopied once no site answer is awaited, the timer copies.
    fn site_copied(&self, confirmed: Option<(u64, u64)>) {
        if self.erased.get() {
            return;
        }
        let Ok(Some((store, head))) =
            self.with_engine(|engine, store| (store.clone(), engine.meta().head))
        else {
            return;
        };
        let before = self.known_mirrored(&store);
        let mirrored = confirmed.map_or(before, |(first, last)| {
            self.site_confirmed
                .borrow_mut()
                .confirm(before, first, last)
        });
        if mirrored > before {
            self.note_mirrored(&store, mirrored);
        }
        if mirrored < head && self.site_copies.get() == 0 {
            self.start_mirror_timer();
        }
    }

    /// The site confirmed events `first..=last`: routing news among them has been heard.
    fn routing_news_heard(&self, first: u64, last: u64) {
        for key in NEWS_KEPT {
            if self
                .pending_news(key)
                .is_some_and(|seq| (first..=last).contains(&seq))
            {
                self.forget_news(key);
            }
        }
    }

    fn forget_news(&self, key: &str) {
        let _ = self.with_engine(|_, store| store.set_setting(key, "0"));
    }

    fn pending_news(&self, key: &str) -> Option<u64> {
        self.setting(key)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|seq| *seq > 0)
    }

    /// Tells the site again of the last close or reopen, and the last assignment an agent made
    /// themselves, that it has not confirmed: a notification lost with a crashed or restarted
    /// site would otherwise leave routing with the conversation's old status for good (an
    /// agent's seat held by a closed conversation, a reopened one with nobody), or with an
    /// assignment the agent's own choice replaced (which routing would then tell again, or
    /// hand on when its answer clock runs out). Routing takes the same news twice without harm.
    async fn resend_routing_news(&self) {
        let pending: Vec<(&str, u64)> = NEWS_KEPT
            .into_iter()
            .filter_map(|key| Some((key, self.pending_news(key)?)))
            .collect();
        if pending.is_empty() {
            return;
        }
        let Ok(meta) = self.meta() else { return };
        let mut news = Vec::new();
        for (key, seq) in pending {
            let event = self
                .with_engine(|_, store| {
                    parley_core::Store::events_after(store, seq.saturating_sub(1), 1)
                })
                .ok()
                .flatten()
                .and_then(|events| events.ok())
                .and_then(|events| events.into_iter().find(|e| e.seq == seq));
            let Some(event) = event else {
                // Not in the log (a restore took it): there is nothing to tell.
                self.forget_news(key);
                continue;
            };
            let mut activity = crate::site_object::Activity::from_event(&meta.id, &event);
            // A close or reopen is told again as the system's: an agent's reopen, told again
            // after that agent handed the conversation on, would otherwise take it back. An
            // agent's own assignment stays theirs: routing weighs it by its time against what
            // it decided since.
            if key == ROUTING_NEWS {
                activity.author_role = parley_core::Role::System;
            }
            news.push((key, seq, activity));
        }
        if news.is_empty() {
            return;
        }
        news.sort_by_key(|(_, seq, _)| *seq);
        let request = crate::site_object::SiteRequest::Activity {
            events: news
                .iter()
                .map(|(_, _, activity)| activity.clone())
                .collect(),
            mirror: None,
        };
        if self.ask_site(&meta, &request).await.routed {
            for (key, seq, _) in news {
                self.log("routing_news_resent", "").seq(seq).emit();
                if self.pending_news(key) == Some(seq) {
                    self.forget_news(key);
                }
            }
        } else {
            self.wake_within(MIRROR_SAFETY_MS).await;
        }
    }

    /// Sends the site a request and reads what it did with it; a failure reads as "nothing"
    /// (and is logged).
    async fn ask_site(
        &self,
        meta: &Meta,
        request: &crate::site_object::SiteRequest,
    ) -> crate::site_link::SiteHeard {
        match crate::site_object::send(&self.env, &meta.site, request).await {
            Ok(mut response) if response.status_code() < 300 => response
                .json_body::<crate::site_link::SiteHeard>()
                .await
                .unwrap_or_default(),
            answer => {
                site_notify_failed(meta, answer);
                Default::default()
            }
        }
    }

    /// How far D1 is known to have this conversation: stored, or learnt since.
    fn known_mirrored(&self, store: &SqlStore) -> u64 {
        self.known_after(&store.mirror_state().unwrap_or_default())
    }

    fn known_after(&self, stored: &crate::sql_store::MirrorRow) -> u64 {
        stored
            .mirrored_seq
            .max(self.unsaved_mirrored.get().unwrap_or(0))
    }

    /// D1 has every event up to `seq` (the watermark never moves back). It rides on the next
    /// write, unless failures were recorded: then it is written now, to say the mirror is back.
    fn note_mirrored(&self, store: &SqlStore, seq: u64) {
        let stored = store.mirror_state().unwrap_or_default();
        let seq = seq.max(self.known_after(&stored));
        if stored.failures > 0 {
            if store.set_mirror_state(seq, 0).is_ok() {
                self.unsaved_mirrored.set(None);
            }
        } else if seq > stored.mirrored_seq {
            self.unsaved_mirrored.set(Some(seq));
            self.save_marks_when_quiet();
        }
    }

    /// Writes the unsaved watermarks after [`MARKS_QUIET_MS`] without news of them; a write
    /// before then takes them along (see `save_marks`), and the timer finds nothing to do.
    fn save_marks_when_quiet(&self) {
        self.marks_news_at.set(now_ms());
        if self.marks_timer.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            self.marks_timer.set(false);
            return;
        };
        self.state.wait_until(async move {
            loop {
                let wait = me.marks_news_at.get() + MARKS_QUIET_MS - now_ms();
                if wait <= 0 {
                    break;
                }
                worker::Delay::from(Duration::from_millis(wait as u64)).await;
            }
            me.marks_timer.set(false);
            let unsaved = me.unsaved_mirrored.get().is_some() || me.unsaved_webhook.get().is_some();
            if unsaved && !me.erased.get() {
                if let Ok(Some(store)) = me.with_engine(|_, store| store.clone()) {
                    me.save_marks(&store);
                }
            }
        });
    }

    /// An agent's read, for their other devices' unread counts (not on the reading path).
    fn tell_site_read(&self, agent: &str, seq: u64) {
        let Ok(meta) = self.meta() else { return };
        let request = crate::site_object::SiteRequest::AgentRead {
            conversation: meta.id.clone(),
            agent: agent.to_string(),
            seq,
        };
        self.tell_site(meta, request);
    }

    fn tell_site(&self, meta: Meta, request: crate::site_object::SiteRequest) {
        let env = self.env.clone();
        self.state.wait_until(async move {
            let answer = crate::site_object::send(&env, &meta.site, &request).await;
            if !answer.as_ref().is_ok_and(|r| r.status_code() < 300) {
                site_notify_failed(&meta, answer);
            }
        });
    }

    fn log(&self, event: &str, trace: &str) -> Log {
        self.in_context(Log::info(event), trace)
    }

    /// `log` with this conversation's site, id and the trace, when it is written at all.
    fn in_context(&self, mut log: Log, trace: &str) -> Log {
        if !log.written() {
            return log;
        }
        if let Ok(Some(meta)) = self.with_engine(|engine, _| engine.meta().clone()) {
            log = log.site(&meta.site).conversation(&meta.id);
        }
        if trace.is_empty() {
            log
        } else {
            log.trace(trace)
        }
    }

    fn broadcast(&self, frame: &ServerFrame, except: Option<&str>) {
        // Each reader gets the frame as they may see it; the few distinct views are built once.
        let mut views: Vec<((parley_core::Role, bool), String)> = Vec::with_capacity(3);
        let now = now_ms();
        let mut due = Vec::new();
        for ws in self.state.get_websockets() {
            let Some(socket) = self.sockets.get(&ws) else {
                continue;
            };
            let Some(p) = &socket.principal else { continue };
            if let Some(sid) = p.session() {
                if self.session_check_due(sid, now) {
                    due.push(sid.to_string());
                }
            }
            if Some(p.id()) == except {
                continue;
            }
            let key = (p.role(), p.sees_pii());
            let text = match views.iter().find(|(k, _)| *k == key) {
                Some((_, text)) => text.clone(),
                None => {
                    let text = frame.for_reader(key.0, key.1).to_json();
                    views.push((key, text.clone()));
                    text
                }
            };
            let _ = ws.send_with_str(&text);
        }
        if !due.is_empty() {
            self.close_ended_sessions(due);
        }
    }

    /// Whether `sid` is due a check; if so, it counts as checked now.
    fn session_check_due(&self, sid: &str, now: i64) -> bool {
        let mut checked = self.sessions_checked.borrow_mut();
        match checked.iter_mut().find(|(known, _)| known == sid) {
            Some((_, at)) if now - *at < SESSION_RECHECK_MS => false,
            Some((_, at)) => {
                *at = now;
                true
            }
            None => {
                checked.push((sid.to_string(), now));
                true
            }
        }
    }

    /// Checks the sessions in the background and closes the sockets of those that ended.
    fn close_ended_sessions(&self, sids: Vec<String>) {
        let Some(me) = self.me.upgrade() else { return };
        self.state.wait_until(async move {
            for sid in sids {
                if crate::sessions::still_live(&me.env, Some(&sid), now_ms()).await {
                    continue;
                }
                me.sessions_checked
                    .borrow_mut()
                    .retain(|(known, _)| *known != sid);
                for ws in me.state.get_websockets() {
                    let Some(socket) = me.sockets.get(&ws) else {
                        continue;
                    };
                    if socket.principal.as_ref().and_then(|p| p.session()) == Some(sid.as_str()) {
                        let _ = me.refuse_and_close(
                            &ws,
                            &socket,
                            ErrorCode::SessionEnded,
                            CLOSE_POLICY,
                        );
                    }
                }
            }
        });
    }

    fn add_poller(&self, poller: oneshot::Sender<()>) {
        let mut pollers = self.pollers.borrow_mut();
        // Polls that timed out dropped their end: a quiet conversation polled for hours would
        // otherwise keep one sender per poll until its next event.
        pollers.retain(|waiting| !waiting.is_canceled());
        pollers.push(poller);
    }

    fn wake_pollers(&self) {
        for poller in self.pollers.borrow_mut().drain(..) {
            let _ = poller.send(());
        }
    }

    /// Copies new events to D1 and hands them to webhooks about a second from now, from this
    /// instance. The durable alarm, armed before the events were written, is the safety net.
    fn start_mirror_timer(&self) {
        if self.mirror_timer.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        self.state.wait_until(async move {
            worker::Delay::from(Duration::from_millis(MIRROR_DELAY_MS)).await;
            me.mirror_timer.set(false);
            // An engine that is gone was erased or never loaded here: the alarm sees to it.
            if me.engine.borrow().is_some() {
                me.hand_on(MirrorRun::Timer).await;
            }
        });
    }

    /// Mirror and webhook runs until both have caught up (or failed and set their retry).
    async fn hand_on(&self, run: MirrorRun) {
        if run == MirrorRun::Alarm {
            if self.site_copies.get() > 0 && !self.alarm_deferred.replace(true) {
                // The site is writing the newest rows: its answers (or their timeout) start
                // the timer for whatever it leaves. Copying them here as well would be a D1
                // write for nothing. The alarm stays armed in case this instance ends first,
                // and copies next time whatever the site still owes: under steady traffic the
                // timer may never get its turn.
                self.wake_within(MIRROR_SAFETY_MS).await;
            } else {
                self.alarm_deferred.set(false);
                // Held until a run copies: an alarm that rings during a timer's run is not
                // lost in its `rerun`.
                self.alarm_copy.set(true);
            }
        }
        if self.draining.replace(true) {
            self.rerun.set(true);
            return;
        }
        if self.site_copies.get() == 0 && !self.erased.get() {
            self.resend_routing_news().await;
        }
        loop {
            self.rerun.set(false);
            if self.erased.get() {
                break;
            }
            if self.alarm_copy.take() || self.site_copies.get() == 0 {
                self.drain_mirror().await;
            }
            self.drain_webhooks().await;
            if !self.rerun.get() {
                break;
            }
        }
        self.draining.set(false);
    }

    /// Reschedules the stored alarm once per instance (see `platform::recover_alarm`).
    async fn recover_alarm(&self) {
        if let Some(at) =
            crate::platform::recover_alarm(&self.state, &self.env, &self.alarm_checked).await
        {
            self.alarm_at.set(Some(at));
        }
    }

    /// Makes sure the alarm rings within `delay_ms`.
    async fn wake_within(&self, delay_ms: i64) {
        if self.erased.get() {
            return;
        }
        let due = now_ms() + delay_ms.max(0);
        if self.alarm_at.get().is_some_and(|at| at <= due) {
            return;
        }
        let storage = self.state.storage();
        match storage.get_alarm().await {
            Ok(Some(at)) if at <= due => self.alarm_at.set(Some(at)),
            _ => match storage
                .set_alarm(Duration::from_millis(delay_ms.max(0) as u64))
                .await
            {
                Ok(()) => self.alarm_at.set(Some(due)),
                Err(e) => Log::error("alarm_failed")
                    .error_class("storage_unavailable")
                    .field("detail", e.to_string())
                    .emit(),
            },
        }
    }

    /// Deletes uploads never posted within the grace period, from R2 and from the table.
    async fn delete_abandoned_files(&self) {
        let grace = self.config().upload_grace_ms;
        // One query in the usual case: no upload waits to be posted.
        let oldest = self.with_engine(|_, store| store.oldest_unposted_file());
        let Ok(Some(Ok(Some(oldest)))) = oldest else {
            return;
        };
        if oldest + grace > now_ms() {
            self.wake_within(oldest + grace + 1000 - now_ms()).await;
            return;
        }
        let Ok(Some(Ok(stale))) =
            self.with_engine(|_, store| store.abandoned_files(now_ms() - grace))
        else {
            return;
        };
        if !stale.is_empty() {
            let Ok(bucket) = self.env.bucket("ATTACHMENTS") else {
                return;
            };
            let mut deleted = 0u32;
            for file in stale {
                let removed = bucket.delete(&file.r2_key).await.is_ok()
                    && matches!(
                        self.with_engine(|_, store| store.delete_file(&file.id)),
                        Ok(Some(Ok(())))
                    );
                deleted += u32::from(removed);
            }
            self.log("files_abandoned_deleted", "")
                .field("count", deleted)
                .emit();
        }
        // Come back when the oldest upload still within its grace period runs out.
        let oldest = self.with_engine(|_, store| store.oldest_unposted_file());
        if let Ok(Some(Ok(Some(oldest)))) = oldest {
            self.wake_within((oldest + grace + 1000 - now_ms()).max(1000))
                .await;
        }
    }

    /// Hands new events to the site's webhook object (which queues and retries deliveries),
    /// from a watermark of its own, so every event is offered once the object acknowledges it.
    async fn drain_webhooks(&self) {
        let Ok(meta) = self.meta() else { return };
        let stored = self.with_engine(|_, store| store.webhook_seq());
        let Ok(Some(Ok(stored))) = stored else {
            return;
        };
        let mut after = stored.max(self.unsaved_webhook.get().unwrap_or(0));
        if !crate::automation::load(&self.env, &meta.site)
            .await
            .webhooks
        {
            // Nobody to tell: the watermark simply moves on (with the next write).
            if meta.head > after {
                self.unsaved_webhook.set(Some(meta.head));
                self.save_marks_when_quiet();
            }
            return;
        }
        loop {
            // What was written while the last batch was handed over is in this pass.
            let Ok(meta) = self.meta() else { return };
            let batch = self.with_engine(|_, store| {
                parley_core::Store::events_after(store, after, mirror::BATCH)
            });
            let Ok(Some(Ok(events))) = batch else {
                return;
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                return;
            };
            let notices: Vec<_> = events
                .iter()
                .flat_map(|e| parley_core::webhook::notices(&meta.id, &meta.site, &meta.visitor, e))
                .collect();
            if !notices.is_empty() {
                let request = crate::webhook_object::WebhookRequest::Enqueue { notices };
                let sent = match crate::webhook_object::send(&self.env, &meta.site, &request).await
                {
                    Ok(r) if r.status_code() < 300 => Ok(()),
                    Ok(r) => Err(format!("status {}", r.status_code())),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(detail) = sent {
                    Log::warn("webhook_enqueue_failed")
                        .site(&meta.site)
                        .conversation(&meta.id)
                        .error_class("site_unavailable")
                        .field("detail", detail)
                        .emit();
                    self.wake_within(5000).await;
                    return;
                }
            }
            // Written at once: handing the same events over twice would deliver them twice. If
            // the write fails, stop: the next run starts from what storage says.
            self.unsaved_webhook.set(None);
            if !matches!(
                self.with_engine(|_, store| store.set_webhook_seq(last)),
                Ok(Some(Ok(())))
            ) {
                return;
            }
            after = last;
            if last >= meta.head {
                return;
            }
        }
    }

    /// Copies the events D1 lacks, batch by batch; on a failure the alarm retries with backoff.
    async fn drain_mirror(&self) {
        let db = match self.d1() {
            Ok(db) => db,
            Err(e) => {
                Log::error("mirror_failed")
                    .error_class("d1_binding")
                    .field("detail", e.to_string())
                    .emit();
                return;
            }
        };
        // A handle of its own: the drain awaits D1 while other events use the store.
        let Ok(Some(store)) = self.with_engine(|_, store| store.clone()) else {
            return;
        };
        let mut copied = false;
        loop {
            // What was written while the last batch was copied (a close, a new assignee) is in
            // this batch's conversation row; the site may have confirmed more meanwhile.
            let Ok(Some(meta)) = self.with_engine(|engine, _| engine.meta().clone()) else {
                return;
            };
            let mirrored = self.known_mirrored(&store);
            if mirrored >= meta.head && !copied {
                // The site's batches have it all (or nothing was written).
                self.note_mirrored(&store, mirrored);
                return;
            }
            let life = self.incarnation.get();
            let outcome = mirror::drain(&store, &meta, db, mirrored).await;
            // Erased (and perhaps created again) while the batch was on its way: nothing about
            // the old life may be recorded in the new one.
            if self.erased.get() || self.incarnation.get() != life {
                return;
            }
            match outcome {
                Ok(drained) => {
                    copied = true;
                    self.note_mirrored(&store, drained.mirrored_seq);
                    if !drained.more {
                        Log::info("mirror_caught_up")
                            .site(&meta.site)
                            .conversation(&meta.id)
                            .seq(self.known_mirrored(&store))
                            .emit();
                        return;
                    }
                }
                Err(detail) => {
                    let stored = store.mirror_state().unwrap_or_default();
                    let failures = stored.failures.saturating_add(1);
                    let mirrored = self.known_after(&stored);
                    let _ = store.set_mirror_state(mirrored, failures);
                    self.unsaved_mirrored.set(None);
                    let delay = mirror::retry_delay_ms(failures);
                    Log::warn("mirror_failed")
                        .site(&meta.site)
                        .conversation(&meta.id)
                        .seq(mirrored)
                        .error_class("d1_unavailable")
                        .field("failures", failures)
                        .field("retry_in_ms", delay)
                        .field("detail", detail)
                        .emit();
                    self.wake_within(delay).await;
                    return;
                }
            }
        }
    }

    /// Waits for a mirror run already on its way to D1 (none starts once `erased` is set): the
    /// erasure deletes the conversation's D1 rows after this object answers, and a batch landing
    /// after that would bring them back.
    async fn wait_for_own_copy(&self, meta: &Meta) {
        let deadline = now_ms() + OWN_COPY_WAIT_MS;
        while self.draining.get() {
            if now_ms() >= deadline {
                Log::warn("erase_copy_still_running")
                    .site(&meta.site)
                    .conversation(&meta.id)
                    .error_class("d1_unavailable")
                    .emit();
                return;
            }
            worker::Delay::from(Duration::from_millis(10)).await;
        }
    }

    /// Writes the watermarks with an event's commit once one is [`MARKS_STRIDE`] behind.
    fn save_marks_far_behind(&self, store: &SqlStore) {
        let behind = |unsaved: Option<u64>, stored: Option<u64>| {
            unsaved.is_some_and(|seq| seq >= stored.unwrap_or(0).saturating_add(MARKS_STRIDE))
        };
        let mirrored = store.mirror_state().ok().map(|m| m.mirrored_seq);
        if behind(self.unsaved_mirrored.get(), mirrored)
            || behind(self.unsaved_webhook.get(), store.webhook_seq().ok())
        {
            self.save_marks(store);
        }
    }

    /// Writes the watermarks the mirror and webhook runs reached since the last write.
    fn save_marks(&self, store: &SqlStore) {
        if let Some(seq) = self.unsaved_mirrored.take() {
            let _ = store.set_mirror_state(seq, 0);
        }
        if let Some(seq) = self.unsaved_webhook.take() {
            let _ = store.set_webhook_seq(seq);
        }
    }

    fn refuse_and_close(
        &self,
        ws: &WebSocket,
        socket: &SocketState,
        code: ErrorCode,
        close: u16,
    ) -> Result<()> {
        send_frame(ws, &ApiError::from(code).frame(socket.lang()));
        let _ = ws.close(Some(close), Some(code.as_str()));
        self.stop_waiting_for_hello(ws);
        Ok(())
    }

    async fn hello(
        &self,
        ws: &WebSocket,
        mut socket: SocketState,
        token: &str,
        after: Option<u64>,
        epoch: Option<String>,
    ) -> Result<()> {
        let principal = match token::verify(self.config().token_secret.as_bytes(), token, now_ms())
        {
            Ok(claims) => claims.principal,
            Err(e) => return self.refuse_and_close(ws, &socket, e.code(), CLOSE_POLICY),
        };
        if !crate::sessions::still_live(&self.env, principal.session(), now_ms()).await {
            return self.refuse_and_close(ws, &socket, ErrorCode::SessionEnded, CLOSE_POLICY);
        }
        let meta = match self.meta() {
            Ok(meta) => meta,
            Err(e) => return self.refuse_and_close(ws, &socket, e.code, CLOSE_POLICY),
        };
        let wrong_site = socket.site.as_ref().is_some_and(|site| *site != meta.site);
        if wrong_site || !can_access(&principal, &meta) {
            return self.refuse_and_close(ws, &socket, ErrorCode::NotFound, CLOSE_POLICY);
        }
        let open = self
            .state
            .get_websockets()
            .iter()
            .filter_map(|other| self.sockets.get(other))
            .filter(|other| {
                other
                    .principal
                    .as_ref()
                    .is_some_and(|p| p.id() == principal.id())
            })
            .count();
        if open >= parley_core::limits::MAX_SOCKETS_PER_PARTICIPANT {
            return self.refuse_and_close(ws, &socket, ErrorCode::TooManyConnections, CLOSE_POLICY);
        }
        socket.principal = Some(principal.clone());
        self.sockets.set(ws, socket.clone())?;
        self.stop_waiting_for_hello(ws);
        self.remember_visitor_language(&principal, socket.lang.as_deref());
        let command = Command::Hello {
            who: principal.participant(),
            after,
            epoch,
        };
        if let Err(error) = self
            .execute(command, Caller::Socket(ws, &principal), &socket.trace)
            .await
        {
            send_frame(ws, &error.frame(socket.lang()));
        }
        Ok(())
    }

    async fn route(&self, req: &mut Request, trace: &str) -> ApiResult {
        let path = req.path();
        match path.as_str() {
            "/create" => self.create(req, trace).await,
            "/ws" => self.accept_socket(req),
            "/operation" => self.operation(req, trace).await,
            "/poll" => self.poll(req).await,
            "/system" => self.system(req, trace).await,
            crate::site_link::LINE_PATH => self.accept_site_line(),
            // After a restart: nothing to do but what every request does first (recover_alarm).
            "/wake" => no_content().map_err(|_| ErrorCode::Internal.into()),
            _ => Err(ErrorCode::NotFound.into()),
        }
    }

    /// Whether `ws` is the line from the site rather than a participant's socket (those are
    /// known by their attachment, so only an unknown socket's tags are asked for).
    fn is_site_line(&self, ws: &WebSocket) -> bool {
        self.sockets.get(ws).is_none() && crate::site_link::is_line(&self.state, ws)
    }

    /// The site opens the line that carries this conversation's notifications.
    fn accept_site_line(&self) -> ApiResult {
        if self.erased.get() {
            return Err(ErrorCode::NotFound.into());
        }
        self.meta()?;
        crate::site_link::accept(&self.state).map_err(|_| ErrorCode::Internal.into())
    }

    async fn create(&self, req: &mut Request, trace: &str) -> ApiResult {
        let params: CreateConversation = read_internal_json(req).await?;
        // A retried creation arriving while the conversation is being erased waits for the
        // erasure: taking its mark back now would let files be registered while the bucket is
        // emptied, and keep the storage it then wipes.
        self.erasure_under_way_ends().await;
        // Armed before the first write, as for every write (see `execute`), and before the
        // check below: no wait between the check and the creation.
        self.erased.set(false);
        self.wake_within(MIRROR_SAFETY_MS).await;
        // A retried creation (same visitor, same request id, hence the same id) gets the
        // conversation the first attempt made.
        if let Ok(existing) = self.meta() {
            if existing.visitor != params.visitor {
                return Err(ErrorCode::NotFound.into());
            }
            return json_response(
                &serde_json::json!({ "conversation": existing.id, "epoch": existing.epoch, "head": existing.head }),
                200,
            )
            .map_err(|_| ErrorCode::Internal.into());
        }
        let meta = Meta {
            id: params.id,
            site: params.site,
            team: params.team,
            visitor: params.visitor,
            epoch: params.epoch,
            created_at: now_ms(),
            status: parley_core::Status::Open,
            assignee: None,
            head: 0,
            assigned_since: None,
        };
        let created = {
            let mut store_slot = self.store.borrow_mut();
            if store_slot.is_none() {
                *store_slot = Some(
                    SqlStore::open(self.state.storage().sql())
                        .map_err(|e| self.storage_error(&e.to_string()))?,
                );
            }
            let store = store_slot.as_mut().ok_or(ErrorCode::Internal)?;
            let created = parley_core::EventPayload::Created {
                form: params.form,
                fields: params.fields,
            };
            match Engine::create_with(
                store,
                self.engine_config(),
                meta,
                system_participant(),
                created,
            ) {
                Ok((engine, _)) => {
                    let meta = engine.meta().clone();
                    *self.engine.borrow_mut() = Some(engine);
                    meta
                }
                Err(EngineError::Rejected { code, .. }) => return Err(code.into()),
                Err(EngineError::Store(e)) => return Err(self.storage_error(&e.to_string())),
            }
        };
        // The first event's rows for the site's D1 batch (routing and the feed hear of the
        // conversation from the Worker).
        if let Ok(Some(Ok(first))) =
            self.with_engine(|_, store| parley_core::Store::events_after(store, 0, 1))
        {
            let rows = parley_core::mirror::MirrorRows::of(&created, &first);
            self.send_to_site(created.clone(), Vec::new(), rows);
        }
        if params.bot {
            let routing = serde_json::to_string(&params.routing).unwrap_or_default();
            let _ = self.with_engine(|_, store| {
                store.set_setting("bot_active", "1")?;
                store.set_setting("routing_context", &routing)
            });
        }
        if let Some(language) = params.language.as_deref() {
            let tag = parley_core::translate::primary(language);
            if !tag.is_empty() && tag.len() <= 8 {
                let _ = self.with_engine(|_, store| store.set_setting("visitor_language", &tag));
            }
        }
        if let Some(text) = params.message {
            // The offline form's message: the visitor's first message, deduplicated like any other.
            let send = Command::Send {
                who: parley_core::Participant {
                    id: created.visitor.clone(),
                    role: parley_core::Role::Visitor,
                    name: None,
                },
                ip: header(req, IP_HEADER),
                client_msg_id: "form-message".into(),
                text,
            };
            let mut replies = Vec::new();
            self.execute(send, Caller::Http(&mut replies, None), trace)
                .await?;
        }
        let created = self.meta()?;
        self.start_mirror_timer();
        self.log("event_stored", trace)
            .seq(1)
            .field("kind", "created")
            .emit();
        Log::info("conversation_created")
            .site(&created.site)
            .conversation(&created.id)
            .seq(created.head)
            .trace(trace)
            .emit();
        json_response(
            &serde_json::json!({ "conversation": created.id, "epoch": created.epoch, "head": created.head }),
            201,
        )
        .map_err(|_| ErrorCode::Internal.into())
    }

    /// Accepts any socket: whether the conversation exists, and is the caller's, is answered
    /// after `hello` with the same `not_found`, so a socket is no oracle for conversation ids.
    fn accept_socket(&self, req: &Request) -> ApiResult {
        let now = now_ms();
        let ip = header(req, IP_HEADER);
        let trace = header(req, TRACE_HEADER).unwrap_or_default();
        // Sockets that never signed in: the stale ones go, and one address may hold only a few.
        let room = crate::unsigned_sockets::make_room(
            &self.state,
            ip.as_deref(),
            now,
            |ws| {
                let other = self.sockets.get(ws)?;
                other
                    .principal
                    .is_none()
                    .then(|| crate::unsigned_sockets::Unsigned {
                        ip: other.ip.clone(),
                        opened_at: other.opened_at,
                    })
            },
            |ws| {
                if let Some(other) = self.sockets.get(ws) {
                    let _ =
                        self.refuse_and_close(ws, &other, ErrorCode::TokenMissing, CLOSE_POLICY);
                }
            },
        );
        if let Err(code) = room {
            self.log("socket_refused", &trace)
                .error_class(code.as_str())
                .emit();
            return Err(code.into());
        }
        let pair = WebSocketPair::new().map_err(|_| ApiError::from(ErrorCode::Internal))?;
        self.state.accept_web_socket(&pair.server);
        let socket = SocketState {
            principal: None,
            ip,
            lang: header(req, LANG_HEADER),
            site: header(req, SITE_HEADER),
            trace,
            opened_at: now,
        };
        self.sockets
            .set(&pair.server, socket.clone())
            .map_err(|_| ApiError::from(ErrorCode::Internal))?;
        self.log("socket_opened", &socket.trace).emit();
        self.close_if_silent(pair.server, socket);
        Response::from_websocket(pair.client).map_err(|_| ErrorCode::Internal.into())
    }

    /// Closes the socket if it has not said `hello` in time (while this instance lives; after
    /// an eviction the next socket accepted sweeps it).
    fn close_if_silent(&self, ws: WebSocket, socket: SocketState) {
        let Some(me) = self.me.upgrade() else { return };
        self.hello_timers.start(&self.state, ws, move |ws| {
            me.stop_waiting_for_hello(ws);
            // A socket already closed is not looked up (that would cache it again).
            let open = me.state.get_websockets().contains(ws);
            if open && me.sockets.get(ws).is_some_and(|s| s.principal.is_none()) {
                let _ = me.refuse_and_close(ws, &socket, ErrorCode::TokenMissing, CLOSE_POLICY);
            }
        });
    }

    /// Ends the hello timer of a socket that said hello or closed.
    fn stop_waiting_for_hello(&self, ws: &WebSocket) {
        self.hello_timers.stop(ws);
    }

    async fn operation(&self, req: &mut Request, trace: &str) -> ApiResult {
        let request = read_internal_with(req, OperationRequest::from_json).await?;
        let meta = self.meta()?;
        if !can_access(&request.principal, &meta) {
            return Err(ErrorCode::NotFound.into());
        }
        if matches!(request.operation, Operation::Send { .. }) {
            self.remember_visitor_language(&request.principal, header(req, LANG_HEADER).as_deref());
        }
        let who = request.principal.participant();
        let command = match request.operation {
            Operation::Info => {
                return json_response(
                    &serde_json::json!({
                        "conversation": meta.id,
                        "site": meta.site,
                        "visitor": meta.visitor,
                        "status": meta.status,
                        "assignee": meta.assignee,
                        "epoch": meta.epoch,
                        "head": meta.head,
                        "created_at": meta.created_at,
                    }),
                    200,
                )
                .map_err(|_| ErrorCode::Internal.into());
            }
            Operation::Send {
                client_msg_id,
                text,
                note,
                file,
            } => self.post_command(who, header(req, IP_HEADER), client_msg_id, text, note, file)?,
            Operation::RegisterFile { mut file } => {
                file.uploader = request.principal.id().to_string();
                // Asked again after a lost answer, the first registration stands.
                let recorded = self
                    .with_engine(|_, store| {
                        store.insert_file(&file)?;
                        store.file(&file.id)
                    })?
                    .ok_or(ErrorCode::NotFound)?
                    .map_err(|e| self.storage_error(&e.to_string()))?
                    .ok_or(ErrorCode::Internal)?;
                self.wake_within(self.config().upload_grace_ms + 1000).await;
                return json_response(&serde_json::json!({ "file": recorded.file_ref() }), 201)
                    .map_err(|_| ErrorCode::Internal.into());
            }
            Operation::FileInfo { id } => return self.file_info(&request.principal, &id),
            Operation::Reveal { seq } => return self.reveal(&request.principal, seq),
            Operation::Handoff => {
                // The visitor asks for a person, or the team's webhook bot (an API key) gives up.
                let bot_key = request.principal.is_api_key();
                if request.principal.role() != parley_core::Role::Visitor && !bot_key {
                    return Err(ErrorCode::Forbidden.into());
                }
                return self.hand_off(who, trace).await;
            }
            Operation::Typing { active } => Command::Typing { who, active },
            Operation::Read { seq } => Command::Read { who, seq },
            Operation::Close => Command::Close { who },
            Operation::Rate { score, comment } => Command::Rate {
                who,
                score,
                comment,
            },
            Operation::Reopen => Command::Reopen { who },
            Operation::Assign => Command::Assign {
                agent: who.clone(),
                who,
                since: None,
            },
            Operation::History { before, limit } => Command::History { before, limit },
        };
        let mut replies = Vec::new();
        self.execute(
            command,
            Caller::Http(&mut replies, Some(&request.principal)),
            trace,
        )
        .await?;
        match replies.into_iter().next() {
            Some(frame) => frame_response(&frame, 200),
            None => no_content(),
        }
        .map_err(|_| ErrorCode::Internal.into())
    }

    /// The command for a `send`: a message, a private note, or a previously uploaded file.
    fn post_command(
        &self,
        who: parley_core::Participant,
        ip: Option<String>,
        client_msg_id: String,
        text: String,
        note: bool,
        file: Option<String>,
    ) -> std::result::Result<Command, ApiError> {
        let Some(file_id) = file else {
            return Ok(if note {
                Command::Note {
                    who,
                    client_msg_id,
                    text,
                }
            } else {
                Command::Send {
                    who,
                    ip,
                    client_msg_id,
                    text,
                }
            });
        };
        // Notes are text only: a file asked for as a note would otherwise reach the visitor.
        if note {
            return Err(ApiError {
                code: ErrorCode::InvalidRequest,
                client_msg_id: Some(client_msg_id),
                retry_after_ms: None,
                field: None,
            });
        }
        let row = self
            .with_engine(|_, store| store.file(&file_id))?
            .ok_or(ErrorCode::NotFound)?
            .map_err(|e| self.storage_error(&e.to_string()))?;
        // Only the uploader posts their file; anyone else's id is as good as unknown.
        match row.filter(|r| r.uploader == who.id) {
            Some(row) => Ok(Command::Attach {
                who,
                ip,
                client_msg_id,
                file: row.file_ref(),
            }),
            None => Err(ApiError {
                code: ErrorCode::FileNotFound,
                client_msg_id: Some(client_msg_id),
                retry_after_ms: None,
                field: None,
            }),
        }
    }

    /// Where a file is, for a reader of this conversation: posted files to every participant,
    /// a file not yet posted only to its uploader.
    fn file_info(&self, principal: &Principal, id: &str) -> ApiResult {
        let found = self
            .with_engine(
                |_,
                 store|
                 -> std::result::Result<
                    Option<crate::sql_store::FileRow>,
                    crate::sql_store::SqlError,
                > {
                    let Some(row) = store.file(id)? else {
                        return Ok(None);
                    };
                    let visible = row.uploader == principal.id() || store.file_posted(id)?;
                    Ok(visible.then_some(row))
                },
            )?
            .ok_or(ErrorCode::NotFound)?
            .map_err(|e| self.storage_error(&e.to_string()))?
            .ok_or(ErrorCode::NotFound)?;
        json_response(&found, 200).map_err(|_| ErrorCode::Internal.into())
    }

    /// The unmasked text of a visitor message, for an agent who asked to see it.
    fn reveal(&self, principal: &Principal, seq: u64) -> ApiResult {
        if principal.role() != parley_core::Role::Agent {
            return Err(ErrorCode::Forbidden.into());
        }
        let events = self
            .with_engine(|_, store| {
                parley_core::Store::events_after(store, seq.saturating_sub(1), 1)
            })?
            .ok_or(ErrorCode::NotFound)?
            .map_err(|e| self.storage_error(&e.to_string()))?;
        match events.into_iter().next() {
            Some(parley_core::Event {
                seq: found,
                payload: parley_core::EventPayload::Message { text },
                ..
            }) if found == seq => {
                json_response(&serde_json::json!({ "seq": seq, "text": text }), 200)
                    .map_err(|_| ErrorCode::Internal.into())
            }
            _ => Err(ErrorCode::NotFound.into()),
        }
    }

    /// Erases everything this conversation holds: sockets closed, files deleted from R2, the
    /// object's storage cleared. Afterwards it answers like a conversation that never was. An
    /// erasure that fails (503) leaves the conversation as it was, to be erased by a retry.
    async fn erase(&self, trace: &str) -> ApiResult {
        // Another erasure under way: "gone" only once it has wiped the storage; if it fails,
        // this one starts over.
        self.erasure_under_way_ends().await;
        let meta = self.meta()?;
        // From here the conversation answers as gone: a file registered while the bucket is
        // listed and emptied would be recorded in storage about to be wiped, its bytes left in
        // R2 with nothing pointing at them. Refused, its upload takes the bytes back out.
        self.erased.set(true);
        for ws in self.state.get_websockets() {
            let _ = ws.close(Some(1000), Some("erased"));
        }
        // Files first: storage wiped with files left would lose the only record of them.
        if let Err(detail) = self.delete_files(&meta).await {
            // Still all there: the conversation goes on (an alarm that rang meanwhile did
            // nothing) until a retry.
            self.erased.set(false);
            self.wake_within(MIRROR_SAFETY_MS).await;
            Log::warn("erase_files_failed")
                .site(&meta.site)
                .conversation(&meta.id)
                .trace(trace)
                .error_class("r2_unavailable")
                .field("detail", detail.clone())
                .emit();
            return Err(self.storage_error(&detail));
        }
        let storage = self.state.storage();
        self.wait_for_own_copy(&meta).await;
        // A line the site opened while the attachments were deleted: from now none is taken.
        for line in self
            .state
            .get_websockets_with_tag(crate::site_link::LINE_TAG)
        {
            let _ = line.close(Some(1000), Some("erased"));
        }
        self.unsaved_mirrored.set(None);
        self.unsaved_webhook.set(None);
        // Site answers still on their way speak of this life, not of a conversation created
        // again under the same id.
        self.incarnation.set(self.incarnation.get().wrapping_add(1));
        *self.site_confirmed.borrow_mut() = Default::default();
        let _ = storage.delete_alarm().await;
        self.alarm_at.set(None);
        if let Err(e) = storage.delete_all().await {
            // Still all there: the conversation goes on (its alarm with it) until a retry.
            self.erased.set(false);
            self.wake_within(MIRROR_SAFETY_MS).await;
            return Err(self.storage_error(&e.to_string()));
        }
        *self.engine.borrow_mut() = None;
        *self.store.borrow_mut() = None;
        Log::info("conversation_erased")
            .site(&meta.site)
            .conversation(&meta.id)
            .trace(trace)
            .emit();
        no_content().map_err(|_| ErrorCode::Internal.into())
    }

    /// Waits while an erasure is under way: it has marked the conversation gone and not yet
    /// wiped the storage (its store is dropped then), or failed (the mark is taken back).
    async fn erasure_under_way_ends(&self) {
        while self.erased.get() && self.store.borrow().is_some() {
            worker::Delay::from(Duration::from_millis(10)).await;
        }
    }

    /// Every file of the conversation deleted from R2, page after page of the listing.
    async fn delete_files(&self, meta: &Meta) -> std::result::Result<(), String> {
        // A deployment without the bucket stores no files.
        let Ok(bucket) = self.env.bucket("ATTACHMENTS") else {
            return Ok(());
        };
        let prefix = format!("c/{}/", meta.id);
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut list = bucket.list().prefix(prefix.clone());
            if let Some(after) = cursor.take() {
                list = list.cursor(after);
            }
            let page = list.execute().await.map_err(|e| e.to_string())?;
            keys.extend(page.objects().iter().map(|o| o.key()));
            match page.cursor().filter(|_| page.truncated()) {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        // R2 deletes at most 1,000 keys per call.
        for chunk in keys.chunks(1000) {
            bucket
                .delete_multiple(chunk.to_vec())
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Operations from the site's object: routing decisions and queue notices.
    async fn system(&self, req: &mut Request, trace: &str) -> ApiResult {
        let request = read_internal_with(req, SystemRequest::from_json).await?;
        if let SystemRequest::Erase = request {
            // Before the existence check: an erasure under way answers when it is done.
            return self.erase(trace).await;
        }
        self.meta()?;
        match request {
            SystemRequest::Assign { agent, since } => {
                let command = Command::Assign {
                    who: system_participant(),
                    agent,
                    since,
                };
                let mut replies = Vec::new();
                self.execute(command, Caller::Http(&mut replies, None), trace)
                    .await?;
            }
            SystemRequest::Notify { frame } => self.broadcast(
                &ServerFrame::Queue {
                    position: frame.position,
                },
                None,
            ),
            SystemRequest::Erase => return self.erase(trace).await,
            SystemRequest::Automated { key, text, name } => {
                let mut replies = Vec::new();
                let command = Command::Automated { key, text, name };
                self.execute(command, Caller::Http(&mut replies, None), trace)
                    .await?;
            }
            SystemRequest::Handoff => return self.hand_off(system_participant(), trace).await,
            SystemRequest::AnsweredSince { agent, since } => {
                let answered = self
                    .with_engine(|engine, store| engine.answered_since(store, &agent, since))?
                    .ok_or(ErrorCode::NotFound)?
                    .map_err(|e| self.storage_error(&e.to_string()))?;
                return json_response(&crate::internal::Answered { answered }, 200)
                    .map_err(|_| ErrorCode::Internal.into());
            }
            SystemRequest::Translate {
                of,
                from,
                to,
                result,
                provider,
            } => {
                let command = Command::Translate {
                    of,
                    from,
                    to,
                    result,
                    provider,
                };
                let mut replies = Vec::new();
                self.execute(command, Caller::Http(&mut replies, None), trace)
                    .await?;
            }
        }
        no_content().map_err(|_| ErrorCode::Internal.into())
    }

    async fn poll(&self, req: &mut Request) -> ApiResult {
        from_query! {
            struct PollQuery {
                after: u64,
                epoch: Option<String>,
                wait: Option<u32>,
            }
        }
        let query: PollQuery = crate::http::query(req)?;
        let principal: Principal = header(req, crate::internal::PRINCIPAL_HEADER)
            .and_then(|p| parley_core::json::from_str(&p).ok())
            .ok_or(ErrorCode::TokenMissing)?;
        let meta = self.meta()?;
        if !can_access(&principal, &meta) {
            return Err(ErrorCode::NotFound.into());
        }
        let wait_ms = u64::from(query.wait.unwrap_or(0).min(MAX_POLL_WAIT_SECS)) * 1000;
        let poll = || Command::Poll {
            after: query.after,
            epoch: query.epoch.clone(),
        };
        let mut replies = Vec::new();
        self.execute(poll(), Caller::Http(&mut replies, Some(&principal)), "")
            .await?;
        let nothing_new = matches!(replies.first(), Some(ServerFrame::Events { events, .. }) if events.is_empty());
        if nothing_new && wait_ms > 0 {
            let (sender, receiver) = oneshot::channel();
            self.add_poller(sender);
            let timeout = worker::Delay::from(Duration::from_millis(wait_ms));
            if let Either::Left(_) = select(receiver, timeout).await {
                replies.clear();
                self.execute(poll(), Caller::Http(&mut replies, Some(&principal)), "")
                    .await?;
            }
        }
        let frame = replies.into_iter().next().ok_or(ErrorCode::Internal)?;
        frame_response(&frame, 200).map_err(|_| ErrorCode::Internal.into())
    }
}

/// Whether a command may append to the log (and so calls for a mirror run).
fn writes_log(command: &Command) -> bool {
    !matches!(
        command,
        Command::Hello { .. }
            | Command::Read { .. }
            | Command::Typing { .. }
            | Command::Poll { .. }
            | Command::History { .. }
    )
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Hello { .. } => "hello",
        Command::Send { .. } => "send",
        Command::Note { .. } => "note",
        Command::Rate { .. } => "rate",
        Command::Translate { .. } => "translate",
        Command::Automated { .. } => "automated",
        Command::Handoff { .. } => "handoff",
        Command::Attach { .. } => "attach",
        Command::Typing { .. } => "typing",
        Command::Read { .. } => "read",
        Command::Close { .. } => "close",
        Command::Reopen { .. } => "reopen",
        Command::Assign { .. } => "assign",
        Command::Poll { .. } => "poll",
        Command::History { .. } => "history",
    }
}
