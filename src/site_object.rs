//! The Site Durable Object, one per site: agents' presence from their console sockets, their
//! status and capacity, the waiting queue, assignment and transfer, and the live inbox feed.
//! Every decision is made by `parley_core::routing`; this object feeds it, stores its state and
//! carries out its effects (writing `assigned` into conversations, telling visitors their place
//! in the queue, recording what routing did in D1, and pushing the feed to consoles).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use parley_core::i18n::Lang;
use parley_core::protocol::{frame_kind, Event, EventPayload, Participant, Role};
use parley_core::routing::{
    AgentProfile, AgentStatus, RoutingConfig, RoutingContext, RoutingError, SiteEffect, SiteInput,
    SiteState, TransferTarget,
};
use parley_core::token::{self, Principal};
use parley_core::ErrorCode;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::config::Config;
use crate::http::{json_response, read_internal_with, ApiError, ApiResult, JsonBody};
use crate::internal::{SystemRequest, INTERNAL_BASE, IP_HEADER, LANG_HEADER, SITE_HEADER};
use crate::log::Log;
use crate::object_kv::ObjectKv;
use crate::platform::{load_attachment, now_ms, random_16, save_attachment};
use crate::row::from_row;
use crate::site_link::SiteHeard;
use crate::sql_text::D1Rows;

/// Longest preview of a message in the feed.
const PREVIEW_CHARS: usize = 140;

/// What a conversation tells its site about one of its new events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activity {
    pub conversation: String,
    pub seq: u64,
    pub kind: String,
    pub author_role: Role,
    pub author_id: String,
    pub at: i64,
    /// The start of a message, or a file's name, personal data masked: the feed goes to every
    /// agent.
    pub preview: Option<String>,
}

impl Activity {
    pub fn from_event(conversation: &str, event: &Event) -> Activity {
        let preview = match &event.payload {
            EventPayload::Message { text } => {
                Some(parley_core::pii::masked_prefix(text, PREVIEW_CHARS))
            }
            // The file's name (a visitor may name a file after themselves: masked too).
            EventPayload::File { file } => {
                Some(parley_core::pii::masked_prefix(&file.name, PREVIEW_CHARS))
            }
            _ => None,
        };
        Activity {
            conversation: conversation.to_string(),
            seq: event.seq,
            kind: event.payload.kind().to_string(),
            author_role: event.author.role,
            author_id: event.author.id.clone(),
            at: event.at,
            preview,
        }
    }
}

parley_core::tagged_enum! {
    tag = "op";
    /// Requests to a site's object, from the Worker and from conversations (one shape across
    /// releases: see `internal`).
    #[derive(Debug, Clone, Serialize)]
    pub enum SiteRequest {
        NewConversation {
            conversation: String,
            context: RoutingContext,
        },
        Activity {
            events: Vec<Activity>,
            /// The events' rows for D1, which the site writes with other conversations' (see
            /// `site_mirror`). The answer's `mirrored` says whether they are in D1.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            mirror: Option<parley_core::mirror::MirrorRows>,
        },
        /// An agent read a conversation up to `seq`: their other devices clear its unread count.
        AgentRead {
            conversation: String,
            agent: String,
            seq: u64,
        },
        Claim {
            conversation: String,
            agent: AgentProfile,
        },
        Transfer {
            conversation: String,
            by: String,
            to: TransferTarget,
        },
        /// Whether any agent can take a conversation now.
        Online,
        /// A conversation's place in the queue.
        Position { conversation: String },
        /// The conversation was erased (data protection, retention): it leaves routing.
        Erased { conversation: String },
        /// Closes the consoles of an ended session, or of every session of an agent but `keep`.
        EndSession {
            sid: Option<String>,
            agent: Option<String>,
            #[serde(default)]
            keep: Option<String>,
        },
    }
}

/// Sends a request to the object of `site`.
pub async fn send(env: &Env, site: &str, request: &SiteRequest) -> Result<Response> {
    let stub = env.durable_object("SITE")?.id_from_name(site)?.get_stub()?;
    let headers = worker::Headers::new();
    headers.set(SITE_HEADER, site)?;
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&serde_json::to_string(request)?)));
    let req = Request::new_with_init(&format!("{INTERNAL_BASE}/request"), &init)?;
    stub.fetch_with_request(req).await
}

/// Loads an agent's routing profile (capacity, departments) from D1.
pub async fn agent_profile(env: &Env, id: &str, name: &str) -> AgentProfile {
    match stored_agent_profile(env, id).await {
        Ok(Some(profile)) => AgentProfile {
            name: name.to_string(),
            ..profile
        },
        _ => AgentProfile {
            id: id.to_string(),
            name: name.to_string(),
            departments: BTreeSet::new(),
            capacity: 5,
        },
    }
}

/// An enabled agent's routing profile as D1 has it; `None` when there is no such agent.
async fn stored_agent_profile(env: &Env, id: &str) -> Result<Option<AgentProfile>> {
    from_row! {
        struct Row {
            name: String,
            capacity: u32,
            departments: Option<String>,
        }
    }
    let row = env
        .d1("DB")?
        .prepare(
            "SELECT name, capacity, (SELECT json_group_array(d.name) FROM agent_departments ad
               JOIN departments d ON d.id = ad.department_id WHERE ad.agent_id = agents.id) AS departments
             FROM agents WHERE id = ?1 AND disabled = 0",
        )
        .bind(&[id.into()])?
        .first_row::<Row>()
        .await?;
    Ok(row.map(|row| AgentProfile {
        id: id.to_string(),
        name: row.name,
        departments: row
            .departments
            .and_then(|d| parley_core::json::from_str::<BTreeSet<String>>(&d).ok())
            .unwrap_or_default(),
        capacity: row.capacity,
    }))
}

/// A console socket's state, kept across hibernation in its attachment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ConsoleSocket {
    agent: Option<AgentProfile>,
    device: String,
    lang: Option<String>,
    /// The sign-in session the console belongs to.
    #[serde(default)]
    sid: Option<String>,
    /// The address the socket came from, and when it was accepted (ms): until its `hello`, it
    /// counts against its address and is closed when the hello timeout passes.
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    opened_at: i64,
}

impl ConsoleSocket {
    fn lang(&self) -> Lang {
        self.lang
            .as_deref()
            .map(Lang::negotiate)
            .unwrap_or_default()
    }
}

parley_core::tagged_enum! {
    tag = "type";
    #[derive(Debug, Serialize)]
    enum ConsoleFrame {
        Hello { token: String },
        Status { status: AgentStatus },
        Heartbeat {},
        Ping {},
    }
}

