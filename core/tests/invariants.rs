//! Property test of DESIGN.md invariants 1–4 (order, no loss, no duplicates, persist before
//! acknowledge or broadcast) under a faulty network and process restarts.
//!
//! One `Engine` + `MemStore` serve several simulated clients (visitor tabs and agent devices).
//! Each client has a durable outbox of messages with client-generated ids, the `seq` and epoch
//! it last saw, and the events it displays. The network between them is modelled: frames the
//! server sends to a socket wait in a per-client queue until delivered, in order; a dropped
//! connection loses whatever is still queued (acks included); a restart rebuilds the engine from
//! storage and drops every connection. History and lifecycle commands (close, reopen, assign)
//! go over HTTP, as in docs/protocol.md, so their replies go straight back to the caller.
//!
//! Every engine answer is checked against an oracle computed from the store (what the ack must
//! say, what a resume must replay or whether it must reset), every frame is checked against the
//! store when it is emitted and again when it is delivered, and every client refuses a gap or a
//! duplicate in what it displays. At the end every client reconnects, retries its outbox until
//! everything is acknowledged, loads its history, and must display exactly the store's log.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use parley_core::conversation::system_participant;
use parley_core::memstore::{MemStore, MemStoreError};
use parley_core::protocol::ResetReason;
use parley_core::{
    Command, Effect, Engine, EngineConfig, EngineError, ErrorCode, Event, EventPayload, Meta,
    Participant, Role, ServerFrame, Status, Store,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Small, so that both replay and reset are common.
const WINDOW: u64 = 5;
/// Small, so that loading history takes several pages.
const PAGE: u32 = 3;
const EPOCH: &str = "e_1";
const CONVERSATION: &str = "c_1";
const START_MS: i64 = 1_700_000_000_000;
/// Time between two operations: enough that rate limits rarely bite (they still may, after a
/// reconnect flushes a long outbox; a refused message just stays pending).
const STEP_MS: i64 = 1000;
const MAX_CLIENTS: usize = 4;

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// What the simulated world can do next. Client indices are below the case's client count.
#[derive(Debug, Clone)]
enum Op {
    /// The client writes a new message into its outbox and sends it, if connected.
    Send {
        client: usize,
    },
    /// The client sends one of its outbox messages again (pending or already acknowledged), as
    /// a retry after a lost ack would; `edited` changes the text of a stored message's retry,
    /// which must not matter.
    DuplicateSend {
        client: usize,
        pick: usize,
        edited: bool,
    },
    /// Like `Send`, but the store's next write fails.
    FailingSend {
        client: usize,
    },
    /// The connection dies; whatever the server queued for it is lost.
    Drop {
        client: usize,
    },
    /// Up to `frames` queued frames reach the client, in order.
    Deliver {
        client: usize,
        frames: usize,
    },
    /// (Re)connect with `hello { after: last seen, epoch }`; `flush` resends the pending outbox.
    Reconnect {
        client: usize,
        flush: bool,
    },
    /// One page of history over HTTP, if the client is loading history.
    LoadPage {
        client: usize,
    },
    /// The server process dies and is rebuilt from storage; every connection drops.
    Restart,
    Typing {
        client: usize,
    },
    Read {
        client: usize,
    },
    Close {
        client: usize,
    },
    Reopen {
        client: usize,
    },
    Assign {
        client: usize,
        agent: usize,
    },
}

fn op_strategy(clients: usize) -> impl Strategy<Value = Op> {
    let c = 0..clients;
    prop_oneof![
        20 => c.clone().prop_map(|client| Op::Send { client }),
        7 => (c.clone(), 0..64usize, any::<bool>())
            .prop_map(|(client, pick, edited)| Op::DuplicateSend { client, pick, edited }),
        3 => c.clone().prop_map(|client| Op::FailingSend { client }),
        6 => c.clone().prop_map(|client| Op::Drop { client }),
        25 => (c.clone(), 1..8usize).prop_map(|(client, frames)| Op::Deliver { client, frames }),
        9 => (c.clone(), any::<bool>()).prop_map(|(client, flush)| Op::Reconnect { client, flush }),
        8 => c.clone().prop_map(|client| Op::LoadPage { client }),
        2 => Just(Op::Restart),
        2 => c.clone().prop_map(|client| Op::Typing { client }),
        3 => c.clone().prop_map(|client| Op::Read { client }),
        3 => c.clone().prop_map(|client| Op::Close { client }),
        2 => c.clone().prop_map(|client| Op::Reopen { client }),
        2 => (c, 0..2usize).prop_map(|(client, agent)| Op::Assign { client, agent }),
    ]
}

fn case_strategy() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (2..=MAX_CLIENTS).prop_flat_map(|n| (Just(n), prop::collection::vec(op_strategy(n), 1..200)))
}

fn visitor() -> Participant {
    Participant {
        id: "v_1".into(),
        role: Role::Visitor,
        name: None,
    }
}

fn agent(n: usize) -> Participant {
    Participant {
        id: format!("a_{n}"),
        role: Role::Agent,
        name: Some(format!("Agent {n}")),
    }
}

fn new_conversation(window: u64) -> (Engine, MemStore) {
    let mut store = MemStore::default();
    let meta = Meta {
        id: CONVERSATION.into(),
        site: "s_1".into(),
        team: "t_1".into(),
        visitor: "v_1".into(),
        epoch: EPOCH.into(),
        created_at: START_MS,
        status: Status::Open,
        assignee: None,
        head: 0,
        assigned_since: None,
    };
    let config = EngineConfig {
        replay_window: window,
        ..EngineConfig::default()
    };
    let (engine, _) = Engine::create(&mut store, config, meta, system_participant())
        .unwrap_or_else(|e| panic!("create: {e:?}"));
    (engine, store)
}

