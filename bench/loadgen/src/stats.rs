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
        })
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
        }
    }
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
