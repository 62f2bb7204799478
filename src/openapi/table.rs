//! The OpenAPI document, built from the list of operations below; a test writes it to
//! `src/openapi.json` (what the Worker serves) and holds that file to it.

use parley_core::outbound_url::Refusal;
use parley_core::webhook::DeliveryFailure;
use parley_core::ErrorCode;
use serde_json::{json, Map, Value};

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Auth {
    Public,
    Visitor,
    Agent,
    Participant,
    Admin,
    Owner,
}

/// (method, path, who, summary)
const OPERATIONS: &[(&str, &str, Auth, &str)] = &[
    ("get", "/healthz", Auth::Public, "Liveness"),
    ("get", "/api/v1/openapi.json", Auth::Public, "This document"),
    (
        "post",
        "/api/v1/visitor/session",
        Auth::Public,
        "A visitor token for a site key",
    ),
    (
        "post",
        "/api/v1/visitor/context",
        Auth::Visitor,
        "Where the visitor is (page trail, device, source)",
    ),
    (
        "post",
        "/api/v1/visitor/identify",
        Auth::Visitor,
        "Name the visitor, verified by the site's HMAC",
    ),
    (
        "post",
        "/api/v1/visitor/attributes",
        Auth::Visitor,
        "Merge attributes about the visitor",
    ),
    (
        "get",
        "/api/v1/widget/config",
        Auth::Public,
        "What the widget shows (?site=KEY)",
    ),
    (
        "post",
        "/api/v1/agent/login",
        Auth::Public,
        "Sign an agent in",
    ),
    (
        "post",
        "/api/v1/agent/logout",
        Auth::Agent,
        "End the agent's session",
    ),
    (
        "post",
        "/api/v1/agent/socket-token",
        Auth::Agent,
        "A short-lived token of the caller's session, for a socket's hello",
    ),
    (
        "get",
        "/api/v1/me",
        Auth::Participant,
        "The caller and their permissions",
    ),
    (
        "post",
        "/api/v1/conversations",
        Auth::Visitor,
        "Start a conversation (idempotent with client_req_id)",
    ),
    (
        "get",
        "/api/v1/conversations",
        Auth::Participant,
        "The caller's conversations (visitor) or the team's (agent)",
    ),
    (
        "get",
        "/api/v1/conversations/{id}",
        Auth::Participant,
        "A conversation's state",
    ),
    (
        "get",
        "/api/v1/conversations/{id}/ws",
        Auth::Public,
        "WebSocket upgrade; sign in with the hello frame",
    ),
    (
        "get",
        "/api/v1/conversations/{id}/events",
        Auth::Participant,
        "Long-poll for events after a seq",
    ),
    (
        "get",
        "/api/v1/conversations/{id}/history",
        Auth::Participant,
        "A page of history",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/messages",
        Auth::Participant,
        "Send a message, note or file",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/typing",
        Auth::Participant,
        "Typing notice",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/read",
        Auth::Participant,
        "Read marker",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/files",
        Auth::Participant,
        "Upload a file (raw body)",
    ),
    (
        "get",
        "/api/v1/conversations/{id}/files/{file}",
        Auth::Participant,
        "Download a file",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/rating",
        Auth::Visitor,
        "Rate the conversation 1–5",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/handoff",
        Auth::Visitor,
        "Ask for a person instead of the bot",
    ),
    (
        "get",
        "/api/v1/conversations/{id}/queue",
        Auth::Participant,
        "Place in the waiting queue",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/close",
        Auth::Agent,
        "Close",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/reopen",
        Auth::Agent,
        "Reopen",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/assign",
        Auth::Agent,
        "Assign to the caller",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/claim",
        Auth::Agent,
        "Claim from the queue (race-free)",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/transfer",
        Auth::Agent,
        "Transfer to an agent or department",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/reveal",
        Auth::Agent,
        "Unmasked text of a message (audited)",
    ),
    (
        "get",
        "/api/v1/conversations/{id}/tags",
        Auth::Agent,
        "Tags",
    ),
    (
        "put",
        "/api/v1/conversations/{id}/tags",
        Auth::Agent,
        "Replace tags",
    ),
    ("get", "/api/v1/sites", Auth::Agent, "The team's sites"),
    (
        "get",
        "/api/v1/sites/{site}",
        Auth::Admin,
        "A site's settings",
    ),
    (
        "patch",
        "/api/v1/sites/{site}",
        Auth::Admin,
        "Change a site's settings",
    ),
    (
        "post",
        "/api/v1/sites/{site}/identity-secret",
        Auth::Admin,
        "Rotate the identity secret",
    ),
    (
        "get",
        "/api/v1/sites/{site}/webhooks",
        Auth::Admin,
        "Webhooks",
    ),
    (
        "post",
        "/api/v1/sites/{site}/webhooks",
        Auth::Admin,
        "Add a webhook (secret shown once)",
    ),
    (
        "delete",
        "/api/v1/sites/{site}/webhooks/{webhook}",
        Auth::Admin,
        "Delete a webhook",
    ),
    (
        "post",
        "/api/v1/sites/{site}/webhooks/{webhook}/enable",
        Auth::Admin,
        "Re-enable a webhook",
    ),
    (
        "get",
        "/api/v1/sites/{site}/webhooks/{webhook}/deliveries",
        Auth::Admin,
        "A webhook's delivery log",
    ),
    (
        "get",
        "/api/v1/console/ws",
        Auth::Agent,
        "WebSocket: the site's live inbox (?site=ID)",
    ),
    ("get", "/api/v1/departments", Auth::Agent, "Departments"),
    ("get", "/api/v1/quick-replies", Auth::Agent, "Quick replies"),
    (
        "post",
        "/api/v1/quick-replies",
        Auth::Agent,
        "Add a quick reply",
    ),
    (
        "patch",
        "/api/v1/quick-replies/{reply}",
        Auth::Agent,
        "Change a quick reply (personal; team ones: owners and admins)",
    ),
    (
        "delete",
        "/api/v1/quick-replies/{reply}",
        Auth::Agent,
        "Delete a quick reply",
    ),
    (
        "get",
        "/api/v1/visitors/{visitor}",
        Auth::Agent,
        "The visitor sidebar",
    ),
    (
        "delete",
        "/api/v1/visitors/{visitor}",
        Auth::Admin,
        "Erase a visitor and everything of theirs",
    ),
    (
        "get",
        "/api/v1/api-keys",
        Auth::Admin,
        "The team's API keys",
    ),
    (
        "post",
        "/api/v1/api-keys",
        Auth::Admin,
        "Make an API key (shown in this answer only)",
    ),
    (
        "delete",
        "/api/v1/api-keys/{key}",
        Auth::Admin,
        "Revoke an API key",
    ),
    ("get", "/api/v1/agents", Auth::Admin, "The team's agents"),
    ("post", "/api/v1/agents", Auth::Admin, "Add an agent"),
    (
        "patch",
        "/api/v1/agents/{agent}",
        Auth::Admin,
        "Change, disable or reset an agent",
    ),
    (
        "get",
        "/api/v1/search",
        Auth::Agent,
        "Full-text search over messages",
    ),
    (
        "get",
        "/api/v1/reports",
        Auth::Admin,
        "Reports for a date range",
    ),
    (
        "get",
        "/api/v1/export/{file}",
        Auth::Agent,
        "Export messages, conversations or audit (.csv or .json)",
    ),
    (
        "post",
        "/api/v1/maintenance/purge",
        Auth::Owner,
        "Run the retention purge now",
    ),
];

