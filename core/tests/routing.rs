//! The site's routing: fairness, capacity, departments, the queue, claims, transfers,
//! reassignment of unanswered conversations and expiry of vanished devices.

use std::collections::{BTreeMap, BTreeSet};

use parley_core::routing::*;
use proptest::prelude::*;

fn profile(id: &str, capacity: u32, departments: &[&str]) -> AgentProfile {
    AgentProfile {
        id: id.into(),
        name: format!("Agent {id}"),
        departments: departments.iter().map(|d| d.to_string()).collect(),
        capacity,
    }
}

fn connect(
    state: &mut SiteState,
    config: &RoutingConfig,
    p: AgentProfile,
    now: i64,
) -> Vec<SiteEffect> {
    let device = format!("{}-dev", p.id);
    state
        .handle(config, SiteInput::DeviceConnected { agent: p, device }, now)
        .unwrap()
}

fn new_conversation(
    state: &mut SiteState,
    config: &RoutingConfig,
    id: &str,
    now: i64,
) -> Vec<SiteEffect> {
    state
        .handle(
            config,
            SiteInput::NewConversation {
                conversation: id.into(),
                context: RoutingContext::default(),
            },
            now,
        )
        .unwrap()
}

fn assigned_to(fx: &[SiteEffect]) -> Option<String> {
    fx.iter().find_map(|e| match e {
        SiteEffect::Assigned { agent, .. } => Some(agent.clone()),
        _ => None,
    })
}

fn queued_at(fx: &[SiteEffect]) -> Option<usize> {
    fx.iter().find_map(|e| match e {
        SiteEffect::Queued { position, .. } => Some(*position),
        _ => None,
    })
}

#[test]
fn round_robin_spreads_evenly() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    for id in ["a_1", "a_2", "a_3"] {
        connect(&mut state, &config, profile(id, 100, &[]), 0);
    }
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..90 {
        let fx = new_conversation(&mut state, &config, &format!("c_{i}"), i);
        *counts.entry(assigned_to(&fx).unwrap()).or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![30, 30, 30]
    );
}

#[test]
fn least_loaded_prefers_the_emptiest_agent() {
    let config = RoutingConfig {
        policy: Policy::LeastLoaded,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    for i in 0..3 {
        new_conversation(&mut state, &config, &format!("c_{i}"), 1);
    }
    connect(&mut state, &config, profile("a_2", 10, &[]), 2);
    // a_2 has none, a_1 has three: the next three go to a_2.
    for i in 3..6 {
        let fx = new_conversation(&mut state, &config, &format!("c_{i}"), 3 + i);
        assert_eq!(assigned_to(&fx).as_deref(), Some("a_2"));
    }
}

#[test]
fn capacity_full_means_queue_with_positions_then_drain_in_order() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 1, &[]), 0);
    assert_eq!(
        assigned_to(&new_conversation(&mut state, &config, "c_1", 1)).as_deref(),
        Some("a_1")
    );
    assert_eq!(
        queued_at(&new_conversation(&mut state, &config, "c_2", 2)),
        Some(1)
    );
    assert_eq!(
        queued_at(&new_conversation(&mut state, &config, "c_3", 3)),
        Some(2)
    );
    assert_eq!(state.position("c_3"), Some(2));
    // Closing frees the seat: the oldest waiting conversation is assigned, the rest move up.
    let fx = state
        .handle(
            &config,
            SiteInput::Closed {
                conversation: "c_1".into(),
            },
            4,
        )
        .unwrap();
    assert!(fx.contains(&SiteEffect::Assigned {
        conversation: "c_2".into(),
        agent: "a_1".into(),
        agent_name: "Agent a_1".into(),
        previous: None,
        reason: AssignReason::Routed,
    }));
    assert!(fx.contains(&SiteEffect::QueuePositions(vec![("c_3".into(), 1)])));
}

#[test]
fn departments_route_by_rules() {
    let config = RoutingConfig {
        rules: vec![
            Rule::UrlContains {
                value: "/pricing".into(),
                department: "sales".into(),
            },
            Rule::Language {
                value: "zh".into(),
                department: "china".into(),
            },
        ],
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_sales", 10, &["sales"]), 0);
    connect(&mut state, &config, profile("a_cn", 10, &["china"]), 0);
    let route = |state: &mut SiteState, id: &str, ctx: RoutingContext| {
        assigned_to(
            &state
                .handle(
                    &config,
                    SiteInput::NewConversation {
                        conversation: id.into(),
                        context: ctx,
                    },
                    1,
                )
                .unwrap(),
        )
    };
    let pricing = RoutingContext {
        url: Some("https://shop.example/pricing?x".into()),
        ..Default::default()
    };
    let chinese = RoutingContext {
        language: Some("zh-CN".into()),
        ..Default::default()
    };
    assert_eq!(
        route(&mut state, "c_1", pricing).as_deref(),
        Some("a_sales")
    );
    assert_eq!(route(&mut state, "c_2", chinese).as_deref(), Some("a_cn"));
    // A department with nobody online waits in the queue.
    let config_fr = RoutingConfig {
        rules: vec![Rule::Country {
            value: "FR".into(),
            department: "france".into(),
        }],
        ..RoutingConfig::default()
    };
    let fx = state
        .handle(
            &config_fr,
            SiteInput::NewConversation {
                conversation: "c_3".into(),
                context: RoutingContext {
                    country: Some("fr".into()),
                    ..Default::default()
                },
            },
            2,
        )
        .unwrap();
    assert_eq!(queued_at(&fx), Some(1));
}

#[test]
fn away_agents_and_agents_without_devices_get_nothing() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    state
        .handle(
            &config,
            SiteInput::SetStatus {
                agent: "a_1".into(),
                status: AgentStatus::Away,
            },
            1,
        )
        .unwrap();
    assert_eq!(
        queued_at(&new_conversation(&mut state, &config, "c_1", 2)),
        Some(1)
    );
    // Back online: the waiting conversation is handed over at once.
    let fx = state
        .handle(
            &config,
            SiteInput::SetStatus {
                agent: "a_1".into(),
                status: AgentStatus::Online,
            },
            3,
        )
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_1"));
}

#[test]
fn claim_race_has_exactly_one_winner() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    new_conversation(&mut state, &config, "c_1", 0); // nobody online: queued
    connect(&mut state, &config, profile("a_1", 0, &[]), 1); // capacity 0: nothing routed
    connect(&mut state, &config, profile("a_2", 0, &[]), 1);
    let first = state.handle(
        &config,
        SiteInput::Claim {
            conversation: "c_1".into(),
            agent: profile("a_1", 0, &[]),
        },
        2,
    );
    let second = state.handle(
        &config,
        SiteInput::Claim {
            conversation: "c_1".into(),
            agent: profile("a_2", 0, &[]),
        },
        2,
    );
    assert_eq!(assigned_to(&first.unwrap()).as_deref(), Some("a_1"));
    assert_eq!(second, Err(RoutingError::AlreadyAssigned));
    assert_eq!(state.position("c_1"), None);
}

