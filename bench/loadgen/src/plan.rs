//! The plan bench/run.mjs writes for one loadgen run: which sockets to open, how each signs in,
//! and the load phases to drive through them.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Deserialize)]
pub struct Plan {
    pub sockets: Vec<SocketPlan>,
    /// Load phases, run one after another on the same sockets; none = connect only.
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// Sockets opened at once; 1 opens them one by one (resume timings without contention).
    #[serde(default = "defaults::connect_concurrency")]
    pub connect_concurrency: usize,
    /// Bound on one socket's connect, hello and catch-up.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Keep retrying failed connects this long from start (a restarting server); 0 = no retry.
    #[serde(default)]
    pub retry_until_ms: u64,
    /// After each phase, wait this long for its late acks and deliveries before judging it.
    #[serde(default = "defaults::drain_ms")]
    pub drain_ms: u64,
    /// Skip the remaining phases once `stop_after` phases in a row had an end-to-end p99 above
    /// this or lost messages (a rate sweep; one bad phase can be a hiccup of a shared machine).
    #[serde(default)]
    pub stop_p99_ms: Option<f64>,
    #[serde(default = "defaults::stop_after")]
    pub stop_after: usize,
    /// Keep the sockets open after the run until stdin closes (memory measurements).
    #[serde(default)]
    pub hold: bool,
    #[serde(default = "defaults::hold_max_ms")]
    pub hold_max_ms: u64,
    /// Report each socket's last seen seq and epoch (to resume from them later).
    #[serde(default)]
    pub report_sockets: bool,
    /// Length of each message's text.
    #[serde(default = "defaults::text_bytes")]
    pub text_bytes: usize,
    /// Runtime threads; 1 keeps the generator on one core, leaving the other to the server.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
    /// Varies the send offsets between runs.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Deserialize)]
pub struct SocketPlan {
    pub url: String,
    /// The first frame, sent as is (protocol v1 `hello`).
    pub hello: Value,
    /// Sockets with the same room are one conversation: each receives the others' messages.
    pub room: u32,
    /// Connected means: welcomed, and holding events up to this seq (a resume).
    #[serde(default)]
    pub catch_up_to: Option<u64>,
    /// Whether this socket sends during the load phases.
    #[serde(default = "defaults::yes")]
    pub send: bool,
}

#[derive(Debug, Deserialize)]
pub struct Phase {
    pub name: String,
    /// Messages per second sent by every sending socket.
    pub rate_per_socket: f64,
    /// Sent but not measured: lets connections, caches and the JIT settle.
    pub warmup_ms: u64,
    pub measure_ms: u64,
}

mod defaults {
    pub fn connect_concurrency() -> usize {
        256
    }
    pub fn connect_timeout_ms() -> u64 {
        30_000
    }
    pub fn drain_ms() -> u64 {
        2_000
    }
    pub fn hold_max_ms() -> u64 {
        600_000
    }
    pub fn text_bytes() -> usize {
        64
    }
    pub fn threads() -> usize {
        1
    }
    pub fn stop_after() -> usize {
        1
    }
    pub fn yes() -> bool {
        true
    }
}

impl SocketPlan {
    /// The `after` of the hello frame: the seq this socket already holds.
    pub fn after(&self) -> u64 {
        self.hello.get("after").and_then(Value::as_u64).unwrap_or(0)
    }
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading plan {}", path.display()))?;
        let plan: Plan = serde_json::from_str(&text)
            .with_context(|| format!("parsing plan {}", path.display()))?;
        plan.check()?;
        Ok(plan)
    }

    fn check(&self) -> Result<()> {
        if self.sockets.is_empty() {
            bail!("the plan has no sockets");
        }
        if self.connect_concurrency == 0 || self.threads == 0 {
            bail!("connect_concurrency and threads must be at least 1");
        }
        for phase in &self.phases {
            if !phase.rate_per_socket.is_finite() || phase.rate_per_socket < 0.0 {
                bail!("phase {}: rate_per_socket must be >= 0", phase.name);
            }
            if phase.measure_ms == 0 {
                bail!("phase {}: measure_ms must be > 0", phase.name);
            }
        }
        Ok(())
    }

    /// How many sockets share each room (index = room).
    pub fn room_sizes(&self) -> Vec<u32> {
        let rooms = self
            .sockets
            .iter()
            .map(|s| s.room)
            .max()
            .map_or(0, |r| r + 1);
        let mut sizes = vec![0u32; rooms as usize];
        for socket in &self.sockets {
            sizes[socket.room as usize] += 1;
        }
        sizes
    }
}
