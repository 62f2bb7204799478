//! Parley's load generator: `loadgen <plan.json>`.
//!
//! Opens the plan's WebSockets (each signs in with its own `hello`), optionally drives load
//! phases through them at a fixed arrival rate, and prints one JSON report on stdout. Progress
//! goes to stderr as one JSON object per line (`measure_start`, `measure_end`, `holding`, …) so
//! the orchestrator (bench/run.mjs) can sample the server's CPU and memory at the right moments.

mod connect;
mod frames;
mod load;
mod plan;
mod stats;

use anyhow::{anyhow, Context, Result};
use futures_util::future::join_all;
use futures_util::SinkExt;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

use connect::Opened;
use plan::Plan;
use stats::{PhaseReport, Summary};

/// Bound on closing every socket politely at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Distinct failure messages kept in the report.
const FAILURE_EXAMPLES: usize = 5;

#[derive(Serialize)]
struct Report {
    connect: ConnectReport,
    phases: Vec<PhaseReport>,
    stopped_early: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sockets: Option<Vec<SocketReport>>,
}

#[derive(Serialize, Default)]
struct ConnectReport {
    sockets: usize,
    opened: usize,
    failed: usize,
    failure_examples: Vec<String>,
    /// Sockets answered with `reset` instead of a replay.
    resets: usize,
    max_attempts: u32,
    /// TCP + WebSocket upgrade, per socket.
    connect_ms: Summary,
    /// First attempt → `welcome`, per socket.
    welcome_ms: Summary,
    /// First attempt → welcomed and holding every planned event, per socket.
    caught_up_ms: Summary,
    /// Generator start → the last socket caught up.
    all_caught_up_ms: f64,
}

#[derive(Serialize)]
struct SocketReport {
    opened: bool,
    last_seq: u64,
    epoch: Option<String>,
    caught_up_ms: Option<f64>,
}

fn main() -> ExitCode {
    match run_from_args() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{}",
                serde_json::json!({"event": "fatal", "error": format!("{e:#}")})
            );
            ExitCode::FAILURE
        }
    }
}

fn run_from_args() -> Result<()> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: loadgen <plan.json>")?;
    let plan = Plan::load(&path)?;
    // Taken just before the runtime's clock starts, so that send times on whole milliseconds
    // from here fall on (or a few µs before) the timer's 1 ms ticks and are not rounded late.
    let start = Instant::now();
    let runtime = if plan.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads)
            .enable_all()
            .build()?
    };
    let report = runtime.block_on(run(Arc::new(plan), start))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Opens every socket, at most `connect_concurrency` at a time; a failed socket is `None`.
async fn open_all(
    plan: &Arc<Plan>,
    start: Instant,
    report: &mut ConnectReport,
) -> Vec<Option<Opened>> {
    let retry_until =
        (plan.retry_until_ms > 0).then(|| start + Duration::from_millis(plan.retry_until_ms));
    let per_socket = Duration::from_millis(plan.connect_timeout_ms);
    let permits = Arc::new(Semaphore::new(plan.connect_concurrency));
    let tasks: Vec<_> = (0..plan.sockets.len())
        .map(|index| {
            let plan = plan.clone();
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await?;
                connect::open(&plan.sockets[index], start, retry_until, per_socket).await
            })
        })
        .collect();

    let mut opened = Vec::with_capacity(tasks.len());
    let (mut connect_us, mut welcome_us, mut caught_up_us) = (vec![], vec![], vec![]);
    for task in tasks {
        let outcome = task.await.map_err(|e| anyhow!(e)).and_then(|r| r);
        match outcome {
            Ok(o) => {
                connect_us.push(o.timing.connect_us);
                welcome_us.push(o.timing.welcome_us);
                caught_up_us.push(o.timing.caught_up_us);
                report.resets += usize::from(o.timing.reset);
                report.max_attempts = report.max_attempts.max(o.timing.attempts);
                report.all_caught_up_ms = report
                    .all_caught_up_ms
                    .max(o.timing.done_at_us as f64 / 1000.0);
                opened.push(Some(o));
            }
            Err(e) => {
                report.failed += 1;
                let message = format!("{e:#}");
                if report.failure_examples.len() < FAILURE_EXAMPLES
                    && !report.failure_examples.contains(&message)
                {
                    report.failure_examples.push(message);
                }
                opened.push(None);
            }
        }
    }
    report.sockets = plan.sockets.len();
    report.opened = report.sockets - report.failed;
    report.connect_ms = Summary::of_samples(&mut connect_us);
    report.welcome_ms = Summary::of_samples(&mut welcome_us);
    report.caught_up_ms = Summary::of_samples(&mut caught_up_us);
    opened
}

/// Keeps the sockets open until the orchestrator closes our stdin (or `hold_max_ms` passes).
async fn hold(plan: &Plan) {
    eprintln!("{}", serde_json::json!({"event": "holding"}));
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    let until_eof = async {
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = timeout(Duration::from_millis(plan.hold_max_ms), until_eof).await;
}

async fn run(plan: Arc<Plan>, start: Instant) -> Result<Report> {
    let mut connect_report = ConnectReport::default();
    let opened = open_all(&plan, start, &mut connect_report).await;
    eprintln!(
        "{}",
        serde_json::json!({"event": "connected", "opened": connect_report.opened,
                           "failed": connect_report.failed, "ms": start.elapsed().as_millis() as u64})
    );

    let mut sockets: Option<Vec<SocketReport>> = plan.report_sockets.then(|| {
        opened
            .iter()
            .map(|o| SocketReport {
                opened: o.is_some(),
                last_seq: o.as_ref().map_or(0, |o| o.last_seq),
                epoch: o.as_ref().and_then(|o| o.epoch.clone()),
                caught_up_ms: o.as_ref().map(|o| o.timing.caught_up_us as f64 / 1000.0),
            })
            .collect()
    });

    if plan.phases.is_empty() {
        if plan.hold {
            hold(&plan).await;
        }
        let mut open: Vec<_> = opened.into_iter().flatten().collect();
        let closing = join_all(open.iter_mut().map(|o| o.ws.close(None)));
        let _ = timeout(CLOSE_TIMEOUT, closing).await;
        return Ok(Report {
            connect: connect_report,
            phases: Vec::new(),
            stopped_early: false,
            sockets,
        });
    }

    // Load needs every socket: a run with some missing would measure a different workload.
    if connect_report.failed > 0 {
        return Err(anyhow!(
            "{} of {} sockets failed to open, e.g. {}",
            connect_report.failed,
            connect_report.sockets,
            connect_report.failure_examples.join(" | ")
        ));
    }
    let opened: Vec<Opened> = opened.into_iter().flatten().collect();
    let mut outcome = load::run(&plan, opened, start).await?;
    if let Some(sockets) = sockets.as_mut() {
        for (socket, last_seq) in sockets.iter_mut().zip(&outcome.last_seq) {
            socket.last_seq = socket.last_seq.max(*last_seq);
        }
    }
    if plan.hold {
        hold(&plan).await;
    }
    let closing = join_all(
        outcome
            .sinks
            .iter_mut()
            .map(|sink| sink.send(Message::Close(None))),
    );
    let _ = timeout(CLOSE_TIMEOUT, closing).await;
    for reader in &outcome.readers {
        reader.abort();
    }
    Ok(Report {
        connect: connect_report,
        phases: outcome.phases,
        stopped_early: outcome.stopped_early,
        sockets,
    })
}