#[test]
fn unanswered_conversations_move_on_and_count_as_missed() {
    let config = RoutingConfig {
        answer_timeout_ms: 1000,
        heartbeat_timeout_ms: 1_000_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    connect(&mut state, &config, profile("a_2", 10, &[]), 0);
    let first = assigned_to(&new_conversation(&mut state, &config, "c_1", 0)).unwrap();
    assert_eq!(state.next_deadline(&config, 0), Some(1000));
    assert!(state
        .handle(&config, SiteInput::Tick, 999)
        .unwrap()
        .is_empty());
    let fx = state.handle(&config, SiteInput::Tick, 1000).unwrap();
    assert!(fx.contains(&SiteEffect::Missed {
        conversation: "c_1".into(),
        agent: first.clone()
    }));
    let next = assigned_to(&fx).unwrap();
    assert_ne!(next, first);
    assert_eq!(state.agents[&first].missed, 1);
    // Once the new agent answers, the clock stops.
    state
        .handle(
            &config,
            SiteInput::AgentReplied {
                conversation: "c_1".into(),
                agent: next,
            },
            1500,
        )
        .unwrap();
    assert!(state
        .handle(&config, SiteInput::Tick, 10_000)
        .unwrap()
        .is_empty());
}

#[test]
fn a_vanished_device_expires_and_its_conversations_are_requeued() {
    let config = RoutingConfig {
        heartbeat_timeout_ms: 30_000,
        answer_timeout_ms: 1_000_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 0);
    state
        .handle(
            &config,
            SiteInput::Heartbeat {
                agent: "a_1".into(),
                device: "a_1-dev".into(),
            },
            20_000,
        )
        .unwrap();
    assert!(state
        .handle(&config, SiteInput::Tick, 49_999)
        .unwrap()
        .is_empty());
    let fx = state.handle(&config, SiteInput::Tick, 50_000).unwrap();
    assert!(fx.contains(&SiteEffect::Presence {
        agent: "a_1".into(),
        status: AgentStatus::Offline
    }));
    assert_eq!(queued_at(&fx), Some(1));
    assert!(!state.agents["a_1"].is_available());
    // The device speaks again: the agent is back and takes the waiting conversation.
    let fx = state
        .handle(
            &config,
            SiteInput::Heartbeat {
                agent: "a_1".into(),
                device: "a_1-dev".into(),
            },
            60_000,
        )
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_1"));
}

#[test]
fn offline_agents_keep_their_conversations_when_the_site_says_so() {
    let config = RoutingConfig {
        offline_behavior: OfflineBehavior::Keep,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 0);
    state
        .handle(
            &config,
            SiteInput::DeviceDisconnected {
                agent: "a_1".into(),
                device: "a_1-dev".into(),
            },
            1,
        )
        .unwrap();
    assert_eq!(state.assignments["c_1"].agent, "a_1");
    assert!(state.queue.is_empty());
}

#[test]
fn one_of_several_devices_closing_keeps_the_agent_online() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    let p = profile("a_1", 10, &[]);
    for device in ["phone", "laptop"] {
        state
            .handle(
                &config,
                SiteInput::DeviceConnected {
                    agent: p.clone(),
                    device: device.into(),
                },
                0,
            )
            .unwrap();
    }
    new_conversation(&mut state, &config, "c_1", 0);
    let fx = state
        .handle(
            &config,
            SiteInput::DeviceDisconnected {
                agent: "a_1".into(),
                device: "phone".into(),
            },
            1,
        )
        .unwrap();
    assert!(fx.is_empty());
    assert!(state.agents["a_1"].is_available());
}

#[test]
fn transfers_to_an_agent_or_a_department() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &["support"]), 0);
    connect(&mut state, &config, profile("a_2", 10, &["billing"]), 0);
    let first = assigned_to(&new_conversation(&mut state, &config, "c_1", 0)).unwrap();
    let other = if first == "a_1" { "a_2" } else { "a_1" };
    let fx = state
        .handle(
            &config,
            SiteInput::Transfer {
                conversation: "c_1".into(),
                by: first.clone(),
                to: TransferTarget::Agent { id: other.into() },
            },
            1,
        )
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some(other));
    assert!(!state.agents[&first].active.contains("c_1"));
    // Only the holder may transfer.
    assert_eq!(
        state.handle(
            &config,
            SiteInput::Transfer {
                conversation: "c_1".into(),
                by: first.clone(),
                to: TransferTarget::Department {
                    name: "support".into()
                }
            },
            2
        ),
        Err(RoutingError::AlreadyAssigned)
    );
    let fx = state
        .handle(
            &config,
            SiteInput::Transfer {
                conversation: "c_1".into(),
                by: other.into(),
                to: TransferTarget::Department {
                    name: "billing".into(),
                },
            },
            3,
        )
        .unwrap();
    // The only billing agent is the one handing over, so it waits for another.
    if other == "a_2" {
        assert_eq!(queued_at(&fx), Some(1));
    } else {
        assert_eq!(assigned_to(&fx).as_deref(), Some("a_2"));
    }
}

proptest! {
    /// Whatever happens, an agent never holds more than their capacity, every conversation is in
    /// exactly one place (assigned or queued), and nobody is queued while a fitting agent has room.
    #[test]
    fn assignments_respect_capacity_and_nothing_is_lost(ops in prop::collection::vec(0u8..7, 1..200)) {
        let config = RoutingConfig { answer_timeout_ms: 50, heartbeat_timeout_ms: 80, ..RoutingConfig::default() };
        let mut state = SiteState::default();
        let mut open: BTreeSet<String> = BTreeSet::new();
        let mut now = 0;
        for (i, op) in ops.iter().enumerate() {
            now += 10;
            let agent = format!("a_{}", i % 3);
            let input = match op {
                0 | 1 => {
                    let c = format!("c_{i}");
                    open.insert(c.clone());
                    SiteInput::NewConversation { conversation: c, context: RoutingContext::default() }
                }
                2 => SiteInput::DeviceConnected { agent: profile(&agent, 2, &[]), device: "d".into() },
                3 => SiteInput::Heartbeat { agent, device: "d".into() },
                4 => match open.iter().next().cloned() {
                    Some(c) => { open.remove(&c); SiteInput::Closed { conversation: c } }
                    None => SiteInput::Tick,
                },
                5 => SiteInput::Tick,
                _ => SiteInput::DeviceDisconnected { agent, device: "d".into() },
            };
            let _ = state.handle(&config, input, now);
            for a in state.agents.values() {
                prop_assert!(a.active.len() as u32 <= a.profile.capacity);
            }
            for c in &open {
                let assigned = state.assignments.contains_key(c);
                let queued = state.position(c).is_some();
                prop_assert!(assigned ^ queued, "{c} assigned={assigned} queued={queued}");
            }
            if !state.queue.is_empty() {
                prop_assert!(!state.agents.values().any(|a| a.is_available() && (a.active.len() as u32) < a.profile.capacity));
            }
        }
    }
}

