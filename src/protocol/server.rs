//! What the server sends: every frame is a [`ServerMessage`], built here and nowhere else.

use bytestring::ByteString;
use serde::Serialize;
use serde_json::Value;

use super::{
    CLIENT_TYPES,
    shapes::{ErrorBody, OfferView, OrderView},
    stats::WebsocketStats,
};
use crate::domain::{
    DispatchStatus, MasterId, Offer, OrderStatus, Outcome, Role, UserId, time::iso,
};

/// A server message ready for the socket: its text, and its `type` for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: &'static str,
    pub text: ByteString,
}

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

/// What happened to an offer, as `assignment_event` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentEventKind {
    Delivered,
    /// No connection of the master acknowledged the offer within `UNDELIVERED_AFTER_SECS`, or
    /// he had no subscribed connection when it was made: wake his phone some other way.
    Undelivered,
    Accepted,
    Rejected,
    Expired,
    Cancelled,
}

impl From<Outcome> for AssignmentEventKind {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Accepted => AssignmentEventKind::Accepted,
            Outcome::Rejected => AssignmentEventKind::Rejected,
            Outcome::Expired => AssignmentEventKind::Expired,
            Outcome::Cancelled => AssignmentEventKind::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
        event: AssignmentEventKind,
        assignment_id: i64,
        order_id: i64,
        master_id: i64,
        at: String,
        /// When the offer was made, on decisions: `at` minus this is the time to decide.
        #[serde(skip_serializing_if = "Option::is_none")]
        offered_at: Option<String>,
        /// The offer's deadline, on `undelivered`.
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<String>,
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
    /// Admins, after `subscribe_stats`: the admin stats, once a second.
    Stats(WebsocketStats),
    /// A push: its `type` and the payload's fields, at the top level.
    #[serde(untagged)]
    Push(serde_json::Map<String, Value>),
}

impl ServerMessage {
    /// `new_assignment` for `offer`, built at `now` (ms since the epoch).
    pub fn new_assignment(offer: &Offer, now: i64) -> Self {
        ServerMessage::NewAssignment {
            assignment: OfferView::from(offer),
            server_time: iso(now),
            expires_in_ms: offer.expires_at.saturating_sub(now).max(0),
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
            ServerMessage::Stats(_) => "stats",
            ServerMessage::Push(_) => "push",
        }
    }

    /// The frame to send; a direct reply echoes the request's `requestId`.
    pub fn frame(&self, request_id: Option<&Value>) -> Frame {
        Frame {
            kind: self.kind(),
            text: self.encode(request_id),
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
