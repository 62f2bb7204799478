//! Behaviour of the conversation engine through its public interface.

use parley_core::conversation::system_participant;
use parley_core::memstore::MemStore;
use parley_core::protocol::ResetReason;
use parley_core::Store;
use parley_core::{
    Command, Effect, Engine, EngineConfig, EngineError, ErrorCode, EventPayload, Meta, Participant,
    Role, ServerFrame, Status,
};

fn visitor() -> Participant {
    Participant {
        id: "v_1".into(),
        role: Role::Visitor,
        name: None,
    }
}

fn agent() -> Participant {
    Participant {
        id: "a_1".into(),
        role: Role::Agent,
        name: Some("Ann".into()),
    }
}

fn new_conversation(window: u64) -> (Engine, MemStore) {
    new_conversation_with(EngineConfig {
        replay_window: window,
        ..EngineConfig::default()
    })
}

fn new_conversation_with(config: EngineConfig) -> (Engine, MemStore) {
    let mut store = MemStore::default();
    let meta = Meta {
        id: "c_1".into(),
        site: "s_1".into(),
        team: "t_1".into(),
        visitor: "v_1".into(),
        epoch: "e_1".into(),
        created_at: 100,
        status: Status::Open,
        assignee: None,
        head: 0,
        assigned_since: None,
    };
    let (engine, _) = Engine::create(&mut store, config, meta, system_participant()).unwrap();
    (engine, store)
}

fn send(id: &str, text: &str, who: Participant) -> Command {
    Command::Send {
        who,
        ip: None,
        client_msg_id: id.into(),
        text: text.into(),
    }
}

fn ack_seq(effects: &[Effect]) -> (u64, bool) {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Reply(ServerFrame::Ack { seq, duplicate, .. }) => Some((*seq, *duplicate)),
            _ => None,
        })
        .expect("an ack")
}

