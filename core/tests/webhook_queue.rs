//! The webhook delivery queue on SQLite, with the statements the Webhook object runs
//! (`webhook::queue`) and a run of its alarm as the object does it: what is due, oldest first;
//! holds, probes, deliveries set aside and rejoining, releases, give-ups, pauses and resumes.
//! Receivers that reject one delivery, fail on one, are down for a while, or take one request in
//! the middle of an outage, are played against it.

use std::collections::{BTreeSet, HashMap, HashSet};

use parley_core::webhook::queue::{self, Attempt, Outcome, Turn, Verdict};
use parley_core::webhook::{
    DueAction, FailureStreak, HookLookup, DISABLE_AFTER_FAILING_MS, GIVE_UP_AFTER_MS, MAX_ATTEMPTS,
    PAUSED_RECHECK_MS,
};
use proptest::prelude::*;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Row};

/// Deliveries sent per alarm run (as the object).
const BATCH: u32 = 20;

#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    webhook_id: String,
    delivery_id: String,
    status: String,
    attempts: u32,
    next_at: i64,
    created_at: i64,
    set_aside: bool,
}

fn delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get("id")?,
        webhook_id: row.get("webhook_id")?,
        delivery_id: row.get("delivery_id")?,
        status: row.get("status")?,
        attempts: row.get("attempts")?,
        next_at: row.get("next_at")?,
        created_at: row.get("created_at")?,
        set_aside: row.get::<_, i64>("set_aside")? != 0,
    })
}

fn open() -> Connection {
    let db = Connection::open_in_memory().expect("in-memory database");
    db.execute_batch(queue::SCHEMA).expect("schema");
    db
}

fn run(db: &Connection, statement: &str, values: Vec<Value>) -> usize {
    let mut prepared = db.prepare(statement).expect("statement prepares");
    if prepared.readonly() || statement.contains("RETURNING") {
        let mut rows = prepared.query(params_from_iter(values)).expect("runs");
        let mut n = 0;
        while rows.next().expect("row").is_some() {
            n += 1;
        }
        n
    } else {
        prepared.execute(params_from_iter(values)).expect("runs")
    }
}

fn select(db: &Connection, statement: &str, values: Vec<Value>) -> Vec<Delivery> {
    let mut prepared = db.prepare(statement).expect("statement prepares");
    let rows = prepared
        .query_map(params_from_iter(values), delivery)
        .expect("runs");
    rows.map(|r| r.expect("row")).collect()
}

fn int(v: i64) -> Value {
    Value::Integer(v)
}

fn text(v: &str) -> Value {
    Value::Text(v.to_string())
}

fn enqueue(db: &Connection, webhook: &str, delivery_id: &str, status: &str, next_at: i64, at: i64) {
    run(
        db,
        queue::ENQUEUE,
        vec![
            text(&format!("{webhook}:{delivery_id}")),
            text(webhook),
            text(delivery_id),
            text("message.created"),
            text("{}"),
            text(status),
            int(next_at),
            int(at),
        ],
    );
}

fn rows_of(db: &Connection, webhook: &str) -> Vec<Delivery> {
    select(
        db,
        "SELECT * FROM deliveries WHERE webhook_id = ? ORDER BY created_at, rowid",
        vec![text(webhook)],
    )
}

/// What a receiver answers: an HTTP status, or nothing (`None`).
type Receiver = Box<dyn Fn(&str, i64) -> Option<i64>>;

struct Hook {
    id: String,
    enabled: bool,
    streak: FailureStreak,
    receiver: Receiver,
}

#[derive(Debug, Clone)]
struct Sent {
    webhook: String,
    delivery: String,
    at: i64,
    outcome: Outcome,
}

/// A delivery the queue gave up on (not for its webhook being deleted).
#[derive(Debug, Clone)]
struct GivenUp {
    webhook: String,
    delivery: String,
    queued_at: i64,
    at: i64,
}

/// A site's queue and webhooks, its alarm run as the Webhook object runs it.
struct Site {
    db: Connection,
    base_ms: i64,
    now: i64,
    hooks: Vec<Hook>,
    sent: Vec<Sent>,
    switched_off: Vec<String>,
    /// When each switch-off in `switched_off` happened.
    switched_off_at: Vec<i64>,
    given_up: Vec<GivenUp>,
}

#[derive(Default)]
struct WebhookRun {
    turn: Turn,
    resume_checked: bool,
    paused_rescheduled: bool,
}

impl Site {
    fn new(base_ms: i64, hooks: Vec<Hook>) -> Site {
        Site {
            db: open(),
            base_ms,
            now: 1_000_000,
            hooks,
            sent: Vec::new(),
            switched_off: Vec::new(),
            switched_off_at: Vec::new(),
            given_up: Vec::new(),
        }
    }

    fn enqueue(&mut self, delivery_id: &str) {
        for hook in &self.hooks {
            let (status, next_at) = if hook.enabled {
                ("pending", self.now)
            } else {
                ("paused", self.now + PAUSED_RECHECK_MS)
            };
            enqueue(&self.db, &hook.id, delivery_id, status, next_at, self.now);
        }
    }

    fn due(&self, limit: u32) -> Vec<Delivery> {
        select(
            &self.db,
            queue::DUE,
            vec![int(self.now), int(i64::from(limit))],
        )
    }

    fn next_due(&self) -> Option<i64> {
        self.db
            .query_row(queue::NEXT_DUE, [], |row| row.get::<_, Option<i64>>(0))
            .expect("next due")
    }

