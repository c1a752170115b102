//! The WebSocket wire protocol as plain data: JSON text frames tagged by `type`, camelCase
//! fields, and the close codes. The Dispatcher builds pushes with it, the sessions replies.

pub mod close;
pub mod shapes;

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    domain::Role,
    domain::time::iso,
    domain::{DispatchStatus, MasterId, Offer, OrderStatus, Outcome, UserId},
    protocol::shapes::OrderView,
    service::error::{AppError, ErrorBody},
};

/// Serialize too, so that the examples in docs/PROTOCOL.md can be read and written back.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
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

/// The types of the protocol's own server messages; a push may not take one.
pub const SERVER_TYPES: [&str; 21] = [
    "connected",
    "auth_success",
    "auth_error",
    "pong",
    "subscribed_assignments",
    "unsubscribed_assignments",
    "subscribed_events",
    "new_assignment",
    "assignment_accepted",
    "assignment_rejected",
    "assignment_expired",
    "assignment_cancelled",
    "order_status_update",
    "assignment_event",
    "dispatch_event",
    "stats",
    "token_expiring",
    "token_refreshed",
    "subscribed",
    "unsubscribed",
    "error",
];

/// Whether `kind` is one of the protocol's own message types, either way.
pub fn is_reserved_type(kind: &str) -> bool {
    CLIENT_TYPES.contains(&kind) || SERVER_TYPES.contains(&kind)
}

/// The topic a `subscribe` names when it names none.
pub const DEFAULT_TOPIC: &str = "default";

/// A push's `type`: `^[a-z][a-z0-9_]{0,63}$`, and not one of the protocol's own.
pub fn check_push_type(kind: &str) -> Result<(), String> {
    let mut chars = kind.chars();
    let well_formed = kind.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        return Err(format!(
            "type must match ^[a-z][a-z0-9_]{{0,63}}$, not {kind:?}"
        ));
    }
    if is_reserved_type(kind) {
        return Err(format!(
            "type {kind:?} is one of the protocol's own messages"
        ));
    }
    Ok(())
}

/// A topic name: `^[a-z0-9][a-z0-9_:.-]{0,127}$`.
pub fn check_topic(topic: &str) -> Result<(), String> {
    let mut chars = topic.chars();
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let well_formed = topic.len() <= 128
        && chars.next().is_some_and(plain)
        && chars.all(|c| plain(c) || matches!(c, '_' | ':' | '.' | '-'));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "a topic must match ^[a-z0-9][a-z0-9_:.-]{{0,127}}$, not {topic:?}"
        ))
    }
}

/// The topics of a `subscribe` or `unsubscribe`, checked, without repeats, `default` when none.
pub fn topics_of(requested: Option<Vec<String>>) -> Result<Vec<String>, String> {
    let requested = requested.unwrap_or_else(|| vec![DEFAULT_TOPIC.to_string()]);
    let mut topics: Vec<String> = Vec::with_capacity(requested.len());
    for topic in requested {
        check_topic(&topic)?;
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_types_and_topics_follow_their_patterns() {
        assert!(check_push_type("new_message").is_ok());
        assert!(check_push_type("dialog_update2").is_ok());
        for bad in [
            "",
            "New",
            "1abc",
            "new-message",
            "new_assignment",
            "pong",
            "error",
            "auth",
        ] {
            assert!(check_push_type(bad).is_err(), "{bad}");
        }
        assert!(check_push_type(&"a".repeat(64)).is_ok());
        assert!(check_push_type(&"a".repeat(65)).is_err());
        for good in ["dialogs", "chat:12", "a.b-c_d", "0"] {
            assert!(check_topic(good).is_ok(), "{good}");
        }
        for bad in ["", "Dialogs", "-x", "a b", "ж"] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
        assert!(check_topic(&"a".repeat(129)).is_err());
        assert_eq!(topics_of(None).unwrap(), vec!["default"]);
        assert_eq!(
            topics_of(Some(vec!["a".into(), "a".into()])).unwrap(),
            vec!["a"]
        );
    }
}

/// What happened to an offer, as `assignment_event` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferEvent {
    Delivered,
    Accepted,
    Rejected,
    Expired,
    Cancelled,
}