#[test]
fn outside_business_hours_conversations_wait_until_opening() {
    use parley_core::hours::{BusinessHours, Span, Weekly};
    let day = vec![Span {
        open: "09:00".into(),
        close: "17:00".into(),
    }];
    let config = RoutingConfig {
        hours: BusinessHours {
            enabled: true,
            timezone: "UTC".into(),
            weekly: Weekly {
                mon: day.clone(),
                tue: day.clone(),
                wed: day.clone(),
                thu: day.clone(),
                fri: day,
                ..Weekly::default()
            },
            holidays: BTreeSet::new(),
        },
        heartbeat_timeout_ms: i64::MAX / 4,
        ..RoutingConfig::default()
    };
    // Monday 2026-11-23, 08:00 and 09:00 UTC.
    let eight = 1_795_420_800_000;
    let nine = eight + 3_600_000;
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), eight);
    let fx = state
        .handle(
            &config,
            SiteInput::NewConversation {
                conversation: "c_early".into(),
                context: RoutingContext::default(),
            },
            eight,
        )
        .unwrap();
    assert_eq!(queued_at(&fx), Some(1), "closed: the conversation waits");
    // The object's alarm is due at opening time, and then the queue is handed out.
    assert_eq!(state.next_deadline(&config, eight), Some(nine));
    let fx = state.handle(&config, SiteInput::Tick, nine).unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_1"));
}

#[test]
fn an_away_agent_closing_one_of_two_devices_keeps_their_conversations() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    let p = profile("a_1", 10, &[]);
    for device in ["laptop", "phone"] {
        state
            .handle(
                &config,
                SiteInput::DeviceConnected {
                    agent: p.clone(),
                    device: device.into(),
                },
                0,
            )
            .unwrap();
    }
    new_conversation(&mut state, &config, "c_1", 1);
    state
        .handle(
            &config,
            SiteInput::SetStatus {
                agent: "a_1".into(),
                status: AgentStatus::Away,
            },
            2,
        )
        .unwrap();
    let fx = state
        .handle(
            &config,
            SiteInput::DeviceDisconnected {
                agent: "a_1".into(),
                device: "phone".into(),
            },
            3,
        )
        .unwrap();
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(state.assignments["c_1"].agent, "a_1");
}

#[test]
fn an_agent_without_a_console_open_can_claim() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    new_conversation(&mut state, &config, "c_1", 0);
    let fx = state
        .handle(
            &config,
            SiteInput::Claim {
                conversation: "c_1".into(),
                agent: profile("a_api", 5, &[]),
            },
            1,
        )
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_api"));
    assert_eq!(state.position("c_1"), None);
}

fn disconnect(
    state: &mut SiteState,
    config: &RoutingConfig,
    agent: &str,
    now: i64,
) -> Vec<SiteEffect> {
    let device = format!("{agent}-dev");
    state
        .handle(
            config,
            SiteInput::DeviceDisconnected {
                agent: agent.into(),
                device,
            },
            now,
        )
        .unwrap()
}

fn has_assigned(fx: &[SiteEffect]) -> bool {
    fx.iter().any(|e| matches!(e, SiteEffect::Assigned { .. }))
}

#[test]
fn a_reload_within_the_grace_keeps_presence_and_conversations() {
    let config = RoutingConfig {
        reconnect_grace_ms: 15_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    connect(&mut state, &config, profile("a_2", 10, &[]), 0);
    let mine: Vec<String> = (0..4)
        .map(|i| format!("c_{i}"))
        .filter(|c| {
            assigned_to(&new_conversation(&mut state, &config, c, 1)).as_deref() == Some("a_1")
        })
        .collect();
    assert!(!mine.is_empty());
    // The console reloads: its socket closes cleanly, and nothing moves or flaps.
    let fx = disconnect(&mut state, &config, "a_1", 1_000);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(state.agents["a_1"].presence(), AgentStatus::Online);
    // The object wakes when the grace runs out.
    assert_eq!(state.next_deadline(&config, 1_000), Some(16_000));
    // Nothing new is routed to a console that is not there.
    let fx = new_conversation(&mut state, &config, "c_new", 2_000);
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_2"));
    assert!(state
        .handle(&config, SiteInput::Tick, 3_000)
        .unwrap()
        .is_empty());
    // Back before the grace ends (a new socket: a new device id).
    let fx = state
        .handle(
            &config,
            SiteInput::DeviceConnected {
                agent: profile("a_1", 10, &[]),
                device: "a_1-reloaded".into(),
            },
            4_000,
        )
        .unwrap();
    assert!(
        !fx.iter().any(|e| matches!(e, SiteEffect::Presence { .. })),
        "{fx:?}"
    );
    assert!(state
        .handle(&config, SiteInput::Tick, 20_000)
        .unwrap()
        .is_empty());
    for c in &mine {
        assert_eq!(state.assignments[c].agent, "a_1");
    }
}

#[test]
fn an_agent_who_does_not_come_back_within_the_grace_is_gone() {
    let config = RoutingConfig {
        reconnect_grace_ms: 15_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 0);
    disconnect(&mut state, &config, "a_1", 1_000);
    assert!(state
        .handle(&config, SiteInput::Tick, 15_999)
        .unwrap()
        .is_empty());
    let fx = state.handle(&config, SiteInput::Tick, 16_000).unwrap();
    assert!(fx.contains(&SiteEffect::Presence {
        agent: "a_1".into(),
        status: AgentStatus::Offline
    }));
    assert_eq!(queued_at(&fx), Some(1), "requeued under the default policy");
    assert_eq!(state.agents["a_1"].presence(), AgentStatus::Offline);
    // Without a grace the loss is immediate, as before.
    let config = RoutingConfig {
        reconnect_grace_ms: 0,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 0);
    assert_eq!(
        queued_at(&disconnect(&mut state, &config, "a_1", 1)),
        Some(1)
    );
}

#[test]
fn a_background_tab_is_not_given_up_for_a_throttled_minute() {
    let config = RoutingConfig::default();
    // Chrome wakes hidden tabs' timers once a minute, Safari about every 40 s: allow two missed
    // wakes and then some.
    assert!(config.heartbeat_timeout_ms >= 150_000);
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 0);
    state
        .handle(
            &config,
            SiteInput::AgentReplied {
                conversation: "c_1".into(),
                agent: "a_1".into(),
            },
            1,
        )
        .unwrap();
    // The device is heard from (a heartbeat or any other frame) once a minute.
    for minute in 1..=10 {
        let now = minute * 60_000;
        assert!(state
            .handle(&config, SiteInput::Tick, now - 1)
            .unwrap()
            .is_empty());
        state
            .handle(
                &config,
                SiteInput::Heartbeat {
                    agent: "a_1".into(),
                    device: "a_1-dev".into(),
                },
                now,
            )
            .unwrap();
    }
    assert!(state.agents["a_1"].is_available());
    assert_eq!(state.assignments["c_1"].agent, "a_1");
    // Silent past the timeout: gone.
    let fx = state
        .handle(
            &config,
            SiteInput::Tick,
            600_000 + config.heartbeat_timeout_ms,
        )
        .unwrap();
    assert_eq!(queued_at(&fx), Some(1));
}