    /// One run of the alarm, as `WebhookObject::deliver_due`.
    fn alarm(&mut self) {
        let mut due = self.due(BATCH);
        let mut runs: HashMap<String, WebhookRun> = HashMap::new();
        let mut sends_left = BATCH;
        while !due.is_empty() {
            let now = self.now;
            let mut more_due = false;
            let mut tried: HashSet<String> = HashSet::new();
            let mut freed_hooks: HashSet<String> = HashSet::new();
            for delivery in due {
                if sends_left == 0 {
                    break;
                }
                if tried.contains(&delivery.id) || freed_hooks.contains(&delivery.webhook_id) {
                    continue;
                }
                let found = self.hooks.iter().position(|h| h.id == delivery.webhook_id);
                let lookup = match found {
                    Some(at) => HookLookup::Found {
                        enabled: self.hooks[at].enabled,
                    },
                    None => HookLookup::Missing,
                };
                let run_of = runs.entry(delivery.webhook_id.clone()).or_default();
                if lookup == (HookLookup::Found { enabled: true }) && !run_of.resume_checked {
                    run_of.resume_checked = true;
                    if self.resume(&delivery.webhook_id) > 0 {
                        more_due = true;
                        freed_hooks.insert(delivery.webhook_id.clone());
                        continue;
                    }
                }
                match run_of.turn.decide(lookup) {
                    DueAction::Wait | DueAction::Hold => continue,
                    DueAction::GiveUp(_) => {
                        self.finish(&delivery.id, "failed");
                        continue;
                    }
                    DueAction::Pause => {
                        let later = int(now + PAUSED_RECHECK_MS);
                        if delivery.status != "paused" {
                            run(
                                &self.db,
                                queue::PAUSE_ONE,
                                vec![
                                    later,
                                    text(&delivery.id),
                                    text(&delivery.status),
                                    int(delivery.next_at),
                                ],
                            );
                        } else if !run_of.paused_rescheduled {
                            run_of.paused_rescheduled = true;
                            run(
                                &self.db,
                                queue::LOOK_AGAIN_LATER,
                                vec![later, text(&delivery.webhook_id)],
                            );
                        }
                        continue;
                    }
                    DueAction::Send => {}
                }
                let Some(at) = found else { continue };
                let mut next = Some(delivery);
                while let Some(delivery) = next.take() {
                    if sends_left == 0 {
                        break;
                    }
                    tried.insert(delivery.id.clone());
                    // Read again, as the object does: a resume may have changed it since the
                    // list was read; one no longer pending is not sent.
                    let fresh = select(&self.db, queue::PENDING, vec![text(&delivery.id)]);
                    let Some(delivery) = fresh.into_iter().next() else {
                        continue;
                    };
                    sends_left -= 1;
                    let run_of = runs.get_mut(&delivery.webhook_id).expect("run");
                    match self.attempt(at, &mut run_of.turn, &delivery) {
                        Some(true) => {
                            more_due = true;
                            freed_hooks.insert(delivery.webhook_id.clone());
                        }
                        Some(false) => {}
                        None => {
                            if self.hooks[at].enabled && run_of.turn.take_probe() {
                                next = select(
                                    &self.db,
                                    queue::PROBE,
                                    vec![text(&self.hooks[at].id), text(&delivery.id)],
                                )
                                .into_iter()
                                .next();
                            }
                        }
                    }
                }
            }
            if !more_due || sends_left == 0 {
                break;
            }
            due = self.due(sends_left);
        }
    }

    /// Sends one delivery; `Some(freed)` when delivered or failed on its own, `None` when its
    /// failure counted.
    fn attempt(&mut self, at: usize, turn: &mut Turn, delivery: &Delivery) -> Option<bool> {
        let status = (self.hooks[at].receiver)(&delivery.delivery_id, self.now);
        // Each attempt takes a millisecond.
        self.now += 1;
        let outcome = queue::outcome(status);
        self.sent.push(Sent {
            webhook: self.hooks[at].id.clone(),
            delivery: delivery.delivery_id.clone(),
            at: self.now,
            outcome,
        });
        let attempts = delivery.attempts + 1;
        let attempt = Attempt {
            id: &delivery.id,
            attempts,
            set_aside: delivery.set_aside,
            queued_at: delivery.created_at,
            at: self.now,
            outcome,
        };
        let hook_id = self.hooks[at].id.clone();
        match turn.after(attempt, self.hooks[at].streak, self.base_ms) {
            Verdict::Delivered {
                set_aside,
                retry_queued_by,
            } => {
                self.finish(&delivery.id, "delivered");
                if let Some(holder) = set_aside {
                    run(&self.db, queue::SET_ASIDE, vec![text(&holder)]);
                }
                let retried = run(
                    &self.db,
                    queue::RETRY_SET_ASIDE,
                    vec![
                        int(self.now),
                        text(&hook_id),
                        int(i64::from(MAX_ATTEMPTS)),
                        int(retry_queued_by),
                    ],
                );
                self.hooks[at].streak = FailureStreak::default();
                let freed = run(
                    &self.db,
                    queue::RELEASE,
                    vec![int(self.now), text(&hook_id), int(self.now)],
                ) + retried;
                Some(freed > 0)
            }
            Verdict::OnItsOwn { next_at, give_up } => {
                if give_up {
                    self.finish(&delivery.id, "failed");
                    self.record_given_up(&delivery.id);
                } else {
                    self.retry(&delivery.id, attempts, next_at, status);
                    run(&self.db, queue::SET_ASIDE, vec![text(&delivery.id)]);
                }
                Some(false)
            }
            Verdict::Counted {
                next_at,
                streak,
                disable,
                hold_until,
            } => {
                self.retry(&delivery.id, attempts, next_at, status);
                run(&self.db, queue::REJOIN, vec![text(&hook_id)]);
                run(
                    &self.db,
                    queue::HOLD,
                    vec![int(hold_until), text(&hook_id), int(hold_until)],
                );
                self.hooks[at].streak = streak;
                if disable {
                    self.hooks[at].enabled = false;
                    self.switched_off.push(hook_id.clone());
                    self.switched_off_at.push(self.now);
                    run(
                        &self.db,
                        queue::PAUSE_ALL,
                        vec![int(self.now + PAUSED_RECHECK_MS), text(&hook_id)],
                    );
                }
                None
            }
        }
    }

    fn record_given_up(&mut self, id: &str) {
        let row = select(
            &self.db,
            "SELECT * FROM deliveries WHERE id = ?",
            vec![text(id)],
        );
        let row = row.first().expect("the delivery given up");
        self.given_up.push(GivenUp {
            webhook: row.webhook_id.clone(),
            delivery: row.delivery_id.clone(),
            queued_at: row.created_at,
            at: self.now,
        });
    }

    fn retry(&self, id: &str, attempts: u32, next_at: i64, status: Option<i64>) {
        run(
            &self.db,
            queue::RETRY,
            vec![
                int(i64::from(attempts)),
                int(next_at),
                status.map_or(Value::Null, Value::Integer),
                text("failed"),
                text(id),
            ],
        );
    }

    fn finish(&self, id: &str, status: &str) {
        run(
            &self.db,
            queue::FINISH,
            vec![
                text(status),
                Value::Null,
                Value::Null,
                text(status),
                int(self.now),
                text(id),
            ],
        );
    }

    fn resume(&self, webhook: &str) -> usize {
        run(
            &self.db,
            queue::RESUME,
            vec![
                int(self.now),
                int(i64::from(queue::RESUMED_ATTEMPTS_AT_MOST)),
                text(webhook),
            ],
        )
    }