impl From<Outcome> for OfferEvent {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Accepted => OfferEvent::Accepted,
            Outcome::Rejected => OfferEvent::Rejected,
            Outcome::Expired => OfferEvent::Expired,
            Outcome::Cancelled => OfferEvent::Cancelled,
        }
    }
}

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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// An offer, with the server's clock and the time left when the frame was built, so that an
    /// app with a skewed clock still counts down right.
    NewAssignment {
        assignment: OfferView,
        server_time: String,
        expires_in_ms: i64,
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
        event: OfferEvent,
        assignment_id: i64,
        order_id: i64,
        master_id: i64,
        at: String,
        /// When the offer was made, on decisions: `at` minus this is the time to decide.
        #[serde(skip_serializing_if = "Option::is_none")]
        offered_at: Option<String>,
    },
    /// A cascade of offers ended: `assigned` (with the master), `exhausted` or `cancelled`.
    DispatchEvent {
        event: DispatchStatus,
        dispatch_id: i64,
        order_id: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        master_id: Option<i64>,
        at: String,
    },
    /// The connection's token runs out at `expires_at`; a `refresh_token` keeps it open.
    TokenExpiring {
        expires_at: String,
    },
    TokenRefreshed {
        expires_at: String,
    },
    Subscribed {
        topics: Vec<String>,
    },
    Unsubscribed {
        topics: Vec<String>,
    },
    Error {
        #[serde(flatten)]
        error: ErrorBody,
    },
    /// A push: its `type` and the payload's fields, at the top level.
    #[serde(untagged)]
    Push(serde_json::Map<String, Value>),
}

impl ServerMessage {
    pub fn error(e: &AppError) -> Self {
        ServerMessage::Error { error: e.body() }
    }

    /// `new_assignment` for `offer`, built at `now` (ms since the epoch).
    pub fn new_assignment(offer: &Offer, now: i64) -> Self {
        ServerMessage::NewAssignment {
            assignment: OfferView::from(offer),
            server_time: iso(now),
            expires_in_ms: (offer.expires_at - now).max(0),
        }
    }

    /// The frame's `type`, for the metrics; every push is `push`.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Connected { .. } => "connected",
            ServerMessage::AuthSuccess { .. } => "auth_success",
            ServerMessage::AuthError { .. } => "auth_error",
            ServerMessage::Pong { .. } => "pong",
            ServerMessage::SubscribedAssignments => "subscribed_assignments",
            ServerMessage::UnsubscribedAssignments { .. } => "unsubscribed_assignments",
            ServerMessage::SubscribedEvents => "subscribed_events",
            ServerMessage::NewAssignment { .. } => "new_assignment",
            ServerMessage::AssignmentAccepted { .. } => "assignment_accepted",
            ServerMessage::AssignmentRejected { .. } => "assignment_rejected",
            ServerMessage::AssignmentExpired { .. } => "assignment_expired",
            ServerMessage::AssignmentCancelled { .. } => "assignment_cancelled",
            ServerMessage::OrderStatusUpdate { .. } => "order_status_update",
            ServerMessage::AssignmentEvent { .. } => "assignment_event",
            ServerMessage::DispatchEvent { .. } => "dispatch_event",
            ServerMessage::TokenExpiring { .. } => "token_expiring",
            ServerMessage::TokenRefreshed { .. } => "token_refreshed",
            ServerMessage::Subscribed { .. } => "subscribed",
            ServerMessage::Unsubscribed { .. } => "unsubscribed",
            ServerMessage::Error { .. } => "error",
            ServerMessage::Push(_) => "push",
        }
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
    /// The message's `type` when it is one the server knows, else `other`.
    pub kind: &'static str,
    pub request_id: Option<Value>,
    pub message: Result<ClientMessage, AppError>,
}

pub fn parse(text: &str) -> Incoming {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Incoming {
                kind: "other",
                request_id: None,
                message: Err(AppError::BadRequest(format!("invalid JSON: {e}"))),
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
        None => Err(AppError::BadRequest(
            "every message needs a string \"type\"".into(),
        )),
        Some(kind) if !CLIENT_TYPES.contains(&kind) => Err(AppError::UnknownType(kind.into())),
        Some(kind) => serde_json::from_value(value.clone())
            .map_err(|e| AppError::BadRequest(format!("invalid {kind} message: {e}"))),
    };
    Incoming {
        kind,
        request_id,
        message,
    }
}
