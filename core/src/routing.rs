//! The site's routing state machine: agents' presence and status, the waiting queue,
//! assignment (round-robin or least-loaded, by department and capacity), claims, transfers,
//! reassignment of unanswered conversations and expiry of vanished devices.
//!
//! Pure: the Site Durable Object feeds it inputs with the time and executes its effects.
//! The object is the single writer of its site, so a claim race has exactly one winner.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::hours::BusinessHours;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Away,
    Busy,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    RoundRobin,
    LeastLoaded,
}

/// What happens to an agent's open conversations when their last device goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OfflineBehavior {
    #[default]
    Requeue,
    Keep,
}

crate::tagged_enum! {
    tag = "when";
    /// Sends matching conversations to a department.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub enum Rule {
        /// The page URL contains this text.
        UrlContains { value: String, department: String },
        /// The visitor's language starts with this tag (`zh`, `en-GB`).
        Language { value: String, department: String },
        /// The visitor's country (ISO 3166-1 alpha-2).
        Country { value: String, department: String },
        /// The widget was embedded with `data-department` of this value.
        Param { value: String, department: String },
    }
}

impl Rule {
    fn department(&self) -> &str {
        match self {
            Rule::UrlContains { department, .. }
            | Rule::Language { department, .. }
            | Rule::Country { department, .. }
            | Rule::Param { department, .. } => department,
        }
    }

    fn matches(&self, ctx: &RoutingContext) -> bool {
        let eq =
            |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
        match self {
            Rule::UrlContains { value, .. } => ctx
                .url
                .as_deref()
                .is_some_and(|u| u.contains(value.as_str())),
            Rule::Language { value, .. } => ctx.language.as_deref().is_some_and(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&value.to_ascii_lowercase())
            }),
            Rule::Country { value, .. } => eq(&ctx.country, value),
            Rule::Param { value, .. } => eq(&ctx.param, value),
        }
    }
}

/// How a site routes; stored with the site, edited by admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingConfig {
    pub policy: Policy,
    /// An assigned agent who has not answered within this time loses the conversation to the
    /// next agent, and it counts as missed for them.
    pub answer_timeout_ms: i64,
    pub offline_behavior: OfflineBehavior,
    /// A device not heard from (heartbeat or any other frame) for this long is gone. Generous
    /// because browsers throttle timers in background tabs (Chrome wakes them once a minute,
    /// Safari about every 40 s), and a console left in a hidden tab is still a working agent.
    pub heartbeat_timeout_ms: i64,
    /// When an agent's last device closes cleanly (a reload, a restart of the browser) their
    /// presence and conversations are held this long, so coming straight back loses nothing.
    pub reconnect_grace_ms: i64,
    /// Checked in order; the first match picks the department.
    pub rules: Vec<Rule>,
    /// Outside these hours new conversations wait (agents may still claim them) and the widget
    /// offers to leave a message.
    pub hours: BusinessHours,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            policy: Policy::RoundRobin,
            answer_timeout_ms: 120_000,
            offline_behavior: OfflineBehavior::Requeue,
            heartbeat_timeout_ms: 180_000,
            reconnect_grace_ms: 15_000,
            rules: Vec::new(),
            hours: BusinessHours::default(),
        }
    }
}

/// What is known about a new conversation when it is routed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingContext {
    pub url: Option<String>,
    pub language: Option<String>,
    pub country: Option<String>,
    pub param: Option<String>,
}

/// How many conversations' departments a site remembers (for hand-offs and reopenings); the
/// oldest are forgotten first, since the whole routing state is stored as one value.
pub const REMEMBERED_DEPARTMENTS: usize = 2_000;

/// An agent as the team configured them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentProfile {
    pub id: String,
    pub name: String,
    pub departments: BTreeSet<String>,
    /// Open conversations at once, counted per site: each site's object routes on its own, so
    /// an agent of a team with two sites may hold this many on each.
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub profile: AgentProfile,
    /// The status the agent chose.
    pub status: AgentStatus,
    /// Connected console devices and when each was last heard from.
    pub devices: BTreeMap<String, i64>,
    /// Open conversations assigned to this agent.
    pub active: BTreeSet<String>,
    pub last_assigned_at: i64,
    pub missed: u32,
    /// When the last device closed cleanly: presence and conversations are held until
    /// `departed_at + reconnect_grace_ms`, and a device connecting before then keeps them.
    #[serde(default)]
    pub departed_at: Option<i64>,
}