    /// Plays `events` (at their times, in order) and the alarms they and the retries set,
    /// until nothing is due or `until`.
    fn play(&mut self, events: &[(i64, String)], until: i64) {
        let mut next_event = 0;
        let mut runs = 0;
        loop {
            let event_at = events.get(next_event).map(|(at, _)| *at);
            let Some(at) = [event_at, self.next_due()].into_iter().flatten().min() else {
                return;
            };
            if at > until {
                return;
            }
            self.now = self.now.max(at);
            while let Some((at, id)) = events.get(next_event) {
                if *at > self.now {
                    break;
                }
                self.enqueue(id);
                next_event += 1;
            }
            self.alarm();
            runs += 1;
            assert!(runs < 100_000, "the queue keeps waking without progress");
        }
    }

    /// Where the record breaks the queue's promises: a webhook switched off before it had been
    /// failing, without a delivered attempt, for [`DISABLE_AFTER_FAILING_MS`]; a delivery given
    /// up before [`GIVE_UP_AFTER_MS`] from when it was queued, before [`MAX_ATTEMPTS`], or
    /// without its receiver taking another delivery of the webhook after its previous failure.
    fn broken_promises(&self) -> Vec<String> {
        let mut broken = Vec::new();
        for (webhook, off_at) in self.switched_off.iter().zip(&self.switched_off_at) {
            let before: Vec<&Sent> = self
                .sent
                .iter()
                .filter(|s| &s.webhook == webhook && s.at <= *off_at)
                .collect();
            let last_delivered = before.iter().rposition(|s| s.outcome == Outcome::Delivered);
            let first_failed = before[last_delivered.map_or(0, |at| at + 1)..].first();
            match first_failed {
                Some(first) if off_at - first.at >= DISABLE_AFTER_FAILING_MS => {}
                _ => broken.push(format!(
                    "{webhook} switched off at {off_at}, failing since {:?}",
                    first_failed.map(|s| s.at)
                )),
            }
        }
        for gone in &self.given_up {
            if gone.at - gone.queued_at < GIVE_UP_AFTER_MS {
                broken.push(format!("{gone:?}: given up too soon"));
            }
            let failures: Vec<i64> = self
                .sent
                .iter()
                .filter(|s| {
                    s.webhook == gone.webhook
                        && s.delivery == gone.delivery
                        && s.outcome == Outcome::Failed
                        && s.at <= gone.at
                })
                .map(|s| s.at)
                .collect();
            if failures.len() < MAX_ATTEMPTS as usize {
                broken.push(format!(
                    "{gone:?}: given up after {} attempts",
                    failures.len()
                ));
                continue;
            }
            // Its last failure came right after the receiver took another delivery (in the
            // same run: within a minute), not before: a failure during an outage decides nothing.
            let previous_failure = failures[failures.len() - 2];
            let last_failure = failures[failures.len() - 1];
            // The webhook's attempt right before it: another delivery, taken.
            let before = self
                .sent
                .iter()
                .rfind(|s| s.webhook == gone.webhook && s.at < last_failure);
            let another_taken = before.is_some_and(|s| {
                s.delivery != gone.delivery
                    && s.outcome == Outcome::Delivered
                    && s.at > previous_failure
                    && last_failure - s.at <= 60_000
            });
            if !another_taken {
                broken.push(format!(
                    "{gone:?}: given up, the receiver took nothing else right before its last failure at {last_failure}"
                ));
            }
        }
        broken
    }

    fn delivered(&self, webhook: &str) -> Vec<&Sent> {
        self.sent
            .iter()
            .filter(|s| s.webhook == webhook && s.outcome == Outcome::Delivered)
            .collect()
    }
}

fn hook(id: &str, receiver: Receiver) -> Hook {
    Hook {
        id: id.to_string(),
        enabled: true,
        streak: FailureStreak::default(),
        receiver,
    }
}

fn always(status: i64) -> Receiver {
    Box::new(move |_, _| Some(status))
}

/// Events `e0`, `e1`, … at `start` plus the gaps.
fn events(start: i64, gaps: &[i64]) -> Vec<(i64, String)> {
    let mut at = start;
    gaps.iter()
        .enumerate()
        .map(|(i, gap)| {
            at += gap;
            (at, format!("e{i:02}"))
        })
        .collect()
}

fn index(delivery: &str) -> usize {
    delivery[1..].parse().expect("an event id")
}

const BASE: i64 = 1_000;

#[test]
fn due_deliveries_go_oldest_first_and_the_row_breaks_ties() {
    let db = open();
    // Queued in this order, two in the same millisecond, the first due last.
    enqueue(&db, "w", "b", "pending", 10, 5);
    enqueue(&db, "w", "a", "pending", 10, 5);
    enqueue(&db, "w", "c", "pending", 1, 6);
    enqueue(&db, "w", "z", "pending", 1, 1);
    let due = select(&db, queue::DUE, vec![int(100), int(10)]);
    let order: Vec<&str> = due.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(order, ["z", "b", "a", "c"]);
}

#[test]
fn a_queue_stored_by_the_previous_release_keeps_working_once_upgraded() {
    // The table as the previous release made it, with a delivery waiting and one paused.
    let db = Connection::open_in_memory().expect("database");
    db.execute_batch(
        "CREATE TABLE deliveries (
          id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, delivery_id TEXT NOT NULL, event TEXT NOT NULL,
          body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL,
          last_status INTEGER, last_error TEXT, created_at INTEGER NOT NULL, delivered_at INTEGER);
        CREATE INDEX deliveries_due ON deliveries (status, next_at);
        INSERT INTO deliveries VALUES ('w:a', 'w', 'a', 'message.created', '{}', 'pending', 3, 50, 502, 'HTTP 502', 1, NULL);
        INSERT INTO deliveries VALUES ('w:b', 'w', 'b', 'message.created', '{}', 'paused', 8, 70, 502, 'HTTP 502', 2, NULL);",
    )
    .expect("old table");
    // What the object does when it starts: the schema (a no-op here), then each upgrade whose
    // check fails, once.
    db.execute_batch(queue::SCHEMA).expect("schema");
    for _ in 0..2 {
        for (check, change) in queue::UPGRADES {
            if db.prepare(check).is_err() {
                db.execute_batch(change).expect("upgrade");
            }
        }
    }
    let rows = rows_of(&db, "w");
    assert!(rows.iter().all(|r| !r.set_aside));
    // The statements run on the old rows: held rows are freed, paused ones resumed with attempts
    // left.
    assert_eq!(
        run(&db, queue::RELEASE, vec![int(10), text("w"), int(10)]),
        1
    );
    assert_eq!(
        run(
            &db,
            queue::RESUME,
            vec![
                int(10),
                int(i64::from(queue::RESUMED_ATTEMPTS_AT_MOST)),
                text("w")
            ]
        ),
        1
    );
    let rows = rows_of(&db, "w");
    assert_eq!(
        rows.iter()
            .map(|r| (r.status.as_str(), r.attempts, r.next_at))
            .collect::<Vec<_>>(),
        [
            ("pending", 3, 10),
            ("pending", queue::RESUMED_ATTEMPTS_AT_MOST, 10)
        ]
    );
    assert_eq!(select(&db, queue::DUE, vec![int(10), int(5)]).len(), 2);
}

