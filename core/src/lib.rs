//! parley-core: the pure logic of Parley.
//!
//! No I/O, no clock, no randomness: time (Unix milliseconds) and random bytes are
//! passed in by the caller, storage is reached through the synchronous [`conversation::Store`]
//! port. The Worker shell executes what this crate decides; every rule that matters for
//! ordering, deduplication, resume, access and limits lives here and is tested natively.

pub mod access;
pub mod api_key;
pub mod attachment;
pub mod automation;
pub mod backoff;
pub mod bot;
pub mod conversation;
pub mod csv;
pub mod error;
pub mod export;
pub mod hours;
pub mod i18n;
pub mod ids;
pub mod json;
pub mod limits;
pub mod memstore;
pub mod mirror;
pub mod outbound_url;
pub mod password;
pub mod pii;
pub mod protocol;
pub mod ratelimit;
pub mod reports;
pub mod request_url;
pub mod routing;
pub mod site_settings;
pub mod tagged;
pub mod token;
pub mod translate;
pub mod upload_buffer;
pub mod visitor;
pub mod webhook;
pub mod zone;

pub use conversation::{Command, Effect, Engine, EngineConfig, EngineError, Meta, Store};
pub use error::ErrorCode;
pub use protocol::{
    ClientFrame, Event, EventPayload, FileRef, Participant, Role, ServerFrame, Status,
};
