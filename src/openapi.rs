//! The OpenAPI 3 description of the REST API, served at `/api/v1/openapi.json`. The Worker
//! carries the document as compact text: `openapi/table.rs` builds it from the list of
//! operations in the native tests, which hold `openapi.json` to it, so the code that builds it
//! (about 20 KB of wasm) stays out of the Worker. tests/openapi.test.mjs holds the document to the
//! router both ways (every documented operation exists, every route is documented).
//! docs/protocol.md has the prose.

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod table;