#[test]
fn a_switched_off_webhooks_paused_deliveries_look_again_together() {
    let db = open();
    // Paused at scattered times, one of them just resumed, and another webhook's.
    for (i, next_at) in [100, 900, 2_000, 3_500].into_iter().enumerate() {
        enqueue(&db, "w", &format!("p{i}"), "paused", next_at, i as i64);
    }
    enqueue(&db, "w", "resumed", "pending", 50, 9);
    enqueue(&db, "v", "other", "paused", 100, 9);
    let moved = run(
        &db,
        queue::LOOK_AGAIN_LATER,
        vec![int(100 + PAUSED_RECHECK_MS), text("w")],
    );
    assert_eq!(moved, 4);
    let rows = rows_of(&db, "w");
    for row in &rows {
        if row.status == "paused" {
            assert_eq!(row.next_at, 100 + PAUSED_RECHECK_MS, "{row:?}");
        } else {
            assert_eq!(row.next_at, 50, "a resumed delivery is left alone");
        }
    }
    assert_eq!(rows_of(&db, "v")[0].next_at, 100);
}

#[test]
fn holding_and_freeing_leave_deliveries_set_aside_alone() {
    let db = open();
    enqueue(&db, "w", "a", "pending", 10, 1);
    enqueue(&db, "w", "b", "pending", 10, 2);
    enqueue(&db, "w", "c", "pending", 10, 3);
    run(&db, queue::SET_ASIDE, vec![text("w:b")]);
    run(&db, queue::HOLD, vec![int(500), text("w"), int(500)]);
    let next: Vec<i64> = rows_of(&db, "w").iter().map(|r| r.next_at).collect();
    assert_eq!(next, [500, 10, 500]);
    // Its own retry is later than now: freeing the others leaves it there too.
    run(
        &db,
        queue::RETRY,
        vec![int(1), int(9_000), int(400), text("HTTP 400"), text("w:b")],
    );
    assert_eq!(
        run(&db, queue::RELEASE, vec![int(20), text("w"), int(20)]),
        2
    );
    let next: Vec<i64> = rows_of(&db, "w").iter().map(|r| r.next_at).collect();
    assert_eq!(next, [20, 9_000, 20]);
    // The probe for a holder: not the holder, not one set aside, one not tried yet first.
    run(
        &db,
        queue::RETRY,
        vec![int(2), int(30), int(502), text("HTTP 502"), text("w:a")],
    );
    enqueue(&db, "w", "d", "pending", 10, 4);
    run(
        &db,
        queue::RETRY,
        vec![int(1), int(30), int(502), text("HTTP 502"), text("w:c")],
    );
    let probe = select(&db, queue::PROBE, vec![text("w"), text("w:a")]);
    assert_eq!(probe[0].delivery_id, "d");
    let probe = select(&db, queue::PROBE, vec![text("w"), text("w:d")]);
    assert_eq!(
        probe[0].delivery_id, "a",
        "tried ones, oldest first, when none is fresh"
    );
}

#[test]
fn deliveries_set_aside_rejoin_the_queue_and_only_those_out_of_attempts_and_old_enough_are_tried_again_at_once(
) {
    let db = open();
    let hours = |h: i64| h * 3600 * 1000;
    // Set aside: one out of attempts queued 7 h ago, one out of attempts queued 1 h ago, one
    // with attempts left; one in the queue out of attempts; another webhook's.
    for (id, attempts, queued, aside) in [
        ("old", 8, hours(1), true),
        ("recent", 8, hours(7), true),
        ("young", 5, hours(1), true),
        ("queued", 8, hours(1), false),
    ] {
        enqueue(&db, "w", id, "pending", hours(9), queued);
        run(
            &db,
            queue::RETRY,
            vec![
                int(attempts),
                int(hours(9)),
                int(500),
                text("HTTP 500"),
                text(&format!("w:{id}")),
            ],
        );
        if aside {
            run(&db, queue::SET_ASIDE, vec![text(&format!("w:{id}"))]);
        }
    }
    enqueue(&db, "v", "other", "pending", hours(9), hours(1));
    run(
        &db,
        queue::RETRY,
        vec![
            int(8),
            int(hours(9)),
            int(500),
            text("HTTP 500"),
            text("v:other"),
        ],
    );
    run(&db, queue::SET_ASIDE, vec![text("v:other")]);
    let due_now = run(
        &db,
        queue::RETRY_SET_ASIDE,
        vec![
            int(hours(8)),
            text("w"),
            int(i64::from(MAX_ATTEMPTS)),
            int(queue::give_up_queued_by(hours(8))),
        ],
    );
    assert_eq!(due_now, 1);
    // Due at once, to be tried right after the delivery the receiver took; still pending.
    let next_at = |db: &Connection, id: &str| {
        rows_of(db, "w")
            .into_iter()
            .find(|r| r.delivery_id == id)
            .map(|r| r.next_at)
    };
    assert_eq!(next_at(&db, "old"), Some(hours(8)));
    assert_eq!(next_at(&db, "recent"), Some(hours(9)));
    assert_eq!(next_at(&db, "young"), Some(hours(9)));
    let status = |db: &Connection, webhook: &str| -> Vec<(String, String, bool)> {
        rows_of(db, webhook)
            .into_iter()
            .map(|r| (r.delivery_id, r.status, r.set_aside))
            .collect()
    };
    let owned = |v: [(&str, &str, bool); 4]| -> Vec<(String, String, bool)> {
        v.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
            .collect()
    };
    assert_eq!(
        status(&db, "w"),
        owned([
            ("old", "pending", true),
            ("young", "pending", true),
            ("queued", "pending", false),
            ("recent", "pending", true),
        ])
    );
    // The receiver fails one in the queue: those set aside rejoin it, the other webhook's stay.
    assert_eq!(run(&db, queue::REJOIN, vec![text("w")]), 3);
    assert!(rows_of(&db, "w").iter().all(|r| !r.set_aside));
    assert!(rows_of(&db, "v")[0].set_aside);
    // A webhook switched on again resumes its paused deliveries in its queue.
    run(&db, queue::PAUSE_ALL, vec![int(hours(10)), text("v")]);
    run(
        &db,
        queue::RESUME,
        vec![
            int(hours(11)),
            int(i64::from(queue::RESUMED_ATTEMPTS_AT_MOST)),
            text("v"),
        ],
    );
    let resumed = &rows_of(&db, "v")[0];
    assert_eq!(
        (resumed.status.as_str(), resumed.set_aside),
        ("pending", false)
    );
}

