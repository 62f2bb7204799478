//! Opening one socket: connect (retrying while the server restarts), `hello`, then wait for the
//! `welcome` and, for a resume, every missed event up to the planned seq.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};

use crate::frames::ServerFrame;
use crate::plan::SocketPlan;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Pause between connect attempts while a restarting server is not listening yet.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

pub struct Opened {
    pub ws: Ws,
    pub timing: Timing,
    pub epoch: Option<String>,
    pub last_seq: u64,
}

/// Times of one socket's opening, in µs: `*_us` from this socket's first attempt,
/// `done_at_us` from the generator's start.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    pub attempts: u32,
    pub connect_us: u64,
    pub welcome_us: u64,
    pub caught_up_us: u64,
    pub done_at_us: u64,
    pub reset: bool,
}

fn since(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// Connects, retrying any failure until `retry_until` (a restarting server refuses, then may
/// answer 5xx while it loads).
async fn connect(url: &str, retry_until: Option<Instant>, attempts: &mut u32) -> Result<Ws> {
    loop {
        *attempts += 1;
        match connect_async_with_config(url, None, true).await {
            Ok((ws, _response)) => return Ok(ws),
            Err(e) => match retry_until {
                Some(deadline) if Instant::now() < deadline => sleep(RETRY_PAUSE).await,
                _ => return Err(anyhow!(e).context(format!("connecting to {url}"))),
            },
        }
    }
}

pub async fn open(
    plan: &SocketPlan,
    generator_start: Instant,
    retry_until: Option<Instant>,
    timeout: Duration,
) -> Result<Opened> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0;
    let mut ws = timeout_at(deadline, connect(&plan.url, retry_until, &mut attempts))
        .await
        .map_err(|_| anyhow!("connect timed out after {attempts} attempts"))??;
    let connect_us = since(start);
    ws.send(Message::text(plan.hello.to_string()))
        .await
        .context("sending hello")?;

    let target = plan.catch_up_to.unwrap_or(0);
    let mut held = plan.after();
    let mut welcome_us = None;
    let mut epoch = None;
    let mut reset = false;
    loop {
        if let Some(welcome_us) = welcome_us {
            if held >= target || reset {
                let timing = Timing {
                    attempts,
                    connect_us,
                    welcome_us,
                    caught_up_us: since(start),
                    done_at_us: since(generator_start),
                    reset,
                };
                return Ok(Opened {
                    ws,
                    timing,
                    epoch,
                    last_seq: held,
                });
            }
        }
        let message = timeout_at(deadline, ws.next())
            .await
            .map_err(|_| {
                anyhow!(
                    "no welcome or catch-up within {timeout:?} (holding seq {held} of {target})"
                )
            })?
            .ok_or_else(|| anyhow!("closed before welcome"))?
            .context("reading")?;
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => bail!("closed before welcome: {frame:?}"),
            _ => continue,
        };
        let frame: ServerFrame =
            serde_json::from_str(&text).with_context(|| format!("unreadable frame {text}"))?;
        match frame.kind.as_str() {
            "welcome" => {
                welcome_us = Some(since(start));
                epoch = frame.epoch;
                // A client that starts live (no `after`) holds everything up to the head.
                if plan.hello.get("after").is_none() {
                    held = held.max(frame.head.unwrap_or(0));
                }
            }
            "event" => held = held.max(frame.seq.unwrap_or(0)),
            "reset" => reset = true,
            "error" => bail!("refused: {text}"),
            _ => {}
        }
    }
}