#[test]
fn an_erased_conversation_frees_its_seat_and_leaves_the_queue() {
    let config = RoutingConfig {
        rules: vec![Rule::Param {
            value: "sales".into(),
            department: "sales".into(),
        }],
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 1, &["sales"]), 0);
    let sales = RoutingContext {
        param: Some("sales".into()),
        ..Default::default()
    };
    for (i, c) in ["c_1", "c_2", "c_3"].iter().enumerate() {
        state
            .handle(
                &config,
                SiteInput::NewConversation {
                    conversation: c.to_string(),
                    context: sales.clone(),
                },
                i as i64,
            )
            .unwrap();
    }
    assert_eq!(state.assignments["c_1"].agent, "a_1");
    assert_eq!(state.position("c_3"), Some(2));
    // Erasing a waiting one takes it out of the queue; the others move up.
    let fx = state
        .handle(
            &config,
            SiteInput::Erased {
                conversations: vec!["c_2".into()],
            },
            10,
        )
        .unwrap();
    assert!(fx.contains(&SiteEffect::QueuePositions(vec![("c_3".into(), 1)])));
    // Erasing the assigned one frees the agent's seat for the next.
    let fx = state
        .handle(
            &config,
            SiteInput::Erased {
                conversations: vec!["c_1".into()],
            },
            11,
        )
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_1"));
    assert!(!state.agents["a_1"].active.contains("c_1"));
    assert!(state.agents["a_1"].active.contains("c_3"));
    assert!(state.queue.is_empty());
    assert_eq!(state.remembered_department("c_1"), None);
    assert_eq!(state.remembered_department("c_3"), Some("sales"));
    // An erasure routing never heard of changes nothing.
    let before = state.clone();
    let fx = state
        .handle(
            &config,
            SiteInput::Erased {
                conversations: vec!["c_unknown".into()],
            },
            12,
        )
        .unwrap();
    assert!(fx.is_empty());
    assert_eq!(state, before);
}

#[test]
fn hand_offs_and_reopenings_keep_the_department() {
    let config = RoutingConfig {
        rules: vec![Rule::UrlContains {
            value: "/pricing".into(),
            department: "sales".into(),
        }],
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_sales", 10, &["sales"]), 0);
    connect(&mut state, &config, profile("a_any", 10, &["support"]), 0);
    let pricing = RoutingContext {
        url: Some("https://shop.example/pricing".into()),
        ..Default::default()
    };
    for i in 0..4 {
        let fx = state
            .handle(
                &config,
                SiteInput::NewConversation {
                    conversation: format!("c_{i}"),
                    context: pricing.clone(),
                },
                1,
            )
            .unwrap();
        assert_eq!(assigned_to(&fx).as_deref(), Some("a_sales"));
    }
    // Closed, then reopened by the visitor: no context comes with it, the department does.
    for i in 0..4 {
        let c = format!("c_{i}");
        state
            .handle(
                &config,
                SiteInput::Closed {
                    conversation: c.clone(),
                },
                2,
            )
            .unwrap();
        let fx = state
            .handle(
                &config,
                SiteInput::Reopened {
                    conversation: c.clone(),
                    by_agent: None,
                },
                3,
            )
            .unwrap();
        assert_eq!(assigned_to(&fx).as_deref(), Some("a_sales"), "{c}");
    }
    // A conversation the bot held and hands over (routed again without a context) goes to the
    // department it had, and a transfer to another department is what is remembered next.
    state
        .handle(
            &config,
            SiteInput::Transfer {
                conversation: "c_0".into(),
                by: "a_sales".into(),
                to: TransferTarget::Department {
                    name: "support".into(),
                },
            },
            4,
        )
        .unwrap();
    assert_eq!(state.assignments["c_0"].agent, "a_any");
    state
        .handle(
            &config,
            SiteInput::Closed {
                conversation: "c_0".into(),
            },
            5,
        )
        .unwrap();
    for _ in 0..3 {
        let fx = new_conversation(&mut state, &config, "c_0", 6);
        assert_eq!(assigned_to(&fx).as_deref(), Some("a_any"));
        state
            .handle(
                &config,
                SiteInput::Closed {
                    conversation: "c_0".into(),
                },
                7,
            )
            .unwrap();
    }
    // Rules that match still win over what was remembered.
    let fx = state
        .handle(
            &config,
            SiteInput::NewConversation {
                conversation: "c_0".into(),
                context: pricing,
            },
            8,
        )
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_sales"));
}

#[test]
fn remembered_departments_are_bounded() {
    let config = RoutingConfig {
        rules: vec![Rule::Param {
            value: "x".into(),
            department: "x".into(),
        }],
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    let ctx = RoutingContext {
        param: Some("x".into()),
        ..Default::default()
    };
    for i in 0..(REMEMBERED_DEPARTMENTS + 10) {
        let c = format!("c_{i}");
        state
            .handle(
                &config,
                SiteInput::NewConversation {
                    conversation: c.clone(),
                    context: ctx.clone(),
                },
                i as i64,
            )
            .unwrap();
        state
            .handle(&config, SiteInput::Closed { conversation: c }, i as i64)
            .unwrap();
    }
    assert_eq!(state.departments.len(), REMEMBERED_DEPARTMENTS);
    // The oldest went first.
    assert_eq!(state.remembered_department("c_0"), None);
    assert_eq!(
        state.remembered_department(&format!("c_{}", REMEMBERED_DEPARTMENTS + 9)),
        Some("x")
    );
}

#[test]
fn a_transfer_to_a_full_agent_is_refused() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 1);
    connect(&mut state, &config, profile("a_2", 1, &[]), 2);
    new_conversation(&mut state, &config, "c_2", 3);
    assert_eq!(state.assignments["c_2"].agent, "a_2", "a_2 is now full");
    let refused = state.handle(
        &config,
        SiteInput::Transfer {
            conversation: "c_1".into(),
            by: "a_1".into(),
            to: TransferTarget::Agent { id: "a_2".into() },
        },
        4,
    );
    assert_eq!(refused, Err(RoutingError::Unavailable));
    assert_eq!(
        RoutingError::Unavailable.code().as_str(),
        "agent_unavailable"
    );
    assert_eq!(state.assignments["c_1"].agent, "a_1", "nothing moved");
    assert_eq!(state.agents["a_2"].active.len(), 1);
}

