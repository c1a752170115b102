//! The WebSocket wire protocol as plain data: JSON text frames tagged by `type`, camelCase
//! fields, and the close codes. The Dispatcher builds pushes with it, the sessions replies.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    auth::Role,
    domain::{MasterId, Offer, OrderStatus, Outcome, UserId},
    error::{AppError, ErrorBody},
    time::iso,
    views::OrderView,
};

#[derive(Debug, Deserialize, PartialEq)]
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
    SubscribeAssignments,
    UnsubscribeAssignments,
    AcceptAssignment {
        assignment_id: i64,
    },
    RejectAssignment {
        assignment_id: i64,
        #[serde(default)]
        reason: Option<String>,
    },
    SubscribeEvents,
    RefreshToken {
        token: String,
    },
}

const CLIENT_TYPES: [&str; 8] = [
    "auth",
    "ping",
    "subscribe_assignments",
    "unsubscribe_assignments",
    "accept_assignment",
    "reject_assignment",
    "subscribe_events",
    "refresh_token",
];

/// The close codes this service sends (RFC 6455, section 7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Normal = 1000,
    Away = 1001,
    Protocol = 1002,
    Unsupported = 1003,
    Policy = 1008,
    Size = 1009,
    Error = 1011,
}

/// What a master sees of an offer before accepting it: never the client's name or phone.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferView {
    pub id: i64,
    pub order_id: i64,
    pub address: String,
    pub device_type: String,
    pub problem: String,
    pub created_at: String,
    pub expires_at: String,
}

impl From<&Offer> for OfferView {
    fn from(o: &Offer) -> Self {
        OfferView {
            id: o.assignment_id.0,
            order_id: o.order_id.0,
            address: o.address.clone(),
            device_type: o.device_type.clone(),
            problem: o.problem.clone(),
            created_at: iso(o.created_at),
            expires_at: iso(o.expires_at),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    Connected {
        connection_id: String,
        server_time: String,
    },
    AuthSuccess {
        user_id: UserId,
        role: Role,
        master_id: Option<MasterId>,
    },
    AuthError {
        message: String,
    },
    Pong {
        server_time: String,
    },
    SubscribedAssignments,
    UnsubscribedAssignments {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    SubscribedEvents,
    NewAssignment {
        assignment: OfferView,
    },
    AssignmentAccepted {
        assignment_id: i64,
        order_id: i64,
        order: OrderView,
    },
    AssignmentRejected {
        assignment_id: i64,
        order_id: i64,
    },
    AssignmentExpired {
        assignment_id: i64,
        order_id: i64,
    },
    AssignmentCancelled {
        assignment_id: i64,
        order_id: i64,
    },
    OrderStatusUpdate {
        order_id: i64,
        status: OrderStatus,
        updated_at: String,
    },
    AssignmentEvent {
        event: Outcome,
        assignment_id: i64,
        order_id: i64,
        master_id: i64,
        at: String,
    },
    /// The connection's token runs out at `expires_at`; a `refresh_token` keeps it open.
    TokenExpiring {
        expires_at: String,
    },
    TokenRefreshed {
        expires_at: String,
    },
    Error {
        #[serde(flatten)]
        error: ErrorBody,
    },
}

impl ServerMessage {
    pub fn error(e: &AppError) -> Self {
        ServerMessage::Error { error: e.body() }
    }

    /// The frame text; a direct reply echoes the request's `requestId`.
    pub fn encode(&self, request_id: Option<&Value>) -> ByteString {
        let text = match request_id {
            None => serde_json::to_string(self),
            Some(id) => serde_json::to_value(self).and_then(|mut v| {
                if let Value::Object(map) = &mut v {
                    map.insert("requestId".into(), id.clone());
                }
                serde_json::to_string(&v)
            }),
        };
        text.expect("server messages always serialize").into()
    }
}

/// A parsed client frame: the message, or the error to answer with; either way the `requestId` to echo.
pub struct Incoming {
    pub request_id: Option<Value>,
    pub message: Result<ClientMessage, AppError>,
}

pub fn parse(text: &str) -> Incoming {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Incoming {
                request_id: None,
                message: Err(AppError::BadRequest(format!("invalid JSON: {e}"))),
            };
        }
    };
    let request_id = value.get("requestId").cloned();
    let message = match value.get("type").and_then(Value::as_str) {
        None => Err(AppError::BadRequest(
            "every message needs a string \"type\"".into(),
        )),
        Some(kind) if !CLIENT_TYPES.contains(&kind) => Err(AppError::UnknownType(kind.into())),
        Some(kind) => serde_json::from_value(value.clone())
            .map_err(|e| AppError::BadRequest(format!("invalid {kind} message: {e}"))),
    };
    Incoming {
        request_id,
        message,
    }
}