/// Operations whose successful answer is described here, by a schema of `components` (the
/// others' answers are in docs/protocol.md): (method, path, schema).
const ANSWERS: &[(&str, &str, &str)] = &[(
    "get",
    "/api/v1/sites/{site}/webhooks/{webhook}/deliveries",
    "DeliveryLog",
)];

/// The successful answer of an operation.
fn success(method: &str, path: &str) -> Value {
    match ANSWERS.iter().find(|(m, p, _)| *m == method && *p == path) {
        Some((_, _, schema)) => json!({
            "description": "Success",
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        }),
        None => json!({ "description": "Success" }),
    }
}

/// A nullable string that is one of `values` (OpenAPI 3.0 lists `null` among them too).
fn nullable_enum(values: impl IntoIterator<Item = &'static str>, description: &str) -> Value {
    let mut values: Vec<Value> = values.into_iter().map(Value::from).collect();
    values.push(Value::Null);
    json!({ "type": "string", "nullable": true, "enum": values, "description": description })
}

/// The delivery log's schemas.
fn delivery_log_schemas() -> (Value, Value) {
    let log = json!({
        "type": "object",
        "required": ["deliveries"],
        "properties": {
            "deliveries": { "type": "array", "items": { "$ref": "#/components/schemas/Delivery" } }
        }
    });
    let delivery = json!({
        "type": "object",
        "required": [
            "delivery_id", "event", "status", "attempts", "last_status", "last_error",
            "error_code", "error_detail", "created_at", "delivered_at", "next_at"
        ],
        "properties": {
            "delivery_id": { "type": "string", "description": "the Parley-Delivery header: the same on every retry" },
            "event": { "type": "string" },
            "status": { "type": "string", "enum": ["pending", "paused", "delivered", "failed"] },
            "attempts": { "type": "integer" },
            "last_status": { "type": "integer", "nullable": true, "description": "the receiver's HTTP status at the last attempt" },
            "last_error": {
                "type": "string",
                "nullable": true,
                "description": "why the last attempt failed, in English words that may change: read error_code"
            },
            "error_code": nullable_enum(
                DeliveryFailure::CODES,
                "why the last attempt failed, a stable code; null when it did not fail"
            ),
            "error_detail": nullable_enum(
                Refusal::ALL.map(Refusal::code),
                "with address_refused: why the address is refused, a stable code"
            ),
            "created_at": { "type": "integer" },
            "delivered_at": { "type": "integer", "nullable": true },
            "next_at": { "type": "integer", "description": "when a pending delivery is tried next" }
        }
    });
    (log, delivery)
}

