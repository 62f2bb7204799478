//! The Worker → Durable Object interface. Only the Worker can reach the objects, and it
//! builds these requests itself after authenticating the caller, so the headers are trusted.
//!
//! The requests between the Worker and the objects are enums in serde's default, externally
//! tagged form (`{"send": {…}}`, `"close"`), not tagged by a field (`{"op": "send", …}`): a
//! field tag makes serde buffer and decode every variant twice, which took about 13 KB (gzip)
//! of the Worker's wasm for these four enums (`Operation`, `SystemRequest`, `SiteRequest`,
//! `WebhookRequest`).

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

/// HTTP operations on a conversation, forwarded to its object (externally tagged, see above).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Requests from the site's object to a conversation's (externally tagged, see above).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemRequest {
    /// Routing gave the conversation to this agent.
    Assign { agent: Participant },
    /// The visitor's place in the waiting queue, for everyone connected (not stored).
    QueuePosition { position: usize },
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
    /// Record the translation (or why there is none) of message `of`.
    Translate {
        of: u64,
        from: String,
        to: String,
        result: Result<String, String>,
        provider: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationRequest {
    pub principal: Principal,
    pub operation: Operation,
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
