//! The conversation state machine: one writer per conversation, gap-free `seq`,
//! deduplication by (author, client_msg_id), resume by `seq`, read markers.
//!
//! `Engine::handle(store, command, now)` validates a command, writes what must be durable
//! through the synchronous [`Store`] port, and only then returns the frames to reply and
//! broadcast: persist before acknowledge or broadcast is a property of this function.

use std::collections::{BTreeMap, HashMap};

use crate::error::ErrorCode;
use crate::ids::is_valid_client_msg_id;
use crate::limits::{DEFAULT_PAGE, DEFAULT_REPLAY_WINDOW, MAX_PAGE, MAX_TEXT_CHARS};
use crate::protocol::{
    Event, EventPayload, FileRef, Participant, ResetReason, Role, ServerFrame, Status,
};
use crate::ratelimit::{Rate, TokenBucket};

/// What is known about a conversation; `status`, `assignee` and `head` follow from its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub id: String,
    pub site: String,
    pub team: String,
    pub visitor: String,
    pub epoch: String,
    pub created_at: i64,
    pub status: Status,
    pub assignee: Option<String>,
    pub head: u64,
    /// When the newest assignment the conversation took started (see [`Command::Assign`]):
    /// routing's assignments that started before it are stale and not recorded. None when
    /// none is known (never assigned, or assigned before this was kept).
    pub assigned_since: Option<i64>,
}

/// Durable storage of one conversation. Every method is synchronous: in the Durable Object
/// it is SQLite in the object's own storage, where writes made in one turn commit together.
pub trait Store {
    type Error: std::fmt::Display;

    /// The conversation, with `head`, `status` and `assignee` derived from its log.
    fn load_meta(&self) -> Result<Option<Meta>, Self::Error>;
    /// Records a new conversation and its first event.
    fn create(&mut self, meta: &Meta, first: &Event) -> Result<(), Self::Error>;
    /// Appends the events of one command as a single atomic write (each event with its dedupe
    /// key and its mirror position): either all of them are stored or none.
    fn append(&mut self, events: &[Event]) -> Result<(), Self::Error>;
    fn seq_for_client_msg(
        &self,
        author: &str,
        client_msg_id: &str,
    ) -> Result<Option<u64>, Self::Error>;
    /// Events with `seq > after`, oldest first, at most `limit`.
    fn events_after(&self, after: u64, limit: u32) -> Result<Vec<Event>, Self::Error>;
    /// The `limit` events just before `before`, oldest first.
    fn events_before(&self, before: u64, limit: u32) -> Result<Vec<Event>, Self::Error>;
    fn reads(&self) -> Result<BTreeMap<String, u64>, Self::Error>;
    fn save_read(&mut self, participant: &str, seq: u64) -> Result<(), Self::Error>;
    /// The latest `rated` event after the latest `closed` one: the rating of the current
    /// closing, if the visitor gave one.
    fn rating_since_close(&self) -> Result<Option<Event>, Self::Error>;
    /// Keeps [`Meta::assigned_since`]; `load_meta` reads it back.
    fn save_assigned_since(&mut self, since: i64) -> Result<(), Self::Error>;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Most events replayed to a resuming client before it is told to `reset`.
    pub replay_window: u64,
    /// Messages per visitor.
    pub visitor_messages: Rate,
    /// Messages per agent.
    pub agent_messages: Rate,
    /// Messages per IP address, whoever sends them.
    pub ip_messages: Rate,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            replay_window: DEFAULT_REPLAY_WINDOW,
            visitor_messages: Rate::VISITOR_MESSAGES,
            agent_messages: Rate::AGENT_MESSAGES,
            ip_messages: Rate::IP_MESSAGES,
        }
    }
}