#[test]
fn an_agent_who_reopens_a_conversation_gets_it() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 1, &[]), 0);
    connect(&mut state, &config, profile("a_2", 10, &[]), 0);
    let first = assigned_to(&new_conversation(&mut state, &config, "c_1", 1)).unwrap();
    state
        .handle(
            &config,
            SiteInput::Closed {
                conversation: "c_1".into(),
            },
            2,
        )
        .unwrap();
    // a_1 fills up; a_2 is free: a routed reopening would go to a_2, the reopener is a_1.
    let fill = if first == "a_1" { "c_2" } else { "c_3" };
    state
        .handle(
            &config,
            SiteInput::Claim {
                conversation: fill.into(),
                agent: profile("a_1", 1, &[]),
            },
            3,
        )
        .unwrap();
    let fx = state
        .handle(
            &config,
            SiteInput::Reopened {
                conversation: "c_1".into(),
                by_agent: Some(profile("a_1", 1, &[])),
            },
            4,
        )
        .unwrap();
    assert!(fx.contains(&SiteEffect::Assigned {
        conversation: "c_1".into(),
        agent: "a_1".into(),
        agent_name: "Agent a_1".into(),
        previous: None,
        reason: AssignReason::Claimed,
    }));
    assert!(
        state.assignments["c_1"].answered,
        "no answer clock on a deliberate reopening"
    );
    // Told twice (a retried notice), nothing changes.
    let again = state
        .handle(
            &config,
            SiteInput::Reopened {
                conversation: "c_1".into(),
                by_agent: Some(profile("a_1", 1, &[])),
            },
            5,
        )
        .unwrap();
    assert!(again.is_empty());
    // A reopening by the visitor is routed.
    state
        .handle(
            &config,
            SiteInput::Closed {
                conversation: "c_1".into(),
            },
            6,
        )
        .unwrap();
    let fx = state
        .handle(
            &config,
            SiteInput::Reopened {
                conversation: "c_1".into(),
                by_agent: None,
            },
            7,
        )
        .unwrap();
    assert!(has_assigned(&fx) || queued_at(&fx).is_some());
}

#[test]
fn a_conversation_routing_never_saw_can_be_claimed() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    let fx = state
        .handle(
            &config,
            SiteInput::Claim {
                conversation: "c_unrouted".into(),
                agent: profile("a_1", 5, &[]),
            },
            1,
        )
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_1"));
    assert!(state.agents["a_1"].active.contains("c_unrouted"));
    // And then it is a claimed conversation like any other.
    assert_eq!(
        state.handle(
            &config,
            SiteInput::Claim {
                conversation: "c_unrouted".into(),
                agent: profile("a_2", 5, &[]),
            },
            2,
        ),
        Err(RoutingError::AlreadyAssigned)
    );
}

