//! Protocol v1: JSON frames over WebSocket (and the same shapes over HTTP).
//! docs/protocol.md is the written contract; the integration tests hold the server to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::limits::MAX_FRAME_BYTES;

pub const PROTOCOL_VERSION: u32 = 1;

/// The exact ping text answered by the runtime without waking a hibernated object.
pub const PING_FRAME: &str = r#"{"v":1,"type":"ping"}"#;
/// The exact answer to [`PING_FRAME`].
pub const PONG_FRAME: &str = r#"{"v":1,"type":"pong"}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Visitor,
    Agent,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Visitor => "visitor",
            Role::Agent => "agent",
            Role::System => "system",
        }
    }

    /// The role a stored `as_str` name stands for; any other name is the system's.
    pub fn from_stored(name: &str) -> Role {
        match name {
            "visitor" => Role::Visitor,
            "agent" => Role::Agent,
            _ => Role::System,
        }
    }
}

/// Someone taking part in a conversation, as other participants see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The longest display name shown as a message's author, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// A name as other participants see it: control characters (a NUL would cut the name short in
/// SQLite's JSON functions, a newline would break the layout) and bidirectional overrides (which
/// disguise what follows) removed, surrounding spaces trimmed, at most `max_chars` characters.
pub fn display_name(raw: &str, max_chars: usize) -> String {
    let kept: String = raw
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_override(*c))
        .collect();
    kept.trim()
        .chars()
        .take(max_chars)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// A bidirectional embedding, override or isolate (U+202A–U+202E, U+2066–U+2069): invisible,
/// it reorders what follows, so it can make a name or a file's extension read as another.
pub(crate) fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Closed => "closed",
        }
    }
}

crate::tagged_enum! {
    /// What an event says; `kind` and `body` on the wire.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "kind", content = "body", rename_all = "snake_case")]
    pub enum EventPayload {
        Message {
            text: String,
        },
        Created {
            /// The form the visitor started with: `prechat` or `offline`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            form: Option<String>,
            /// The form's answers.
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            fields: BTreeMap<String, String>,
        },
        Assigned {
            agent: Participant,
        },
        Closed {},
        Reopened {},
        /// A private note between agents.
        Note {
            text: String,
        },
        /// A file or image the participant uploaded.
        File {
            file: FileRef,
        },
        /// The visitor's satisfaction rating (1–5) and comment, asked when a conversation closes.
        Rated {
            score: u8,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            comment: Option<String>,
        },
        /// A machine translation of the message at `of`, or why there is none (`failed`). The
        /// original stays the event of record; this follows it and never holds it up.
        Translation {
            of: u64,
            from: String,
            to: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            text: Option<String>,
            provider: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            failed: Option<String>,
        },
        /// The visitor asked for a person; the conversation joins the human queue.
        Handoff {},
        /// What a visitor receives in place of a note: the seq stays gap-free, the note stays private.
        Hidden {},
    }
}

impl EventPayload {
    pub fn kind(&self) -> &'static str {
        match self {
            EventPayload::Message { .. } => "message",
            EventPayload::Created { .. } => "created",
            EventPayload::Assigned { .. } => "assigned",
            EventPayload::Closed {} => "closed",
            EventPayload::Reopened {} => "reopened",
            EventPayload::Note { .. } => "note",
            EventPayload::File { .. } => "file",
            EventPayload::Rated { .. } => "rated",
            EventPayload::Translation { .. } => "translation",
            EventPayload::Handoff {} => "handoff",
            EventPayload::Hidden {} => "hidden",
        }
    }
}

/// An uploaded file as the log records it; the bytes are fetched through the Worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub mime: String,
    pub size: u64,
    /// A raster image that may be shown inline.
    pub image: bool,
}

/// One entry of a conversation's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    #[serde(flatten)]
    pub payload: EventPayload,
    pub author: Participant,
    /// Server time, Unix milliseconds.
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// Personal data in the text was masked for this reader.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub masked: bool,
}

