//! Size limits shared by the WebSocket and HTTP paths.

/// Largest client frame (or HTTP JSON body) accepted, in bytes. Larger WebSocket
/// frames are answered with `frame_too_large` and the socket is closed with 1009.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Largest body one of Parley's own objects accepts from another. Their requests wrap what a
/// client sent (a notification carries a message's text escaped twice, in its D1 row), so they
/// outgrow a client frame; the bound only stops a runaway body.
pub const MAX_INTERNAL_BODY_BYTES: usize = 1024 * 1024;
/// Longest message text, in Unicode scalar values.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest client-generated message id.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;
/// Most events returned by one history page or one long-poll answer.
pub const MAX_PAGE: u32 = 200;
/// Default history page size.
pub const DEFAULT_PAGE: u32 = 50;
/// Longest long-poll wait the server holds, in seconds.
pub const MAX_POLL_WAIT_SECS: u32 = 30;
/// Default number of events a resuming client may have missed before it gets `reset`.
pub const DEFAULT_REPLAY_WINDOW: u64 = 256;
/// Most sockets one participant keeps open on one conversation (tabs and devices).
pub const MAX_SOCKETS_PER_PARTICIPANT: usize = 32;
/// Sockets of one address in one conversation that have not signed in yet: a browser opens one
/// or two at a time, so more are someone holding connections open.
pub const MAX_UNSIGNED_SOCKETS_PER_IP: usize = 8;
/// How long a socket may stay open without its `hello`.
pub const HELLO_TIMEOUT_MS: i64 = 10_000;
/// Attributes one request may name (`POST /api/v1/visitor/attributes`).
pub const MAX_VISITOR_ATTRIBUTES_PER_REQUEST: usize = 30;
/// Attributes stored for one visitor: requests merge, so without a bound each one adding new
/// keys would grow the visitor's row for ever.
pub const MAX_VISITOR_ATTRIBUTES: usize = 100;
/// The stored attributes' JSON text, in bytes (values are up to 500 characters each).
pub const MAX_VISITOR_ATTRIBUTES_BYTES: usize = 16 * 1024;