#[test]
fn queue_positions_are_per_department() {
    let config = RoutingConfig {
        rules: ["sales", "support"]
            .iter()
            .map(|d| Rule::Param {
                value: d.to_string(),
                department: d.to_string(),
            })
            .collect(),
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    let route = |state: &mut SiteState, id: &str, department: &str| {
        queued_at(
            &state
                .handle(
                    &config,
                    SiteInput::NewConversation {
                        conversation: id.into(),
                        context: RoutingContext {
                            param: Some(department.into()),
                            ..Default::default()
                        },
                    },
                    1,
                )
                .unwrap(),
        )
    };
    assert_eq!(route(&mut state, "c_support_1", "support"), Some(1));
    assert_eq!(route(&mut state, "c_sales_1", "sales"), Some(1));
    assert_eq!(route(&mut state, "c_support_2", "support"), Some(2));
    assert_eq!(route(&mut state, "c_sales_2", "sales"), Some(2));
    assert_eq!(state.position("c_sales_2"), Some(2));
    assert_eq!(state.position("c_support_2"), Some(2));
    // A sales agent comes online and takes the first sales conversation: only the sales queue
    // moves up.
    let fx = connect(&mut state, &config, profile("a_sales", 1, &["sales"]), 2);
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_sales"));
    assert!(fx.contains(&SiteEffect::QueuePositions(vec![
        ("c_support_1".into(), 1),
        ("c_support_2".into(), 2),
        ("c_sales_2".into(), 1),
    ])));
}

#[test]
fn a_miss_is_counted_once_per_assignment() {
    let config = RoutingConfig {
        answer_timeout_ms: 1_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 0);
    let mut misses = 0;
    for t in 1..=5 {
        let fx = state.handle(&config, SiteInput::Tick, t * 1_000).unwrap();
        misses += fx
            .iter()
            .filter(|e| matches!(e, SiteEffect::Missed { .. }))
            .count();
    }
    assert_eq!(misses, 1, "nobody else is free: it stays, counted once");
    assert_eq!(state.agents["a_1"].missed, 1);
    // Its clock restarted, but a_1 has had it since 0: replies since then answer it.
    let held = &state.assignments["c_1"];
    assert_eq!((held.assigned_at, held.start()), (5_000, 0));
    // A second agent arrives: the next timeout moves it on, without another miss for a_1.
    connect(&mut state, &config, profile("a_2", 10, &[]), 5_500);
    let fx = state.handle(&config, SiteInput::Tick, 6_000).unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_2"));
    assert_eq!(state.agents["a_1"].missed, 1);
    // The new holder's own miss counts.
    let fx = state.handle(&config, SiteInput::Tick, 7_000).unwrap();
    assert!(fx.contains(&SiteEffect::Missed {
        conversation: "c_1".into(),
        agent: "a_2".into()
    }));
}

proptest! {
    /// With reloads (a clean close and a reconnect within the grace), erasures and reopenings in
    /// the mix: capacity holds, every open conversation is in exactly one place, and erased or
    /// closed ones are nowhere.
    #[test]
    fn reloads_erasures_and_reopenings_lose_nothing(ops in prop::collection::vec((0u8..9, 0usize..6), 1..200)) {
        let config = RoutingConfig {
            answer_timeout_ms: 50,
            heartbeat_timeout_ms: 80,
            reconnect_grace_ms: 30,
            ..RoutingConfig::default()
        };
        let mut state = SiteState::default();
        let mut open: BTreeSet<String> = BTreeSet::new();
        let mut closed: BTreeSet<String> = BTreeSet::new();
        let mut now = 0;
        for (i, (op, pick)) in ops.iter().enumerate() {
            now += 10;
            let agent = format!("a_{}", pick % 3);
            let nth = |set: &BTreeSet<String>| set.iter().nth(pick % set.len().max(1)).cloned();
            let input = match op {
                0 | 1 => {
                    let c = format!("c_{i}");
                    open.insert(c.clone());
                    SiteInput::NewConversation { conversation: c, context: RoutingContext::default() }
                }
                2 => SiteInput::DeviceConnected { agent: profile(&agent, 2, &[]), device: format!("d{}", i % 2) },
                3 => SiteInput::Heartbeat { agent, device: format!("d{}", i % 2) },
                4 => match nth(&open) {
                    Some(c) => { open.remove(&c); closed.insert(c.clone()); SiteInput::Closed { conversation: c } }
                    None => SiteInput::Tick,
                },
                5 => match nth(&closed) {
                    Some(c) => { closed.remove(&c); open.insert(c.clone()); SiteInput::Reopened { conversation: c, by_agent: None } }
                    None => SiteInput::Tick,
                },
                6 => match nth(&open) {
                    Some(c) => { open.remove(&c); SiteInput::Erased { conversations: vec![c] } }
                    None => SiteInput::Tick,
                },
                7 => SiteInput::Tick,
                _ => SiteInput::DeviceDisconnected { agent, device: format!("d{}", i % 2) },
            };
            let _ = state.handle(&config, input, now);
            for a in state.agents.values() {
                prop_assert!(a.active.len() as u32 <= a.profile.capacity);
                for c in &a.active {
                    prop_assert_eq!(state.assignments.get(c).map(|x| x.agent.as_str()), Some(a.profile.id.as_str()));
                }
            }
            for c in &open {
                let assigned = state.assignments.contains_key(c);
                let queued = state.position(c).is_some();
                prop_assert!(assigned ^ queued, "{c} assigned={assigned} queued={queued}");
            }
            for c in state.assignments.keys().chain(state.queue.iter().map(|w| &w.conversation)) {
                prop_assert!(open.contains(c), "{c} is not open but routing still holds it");
            }
            if !state.queue.is_empty() {
                prop_assert!(!state.agents.values().any(|a| a.is_available() && a.has_room()));
            }
        }
    }
}

#[test]
fn the_first_answer_and_a_conversation_leaving_its_agent_tell_the_consoles() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 3, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 0);
    let reply = |state: &mut SiteState, agent: &str| {
        state
            .handle(
                &config,
                SiteInput::AgentReplied {
                    conversation: "c_1".into(),
                    agent: agent.into(),
                },
                100,
            )
            .unwrap()
    };
    // Someone else's message, then the first answer, then a later one.
    assert!(reply(&mut state, "a_2").is_empty());
    assert_eq!(reply(&mut state, "a_1"), vec![SiteEffect::InboxChanged]);
    assert!(reply(&mut state, "a_1").is_empty());
    let closed = state
        .handle(
            &config,
            SiteInput::Closed {
                conversation: "c_1".into(),
            },
            200,
        )
        .unwrap();
    assert_eq!(closed, vec![SiteEffect::InboxChanged]);
}

/// News told again (a conversation re-sends its last close or reopen until routing confirms
/// it; see the Worker's `resend_routing_news`) changes nothing the first telling did not.
#[test]
fn news_told_again_changes_nothing() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 2, &[]), 0);
    connect(&mut state, &config, profile("a_2", 2, &[]), 0);
    for c in ["c_1", "c_2"] {
        new_conversation(&mut state, &config, c, 1);
    }
    let holder = |state: &SiteState, c: &str| state.assignments.get(c).map(|a| a.agent.clone());
    let closed = |c: &str| SiteInput::Closed {
        conversation: c.into(),
    };

    // A close told twice: the second finds nothing to release.
    state.handle(&config, closed("c_1"), 2).unwrap();
    let after_first = state.clone();
    let fx = state.handle(&config, closed("c_1"), 3).unwrap();
    assert!(assigned_to(&fx).is_none());
    assert_eq!(state, after_first);

    // A reopen by the agent who then handed the conversation on, told again as the system's
    // news: whoever has it now keeps it.
    let reopened_by_a1 = SiteInput::Reopened {
        conversation: "c_1".into(),
        by_agent: Some(profile("a_1", 2, &[])),
    };
    state.handle(&config, reopened_by_a1, 4).unwrap();
    assert_eq!(holder(&state, "c_1").as_deref(), Some("a_1"));
    state
        .handle(
            &config,
            SiteInput::Transfer {
                conversation: "c_1".into(),
                by: "a_1".into(),
                to: TransferTarget::Agent { id: "a_2".into() },
            },
            5,
        )
        .unwrap();
    assert_eq!(holder(&state, "c_1").as_deref(), Some("a_2"));
    let before = state.clone();
    let fx = state
        .handle(
            &config,
            SiteInput::Reopened {
                conversation: "c_1".into(),
                by_agent: None,
            },
            6,
        )
        .unwrap();
    // Nobody else gets it; the conversation is only asked to confirm who has it (it may have
    // been told while it was closed, which it does not record).
    assert!(assigned_to(&fx).is_none());
    assert_eq!(retells(&fx), vec![("c_1".into(), "a_2".into())]);
    assert_eq!(holder(&state, "c_1").as_deref(), Some("a_2"));
    assert_eq!(state.agents, before.agents);
    assert_eq!(state.queue, before.queue);
}

fn retells(fx: &[SiteEffect]) -> Vec<(String, String)> {
    fx.iter()
        .filter_map(|e| match e {
            SiteEffect::Retell {
                conversation,
                agent,
                ..
            } => Some((conversation.clone(), agent.clone())),
            _ => None,
        })
        .collect()
}

/// When c_1's current assignment started: what a telling's result names.
fn since(state: &SiteState) -> i64 {
    state.assignments.get("c_1").map_or(0, |a| a.start())
}