fn rejected(result: Result<Vec<Effect>, EngineError<impl std::fmt::Debug>>) -> ErrorCode {
    match result {
        Err(EngineError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn created_event_is_seq_one_and_sends_follow_gap_free() {
    let (mut engine, mut store) = new_conversation(10);
    assert_eq!(store.log()[0].seq, 1);
    assert!(matches!(
        store.log()[0].payload,
        EventPayload::Created { form: None, .. }
    ));
    for i in 0..5 {
        let effects = engine
            .handle(
                &mut store,
                send(&format!("m{i}"), "hi", visitor()),
                1000 + i,
            )
            .unwrap();
        assert_eq!(ack_seq(&effects), (2 + i as u64, false));
        assert!(effects.contains(&Effect::Mirror));
    }
    let seqs: Vec<u64> = store.log().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn ack_comes_first_and_event_is_broadcast() {
    let (mut engine, mut store) = new_conversation(10);
    let effects = engine
        .handle(&mut store, send("m1", "hello", visitor()), 5)
        .unwrap();
    assert!(matches!(effects[0], Effect::Reply(ServerFrame::Ack { .. })));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Broadcast(ServerFrame::Event(ev)) if ev.seq == 2 && ev.at == 5
    )));
}

#[test]
fn duplicate_send_returns_original_seq_and_broadcasts_nothing() {
    let (mut engine, mut store) = new_conversation(10);
    let first = engine
        .handle(&mut store, send("m1", "hi", visitor()), 1)
        .unwrap();
    let again = engine
        .handle(&mut store, send("m1", "hi (edited)", visitor()), 2)
        .unwrap();
    assert_eq!(ack_seq(&first), (2, false));
    assert_eq!(
        again,
        vec![Effect::Reply(ServerFrame::Ack {
            client_msg_id: "m1".into(),
            seq: 2,
            duplicate: true
        })]
    );
    assert_eq!(store.log().len(), 2);
    // The same client id from another author is another message.
    let other = engine
        .handle(&mut store, send("m1", "hi", agent()), 3)
        .unwrap();
    assert_eq!(ack_seq(&other), (3, false));
}

#[test]
fn failed_write_acknowledges_nothing_and_changes_nothing() {
    let (mut engine, mut store) = new_conversation(10);
    store.fail_next_write = true;
    let result = engine.handle(&mut store, send("m1", "hi", visitor()), 1);
    assert!(matches!(result, Err(EngineError::Store(_))));
    assert_eq!(engine.meta().head, 1);
    let retry = engine
        .handle(&mut store, send("m1", "hi", visitor()), 2)
        .unwrap();
    assert_eq!(ack_seq(&retry), (2, false));
}

#[test]
fn bad_messages_are_refused_with_codes() {
    let (mut engine, mut store) = new_conversation(10);
    let long = "字".repeat(4001);
    assert_eq!(
        rejected(engine.handle(&mut store, send("m1", &long, visitor()), 1)),
        ErrorCode::MessageTooLong
    );
    assert_eq!(
        rejected(engine.handle(&mut store, send("m2", "  \n ", visitor()), 1)),
        ErrorCode::EmptyMessage
    );
    assert_eq!(
        rejected(engine.handle(&mut store, send("bad id!", "x", visitor()), 1)),
        ErrorCode::InvalidClientMsgId
    );
    assert_eq!(store.log().len(), 1);
    // 4000 characters of a multi-byte script are fine.
    let ok = engine
        .handle(&mut store, send("m3", &"字".repeat(4000), visitor()), 1)
        .unwrap();
    assert_eq!(ack_seq(&ok).0, 2);
}

#[test]
fn flooding_is_rate_limited_with_retry_after() {
    let (mut engine, mut store) = new_conversation(10);
    let mut limited = None;
    for i in 0..30 {
        match engine.handle(&mut store, send(&format!("m{i}"), "x", visitor()), 0) {
            Ok(_) => {}
            Err(EngineError::Rejected {
                code,
                retry_after_ms,
                client_msg_id,
            }) => {
                assert_eq!(code, ErrorCode::RateLimited);
                assert_eq!(client_msg_id.as_deref(), Some(format!("m{i}").as_str()));
                limited = Some((i, retry_after_ms));
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let (at, retry_after) = limited.expect("the flood was limited");
    assert_eq!(at, 20);
    assert_eq!(retry_after, Some(1000));
    // A duplicate of a stored message is still answered while limited.
    let dup = engine
        .handle(&mut store, send("m0", "x", visitor()), 0)
        .unwrap();
    assert_eq!(ack_seq(&dup), (2, true));
    // After waiting, sending works again.
    assert!(engine
        .handle(&mut store, send("late", "x", visitor()), 1000)
        .is_ok());
}

#[test]
fn resume_replays_exactly_the_missed_events() {
    let (mut engine, mut store) = new_conversation(10);
    for i in 0..8 {
        engine
            .handle(&mut store, send(&format!("m{i}"), "x", visitor()), 1)
            .unwrap();
    }
    let effects = engine
        .handle(
            &mut store,
            Command::Hello {
                who: agent(),
                after: Some(4),
                epoch: Some("e_1".into()),
            },
            2,
        )
        .unwrap();
    assert!(matches!(
        &effects[0],
        Effect::Reply(ServerFrame::Welcome { head: 9, .. })
    ));
    let replayed: Vec<u64> = effects[1..]
        .iter()
        .map(|e| match e {
            Effect::Reply(ServerFrame::Event(ev)) => ev.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(replayed, vec![5, 6, 7, 8, 9]);
}

fn reset_reason(effects: &[Effect]) -> Option<ResetReason> {
    effects.iter().find_map(|e| match e {
        Effect::Reply(ServerFrame::Reset { reason, .. }) => Some(*reason),
        _ => None,
    })
}

#[test]
fn resume_beyond_window_wrong_epoch_or_future_seq_resets() {
    let (mut engine, mut store) = new_conversation(3);
    for i in 0..8 {
        engine
            .handle(&mut store, send(&format!("m{i}"), "x", visitor()), 1)
            .unwrap();
    }
    let hello = |after, epoch: &str| Command::Hello {
        who: visitor(),
        after: Some(after),
        epoch: Some(epoch.into()),
    };
    let mut run = |c| engine.handle(&mut store, c, 2).unwrap();
    assert_eq!(
        reset_reason(&run(hello(2, "e_1"))),
        Some(ResetReason::GapTooLarge)
    );
    assert_eq!(reset_reason(&run(hello(6, "e_1"))), None);
    assert_eq!(
        reset_reason(&run(hello(6, "e_old"))),
        Some(ResetReason::EpochMismatch)
    );
    assert_eq!(
        reset_reason(&run(hello(99, "e_1"))),
        Some(ResetReason::AheadOfHead)
    );
    // Starting live (no `after`) never resets and replays nothing.
    let live = run(Command::Hello {
        who: visitor(),
        after: None,
        epoch: None,
    });
    assert_eq!(live.len(), 1);
}

#[test]
fn read_markers_advance_only_and_are_persisted() {
    let (mut engine, mut store) = new_conversation(10);
    engine
        .handle(&mut store, send("m1", "x", visitor()), 1)
        .unwrap();
    let effects = engine
        .handle(
            &mut store,
            Command::Read {
                who: agent(),
                seq: 2,
            },
            2,
        )
        .unwrap();
    assert!(effects.contains(&Effect::Broadcast(ServerFrame::Read {
        participant: "a_1".into(),
        seq: 2
    })));
    assert!(engine
        .handle(
            &mut store,
            Command::Read {
                who: agent(),
                seq: 1
            },
            3
        )
        .unwrap()
        .is_empty());
    assert_eq!(
        rejected(engine.handle(
            &mut store,
            Command::Read {
                who: agent(),
                seq: 3
            },
            3
        )),
        ErrorCode::InvalidSeq
    );
    let reloaded = Engine::load(&store, EngineConfig::default())
        .unwrap()
        .unwrap();
    let mut engine = reloaded;
    let welcome = engine
        .handle(
            &mut store,
            Command::Hello {
                who: visitor(),
                after: None,
                epoch: None,
            },
            4,
        )
        .unwrap();
    match &welcome[0] {
        Effect::Reply(ServerFrame::Welcome { reads, .. }) => assert_eq!(reads.get("a_1"), Some(&2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn typing_goes_to_others_and_is_not_persisted() {
    let (mut engine, mut store) = new_conversation(10);
    let effects = engine
        .handle(
            &mut store,
            Command::Typing {
                who: visitor(),
                active: true,
            },
            1,
        )
        .unwrap();
    assert!(matches!(
        &effects[0],
        Effect::BroadcastExcept { participant, .. } if participant == "v_1"
    ));
    assert_eq!(store.log().len(), 1);
}

#[test]
fn lifecycle_events_are_log_events_and_survive_reload() {
    let (mut engine, mut store) = new_conversation(10);
    assert_eq!(
        rejected(engine.handle(&mut store, Command::Close { who: visitor() }, 1)),
        ErrorCode::Forbidden
    );
    engine
        .handle(
            &mut store,
            Command::Assign {
                who: agent(),
                agent: agent(),
                since: None,
            },
            1,
        )
        .unwrap();
    engine
        .handle(&mut store, Command::Close { who: agent() }, 2)
        .unwrap();
    // Closing twice adds nothing.
    assert!(engine
        .handle(&mut store, Command::Close { who: agent() }, 3)
        .unwrap()
        .is_empty());
    let reloaded = Engine::load(&store, EngineConfig::default())
        .unwrap()
        .unwrap();
    assert_eq!(reloaded.meta().status, Status::Closed);
    assert_eq!(reloaded.meta().assignee.as_deref(), Some("a_1"));
    assert_eq!(reloaded.meta().head, 3);
    // A visitor writing again reopens the conversation, then the message follows.
    let mut engine = reloaded;
    let effects = engine
        .handle(&mut store, send("m1", "again", visitor()), 4)
        .unwrap();
    assert_eq!(ack_seq(&effects), (5, false));
    assert_eq!(store.log()[3].payload, EventPayload::Reopened {});
    assert_eq!(engine.meta().status, Status::Open);
}

#[test]
fn history_pages_backwards_with_a_cursor() {
    let (mut engine, mut store) = new_conversation(10);
    for i in 0..9 {
        engine
            .handle(&mut store, send(&format!("m{i}"), "x", visitor()), 1)
            .unwrap();
    }
    let mut before = None;
    let mut seen = Vec::new();
    loop {
        let effects = engine
            .handle(
                &mut store,
                Command::History {
                    before,
                    limit: Some(4),
                },
                2,
            )
            .unwrap();
        let Effect::Reply(ServerFrame::History {
            events,
            next_before,
            ..
        }) = &effects[0]
        else {
            panic!("{effects:?}")
        };
        let mut page: Vec<u64> = events.iter().map(|e| e.seq).collect();
        page.extend(seen);
        seen = page;
        match next_before {
            Some(n) => before = Some(*n),
            None => break,
        }
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
}

#[test]
fn poll_returns_events_after_or_reset() {
    let (mut engine, mut store) = new_conversation(3);
    engine
        .handle(&mut store, send("m1", "x", visitor()), 1)
        .unwrap();
    let effects = engine
        .handle(
            &mut store,
            Command::Poll {
                after: 1,
                epoch: Some("e_1".into()),
            },
            2,
        )
        .unwrap();
    match &effects[0] {
        Effect::Reply(ServerFrame::Events { events, head, .. }) => {
            assert_eq!(*head, 2);
            assert_eq!(events.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    let nothing = engine
        .handle(
            &mut store,
            Command::Poll {
                after: 2,
                epoch: None,
            },
            2,
        )
        .unwrap();
    assert!(
        matches!(&nothing[0], Effect::Reply(ServerFrame::Events { events, .. }) if events.is_empty())
    );
    let reset = engine
        .handle(
            &mut store,
            Command::Poll {
                after: 7,
                epoch: None,
            },
            2,
        )
        .unwrap();
    assert_eq!(reset_reason(&reset), Some(ResetReason::AheadOfHead));
}

#[test]
fn notes_are_for_agents_only_and_keep_the_log_gap_free() {
    let (mut engine, mut store) = new_conversation(10);
    let note = |who: Participant| Command::Note {
        who,
        client_msg_id: "n1".into(),
        text: "refund approved, call them tomorrow".into(),
    };
    assert_eq!(
        rejected(engine.handle(&mut store, note(visitor()), 1)),
        ErrorCode::Forbidden
    );
    let effects = engine.handle(&mut store, note(agent()), 1).unwrap();
    assert_eq!(ack_seq(&effects), (2, false));
    let stored = store.log()[1].clone();
    assert_eq!(stored.payload.kind(), "note");
    // The visitor's copy says only that something private happened at seq 2.
    let seen_by_visitor = stored.for_role(Role::Visitor);
    assert_eq!(seen_by_visitor.seq, 2);
    assert_eq!(seen_by_visitor.payload, EventPayload::Hidden {});
    assert_eq!(seen_by_visitor.author.role, Role::System);
    assert_eq!(seen_by_visitor.client_msg_id, None);
    assert_eq!(stored.for_role(Role::Agent), stored);
}

#[test]
fn visitor_messages_can_be_masked_for_agents() {
    let (mut engine, mut store) = new_conversation(10);
    engine
        .handle(
            &mut store,
            send("m1", "mail me at ann@example.org", visitor()),
            1,
        )
        .unwrap();
    let masked = store.log()[1].masked_pii();
    assert_eq!(
        masked.payload,
        EventPayload::Message {
            text: "mail me at a***@example.org".into()
        }
    );
    assert!(masked.masked);
    // Agents' own messages are not masked.
    engine
        .handle(&mut store, send("a1", "call +1 555 123 4567", agent()), 2)
        .unwrap();
    assert!(!store.log()[2].masked_pii().masked);
}

#[test]
fn only_visitors_the_system_and_api_key_bots_hand_off_to_people() {
    let (mut engine, mut store) = new_conversation(100);
    let handoff = |who: Participant| Command::Handoff { who };
    assert_eq!(
        rejected(engine.handle(&mut store, handoff(agent()), 5)),
        ErrorCode::Forbidden
    );
    let bot = Participant {
        id: "k_orderbot".into(),
        role: Role::Agent,
        name: Some("Order bot".into()),
    };
    let effects = engine.handle(&mut store, handoff(bot), 6).unwrap();
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Broadcast(ServerFrame::Event(ev)) if ev.payload == EventPayload::Handoff {}
    )));
}

#[test]
fn one_address_shares_its_message_bucket_between_participants() {
    let slow = parley_core::ratelimit::Rate {
        burst: 3.0,
        per_second: 0.001,
    };
    let (mut engine, mut store) = new_conversation_with(EngineConfig {
        ip_messages: slow,
        ..EngineConfig::default()
    });
    let from = |who: Participant, id: &str, ip: &str| Command::Send {
        who,
        ip: Some(ip.into()),
        client_msg_id: id.into(),
        text: "x".into(),
    };
    let shared = "192.0.2.1";
    // Two by the visitor and one by the agent use up the address's three.
    for (who, id) in [(visitor(), "v1"), (visitor(), "v2"), (agent(), "a1")] {
        engine
            .handle(&mut store, from(who, id, shared), 0)
            .expect("within the address's burst");
    }
    let head = engine.meta().head;
    for (who, id) in [(agent(), "a2"), (visitor(), "v3")] {
        let refused = engine.handle(&mut store, from(who, id, shared), 0);
        assert_eq!(rejected(refused), ErrorCode::RateLimited);
    }
    assert_eq!(engine.meta().head, head, "nothing was stored");
    // The same participant from another address is not held back by this one's bucket.
    let elsewhere = engine.handle(&mut store, from(visitor(), "v4", "192.0.2.2"), 0);
    assert_eq!(ack_seq(&elsewhere.expect("another address")).0, head + 1);
}

#[test]
fn an_automated_message_is_shown_under_a_clean_bounded_name_or_the_sites() {
    let (mut engine, mut store) = new_conversation(10);
    let automated = |key: &str, name: Option<&str>| Command::Automated {
        key: key.into(),
        text: "Shipping takes two days.".into(),
        name: name.map(str::to_string),
    };
    let long = "B".repeat(200);
    for (key, name) in [
        ("k1", Some("Tea\u{0} Bot\n")),
        ("k2", Some("\u{0}\u{202E}")),
        ("k3", Some(long.as_str())),
    ] {
        engine
            .handle(&mut store, automated(key, name), 1_000)
            .unwrap();
    }
    let names: Vec<Option<String>> = store
        .log()
        .iter()
        .filter(|e| e.author.role == Role::System && e.client_msg_id.is_some())
        .map(|e| e.author.name.clone())
        .collect();
    assert_eq!(names, [Some("Tea Bot".into()), None, Some("B".repeat(60))]);
}

#[test]
fn commands_that_post_a_message_name_it() {
    assert_eq!(send("m1", "hi", visitor()).client_msg_id(), Some("m1"));
    let note = Command::Note {
        who: agent(),
        client_msg_id: "n1".into(),
        text: "private".into(),
    };
    assert_eq!(note.client_msg_id(), Some("n1"));
    let automated = Command::Automated {
        key: "auto:1".into(),
        text: "hello".into(),
        name: None,
    };
    assert_eq!(automated.client_msg_id(), None);
}

fn rate(score: u8, comment: Option<&str>) -> Command {
    Command::Rate {
        who: visitor(),
        score,
        comment: comment.map(str::to_string),
    }
}

fn replied_event(effects: &[Effect]) -> parley_core::Event {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Reply(ServerFrame::Event(ev)) => Some(ev.clone()),
            _ => None,
        })
        .expect("the rating as the reply")
}

fn ratings(store: &MemStore) -> Vec<(u64, EventPayload)> {
    store
        .log()
        .iter()
        .filter(|e| matches!(e.payload, EventPayload::Rated { .. }))
        .map(|e| (e.seq, e.payload.clone()))
        .collect()
}

#[test]
fn a_rating_is_for_a_closed_conversation_once_per_closing() {
    let (mut engine, mut store) = new_conversation(10);
    // Open: refused, nothing stored.
    assert_eq!(
        rejected(engine.handle(&mut store, rate(5, None), 1)),
        ErrorCode::ConversationOpen
    );
    assert_eq!(engine.meta().head, 1);

    engine
        .handle(&mut store, Command::Close { who: agent() }, 2)
        .unwrap();
    let first = engine
        .handle(&mut store, rate(4, Some(" quick ")), 3)
        .unwrap();
    let rated = replied_event(&first);
    assert_eq!(
        rated.payload,
        EventPayload::Rated {
            score: 4,
            comment: Some("quick".into())
        }
    );
    assert!(first.contains(&Effect::Mirror));
    assert!(first
        .iter()
        .any(|e| matches!(e, Effect::Broadcast(ServerFrame::Event(ev)) if ev.seq == rated.seq)));

    // Asked again in the same closing: the stored rating answers; nothing stored or broadcast.
    let head = engine.meta().head;
    for (score, comment) in [(1, Some("changed my mind")), (4, Some("quick"))] {
        let again = engine.handle(&mut store, rate(score, comment), 4).unwrap();
        assert_eq!(
            again,
            vec![Effect::Reply(ServerFrame::Event(rated.clone()))]
        );
    }
    assert_eq!(engine.meta().head, head);

    // A new closing (the visitor wrote, an agent closed again) takes a new rating.
    engine
        .handle(&mut store, send("m1", "one more thing", visitor()), 5)
        .unwrap();
    engine
        .handle(&mut store, Command::Close { who: agent() }, 6)
        .unwrap();
    let second = replied_event(&engine.handle(&mut store, rate(2, None), 7).unwrap());
    assert!(second.seq > rated.seq);
    assert_eq!(
        ratings(&store),
        vec![
            (rated.seq, rated.payload.clone()),
            (
                second.seq,
                EventPayload::Rated {
                    score: 2,
                    comment: None
                }
            )
        ]
    );

    // Reloaded from storage (an evicted object), the closing's rating is still known.
    let mut reloaded = Engine::load(&store, EngineConfig::default())
        .unwrap()
        .unwrap();
    let answer = reloaded.handle(&mut store, rate(5, None), 8).unwrap();
    assert_eq!(replied_event(&answer).seq, second.seq);
    assert_eq!(ratings(&store).len(), 2);
}

#[test]
fn ratings_come_from_the_visitors_message_bucket() {
    let slow = parley_core::ratelimit::Rate {
        burst: 2.0,
        per_second: 0.001,
    };
    let (mut engine, mut store) = new_conversation_with(EngineConfig {
        visitor_messages: slow,
        ..EngineConfig::default()
    });
    for id in ["m1", "m2"] {
        engine
            .handle(&mut store, send(id, "hi", visitor()), 0)
            .expect("within the visitor's burst");
    }
    engine
        .handle(&mut store, Command::Close { who: agent() }, 0)
        .unwrap();
    let head = engine.meta().head;
    match engine.handle(&mut store, rate(3, None), 0) {
        Err(EngineError::Rejected {
            code: ErrorCode::RateLimited,
            retry_after_ms: Some(wait),
            ..
        }) => assert!(wait > 0),
        other => panic!("expected rate_limited, got {other:?}"),
    }
    assert_eq!(engine.meta().head, head, "nothing was stored");
    // Once the bucket has refilled the rating is taken.
    let later = engine.handle(&mut store, rate(3, None), 1_000_000).unwrap();
    assert_eq!(replied_event(&later).seq, head + 1);
}

#[test]
fn only_the_visitor_rates_and_only_from_one_to_five() {
    let (mut engine, mut store) = new_conversation(10);
    engine
        .handle(&mut store, Command::Close { who: agent() }, 1)
        .unwrap();
    let by_agent = Command::Rate {
        who: agent(),
        score: 5,
        comment: None,
    };
    assert_eq!(
        rejected(engine.handle(&mut store, by_agent, 2)),
        ErrorCode::Forbidden
    );
    for score in [0, 6] {
        assert_eq!(
            rejected(engine.handle(&mut store, rate(score, None), 2)),
            ErrorCode::InvalidRequest
        );
    }
    assert!(ratings(&store).is_empty());
}

#[test]
fn an_answer_counts_only_from_the_assignee_since_the_assignment() {
    let (mut engine, mut store) = new_conversation(10);
    let other = Participant {
        id: "a_2".into(),
        role: Role::Agent,
        name: Some("Bo".into()),
    };
    let assign = |to: &Participant| Command::Assign {
        who: system_participant(),
        agent: to.clone(),
        since: None,
    };
    // Never assigned: nobody's reply answers anything.
    engine
        .handle(&mut store, send("a0", "before", agent()), 1_000)
        .unwrap();
    assert!(!engine.answered_since(&store, "a_1", 0).unwrap());
    // Assigned to a_1 at 2 s: the reply before does not count, nor do the visitor's words or
    // a note; a_1's reply after it does.
    engine.handle(&mut store, assign(&agent()), 2_000).unwrap();
    engine
        .handle(&mut store, send("v1", "hello?", visitor()), 3_000)
        .unwrap();
    engine
        .handle(
            &mut store,
            Command::Note {
                who: agent(),
                client_msg_id: "n1".into(),
                text: "looking".into(),
            },
            4_000,
        )
        .unwrap();
    assert!(!engine.answered_since(&store, "a_1", 2_000).unwrap());
    engine
        .handle(
            &mut store,
            send("a1", "hi, how can I help?", agent()),
            5_000,
        )
        .unwrap();
    assert!(engine.answered_since(&store, "a_1", 2_000).unwrap());
    // Routing gave it back to a_1 at 6 s (after a release, no new `assigned` event): the
    // answer at 5 s was to the earlier assignment.
    assert!(!engine.answered_since(&store, "a_1", 6_000).unwrap());
    // Handed to a_2: a_1 is no longer the assignee, whatever they wrote.
    engine.handle(&mut store, assign(&other), 7_000).unwrap();
    assert!(!engine.answered_since(&store, "a_1", 2_000).unwrap());
    assert!(!engine.answered_since(&store, "a_2", 7_000).unwrap());
    engine
        .handle(&mut store, send("b1", "I take over", other.clone()), 8_000)
        .unwrap();
    assert!(engine.answered_since(&store, "a_2", 7_000).unwrap());
    // Pages back: the answer lies behind 120 notes.
    for i in 0..120 {
        engine
            .handle(
                &mut store,
                Command::Note {
                    who: other.clone(),
                    client_msg_id: format!("n{i}"),
                    text: "note".into(),
                },
                10_000 + i * 1_000,
            )
            .unwrap();
    }
    assert!(engine.answered_since(&store, "a_2", 7_000).unwrap());
    // Read from the log, not kept in memory: it survives a reload.
    let reloaded = Engine::load(&store, EngineConfig::default())
        .unwrap()
        .unwrap();
    assert!(reloaded.answered_since(&store, "a_2", 7_000).unwrap());
    assert!(!reloaded.answered_since(&store, "a_2", 9_000).unwrap());
}

#[test]
fn routing_assigning_a_closed_conversation_records_nothing_and_is_not_refused() {
    let (mut engine, mut store) = new_conversation(10);
    engine
        .handle(&mut store, Command::Close { who: agent() }, 1)
        .unwrap();
    let logged = store.log().len();
    let by_routing = Command::Assign {
        who: system_participant(),
        agent: agent(),
        since: Some(2),
    };
    // Routing heard of the close only afterwards: its (re)telling lands on a closed chat.
    let effects = engine.handle(&mut store, by_routing, 2).unwrap();
    assert!(effects.is_empty());
    assert_eq!(store.log().len(), logged, "no `assigned` after `closed`");
    assert_eq!(engine.meta().assignee, None);
    // An agent taking a closed conversation themselves still does.
    engine
        .handle(
            &mut store,
            Command::Assign {
                who: agent(),
                agent: agent(),
                since: None,
            },
            3,
        )
        .unwrap();
    assert_eq!(engine.meta().assignee.as_deref(), Some("a_1"));
}

fn agent_b() -> Participant {
    Participant {
        id: "a_2".into(),
        role: Role::Agent,
        name: Some("Bo".into()),
    }
}

/// Routing's telling of its assignment to `to`, which started at `since` on the site's clock.
fn told_by_routing(to: Participant, since: i64) -> Command {
    Command::Assign {
        who: system_participant(),
        agent: to,
        since: Some(since),
    }
}

fn assignee(engine: &Engine) -> Option<String> {
    engine.meta().assignee.clone()
}

#[test]
fn a_late_telling_of_an_older_assignment_does_not_replace_a_newer_one() {
    let (mut engine, mut store) = new_conversation(10);
    engine
        .handle(&mut store, told_by_routing(agent(), 1_000), 1_010)
        .unwrap();
    engine
        .handle(&mut store, told_by_routing(agent_b(), 2_000), 2_010)
        .unwrap();
    assert_eq!(assignee(&engine).as_deref(), Some("a_2"));
    // The retelling of a_1's assignment that timed out at the site lands now: not recorded,
    // and not refused (routing would count a refusal as a failed telling and try again).
    let logged = store.log().len();
    let effects = engine
        .handle(&mut store, told_by_routing(agent(), 1_000), 5_000)
        .unwrap();
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(store.log().len(), logged);
    assert_eq!(assignee(&engine).as_deref(), Some("a_2"));
    // The newer assignment told again is taken as before: once, without a second event.
    assert!(engine
        .handle(&mut store, told_by_routing(agent_b(), 2_000), 5_100)
        .unwrap()
        .is_empty());
    // Routing gives it to a_1 at 6 s, to a_2 at 7 s (that telling goes astray) and back to
    // a_1 at 8 s: the conversation has a_1 already, so nothing is recorded, but the late
    // telling of a_2's assignment at 7 s is now older than a_1's and must not take it.
    engine
        .handle(&mut store, told_by_routing(agent(), 6_000), 6_010)
        .unwrap();
    let logged = store.log().len();
    assert!(engine
        .handle(&mut store, told_by_routing(agent(), 8_000), 8_010)
        .unwrap()
        .is_empty());
    assert_eq!(store.log().len(), logged);
    assert!(engine
        .handle(&mut store, told_by_routing(agent_b(), 7_000), 9_000)
        .unwrap()
        .is_empty());
    assert_eq!(assignee(&engine).as_deref(), Some("a_1"));
    // Kept in storage: a reloaded conversation tells a stale one apart just the same.
    let mut engine = Engine::load(&store, EngineConfig::default())
        .unwrap()
        .unwrap();
    assert_eq!(engine.meta().assigned_since, Some(8_000));
    assert!(engine
        .handle(&mut store, told_by_routing(agent_b(), 7_500), 9_500)
        .unwrap()
        .is_empty());
    assert_eq!(assignee(&engine).as_deref(), Some("a_1"));
    assert_eq!(store.log().len(), logged);
}

#[test]
fn routings_telling_of_an_assignment_older_than_a_persons_choice_does_not_undo_it() {
    let (mut engine, mut store) = new_conversation(10);
    // Routing assigned a_1 at 1 s, but the conversation was out of reach: nothing recorded.
    // At 2 s a_2 takes the conversation through the API.
    engine
        .handle(
            &mut store,
            Command::Assign {
                who: agent_b(),
                agent: agent_b(),
                since: None,
            },
            2_000,
        )
        .unwrap();
    assert_eq!(assignee(&engine).as_deref(), Some("a_2"));
    // Routing's retelling of a_1's assignment lands afterwards: the person's choice stands.
    let logged = store.log().len();
    assert!(engine
        .handle(&mut store, told_by_routing(agent(), 1_000), 4_000)
        .unwrap()
        .is_empty());
    assert_eq!(assignee(&engine).as_deref(), Some("a_2"));
    assert_eq!(store.log().len(), logged);
    // What routing decides after it (here a transfer at 5 s) is recorded.
    engine
        .handle(&mut store, told_by_routing(agent(), 5_000), 5_010)
        .unwrap();
    assert_eq!(assignee(&engine).as_deref(), Some("a_1"));
}

#[test]
fn a_telling_whose_event_was_not_written_is_recorded_when_routing_tells_it_again() {
    let (_, mut store) = new_conversation(10);
    // Routing's telling of a_1 (since 1 s) kept its start, and then the write of its event
    // failed: routing tells it again, with the same start. Recorded, not taken as stale.
    store.save_assigned_since(1_000).unwrap();
    let mut engine = Engine::load(&store, EngineConfig::default())
        .unwrap()
        .unwrap();
    engine
        .handle(&mut store, told_by_routing(agent(), 1_000), 1_500)
        .unwrap();
    assert_eq!(assignee(&engine).as_deref(), Some("a_1"));
    assert!(matches!(
        store.log().last().map(|e| &e.payload),
        Some(EventPayload::Assigned { .. })
    ));
}

#[test]
fn an_assignment_told_without_its_start_or_to_a_conversation_without_one_is_recorded_as_before() {
    // A site of an older release tells no start: recorded, whatever the conversation holds.
    let (mut engine, mut store) = new_conversation(10);
    engine
        .handle(&mut store, told_by_routing(agent_b(), 2_000), 2_010)
        .unwrap();
    engine
        .handle(
            &mut store,
            Command::Assign {
                who: system_participant(),
                agent: agent(),
                since: None,
            },
            3_000,
        )
        .unwrap();
    assert_eq!(assignee(&engine).as_deref(), Some("a_1"));
    // A conversation assigned before starts were kept holds none: any telling is recorded.
    let (mut engine, mut store) = new_conversation(10);
    engine
        .handle(
            &mut store,
            Command::Assign {
                who: system_participant(),
                agent: agent_b(),
                since: None,
            },
            2_000,
        )
        .unwrap();
    assert_eq!(engine.meta().assigned_since, None);
    engine
        .handle(&mut store, told_by_routing(agent(), 1_000), 3_000)
        .unwrap();
    assert_eq!(assignee(&engine).as_deref(), Some("a_1"));
}