/// The status and assignee the log implies.
fn log_state(log: &[Event]) -> (Status, Option<String>) {
    let mut status = Status::Open;
    let mut assignee = None;
    for e in log {
        match &e.payload {
            EventPayload::Closed {} => status = Status::Closed,
            EventPayload::Reopened {} => status = Status::Open,
            EventPayload::Assigned { agent } => assignee = Some(agent.id.clone()),
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
    (status, assignee)
}

fn seq_of(log: &[Event], author: &str, client_msg_id: &str) -> Option<u64> {
    log.iter()
        .find(|e| e.author.id == author && e.client_msg_id.as_deref() == Some(client_msg_id))
        .map(|e| e.seq)
}

fn at_seq(log: &[Event], seq: u64) -> Option<&Event> {
    let index = usize::try_from(seq.checked_sub(1)?).ok()?;
    log.get(index)
}

/// Invariant 4: anything a frame says about the log is already in the store.
fn check_persisted(log: &[Event], frame: &ServerFrame) -> Check {
    let head = log.len() as u64;
    match frame {
        ServerFrame::Event(e) => ensure!(
            at_seq(log, e.seq) == Some(e),
            "event {} sent but not stored as sent: {e:?}",
            e.seq
        ),
        ServerFrame::Ack {
            client_msg_id, seq, ..
        } => ensure!(
            at_seq(log, *seq).is_some_and(|e| e.client_msg_id.as_ref() == Some(client_msg_id)),
            "ack of {client_msg_id} for seq {seq}, which does not hold it (head {head})"
        ),
        ServerFrame::Welcome { head: h, .. } | ServerFrame::Reset { head: h, .. } => {
            ensure!(
                *h <= head,
                "frame claims head {h} but the store holds {head}"
            )
        }
        ServerFrame::Read { seq, .. } => ensure!(*seq <= head, "read marker {seq} past head"),
        ServerFrame::History { events, .. } | ServerFrame::Events { events, .. } => {
            for e in events {
                ensure!(
                    at_seq(log, e.seq) == Some(e),
                    "page event {} not stored",
                    e.seq
                );
            }
        }
        ServerFrame::Typing { .. }
        | ServerFrame::Error { .. }
        | ServerFrame::Pong {}
        | ServerFrame::Queue { .. } => {}
    }
    Ok(())
}

#[derive(Debug)]
struct Outgoing {
    id: String,
    text: String,
    acked: Option<u64>,
}

#[derive(Debug)]
struct Client {
    who: Participant,
    prefix: String,
    ip: Option<String>,
    next_msg: u32,
    /// Durable: survives drops and restarts; an entry is pending until acked.
    outbox: Vec<Outgoing>,
    connected: bool,
    awaiting_welcome: bool,
    /// Frames sent by the server, not yet delivered.
    queue: VecDeque<ServerFrame>,
    epoch: Option<String>,
    /// None until the first welcome: such a client says hello without `after`.
    last_seen: Option<u64>,
    /// A contiguous run of the log ending at `last_seen` (empty right after a reset).
    displayed: Vec<Event>,
    /// While loading history after a reset (or a fresh start): the `before` of the next page.
    history_before: Option<u64>,
}

impl Client {
    fn new(index: usize) -> Client {
        let (who, prefix) = match index {
            0 => (visitor(), "v1-tab1"),
            1 => (agent(1), "a1-dev1"),
            2 => (agent(2), "a2-dev1"),
            _ => (visitor(), "v1-tab2"),
        };
        let ip = (who.role == Role::Visitor).then(|| "203.0.113.7".to_string());
        Client {
            who,
            prefix: prefix.into(),
            ip,
            next_msg: 0,
            outbox: Vec::new(),
            connected: false,
            awaiting_welcome: false,
            queue: VecDeque::new(),
            epoch: None,
            last_seen: None,
            displayed: Vec::new(),
            history_before: None,
        }
    }

    fn name(&self) -> String {
        format!("{}({})", self.prefix, self.who.id)
    }

    /// Drops what it holds and continues live from `head`; history fills in the rest.
    fn restart_view(&mut self, epoch: String, head: u64) {
        self.epoch = Some(epoch);
        self.last_seen = Some(head);
        self.displayed.clear();
        self.history_before = (head >= 1).then_some(head + 1);
    }
}

/// How often each interesting path was taken, to make sure the generator reaches them all.
#[derive(Debug, Default, Clone)]
struct Stats {
    sends_stored: u64,
    duplicate_acks: u64,
    storage_failures: u64,
    rate_limited: u64,
    replays: u64,
    resets: u64,
    fresh_hellos: u64,
    history_pages: u64,
    restarts: u64,
    visitor_reopens: u64,
    lost_frames: u64,
    acks_delivered: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.sends_stored += o.sends_stored;
        self.duplicate_acks += o.duplicate_acks;
        self.storage_failures += o.storage_failures;
        self.rate_limited += o.rate_limited;
        self.replays += o.replays;
        self.resets += o.resets;
        self.fresh_hellos += o.fresh_hellos;
        self.history_pages += o.history_pages;
        self.restarts += o.restarts;
        self.visitor_reopens += o.visitor_reopens;
        self.lost_frames += o.lost_frames;
        self.acks_delivered += o.acks_delivered;
    }
}

/// Where `Effect::Reply` frames go.
#[derive(Clone, Copy)]
enum ReplyTo {
    Socket(usize),
    Http,
}

struct World {
    store: MemStore,
    engine: Engine,
    config: EngineConfig,
    clients: Vec<Client>,
    now: i64,
    stats: Stats,
}

impl World {
    fn new(clients: usize) -> World {
        let (engine, store) = new_conversation(WINDOW);
        World {
            store,
            engine,
            config: EngineConfig {
                replay_window: WINDOW,
                ..EngineConfig::default()
            },
            clients: (0..clients).map(Client::new).collect(),
            now: START_MS,
            stats: Stats::default(),
        }
    }

    fn log(&self) -> &[Event] {
        self.store.log()
    }

    /// Executes effects as the Durable Object would; returns the HTTP reply frames.
    fn route(
        &mut self,
        reply_to: ReplyTo,
        effects: Vec<Effect>,
    ) -> Result<Vec<ServerFrame>, String> {
        let mut http = Vec::new();
        for effect in effects {
            let (frame, targets): (ServerFrame, Vec<usize>) = match effect {
                Effect::Reply(frame) => match reply_to {
                    ReplyTo::Socket(c) => (frame, vec![c]),
                    ReplyTo::Http => {
                        check_persisted(self.log(), &frame)?;
                        http.push(frame);
                        continue;
                    }
                },
                Effect::Broadcast(frame) => {
                    let all = (0..self.clients.len()).filter(|&c| self.clients[c].connected);
                    (frame, all.collect())
                }
                Effect::BroadcastExcept { participant, frame } => {
                    let others = (0..self.clients.len()).filter(|&c| {
                        self.clients[c].connected && self.clients[c].who.id != participant
                    });
                    (frame, others.collect())
                }
                Effect::Mirror | Effect::Wake => continue,
            };
            check_persisted(self.log(), &frame)?;
            for c in targets {
                self.clients[c].queue.push_back(frame.clone());
            }
        }
        Ok(http)
    }

    fn drop_connection(&mut self, c: usize) {
        let client = &mut self.clients[c];
        self.stats.lost_frames += client.queue.len() as u64;
        client.queue.clear();
        client.connected = false;
        client.awaiting_welcome = false;
    }

    fn new_message(&mut self, c: usize) -> usize {
        let client = &mut self.clients[c];
        client.next_msg += 1;
        let id = format!("{}-m{}", client.prefix, client.next_msg);
        let text = format!("hello {} from {}", client.next_msg, client.prefix);
        client.outbox.push(Outgoing {
            id,
            text,
            acked: None,
        });
        client.outbox.len() - 1
    }

    /// Sends outbox entry `index` over the client's socket and checks the engine's answer.
    fn transmit(&mut self, c: usize, index: usize, edited: bool, fail_write: bool) -> Check {
        if !self.clients[c].connected {
            return Ok(());
        }
        let client = &self.clients[c];
        let who = client.who.clone();
        let entry = &client.outbox[index];
        let id = entry.id.clone();
        let prior = seq_of(self.log(), &who.id, &id);
        // Only a retry of a stored message is edited: its text must then not matter.
        let text = if edited && prior.is_some() {
            format!("{} (edited)", entry.text)
        } else {
            entry.text.clone()
        };
        let original_text = entry.text.clone();
        let before = self.log().len();
        let (status, _) = log_state(self.log());

        self.store.fail_next_write = fail_write;
        let result = self.engine.handle(
            &mut self.store,
            Command::Send {
                who: who.clone(),
                ip: client.ip.clone(),
                client_msg_id: id.clone(),
                text,
            },
            self.now,
        );
        let write_failed = fail_write && !self.store.fail_next_write;
        self.store.fail_next_write = false;
        let log = self.store.log();

        match result {
            Ok(effects) => {
                ensure!(
                    !write_failed,
                    "send of {id} succeeded although its write failed"
                );
                if let Some(seq) = prior {
                    // Invariant 3: a retry is answered with the original seq, nothing else.
                    ensure!(
                        effects
                            == vec![Effect::Reply(ServerFrame::Ack {
                                client_msg_id: id.clone(),
                                seq,
                                duplicate: true,
                            })],
                        "retry of {id} (stored at {seq}) answered {effects:?}"
                    );
                    ensure!(log.len() == before, "a retry of {id} changed the log");
                    self.stats.duplicate_acks += 1;
                } else {
                    let reopens = status == Status::Closed && who.role == Role::Visitor;
                    ensure!(
                        log.len() == before + 1 + usize::from(reopens),
                        "send of {id} grew the log from {before} to {}",
                        log.len()
                    );
                    let event = &log[log.len() - 1];
                    ensure!(
                        event.author == who
                            && event.client_msg_id.as_deref() == Some(id.as_str())
                            && event.payload
                                == EventPayload::Message {
                                    text: original_text,
                                }
                            && event.at == self.now,
                        "send of {id} stored {event:?}"
                    );
                    if reopens {
                        ensure!(
                            log[before].payload == EventPayload::Reopened {}
                                && log[before].author == who,
                            "a visitor writing into a closed conversation stored {:?}",
                            log[before]
                        );
                        self.stats.visitor_reopens += 1;
                    }
                    ensure!(
                        effects.first()
                            == Some(&Effect::Reply(ServerFrame::Ack {
                                client_msg_id: id.clone(),
                                seq: event.seq,
                                duplicate: false,
                            })),
                        "send of {id} stored at {} but answered {effects:?}",
                        event.seq
                    );
                    let broadcast: Vec<&Event> = effects
                        .iter()
                        .filter_map(|e| match e {
                            Effect::Broadcast(ServerFrame::Event(ev)) => Some(ev),
                            _ => None,
                        })
                        .collect();
                    let appended: Vec<&Event> = log[before..].iter().collect();
                    ensure!(
                        broadcast == appended,
                        "send of {id} appended {appended:?} but broadcast {broadcast:?}"
                    );
                    ensure!(
                        effects.contains(&Effect::Mirror),
                        "no mirror after an append"
                    );
                    self.stats.sends_stored += 1;
                }
                self.route(ReplyTo::Socket(c), effects)?;
            }
            Err(EngineError::Rejected {
                code: ErrorCode::RateLimited,
                client_msg_id,
                retry_after_ms,
            }) => {
                ensure!(prior.is_none(), "retry of stored {id} was rate limited");
                ensure!(log.len() == before, "a rate-limited send changed the log");
                ensure!(
                    client_msg_id.as_deref() == Some(id.as_str()) && retry_after_ms.is_some(),
                    "rate limit of {id} named {client_msg_id:?}, retry {retry_after_ms:?}"
                );
                self.stats.rate_limited += 1;
                self.clients[c].queue.push_back(ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    message: String::new(),
                    client_msg_id,
                    retry_after_ms,
                    field: None,
                });
            }
            Err(EngineError::Store(_)) => {
                ensure!(write_failed, "storage error without an injected failure");
                ensure!(prior.is_none(), "retry of stored {id} wrote to storage");
                ensure!(log.len() == before, "a failed send changed the log");
                ensure!(
                    self.engine.meta().head == before as u64,
                    "engine head {} after a failed write, store head {before}",
                    self.engine.meta().head
                );
                self.stats.storage_failures += 1;
                self.clients[c].queue.push_back(ServerFrame::Error {
                    code: ErrorCode::StorageUnavailable,
                    message: String::new(),
                    client_msg_id: Some(id),
                    retry_after_ms: None,
                    field: None,
                });
            }
            Err(other) => return Err(format!("send of {id} refused: {other:?}")),
        }
        Ok(())
    }

    fn flush_outbox(&mut self, c: usize) -> Check {
        for index in 0..self.clients[c].outbox.len() {
            if self.clients[c].outbox[index].acked.is_none() {
                self.transmit(c, index, false, false)?;
            }
        }
        Ok(())
    }

    /// `hello` on a new socket, checked against what the store says it must answer.
    fn reconnect(&mut self, c: usize, flush: bool) -> Check {
        self.drop_connection(c);
        let client = &self.clients[c];
        let who = client.who.clone();
        let (after, epoch) = match client.last_seen {
            Some(seen) => (Some(seen), client.epoch.clone()),
            None => (None, None),
        };
        let effects = self
            .engine
            .handle(
                &mut self.store,
                Command::Hello {
                    who: who.clone(),
                    after,
                    epoch,
                },
                self.now,
            )
            .map_err(|e| format!("hello of {} failed: {e:?}", client.name()))?;
        let log = self.store.log();
        let head = log.len() as u64;
        let (status, _) = log_state(log);
        let reads = self.store.reads().map_err(|e| e.to_string())?;
        let welcome = Effect::Reply(ServerFrame::Welcome {
            conversation: CONVERSATION.into(),
            epoch: EPOCH.into(),
            head,
            status,
            participant: who,
            reads,
        });
        ensure!(
            effects.first() == Some(&welcome),
            "hello of {} answered {:?}, expected {welcome:?}",
            client.name(),
            effects.first()
        );
        let rest = &effects[1..];
        match after {
            None => {
                ensure!(rest.is_empty(), "a live start got {rest:?}");
                self.stats.fresh_hellos += 1;
            }
            Some(after) => {
                ensure!(after <= head, "client saw {after} beyond head {head}");
                if head - after <= WINDOW {
                    let expected: Vec<Effect> = log[after as usize..]
                        .iter()
                        .map(|e| Effect::Reply(ServerFrame::Event(e.clone())))
                        .collect();
                    ensure!(
                        rest == expected.as_slice(),
                        "resume after {after} (head {head}) replayed {rest:?}"
                    );
                    if after < head {
                        self.stats.replays += 1;
                    }
                } else {
                    let reset = Effect::Reply(ServerFrame::Reset {
                        epoch: EPOCH.into(),
                        head,
                        reason: ResetReason::GapTooLarge,
                    });
                    ensure!(
                        rest == [reset],
                        "resume after {after} (head {head}, window {WINDOW}) answered {rest:?}"
                    );
                    self.stats.resets += 1;
                }
            }
        }
        let client = &mut self.clients[c];
        client.connected = true;
        client.awaiting_welcome = true;
        self.route(ReplyTo::Socket(c), effects)?;
        if flush {
            self.flush_outbox(c)?;
        }
        Ok(())
    }

    /// The client handles one frame from its socket.
    fn receive(&mut self, c: usize, frame: ServerFrame) -> Check {
        // Invariant 4, at delivery: the store holds whatever the frame reports.
        check_persisted(self.store.log(), &frame)?;
        let log_len = self.store.log().len();
        let client = &mut self.clients[c];
        let name = client.name();
        if client.awaiting_welcome {
            ensure!(
                matches!(frame, ServerFrame::Welcome { .. }),
                "{name} got {frame:?} before its welcome"
            );
        }
        match frame {
            ServerFrame::Welcome { epoch, head, .. } => {
                ensure!(client.awaiting_welcome, "{name} got a second welcome");
                client.awaiting_welcome = false;
                if client.last_seen.is_none() {
                    client.restart_view(epoch, head);
                } else {
                    ensure!(
                        client.epoch.as_deref() == Some(epoch.as_str()),
                        "{name}: epoch changed to {epoch}"
                    );
                }
            }
            ServerFrame::Event(event) => {
                let expected = client.last_seen.map_or(1, |s| s + 1);
                ensure!(
                    event.seq == expected,
                    "{name} expected seq {expected} and got {} (a gap or a duplicate)",
                    event.seq
                );
                if event.author.id == client.who.id {
                    if let Some(id) = &event.client_msg_id {
                        if let Some(entry) = client.outbox.iter().find(|o| &o.id == id) {
                            ensure!(
                                entry.acked.is_none_or(|s| s == event.seq),
                                "{name}: {id} acked at {:?} but shown at {}",
                                entry.acked,
                                event.seq
                            );
                        }
                    }
                }
                client.last_seen = Some(event.seq);
                client.displayed.push(event);
            }
            ServerFrame::Ack {
                client_msg_id, seq, ..
            } => {
                let author = at_seq(self.store.log(), seq).map(|e| e.author.id.clone());
                let entry = client
                    .outbox
                    .iter_mut()
                    .find(|o| o.id == client_msg_id)
                    .ok_or_else(|| format!("{name} got an ack for unknown {client_msg_id}"))?;
                ensure!(
                    author.as_deref() == Some(client.who.id.as_str()),
                    "{name}: ack of {client_msg_id} points at seq {seq} by {author:?}"
                );
                ensure!(
                    entry.acked.is_none_or(|s| s == seq),
                    "{name}: {client_msg_id} acked at {:?} and again at {seq}",
                    entry.acked
                );
                entry.acked = Some(seq);
                self.stats.acks_delivered += 1;
            }
            ServerFrame::Reset {
                epoch,
                head,
                reason,
            } => {
                ensure!(
                    reason == ResetReason::GapTooLarge,
                    "{name} was reset for {reason:?}"
                );
                client.restart_view(epoch, head);
            }
            ServerFrame::Error {
                code,
                client_msg_id,
                ..
            } => {
                ensure!(
                    matches!(code, ErrorCode::RateLimited | ErrorCode::StorageUnavailable),
                    "{name} got error {code:?}"
                );
                // The message stays pending; it is retried later.
                ensure!(
                    client_msg_id
                        .as_ref()
                        .is_some_and(|id| client.outbox.iter().any(|o| &o.id == id)),
                    "{name}: error names {client_msg_id:?}"
                );
            }
            ServerFrame::Typing { participant, .. } => {
                ensure!(participant.id != client.who.id, "{name} got its own typing");
            }
            ServerFrame::Read { seq, .. } => {
                ensure!(seq as usize <= log_len, "read marker {seq} past head");
            }
            other => return Err(format!("{name} got {other:?} on its socket")),
        }
        Ok(())
    }

    fn deliver(&mut self, c: usize, frames: usize) -> Check {
        for _ in 0..frames {
            let Some(frame) = self.clients[c].queue.pop_front() else {
                break;
            };
            self.receive(c, frame)?;
        }
        self.check_view(c)
    }

    /// One `history` page over HTTP, prepended to what the client displays.
    fn load_page(&mut self, c: usize) -> Check {
        let Some(before) = self.clients[c].history_before else {
            return Ok(());
        };
        let effects = self
            .engine
            .handle(
                &mut self.store,
                Command::History {
                    before: Some(before),
                    limit: Some(PAGE),
                },
                self.now,
            )
            .map_err(|e| format!("history failed: {e:?}"))?;
        let mut replies = self.route(ReplyTo::Http, effects)?;
        ensure!(replies.len() == 1, "history answered {replies:?}");
        let Some(ServerFrame::History {
            epoch,
            head,
            events,
            next_before,
        }) = replies.pop()
        else {
            return Err(format!("history answered {replies:?}"));
        };
        let log = self.store.log();
        ensure!(
            epoch == EPOCH && head == log.len() as u64,
            "history header {epoch} {head}"
        );
        let end = (before - 1) as usize;
        let start = end.saturating_sub(PAGE as usize);
        ensure!(
            events == log[start..end],
            "history before {before} returned seqs {:?}",
            events.iter().map(|e| e.seq).collect::<Vec<_>>()
        );
        let expected_next = events.first().map(|e| e.seq).filter(|&s| s > 1);
        ensure!(
            next_before == expected_next,
            "history before {before}: next_before {next_before:?}, expected {expected_next:?}"
        );
        self.stats.history_pages += 1;
        let client = &mut self.clients[c];
        client.displayed.splice(0..0, events);
        client.history_before = next_before;
        self.check_view(c)
    }

    /// A client's display is a contiguous run of the log ending at what it last saw.
    fn check_view(&self, c: usize) -> Check {
        let client = &self.clients[c];
        let name = client.name();
        let Some(last) = client.last_seen else {
            ensure!(
                client.displayed.is_empty(),
                "{name} displays before a welcome"
            );
            return Ok(());
        };
        match (client.displayed.first(), client.displayed.last()) {
            (Some(first), Some(end)) => {
                ensure!(
                    end.seq == last,
                    "{name} shows up to {} but saw {last}",
                    end.seq
                );
                ensure!(
                    end.seq - first.seq + 1 == client.displayed.len() as u64,
                    "{name} shows a run with gaps or duplicates"
                );
                if let Some(before) = client.history_before {
                    ensure!(
                        first.seq == before,
                        "{name} history cursor {before} vs {}",
                        first.seq
                    );
                } else {
                    ensure!(
                        first.seq == 1,
                        "{name} finished history but starts at {}",
                        first.seq
                    );
                }
            }
            _ => ensure!(
                client.history_before == Some(last + 1),
                "{name} shows nothing, saw {last}, cursor {:?}",
                client.history_before
            ),
        }
        Ok(())
    }

    fn lifecycle(&mut self, c: usize, command: Command) -> Check {
        let who = self.clients[c].who.clone();
        let before = self.log().len();
        let (status, assignee) = log_state(self.log());
        let wanted = match &command {
            Command::Close { .. } => (status != Status::Closed).then_some(EventPayload::Closed {}),
            Command::Reopen { .. } => (status != Status::Open).then_some(EventPayload::Reopened {}),
            Command::Assign { agent, .. } => {
                (assignee.as_deref() != Some(agent.id.as_str())).then(|| EventPayload::Assigned {
                    agent: agent.clone(),
                })
            }
            other => return Err(format!("not a lifecycle command: {other:?}")),
        };
        let result = self.engine.handle(&mut self.store, command, self.now);
        let log = self.store.log();
        if who.role != Role::Agent {
            ensure!(
                matches!(
                    result,
                    Err(EngineError::Rejected {
                        code: ErrorCode::Forbidden,
                        ..
                    })
                ),
                "a visitor's lifecycle command answered {result:?}"
            );
            ensure!(log.len() == before, "a forbidden command changed the log");
            return Ok(());
        }
        let effects = result.map_err(|e| format!("lifecycle command failed: {e:?}"))?;
        match wanted {
            None => {
                ensure!(
                    effects.is_empty(),
                    "a no-op lifecycle command answered {effects:?}"
                );
                ensure!(
                    log.len() == before,
                    "a no-op lifecycle command changed the log"
                );
            }
            Some(payload) => {
                ensure!(
                    log.len() == before + 1,
                    "lifecycle command appended {}",
                    log.len() - before
                );
                let event = log[before].clone();
                ensure!(
                    event.payload == payload && event.author == who,
                    "lifecycle stored {event:?}"
                );
                ensure!(
                    effects
                        == vec![
                            Effect::Reply(ServerFrame::Event(event.clone())),
                            Effect::Broadcast(ServerFrame::Event(event)),
                            Effect::Mirror,
                            Effect::Wake,
                        ],
                    "lifecycle answered {effects:?}"
                );
            }
        }
        self.route(ReplyTo::Http, effects)?;
        Ok(())
    }

    fn restart(&mut self) -> Check {
        for c in 0..self.clients.len() {
            self.drop_connection(c);
        }
        self.engine = Engine::load(&self.store, self.config)
            .map_err(|e| e.to_string())?
            .ok_or("no conversation after a restart")?;
        let (status, assignee) = log_state(self.log());
        let meta = self.engine.meta();
        ensure!(
            meta.head == self.log().len() as u64
                && meta.status == status
                && meta.assignee == assignee,
            "reloaded meta {meta:?} disagrees with the log"
        );
        self.stats.restarts += 1;
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Check {
        self.now += STEP_MS;
        match *op {
            Op::Send { client } => {
                let index = self.new_message(client);
                self.transmit(client, index, false, false)
            }
            Op::DuplicateSend {
                client,
                pick,
                edited,
            } => {
                let len = self.clients[client].outbox.len();
                if len == 0 {
                    return Ok(());
                }
                self.transmit(client, pick % len, edited, false)
            }
            Op::FailingSend { client } => {
                let index = self.new_message(client);
                self.transmit(client, index, false, true)
            }
            Op::Drop { client } => {
                self.drop_connection(client);
                Ok(())
            }
            Op::Deliver { client, frames } => self.deliver(client, frames),
            Op::Reconnect { client, flush } => self.reconnect(client, flush),
            Op::LoadPage { client } => self.load_page(client),
            Op::Restart => self.restart(),
            Op::Typing { client } => {
                if !self.clients[client].connected {
                    return Ok(());
                }
                let who = self.clients[client].who.clone();
                let active = self.now % 2000 == 0;
                let effects = self
                    .engine
                    .handle(&mut self.store, Command::Typing { who, active }, self.now)
                    .map_err(|e| format!("typing failed: {e:?}"))?;
                self.route(ReplyTo::Socket(client), effects)?;
                Ok(())
            }
            Op::Read { client } => {
                let (Some(seq), true) = (
                    self.clients[client].last_seen,
                    self.clients[client].connected,
                ) else {
                    return Ok(());
                };
                let who = self.clients[client].who.clone();
                let id = who.id.clone();
                let effects = self
                    .engine
                    .handle(&mut self.store, Command::Read { who, seq }, self.now)
                    .map_err(|e| format!("read failed: {e:?}"))?;
                let stored = self.store.reads().map_err(|e| e.to_string())?;
                ensure!(
                    stored.get(&id).is_some_and(|&s| s >= seq),
                    "read marker of {id} not stored before its broadcast"
                );
                self.route(ReplyTo::Socket(client), effects)?;
                Ok(())
            }
            Op::Close { client } => {
                let who = self.clients[client].who.clone();
                self.lifecycle(client, Command::Close { who })
            }
            Op::Reopen { client } => {
                let who = self.clients[client].who.clone();
                self.lifecycle(client, Command::Reopen { who })
            }
            Op::Assign { client, agent: n } => {
                let who = self.clients[client].who.clone();
                self.lifecycle(
                    client,
                    Command::Assign {
                        who,
                        agent: agent(n + 1),
                        since: None,
                    },
                )
            }
        }
    }

    /// Heals the network: everyone reconnects, retries until acked, and loads its history.
    fn settle(&mut self) -> Check {
        for c in 0..self.clients.len() {
            if !self.clients[c].connected {
                self.reconnect(c, false)?;
            }
        }
        for _round in 0..40 {
            // Long enough for every rate-limit bucket to refill.
            self.now += 60_000;
            for c in 0..self.clients.len() {
                self.flush_outbox(c)?;
            }
            // Delivering sends nothing back, so one pass empties every queue.
            for c in 0..self.clients.len() {
                let pending = self.clients[c].queue.len();
                self.deliver(c, pending)?;
            }
            let all_acked = self
                .clients
                .iter()
                .all(|cl| cl.outbox.iter().all(|o| o.acked.is_some()));
            if all_acked {
                break;
            }
        }
        for c in 0..self.clients.len() {
            while self.clients[c].history_before.is_some() {
                self.load_page(c)?;
            }
        }
        Ok(())
    }

    /// Invariants 1–3 on the settled world.
    fn check_final(&self) -> Check {
        let log = self.store.log();
        for (i, e) in log.iter().enumerate() {
            ensure!(
                e.seq == i as u64 + 1,
                "log position {i} holds seq {}",
                e.seq
            );
        }
        ensure!(
            log.first()
                .is_some_and(|e| matches!(e.payload, EventPayload::Created { .. })),
            "the log does not start with `created`"
        );
        // Invariant 3: each (author, client_msg_id) once.
        let mut keys = HashSet::new();
        for e in log {
            if let Some(id) = &e.client_msg_id {
                ensure!(
                    keys.insert((e.author.id.clone(), id.clone())),
                    "({}, {id}) appears twice in the log",
                    e.author.id
                );
            }
        }
        // Invariant 2: every message written is in the log, where its ack said.
        let mut written: HashMap<(String, String), u64> = HashMap::new();
        for client in &self.clients {
            let name = client.name();
            for o in &client.outbox {
                let seq = o
                    .acked
                    .ok_or_else(|| format!("{name}: {} never acknowledged", o.id))?;
                let e =
                    at_seq(log, seq).ok_or_else(|| format!("{name}: {} acked past head", o.id))?;
                ensure!(
                    e.author.id == client.who.id
                        && e.client_msg_id.as_deref() == Some(o.id.as_str())
                        && e.payload
                            == EventPayload::Message {
                                text: o.text.clone()
                            },
                    "{name}: {} acked at {seq}, which holds {e:?}",
                    o.id
                );
                written.insert((client.who.id.clone(), o.id.clone()), seq);
            }
        }
        for e in log {
            if let Some(id) = &e.client_msg_id {
                ensure!(
                    written.get(&(e.author.id.clone(), id.clone())) == Some(&e.seq),
                    "log holds {e:?}, which no client wrote"
                );
            }
        }
        // Invariant 1: everyone displays the whole log, in order.
        for client in &self.clients {
            let name = client.name();
            ensure!(
                client.connected && client.queue.is_empty(),
                "{name} did not settle"
            );
            ensure!(
                client.history_before.is_none(),
                "{name} did not finish its history"
            );
            ensure!(
                client.epoch.as_deref() == Some(EPOCH),
                "{name} holds epoch {:?}",
                client.epoch
            );
            ensure!(
                client.displayed == log,
                "{name} displays seqs {:?}, the log has {}",
                client.displayed.iter().map(|e| e.seq).collect::<Vec<_>>(),
                log.len()
            );
        }
        Ok(())
    }
}

fn run(clients: usize, ops: &[Op]) -> Result<Stats, String> {
    let mut world = World::new(clients);
    for (step, op) in ops.iter().enumerate() {
        world
            .apply(op)
            .map_err(|e| format!("step {step} ({op:?}): {e}"))?;
    }
    world.settle().map_err(|e| format!("settling: {e}"))?;
    world
        .check_final()
        .map_err(|e| format!("final check: {e}"))?;
    Ok(world.stats)
}

proptest! {
    // No regression file: a failure prints its shrunk operation list instead.
    #![proptest_config(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn invariants_hold_under_faults((clients, ops) in case_strategy()) {
        if let Err(e) = run(clients, &ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// The generator must reach every path the property is about, or the property proves little.
#[test]
fn generated_cases_exercise_every_path() {
    let mut runner = TestRunner::deterministic();
    let strategy = case_strategy();
    let mut total = Stats::default();
    for _ in 0..64 {
        let (clients, ops) = strategy
            .new_tree(&mut runner)
            .map(|tree| tree.current())
            .unwrap_or_else(|e| panic!("{e}"));
        let stats = run(clients, &ops).unwrap_or_else(|e| panic!("{e}\nops: {ops:#?}"));
        total.add(&stats);
    }
    let counts = [
        ("sends stored", total.sends_stored),
        ("duplicate acks", total.duplicate_acks),
        ("storage failures", total.storage_failures),
        ("replays", total.replays),
        ("resets", total.resets),
        ("fresh hellos", total.fresh_hellos),
        ("history pages", total.history_pages),
        ("restarts", total.restarts),
        ("visitor reopens", total.visitor_reopens),
        ("lost frames", total.lost_frames),
        ("acks delivered", total.acks_delivered),
    ];
    for (what, n) in counts {
        assert!(n > 0, "no {what} in 64 generated cases: {total:?}");
    }
}

fn send(who: &Participant, id: &str, text: &str) -> Command {
    Command::Send {
        who: who.clone(),
        ip: None,
        client_msg_id: id.into(),
        text: text.into(),
    }
}

fn ack(effects: &[Effect]) -> Option<(u64, bool)> {
    effects.iter().find_map(|e| match e {
        Effect::Reply(ServerFrame::Ack { seq, duplicate, .. }) => Some((*seq, *duplicate)),
        _ => None,
    })
}

fn hello(who: &Participant, after: u64) -> Command {
    Command::Hello {
        who: who.clone(),
        after: Some(after),
        epoch: Some(EPOCH.into()),
    }
}

#[test]
fn ack_lost_then_retry_after_restart_returns_the_original_seq() {
    let config = EngineConfig {
        replay_window: WINDOW,
        ..EngineConfig::default()
    };
    let (mut engine, mut store) = new_conversation(WINDOW);
    let v = visitor();
    // The ack is lost with the connection: the effects are simply never delivered.
    let lost = engine
        .handle(&mut store, send(&v, "m1", "hi"), 1000)
        .unwrap();
    assert_eq!(ack(&lost), Some((2, false)));
    // Others keep writing, so the retry cannot be answered by accident with the head.
    engine
        .handle(&mut store, send(&agent(1), "x1", "hello"), 2000)
        .unwrap();
    drop(engine);
    let mut engine = Engine::load(&store, config).unwrap().unwrap();
    let retry = engine
        .handle(&mut store, send(&v, "m1", "hi"), 3000)
        .unwrap();
    assert_eq!(
        retry,
        vec![Effect::Reply(ServerFrame::Ack {
            client_msg_id: "m1".into(),
            seq: 2,
            duplicate: true,
        })]
    );
    assert_eq!(store.log().len(), 3);
    // The same through the model: send, lose the ack, restart, reconnect and flush.
    let ops = [
        Op::Reconnect {
            client: 0,
            flush: false,
        },
        Op::Reconnect {
            client: 1,
            flush: false,
        },
        Op::Send { client: 0 },
        Op::Send { client: 1 },
        Op::Drop { client: 0 },
        Op::Restart,
        Op::Reconnect {
            client: 0,
            flush: true,
        },
        Op::Deliver {
            client: 0,
            frames: 8,
        },
    ];
    let mut world = World::new(2);
    for op in &ops {
        world.apply(op).unwrap();
    }
    assert_eq!(world.clients[0].outbox[0].acked, Some(2));
    assert_eq!(world.stats.duplicate_acks, 1);
    world.settle().unwrap();
    world.check_final().unwrap();
}

#[test]
fn resume_at_the_window_edge_replays_and_one_past_it_resets() {
    let (mut engine, mut store) = new_conversation(WINDOW);
    for i in 0..10 {
        engine
            .handle(
                &mut store,
                send(&visitor(), &format!("m{i}"), "x"),
                1000 * (i + 1),
            )
            .unwrap();
    }
    let head = 11;
    let a = agent(1);
    // Exactly `WINDOW` events missed: all of them are replayed.
    let edge = engine
        .handle(&mut store, hello(&a, head - WINDOW), 20_000)
        .unwrap();
    assert!(matches!(
        &edge[0],
        Effect::Reply(ServerFrame::Welcome { head: 11, .. })
    ));
    let replayed: Vec<u64> = edge[1..]
        .iter()
        .map(|e| match e {
            Effect::Reply(ServerFrame::Event(ev)) => ev.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(replayed, (head - WINDOW + 1..=head).collect::<Vec<_>>());
    // One more missed: reset, and history pages fill in the whole log.
    let past = engine
        .handle(&mut store, hello(&a, head - WINDOW - 1), 20_000)
        .unwrap();
    assert_eq!(
        past[1..],
        [Effect::Reply(ServerFrame::Reset {
            epoch: EPOCH.into(),
            head,
            reason: ResetReason::GapTooLarge,
        })]
    );
    let mut loaded: Vec<u64> = Vec::new();
    let mut before = Some(head + 1);
    while let Some(b) = before {
        let page = engine
            .handle(
                &mut store,
                Command::History {
                    before: Some(b),
                    limit: Some(PAGE),
                },
                20_000,
            )
            .unwrap();
        let [Effect::Reply(ServerFrame::History {
            events,
            next_before,
            ..
        })] = page.as_slice()
        else {
            panic!("{page:?}")
        };
        loaded.splice(0..0, events.iter().map(|e| e.seq));
        before = *next_before;
    }
    assert_eq!(loaded, (1..=head).collect::<Vec<_>>());
    // Up to date: only the welcome.
    assert_eq!(
        engine
            .handle(&mut store, hello(&a, head), 20_000)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn model_client_resets_and_reloads_after_missing_more_than_the_window() {
    let mut ops = vec![
        Op::Reconnect {
            client: 0,
            flush: false,
        },
        Op::Reconnect {
            client: 1,
            flush: false,
        },
        Op::Deliver {
            client: 1,
            frames: 8,
        },
        Op::Drop { client: 1 },
    ];
    ops.extend((0..=WINDOW).map(|_| Op::Send { client: 0 }));
    ops.push(Op::Reconnect {
        client: 1,
        flush: false,
    });
    ops.push(Op::Deliver {
        client: 1,
        frames: 8,
    });
    let mut world = World::new(2);
    for op in &ops {
        world.apply(op).unwrap();
    }
    assert_eq!(world.stats.resets, 1);
    assert!(world.clients[1].displayed.is_empty());
    assert_eq!(world.clients[1].history_before, Some(WINDOW + 3));
    world.settle().unwrap();
    world.check_final().unwrap();
    assert!(world.stats.history_pages >= 3);
}

#[test]
fn failed_write_leaves_the_message_pending_until_a_retry() {
    let ops = [
        Op::Reconnect {
            client: 0,
            flush: false,
        },
        Op::Reconnect {
            client: 1,
            flush: false,
        },
        Op::FailingSend { client: 0 },
        Op::Deliver {
            client: 0,
            frames: 8,
        },
        Op::Deliver {
            client: 1,
            frames: 8,
        },
    ];
    let mut world = World::new(2);
    for op in &ops {
        world.apply(op).unwrap();
    }
    assert_eq!(world.stats.storage_failures, 1);
    assert_eq!(world.clients[0].outbox[0].acked, None);
    assert_eq!(world.store.log().len(), 1);
    assert_eq!(world.clients[1].displayed.len(), 0);
    world.settle().unwrap();
    world.check_final().unwrap();
    assert_eq!(world.clients[0].outbox[0].acked, Some(2));
}

/// A store whose `n`-th write from now fails (0 = the next one), to fail the second write of a
/// command that makes two.
struct FlakyStore {
    inner: MemStore,
    fail_write_in: Option<u32>,
}

impl FlakyStore {
    fn write(&mut self) -> Result<(), MemStoreError> {
        match self.fail_write_in {
            Some(0) => {
                self.fail_write_in = None;
                Err(MemStoreError)
            }
            Some(n) => {
                self.fail_write_in = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Store for FlakyStore {
    type Error = MemStoreError;

    fn load_meta(&self) -> Result<Option<Meta>, MemStoreError> {
        self.inner.load_meta()
    }
    fn create(&mut self, meta: &Meta, first: &Event) -> Result<(), MemStoreError> {
        self.write()?;
        self.inner.create(meta, first)
    }
    fn append(&mut self, events: &[Event]) -> Result<(), MemStoreError> {
        self.write()?;
        self.inner.append(events)
    }
    fn seq_for_client_msg(&self, author: &str, id: &str) -> Result<Option<u64>, MemStoreError> {
        self.inner.seq_for_client_msg(author, id)
    }
    fn events_after(&self, after: u64, limit: u32) -> Result<Vec<Event>, MemStoreError> {
        self.inner.events_after(after, limit)
    }
    fn events_before(&self, before: u64, limit: u32) -> Result<Vec<Event>, MemStoreError> {
        self.inner.events_before(before, limit)
    }
    fn reads(&self) -> Result<BTreeMap<String, u64>, MemStoreError> {
        self.inner.reads()
    }
    fn save_read(&mut self, participant: &str, seq: u64) -> Result<(), MemStoreError> {
        self.write()?;
        self.inner.save_read(participant, seq)
    }
    fn rating_since_close(&self) -> Result<Option<Event>, MemStoreError> {
        self.inner.rating_since_close()
    }
    fn save_assigned_since(&mut self, since: i64) -> Result<(), MemStoreError> {
        self.write()?;
        self.inner.save_assigned_since(since)
    }
}

/// Regression: a visitor writing into a closed conversation stores `reopened` and the message.
/// Both must be one write: if storage fails, nothing is stored (no `reopened` that nobody was
/// sent, which would show as a gap); the retry then stores and broadcasts both.
#[test]
fn failed_message_write_after_reopen_leaves_no_unbroadcast_event() {
    let mut store = FlakyStore {
        inner: MemStore::default(),
        fail_write_in: None,
    };
    let meta = Meta {
        id: CONVERSATION.into(),
        site: "s_1".into(),
        team: "t_1".into(),
        visitor: "v_1".into(),
        epoch: EPOCH.into(),
        created_at: START_MS,
        status: Status::Open,
        assignee: None,
        head: 0,
        assigned_since: None,
    };
    let (mut engine, _) = Engine::create(
        &mut store,
        EngineConfig::default(),
        meta,
        system_participant(),
    )
    .unwrap();
    engine
        .handle(&mut store, Command::Close { who: agent(1) }, 1000)
        .unwrap();
    // The command's single write fails.
    store.fail_write_in = Some(0);
    let failed = engine.handle(&mut store, send(&visitor(), "m1", "hi"), 2000);
    let log = store.inner.log();
    match failed {
        // Either the failed command changed nothing ...
        Err(EngineError::Store(_)) => {
            let kinds: Vec<&str> = log.iter().map(|e| e.payload.kind()).collect();
            assert_eq!(
                kinds,
                ["created", "closed"],
                "the failed send stored an event nobody was sent"
            );
        }
        // ... or whatever it stored is broadcast, and the message is not acknowledged.
        Ok(effects) => {
            assert_eq!(ack(&effects), None, "an unstored message was acknowledged");
            for event in &log[2..] {
                assert!(
                    effects.contains(&Effect::Broadcast(ServerFrame::Event(event.clone()))),
                    "{event:?} stored but not broadcast: {effects:?}"
                );
            }
        }
        Err(other) => panic!("{other:?}"),
    }
    let retried = engine
        .handle(&mut store, send(&visitor(), "m1", "hi"), 3000)
        .unwrap();
    assert_eq!(ack(&retried), Some((4, false)));
    let kinds: Vec<&str> = store.inner.log().iter().map(|e| e.payload.kind()).collect();
    assert_eq!(kinds, ["created", "closed", "reopened", "message"]);
    for event in &store.inner.log()[2..] {
        assert!(retried.contains(&Effect::Broadcast(ServerFrame::Event(event.clone()))));
    }
}
