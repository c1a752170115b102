//! What the service answers with: orders, offers, masters and dispatches as the rest of the
//! platform knows them. Storage turns its rows into these, so no caller holds a row.

use super::{
    AssignmentId, AssignmentStatus, CandidateOutcome, DispatchId, DispatchMode, DispatchStatus,
    MasterId, OrderId, OrderStatus, UserId,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub client_user_id: UserId,
    pub address: String,
    pub device_type: String,
    pub problem: String,
    pub client_name: Option<String>,
    pub client_phone: Option<String>,
    pub status: OrderStatus,
    pub master_id: Option<MasterId>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An offer of an order to a master, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub id: AssignmentId,
    pub order_id: OrderId,
    pub master_id: MasterId,
    pub status: AssignmentStatus,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub reject_reason: Option<String>,
    /// When the master's app first acknowledged the offer.
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Master {
    pub id: MasterId,
    pub on_shift: bool,
    pub updated_at: i64,
}

/// The first accept of an order: the offer, and the order now assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub assignment: Assignment,
    pub order: Order,
}

/// A cascade of offers of one order, with its candidates in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub id: DispatchId,
    pub order_id: OrderId,
    pub status: DispatchStatus,
    pub mode: DispatchMode,
    pub candidates: Vec<Candidate>,
    pub batch_size: i64,
    pub ttl_ms: i64,
    pub skip_offline: bool,
    /// Who accepted, once it is `assigned`.
    pub master_id: Option<MasterId>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub master_id: MasterId,
    pub outcome: CandidateOutcome,
    /// The offer made to this candidate, once there is one.
    pub assignment_id: Option<AssignmentId>,
}
