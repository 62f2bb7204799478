//! The Worker → Durable Object interface. Only the Worker can reach the objects, and it
//! builds these requests itself after authenticating the caller, so the headers are trusted.
//!
//! The requests between the Worker and the objects keep one JSON shape across releases (an
//! `op` field names the request): during a deploy, new code calls objects still running the
//! old code for seconds to minutes, and the other way round.

use std::collections::BTreeMap;

use parley_core::token::Principal;
use parley_core::Participant;

use crate::sql_store::FileRow;
use serde::{Deserialize, Serialize};

/// Verified identity of the caller, JSON.
pub const PRINCIPAL_HEADER: &str = "x-parley-principal";
/// The caller's IP address, from the edge.
pub const IP_HEADER: &str = "x-parley-ip";
/// The caller's language tag.
pub const LANG_HEADER: &str = "x-parley-lang";
/// The site id the caller reached us through (WebSocket upgrades only).
pub const SITE_HEADER: &str = "x-parley-site";
/// Correlates the log lines of one request across the Worker and the object.
pub const TRACE_HEADER: &str = "x-parley-trace";

/// The base URL of internal requests; the host is never resolved.
pub const INTERNAL_BASE: &str = "https://internal.parley";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateConversation {
    pub id: String,
    pub site: String,
    pub team: String,
    pub visitor: String,
    pub epoch: String,
    /// The form the visitor started from (`prechat`, `offline`) and its answers.
    pub form: Option<String>,
    pub fields: BTreeMap<String, String>,
    /// The visitor's first message (the offline form's text), stored right after `created`.
    pub message: Option<String>,
    /// The site's bot answers first; routing to people waits for a hand-off.
    #[serde(default)]
    pub bot: bool,
    /// The language the visitor reads (for automated replies and translation).
    #[serde(default)]
    pub language: Option<String>,
    /// What routing picks a department by; kept for the bot's hand-off when a bot answers first.
    #[serde(default)]
    pub routing: parley_core::routing::RoutingContext,
}

parley_core::tagged_enum! {
    tag = "op";
    /// HTTP operations on a conversation, forwarded to its object.
    #[derive(Debug, Clone, Serialize)]
    pub enum Operation {
        Send {
            client_msg_id: String,
            #[serde(default)]
            text: String,
            #[serde(default)]
            note: bool,
            #[serde(default)]
            file: Option<String>,
        },
        /// Records a file the Worker checked and stored in R2, for the caller to post.
        RegisterFile {
            file: FileRow,
        },
        /// Where a file's bytes are, if the caller may read them.
        FileInfo {
            id: String,
        },
        /// The visitor asks for a person.
        Handoff,
        /// The unmasked text of the message at `seq` (agents; the Worker audits it).
        Reveal {
            seq: u64,
        },
        Typing {
            active: bool,
        },
        Read {
            seq: u64,
        },
        Close,
        Reopen,
        Rate {
            score: u8,
            comment: Option<String>,
        },
        Assign,
        History {
            before: Option<u64>,
            limit: Option<u32>,
        },
        Info,
    }
}

parley_core::tagged_enum! {
    tag = "op";
    /// Requests from the site's object to a conversation's.
    #[derive(Debug, Clone, Serialize)]
    pub enum SystemRequest {
        /// Routing gave the conversation to this agent, in its assignment that started at
        /// `since` (Unix ms; absent from a site of an older release): the conversation does not
        /// record an assignment older than the one it holds.
        Assign {
            agent: Participant,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            since: Option<i64>,
        },
        /// A frame for everyone connected, not stored: the visitor's place in the waiting queue.
        Notify { frame: QueueFrame },
        /// Erase the conversation: its log, its files, its sockets (data protection).
        Erase,
        /// Post a message on the site's behalf (the bot's answers), once per key.
        Automated {
            key: String,
            text: String,
            name: Option<String>,
        },
        /// The bot could not answer: hand the conversation to people.
        Handoff,
        /// Has `agent`, the assignee, replied at or after `since` (Unix ms, when routing
        /// assigned it to them)? Asked by routing before it hands an unanswered conversation
        /// on. Answered with `Answered`.
        AnsweredSince { agent: String, since: i64 },
        /// Record the translation (or why there is none) of message `of`.
        Translate {
            of: u64,
            from: String,
            to: String,
            result: Result<String, String>,
            provider: String,
        },
    }
}