/// Everything a participant or the shell can ask of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A client (re)joins; `after` is the last `seq` it holds, `epoch` the log it holds it from.
    Hello {
        who: Participant,
        after: Option<u64>,
        epoch: Option<String>,
    },
    Send {
        who: Participant,
        ip: Option<String>,
        client_msg_id: String,
        text: String,
    },
    /// A file the participant uploaded (checked and stored by the shell), posted as an event.
    Attach {
        who: Participant,
        ip: Option<String>,
        client_msg_id: String,
        file: FileRef,
    },
    /// A translation of message `of` (or its failure) arrived; recorded once per target language.
    Translate {
        of: u64,
        from: String,
        to: String,
        result: Result<String, String>,
        provider: String,
    },
    /// A message the site's automation posts (away reply, keyword reply, closing notice),
    /// once per `key`.
    Automated {
        key: String,
        text: String,
        /// Shown as the author (e.g. the bot's name); the site itself when absent.
        name: Option<String>,
    },
    /// The visitor asked for a person (a button or a keyword): the bot steps aside.
    Handoff {
        who: Participant,
    },
    /// The visitor rates the closed conversation (1–5, optional comment), once per closing.
    Rate {
        who: Participant,
        score: u8,
        comment: Option<String>,
    },
    /// A private note from an agent; visitors see a `hidden` event in its place.
    Note {
        who: Participant,
        client_msg_id: String,
        text: String,
    },
    Typing {
        who: Participant,
        active: bool,
    },
    Read {
        who: Participant,
        seq: u64,
    },
    Close {
        who: Participant,
    },
    Reopen {
        who: Participant,
    },
    /// `who` gives the conversation to `agent`: a person (themselves, from the API), or routing
    /// (as `system`), which hears of a person's choice only afterwards and tells its own
    /// decisions late when the conversation was out of reach.
    Assign {
        who: Participant,
        agent: Participant,
        /// When routing's assignment started (`routing::Assignment::start`, on the site's
        /// clock): a telling that arrives after a newer assignment, routing's or a person's, is
        /// not recorded. None from a person (their assignment starts now) and from a site of an
        /// older release (recorded as before).
        since: Option<i64>,
    },
    /// The plain-HTTP replay: events after `after` (an empty list means "nothing new yet").
    Poll {
        after: u64,
        epoch: Option<String>,
    },
    History {
        before: Option<u64>,
        limit: Option<u32>,
    },
}

impl Command {
    /// The client's id for the message this command posts, if it posts one: an error about the
    /// command names it, so the client knows which message to retry.
    pub fn client_msg_id(&self) -> Option<&str> {
        match self {
            Command::Send { client_msg_id, .. }
            | Command::Attach { client_msg_id, .. }
            | Command::Note { client_msg_id, .. } => Some(client_msg_id),
            _ => None,
        }
    }
}

/// What the shell must do, in order, after a command was handled.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send to whoever issued the command.
    Reply(ServerFrame),
    /// Send to every connected, signed-in socket of the conversation.
    Broadcast(ServerFrame),
    /// Send to every signed-in socket except those of `participant`.
    BroadcastExcept {
        participant: String,
        frame: ServerFrame,
    },
    /// The log grew: the D1 mirror has work.
    Mirror,
    /// Something a long-polling client waits for changed.
    Wake,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError<E> {
    /// The command was refused; nothing changed.
    Rejected {
        code: ErrorCode,
        client_msg_id: Option<String>,
        retry_after_ms: Option<u64>,
    },
    /// Storage failed; nothing was acknowledged.
    Store(E),
}

impl<E> EngineError<E> {
    fn reject(code: ErrorCode) -> Self {
        EngineError::Rejected {
            code,
            client_msg_id: None,
            retry_after_ms: None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Rejected { code, .. } => *code,
            EngineError::Store(_) => ErrorCode::StorageUnavailable,
        }
    }
}

type Outcome<E> = Result<Vec<Effect>, EngineError<E>>;

/// How far back `answered_since` looks for a reply, in events, and how many
/// it reads at a time.
const ANSWER_LOOKBACK: u64 = 500;
const ANSWER_PAGE: u32 = 50;

/// A refusal of a message, naming it so the client can match it to its outbox.
fn reject_message<E>(code: ErrorCode, client_msg_id: &str) -> EngineError<E> {
    EngineError::Rejected {
        code,
        client_msg_id: Some(client_msg_id.to_string()),
        retry_after_ms: None,
    }
}