/// The site's settings this object needs, from D1, kept in its own storage too.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SiteInfo {
    id: String,
    team: String,
    routing: RoutingConfig,
}

#[durable_object]
pub struct SiteObject {
    site: std::rc::Rc<Site>,
}

impl std::ops::Deref for SiteObject {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.site
    }
}

/// The object's state, shared with the work it starts after answering (its conversations'
/// lines, see `site_link`).
pub struct Site {
    /// This site itself, for work that outlives the call that starts it.
    pub(crate) me: std::rc::Weak<Site>,
    pub(crate) state: State,
    pub(crate) env: Env,
    routing: RefCell<Option<SiteState>>,
    info: RefCell<Option<(i64, SiteInfo)>>,
    /// A read of the site's settings is under way (`fresh_routing_config`).
    info_refreshing: std::cell::Cell<bool>,
    kv: ObjectKv,
    /// Whether this instance rescheduled its stored alarm (`platform::recover_alarm`).
    alarm_checked: std::cell::Cell<bool>,
    /// The deadline this instance last wrote as the alarm (`Some(None)`: none), so an unchanged
    /// one is not written again; `None` when unknown (a new instance, a failed write, a rung alarm).
    alarm_set: std::cell::Cell<Option<Option<i64>>>,
    /// The conversations' rows waiting for the next D1 batch.
    mirror: std::rc::Rc<crate::site_mirror::SiteMirror>,
    /// The lines this site holds to its conversations.
    pub(crate) lines: crate::site_link::SiteLines,
    /// The timers of the consoles that have yet to say `hello`.
    hello_timers: crate::unsigned_sockets::HelloTimers,
}

/// How long the site's settings are reused before they are read from D1 again.
const INFO_TTL_MS: i64 = 30_000;

/// Rounds of letting go of erased conversations after one input (each round takes all found so
/// far); any left are let go the next time routing writes to them.
const MAX_ERASED_ROUNDS_PER_INPUT: usize = 5;

/// Overdue conversations asked, side by side, whether their agent replied, per alarm; any
/// more are handed on unasked (their clocks are minutes long, so this is a site in trouble).
const MAX_ANSWER_CHECKS: usize = 50;
/// How long the site waits for a conversation's word on its answer.
const ANSWER_ASK_TIMEOUT_MS: u64 = 3_000;
/// How long a conversation that could not be told of its assignment gets to answer a
/// retelling.
const RETELL_TIMEOUT_MS: u64 = 3_000;
/// Retellings under way at once, side by side.
const MAX_RETELLS_AT_ONCE: usize = 50;
/// Assignments due this soon are asked about with the overdue ones (covers the asks' time).
const ANSWER_ASK_MARGIN_MS: i64 = 5_000;