impl SystemRequest {
    /// The visitor's place in the waiting queue, for the conversation to pass on.
    pub fn queue_position(position: usize) -> SystemRequest {
        SystemRequest::Notify {
            frame: QueueFrame {
                kind: QueueFrameKind::Queue,
                position,
            },
        }
    }
}

/// A conversation's answer to `SystemRequest::AnsweredSince`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Answered {
    pub answered: bool,
}

/// The one frame a site has conversations pass on, as `ServerFrame::Queue` writes it
/// (`{"type": "queue", "position": …}`), read without the decoder of every server frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueFrame {
    #[serde(rename = "type")]
    pub kind: QueueFrameKind,
    pub position: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFrameKind {
    Queue,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperationRequest {
    pub principal: Principal,
    pub operation: Operation,
}

impl OperationRequest {
    /// Reads a request as it is written; each part's text goes to its own decoder as it is, not
    /// through a `serde_json::Value`.
    pub fn from_json(text: &str) -> serde_json::Result<OperationRequest> {
        let part = |key| parley_core::json::member(text, key);
        Ok(OperationRequest {
            principal: Principal::from_json(part("principal")?)?,
            operation: Operation::from_json(part("operation")?)?,
        })
    }
}

/// The object of `conversation`.
pub fn conversation_stub(env: &worker::Env, conversation: &str) -> worker::Result<worker::Stub> {
    env.durable_object("CONVERSATION")?
        .id_from_name(conversation)?
        .get_stub()
}

/// Sends a system request to a conversation's object (from the site's object, the bot, the
/// translator, erasure) and returns its answer.
pub async fn system_request(
    env: &worker::Env,
    conversation: &str,
    request: &SystemRequest,
) -> worker::Result<worker::Response> {
    let stub = conversation_stub(env, conversation)?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(
            &serde_json::to_string(request)?,
        )));
    stub.fetch_with_request(worker::Request::new_with_init(
        &format!("{INTERNAL_BASE}/system"),
        &init,
    )?)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes objects of the previous release read and write (see the module's note).
    #[test]
    fn requests_keep_their_json_shape() {
        let send = Operation::Send {
            client_msg_id: "c1".into(),
            text: "hi".into(),
            note: false,
            file: None,
        };
        assert_eq!(
            serde_json::to_value(&send).unwrap(),
            serde_json::json!({"op": "send", "client_msg_id": "c1", "text": "hi", "note": false, "file": null})
        );
        assert_eq!(
            serde_json::to_value(Operation::Close).unwrap(),
            serde_json::json!({"op": "close"})
        );
        // What the site sent before, a whole server frame, and what it sends now read alike.
        let notify = r#"{"op":"notify","frame":{"type":"queue","position":3}}"#;
        let Ok(SystemRequest::Notify { frame }) = SystemRequest::from_json(notify) else {
            panic!("a queue notice reads as one");
        };
        assert_eq!(frame.position, 3);
        assert_eq!(
            serde_json::to_string(&SystemRequest::Notify { frame }).unwrap(),
            notify
        );
        let shapes = [
            (
                serde_json::to_value(SystemRequest::Erase),
                serde_json::json!({"op": "erase"}),
            ),
            (
                serde_json::to_value(crate::site_object::SiteRequest::Position {
                    conversation: "c_1".into(),
                }),
                serde_json::json!({"op": "position", "conversation": "c_1"}),
            ),
            (
                serde_json::to_value(crate::site_object::SiteRequest::Online),
                serde_json::json!({"op": "online"}),
            ),
            (
                serde_json::to_value(crate::webhook_object::WebhookRequest::Deliveries {
                    webhook: "w_1".into(),
                }),
                serde_json::json!({"op": "deliveries", "webhook": "w_1"}),
            ),
            (
                serde_json::to_value(crate::webhook_object::WebhookRequest::WebhookEnabled {
                    webhook: "w_1".into(),
                }),
                serde_json::json!({"op": "webhook_enabled", "webhook": "w_1"}),
            ),
            (
                serde_json::to_value(crate::webhook_object::WebhookRequest::Erased {
                    conversation: "c_1".into(),
                }),
                serde_json::json!({"op": "erased", "conversation": "c_1"}),
            ),
        ];
        for (written, expected) in shapes {
            assert_eq!(written.unwrap(), expected);
        }
        let queue = parley_core::ServerFrame::Queue { position: 3 };
        assert_eq!(
            serde_json::to_value(&queue).unwrap(),
            serde_json::json!({"type": "queue", "position": 3})
        );
    }
}