impl Event {
    /// The event with the visitor's personal data masked wherever the visitor's words appear:
    /// their messages, the answers of the form they started with, their rating's comment, and
    /// translations (whose text may be a visitor message's; an agent's translated text is
    /// masked too, which only hides what the agent wrote themselves).
    pub fn masked_pii(&self) -> Event {
        let mut masked = false;
        let mut mask = |text: &mut String| {
            let (clean, changed) = crate::pii::mask(text);
            masked |= changed;
            *text = clean;
        };
        let mut payload = self.payload.clone();
        match (&mut payload, self.author.role) {
            (EventPayload::Message { text }, Role::Visitor) => mask(text),
            // A visitor may name a file after themselves (`lin@example.com.pdf`).
            (EventPayload::File { file }, Role::Visitor) => mask(&mut file.name),
            (EventPayload::Created { fields, .. }, _) => fields.values_mut().for_each(mask),
            (
                EventPayload::Rated {
                    comment: Some(text),
                    ..
                },
                Role::Visitor,
            )
            | (
                EventPayload::Translation {
                    text: Some(text), ..
                },
                _,
            ) => mask(text),
            _ => return self.clone(),
        }
        Event {
            payload,
            masked: self.masked || masked,
            ..self.clone()
        }
    }

    /// The event as `role` may see it: visitors never see notes.
    pub fn for_role(&self, role: Role) -> Event {
        match (&self.payload, role) {
            (EventPayload::Note { .. }, Role::Visitor) => Event {
                payload: EventPayload::Hidden {},
                author: Participant {
                    id: "system".into(),
                    role: Role::System,
                    name: None,
                },
                client_msg_id: None,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }
}

crate::tagged_enum! {
    tag = "type";
    /// Frames a client sends.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub enum ClientFrame {
        Hello {
            token: String,
            #[serde(default)]
            after: Option<u64>,
            #[serde(default)]
            epoch: Option<String>,
            #[serde(default)]
            lang: Option<String>,
        },
        Send {
            client_msg_id: String,
            #[serde(default)]
            text: String,
            /// A private note (agents only).
            #[serde(default)]
            note: bool,
            /// Posts this uploaded file (its id from the upload) instead of text.
            #[serde(default)]
            file: Option<String>,
        },
        Typing {
            #[serde(default = "default_true")]
            active: bool,
        },
        Read {
            seq: u64,
        },
        Ping {},
    }
}

fn default_true() -> bool {
    true
}

/// Why a client must drop its local copy and load history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The client's events belong to another incarnation of the log.
    EpochMismatch,
    /// More events were missed than the replay window holds.
    GapTooLarge,
    /// The client claims to have seen events that do not exist.
    AheadOfHead,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        conversation: String,
        epoch: String,
        head: u64,
        status: Status,
        participant: Participant,
        reads: BTreeMap<String, u64>,
    },
    Event(Event),
    Ack {
        client_msg_id: String,
        seq: u64,
        duplicate: bool,
    },
    Typing {
        participant: Participant,
        active: bool,
    },
    Read {
        participant: String,
        seq: u64,
    },
    Reset {
        epoch: String,
        head: u64,
        reason: ResetReason,
    },
    /// Answer to a long-poll or an HTTP replay: the events after the asked `seq`.
    Events {
        epoch: String,
        head: u64,
        events: Vec<Event>,
        reads: BTreeMap<String, u64>,
    },
    /// A page of history, oldest first; `next_before` pages further back.
    History {
        epoch: String,
        head: u64,
        events: Vec<Event>,
        next_before: Option<u64>,
    },
    /// The visitor's place in the waiting queue (not stored; sent while it changes).
    Queue {
        position: usize,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// With `invalid_request`: the request's field that was refused, as a path into its
        /// JSON body (`retention_days`, `routing.hours`, `url`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    Pong {},
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u32,
    #[serde(flatten)]
    frame: &'a ServerFrame,
}