/// Limits flood state to a bounded size; it resets with the object, which only forgives.
const MAX_BUCKETS: usize = 4096;

pub struct Engine {
    meta: Meta,
    config: EngineConfig,
    buckets: HashMap<String, TokenBucket>,
}

/// The longest name an automated message (a bot's) is shown under, in characters.
pub const MAX_AUTOMATED_NAME_CHARS: usize = 60;

/// The author of events the system writes itself.
pub fn system_participant() -> Participant {
    Participant {
        id: "system".into(),
        role: Role::System,
        name: None,
    }
}

impl Engine {
    /// Starts a conversation: its meta and a plain `created` event (seq 1).
    pub fn create<S: Store>(
        store: &mut S,
        config: EngineConfig,
        meta: Meta,
        author: Participant,
    ) -> Result<(Engine, Vec<Effect>), EngineError<S::Error>> {
        let created = EventPayload::Created {
            form: None,
            fields: BTreeMap::new(),
        };
        Engine::create_with(store, config, meta, author, created)
    }

    /// Starts a conversation whose `created` event carries `created` (e.g. form answers).
    pub fn create_with<S: Store>(
        store: &mut S,
        config: EngineConfig,
        mut meta: Meta,
        author: Participant,
        created: EventPayload,
    ) -> Result<(Engine, Vec<Effect>), EngineError<S::Error>> {
        if !matches!(created, EventPayload::Created { .. }) {
            return Err(EngineError::reject(ErrorCode::InvalidRequest));
        }
        if store.load_meta().map_err(EngineError::Store)?.is_some() {
            return Err(EngineError::reject(ErrorCode::InvalidRequest));
        }
        let first = Event {
            seq: 1,
            payload: created,
            author,
            at: meta.created_at,
            client_msg_id: None,
            masked: false,
        };
        meta.head = 1;
        meta.status = Status::Open;
        store.create(&meta, &first).map_err(EngineError::Store)?;
        let engine = Engine {
            meta,
            config,
            buckets: HashMap::new(),
        };
        Ok((engine, vec![Effect::Mirror]))
    }

