//! The language of the service: typed ids, the statuses of orders and assignments, roles, checked
//! inputs, the records the service answers with, and the events that say what changed. Every
//! other room speaks it; it imports none of them.
//!
//! Events are plain serde data, so they can travel between nodes as JSON that a second
//! implementation could read.

pub mod input;
pub mod records;
mod role;
pub mod time;

pub use role::{AuthUser, Role};

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// An offer of one order to one master.
    AssignmentId
);
id_type!(
    /// An order, as the platform numbers it.
    OrderId
);
id_type!(
    /// A master (technician), as his token's `master_id` names him.
    MasterId
);
id_type!(
    /// A cascade of offers of one order (`POST /api/v1/orders/{id}/dispatch`).
    DispatchId
);
id_type!(
    /// A user of the platform, as his token's `sub` names him.
    UserId
);

/// A status text that is not one of the known values.
#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

macro_rules! status_type {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize,
            diesel::AsExpression, diesel::FromSqlRow, utoipa::ToSchema, schemars::JsonSchema,
        )]
        #[serde(rename_all = "snake_case")]
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The text stored in the database and shown on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownStatus(other.to_string())),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_type!(
    /// Where an order stands.
    OrderStatus {
        New => "new",
        Assigned => "assigned",
        InProgress => "in_progress",
        Completed => "completed",
        Cancelled => "cancelled",
    }
);

status_type!(
    /// Where an offer stands: pending until exactly one decision ends it.
    AssignmentStatus {
        Pending => "pending",
        Accepted => "accepted",
        Rejected => "rejected",
        Expired => "expired",
        Cancelled => "cancelled",
    }
);

status_type!(
    /// Where a cascade of offers stands: running until one accept, exhaustion or a cancel ends it.
    DispatchStatus {
        Running => "running",
        Assigned => "assigned",
        Exhausted => "exhausted",
        Cancelled => "cancelled",
    }
);

status_type!(
    /// How a dispatch offers: one batch after another, or to every candidate at once.
    DispatchMode {
        Sequential => "sequential",
        Broadcast => "broadcast",
    }
);

status_type!(
    /// What became of one candidate of a dispatch.
    CandidateOutcome {
        Pending => "pending",
        Offered => "offered",
        Accepted => "accepted",
        Rejected => "rejected",
        Expired => "expired",
        Skipped => "skipped",
        Cancelled => "cancelled",
    }
);

impl From<Outcome> for CandidateOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Accepted => CandidateOutcome::Accepted,
            Outcome::Rejected => CandidateOutcome::Rejected,
            Outcome::Expired => CandidateOutcome::Expired,
            Outcome::Cancelled => CandidateOutcome::Cancelled,
        }
    }
}

impl OrderStatus {
    /// A closed order takes no offers and cancels the pending ones.
    pub fn is_closed(self) -> bool {
        matches!(self, OrderStatus::Completed | OrderStatus::Cancelled)
    }

    pub fn list() -> String {
        Self::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a pending offer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    Rejected,
    Expired,
    Cancelled,
}

impl Outcome {
    pub fn status(self) -> AssignmentStatus {
        match self {
            Outcome::Accepted => AssignmentStatus::Accepted,
            Outcome::Rejected => AssignmentStatus::Rejected,
            Outcome::Expired => AssignmentStatus::Expired,
            Outcome::Cancelled => AssignmentStatus::Cancelled,
        }
    }
}

/// An open offer as a master may see it: never the client's name or phone. Times in UTC ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    pub assignment_id: AssignmentId,
    pub order_id: OrderId,
    pub master_id: MasterId,
    pub address: String,
    pub device_type: String,
    pub problem: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A pending offer that has just ended, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub assignment_id: AssignmentId,
    pub order_id: OrderId,
    pub master_id: MasterId,
    pub outcome: Outcome,
    pub at: i64,
    /// When the offer was made; older nodes do not send it.
    #[serde(default)]
    pub offered_at: i64,
}

/// An offer that reached the master's app: its first acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub assignment_id: AssignmentId,
    pub order_id: OrderId,
    pub master_id: MasterId,
    pub at: i64,
}

/// A pending offer that no connection of its master acknowledged within
/// `UNDELIVERED_AFTER_SECS`, or that was made while he had no subscribed connection: the
/// platform's cue to wake his phone some other way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UndeliveredOffer {
    pub assignment_id: AssignmentId,
    pub order_id: OrderId,
    pub master_id: MasterId,
    pub at: i64,
    pub expires_at: i64,
}

/// An order's new status, with whom it concerns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusChange {
    pub order_id: OrderId,
    pub client_user_id: UserId,
    pub master_id: Option<MasterId>,
    pub status: OrderStatus,
    pub updated_at: i64,
}

/// A message from elsewhere in the platform (a chat backend, say) for some users' open
/// connections. Nothing is stored: users with no connection do not get it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    pub user_ids: Vec<UserId>,
    /// The frame's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The frame's other fields, exactly as given.
    pub payload: serde_json::Map<String, serde_json::Value>,
    /// When set, only connections that subscribed to this topic get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// A dispatch that has just ended, and how (never `running`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchEnd {
    pub dispatch_id: DispatchId,
    pub order_id: OrderId,
    pub status: DispatchStatus,
    /// Who accepted, when it ended `assigned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_id: Option<MasterId>,
    pub at: i64,
}

/// Something stored changed, or (a push) something is to be told. Published only after any
/// change is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DomainEvent {
    Offered(Offer),
    Delivered(Delivery),
    Undelivered(UndeliveredOffer),
    Decided(Decision),
    OrderStatusChanged(OrderStatusChange),
    DispatchEnded(DispatchEnd),
    Pushed(Push),
}

impl DomainEvent {
    /// The order it concerns; a push concerns none.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            DomainEvent::Offered(o) => Some(o.order_id),
            DomainEvent::Delivered(d) => Some(d.order_id),
            DomainEvent::Undelivered(u) => Some(u.order_id),
            DomainEvent::Decided(d) => Some(d.order_id),
            DomainEvent::OrderStatusChanged(c) => Some(c.order_id),
            DomainEvent::DispatchEnded(e) => Some(e.order_id),
            DomainEvent::Pushed(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_text() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>().unwrap(), *status);
        }
        for status in AssignmentStatus::ALL {
            assert_eq!(
                status.as_str().parse::<AssignmentStatus>().unwrap(),
                *status
            );
        }
        assert!("done".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn events_are_tagged_json_with_camel_case_fields() {
        let event = DomainEvent::Decided(Decision {
            assignment_id: AssignmentId(1),
            order_id: OrderId(10),
            master_id: MasterId(3),
            outcome: Outcome::Expired,
            at: 5,
            offered_at: 2,
        });
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind":"decided","assignmentId":1,"orderId":10,"masterId":3,"outcome":"expired","at":5,"offeredAt":2})
        );
        assert_eq!(serde_json::from_value::<DomainEvent>(json).unwrap(), event);
    }
}
