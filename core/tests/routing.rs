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