impl AgentState {
    fn new(profile: AgentProfile) -> AgentState {
        AgentState {
            profile,
            status: AgentStatus::Online,
            devices: BTreeMap::new(),
            active: BTreeSet::new(),
            last_assigned_at: 0,
            missed: 0,
            departed_at: None,
        }
    }

    /// Reachable and willing: chose `online` and has a live device. An agent within the
    /// reconnect grace keeps what they have but gets nothing new until a device is back.
    pub fn is_available(&self) -> bool {
        self.status == AgentStatus::Online && !self.devices.is_empty()
    }

    pub fn presence(&self) -> AgentStatus {
        if self.devices.is_empty() && self.departed_at.is_none() {
            AgentStatus::Offline
        } else {
            self.status
        }
    }

    /// Has fewer open conversations than their capacity.
    pub fn has_room(&self) -> bool {
        (self.active.len() as u32) < self.profile.capacity
    }

    fn serves(&self, department: Option<&str>) -> bool {
        department.is_none_or(|d| self.profile.departments.contains(d))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub conversation: String,
    pub department: Option<String>,
    pub since: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub agent: String,
    pub department: Option<String>,
    pub assigned_at: i64,
    pub answered: bool,
    /// The holder already had a miss counted for it: with nobody else free it stays with them,
    /// and further timeouts of the same assignment are not counted again.
    #[serde(default)]
    pub missed: bool,
    /// When the agent got it: `assigned_at` restarts with the clock, this does not. Replies
    /// since then answer the assignment. None in states stored before it was kept.
    #[serde(default)]
    pub since: Option<i64>,
    /// The conversation has not confirmed that it was told of this assignment (the request
    /// failed): it is told again until it confirms, while the assignment stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untold: Option<Untold>,
}

/// An assignment the conversation has not confirmed: how often telling it failed, and when
/// to tell it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Untold {
    pub failures: u32,
    pub retry_at: i64,
}

/// The first wait before an assignment that did not reach its conversation is told again;
/// it doubles with each failure, up to [`RETELL_MAX_MS`]: a conversation that stays
/// unreachable is asked every few minutes, not every minute for as long as it is assigned.
pub const RETELL_FIRST_MS: i64 = 2_000;
pub const RETELL_MAX_MS: i64 = 300_000;

/// The wait before telling a conversation again after `failures` failed attempts.
pub fn retell_delay(failures: u32) -> i64 {
    crate::backoff::doubling(RETELL_FIRST_MS, RETELL_MAX_MS, failures)
}

impl Assignment {
    /// When the agent got the conversation, as far as is known.
    pub fn start(&self) -> i64 {
        self.since.unwrap_or(self.assigned_at)
    }
}

/// The department a conversation was routed to, kept for its hand-off and reopening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub department: String,
    pub at: i64,
}

/// The whole routing state of a site; serialisable, so the object can store it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteState {
    pub agents: BTreeMap<String, AgentState>,
    pub queue: Vec<Waiting>,
    pub assignments: BTreeMap<String, Assignment>,
    /// The agent most recently picked by round-robin.
    pub round_robin_last: Option<String>,
    /// Each conversation's department when it was last routed to one (at most
    /// [`REMEMBERED_DEPARTMENTS`]): a bot's hand-off or a reopening comes without the visitor's
    /// context and is routed to the same department.
    #[serde(default)]
    pub departments: BTreeMap<String, Remembered>,
}