fn untold(state: &mut SiteState, config: &RoutingConfig, agent: &str, now: i64) {
    let since = since(state);
    let fx = state
        .handle(
            config,
            SiteInput::AssignmentUntold {
                conversation: "c_1".into(),
                agent: agent.into(),
                since,
            },
            now,
        )
        .unwrap();
    assert!(
        fx.is_empty(),
        "marking an assignment untold does nothing by itself"
    );
}

#[test]
fn an_assignment_that_did_not_reach_its_conversation_is_told_again_until_it_does() {
    let config = RoutingConfig {
        answer_timeout_ms: 1_000_000,
        heartbeat_timeout_ms: 10_000_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    assert_eq!(
        assigned_to(&new_conversation(&mut state, &config, "c_1", 0)).as_deref(),
        Some("a_1")
    );
    untold(&mut state, &config, "a_1", 100);
    assert_eq!(
        state.next_deadline(&config, 100),
        Some(100 + RETELL_FIRST_MS)
    );
    assert!(retells(&state.handle(&config, SiteInput::Tick, 2_099).unwrap()).is_empty());
    let fx = state.handle(&config, SiteInput::Tick, 2_100).unwrap();
    assert_eq!(retells(&fx), vec![("c_1".into(), "a_1".into())]);
    assert!(
        assigned_to(&fx).is_none(),
        "only the conversation is told again, not the consoles"
    );
    match &fx[0] {
        SiteEffect::Retell { agent_name, .. } => assert_eq!(agent_name, "Agent a_1"),
        other => panic!("unexpected {other:?}"),
    }
    // Its result never came back (the site's object restarted): it is tried again anyway.
    let planned = state.next_deadline(&config, 2_100).unwrap();
    assert_eq!(planned, 2_100 + retell_delay(2));
    // It failed again: the wait doubles.
    untold(&mut state, &config, "a_1", 2_200);
    assert_eq!(state.assignments["c_1"].untold.unwrap().failures, 2);
    assert_eq!(state.next_deadline(&config, 2_200), Some(2_200 + 4_000));
    // Now it reached the conversation: nothing more to tell, the next deadline is the answer
    // clock's again.
    let fx = state
        .handle(
            &config,
            SiteInput::AssignmentTold {
                conversation: "c_1".into(),
                agent: "a_1".into(),
                since: since(&state),
            },
            6_300,
        )
        .unwrap();
    assert!(fx.is_empty());
    assert_eq!(state.assignments["c_1"].untold, None);
    assert_eq!(state.next_deadline(&config, 6_300), Some(1_000_000));
    assert!(retells(&state.handle(&config, SiteInput::Tick, 100_000).unwrap()).is_empty());
}

#[test]
fn only_the_assignment_that_stands_is_told_again() {
    let config = RoutingConfig {
        answer_timeout_ms: 1_000,
        heartbeat_timeout_ms: 10_000_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    connect(&mut state, &config, profile("a_2", 10, &[]), 0);
    let first = assigned_to(&new_conversation(&mut state, &config, "c_1", 0)).unwrap();
    let other = if first == "a_1" { "a_2" } else { "a_1" };
    // News of another agent's telling (an older assignment) changes nothing.
    untold(&mut state, &config, other, 10);
    assert_eq!(state.assignments["c_1"].untold, None);
    untold(&mut state, &config, &first, 10);
    assert!(state.assignments["c_1"].untold.is_some());
    // The answer clock runs out first: the conversation moves on, and the new assignment is
    // told as a new one; the old one is not told again.
    let fx = state.handle(&config, SiteInput::Tick, 1_000).unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some(other));
    assert!(retells(&fx).is_empty());
    assert_eq!(state.assignments["c_1"].untold, None);
    assert!(retells(&state.handle(&config, SiteInput::Tick, 1_900).unwrap()).is_empty());
    // A stale confirmation of the old one does not clear a failure of the new one.
    untold(&mut state, &config, other, 1_100);
    state
        .handle(
            &config,
            SiteInput::AssignmentTold {
                conversation: "c_1".into(),
                agent: first.clone(),
                since: 0,
            },
            1_200,
        )
        .unwrap();
    assert!(state.assignments["c_1"].untold.is_some());
    // A closed conversation is told nothing more.
    state
        .handle(
            &config,
            SiteInput::Closed {
                conversation: "c_1".into(),
            },
            1_300,
        )
        .unwrap();
    assert!(retells(&state.handle(&config, SiteInput::Tick, 60_000).unwrap()).is_empty());
}

#[test]
fn retelling_waits_longer_after_each_failure_up_to_five_minutes() {
    assert_eq!(retell_delay(1), 2_000);
    assert_eq!(retell_delay(2), 4_000);
    assert_eq!(retell_delay(5), 32_000);
    assert_eq!(retell_delay(8), 256_000);
    assert_eq!(retell_delay(9), RETELL_MAX_MS);
    assert_eq!(RETELL_MAX_MS, 300_000);
    assert_eq!(retell_delay(u32::MAX), RETELL_MAX_MS);
}

#[test]
fn a_telling_result_is_about_the_assignment_it_names_not_a_later_one_to_the_same_agent() {
    let config = RoutingConfig {
        answer_timeout_ms: 1_000_000,
        heartbeat_timeout_ms: 10_000_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    new_conversation(&mut state, &config, "c_1", 0);
    let current = since(&state);
    let result = |untold: bool, since: i64| {
        let (conversation, agent) = ("c_1".to_string(), "a_1".to_string());
        if untold {
            SiteInput::AssignmentUntold {
                conversation,
                agent,
                since,
            }
        } else {
            SiteInput::AssignmentTold {
                conversation,
                agent,
                since,
            }
        }
    };
    // A failure of an earlier assignment to the same agent is not this one's.
    state
        .handle(&config, result(true, current - 7), 10)
        .unwrap();
    assert_eq!(state.assignments["c_1"].untold, None);
    state.handle(&config, result(true, current), 20).unwrap();
    assert!(state.assignments["c_1"].untold.is_some());
    // Nor does the confirmation of an earlier one clear this one's failure.
    state
        .handle(&config, result(false, current - 7), 30)
        .unwrap();
    assert!(state.assignments["c_1"].untold.is_some());
    state.handle(&config, result(false, current), 40).unwrap();
    assert_eq!(state.assignments["c_1"].untold, None);
}

#[test]
fn a_state_stored_before_untold_assignments_were_kept_still_reads() {
    let stored = r#"{"agents":{},"queue":[],"assignments":{"c_1":{"agent":"a_1",
        "department":null,"assigned_at":5,"answered":false,"missed":false,"since":5}},
        "round_robin_last":null}"#;
    let state: SiteState = parley_core::json::from_str(stored).unwrap();
    assert_eq!(state.assignments["c_1"].untold, None);
    // And an assignment with nothing untold is written as before.
    let written = serde_json::to_string(&state).unwrap();
    assert!(!written.contains("untold"), "{written}");
}