fn security(auth: Auth) -> Value {
    match auth {
        Auth::Public => json!([]),
        _ => json!([{ "bearer": [] }, { "session_cookie": [] }]),
    }
}

fn audience(auth: Auth) -> &'static str {
    match auth {
        Auth::Public => "public",
        Auth::Visitor => "visitor",
        Auth::Agent => "agent",
        Auth::Participant => "visitor or agent",
        Auth::Admin => "owner or admin",
        Auth::Owner => "owner",
    }
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, auth, summary) in OPERATIONS {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let operation = json!({
            "summary": summary,
            "description": format!("Caller: {}. See docs/protocol.md.", audience(*auth)),
            "security": security(*auth),
            "parameters": parameters,
            "responses": {
                "2XX": success(method, path),
                "default": {
                    "description": "A refusal: an error frame with a stable code",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
                }
            }
        });
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        if let Some(map) = entry.as_object_mut() {
            map.insert(method.to_string(), operation);
        }
    }
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let (delivery_log, delivery) = delivery_log_schemas();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Parley API",
            "version": "1",
            "description": "Live customer-service chat. WebSocket frames and every field are described in docs/protocol.md."
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from /api/v1/agent/login or /api/v1/visitor/session, or an API key (pk_…)"
                },
                "session_cookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "parley_session",
                    "description": "The console's session (login with \"cookie\": true); requests that change something must come from the Worker's own origin"
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["v", "type", "code", "message"],
                    "properties": {
                        "v": { "type": "integer", "enum": [1] },
                        "type": { "type": "string", "enum": ["error"] },
                        "code": { "type": "string", "enum": codes },
                        "message": { "type": "string" },
                        "client_msg_id": { "type": "string" },
                        "retry_after_ms": { "type": "integer" },
                        "field": {
                            "type": "string",
                            "description": "with invalid_request: the body's field that was refused, as a path (routing.hours)"
                        }
                    }
                },
                "DeliveryLog": delivery_log,
                "Delivery": delivery
            }
        }
    })
}

#[cfg(test)]
mod tests {
    /// Where the served document is kept.
    const SERVED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/openapi.json");

    #[test]
    fn the_served_document_is_the_one_the_table_builds() {
        let built = serde_json::to_string(&super::document()).expect("a JSON value") + "\n";
        if std::env::var_os("PARLEY_WRITE_OPENAPI").is_some() {
            // Written for the next build to carry; this build still carries the old one.
            std::fs::write(SERVED, &built).expect("src/openapi.json written");
            return;
        }
        assert!(
            built == super::super::DOCUMENT,
            "src/openapi.json is not what src/openapi/table.rs builds: run \
             `PARLEY_WRITE_OPENAPI=1 cargo test -p parley --lib openapi` and commit the file"
        );
    }
}