/// A receiver down until `e00` has been refused `refusals` times, that then takes one request
/// (the probe), and is down again for `down_after_ms`.
fn takes_one_request_in_an_outage(refusals: u32, down_after_ms: i64) -> Receiver {
    use std::cell::Cell;
    let refused = Cell::new(0u32);
    let took_one_at: Cell<Option<i64>> = Cell::new(None);
    Box::new(move |id, now| match took_one_at.get() {
        Some(at) if now >= at + down_after_ms => Some(204),
        Some(_) => Some(502),
        None if id == "e00" => {
            refused.set(refused.get() + 1);
            Some(502)
        }
        None if refused.get() >= refusals => {
            took_one_at.set(Some(now));
            Some(204)
        }
        None => Some(502),
    })
}

#[test]
fn a_delivery_set_aside_right_before_the_receiver_goes_down_for_everyone_is_not_given_up() {
    // Down: the oldest holds the other, which goes as a probe after each of its failures. At
    // its 6th, the probe is taken, and it is set aside; then the receiver is down again for
    // 5.5 h, through its 7th and 8th attempts (5.4 h after its first). Nothing shows that the
    // receiver takes the others then: it is kept, and delivered once the receiver is back.
    let mut site = Site::new(
        BASE,
        vec![hook(
            "w",
            takes_one_request_in_an_outage(6, 5 * 3600 * 1000 + 1800 * 1000),
        )],
    );
    let evs = events(site.now, &[0, 0]);
    site.play(&evs, site.now + 72 * 3600 * 1000);
    let e00: Vec<&Sent> = site.sent.iter().filter(|s| s.delivery == "e00").collect();
    assert!(e00.len() > MAX_ATTEMPTS as usize, "{e00:?}");
    let delivered: Vec<&str> = site
        .delivered("w")
        .iter()
        .map(|s| s.delivery.as_str())
        .collect();
    assert_eq!(delivered, ["e01", "e00"]);
    assert!(site.given_up.is_empty(), "{:?}", site.given_up);
    assert!(site.switched_off.is_empty());
    assert_eq!(site.broken_promises(), Vec::<String>::new());
}

#[test]
fn a_delivery_set_aside_whose_last_attempt_failed_in_an_outage_is_tried_again_when_the_receiver_is_back(
) {
    // As above, and a new event comes after the outage, 6.5 h after the first, before the one
    // set aside (8 attempts, queued long ago) is due again. Taking the new event shows the
    // receiver is back, not that the old one fails on its own (its last failure was the
    // outage's): it goes right after, and is delivered.
    let mut site = Site::new(
        BASE,
        vec![hook(
            "w",
            takes_one_request_in_an_outage(6, 5 * 3600 * 1000 + 1800 * 1000),
        )],
    );
    let mut evs = events(site.now, &[0, 0]);
    evs.push((site.now + 6 * 3600 * 1000 + 1800 * 1000, "e02".to_string()));
    site.play(&evs, site.now + 7 * 3600 * 1000);
    let e00: Vec<&Sent> = site.sent.iter().filter(|s| s.delivery == "e00").collect();
    assert!(e00.len() > MAX_ATTEMPTS as usize, "{e00:?}");
    assert!(site.given_up.is_empty(), "{:?}", site.given_up);
    let delivered: Vec<&str> = site
        .delivered("w")
        .iter()
        .map(|s| s.delivery.as_str())
        .collect();
    assert_eq!(delivered, ["e01", "e02", "e00"]);
    assert_eq!(site.broken_promises(), Vec::<String>::new());
}

#[test]
fn a_delivery_the_receiver_always_refuses_is_given_up_right_after_it_takes_another_once_it_is_old_enough(
) {
    // The receiver refuses e00 and takes everything else; other events come every 20 minutes
    // for 10 hours. e00 is set aside and, once it has made its attempts and was queued 6 h ago,
    // given up (its body dropped) when it fails right after the receiver took another.
    let receiver: Receiver = Box::new(|id, _| Some(if id.ends_with("e00") { 500 } else { 204 }));
    let mut site = Site::new(BASE, vec![hook("w", receiver)]);
    let mut gaps = vec![0];
    gaps.extend(std::iter::repeat_n(20 * 60 * 1000, 30));
    let evs = events(site.now, &gaps);
    site.play(&evs, site.now + 12 * 3600 * 1000);
    assert_eq!(site.given_up.len(), 1, "{:?}", site.given_up);
    let gone = &site.given_up[0];
    assert_eq!(gone.delivery, "e00");
    assert!(gone.at - gone.queued_at >= GIVE_UP_AFTER_MS);
    assert!(
        gone.at - gone.queued_at < GIVE_UP_AFTER_MS + 3600 * 1000,
        "{gone:?}"
    );
    let e00 = rows_of(&site.db, "w")
        .into_iter()
        .find(|r| r.delivery_id == "e00");
    assert_eq!(e00.map(|r| r.status).as_deref(), Some("failed"));
    assert_eq!(
        site.db
            .query_row(
                "SELECT body FROM deliveries WHERE delivery_id = 'e00'",
                [],
                |row| row.get::<_, String>(0)
            )
            .expect("row"),
        ""
    );
    assert_eq!(site.delivered("w").len(), 30);
    assert!(site.switched_off.is_empty());
    assert_eq!(site.broken_promises(), Vec::<String>::new());
}