fn assigned_by_agent(agent: &str, at: i64) -> SiteInput {
    SiteInput::AssignedByAgent {
        conversation: "c_1".into(),
        agent: profile(agent, 10, &[]),
        at,
    }
}

/// Routing assigned c_1 to a_1 at 0 and could not tell the conversation (a retelling is due);
/// then a_2 took it themselves in the conversation, through the API, at 500.
fn untold_then_taken_by_another_agent() -> (RoutingConfig, SiteState) {
    let config = RoutingConfig {
        answer_timeout_ms: 1_000_000,
        heartbeat_timeout_ms: 10_000_000,
        ..RoutingConfig::default()
    };
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    assert_eq!(
        assigned_to(&new_conversation(&mut state, &config, "c_1", 0)).as_deref(),
        Some("a_1")
    );
    connect(&mut state, &config, profile("a_2", 10, &[]), 0);
    untold(&mut state, &config, "a_1", 100);
    (config, state)
}

#[test]
fn an_agents_own_assignment_stands_over_routings_earlier_one_and_its_retelling_is_dropped() {
    let (config, mut state) = untold_then_taken_by_another_agent();
    let fx = state
        .handle(&config, assigned_by_agent("a_2", 500), 600)
        .unwrap();
    // Taken as a_2's claim: the consoles hear of it, and the conversation is told (it has a_2
    // already, so that records nothing there).
    match fx.as_slice() {
        [SiteEffect::Assigned {
            agent,
            previous,
            reason,
            ..
        }] => {
            assert_eq!(agent, "a_2");
            assert_eq!(previous.as_deref(), Some("a_1"));
            assert_eq!(*reason, AssignReason::Claimed);
        }
        other => panic!("unexpected {other:?}"),
    }
    let a = &state.assignments["c_1"];
    assert_eq!(
        (a.agent.as_str(), a.untold, a.answered),
        ("a_2", None, true)
    );
    assert!(
        !state.agents["a_1"].active.contains("c_1"),
        "a_1's seat is free"
    );
    assert!(state.agents["a_2"].active.contains("c_1"));
    // a_1's assignment is no longer told to anyone.
    assert!(retells(&state.handle(&config, SiteInput::Tick, 10_000).unwrap()).is_empty());
    assert!(retells(&state.handle(&config, SiteInput::Tick, 400_000).unwrap()).is_empty());
    // The same news told again changes nothing.
    let before = state.clone();
    assert!(state
        .handle(&config, assigned_by_agent("a_2", 500), 500_000)
        .unwrap()
        .is_empty());
    assert_eq!(state, before);
}

#[test]
fn what_routing_decided_after_an_agents_own_assignment_stands() {
    let (config, mut state) = untold_then_taken_by_another_agent();
    // a_2 took it at 500, but routing heard only after a_1 handed it to a_2 and a_2 handed it
    // back to a_1 (at 700 and 800, with the consoles): the news is older than both.
    for (by, to, at) in [("a_1", "a_2", 700), ("a_2", "a_1", 800)] {
        state
            .handle(
                &config,
                SiteInput::Transfer {
                    conversation: "c_1".into(),
                    by: by.into(),
                    to: TransferTarget::Agent { id: to.into() },
                },
                at,
            )
            .unwrap();
    }
    let before = state.clone();
    assert!(state
        .handle(&config, assigned_by_agent("a_2", 500), 900)
        .unwrap()
        .is_empty());
    assert_eq!(state, before);
    // One made at the very time routing's assignment started does not: a tie goes to routing,
    // as in the conversation, which records routing's telling then.
    assert!(state
        .handle(&config, assigned_by_agent("a_2", 800), 950)
        .unwrap()
        .is_empty());
    assert_eq!(state, before);
    // One made after it stands over it.
    let fx = state
        .handle(&config, assigned_by_agent("a_2", 801), 950)
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_2"));
}

#[test]
fn an_agent_taking_the_conversation_routing_gave_them_settles_its_telling() {
    let (config, mut state) = untold_then_taken_by_another_agent();
    assert!(state.assignments["c_1"].untold.is_some());
    let fx = state
        .handle(&config, assigned_by_agent("a_1", 500), 600)
        .unwrap();
    assert_eq!(assigned_to(&fx), None, "nothing moves: {fx:?}");
    let a = &state.assignments["c_1"];
    assert_eq!((a.agent.as_str(), a.untold), ("a_1", None));
    // Taking it is their claim: no answer clock hands it on if they are slow to reply.
    assert!(a.answered);
    // Past the answer timeout (1,000 s), before any device is given up for silent.
    let later = state.handle(&config, SiteInput::Tick, 2_000_000).unwrap();
    assert!(retells(&later).is_empty());
    assert_eq!(assigned_to(&later), None, "{later:?}");
    assert_eq!(state.assignments["c_1"].agent, "a_1");
}

#[test]
fn an_agent_taking_a_waiting_conversation_takes_it_out_of_the_queue() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    // Nobody online: c_1 and c_2 wait.
    new_conversation(&mut state, &config, "c_1", 10);
    new_conversation(&mut state, &config, "c_2", 20);
    // News of a choice made before c_1 was queued is about an earlier time of it.
    assert!(state
        .handle(&config, assigned_by_agent("a_1", 5), 30)
        .unwrap()
        .is_empty());
    assert_eq!(state.position("c_1"), Some(1));
    let fx = state
        .handle(&config, assigned_by_agent("a_1", 40), 50)
        .unwrap();
    assert_eq!(assigned_to(&fx).as_deref(), Some("a_1"));
    assert_eq!(state.position("c_1"), None);
    // c_2 moves up.
    assert!(fx.contains(&SiteEffect::QueuePositions(vec![("c_2".into(), 1)])));
    assert!(state.agents["a_1"].active.contains("c_1"));
}

#[test]
fn an_agent_taking_a_conversation_routing_does_not_hold_changes_nothing() {
    let config = RoutingConfig::default();
    let mut state = SiteState::default();
    connect(&mut state, &config, profile("a_1", 10, &[]), 0);
    let before = state.clone();
    // Closed, or held by a bot: it stays out of routing (and out of the agent's seats).
    assert!(state
        .handle(&config, assigned_by_agent("a_1", 5), 10)
        .unwrap()
        .is_empty());
    assert_eq!(state, before);
}