impl DurableObject for SiteObject {
    fn new(state: State, env: Env) -> Self {
        crate::log::configure(&env);
        crate::platform::answer_pings_without_waking(&state);
        let kv = ObjectKv::open(state.storage().sql());
        let site = std::rc::Rc::new_cyclic(|me| Site {
            me: me.clone(),
            state,
            mirror: crate::site_mirror::SiteMirror::new(env.clone()),
            env,
            routing: RefCell::new(None),
            info: RefCell::new(None),
            info_refreshing: std::cell::Cell::new(false),
            kv,
            alarm_checked: std::cell::Cell::new(false),
            alarm_set: std::cell::Cell::new(None),
            lines: crate::site_link::SiteLines::default(),
            hello_timers: Default::default(),
        });
        SiteObject { site }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let lang = req
            .headers()
            .get(LANG_HEADER)
            .ok()
            .flatten()
            .map(|l| Lang::negotiate(&l))
            .unwrap_or_default();
        let site = req
            .headers()
            .get(SITE_HEADER)
            .ok()
            .flatten()
            .unwrap_or_default();
        crate::platform::recover_alarm(&self.state, &self.env, &self.alarm_checked).await;
        let result = match req.path().as_str() {
            "/ws" => self.accept_console(&req),
            "/request" => self.request(&mut req, &site).await,
            // After a restart: nothing to do but what every request does first.
            "/wake" => crate::http::no_content().map_err(|_| ErrorCode::Internal.into()),
            _ => Err(ErrorCode::NotFound.into()),
        };
        match result {
            Ok(response) => Ok(response),
            Err(error) => error.response(lang),
        }
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        crate::platform::recover_alarm(&self.state, &self.env, &self.alarm_checked).await;
        let mut socket: ConsoleSocket = load_attachment(&ws).unwrap_or_default();
        let lang = socket.lang();
        let WebSocketIncomingMessage::String(text) = message else {
            return refuse(&ws, ErrorCode::BadFrame, lang, true);
        };
        if text.len() > parley_core::limits::MAX_FRAME_BYTES {
            let _ = ws.close(Some(1009), Some("frame_too_large"));
            return Ok(());
        }
        let frame = match parse_console_frame(&text) {
            Ok(frame) => frame,
            Err(code) => return refuse(&ws, code, lang, socket.agent.is_none()),
        };
        // Any frame from a signed-in device shows it is there (background tabs send heartbeats
        // late); the heartbeat frame itself is handled below.
        if let Some(agent) = &socket.agent {
            if !matches!(frame, ConsoleFrame::Heartbeat {}) {
                let _ = self
                    .apply(SiteInput::Heartbeat {
                        agent: agent.id.clone(),
                        device: socket.device.clone(),
                    })
                    .await;
            }
        }
        match (frame, socket.agent.clone()) {
            (ConsoleFrame::Ping {}, _) => {
                send_json(&ws, &serde_json::json!({ "v": 1, "type": "pong" }))
            }
            (ConsoleFrame::Hello { token }, None) => {
                let site = self.site_from_storage();
                let claims = token::verify(
                    Config::from_env(&self.env).token_secret.as_bytes(),
                    &token,
                    now_ms(),
                );
                let principal = match claims {
                    Ok(c) => c.principal,
                    Err(e) => return refuse(&ws, e.code(), lang, true),
                };
                let sid = principal.session().map(str::to_string);
                let Principal::Agent { id, team, name, .. } = principal else {
                    return refuse(&ws, ErrorCode::Forbidden, lang, true);
                };
                // Said in time: the checks below wait on D1, and must not run into the timer.
                self.hello_timers.stop(&ws);
                if let Some(sid) = &sid {
                    if !crate::sessions::is_live(&self.env, sid, now_ms())
                        .await
                        .unwrap_or(false)
                    {
                        return refuse(&ws, ErrorCode::SessionEnded, lang, true);
                    }
                }
                let info = match site {
                    Some(site) => self.site_info(&site).await,
                    None => None,
                };
                if info.as_ref().is_none_or(|i| i.team != team) {
                    return refuse(&ws, ErrorCode::NotFound, lang, true);
                }
                let profile = agent_profile(&self.env, &id, &name).await;
                socket.agent = Some(profile.clone());
                socket.sid = sid;
                save_attachment(&ws, &socket)?;
                let device = socket.device.clone();
                let _ = self
                    .apply(SiteInput::DeviceConnected {
                        agent: profile,
                        device,
                    })
                    .await;
                self.send_inbox(&ws, &id);
            }
            (ConsoleFrame::Hello { .. }, Some(_)) => {
                return refuse(&ws, ErrorCode::HelloRepeated, lang, false)
            }
            (_, None) => return refuse(&ws, ErrorCode::HelloRequired, lang, true),
            // A console signed out elsewhere, disabled or given another role is cut off at its
            // next heartbeat or status (the answer is cached for 30 s per isolate; a D1 that
            // cannot answer cuts nobody off).
            (ConsoleFrame::Status { .. } | ConsoleFrame::Heartbeat {}, Some(_))
                if !crate::sessions::still_live(&self.env, socket.sid.as_deref(), now_ms())
                    .await =>
            {
                return refuse(&ws, ErrorCode::SessionEnded, lang, true)
            }
            (ConsoleFrame::Status { status }, Some(agent)) => {
                if let Err(e) = self
                    .apply(SiteInput::SetStatus {
                        agent: agent.id,
                        status,
                    })
                    .await
                {
                    return refuse(&ws, e.code(), lang, false);
                }
            }
            (ConsoleFrame::Heartbeat {}, Some(agent)) => {
                let _ = self
                    .apply(SiteInput::Heartbeat {
                        agent: agent.id,
                        device: socket.device,
                    })
                    .await;
            }
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        self.hello_timers.stop(&ws);
        self.device_gone(&ws).await;
        let _ = ws.close(Some(1000), Some("closing"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.hello_timers.stop(&ws);
        self.device_gone(&ws).await;
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm_checked.set(true);
        // A rung alarm is no longer set.
        self.alarm_set.set(None);
        self.recover_lost_answers().await;
        let _ = self.apply(SiteInput::Tick).await;
        Response::ok("ok")
    }
}

fn parse_console_frame(text: &str) -> std::result::Result<ConsoleFrame, ErrorCode> {
    let kind = frame_kind(text, &["hello", "status", "heartbeat", "ping"])?;
    ConsoleFrame::from_json_as(text, &kind).map_err(|_| ErrorCode::BadFrame)
}

fn send_json(ws: &WebSocket, value: &serde_json::Value) {
    let _ = ws.send_with_str(value.to_string());
}

/// Closes a console that has not said `hello` in time (`token_missing`, 1008), if it is still
/// unsigned.
fn close_silent_console(ws: &WebSocket) {
    if let Some(console) = load_attachment::<ConsoleSocket>(ws) {
        if console.agent.is_none() {
            let _ = refuse(ws, ErrorCode::TokenMissing, console.lang(), true);
        }
    }
}

fn refuse(ws: &WebSocket, code: ErrorCode, lang: Lang, close: bool) -> Result<()> {
    let _ = ws.send_with_str(ApiError::from(code).frame(lang).to_json());
    if close {
        let _ = ws.close(Some(1008), Some(code.as_str()));
    }
    Ok(())
}

impl Site {
    fn kv_get(&self, key: &str) -> Option<String> {
        self.kv.get(key)
    }

    fn kv_put(&self, key: &str, value: &str) {
        if let Err(e) = self.kv.put(key, value) {
            Log::error("storage_failed")
                .error_class("storage_unavailable")
                .field("detail", e.to_string())
                .emit();
        }
    }

    fn site_from_storage(&self) -> Option<String> {
        self.kv_get("site")
    }

    /// The site's team and routing settings: fresh from D1 when possible, else the last copy.
    async fn site_info(&self, site: &str) -> Option<SiteInfo> {
        let now = now_ms();
        if let Some((at, info)) = self.info.borrow().clone() {
            if now - at < INFO_TTL_MS {
                return Some(info);
            }
        }
        from_row! {
            struct Row {
                team_id: String,
                routing: String,
            }
        }
        let fresh = async {
            let db = self.env.d1("DB")?;
            db.prepare("SELECT team_id, routing FROM sites WHERE id = ?1")
                .bind(&[site.into()])?
                .first_row::<Row>()
                .await
        }
        .await;
        let info = match fresh {
            Ok(Some(row)) => {
                let info = SiteInfo {
                    id: site.to_string(),
                    team: row.team_id,
                    routing: parley_core::json::from_str(&row.routing).unwrap_or_default(),
                };
                if let Ok(json) = serde_json::to_string(&info) {
                    self.kv_put("info", &json);
                }
                Some(info)
            }
            Ok(None) => None,
            Err(_) => self
                .kv_get("info")
                .and_then(|j| parley_core::json::from_str(&j).ok()),
        }?;
        *self.info.borrow_mut() = Some((now, info.clone()));
        Some(info)
    }

    /// Reads the routing state in place, from storage the first time: most requests only look,
    /// and a copy of a big site's state (every agent, queue entry and assignment) is not free.
    /// Lookers that only show it see an empty state when it cannot be read (see
    /// `try_peek_state`).
    fn peek_state<R>(&self, f: impl FnOnce(&SiteState) -> R) -> R {
        self.load_stored_state();
        match self.routing.borrow().as_ref() {
            Some(state) => f(state),
            None => f(&SiteState::default()),
        }
    }

    /// `f` of the routing state, or none when storage cannot read it now: what decides or
    /// schedules does nothing on a state it does not have.
    fn try_peek_state<R>(&self, f: impl FnOnce(&SiteState) -> R) -> Option<R> {
        self.load_stored_state();
        self.routing.borrow().as_ref().map(f)
    }

    /// The routing state to change, or an error when it cannot be read.
    fn state_to_change(&self) -> std::result::Result<SiteState, RoutingError> {
        self.try_peek_state(SiteState::clone)
            .ok_or(RoutingError::StateUnreadable)
    }

    /// Loads the stored routing state unless it is loaded. A state storage cannot read now is
    /// not taken for an empty one (which the next input would save over it): it stays unloaded,
    /// and the next call reads again. A stored state that does not decode (a deploy that changed
    /// its shape) is kept aside under another key for repair, and routing starts again from an
    /// empty one: agents' consoles and new conversations fill it again, where refusing would
    /// stop routing for good.
    fn load_stored_state(&self) {
        if self.routing.borrow().is_some() {
            return;
        }
        let stored = match self.kv.read("routing") {
            Ok(None) => Some(SiteState::default()),
            Ok(Some(json)) => match parley_core::json::from_str(&json) {
                Ok(state) => Some(state),
                Err(e) => {
                    Log::error("routing_state_unreadable")
                        .error_class("bad_state")
                        .field("detail", e.to_string())
                        .emit();
                    self.kv_put("routing_unreadable", &json);
                    Some(SiteState::default())
                }
            },
            Err(e) => {
                Log::error("routing_state_unreadable")
                    .error_class("storage_unavailable")
                    .field("detail", e.to_string())
                    .emit();
                None
            }
        };
        *self.routing.borrow_mut() = stored;
    }

    fn save_state(&self, state: &SiteState) {
        // Most inputs (an answer to a conversation already answered, a reply in one that waits)
        // change nothing: the whole state is not written again for them.
        if self.routing.borrow().as_ref() == Some(state) {
            return;
        }
        if let Ok(json) = serde_json::to_string(state) {
            self.kv_put("routing", &json);
        }
        *self.routing.borrow_mut() = Some(state.clone());
    }

    /// The routing settings, read again from D1 once they are older than `INFO_TTL_MS`. Once
    /// any are known, an input is decided with them at once and a stale copy is read again in
    /// the background, one read at a time: an input that waited for its own read could be
    /// overtaken by a later one whose read came back first (a close applied after the reopen
    /// that followed it would leave the conversation with nobody).
    async fn fresh_routing_config(&self) -> RoutingConfig {
        let Some(site) = self.site_from_storage() else {
            return self.routing_config();
        };
        let known_at = self.info.borrow().as_ref().map(|(at, _)| *at);
        match known_at {
            // Nothing known yet, not even a stored copy (a site's first input): wait for it.
            None if self.kv_get("info").is_none() => {
                self.site_info(&site).await;
            }
            // Known from storage (a new instance) or getting old: decide with it.
            None => self.refresh_info_in_background(site),
            Some(at) if now_ms() - at >= INFO_TTL_MS => self.refresh_info_in_background(site),
            Some(_) => {}
        }
        self.routing_config()
    }

    /// Reads the site's settings again after this input, one read at a time.
    fn refresh_info_in_background(&self, site: String) {
        if self.info_refreshing.replace(true) {
            return;
        }
        match self.me.upgrade() {
            Some(me) => self.state.wait_until(async move {
                me.site_info(&site).await;
                me.info_refreshing.set(false);
            }),
            None => self.info_refreshing.set(false),
        }
    }

    fn routing_config(&self) -> RoutingConfig {
        self.info
            .borrow()
            .as_ref()
            .map(|(_, i)| i.routing.clone())
            .or_else(|| {
                self.kv_get("info")
                    .and_then(|j| parley_core::json::from_str::<SiteInfo>(&j).ok())
                    .map(|i| i.routing)
            })
            .unwrap_or_default()
    }

    /// Runs one routing input: decide, store, then carry out the effects.
    async fn apply(&self, input: SiteInput) -> std::result::Result<Vec<SiteEffect>, RoutingError> {
        let config = self.fresh_routing_config().await;
        let mut state = self.state_to_change()?;
        let effects = state.handle(&config, input, now_ms())?;
        self.save_state(&state);
        // What became of the assignments told meanwhile, for routing to take in.
        let mut tellings = Vec::new();
        let mut gone = self.carry_out(&effects, &mut tellings).await;
        // A conversation that answers 404 was erased without routing being told: it leaves
        // routing (which may hand its seat to a waiting one, which is carried out in turn).
        // Each round works on the state as it is then (other inputs ran during the awaits, and
        // saving an older copy would undo what they did), and takes every conversation found
        // gone so far at once: a queue of erased ones is let go in a round or two, not one
        // round and one set of position notices each.
        let mut let_go = std::collections::HashSet::new();
        let mut rounds = 0;
        while !gone.is_empty() && rounds < MAX_ERASED_ROUNDS_PER_INPUT {
            rounds += 1;
            let conversations: Vec<String> = gone
                .drain(..)
                .filter(|conversation| let_go.insert(conversation.clone()))
                .collect();
            if conversations.is_empty() {
                break;
            }
            for conversation in &conversations {
                Log::warn("routed_conversation_gone")
                    .conversation(conversation)
                    .error_class("not_found")
                    .emit();
            }
            let Ok(mut current) = self.state_to_change() else {
                break;
            };
            if let Ok(more) = current.handle(&config, SiteInput::Erased { conversations }, now_ms())
            {
                self.save_state(&current);
                gone = self.carry_out(&more, &mut tellings).await;
            }
        }
        self.note_tellings(&config, tellings);
        self.schedule(&config).await;
        Ok(effects)
    }

    /// Sets the alarm for the state's next deadline, as the state is now.
    async fn schedule(&self, config: &RoutingConfig) {
        // A state that cannot be read leaves the alarm as it was, not cleared.
        let Some(next) = self.try_peek_state(|state| state.next_deadline(config, now_ms())) else {
            return;
        };
        // Most inputs leave the next deadline where it was: no storage write for those.
        if self.alarm_set.get() == Some(next) {
            return;
        }
        let storage = self.state.storage();
        let written = match next {
            Some(at) => {
                let delay = (at - now_ms()).max(0) as u64;
                storage.set_alarm(Duration::from_millis(delay)).await
            }
            None => storage.delete_alarm().await,
        };
        if let Err(e) = &written {
            Log::error("alarm_failed")
                .error_class("storage_unavailable")
                .field("detail", e.to_string())
                .emit();
        }
        self.alarm_set.set(written.is_ok().then_some(next));
    }

    /// Gives routing what became of the assignments told to conversations
    /// (`AssignmentUntold`, `AssignmentTold`), so those that did not reach theirs are told
    /// again (and those that now did are not).
    fn note_tellings(&self, config: &RoutingConfig, tellings: Vec<SiteInput>) {
        if tellings.is_empty() {
            return;
        }
        let Ok(mut state) = self.state_to_change() else {
            return;
        };
        let now = now_ms();
        for input in tellings {
            // These inputs only mark the assignment: they have no effects to carry out.
            let _ = state.handle(config, input, now);
        }
        self.save_state(&state);
    }

    /// Tells the conversation that `agent` handles it, in the assignment that started at
    /// `since` (the conversation records no assignment older than the one it holds, so a
    /// telling that arrives late does not take the conversation back); what became of it goes
    /// into `tellings`. Returns false when the conversation no longer exists. A retelling goes
    /// to a conversation that could not be reached lately: it gets [`RETELL_TIMEOUT_MS`] to
    /// answer, so that it does not hold up the site's alarm (no answer counts as a failed
    /// telling, and the request is not called back: it may still land later).
    async fn tell_assignment(
        &self,
        conversation: &str,
        (agent, agent_name, since): (&str, &str, i64),
        again: bool,
        tellings: &mut Vec<SiteInput>,
    ) -> bool {
        use futures::future::{select, Either};
        let request = SystemRequest::Assign {
            agent: Participant {
                id: agent.to_string(),
                role: Role::Agent,
                name: Some(agent_name.to_string()),
            },
            since: Some(since),
        };
        let (conversation, agent) = (conversation.to_string(), agent.to_string());
        let told = if again {
            let tell = Box::pin(self.tell_conversation(&conversation, &request));
            let timeout = worker::Delay::from(Duration::from_millis(RETELL_TIMEOUT_MS));
            match select(tell, timeout).await {
                Either::Left((told, _)) => told,
                Either::Right(_) => {
                    Log::warn("conversation_unreachable")
                        .conversation(&conversation)
                        .error_class("timeout")
                        .emit();
                    Told::Failed
                }
            }
        } else {
            self.tell_conversation(&conversation, &request).await
        };
        match told {
            Told::Gone => return false,
            Told::Failed => tellings.push(SiteInput::AssignmentUntold {
                conversation,
                agent,
                since,
            }),
            Told::Done if again => {
                Log::info("assignment_retold")
                    .conversation(&conversation)
                    .field("agent", agent.as_str())
                    .emit();
                tellings.push(SiteInput::AssignmentTold {
                    conversation,
                    agent,
                    since,
                });
            }
            Told::Done => {}
        }
        true
    }

    /// Tells conversations again of the assignments they did not confirm, at most
    /// [`MAX_RETELLS_AT_ONCE`] at a time: each may take up to [`RETELL_TIMEOUT_MS`], and one
    /// after another a handful of unreachable conversations would hold up the site's alarm
    /// for as many times that. What became of each goes into `tellings`; returns the
    /// conversations that no longer exist.
    async fn retell(
        &self,
        retells: Vec<(&str, &str, &str, i64)>,
        tellings: &mut Vec<SiteInput>,
    ) -> Vec<String> {
        use futures::stream::StreamExt;
        // Checked when each is sent, as for `Assigned`: an assignment replaced meanwhile (a
        // transfer, a claim while earlier effects were carried out) is not told, which would
        // leave the conversation showing the agent who no longer has it.
        let still_untold = |conversation: &str, agent: &str, since: i64| {
            self.peek_state(|s| {
                s.assignments
                    .get(conversation)
                    .is_some_and(|a| a.agent == agent && a.start() == since && a.untold.is_some())
            })
        };
        let outcomes: Vec<(String, bool, Vec<SiteInput>)> = futures::stream::iter(retells)
            .map(|(conversation, agent, agent_name, since)| async move {
                let mut told = Vec::new();
                let exists = !still_untold(conversation, agent, since)
                    || self
                        .tell_assignment(conversation, (agent, agent_name, since), true, &mut told)
                        .await;
                (conversation.to_string(), exists, told)
            })
            .buffer_unordered(MAX_RETELLS_AT_ONCE)
            .collect()
            .await;
        let mut gone = Vec::new();
        for (conversation, exists, told) in outcomes {
            tellings.extend(told);
            if !exists {
                gone.push(conversation);
            }
        }
        gone
    }

    /// Carries out routing's effects; returns the conversations that no longer exist.
    async fn carry_out(
        &self,
        effects: &[SiteEffect],
        tellings: &mut Vec<SiteInput>,
    ) -> Vec<String> {
        let mut gone = Vec::new();
        if effects.is_empty() {
            return gone;
        }
        let site = self.site_from_storage().unwrap_or_default();
        let mut records = Vec::new();
        // Told side by side after the rest: they follow the new assignments (see `Tick`).
        let mut retells = Vec::new();
        for effect in effects {
            match effect {
                SiteEffect::Assigned {
                    conversation,
                    agent,
                    agent_name,
                    previous,
                    reason,
                } => {
                    // Effects of several inputs are carried out side by side: an assignment a
                    // later input has already replaced (a claim during a timeout's round) is
                    // not sent after the newer one, which would leave the conversation showing
                    // the wrong agent.
                    let current = self.peek_state(|s| {
                        s.assignments
                            .get(conversation)
                            .filter(|a| a.agent == *agent)
                            .map(|a| a.start())
                    });
                    let Some(since) = current else {
                        continue;
                    };
                    let assignment = (agent.as_str(), agent_name.as_str(), since);
                    if !self
                        .tell_assignment(conversation, assignment, false, tellings)
                        .await
                    {
                        gone.push(conversation.clone());
                        continue;
                    }
                    records.push((
                        conversation.clone(),
                        Some(agent.clone()),
                        "assigned",
                        Some(reason_name(*reason)),
                    ));
                    self.feed(serde_json::json!({
                        "event": "assigned", "conversation": conversation, "agent": agent,
                        "agent_name": agent_name, "previous": previous, "reason": reason,
                    }));
                }
                SiteEffect::Queued {
                    conversation,
                    position,
                } => {
                    let request = SystemRequest::queue_position(*position);
                    let told = self.tell_conversation(conversation, &request).await;
                    if told == Told::Gone {
                        gone.push(conversation.clone());
                        continue;
                    }
                    records.push((conversation.clone(), None, "queued", None));
                    self.feed(serde_json::json!({ "event": "queued", "conversation": conversation, "position": position }));
                }
                SiteEffect::QueuePositions(positions) => {
                    for (conversation, position) in positions {
                        let request = SystemRequest::queue_position(*position);
                        let told = self.tell_conversation(conversation, &request).await;
                        if told == Told::Gone {
                            gone.push(conversation.clone());
                        }
                    }
                }
                SiteEffect::Missed {
                    conversation,
                    agent,
                } => {
                    records.push((conversation.clone(), Some(agent.clone()), "missed", None));
                    Log::info("conversation_missed")
                        .site(&site)
                        .conversation(conversation)
                        .field("agent", agent.as_str())
                        .emit();
                    self.feed(serde_json::json!({ "event": "missed", "conversation": conversation, "agent": agent }));
                }
                SiteEffect::Presence { agent, status } => {
                    self.feed(serde_json::json!({ "event": "presence", "agent": agent, "status": status }));
                }
                SiteEffect::Retell {
                    conversation,
                    agent,
                    agent_name,
                    since,
                } => retells.push((
                    conversation.as_str(),
                    agent.as_str(),
                    agent_name.as_str(),
                    *since,
                )),
                // The inbox pushed below is all it takes.
                SiteEffect::InboxChanged => {}
            }
        }
        if !retells.is_empty() {
            gone.extend(self.retell(retells, tellings).await);
        }
        self.record(&site, records).await;
        // Retellings change nothing the consoles show.
        let shown = effects
            .iter()
            .any(|effect| !matches!(effect, SiteEffect::Retell { .. }));
        if shown {
            // As it is now, not as `state` was: other inputs may have changed it meanwhile.
            self.peek_state(|now| self.push_inbox(now));
        }
        gone
    }

    /// Writes what routing did to D1, for reports; best effort, never on the chat path.
    async fn record(
        &self,
        site: &str,
        records: Vec<(String, Option<String>, &'static str, Option<&'static str>)>,
    ) {
        if records.is_empty() {
            return;
        }
        let Ok(db) = self.env.d1("DB") else { return };
        let now = JsValue::from_f64(now_ms() as f64);
        let statements: Vec<_> = records
            .into_iter()
            .filter_map(|(conversation, agent, kind, reason)| {
                db.prepare(
                    "INSERT INTO routing_events (site_id, conversation_id, agent_id, kind, reason, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind(&[
                    site.into(),
                    conversation.into(),
                    agent.map_or(JsValue::NULL, JsValue::from),
                    kind.into(),
                    reason.map_or(JsValue::NULL, JsValue::from),
                    now.clone(),
                ])
                .ok()
            })
            .collect();
        if let Err(e) = db.batch(statements).await {
            Log::warn("routing_record_failed")
                .site(site)
                .error_class("d1_unavailable")
                .field("detail", e.to_string())
                .emit();
        }
    }

    /// Before the answer clock hands conversations on, asks each overdue one whether its agent
    /// has replied: the news of a reply is lost when this object restarts before taking it,
    /// and the agent who answered would lose the conversation and have a miss counted. Those
    /// due within `ANSWER_ASK_MARGIN_MS` are asked too, so none falls due unasked while the
    /// asks run (a reply before the deadline is an answer all the same).
    async fn recover_lost_answers(&self) {
        let config = self.fresh_routing_config().await;
        let due_by = now_ms() + ANSWER_ASK_MARGIN_MS;
        let overdue: Vec<(String, String, i64)> = self
            .try_peek_state(|s| {
                s.overdue(&config, due_by)
                    .take(MAX_ANSWER_CHECKS)
                    .map(|(conversation, a)| (conversation.clone(), a.agent.clone(), a.start()))
                    .collect()
            })
            .unwrap_or_default();
        let asks = overdue
            .iter()
            .map(|(conversation, agent, since)| self.answered_since(conversation, agent, *since));
        let answers = futures::future::join_all(asks).await;
        for ((conversation, agent, since), answered) in overdue.into_iter().zip(answers) {
            // The answer is about the assignment asked of: one routed again meanwhile (to the
            // same agent too) is a new one.
            let same = |s: &SiteState| {
                s.assignments
                    .get(&conversation)
                    .is_some_and(|a| a.agent == agent && a.start() == since)
            };
            if !answered || !self.peek_state(same) {
                continue;
            }
            Log::info("answer_recovered")
                .conversation(&conversation)
                .emit();
            let _ = self
                .apply(SiteInput::AgentReplied {
                    conversation,
                    agent,
                })
                .await;
        }
    }

    /// The conversation's word on whether `agent` replied since `since`. No answer within
    /// `ANSWER_ASK_TIMEOUT_MS` (a busy or unreachable object, or an older release that does
    /// not know the question) reads as no: one slow object must not hold up the site's alarm.
    async fn answered_since(&self, conversation: &str, agent: &str, since: i64) -> bool {
        use futures::future::{select, Either};
        let request = SystemRequest::AnsweredSince {
            agent: agent.to_owned(),
            since,
        };
        let ask = Box::pin(async {
            let mut response =
                crate::internal::system_request(&self.env, conversation, &request).await?;
            match response.status_code() {
                200 => Ok(response
                    .json_body::<crate::internal::Answered>()
                    .await?
                    .answered),
                status => Err(worker::Error::RustError(format!("status {status}"))),
            }
        });
        let timeout = worker::Delay::from(Duration::from_millis(ANSWER_ASK_TIMEOUT_MS));
        let failed = |detail: String| {
            Log::warn("answer_check_failed")
                .conversation(conversation)
                .field("detail", detail)
                .emit();
            false
        };
        let outcome = select(ask, timeout).await;
        match outcome {
            Either::Left((Ok(answered), _)) => answered,
            Either::Left((Err(e), _)) => failed(e.to_string()),
            Either::Right(_) => failed("timeout".into()),
        }
    }

    async fn tell_conversation(&self, conversation: &str, request: &SystemRequest) -> Told {
        let result = async {
            let response =
                crate::internal::system_request(&self.env, conversation, request).await?;
            match response.status_code() {
                // The conversation answers like one that never was: it has been erased.
                404 => Ok(Told::Gone),
                status if status >= 300 => {
                    Err(worker::Error::RustError(format!("status {status}")))
                }
                _ => Ok(Told::Done),
            }
        }
        .await;
        result.unwrap_or_else(|e| {
            Log::error("conversation_unreachable")
                .conversation(conversation)
                .error_class("storage_unavailable")
                .field("detail", e.to_string())
                .emit();
            Told::Failed
        })
    }

    fn consoles(&self) -> Vec<(WebSocket, ConsoleSocket)> {
        self.state
            .get_websockets()
            .into_iter()
            .filter_map(|ws| {
                let socket: ConsoleSocket = load_attachment(&ws)?;
                socket.agent.as_ref()?;
                Some((ws, socket))
            })
            .collect()
    }

    fn feed(&self, mut event: serde_json::Value) {
        if let Some(map) = event.as_object_mut() {
            map.insert("v".into(), 1.into());
            map.insert("type".into(), "feed".into());
        }
        let text = event.to_string();
        for (ws, _) in self.consoles() {
            let _ = ws.send_with_str(&text);
        }
    }

    fn inbox(&self, state: &SiteState, me: &str) -> serde_json::Value {
        let agents: Vec<serde_json::Value> = state
            .agents
            .values()
            .map(|a| {
                serde_json::json!({
                    "id": a.profile.id, "name": a.profile.name, "status": a.presence(),
                    "active": a.active.len(), "capacity": a.profile.capacity, "missed": a.missed,
                })
            })
            .collect();
        // Positions count within each department, as the waiting visitors are told.
        let queue: Vec<serde_json::Value> = state
            .queue
            .iter()
            .zip(state.positions())
            .map(|(w, (_, position))| {
                serde_json::json!({
                    "conversation": w.conversation, "position": position, "since": w.since, "department": w.department,
                })
            })
            .collect();
        let assignments: Vec<serde_json::Value> = state
            .assignments
            .iter()
            .map(|(c, a)| serde_json::json!({ "conversation": c, "agent": a.agent, "answered": a.answered }))
            .collect();
        let my_status = state.agents.get(me).map(|a| a.status);
        serde_json::json!({
            "v": 1, "type": "inbox",
            "me": { "id": me, "status": my_status },
            "agents": agents, "queue": queue, "assignments": assignments,
        })
    }

    fn send_inbox(&self, ws: &WebSocket, me: &str) {
        let inbox = self.peek_state(|state| self.inbox(state, me));
        send_json(ws, &inbox);
    }

    fn push_inbox(&self, state: &SiteState) {
        for (ws, socket) in self.consoles() {
            if let Some(agent) = socket.agent {
                send_json(&ws, &self.inbox(state, &agent.id));
            }
        }
    }

    async fn device_gone(&self, ws: &WebSocket) {
        let Some(socket) = load_attachment::<ConsoleSocket>(ws) else {
            return;
        };
        if let Some(agent) = socket.agent {
            let _ = self
                .apply(SiteInput::DeviceDisconnected {
                    agent: agent.id,
                    device: socket.device,
                })
                .await;
        }
    }

    /// An agent's routing profile: as routing knows them, else from D1 (`None` if no such
    /// enabled agent, e.g. an API key acting as one).
    /// An error is a D1 that could not answer, not "no such agent".
    async fn routing_profile(&self, agent: &str) -> worker::Result<Option<AgentProfile>> {
        if let Some(profile) = self.peek_state(|s| s.agents.get(agent).map(|a| a.profile.clone())) {
            return Ok(Some(profile));
        }
        stored_agent_profile(&self.env, agent).await
    }

    /// What the visitor's widget last reported (page, language, country), for a conversation
    /// routed without a context: a bot's hand-off, when the creation was not routed. Routing
    /// prefers the department the conversation already had.
    async fn known_context(&self, conversation: &str) -> RoutingContext {
        from_row! {
            struct Row {
                context: String,
                country: Option<String>,
            }
        }
        let config = self.fresh_routing_config().await;
        if self.peek_state(|s| s.remembered_department(conversation).is_some())
            || config.rules.is_empty()
        {
            return RoutingContext::default();
        }
        let row = async {
            self.env
                .d1("DB")?
                .prepare(
                    "SELECT v.context, v.country FROM conversations c JOIN visitors v ON v.id = c.visitor_id
                     WHERE c.id = ?1",
                )
                .bind(&[conversation.into()])?
                .first_row::<Row>()
                .await
        }
        .await;
        let Ok(Some(row)) = row else {
            return RoutingContext::default();
        };
        let reported: serde_json::Value =
            parley_core::json::from_str(&row.context).unwrap_or_default();
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        RoutingContext {
            url: reported.pointer("/page/url").and_then(text),
            language: reported.get("lang").and_then(text),
            country: row.country,
            param: None,
        }
    }

    /// Remembers which site this object is, from the first request that says so.
    fn learn_site(&self, site: &str) {
        if !site.is_empty() && self.site_from_storage().is_none() {
            self.kv_put("site", site);
        }
    }

    /// Accepts a console's socket, which signs in with its first frame; like a conversation's
    /// sockets, it must do so within the hello timeout, and one address may hold only a few
    /// that have not.
    fn accept_console(&self, req: &Request) -> ApiResult {
        let site = req.headers().get(SITE_HEADER).ok().flatten();
        if let Some(site) = &site {
            self.learn_site(site);
        }
        let now = now_ms();
        let ip = req.headers().get(IP_HEADER).ok().flatten();
        let room = crate::unsigned_sockets::make_room(
            &self.state,
            ip.as_deref(),
            now,
            |ws| {
                let console = load_attachment::<ConsoleSocket>(ws)?;
                console
                    .agent
                    .is_none()
                    .then_some(crate::unsigned_sockets::Unsigned {
                        ip: console.ip,
                        opened_at: console.opened_at,
                    })
            },
            close_silent_console,
        );
        if let Err(code) = room {
            Log::info("console_refused")
                .site(site.as_deref().unwrap_or_default())
                .error_class(code.as_str())
                .emit();
            return Err(code.into());
        }
        let pair = WebSocketPair::new().map_err(|_| ApiError::from(ErrorCode::Internal))?;
        let device = random_16()
            .map(|b| parley_core::ids::base32(&b))
            .map_err(|_| ApiError::from(ErrorCode::Internal))?;
        let socket = ConsoleSocket {
            agent: None,
            device,
            lang: req.headers().get(LANG_HEADER).ok().flatten(),
            sid: None,
            ip,
            opened_at: now,
        };
        self.state.accept_web_socket(&pair.server);
        save_attachment(&pair.server, &socket).map_err(|_| ApiError::from(ErrorCode::Internal))?;
        self.hello_timers
            .start(&self.state, pair.server, close_silent_console);
        Response::from_websocket(pair.client).map_err(|_| ErrorCode::Internal.into())
    }

    /// Conversation activity: the inbox feed, routing, and rows for the next D1 batch.
    /// Answers whether the rows are in D1 and whether routing took the news. Activity without
    /// rows is news told again (see the conversation's `resend_routing_news`): routing only,
    /// the feed had it the first time.
    pub(crate) async fn activity(
        &self,
        events: Vec<Activity>,
        mirror: Option<parley_core::mirror::MirrorRows>,
    ) -> SiteHeard {
        let retold = mirror.is_none();
        // Queued first, so the rows make the batch that is open now.
        let mirrored = mirror.map(|rows| self.mirror.submit(&self.state, rows));
        let mut routed = true;
        for activity in events {
            if !retold {
                self.feed(serde_json::json!({
                    "event": "activity", "conversation": activity.conversation, "seq": activity.seq,
                    "kind": activity.kind, "author_role": activity.author_role, "at": activity.at,
                    "preview": activity.preview,
                }));
            }
            let input = match (activity.kind.as_str(), activity.author_role) {
                // A reply that is only a file is an answer too.
                ("message" | "file", Role::Agent) => Some(SiteInput::AgentReplied {
                    conversation: activity.conversation,
                    agent: activity.author_id,
                }),
                ("closed", _) => Some(SiteInput::Closed {
                    conversation: activity.conversation,
                }),
                // An agent took the conversation themselves (the API's `assign`): the author
                // is the agent assigned. Routing's own assignments are written by the system.
                ("assigned", Role::Agent) => {
                    match self.routing_profile(&activity.author_id).await {
                        Ok(profile) => profile.map(|agent| SiteInput::AssignedByAgent {
                            conversation: activity.conversation,
                            agent,
                            at: activity.at,
                        }),
                        // Not known to be no agent: the news is kept and told again, or the
                        // person's choice would be lost to routing's earlier plan.
                        Err(_) => {
                            routed = false;
                            None
                        }
                    }
                }
                ("reopened", role) => {
                    // An agent who reopens a conversation carries on with it; if D1 cannot say
                    // who they are, the news is kept and told again rather than routed away.
                    let by_agent = match role {
                        Role::Agent => self.routing_profile(&activity.author_id).await,
                        _ => Ok(None),
                    };
                    match by_agent {
                        Ok(by_agent) => Some(SiteInput::Reopened {
                            conversation: activity.conversation,
                            by_agent,
                        }),
                        Err(_) => {
                            routed = false;
                            None
                        }
                    }
                }
                _ => None,
            };
            let Some(input) = input else { continue };
            if let SiteInput::AgentReplied {
                conversation,
                agent,
            } = &input
            {
                // Only the assigned agent's first answer changes routing (it stops the
                // clock); every later reply would run routing for nothing.
                let first_answer = self.peek_state(|s| {
                    s.assignments
                        .get(conversation)
                        .is_some_and(|a| a.agent == *agent && !a.answered)
                });
                if !first_answer {
                    continue;
                }
            }
            // A decision (even "unknown conversation") is news taken; a state that cannot be
            // read is not.
            if let Err(RoutingError::StateUnreadable) = self.apply(input).await {
                routed = false;
            }
        }
        let mirrored = match mirrored {
            Some(confirmation) => confirmation.await,
            None => false,
        };
        SiteHeard { mirrored, routed }
    }

    async fn request(&self, req: &mut Request, site: &str) -> ApiResult {
        self.learn_site(site);
        let request = read_internal_with(req, SiteRequest::from_json).await?;
        let ok = |v: serde_json::Value| {
            json_response(&v, 200).map_err(|_| ApiError::from(ErrorCode::Internal))
        };
        match request {
            SiteRequest::NewConversation {
                conversation,
                mut context,
            } => {
                self.feed(serde_json::json!({ "event": "new", "conversation": conversation }));
                if context == RoutingContext::default() {
                    context = self.known_context(&conversation).await;
                }
                self.apply(SiteInput::NewConversation {
                    conversation,
                    context,
                })
                .await
                .map_err(|e| ApiError::from(e.code()))?;
                ok(serde_json::json!({}))
            }
            SiteRequest::AgentRead {
                conversation,
                agent,
                seq,
            } => {
                // Nothing for routing: the reader's consoles update their unread counts.
                self.feed(serde_json::json!({
                    "event": "read", "conversation": conversation, "agent": agent, "seq": seq,
                }));
                ok(serde_json::json!({}))
            }
            SiteRequest::Activity { events, mirror } => {
                let conversation = mirror
                    .as_ref()
                    .map(|rows| rows.conversation.id.clone())
                    .or_else(|| events.first().map(|a| a.conversation.clone()));
                let heard = self.activity(events, mirror).await;
                // It had no line (see `site_link`): its next notifications take one.
                if let (Some(conversation), Some(me)) = (conversation, self.me.upgrade()) {
                    me.open_line(conversation);
                }
                json_response(&heard, 200).map_err(|_| ApiError::from(ErrorCode::Internal))
            }
            SiteRequest::Claim {
                conversation,
                agent,
            } => {
                let agent_id = agent.id.clone();
                self.apply(SiteInput::Claim {
                    conversation: conversation.clone(),
                    agent,
                })
                .await
                .map_err(|e| ApiError::from(e.code()))?;
                ok(serde_json::json!({ "conversation": conversation, "agent": agent_id }))
            }
            SiteRequest::Transfer {
                conversation,
                by,
                to,
            } => {
                let effects = self
                    .apply(SiteInput::Transfer {
                        conversation: conversation.clone(),
                        by,
                        to,
                    })
                    .await
                    .map_err(|e| ApiError::from(e.code()))?;
                let outcome = effects.iter().find_map(|e| match e {
                    SiteEffect::Assigned { agent, .. } => {
                        Some(serde_json::json!({ "assigned": agent }))
                    }
                    SiteEffect::Queued { position, .. } => {
                        Some(serde_json::json!({ "queued": position }))
                    }
                    _ => None,
                });
                ok(serde_json::json!({ "conversation": conversation, "outcome": outcome }))
            }
            SiteRequest::Erased { conversation } => {
                // Before the caller deletes the conversation's rows from D1, which it does only
                // after this answer; a batch that does not land in time fails the erasure, to
                // be tried again.
                if !self.mirror.forget(&conversation).await {
                    return Err(ErrorCode::Internal.into());
                }
                self.apply(SiteInput::Erased {
                    conversations: vec![conversation],
                })
                .await
                .map_err(|e| ApiError::from(e.code()))?;
                ok(serde_json::json!({}))
            }
            SiteRequest::Online => {
                let online = self.peek_state(|s| s.agents.values().any(|a| a.is_available()));
                ok(serde_json::json!({ "online": online }))
            }
            SiteRequest::EndSession { sid, agent, keep } => {
                let mut closed = 0;
                for (ws, socket) in self.consoles() {
                    let by_session = sid.is_some() && socket.sid == sid;
                    let by_agent = agent.is_some()
                        && socket.agent.as_ref().map(|a| &a.id) == agent.as_ref()
                        && (keep.is_none() || socket.sid != keep);
                    if by_session || by_agent {
                        let _ = ws.send_with_str(
                            ApiError::from(ErrorCode::SessionEnded)
                                .frame(Lang::En)
                                .to_json(),
                        );
                        let _ = ws.close(Some(1008), Some("session_ended"));
                        self.device_gone(&ws).await;
                        closed += 1;
                    }
                }
                ok(serde_json::json!({ "closed": closed }))
            }
            SiteRequest::Position { conversation } => {
                let position = self.peek_state(|s| s.position(&conversation));
                ok(serde_json::json!({ "position": position }))
            }
        }
    }
}

/// What became of a request to a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Done,
    /// It answered 404: erased (or never created).
    Gone,
    /// It could not be reached or refused; logged, and routing carries on.
    Failed,
}

fn reason_name(reason: parley_core::routing::AssignReason) -> &'static str {
    use parley_core::routing::AssignReason::*;
    match reason {
        Routed => "routed",
        Claimed => "claimed",
        Transferred => "transferred",
        Timeout => "timeout",
        AgentOffline => "agent_offline",
    }
}