impl ServerFrame {
    /// The frame as sent on the wire, with its protocol version.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Versioned {
            v: PROTOCOL_VERSION,
            frame: self,
        })
        .unwrap_or_else(|_| {
            // Serialising these plain types cannot fail; keep a valid frame regardless.
            format!(
                r#"{{"v":1,"type":"error","code":"internal","message":"{}"}}"#,
                ErrorCode::Internal
            )
        })
    }

    /// The frame as `role` may see it (notes hidden from visitors).
    pub fn for_role(&self, role: Role) -> ServerFrame {
        self.for_reader(role, true)
    }

    /// The frame as a reader sees it: notes hidden from visitors, and personal data in
    /// visitors' messages masked unless `sees_pii`.
    pub fn for_reader(&self, role: Role, sees_pii: bool) -> ServerFrame {
        let view = |e: &Event| {
            let e = e.for_role(role);
            if sees_pii {
                e
            } else {
                e.masked_pii()
            }
        };
        let redact = |events: &[Event]| events.iter().map(view).collect();
        match self {
            ServerFrame::Event(e) => ServerFrame::Event(view(e)),
            ServerFrame::Events {
                epoch,
                head,
                events,
                reads,
            } => ServerFrame::Events {
                epoch: epoch.clone(),
                head: *head,
                events: redact(events),
                reads: reads.clone(),
            },
            ServerFrame::History {
                epoch,
                head,
                events,
                next_before,
            } => ServerFrame::History {
                epoch: epoch.clone(),
                head: *head,
                events: redact(events),
                next_before: *next_before,
            },
            other => other.clone(),
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
        ServerFrame::Error {
            code,
            message: message.into(),
            client_msg_id: None,
            retry_after_ms: None,
            field: None,
        }
    }
}

/// Parses one client frame, enforcing size and version before anything else.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, ErrorCode> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ErrorCode::FrameTooLarge);
    }
    let kind = frame_kind(text, &["hello", "send", "typing", "read", "ping"])?;
    ClientFrame::from_json_as(text, &kind).map_err(|_| ErrorCode::BadFrame)
}