#[test]
fn deliveries_set_aside_rejoin_the_queue_when_the_receiver_fails_the_others_and_are_paused_with_them(
) {
    // As above, but the receiver stays down, and another event comes 10 minutes after the
    // probe was taken: its failure brings the one set aside back into the queue, whose failures
    // count; after 6 h of them the webhook is switched off and both are kept, paused.
    let mut site = Site::new(
        BASE,
        vec![hook("w", takes_one_request_in_an_outage(6, i64::MAX / 4))],
    );
    let mut evs = events(site.now, &[0, 0]);
    // e00's 6th attempt, and the probe, come 781 s after its first.
    evs.push((site.now + 781_000 + 600_000, "e02".to_string()));
    site.play(&evs, site.now + 72 * 3600 * 1000);
    assert_eq!(site.delivered("w").len(), 1, "only the probe");
    assert!(site.given_up.is_empty(), "{:?}", site.given_up);
    assert_eq!(site.switched_off, ["w"]);
    let rows = rows_of(&site.db, "w");
    let kept: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|r| (r.delivery_id.as_str(), r.status.as_str(), r.set_aside))
        .collect();
    assert_eq!(
        kept,
        [
            ("e00", "paused", false),
            ("e01", "delivered", false),
            ("e02", "paused", false)
        ]
    );
    // Its failures after the outage began counted: it held e02 (in order, oldest first).
    let after_rejoin: Vec<&Sent> = site.sent.iter().filter(|s| s.at > evs[2].0).collect();
    assert!(after_rejoin.iter().any(|s| s.delivery == "e00"));
    assert_eq!(site.broken_promises(), Vec::<String>::new());
}

#[test]
fn with_a_short_retry_base_an_outage_of_hours_loses_nothing_and_switches_off_only_after_six() {
    // 100 ms: a delivery's 8 attempts take about half an hour.
    let base = 100;
    // Down for 5 hours, then back: everything is delivered, nothing given up, still on.
    let up_at = 1_000_000 + 5 * 3600 * 1000;
    let mut site = Site::new(
        base,
        vec![hook(
            "w",
            Box::new(move |_, now| Some(if now < up_at { 503 } else { 204 })),
        )],
    );
    let evs = events(site.now, &[0, 10, 10]);
    site.play(&evs, site.now + 48 * 3600 * 1000);
    assert!(site.given_up.is_empty(), "{:?}", site.given_up);
    assert!(site.switched_off.is_empty());
    let mut delivered: Vec<&str> = site
        .delivered("w")
        .iter()
        .map(|s| s.delivery.as_str())
        .collect();
    delivered.sort();
    assert_eq!(delivered, ["e00", "e01", "e02"]);
    assert!(
        site.sent.iter().filter(|s| s.delivery == "e00").count() > MAX_ATTEMPTS as usize,
        "attempts go on after the 8th"
    );

    // Down for good: switched off 6 h after its first failure at the soonest, all kept.
    let mut site = Site::new(base, vec![hook("w", always(503))]);
    let start = site.now;
    site.play(&evs, start + 48 * 3600 * 1000);
    assert!(site.given_up.is_empty(), "{:?}", site.given_up);
    assert_eq!(site.switched_off, ["w"]);
    assert!(site.switched_off_at[0] - start >= DISABLE_AFTER_FAILING_MS);
    let rows = rows_of(&site.db, "w");
    assert!(rows.iter().all(|r| r.status == "paused"), "{rows:?}");
    assert_eq!(site.broken_promises(), Vec::<String>::new());
}

#[test]
fn a_receiver_refusing_every_delivery_with_a_4xx_is_switched_off_and_keeps_them() {
    // An address or credentials gone wrong: every delivery gets a 404. They must be kept
    // (paused with the webhook), not given up one by one as refusals of single payloads.
    let mut site = Site::new(5_000, vec![hook("w", always(404))]);
    let evs = events(site.now, &[0, 10, 10]);
    site.play(&evs, site.now + 30 * 3600 * 1000);
    assert_eq!(site.switched_off, ["w"]);
    let rows = rows_of(&site.db, "w");
    assert!(rows.iter().all(|r| r.status == "paused"), "{rows:?}");
}

#[test]
fn one_delivery_failing_on_its_own_is_set_aside_after_its_second_failure() {
    let poison = "e00";
    let mut site = Site::new(
        BASE,
        vec![hook(
            "w",
            Box::new(move |id, _| Some(if id == poison { 500 } else { 204 })),
        )],
    );
    let evs = events(site.now, &[0, 0, 0, 0, 0]);
    site.play(&evs, site.now + 48 * 3600 * 1000);
    let delivered = site.delivered("w");
    assert_eq!(delivered.len(), 4);
    // They waited for its first retry, then one went as a probe and the rest followed.
    assert!(delivered.iter().all(|s| s.at <= evs[0].0 + BASE + 10));
    assert!(site.switched_off.is_empty());
    let row = &rows_of(&site.db, "w")[0];
    assert!(row.set_aside);
}

#[test]
fn a_probe_is_a_delivery_not_tried_yet_so_neighbouring_failures_do_not_block() {
    // Two failing on their own side by side (one conversation's events, say), then the rest.
    let mut site = Site::new(
        BASE,
        vec![hook(
            "w",
            Box::new(|id, _| Some(if index(id) < 2 { 500 } else { 204 })),
        )],
    );
    let evs = events(site.now, &[0, 0, 0, 0, 0, 0]);
    site.play(&evs, site.now + 48 * 3600 * 1000);
    assert_eq!(site.delivered("w").len(), 4);
    assert!(site.switched_off.is_empty());
}

#[test]
fn after_an_outage_the_backlog_goes_at_once_and_in_order() {
    let up_at = 1_000_000 + 60_000;
    let mut site = Site::new(
        BASE,
        vec![hook(
            "w",
            Box::new(move |_, now| Some(if now < up_at { 502 } else { 204 })),
        )],
    );
    // Ten events during the outage, then one after it.
    let mut evs = events(
        site.now,
        &[0, 100, 100, 3_000, 100, 5_000, 100, 100, 9_000, 100],
    );
    evs.push((up_at + 10, "e10".to_string()));
    site.play(&evs, site.now + 48 * 3600 * 1000);
    let delivered = site.delivered("w");
    assert_eq!(delivered.len(), 11);
    let first = delivered[0];
    assert!(first.at >= up_at);
    // Everything waiting was freed by the first delivery and went right after it, in order.
    let rest: Vec<usize> = delivered[1..].iter().map(|s| index(&s.delivery)).collect();
    let mut sorted = rest.clone();
    sorted.sort();
    assert_eq!(rest, sorted);
    assert!(delivered.iter().all(|s| s.at <= first.at + 20));
}

