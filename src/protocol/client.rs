//! What clients send: one JSON text frame per message, tagged by `type`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::shapes::ErrorBody;

/// Serialize too, so that the examples in docs/PROTOCOL.md can be read and written back.
#[derive(Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    Auth {
        token: String,
    },
    Ping,
    SubscribeAssignments {
        /// The app acknowledges each offer with `ack_assignment`; unacknowledged offers are sent
        /// again, and a connection that acknowledges none is closed as dead.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        acks: bool,
    },
    UnsubscribeAssignments,
    AckAssignment {
        assignment_id: i64,
    },
    AcceptAssignment {
        assignment_id: i64,
    },
    RejectAssignment {
        assignment_id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    SubscribeEvents,
    /// Admins: the admin stats, as a `stats` message once a second.
    SubscribeStats,
    RefreshToken {
        token: String,
    },
    /// Topics filter pushes (`POST /api/v1/push` with a `topic`).
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topics: Option<Vec<String>>,
    },
    Unsubscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topics: Option<Vec<String>>,
    },
}

pub const CLIENT_TYPES: [&str; 12] = [
    "auth",
    "ping",
    "subscribe_assignments",
    "unsubscribe_assignments",
    "ack_assignment",
    "accept_assignment",
    "reject_assignment",
    "subscribe_events",
    "subscribe_stats",
    "refresh_token",
    "subscribe",
    "unsubscribe",
];

/// Why a client frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Malformed(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
}

impl ParseError {
    /// The `error` body this refusal is answered with.
    pub fn body(&self) -> ErrorBody {
        let code = match self {
            ParseError::Malformed(_) => "bad_request",
            ParseError::UnknownType(_) => "unknown_type",
        };
        ErrorBody {
            code,
            message: self.to_string(),
        }
    }
}

/// A parsed client frame: the message, or the error to answer with; either way the `requestId` to echo.
pub struct Incoming {
    /// The message's `type` when it is one the server knows, else `other`.
    pub kind: &'static str,
    pub request_id: Option<Value>,
    pub message: Result<ClientMessage, ParseError>,
}

pub fn parse(text: &str) -> Incoming {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Incoming {
                kind: "other",
                request_id: None,
                message: Err(ParseError::Malformed(format!("invalid JSON: {e}"))),
            };
        }
    };
    let request_id = value.get("requestId").cloned();
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .and_then(|kind| CLIENT_TYPES.iter().find(|known| **known == kind))
        .copied()
        .unwrap_or("other");
    let message = match value.get("type").and_then(Value::as_str) {
        None => Err(ParseError::Malformed(
            "every message needs a string \"type\"".into(),
        )),
        Some(kind) if !CLIENT_TYPES.contains(&kind) => Err(ParseError::UnknownType(kind.into())),
        Some(kind) => serde_json::from_value(value.clone())
            .map_err(|e| ParseError::Malformed(format!("invalid {kind} message: {e}"))),
    };
    Incoming {
        kind,
        request_id,
        message,
    }
}