/// The `type` of a frame sent to the server, once its protocol version (`v`) is checked and the
/// type is one of `known`: unparseable is `bad_frame`, another version `unsupported_version`,
/// another type `unknown_frame_type`. Only these two fields are read here.
pub fn frame_kind(text: &str, known: &[&str]) -> Result<String, ErrorCode> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        v: Option<serde_json::Value>,
        #[serde(default, rename = "type")]
        kind: Option<serde_json::Value>,
    }
    let head: Head = crate::json::from_str(text).map_err(|_| ErrorCode::BadFrame)?;
    if head.v.and_then(|v| v.as_u64()) != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(ErrorCode::UnsupportedVersion);
    }
    match head.kind {
        Some(serde_json::Value::String(kind)) if known.contains(&kind.as_str()) => Ok(kind),
        Some(serde_json::Value::String(_)) => Err(ErrorCode::UnknownFrameType),
        _ => Err(ErrorCode::BadFrame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_masked_wherever_the_visitors_words_appear() {
        let event = |payload: EventPayload, role: Role| Event {
            seq: 2,
            payload,
            author: Participant {
                id: "x".into(),
                role,
                name: None,
            },
            at: 0,
            client_msg_id: None,
            masked: false,
        };
        let form = event(
            EventPayload::Created {
                form: Some("prechat".into()),
                fields: [
                    ("email".to_string(), "ann@example.org".to_string()),
                    ("name".to_string(), "Ann".to_string()),
                ]
                .into(),
            },
            Role::System,
        )
        .masked_pii();
        assert!(form.masked);
        let EventPayload::Created { fields, .. } = &form.payload else {
            panic!("{form:?}")
        };
        assert_eq!(fields["email"], "a***@example.org");
        assert_eq!(fields["name"], "Ann");
        let translated = event(
            EventPayload::Translation {
                of: 1,
                from: "zh".into(),
                to: "en".into(),
                text: Some("write to ann@example.org".into()),
                provider: "p".into(),
                failed: None,
            },
            Role::System,
        )
        .masked_pii();
        assert!(matches!(&translated.payload,
            EventPayload::Translation { text: Some(t), .. } if t == "write to a***@example.org"));
        let rated = event(
            EventPayload::Rated {
                score: 5,
                comment: Some("call me on +1 555 123 4567".into()),
            },
            Role::Visitor,
        )
        .masked_pii();
        assert!(rated.masked);
        // Nothing personal: the event as it was, not flagged.
        let plain = event(
            EventPayload::Created {
                form: None,
                fields: BTreeMap::new(),
            },
            Role::System,
        );
        assert_eq!(plain.masked_pii(), plain);
    }

    #[test]
    fn display_names_lose_controls_and_direction_overrides_and_are_bounded() {
        assert_eq!(display_name(" Ana\u{0}\u{202E} Lee\n", 100), "Ana Lee");
        assert_eq!(display_name("\u{0}\t\u{2066}", 100), "");
        assert_eq!(display_name("李小明", 100), "李小明");
        // Cut at a character boundary, with no trailing space left by the cut.
        assert_eq!(display_name("Ann Marie", 4), "Ann");
        assert_eq!(display_name("李小明", 2), "李小");
    }

    #[test]
    fn parses_each_client_frame() {
        assert_eq!(
            parse_client_frame(r#"{"v":1,"type":"hello","token":"t","after":5,"epoch":"e_x"}"#),
            Ok(ClientFrame::Hello {
                token: "t".into(),
                after: Some(5),
                epoch: Some("e_x".into()),
                lang: None
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"v":1,"type":"send","client_msg_id":"m1","text":"hi"}"#),
            Ok(ClientFrame::Send {
                client_msg_id: "m1".into(),
                text: "hi".into(),
                note: false,
                file: None
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"v":1,"type":"typing"}"#),
            Ok(ClientFrame::Typing { active: true })
        );
        assert_eq!(
            parse_client_frame(r#"{"v":1,"type":"read","seq":3}"#),
            Ok(ClientFrame::Read { seq: 3 })
        );
        assert_eq!(parse_client_frame(PING_FRAME), Ok(ClientFrame::Ping {}));
    }

    #[test]
    fn rejects_bad_frames_with_stable_codes() {
        assert_eq!(parse_client_frame("{nope"), Err(ErrorCode::BadFrame));
        assert_eq!(parse_client_frame("[1]"), Err(ErrorCode::BadFrame));
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#),
            Err(ErrorCode::UnsupportedVersion)
        );
        assert_eq!(
            parse_client_frame(r#"{"v":2,"type":"ping"}"#),
            Err(ErrorCode::UnsupportedVersion)
        );
        assert_eq!(
            parse_client_frame(r#"{"v":1,"type":"shout"}"#),
            Err(ErrorCode::UnknownFrameType)
        );
        assert_eq!(
            parse_client_frame(r#"{"v":1,"type":"send","text":"no id"}"#),
            Err(ErrorCode::BadFrame)
        );
        assert_eq!(
            parse_client_frame(r#"{"v":1,"type":"read","seq":-1}"#),
            Err(ErrorCode::BadFrame)
        );
        let big = format!(
            r#"{{"v":1,"type":"send","client_msg_id":"m","text":"{}"}}"#,
            "a".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(parse_client_frame(&big), Err(ErrorCode::FrameTooLarge));
    }

    #[test]
    fn server_frames_carry_version_and_flat_events() {
        let frame = ServerFrame::Event(Event {
            seq: 7,
            payload: EventPayload::Message { text: "hi".into() },
            author: Participant {
                id: "v_1".into(),
                role: Role::Visitor,
                name: None,
            },
            at: 1000,
            client_msg_id: Some("m1".into()),
            masked: false,
        });
        let value: serde_json::Value = crate::json::from_str(&frame.to_json()).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["type"], "event");
        assert_eq!(value["seq"], 7);
        assert_eq!(value["kind"], "message");
        assert_eq!(value["body"]["text"], "hi");
        assert_eq!(value["author"]["role"], "visitor");
        let back: ServerFrame = serde_json::from_value(value).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn pong_constant_matches_serialisation() {
        assert_eq!(ServerFrame::Pong {}.to_json(), PONG_FRAME);
    }
}