crate::tagged_enum! {
    tag = "kind";
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub enum TransferTarget {
        Agent { id: String },
        Department { name: String },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteInput {
    /// A console device connected (or reconnected).
    DeviceConnected {
        agent: AgentProfile,
        device: String,
    },
    /// The device was heard from: a heartbeat or any other frame.
    Heartbeat {
        agent: String,
        device: String,
    },
    DeviceDisconnected {
        agent: String,
        device: String,
    },
    SetStatus {
        agent: String,
        status: AgentStatus,
    },
    /// A conversation that needs a person: new, or handed over by a bot. When the rules pick
    /// no department from `context` (a hand-off comes without one), the department it was
    /// last routed to is used.
    NewConversation {
        conversation: String,
        context: RoutingContext,
    },
    /// A closed conversation was reopened: by an agent (who carries on with it, as a claim), or
    /// by the visitor or the system (routed again, to the department it had).
    Reopened {
        conversation: String,
        by_agent: Option<AgentProfile>,
    },
    /// An agent wrote in the conversation.
    AgentReplied {
        conversation: String,
        agent: String,
    },
    /// An agent takes a waiting (or someone else's unanswered) conversation, or an open one
    /// routing never saw (the caller checked that it is open).
    Claim {
        conversation: String,
        agent: AgentProfile,
    },
    Transfer {
        conversation: String,
        by: String,
        to: TransferTarget,
    },
    /// An agent took the conversation in the conversation itself (the API's `assign`) at
    /// `at`; routing hears of it afterwards. A person's explicit choice stands over what
    /// routing decided before it (an assignment, told to the conversation or not, or its place
    /// in the queue): it is taken as the agent's claim, and an assignment still to be told
    /// is not told. What routing decided after it (a transfer, a claim) stands. A conversation
    /// routing holds nowhere (closed, with a bot) stays out of routing, as before.
    AssignedByAgent {
        conversation: String,
        agent: AgentProfile,
        at: i64,
    },
    Closed {
        conversation: String,
    },
    /// These conversations no longer exist (erased): they leave their agents, the queue and
    /// memory together, so the seats and places they free are handed on once.
    Erased {
        conversations: Vec<String>,
    },
    /// Telling the conversation of its assignment to `agent` failed (it could not be reached
    /// or did not answer): it is told again later, while the assignment stands.
    /// `since` is the assignment's [`Assignment::start`]: the result is about that assignment,
    /// not a later one to the same agent.
    AssignmentUntold {
        conversation: String,
        agent: String,
        since: i64,
    },
    /// The conversation confirmed its assignment to `agent` after it had been told again.
    AssignmentTold {
        conversation: String,
        agent: String,
        since: i64,
    },
    /// Time passed: expire silent devices, reassign unanswered conversations, tell
    /// conversations again of assignments they did not confirm.
    Tick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignReason {
    Routed,
    Claimed,
    Transferred,
    /// The previous agent did not answer in time.
    Timeout,
    /// The previous agent went offline.
    AgentOffline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteEffect {
    /// Record in the conversation that `agent` now handles it.
    Assigned {
        conversation: String,
        agent: String,
        agent_name: String,
        previous: Option<String>,
        reason: AssignReason,
    },
    /// The conversation waits; `position` is 1-based, among those of its department.
    Queued {
        conversation: String,
        position: usize,
    },
    /// Positions in the queue changed (after someone left it); per department.
    QueuePositions(Vec<(String, usize)>),
    /// The agent did not answer in time.
    Missed { conversation: String, agent: String },
    /// An agent's presence as others see it changed.
    Presence { agent: String, status: AgentStatus },
    /// Nothing to carry out, but what the consoles show changed: an answer stopped the clock,
    /// or a conversation left its agent.
    InboxChanged,
    /// Tell the conversation again that `agent` handles it: the last telling failed. Only the
    /// conversation is told (the consoles and the reports heard of it with `Assigned`); its
    /// result comes back as `AssignmentTold` or `AssignmentUntold`.
    Retell {
        conversation: String,
        agent: String,
        agent_name: String,
        /// The assignment's [`Assignment::start`], given back with the result.
        since: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingError {
    /// Somebody else already has it (the loser of a claim race).
    AlreadyAssigned,
    UnknownConversation,
    UnknownAgent,
    /// The target agent cannot take it (offline or full).
    Unavailable,
    /// The stored state could not be read: nothing is decided on an empty one, which would
    /// then be saved over the real one.
    StateUnreadable,
}

impl RoutingError {
    pub fn code(self) -> crate::ErrorCode {
        match self {
            RoutingError::AlreadyAssigned => crate::ErrorCode::AlreadyAssigned,
            RoutingError::UnknownConversation | RoutingError::UnknownAgent => {
                crate::ErrorCode::NotFound
            }
            RoutingError::Unavailable => crate::ErrorCode::AgentUnavailable,
            RoutingError::StateUnreadable => crate::ErrorCode::StorageUnavailable,
        }
    }
}

impl SiteState {
    /// Assignments still unanswered when their answer time has run out: the next tick hands
    /// them on (the site first asks their conversations whether an answer's news was lost).
    pub fn overdue<'a>(
        &'a self,
        config: &'a RoutingConfig,
        now: i64,
    ) -> impl Iterator<Item = (&'a String, &'a Assignment)> + 'a {
        self.assignments
            .iter()
            .filter(move |(_, a)| !a.answered && now - a.assigned_at >= config.answer_timeout_ms)
    }

    /// The department a conversation belongs to under the site's rules.
    pub fn department_for(config: &RoutingConfig, ctx: &RoutingContext) -> Option<String> {
        config
            .rules
            .iter()
            .find(|r| r.matches(ctx))
            .map(|r| r.department().to_string())
    }

    /// 1-based place of a conversation in the queue, among the conversations waiting for the
    /// same department (they are served by the same agents; the others do not hold it up).
    pub fn position(&self, conversation: &str) -> Option<usize> {
        let index = self.queue_index(conversation)?;
        let department = &self.queue[index].department;
        Some(
            self.queue[..index]
                .iter()
                .filter(|w| &w.department == department)
                .count()
                + 1,
        )
    }

    /// Every waiting conversation with its place (as [`SiteState::position`]), in queue order.
    pub fn positions(&self) -> Vec<(String, usize)> {
        let mut seen: BTreeMap<Option<&str>, usize> = BTreeMap::new();
        self.queue
            .iter()
            .map(|w| {
                let place = seen.entry(w.department.as_deref()).or_insert(0);
                *place += 1;
                (w.conversation.clone(), *place)
            })
            .collect()
    }

    fn queue_index(&self, conversation: &str) -> Option<usize> {
        self.queue
            .iter()
            .position(|w| w.conversation == conversation)
    }

    /// The department a conversation was last routed to, if any.
    pub fn remembered_department(&self, conversation: &str) -> Option<&str> {
        self.departments
            .get(conversation)
            .map(|r| r.department.as_str())
    }

    fn remember(&mut self, conversation: &str, department: &str, now: i64) {
        self.departments.insert(
            conversation.to_string(),
            Remembered {
                department: department.to_string(),
                at: now,
            },
        );
        while self.departments.len() > REMEMBERED_DEPARTMENTS {
            let oldest = self
                .departments
                .iter()
                .min_by_key(|(id, r)| (r.at, id.as_str()))
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.departments.remove(&id),
                None => break,
            };
        }
    }

    /// The earliest time a `Tick` has work to do.
    pub fn next_deadline(&self, config: &RoutingConfig, now: i64) -> Option<i64> {
        let devices = self
            .agents
            .values()
            .flat_map(|a| a.devices.values())
            .map(|seen| seen + config.heartbeat_timeout_ms);
        let departures = self
            .agents
            .values()
            .filter_map(|a| a.departed_at)
            .map(|at| at + config.reconnect_grace_ms);
        let answers = self
            .assignments
            .values()
            .filter(|a| !a.answered)
            .map(|a| a.assigned_at + config.answer_timeout_ms);
        let retells = self
            .assignments
            .values()
            .filter_map(|a| a.untold.map(|u| u.retry_at));
        // At opening time the waiting queue is handed out.
        let opening = (!self.queue.is_empty())
            .then(|| config.hours.next_change(now))
            .flatten();
        devices
            .chain(departures)
            .chain(answers)
            .chain(retells)
            .chain(opening)
            .min()
    }

    pub fn handle(
        &mut self,
        config: &RoutingConfig,
        input: SiteInput,
        now: i64,
    ) -> Result<Vec<SiteEffect>, RoutingError> {
        let mut fx = Vec::new();
        match input {
            SiteInput::DeviceConnected { agent, device } => {
                let id = agent.id.clone();
                let entry = self
                    .agents
                    .entry(id.clone())
                    .or_insert_with(|| AgentState::new(agent.clone()));
                entry.profile = agent;
                let before = entry.presence();
                entry.devices.insert(device, now);
                // Back within the grace (a reload): everything they had is still theirs.
                entry.departed_at = None;
                self.presence_changed(&id, before, &mut fx);
                self.drain_queue(config, now, &mut fx);
            }
            SiteInput::Heartbeat { agent, device } => {
                let Some(a) = self.agents.get_mut(&agent) else {
                    return Ok(fx);
                };
                // A device given up for silent comes back with its next heartbeat.
                let before = a.presence();
                let returning = a.devices.insert(device, now).is_none();
                a.departed_at = None;
                if returning {
                    self.presence_changed(&agent, before, &mut fx);
                    self.drain_queue(config, now, &mut fx);
                }
            }
            SiteInput::DeviceDisconnected { agent, device } => {
                let Some(a) = self.agents.get_mut(&agent) else {
                    return Ok(fx);
                };
                let before = a.presence();
                if a.devices.remove(&device).is_none() {
                    return Ok(fx);
                }
                if a.devices.is_empty() && config.reconnect_grace_ms > 0 {
                    // A clean close of the last device is most often a reload: hold on until
                    // the grace runs out (Tick), so nothing moves if they come straight back.
                    a.departed_at = Some(now);
                    return Ok(fx);
                }
                self.after_presence_loss(config, &agent, before, now, &mut fx);
            }
            SiteInput::SetStatus { agent, status } => {
                let a = self
                    .agents
                    .get_mut(&agent)
                    .ok_or(RoutingError::UnknownAgent)?;
                let before = a.presence();
                a.status = status;
                if status == AgentStatus::Offline {
                    self.after_presence_loss(config, &agent, before, now, &mut fx);
                } else {
                    self.presence_changed(&agent, before, &mut fx);
                    self.drain_queue(config, now, &mut fx);
                }
            }
            SiteInput::NewConversation {
                conversation,
                context,
            } => {
                let department = Self::department_for(config, &context).or_else(|| {
                    self.remembered_department(&conversation)
                        .map(str::to_string)
                });
                self.route_unplaced(config, conversation, department, now, &mut fx);
            }
            SiteInput::Reopened {
                conversation,
                by_agent,
            } => {
                let department = self
                    .remembered_department(&conversation)
                    .map(str::to_string);
                match by_agent {
                    Some(agent) => {
                        if self
                            .assignments
                            .get(&conversation)
                            .is_some_and(|a| a.agent == agent.id)
                        {
                            return Ok(fx);
                        }
                        // The agent who reopened it carries on with it, wherever it was.
                        self.hand_to(&conversation, &agent, department, now, &mut fx);
                    }
                    None if self.assignments.contains_key(&conversation) => {
                        self.confirm_assignment(&conversation, now, &mut fx);
                    }
                    None => self.route_unplaced(config, conversation, department, now, &mut fx),
                }
            }
            SiteInput::AgentReplied {
                conversation,
                agent,
            } => {
                if let Some(a) = self.assignments.get_mut(&conversation) {
                    if a.agent == agent && !a.answered {
                        a.answered = true;
                        fx.push(SiteEffect::InboxChanged);
                    }
                }
            }
            SiteInput::Claim {
                conversation,
                agent,
            } => {
                let queued = self.queue_index(&conversation);
                let current = self.assignments.get(&conversation).cloned();
                // Neither queued nor assigned: an open conversation routing never saw (the site's
                // object was unreachable when it started). The caller checked that it is open.
                match (&queued, &current) {
                    (_, Some(a)) if a.agent == agent.id => {
                        return Err(RoutingError::AlreadyAssigned)
                    }
                    // Taking over is allowed only while the holder has not answered.
                    (_, Some(a)) if a.answered => return Err(RoutingError::AlreadyAssigned),
                    _ => {}
                }
                let department = match (queued, &current) {
                    (Some(i), _) => self.queue[i].department.clone(),
                    (None, Some(a)) => a.department.clone(),
                    (None, None) => self
                        .remembered_department(&conversation)
                        .map(str::to_string),
                };
                self.hand_to(&conversation, &agent, department, now, &mut fx);
            }
            SiteInput::Transfer {
                conversation,
                by,
                to,
            } => {
                let current = self
                    .assignments
                    .get(&conversation)
                    .cloned()
                    .ok_or(RoutingError::UnknownConversation)?;
                if current.agent != by {
                    return Err(RoutingError::AlreadyAssigned);
                }
                match to {
                    TransferTarget::Agent { id } => {
                        let target = self.agents.get(&id).ok_or(RoutingError::UnknownAgent)?;
                        // Offline or full: the conversation stays with the holder.
                        if !target.is_available() || !target.has_room() {
                            return Err(RoutingError::Unavailable);
                        }
                        self.release(&conversation);
                        self.assign(
                            &conversation,
                            &id,
                            current.department,
                            Some(by),
                            AssignReason::Transferred,
                            now,
                            &mut fx,
                        );
                    }
                    TransferTarget::Department { name } => {
                        self.release(&conversation);
                        self.route(
                            config,
                            conversation,
                            Some(name),
                            Some(by),
                            AssignReason::Transferred,
                            now,
                            &mut fx,
                        );
                    }
                }
            }
            SiteInput::AssignedByAgent {
                conversation,
                agent,
                at,
            } => {
                let department = match self.assignments.get(&conversation) {
                    // Routing's own decision, made later or at the same time (a tie goes to
                    // routing, as in the conversation, which records routing's telling then).
                    Some(a) if a.start() >= at => return Ok(fx),
                    Some(a) if a.agent == agent.id => {
                        // The agent routing gave it to took it themselves: the conversation
                        // has them now, and it is their claim (no answer clock runs for it).
                        if let Some(a) = self.assignments.get_mut(&conversation) {
                            a.untold = None;
                            if !a.answered {
                                a.answered = true;
                                fx.push(SiteEffect::InboxChanged);
                            }
                        }
                        return Ok(fx);
                    }
                    Some(a) => a.department.clone(),
                    None => match self.queue_index(&conversation) {
                        Some(i) if self.queue[i].since <= at => self.queue[i].department.clone(),
                        _ => return Ok(fx),
                    },
                };
                self.hand_to(&conversation, &agent, department, now, &mut fx);
            }
            SiteInput::Closed { conversation } => {
                self.leave(&conversation, &mut fx);
                self.drain_queue(config, now, &mut fx);
            }
            SiteInput::Erased { conversations } => {
                for conversation in &conversations {
                    self.leave(conversation, &mut fx);
                    self.departments.remove(conversation);
                }
                self.drain_queue(config, now, &mut fx);
            }
            SiteInput::AssignmentUntold {
                conversation,
                agent,
                since,
            } => {
                if let Some(a) = self.assignments.get_mut(&conversation) {
                    if a.agent == agent && a.start() == since {
                        let failures = a.untold.map_or(0, |u| u.failures) + 1;
                        a.untold = Some(Untold {
                            failures,
                            retry_at: now + retell_delay(failures),
                        });
                    }
                }
            }
            SiteInput::AssignmentTold {
                conversation,
                agent,
                since,
            } => {
                if let Some(a) = self.assignments.get_mut(&conversation) {
                    if a.agent == agent && a.start() == since {
                        a.untold = None;
                    }
                }
            }
            SiteInput::Tick => {
                self.tick(config, now, &mut fx);
                self.drain_queue(config, now, &mut fx);
                // After the new assignments: those are told first, not behind conversations
                // that recently could not be reached.
                self.retell_due(now, &mut fx);
            }
        }
        Ok(fx)
    }

    fn presence_changed(&self, agent: &str, before: AgentStatus, fx: &mut Vec<SiteEffect>) {
        if let Some(a) = self.agents.get(agent) {
            if a.presence() != before {
                fx.push(SiteEffect::Presence {
                    agent: agent.to_string(),
                    status: a.presence(),
                });
            }
        }
    }

    /// After an agent lost a device or went offline: requeue their work if they are now gone.
    fn after_presence_loss(
        &mut self,
        config: &RoutingConfig,
        agent: &str,
        before: AgentStatus,
        now: i64,
        fx: &mut Vec<SiteEffect>,
    ) {
        self.presence_changed(agent, before, fx);
        let Some(a) = self.agents.get(agent) else {
            return;
        };
        // Away or busy with a device left is still there: only a gone agent loses their work.
        if a.presence() != AgentStatus::Offline || config.offline_behavior == OfflineBehavior::Keep
        {
            return;
        }
        let orphaned: Vec<String> = a.active.iter().cloned().collect();
        for conversation in orphaned {
            let department = self
                .assignments
                .get(&conversation)
                .and_then(|x| x.department.clone());
            self.release(&conversation);
            self.route(
                config,
                conversation,
                department,
                Some(agent.to_string()),
                AssignReason::AgentOffline,
                now,
                fx,
            );
        }
    }

    /// Takes a conversation off its agent and out of the queue.
    fn leave(&mut self, conversation: &str, fx: &mut Vec<SiteEffect>) {
        if self.assignments.contains_key(conversation) {
            self.release(conversation);
            fx.push(SiteEffect::InboxChanged);
        }
        if let Some(i) = self.queue_index(conversation) {
            self.queue.remove(i);
            self.announce_positions(fx);
        }
    }

    /// Gives `conversation` to `agent` as a claim: out of the queue and away from whoever held
    /// it (an agent may claim from the API without a console open: they are known from now on).
    /// Those still waiting behind it are told their new places.
    fn hand_to(
        &mut self,
        conversation: &str,
        agent: &AgentProfile,
        department: Option<String>,
        now: i64,
        fx: &mut Vec<SiteEffect>,
    ) {
        let was_queued = match self.queue_index(conversation) {
            Some(i) => {
                self.queue.remove(i);
                true
            }
            None => false,
        };
        let previous = self.assignments.get(conversation).map(|a| a.agent.clone());
        self.release(conversation);
        self.agents
            .entry(agent.id.clone())
            .or_insert_with(|| AgentState::new(agent.clone()));
        self.assign(
            conversation,
            &agent.id,
            department,
            previous,
            AssignReason::Claimed,
            now,
            fx,
        );
        if was_queued {
            self.announce_positions(fx);
        }
    }

    fn release(&mut self, conversation: &str) {
        if let Some(a) = self.assignments.remove(conversation) {
            if let Some(agent) = self.agents.get_mut(&a.agent) {
                agent.active.remove(conversation);
            }
        }
    }

    /// Picks an agent for a department under the policy, skipping `exclude`.
    fn pick(
        &self,
        config: &RoutingConfig,
        department: Option<&str>,
        exclude: Option<&str>,
    ) -> Option<String> {
        let candidates: Vec<&AgentState> = self
            .agents
            .values()
            .filter(|a| a.is_available() && a.has_room() && a.serves(department))
            .filter(|a| Some(a.profile.id.as_str()) != exclude)
            .collect();
        match config.policy {
            Policy::LeastLoaded => candidates
                .iter()
                .min_by_key(|a| (a.active.len(), a.last_assigned_at, a.profile.id.clone()))
                .map(|a| a.profile.id.clone()),
            Policy::RoundRobin => {
                // The next agent after the last one picked, in id order, wrapping around.
                let after = self.round_robin_last.as_deref().unwrap_or("");
                candidates
                    .iter()
                    .find(|a| a.profile.id.as_str() > after)
                    .or_else(|| candidates.first())
                    .map(|a| a.profile.id.clone())
            }
        }
    }

    /// Routes a conversation routing holds nowhere yet (neither assigned nor waiting).
    fn route_unplaced(
        &mut self,
        config: &RoutingConfig,
        conversation: String,
        department: Option<String>,
        now: i64,
        fx: &mut Vec<SiteEffect>,
    ) {
        if self.assignments.contains_key(&conversation) || self.queue_index(&conversation).is_some()
        {
            return;
        }
        self.route(
            config,
            conversation,
            department,
            None,
            AssignReason::Routed,
            now,
            fx,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        config: &RoutingConfig,
        conversation: String,
        department: Option<String>,
        previous: Option<String>,
        reason: AssignReason,
        now: i64,
        fx: &mut Vec<SiteEffect>,
    ) {
        if let Some(d) = &department {
            self.remember(&conversation, d, now);
        }
        // While the team is closed, new work waits for opening time.
        let open = config.hours.is_open(now);
        match self
            .pick(config, department.as_deref(), previous.as_deref())
            .filter(|_| open)
        {
            Some(agent) => {
                self.assign(&conversation, &agent, department, previous, reason, now, fx)
            }
            None => {
                self.queue.push(Waiting {
                    conversation: conversation.clone(),
                    department,
                    since: now,
                });
                let position = self.position(&conversation).unwrap_or(self.queue.len());
                fx.push(SiteEffect::Queued {
                    conversation,
                    position,
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn assign(
        &mut self,
        conversation: &str,
        agent: &str,
        department: Option<String>,
        previous: Option<String>,
        reason: AssignReason,
        now: i64,
        fx: &mut Vec<SiteEffect>,
    ) {
        let Some(a) = self.agents.get_mut(agent) else {
            return;
        };
        a.active.insert(conversation.to_string());
        a.last_assigned_at = now;
        let agent_name = a.profile.name.clone();
        self.round_robin_last = Some(agent.to_string());
        self.assignments.insert(
            conversation.to_string(),
            Assignment {
                agent: agent.to_string(),
                department,
                assigned_at: now,
                // A claimed conversation was taken deliberately; the clock is for routed ones.
                answered: reason == AssignReason::Claimed,
                missed: false,
                since: Some(now),
                untold: None,
            },
        );
        fx.push(SiteEffect::Assigned {
            conversation: conversation.to_string(),
            agent: agent.to_string(),
            agent_name,
            previous,
            reason,
        });
    }

    /// Hands waiting conversations, oldest first, to agents who have room.
    fn drain_queue(&mut self, config: &RoutingConfig, now: i64, fx: &mut Vec<SiteEffect>) {
        if !config.hours.is_open(now) {
            return;
        }
        let mut i = 0;
        let mut moved = false;
        while i < self.queue.len() {
            let waiting = &self.queue[i];
            match self.pick(config, waiting.department.as_deref(), None) {
                Some(agent) => {
                    let w = self.queue.remove(i);
                    self.assign(
                        &w.conversation,
                        &agent,
                        w.department,
                        None,
                        AssignReason::Routed,
                        now,
                        fx,
                    );
                    moved = true;
                }
                None => i += 1,
            }
        }
        if moved {
            self.announce_positions(fx);
        }
    }

    fn announce_positions(&self, fx: &mut Vec<SiteEffect>) {
        if !self.queue.is_empty() {
            fx.push(SiteEffect::QueuePositions(self.positions()));
        }
    }

    fn tick(&mut self, config: &RoutingConfig, now: i64, fx: &mut Vec<SiteEffect>) {
        // Devices that stopped sending heartbeats are gone, even without a close frame.
        let silent: Vec<(String, String)> = self
            .agents
            .iter()
            .flat_map(|(id, a)| {
                a.devices
                    .iter()
                    .filter(|(_, seen)| now - **seen >= config.heartbeat_timeout_ms)
                    .map(move |(device, _)| (id.clone(), device.clone()))
            })
            .collect();
        for (agent, device) in silent {
            if let Some(a) = self.agents.get_mut(&agent) {
                let before = a.presence();
                a.devices.remove(&device);
                self.after_presence_loss(config, &agent, before, now, fx);
            }
        }
        // Agents whose last device closed and who did not come back within the grace are gone.
        let departed: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| {
                a.departed_at
                    .is_some_and(|at| now - at >= config.reconnect_grace_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for agent in departed {
            if let Some(a) = self.agents.get_mut(&agent) {
                let before = a.presence();
                a.departed_at = None;
                self.after_presence_loss(config, &agent, before, now, fx);
            }
        }
        // Unanswered past the limit: offer to the next agent, count a miss for this one.
        let overdue: Vec<(String, Assignment)> = self
            .overdue(config, now)
            .map(|(c, a)| (c.clone(), a.clone()))
            .collect();
        for (conversation, assignment) in overdue {
            // One miss per assignment, however many times its clock runs out.
            if !assignment.missed {
                if let Some(a) = self.agents.get_mut(&assignment.agent) {
                    a.missed += 1;
                }
                fx.push(SiteEffect::Missed {
                    conversation: conversation.clone(),
                    agent: assignment.agent.clone(),
                });
            }
            match self.pick(
                config,
                assignment.department.as_deref(),
                Some(&assignment.agent),
            ) {
                Some(next) => {
                    self.release(&conversation);
                    self.assign(
                        &conversation,
                        &next,
                        assignment.department,
                        Some(assignment.agent),
                        AssignReason::Timeout,
                        now,
                        fx,
                    );
                }
                None => {
                    // Nobody else can take it: it stays, and its clock restarts.
                    if let Some(a) = self.assignments.get_mut(&conversation) {
                        a.assigned_at = now;
                        a.missed = true;
                    }
                }
            }
        }
    }

    /// Asks the conversation to confirm the assignment that stands for it (a retelling): one
    /// reopened while routing kept it assigned may not show its agent, since an assignment
    /// that reaches a closed conversation is not recorded there (routing hears of a close
    /// after the fact, and a lost close is superseded by the reopen).
    fn confirm_assignment(&mut self, conversation: &str, now: i64, fx: &mut Vec<SiteEffect>) {
        let Some(a) = self.assignments.get_mut(conversation) else {
            return;
        };
        let failures = a.untold.map_or(0, |u| u.failures);
        a.untold = Some(Untold {
            failures,
            retry_at: now + retell_delay(failures + 1),
        });
        let (agent, since) = (a.agent.clone(), a.start());
        let agent_name = self.agent_name(&agent);
        fx.push(SiteEffect::Retell {
            conversation: conversation.to_string(),
            agent,
            agent_name,
            since,
        });
    }

    fn agent_name(&self, agent: &str) -> String {
        self.agents
            .get(agent)
            .map(|agent| agent.profile.name.clone())
            .unwrap_or_default()
    }

    /// Assignments whose conversation did not confirm them, due to be told again. The next
    /// attempt is planned now, so one whose result never comes back (the object restarted) is
    /// still tried again; its result replaces the plan.
    fn retell_due(&mut self, now: i64, fx: &mut Vec<SiteEffect>) {
        let due: Vec<String> = self
            .assignments
            .iter()
            .filter(|(_, a)| a.untold.is_some_and(|u| u.retry_at <= now))
            .map(|(conversation, _)| conversation.clone())
            .collect();
        for conversation in due {
            self.confirm_assignment(&conversation, now, fx);
        }
    }
}