#[test]
fn a_long_outage_still_switches_the_webhook_off_and_keeps_its_deliveries() {
    let mut site = Site::new(5_000, vec![hook("w", always(503))]);
    let evs = events(site.now, &[0, 10, 10]);
    site.play(&evs, site.now + 30 * 3600 * 1000);
    assert_eq!(site.switched_off, ["w"]);
    let rows = rows_of(&site.db, "w");
    assert!(rows.iter().all(|r| r.status == "paused"), "{rows:?}");
    // Switched on again: each has attempts left, and goes.
    site.hooks[0].enabled = true;
    site.hooks[0].streak = FailureStreak::default();
    site.hooks[0].receiver = always(204);
    let resumed = site.resume("w");
    assert_eq!(resumed, 3);
    assert!(rows_of(&site.db, "w")
        .iter()
        .all(|r| r.attempts <= queue::RESUMED_ATTEMPTS_AT_MOST));
    let now = site.now;
    site.play(&[], now + 1000);
    assert_eq!(site.delivered("w").len(), 3);
}

#[test]
fn a_switched_off_webhook_wakes_the_queue_once_per_look_not_once_per_delivery() {
    let mut off = hook("w", always(204));
    off.enabled = false;
    let mut site = Site::new(BASE, vec![off]);
    // Events spread over an hour, each paused for an hour.
    let gaps: Vec<i64> = (0..30).map(|_| 2 * 60 * 1000).collect();
    let evs = events(site.now, &gaps);
    let start = site.now;
    let mut wakes = 0;
    let mut next_event = 0;
    // Three hours of the queue, counting the alarm runs that were not for a new event.
    loop {
        let event_at = evs.get(next_event).map(|(at, _)| *at);
        let Some(at) = [event_at, site.next_due()].into_iter().flatten().min() else {
            break;
        };
        if at > start + 3 * 3600 * 1000 {
            break;
        }
        site.now = at;
        if event_at == Some(at) {
            site.enqueue(&evs[next_event].1);
            next_event += 1;
        } else {
            wakes += 1;
        }
        site.alarm();
    }
    // One per hour or so (the paused deliveries of one webhook look again together), not one
    // per delivery per hour (90).
    assert!(wakes <= 4, "{wakes} wake-ups");
    assert!(site.sent.is_empty());
}

#[derive(Debug, Clone)]
enum Trouble {
    /// The receiver refuses these events (HTTP 400).
    Rejects(BTreeSet<usize>),
    /// The receiver fails on these events (HTTP 500), and takes the others.
    FailsOn(BTreeSet<usize>),
    /// The receiver is down (HTTP 502 or no answer) from `from` to `to` ms after the first event.
    Down { from: i64, to: i64, silent: bool },
}

fn trouble(events: usize) -> impl Strategy<Value = Trouble> {
    let some = proptest::collection::btree_set(0..events, 1..=1);
    prop_oneof![
        some.clone().prop_map(Trouble::Rejects),
        some.prop_map(Trouble::FailsOn),
        (0i64..20_000, 1i64..120_000, any::<bool>()).prop_map(|(from, len, silent)| {
            Trouble::Down {
                from,
                to: from + len,
                silent,
            }
        }),
    ]
}

