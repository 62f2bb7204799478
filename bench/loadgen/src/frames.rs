//! The frames loadgen sends and the parts of the server's frames it reads.
//!
//! Each message's `client_msg_id` carries who sent it, in which phase, and when it was
//! *scheduled*, so every receiver measures latency from the schedule: a server that falls behind
//! cannot hide its delay by slowing the sender down (open loop). The server echoes the id in the
//! `ack` and in the `event` every participant receives.

use serde::Deserialize;

/// What a message id says about the message (times in µs since the generator started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub socket: u32,
    pub phase: u32,
    pub scheduled_us: u64,
    pub sent_us: u64,
}

const PREFIX: &str = "lg";

impl Stamp {
    /// `lg.<socket>.<phase>.<n>.<scheduled>.<sent>`: within the protocol's id alphabet, ≤ 64 chars.
    pub fn client_msg_id(&self, n: u64) -> String {
        format!(
            "{PREFIX}.{}.{}.{n}.{}.{}",
            self.socket, self.phase, self.scheduled_us, self.sent_us
        )
    }

    pub fn parse(id: &str) -> Option<Stamp> {
        let mut parts = id.split('.');
        if parts.next()? != PREFIX {
            return None;
        }
        let socket = parts.next()?.parse().ok()?;
        let phase = parts.next()?.parse().ok()?;
        let _n: u64 = parts.next()?.parse().ok()?;
        let scheduled_us = parts.next()?.parse().ok()?;
        let sent_us = parts.next()?.parse().ok()?;
        Some(Stamp {
            socket,
            phase,
            scheduled_us,
            sent_us,
        })
    }
}

/// A protocol v1 `send` frame whose text also carries the schedule, padded to `text_bytes`.
pub fn send_frame(stamp: &Stamp, n: u64, text_bytes: usize) -> String {
    let mut text = format!("bench {} ", stamp.scheduled_us);
    while text.len() < text_bytes {
        text.push('x');
    }
    format!(
        r#"{{"v":1,"type":"send","client_msg_id":"{}","text":"{}"}}"#,
        stamp.client_msg_id(n),
        text
    )
}

/// The fields of a server frame that the generator looks at; the rest is ignored.
#[derive(Debug, Deserialize)]
pub struct ServerFrame {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub head: Option<u64>,
    #[serde(default)]
    pub epoch: Option<String>,
    #[serde(default)]
    pub client_msg_id: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

impl ServerFrame {
    pub fn stamp(&self) -> Option<Stamp> {
        self.client_msg_id.as_deref().and_then(Stamp::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_the_id_and_fits_the_protocol() {
        let stamp = Stamp {
            socket: 123_456,
            phase: 7,
            scheduled_us: 86_400_000_000,
            sent_us: 86_400_000_321,
        };
        let id = stamp.client_msg_id(99_999);
        assert!(id.len() <= 64, "{id}");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)));
        assert_eq!(Stamp::parse(&id), Some(stamp));
        assert_eq!(Stamp::parse("m-1732262400000-1"), None);
    }

    #[test]
    fn send_frame_is_json_with_padded_text() {
        let stamp = Stamp {
            socket: 1,
            phase: 0,
            scheduled_us: 5,
            sent_us: 6,
        };
        let frame: serde_json::Value =
            serde_json::from_str(&send_frame(&stamp, 0, 40)).expect("valid JSON");
        assert_eq!(frame["type"], "send");
        assert_eq!(frame["text"].as_str().map(str::len), Some(40));
    }
}