    /// Rebuilds the engine from storage, e.g. after eviction or hibernation.
    pub fn load<S: Store>(store: &S, config: EngineConfig) -> Result<Option<Engine>, S::Error> {
        Ok(store.load_meta()?.map(|meta| Engine {
            meta,
            config,
            buckets: HashMap::new(),
        }))
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Whether `agent`, the conversation's assignee, has replied (a message or a file) at or
    /// after `since`, when routing assigned it to them. Routing asks before its answer clock
    /// hands the conversation on: the news of a reply can be lost with a site that restarted,
    /// and the agent who answered would then lose the conversation. Routing can give a
    /// conversation back to the same agent without a new `assigned` event, so the time, not the
    /// log's last assignment, says which replies answer this assignment. Looks back over at
    /// most `ANSWER_LOOKBACK` events (the clock is minutes long).
    pub fn answered_since<S: Store>(
        &self,
        store: &S,
        agent: &str,
        since: i64,
    ) -> Result<bool, S::Error> {
        if self.meta.assignee.as_deref() != Some(agent) {
            return Ok(false);
        }
        let mut before = self.meta.head + 1;
        while before > 1 && self.meta.head + 1 - before < ANSWER_LOOKBACK {
            let page = store.events_before(before, ANSWER_PAGE)?;
            let Some(first) = page.first() else { break };
            before = first.seq;
            for event in page.iter().rev() {
                if event.at < since {
                    return Ok(false);
                }
                let reply = matches!(
                    event.payload,
                    EventPayload::Message { .. } | EventPayload::File { .. }
                );
                if reply && event.author.role == Role::Agent && event.author.id == agent {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    pub fn handle<S: Store>(
        &mut self,
        store: &mut S,
        command: Command,
        now: i64,
    ) -> Outcome<S::Error> {
        match command {
            Command::Hello { who, after, epoch } => self.hello(store, who, after, epoch),
            Command::Send {
                who,
                ip,
                client_msg_id,
                text,
            } => self.send(store, who, ip, client_msg_id, text, now),
            Command::Note {
                who,
                client_msg_id,
                text,
            } => self.note(store, who, client_msg_id, text, now),
            Command::Attach {
                who,
                ip,
                client_msg_id,
                file,
            } => self.attach(store, who, ip, client_msg_id, file, now),
            Command::Typing { who, active } => Ok(self.typing(who, active, now)),
            Command::Read { who, seq } => self.read(store, who, seq),
            Command::Close { who } => self.set_status(store, who, Status::Closed, now),
            Command::Reopen { who } => self.set_status(store, who, Status::Open, now),
            Command::Rate {
                who,
                score,
                comment,
            } => self.rate(store, who, score, comment, now),
            Command::Translate {
                of,
                from,
                to,
                result,
                provider,
            } => self.translate(store, of, from, to, result, provider, now),
            Command::Automated { key, text, name } => self.automated(store, key, text, name, now),
            Command::Handoff { who } => {
                // People take conversations rather than hand them off; the team's own bot,
                // answering with an API key, hands off like the built-in one.
                let bot_key = who.id.starts_with(crate::api_key::ID_PREFIX);
                if who.role == Role::Agent && !bot_key {
                    return Err(EngineError::reject(ErrorCode::Forbidden));
                }
                self.lifecycle(store, EventPayload::Handoff {}, who, now)
            }
            Command::Assign { who, agent, since } => self.assign(store, who, agent, since, now),
            Command::Poll { after, epoch } => self.poll(store, after, epoch),
            Command::History { before, limit } => self.history(store, before, limit),
        }
    }

    /// Decides how a client holding events up to `after` of log `epoch` catches up.
    fn resume_check(&self, after: u64, epoch: Option<&str>) -> Option<ResetReason> {
        if epoch.is_some_and(|e| e != self.meta.epoch) {
            Some(ResetReason::EpochMismatch)
        } else if after > self.meta.head {
            Some(ResetReason::AheadOfHead)
        } else if self.meta.head - after > self.config.replay_window {
            Some(ResetReason::GapTooLarge)
        } else {
            None
        }
    }

    fn reset_frame(&self, reason: ResetReason) -> ServerFrame {
        ServerFrame::Reset {
            epoch: self.meta.epoch.clone(),
            head: self.meta.head,
            reason,
        }
    }

    fn hello<S: Store>(
        &mut self,
        store: &mut S,
        who: Participant,
        after: Option<u64>,
        epoch: Option<String>,
    ) -> Outcome<S::Error> {
        let reads = store.reads().map_err(EngineError::Store)?;
        let mut effects = vec![Effect::Reply(ServerFrame::Welcome {
            conversation: self.meta.id.clone(),
            epoch: self.meta.epoch.clone(),
            head: self.meta.head,
            status: self.meta.status,
            participant: who,
            reads,
        })];
        // Without `after` the client starts live and loads history itself when it wants it.
        if let Some(after) = after {
            match self.resume_check(after, epoch.as_deref()) {
                Some(reason) => effects.push(Effect::Reply(self.reset_frame(reason))),
                None => {
                    let limit = u32::try_from(self.meta.head - after).unwrap_or(u32::MAX);
                    let missed = store
                        .events_after(after, limit)
                        .map_err(EngineError::Store)?;
                    effects.extend(
                        missed
                            .into_iter()
                            .map(|e| Effect::Reply(ServerFrame::Event(e))),
                    );
                }
            }
        }
        Ok(effects)
    }

    fn take_token(&mut self, key: String, rate: Rate, now: i64) -> Result<(), u64> {
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&key) {
            self.buckets.clear();
        }
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(rate, now))
            .try_take(rate, now)
    }

    /// Stores the events of one command together, then advances the in-memory state.
    fn append<S: Store>(
        &mut self,
        store: &mut S,
        items: Vec<(EventPayload, Participant, Option<String>)>,
        now: i64,
    ) -> Result<Vec<Event>, EngineError<S::Error>> {
        let events: Vec<Event> = items
            .into_iter()
            .zip(self.meta.head + 1..)
            .map(|((payload, author, client_msg_id), seq)| Event {
                seq,
                payload,
                author,
                at: now,
                client_msg_id,
                masked: false,
            })
            .collect();
        store.append(&events).map_err(EngineError::Store)?;
        for event in &events {
            self.meta.head = event.seq;
            match &event.payload {
                EventPayload::Closed {} => self.meta.status = Status::Closed,
                EventPayload::Reopened {} => self.meta.status = Status::Open,
                EventPayload::Assigned { agent } => self.meta.assignee = Some(agent.id.clone()),
                EventPayload::Message { .. }
                | EventPayload::Created { .. }
                | EventPayload::Note { .. }
                | EventPayload::File { .. }
                | EventPayload::Rated { .. }
                | EventPayload::Translation { .. }
                | EventPayload::Handoff {}
                | EventPayload::Hidden {} => {}
            }
        }
        Ok(events)
    }

    /// [`Self::append`] for a command that stores exactly one event.
    fn append_one<S: Store>(
        &mut self,
        store: &mut S,
        item: (EventPayload, Participant, Option<String>),
        now: i64,
    ) -> Result<Event, EngineError<S::Error>> {
        self.append(store, vec![item], now)?
            .pop()
            .ok_or(EngineError::reject(ErrorCode::Internal))
    }

    fn send<S: Store>(
        &mut self,
        store: &mut S,
        who: Participant,
        ip: Option<String>,
        client_msg_id: String,
        text: String,
        now: i64,
    ) -> Outcome<S::Error> {
        let check = |id: &str| {
            if text.trim().is_empty() {
                Err(reject_message(ErrorCode::EmptyMessage, id))
            } else if text.chars().count() > MAX_TEXT_CHARS {
                Err(reject_message(ErrorCode::MessageTooLong, id))
            } else {
                Ok(())
            }
        };
        let checked = check(&client_msg_id);
        self.post(
            store,
            who,
            ip,
            client_msg_id,
            checked.map(|_| EventPayload::Message { text }),
            now,
        )
    }

    fn attach<S: Store>(
        &mut self,
        store: &mut S,
        who: Participant,
        ip: Option<String>,
        client_msg_id: String,
        file: FileRef,
        now: i64,
    ) -> Outcome<S::Error> {
        self.post(
            store,
            who,
            ip,
            client_msg_id,
            Ok(EventPayload::File { file }),
            now,
        )
    }

    /// What a participant posts (a message or a file): deduplicated by `client_msg_id`,
    /// validated, rate limited, reopening a closed conversation when a visitor writes.
    fn post<S: Store>(
        &mut self,
        store: &mut S,
        who: Participant,
        ip: Option<String>,
        client_msg_id: String,
        payload: Result<EventPayload, EngineError<S::Error>>,
        now: i64,
    ) -> Outcome<S::Error> {
        if !is_valid_client_msg_id(&client_msg_id) {
            // Echoed so the client can tell which of its messages was refused.
            return Err(reject_message(
                ErrorCode::InvalidClientMsgId,
                &client_msg_id,
            ));
        }
        // A retry of a stored message is answered with its original seq, whatever the text.
        if let Some(seq) = store
            .seq_for_client_msg(&who.id, &client_msg_id)
            .map_err(EngineError::Store)?
        {
            return Ok(vec![Effect::Reply(ServerFrame::Ack {
                client_msg_id,
                seq,
                duplicate: true,
            })]);
        }
        let payload = payload?;
        let rate = match who.role {
            Role::Visitor => self.config.visitor_messages,
            Role::Agent | Role::System => self.config.agent_messages,
        };
        let limited = |wait| EngineError::Rejected {
            code: ErrorCode::RateLimited,
            client_msg_id: Some(client_msg_id.clone()),
            retry_after_ms: Some(wait),
        };
        if let Err(wait) = self.take_token(format!("p:{}", who.id), rate, now) {
            return Err(limited(wait));
        }
        if let Some(ip) = ip {
            if let Err(wait) = self.take_token(format!("ip:{ip}"), self.config.ip_messages, now) {
                return Err(limited(wait));
            }
        }
        let mut items = Vec::with_capacity(2);
        if self.meta.status == Status::Closed && who.role == Role::Visitor {
            // A visitor writing into a closed conversation reopens it, in the same write.
            items.push((EventPayload::Reopened {}, who.clone(), None));
        }
        items.push((payload, who, Some(client_msg_id.clone())));
        let events = self.append(store, items, now)?;
        let seq = events.last().map_or(self.meta.head, |e| e.seq);
        let mut effects = vec![Effect::Reply(ServerFrame::Ack {
            client_msg_id,
            seq,
            duplicate: false,
        })];
        effects.extend(
            events
                .into_iter()
                .map(|e| Effect::Broadcast(ServerFrame::Event(e))),
        );
        effects.push(Effect::Mirror);
        effects.push(Effect::Wake);
        Ok(effects)
    }

    fn note<S: Store>(
        &mut self,
        store: &mut S,
        who: Participant,
        client_msg_id: String,
        text: String,
        now: i64,
    ) -> Outcome<S::Error> {
        if who.role != Role::Agent {
            return Err(EngineError::reject(ErrorCode::Forbidden));
        }
        let refuse = |code| EngineError::Rejected {
            code,
            client_msg_id: Some(client_msg_id.clone()),
            retry_after_ms: None,
        };
        if !is_valid_client_msg_id(&client_msg_id) {
            return Err(refuse(ErrorCode::InvalidClientMsgId));
        }
        if let Some(seq) = store
            .seq_for_client_msg(&who.id, &client_msg_id)
            .map_err(EngineError::Store)?
        {
            return Ok(vec![Effect::Reply(ServerFrame::Ack {
                client_msg_id,
                seq,
                duplicate: true,
            })]);
        }
        if text.trim().is_empty() {
            return Err(refuse(ErrorCode::EmptyMessage));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(refuse(ErrorCode::MessageTooLong));
        }
        if let Err(wait) = self.take_token(format!("p:{}", who.id), self.config.agent_messages, now)
        {
            return Err(EngineError::Rejected {
                code: ErrorCode::RateLimited,
                client_msg_id: Some(client_msg_id),
                retry_after_ms: Some(wait),
            });
        }
        let event = self.append_one(
            store,
            (
                EventPayload::Note { text },
                who,
                Some(client_msg_id.clone()),
            ),
            now,
        )?;
        Ok(vec![
            Effect::Reply(ServerFrame::Ack {
                client_msg_id,
                seq: event.seq,
                duplicate: false,
            }),
            Effect::Broadcast(ServerFrame::Event(event)),
            Effect::Mirror,
            Effect::Wake,
        ])
    }

    fn typing(&mut self, who: Participant, active: bool, now: i64) -> Vec<Effect> {
        // Typing is a hint: over the limit it is dropped, never an error.
        if self
            .take_token(format!("t:{}", who.id), Rate::TYPING, now)
            .is_err()
        {
            return Vec::new();
        }
        vec![Effect::BroadcastExcept {
            participant: who.id.clone(),
            frame: ServerFrame::Typing {
                participant: who,
                active,
            },
        }]
    }

    fn read<S: Store>(&mut self, store: &mut S, who: Participant, seq: u64) -> Outcome<S::Error> {
        if seq > self.meta.head {
            return Err(EngineError::reject(ErrorCode::InvalidSeq));
        }
        let reads = store.reads().map_err(EngineError::Store)?;
        if reads.get(&who.id).is_some_and(|&current| current >= seq) {
            return Ok(Vec::new());
        }
        store.save_read(&who.id, seq).map_err(EngineError::Store)?;
        Ok(vec![
            Effect::Broadcast(ServerFrame::Read {
                participant: who.id,
                seq,
            }),
            Effect::Wake,
        ])
    }

    fn lifecycle<S: Store>(
        &mut self,
        store: &mut S,
        payload: EventPayload,
        who: Participant,
        now: i64,
    ) -> Outcome<S::Error> {
        let event = self.append_one(store, (payload, who, None), now)?;
        Ok(vec![
            Effect::Reply(ServerFrame::Event(event.clone())),
            Effect::Broadcast(ServerFrame::Event(event)),
            Effect::Mirror,
            Effect::Wake,
        ])
    }

    fn set_status<S: Store>(
        &mut self,
        store: &mut S,
        who: Participant,
        status: Status,
        now: i64,
    ) -> Outcome<S::Error> {
        // Agents close and reopen; the system closes idle conversations.
        if who.role == Role::Visitor {
            return Err(EngineError::reject(ErrorCode::Forbidden));
        }
        if self.meta.status == status {
            return Ok(Vec::new());
        }
        let payload = match status {
            Status::Closed => EventPayload::Closed {},
            Status::Open => EventPayload::Reopened {},
        };
        self.lifecycle(store, payload, who, now)
    }

    fn automated<S: Store>(
        &mut self,
        store: &mut S,
        key: String,
        text: String,
        name: Option<String>,
        now: i64,
    ) -> Outcome<S::Error> {
        let system = Participant {
            name: name
                .map(|n| crate::protocol::display_name(&n, MAX_AUTOMATED_NAME_CHARS))
                .filter(|n| !n.is_empty()),
            ..system_participant()
        };
        if store
            .seq_for_client_msg(&system.id, &key)
            .map_err(EngineError::Store)?
            .is_some()
            || text.trim().is_empty()
        {
            return Ok(Vec::new());
        }
        let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
        let event = self.append_one(
            store,
            (EventPayload::Message { text }, system, Some(key)),
            now,
        )?;
        Ok(vec![
            Effect::Broadcast(ServerFrame::Event(event)),
            Effect::Mirror,
            Effect::Wake,
        ])
    }

    #[allow(clippy::too_many_arguments)]
    fn translate<S: Store>(
        &mut self,
        store: &mut S,
        of: u64,
        from: String,
        to: String,
        result: Result<String, String>,
        provider: String,
        now: i64,
    ) -> Outcome<S::Error> {
        if of == 0 || of > self.meta.head {
            return Err(EngineError::reject(ErrorCode::InvalidSeq));
        }
        // One translation per message and language, however often it is delivered.
        let key = format!("tr:{of}:{to}");
        let system = system_participant();
        if store
            .seq_for_client_msg(&system.id, &key)
            .map_err(EngineError::Store)?
            .is_some()
        {
            return Ok(Vec::new());
        }
        let (text, failed) = match result {
            Ok(text) => (Some(text.chars().take(MAX_TEXT_CHARS * 2).collect()), None),
            Err(reason) => (None, Some(reason)),
        };
        let payload = EventPayload::Translation {
            of,
            from,
            to,
            text,
            provider,
            failed,
        };
        let event = self.append_one(store, (payload, system, Some(key)), now)?;
        Ok(vec![
            Effect::Broadcast(ServerFrame::Event(event)),
            Effect::Mirror,
            Effect::Wake,
        ])
    }

    fn rate<S: Store>(
        &mut self,
        store: &mut S,
        who: Participant,
        score: u8,
        comment: Option<String>,
        now: i64,
    ) -> Outcome<S::Error> {
        if who.role != Role::Visitor {
            return Err(EngineError::reject(ErrorCode::Forbidden));
        }
        if !(1..=5).contains(&score) {
            return Err(EngineError::reject(ErrorCode::InvalidRequest));
        }
        // A rating is the visitor's verdict on a conversation that ended.
        if self.meta.status != Status::Closed {
            return Err(EngineError::reject(ErrorCode::ConversationOpen));
        }
        // One per closing: asked again (a retry after a lost answer, a second click), the stored
        // rating answers, whatever the new score, and nothing is stored, as with a message's retry.
        if let Some(stored) = store.rating_since_close().map_err(EngineError::Store)? {
            return Ok(vec![Effect::Reply(ServerFrame::Event(stored))]);
        }
        // A stored rating is broadcast and mirrored like a message, and paid for like one.
        if let Err(wait) =
            self.take_token(format!("p:{}", who.id), self.config.visitor_messages, now)
        {
            return Err(EngineError::Rejected {
                code: ErrorCode::RateLimited,
                client_msg_id: None,
                retry_after_ms: Some(wait),
            });
        }
        let comment = comment
            .map(|c| c.trim().chars().take(1000).collect::<String>())
            .filter(|c| !c.is_empty());
        self.lifecycle(store, EventPayload::Rated { score, comment }, who, now)
    }

    fn assign<S: Store>(
        &mut self,
        store: &mut S,
        who: Participant,
        agent: Participant,
        since: Option<i64>,
        now: i64,
    ) -> Outcome<S::Error> {
        // Agents assign themselves; the site's routing assigns as `system`.
        if who.role == Role::Visitor || agent.role != Role::Agent {
            return Err(EngineError::reject(ErrorCode::Forbidden));
        }
        let by_routing = who.role == Role::System;
        let start = if by_routing { since } else { Some(now) };
        let newest = self.meta.assigned_since;
        // A telling of routing's that was overtaken: routing replaced the assignment and the
        // newer one arrived first (a retelling that timed out lands late), or a person took the
        // conversation after routing's assignment started (the person's choice stands). Not
        // recorded, which would hand the conversation back; and not refused either, which
        // routing would count as a failed telling and try again.
        // A tie goes to routing, as in routing itself (`SiteInput::AssignedByAgent`): a
        // retelling of an assignment whose start was kept but whose event failed to be written
        // has that very start, and must still be recorded.
        if by_routing
            && start
                .zip(newest)
                .is_some_and(|(start, newest)| start < newest)
        {
            return Ok(Vec::new());
        }
        let later = start.filter(|start| newest.is_none_or(|newest| *start > newest));
        if self.meta.assignee.as_deref() == Some(agent.id.as_str()) {
            // Nothing to record, but a later start of the same agent's assignment (routing gave
            // it back to them, or took up their own choice) is what older tellings of other
            // assignments are measured against from now on.
            if let Some(start) = later {
                self.note_assigned_since(store, start)?;
            }
            return Ok(Vec::new());
        }
        // Routing hears of a close after it happens: its assignment (or a retelling of one)
        // may arrive after the conversation ended. It is not recorded, which would show an
        // agent joining a closed chat; and it is not refused either, which routing would count
        // as a failed telling and try again.
        if by_routing && self.meta.status == Status::Closed {
            return Ok(Vec::new());
        }
        // Kept before the event is stored: should storing it fail, routing tells the same
        // assignment again, which is not older than what was kept.
        if let Some(start) = later {
            self.note_assigned_since(store, start)?;
        }
        self.lifecycle(store, EventPayload::Assigned { agent }, who, now)
    }

    fn note_assigned_since<S: Store>(
        &mut self,
        store: &mut S,
        since: i64,
    ) -> Result<(), EngineError<S::Error>> {
        store
            .save_assigned_since(since)
            .map_err(EngineError::Store)?;
        self.meta.assigned_since = Some(since);
        Ok(())
    }

    fn poll<S: Store>(
        &mut self,
        store: &mut S,
        after: u64,
        epoch: Option<String>,
    ) -> Outcome<S::Error> {
        if let Some(reason) = self.resume_check(after, epoch.as_deref()) {
            return Ok(vec![Effect::Reply(self.reset_frame(reason))]);
        }
        let events = store
            .events_after(after, MAX_PAGE)
            .map_err(EngineError::Store)?;
        let reads = store.reads().map_err(EngineError::Store)?;
        Ok(vec![Effect::Reply(ServerFrame::Events {
            epoch: self.meta.epoch.clone(),
            head: self.meta.head,
            events,
            reads,
        })])
    }

    fn history<S: Store>(
        &mut self,
        store: &mut S,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Outcome<S::Error> {
        let before = before.unwrap_or(self.meta.head + 1).min(self.meta.head + 1);
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let events = store
            .events_before(before, limit)
            .map_err(EngineError::Store)?;
        let next_before = events.first().map(|e| e.seq).filter(|&s| s > 1);
        Ok(vec![Effect::Reply(ServerFrame::History {
            epoch: self.meta.epoch.clone(),
            head: self.meta.head,
            events,
            next_before,
        })])
    }
}
