//! Stable error codes. The string form of each code is part of protocol v1
//! (docs/protocol.md lists them); never rename one, only add.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    UnknownFrameType,
    UnsupportedVersion,
    FrameTooLarge,
    MessageTooLong,
    EmptyMessage,
    InvalidClientMsgId,
    InvalidSeq,
    InvalidRequest,
    HelloRequired,
    HelloRepeated,
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    SessionEnded,
    InvalidCredentials,
    Forbidden,
    NotFound,
    UnknownSite,
    OriginNotAllowed,
    RateLimited,
    TooManyConnections,
    AlreadyAssigned,
    AgentUnavailable,
    EmailTaken,
    TooManyAttributes,
    ConversationOpen,
    EmptyFile,
    FileTooLarge,
    UnsupportedFileType,
    FileTypeMismatch,
    FileNotFound,
    MethodNotAllowed,
    StorageUnavailable,
    UploadsBusy,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 36] = [
        ErrorCode::BadFrame,
        ErrorCode::UnknownFrameType,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::MessageTooLong,
        ErrorCode::EmptyMessage,
        ErrorCode::InvalidClientMsgId,
        ErrorCode::InvalidSeq,
        ErrorCode::InvalidRequest,
        ErrorCode::HelloRequired,
        ErrorCode::HelloRepeated,
        ErrorCode::TokenMissing,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::SessionEnded,
        ErrorCode::InvalidCredentials,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UnknownSite,
        ErrorCode::OriginNotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::AlreadyAssigned,
        ErrorCode::AgentUnavailable,
        ErrorCode::EmailTaken,
        ErrorCode::TooManyAttributes,
        ErrorCode::ConversationOpen,
        ErrorCode::EmptyFile,
        ErrorCode::FileTooLarge,
        ErrorCode::UnsupportedFileType,
        ErrorCode::FileTypeMismatch,
        ErrorCode::FileNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::StorageUnavailable,
        ErrorCode::UploadsBusy,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownFrameType => "unknown_frame_type",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::MessageTooLong => "message_too_long",
            ErrorCode::EmptyMessage => "empty_message",
            ErrorCode::InvalidClientMsgId => "invalid_client_msg_id",
            ErrorCode::InvalidSeq => "invalid_seq",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::HelloRepeated => "hello_repeated",
            ErrorCode::TokenMissing => "token_missing",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownSite => "unknown_site",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::AlreadyAssigned => "already_assigned",
            ErrorCode::AgentUnavailable => "agent_unavailable",
            ErrorCode::EmailTaken => "email_taken",
            ErrorCode::TooManyAttributes => "too_many_attributes",
            ErrorCode::ConversationOpen => "conversation_open",
            ErrorCode::EmptyFile => "empty_file",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::UnsupportedFileType => "unsupported_file_type",
            ErrorCode::FileTypeMismatch => "file_type_mismatch",
            ErrorCode::FileNotFound => "file_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::UploadsBusy => "uploads_busy",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that carries this code on the plain-HTTP API.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadFrame
            | ErrorCode::UnknownFrameType
            | ErrorCode::UnsupportedVersion
            | ErrorCode::EmptyMessage
            | ErrorCode::InvalidClientMsgId
            | ErrorCode::InvalidSeq
            | ErrorCode::InvalidRequest
            | ErrorCode::HelloRequired
            | ErrorCode::HelloRepeated => 400,
            ErrorCode::FrameTooLarge | ErrorCode::MessageTooLong | ErrorCode::FileTooLarge => 413,
            ErrorCode::EmptyFile => 400,
            ErrorCode::UnsupportedFileType | ErrorCode::FileTypeMismatch => 415,
            ErrorCode::TokenMissing
            | ErrorCode::TokenInvalid
            | ErrorCode::TokenExpired
            | ErrorCode::SessionEnded
            | ErrorCode::InvalidCredentials => 401,
            ErrorCode::Forbidden | ErrorCode::OriginNotAllowed => 403,
            ErrorCode::NotFound | ErrorCode::UnknownSite | ErrorCode::FileNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::AlreadyAssigned
            | ErrorCode::AgentUnavailable
            | ErrorCode::EmailTaken
            | ErrorCode::TooManyAttributes
            | ErrorCode::ConversationOpen => 409,
            ErrorCode::RateLimited | ErrorCode::TooManyConnections => 429,
            ErrorCode::StorageUnavailable | ErrorCode::UploadsBusy => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Whose fault a refusal is, for operators: `client` (bad or unauthorised input, limits),
    /// `storage` (a store failed; retry), or `server` (a bug).
    pub fn fault(self) -> &'static str {
        match self {
            ErrorCode::StorageUnavailable => "storage",
            ErrorCode::Internal => "server",
            _ => "client",
        }
    }

    /// Whether the same request may succeed later unchanged (the client should retry).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::StorageUnavailable
                | ErrorCode::UploadsBusy
                | ErrorCode::Internal
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_equals_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn protocol_doc_lists_exactly_these_codes() {
        let doc = include_str!("../../docs/protocol.md");
        let section = doc
            .split("\n## Error codes")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/protocol.md has an '## Error codes' section");
        let documented: std::collections::BTreeSet<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
            .collect();
        for code in ErrorCode::ALL {
            assert!(
                documented.contains(code.as_str()),
                "{code} missing from docs/protocol.md"
            );
        }
        let known: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for code in &documented {
            assert!(
                known.contains(code),
                "docs/protocol.md lists unknown code {code}"
            );
        }
    }
}
