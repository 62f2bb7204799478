//! The load phases: every sending socket sends on a fixed schedule (open loop) while readers
//! record, for each message, the ack latency at its sender and the delivery latency at every
//! other socket of its room.

use anyhow::Result;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::connect::{Opened, Ws};
use crate::frames::{send_frame, ServerFrame, Stamp};
use crate::plan::Plan;
use crate::stats::{PhaseReport, PhaseStats};

/// Time between the controller announcing a phase and its first scheduled send.
const LEAD: Duration = Duration::from_millis(50);
/// How often the controller checks whether a phase's drain is complete.
const DRAIN_POLL: Duration = Duration::from_millis(25);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Go {
    Wait,
    Run { phase: usize, start_us: u64 },
    Stop,
}

/// One phase's counters plus its measured window (µs since the generator started), which the
/// controller sets before the phase starts.
struct PhaseSlot {
    measure_from_us: u64,
    measure_to_us: u64,
    stats: PhaseStats,
}

impl PhaseSlot {
    fn measured(&self, scheduled_us: u64) -> bool {
        scheduled_us >= self.measure_from_us && scheduled_us < self.measure_to_us
    }
}

struct Shared {
    start: Instant,
    phases: Vec<Mutex<PhaseSlot>>,
    rates: Vec<f64>,
    room_sizes: Vec<u32>,
    text_bytes: usize,
    seed: u64,
    /// Highest seq each socket has seen (for resuming later).
    last_seq: Vec<AtomicU64>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn slot(&self, phase: usize) -> Option<MutexGuard<'_, PhaseSlot>> {
        // A poisoned lock only means another task panicked; the counters are still usable.
        self.phases
            .get(phase)
            .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// A socket's first send falls at a fixed fraction of the period, different for every socket,
/// so that sockets do not all send at the same instant.
fn offset_fraction(seed: u64, socket: usize, phase: usize) -> f64 {
    // splitmix64
    let mut z = seed
        .wrapping_add((socket as u64) << 20)
        .wrapping_add(phase as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

async fn send_loop(
    socket: usize,
    room_size: u32,
    mut sink: SplitSink<Ws, Message>,
    shared: Arc<Shared>,
    mut go: watch::Receiver<Go>,
) -> SplitSink<Ws, Message> {
    let mut next_phase = 0;
    let mut n: u64 = 0;
    loop {
        let current = match go
            .wait_for(|g| match g {
                Go::Run { phase, .. } => *phase >= next_phase,
                Go::Stop => true,
                Go::Wait => false,
            })
            .await
        {
            Ok(g) => *g,
            Err(_) => return sink,
        };
        let Go::Run { phase, start_us } = current else {
            return sink;
        };
        next_phase = phase + 1;
        let rate = shared.rates[phase];
        if rate <= 0.0 {
            continue;
        }
        let period_us = 1e6 / rate;
        let send_until_us = match shared.slot(phase) {
            Some(slot) => slot.measure_to_us,
            None => return sink,
        };
        let mut k = offset_fraction(shared.seed, socket, phase);
        loop {
            // Whole milliseconds: the timer fires on 1 ms ticks, and a deadline between two
            // ticks would be rounded up, adding up to 1 ms of the generator's own lateness.
            let scheduled_us = (start_us + (k * period_us) as u64).div_ceil(1000) * 1000;
            if scheduled_us >= send_until_us || *go.borrow() == Go::Stop {
                break;
            }
            sleep_until(shared.start + Duration::from_micros(scheduled_us)).await;
            let stamp = Stamp {
                socket: socket as u32,
                phase: phase as u32,
                scheduled_us,
                sent_us: shared.now_us(),
            };
            let sent = sink
                .send(Message::text(send_frame(&stamp, n, shared.text_bytes)))
                .await;
            if let Some(mut slot) = shared.slot(phase) {
                if slot.measured(scheduled_us) {
                    match sent {
                        Ok(()) => {
                            slot.stats.sent += 1;
                            slot.stats.expected_deliveries += u64::from(room_size - 1);
                        }
                        Err(_) => slot.stats.send_failures += 1,
                    }
                }
            }
            if sent.is_err() {
                return sink;
            }
            n += 1;
            k += 1.0;
        }
    }
}

async fn read_loop(socket: usize, mut stream: SplitStream<Ws>, shared: Arc<Shared>) {
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) else {
            continue;
        };
        let now_us = shared.now_us();
        if let Some(seq) = frame.seq {
            if frame.kind == "event" {
                shared.last_seq[socket].fetch_max(seq, Ordering::Relaxed);
            }
        }
        let Some(stamp) = frame.stamp() else {
            continue;
        };
        let own = stamp.socket as usize == socket;
        let Some(mut slot) = shared.slot(stamp.phase as usize) else {
            continue;
        };
        if !slot.measured(stamp.scheduled_us) {
            continue;
        }
        let from_schedule = now_us.saturating_sub(stamp.scheduled_us).max(1);
        let measure_from_us = slot.measure_from_us;
        let stats = &mut slot.stats;
        match frame.kind.as_str() {
            "ack" if own => {
                stats.acked += 1;
                stats.ack.saturating_record(from_schedule);
            }
            // The server may echo a message to its sender's own socket: not a delivery.
            "event" if !own => {
                let offset = stamp.scheduled_us - measure_from_us;
                stats.record_delivery(offset, from_schedule);
                let from_write = now_us.saturating_sub(stamp.sent_us).max(1);
                stats.end_to_end_from_write.saturating_record(from_write);
            }
            "error" => {
                let code = frame.code.unwrap_or_else(|| "unknown".into());
                *stats.errors.entry(code).or_insert(0) += 1;
            }
            _ => {}
        }
    }
}

pub struct LoadOutcome {
    pub phases: Vec<PhaseReport>,
    pub stopped_early: bool,
    /// Write halves, for closing the sockets politely; the readers keep running.
    pub sinks: Vec<SplitSink<Ws, Message>>,
    pub readers: Vec<JoinHandle<()>>,
    pub last_seq: Vec<u64>,
}

fn progress(event: serde_json::Value) {
    eprintln!("{event}");
}

/// Runs every phase on the opened sockets, then hands the sockets back (reunited) for closing.
pub async fn run(plan: &Plan, opened: Vec<Opened>, start: Instant) -> Result<LoadOutcome> {
    let room_sizes = plan.room_sizes();
    let mut phases = Vec::new();
    for _ in &plan.phases {
        phases.push(Mutex::new(PhaseSlot {
            measure_from_us: u64::MAX,
            measure_to_us: 0,
            stats: PhaseStats::new()?,
        }));
    }
    let shared = Arc::new(Shared {
        start,
        phases,
        rates: plan.phases.iter().map(|p| p.rate_per_socket).collect(),
        room_sizes: room_sizes.clone(),
        text_bytes: plan.text_bytes,
        seed: plan.seed,
        last_seq: opened.iter().map(|o| AtomicU64::new(o.last_seq)).collect(),
    });
    let (go_tx, go_rx) = watch::channel(Go::Wait);

    let mut senders: Vec<JoinHandle<SplitSink<Ws, Message>>> = Vec::new();
    let mut idle_sinks = Vec::new();
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    for (index, o) in opened.into_iter().enumerate() {
        let (sink, stream) = o.ws.split();
        readers.push(tokio::spawn(read_loop(index, stream, shared.clone())));
        let socket_plan = &plan.sockets[index];
        if socket_plan.send {
            let room_size = shared.room_sizes[socket_plan.room as usize];
            senders.push(tokio::spawn(send_loop(
                index,
                room_size,
                sink,
                shared.clone(),
                go_rx.clone(),
            )));
        } else {
            idle_sinks.push(sink);
        }
    }
    let sending = senders.len();

    let mut reports = Vec::new();
    let mut stopped_early = false;
    let mut over_in_a_row = 0;
    for (index, phase) in plan.phases.iter().enumerate() {
        let start_us = (shared.now_us() + LEAD.as_micros() as u64).div_ceil(1000) * 1000;
        let measure_from_us = start_us + phase.warmup_ms * 1000;
        let measure_to_us = measure_from_us + phase.measure_ms * 1000;
        if let Some(mut slot) = shared.slot(index) {
            slot.measure_from_us = measure_from_us;
            slot.measure_to_us = measure_to_us;
        }
        progress(serde_json::json!({"event": "phase_start", "phase": index, "name": phase.name}));
        go_tx.send_replace(Go::Run {
            phase: index,
            start_us,
        });

        sleep_until(start + Duration::from_micros(measure_from_us)).await;
        progress(serde_json::json!({"event": "measure_start", "phase": index}));
        sleep_until(start + Duration::from_micros(measure_to_us)).await;
        progress(serde_json::json!({"event": "measure_end", "phase": index}));

        let drain_until = Instant::now() + Duration::from_millis(plan.drain_ms);
        loop {
            let complete = shared.slot(index).is_some_and(|slot| {
                slot.stats.delivered >= slot.stats.expected_deliveries
                    && slot.stats.acked + errors_total(&slot.stats) >= slot.stats.sent
            });
            if complete || Instant::now() >= drain_until {
                break;
            }
            sleep(DRAIN_POLL).await;
        }
        let report = match shared.slot(index) {
            Some(slot) => slot.stats.report(
                &phase.name,
                phase.rate_per_socket,
                sending,
                phase.measure_ms,
            ),
            None => continue,
        };
        progress(serde_json::json!({
            "event": "phase_done", "phase": index, "name": phase.name,
            "inbound_per_s": report.inbound_per_s, "p50_ms": report.end_to_end_ms.p50,
            "p99_ms": report.end_to_end_ms.p99, "lost_or_late": report.lost_or_late,
        }));
        let over = plan
            .stop_p99_ms
            .is_some_and(|limit| report.end_to_end_ms.p99 > limit || report.lost_or_late > 0);
        reports.push(report);
        over_in_a_row = if over { over_in_a_row + 1 } else { 0 };
        if over_in_a_row >= plan.stop_after.max(1) && index + 1 < plan.phases.len() {
            stopped_early = true;
            break;
        }
    }
    go_tx.send_replace(Go::Stop);

    let mut sinks = idle_sinks;
    for handle in senders {
        if let Ok(sink) = handle.await {
            sinks.push(sink);
        }
    }
    let last_seq = shared
        .last_seq
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect();
    Ok(LoadOutcome {
        phases: reports,
        stopped_early,
        sinks,
        readers,
        last_seq,
    })
}

fn errors_total(stats: &PhaseStats) -> u64 {
    stats.errors.values().sum()
}
