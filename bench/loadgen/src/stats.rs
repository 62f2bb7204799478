//! Latency histograms and counters, and their JSON summaries.

use anyhow::Result;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// Latencies are recorded in µs, up to 10 minutes, to 3 significant digits.
const MAX_US: u64 = 600_000_000;

pub fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_US, 3)?)
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Serialize, Clone, Default)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }

    /// Nearest-rank percentiles of a small sample (connect and resume timings, in µs).
    pub fn of_samples(samples_us: &mut [u64]) -> Summary {
        if samples_us.is_empty() {
            return Summary::default();
        }
        samples_us.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * samples_us.len() as f64).ceil() as usize).clamp(1, samples_us.len());
            ms(samples_us[i - 1])
        };
        let total: u64 = samples_us.iter().sum();
        Summary {
            count: samples_us.len() as u64,
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            p999: rank(0.999),
            max: ms(samples_us[samples_us.len() - 1]),
            mean: ms(total) / samples_us.len() as f64,
        }
    }
}

/// The measured window is cut into slices this long (by scheduled send time) to tell stalls
/// (a few slices where everything is late) from general queueing (every slice a bit late).
pub const SLICE_US: u64 = 100_000;
/// Slices reported as slow: their slowest delivery took longer than this.
const SLOW_SLICE_US: u64 = 20_000;
/// Most slow slices listed in a report (the slowest ones).
const SLOW_SLICES_LISTED: usize = 20;

/// What happened to the messages scheduled inside one phase's measured window.
pub struct PhaseStats {
    /// Send → each other participant's `event` (from the scheduled send time).
    pub end_to_end: Histogram<u64>,
    /// Send → the sender's `ack` (from the scheduled send time).
    pub ack: Histogram<u64>,
    /// Send → each other participant's `event`, from the moment the frame was written: the
    /// difference to `end_to_end` is the generator's own lateness plus queueing at the sender.
    pub end_to_end_from_write: Histogram<u64>,
    pub sent: u64,
    pub acked: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub send_failures: u64,
    pub errors: BTreeMap<String, u64>,
    /// The slowest end-to-end delivery of the messages scheduled in each slice, in µs.
    pub slowest_per_slice: Vec<u64>,
}

impl PhaseStats {
    pub fn new() -> Result<PhaseStats> {
        Ok(PhaseStats {
            end_to_end: histogram()?,
            ack: histogram()?,
            end_to_end_from_write: histogram()?,
            sent: 0,
            acked: 0,
            expected_deliveries: 0,
            delivered: 0,
            send_failures: 0,
            errors: BTreeMap::new(),
            slowest_per_slice: Vec::new(),
        })
    }

    /// Records a delivery `latency_us` after its scheduled send, `offset_us` into the window.
    pub fn record_delivery(&mut self, offset_us: u64, latency_us: u64) {
        self.delivered += 1;
        self.end_to_end.saturating_record(latency_us);
        let slice = (offset_us / SLICE_US) as usize;
        if self.slowest_per_slice.len() <= slice {
            self.slowest_per_slice.resize(slice + 1, 0);
        }
        self.slowest_per_slice[slice] = self.slowest_per_slice[slice].max(latency_us);
    }

    fn slow_slices(&self) -> SlowSlices {
        let mut slow: Vec<SlowSlice> = self
            .slowest_per_slice
            .iter()
            .enumerate()
            .filter(|(_, worst)| **worst > SLOW_SLICE_US)
            .map(|(i, worst)| SlowSlice {
                at_ms: (i as u64 * SLICE_US) / 1000,
                slowest_ms: ms(*worst),
            })
            .collect();
        let count = slow.len();
        slow.sort_by(|a, b| b.slowest_ms.total_cmp(&a.slowest_ms));
        slow.truncate(SLOW_SLICES_LISTED);
        slow.sort_by_key(|s| s.at_ms);
        SlowSlices {
            slice_ms: SLICE_US / 1000,
            slices: self.slowest_per_slice.len(),
            over_20ms: count,
            slowest: slow,
        }
    }

    pub fn report(
        &self,
        name: &str,
        rate_per_socket: f64,
        senders: usize,
        measure_ms: u64,
    ) -> PhaseReport {
        let seconds = measure_ms as f64 / 1000.0;
        PhaseReport {
            name: name.to_owned(),
            rate_per_socket,
            sending_sockets: senders,
            planned_inbound_per_s: rate_per_socket * senders as f64,
            measured_s: seconds,
            sent: self.sent,
            acked: self.acked,
            expected_deliveries: self.expected_deliveries,
            delivered: self.delivered,
            lost_or_late: self.expected_deliveries.saturating_sub(self.delivered),
            unacked: self.sent.saturating_sub(self.acked),
            send_failures: self.send_failures,
            errors: self.errors.clone(),
            inbound_per_s: self.sent as f64 / seconds,
            delivered_per_s: self.delivered as f64 / seconds,
            end_to_end_ms: Summary::of(&self.end_to_end),
            ack_ms: Summary::of(&self.ack),
            end_to_end_from_write_ms: Summary::of(&self.end_to_end_from_write),
            slow_slices: self.slow_slices(),
        }
    }
}

/// Slices of the measured window (by scheduled send time) whose slowest delivery took over
/// 20 ms: a handful holding the p99 is a stall, most of them is a queue.
#[derive(Debug, Serialize)]
pub struct SlowSlices {
    pub slice_ms: u64,
    pub slices: usize,
    pub over_20ms: usize,
    /// The slowest of them, in time order.
    pub slowest: Vec<SlowSlice>,
}

#[derive(Debug, Serialize)]
pub struct SlowSlice {
    /// Offset of the slice in the measured window.
    pub at_ms: u64,
    pub slowest_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub rate_per_socket: f64,
    pub sending_sockets: usize,
    pub planned_inbound_per_s: f64,
    pub measured_s: f64,
    pub sent: u64,
    pub acked: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    /// Deliveries still missing when the phase's drain time ran out.
    pub lost_or_late: u64,
    pub unacked: u64,
    pub send_failures: u64,
    /// `error` frames by code.
    pub errors: BTreeMap<String, u64>,
    pub inbound_per_s: f64,
    pub delivered_per_s: f64,
    pub end_to_end_ms: Summary,
    pub ack_ms: Summary,
    pub end_to_end_from_write_ms: Summary,
    pub slow_slices: SlowSlices,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let s = Summary::of_samples(&mut samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
    }
}