fn scenario() -> impl Strategy<Value = (Vec<i64>, Trouble)> {
    proptest::collection::vec(prop_oneof![Just(0i64), 0i64..50, 0i64..5_000], 1..14).prop_flat_map(
        |gaps| {
            let n = gaps.len();
            (Just(gaps), trouble(n))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_queue_delivers_each_once_in_order_and_one_bad_delivery_holds_up_no_other(
        (gaps, trouble) in scenario(),
    ) {
        let start = 1_000_000;
        let bad = trouble.clone();
        let receiver: Receiver = Box::new(move |id, now| {
            let i = index(id);
            match &bad {
                Trouble::Rejects(set) if set.contains(&i) => Some(400),
                Trouble::FailsOn(set) if set.contains(&i) => Some(500),
                Trouble::Down { from, to, silent } if now >= start + from && now < start + to => {
                    if *silent { None } else { Some(502) }
                }
                _ => Some(204),
            }
        });
        // A second webhook whose receiver is always fine, on the same events.
        let mut site = Site::new(BASE, vec![hook("w", receiver), hook("v", always(204))]);
        let evs = events(start, &gaps);
        site.play(&evs, start + 72 * 3600 * 1000);

        let bad_ones: BTreeSet<usize> = match &trouble {
            Trouble::Rejects(set) | Trouble::FailsOn(set) => set.clone(),
            Trouble::Down { .. } => BTreeSet::new(),
        };
        let created: HashMap<String, i64> = evs.iter().map(|(at, id)| (id.clone(), *at)).collect();

        // Nothing is delivered twice, and every good one is delivered.
        for webhook in ["w", "v"] {
            let delivered = site.delivered(webhook);
            let ids: BTreeSet<&str> = delivered.iter().map(|s| s.delivery.as_str()).collect();
            prop_assert_eq!(ids.len(), delivered.len(), "delivered twice: {:?}", delivered);
            let want: BTreeSet<&str> = evs
                .iter()
                .filter(|(_, id)| webhook == "v" || !bad_ones.contains(&index(id)))
                .map(|(_, id)| id.as_str())
                .collect();
            prop_assert_eq!(ids, want);
        }
        // The other webhook never waits for this one's troubles.
        for sent in site.delivered("v") {
            prop_assert!(sent.at - created[&sent.delivery] <= 100, "{:?}", sent);
        }
        // Switched off only after hours in which the receiver took nothing of it (one left
        // failing alone after the last event it took behaves like a receiver that is down), and
        // nothing given up unless the receiver took another delivery after its previous failure.
        prop_assert_eq!(site.broken_promises(), Vec::<String>::new());
        match &trouble {
            // Payloads the receiver refuses (a 4xx) while it takes the others: every other one
            // is delivered (above), the webhook stays on.
            Trouble::Rejects(_) => {}
            Trouble::FailsOn(_) => {
                // The others wait at most for its first retry.
                for sent in site.delivered("w") {
                    prop_assert!(sent.at - created[&sent.delivery] <= BASE + 100, "{:?}", sent);
                }
            }
            Trouble::Down { to, .. } => {
                // Delivered in order before the outage; after it, everything still waiting
                // goes right after the first delivery, in order.
                let delivered = site.delivered("w");
                let back = delivered.iter().position(|s| s.at >= start + to);
                let (before, after) = delivered.split_at(back.unwrap_or(delivered.len()));
                let in_order = |list: &[&Sent]| {
                    list.windows(2).all(|w| index(&w[0].delivery) < index(&w[1].delivery))
                };
                prop_assert!(in_order(before), "{:?}", before);
                if let Some((first, rest)) = after.split_first() {
                    prop_assert!(in_order(rest), "{:?}", after);
                    let waiting: Vec<&&Sent> = rest
                        .iter()
                        .filter(|s| created[&s.delivery] < first.at)
                        .collect();
                    for sent in waiting {
                        prop_assert!(sent.at <= first.at + 100, "{:?} after {:?}", sent, first);
                    }
                }
            }
        }
    }
}

/// A receiver over days: down in some windows, taking one request here and there even then,
/// and refusing one event throughout, maybe.
#[derive(Debug, Clone)]
struct Weather {
    /// (from, to), ms after the first event.
    down: Vec<(i64, i64)>,
    /// Times (ms after the first event) after which the receiver takes one request, down or not.
    takes_one_after: Vec<i64>,
    /// An event it always refuses.
    refuses: Option<usize>,
}

fn weather(events: usize) -> impl Strategy<Value = Weather> {
    let hour = 3600 * 1000i64;
    (
        proptest::collection::vec((0..24 * hour, 0..12 * hour), 0..=3),
        proptest::collection::vec(0..36 * hour, 0..=3),
        proptest::option::of(0..events),
    )
        .prop_map(|(down, takes_one_after, refuses)| Weather {
            down: down
                .into_iter()
                .map(|(from, len)| (from, from + len))
                .collect(),
            takes_one_after,
            refuses,
        })
}

fn days_of_weather() -> impl Strategy<Value = (i64, Vec<i64>, Weather)> {
    let hour = 3600 * 1000i64;
    (
        prop_oneof![Just(50i64), Just(1_000i64), Just(5_000i64)],
        proptest::collection::vec(prop_oneof![Just(0i64), 0..60_000i64, 0..3 * hour], 1..10),
    )
        .prop_flat_map(|(base, gaps)| {
            let n = gaps.len();
            (Just(base), Just(gaps), weather(n))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn nothing_is_given_up_unless_the_receiver_takes_the_others_and_nothing_is_switched_off_in_less_than_six_hours(
        (base, gaps, weather) in days_of_weather(),
    ) {
        use std::cell::RefCell;
        let start = 1_000_000;
        let sky = weather.clone();
        // The times after which it takes one request, not yet used.
        let blips = RefCell::new(sky.takes_one_after.clone());
        let receiver: Receiver = Box::new(move |id, now| {
            if sky.refuses == Some(index(id)) {
                return Some(500);
            }
            let mut blips = blips.borrow_mut();
            if let Some(at) = blips.iter().position(|b| now >= start + b) {
                blips.remove(at);
                return Some(204);
            }
            let down = sky
                .down
                .iter()
                .any(|(from, to)| now >= start + from && now < start + to);
            Some(if down { 502 } else { 204 })
        });
        let mut site = Site::new(base, vec![hook("w", receiver)]);
        let evs = events(start, &gaps);
        site.play(&evs, start + 4 * 24 * 3600 * 1000);

        let delivered = site.delivered("w");
        let ids: BTreeSet<&str> = delivered.iter().map(|s| s.delivery.as_str()).collect();
        prop_assert_eq!(ids.len(), delivered.len(), "delivered twice: {:?}", delivered);
        prop_assert_eq!(site.broken_promises(), Vec::<String>::new());
        // The receiver is up for the last two days: each event it does not refuse is delivered,
        // kept (paused, the webhook switched off), or was given up on the terms above.
        let given_up: BTreeSet<&str> = site.given_up.iter().map(|g| g.delivery.as_str()).collect();
        for row in rows_of(&site.db, "w") {
            if weather.refuses == Some(index(&row.delivery_id)) {
                continue;
            }
            let settled = match row.status.as_str() {
                "delivered" => true,
                "paused" => !site.switched_off.is_empty(),
                "failed" => given_up.contains(row.delivery_id.as_str()),
                _ => false,
            };
            prop_assert!(settled, "{:?}", row);
        }
    }
}

#[test]
fn statements_on_waiting_deliveries_search_them_by_status_not_the_whole_log() {
    let db = open();
    for (name, statement) in [
        ("DUE", queue::DUE),
        ("RETRY", queue::RETRY),
        ("HOLD", queue::HOLD),
        ("RELEASE", queue::RELEASE),
        ("PROBE", queue::PROBE),
        ("REJOIN", queue::REJOIN),
        ("RETRY_SET_ASIDE", queue::RETRY_SET_ASIDE),
        ("LOOK_AGAIN_LATER", queue::LOOK_AGAIN_LATER),
        ("RESUME", queue::RESUME),
        ("PAUSE_ALL", queue::PAUSE_ALL),
        ("NEXT_DUE", queue::NEXT_DUE),
    ] {
        let mut plan = db
            .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .expect("plan prepares");
        let values = (0..plan.parameter_count()).map(|_| Value::Integer(1));
        let steps: Vec<String> = plan
            .query_map(params_from_iter(values), |row| row.get::<_, String>(3))
            .expect("plan runs")
            .map(|step| step.expect("plan step"))
            .collect();
        let search = &steps[0];
        let by_status = search.contains("INDEX deliveries_due (status=?");
        let by_id = search.contains("USING INDEX sqlite_autoindex_deliveries_1 (id=?)");
        assert!(by_status || by_id, "{name}: {steps:?}");
        assert!(!search.contains("SCAN"), "{name}: {steps:?}");
    }
}

#[test]
fn switched_on_without_the_queue_hearing_of_it_the_paused_ones_resume_with_attempts_left() {
    let mut site = Site::new(5_000, vec![hook("w", always(503))]);
    let evs = events(site.now, &[0, 10, 10]);
    site.play(&evs, site.now + 30 * 3600 * 1000);
    assert_eq!(site.switched_off, ["w"]);
    // Switched on, but the queue is not told (the message was lost); the receiver still fails.
    site.hooks[0].enabled = true;
    site.hooks[0].streak = FailureStreak::default();
    let now = site.now;
    site.play(&[], now + PAUSED_RECHECK_MS + 60_000);
    // The look-again found it on and resumed them all: none was sent with the attempts it had
    // when paused (that would give one at its last attempt up after a single try).
    let rows = rows_of(&site.db, "w");
    assert!(rows.iter().all(|r| r.status != "failed"), "{rows:?}");
    // The receiver is back: each goes once; after the one that finds it back, in order.
    site.hooks[0].receiver = always(204);
    let now = site.now;
    site.play(&[], now + 24 * 3600 * 1000);
    let delivered: Vec<usize> = site
        .delivered("w")
        .iter()
        .map(|s| index(&s.delivery))
        .collect();
    let mut each = delivered.clone();
    each.sort();
    assert_eq!(each, [0, 1, 2]);
    assert!(
        delivered[1..].windows(2).all(|w| w[0] < w[1]),
        "{delivered:?}"
    );
}
