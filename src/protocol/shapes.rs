//! JSON shapes of offers, orders, masters, dispatches and errors, shared by HTTP answers and
//! WebSocket messages.

use serde::Serialize;

use crate::domain::{
    AssignmentStatus, CandidateOutcome, DispatchMode, DispatchStatus, Offer, OrderStatus,
    records::{Assignment, Dispatch, Master, Order},
    time::iso,
};

/// The body of every error answer, over HTTP and inside WebSocket `error` messages.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `forbidden`, `bad_request`, `unknown_type`, `not_found`,
    /// `assignment_not_pending`, `conflict`, `rate_limited`, `payload_too_large`, `over_capacity`,
    /// `unavailable` or `internal`.
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
}

/// What a master sees of an offer before accepting it: never the client's name or phone.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: i64,
    pub client_user_id: i64,
    pub address: String,
    pub device_type: String,
    pub problem: String,
    pub client_name: Option<String>,
    pub client_phone: Option<String>,
    pub status: OrderStatus,
    pub master_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        OrderView {
            id: o.id.0,
            client_user_id: o.client_user_id.0,
            address: o.address.clone(),
            device_type: o.device_type.clone(),
            problem: o.problem.clone(),
            client_name: o.client_name.clone(),
            client_phone: o.client_phone.clone(),
            status: o.status,
            master_id: o.master_id.map(|m| m.0),
            created_at: iso(o.created_at),
            updated_at: iso(o.updated_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentView {
    pub id: i64,
    pub order_id: i64,
    pub master_id: i64,
    pub status: AssignmentStatus,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// When the master's app first acknowledged the offer (`ack_assignment`).
    pub delivered_at: Option<String>,
}

impl From<&Assignment> for AssignmentView {
    fn from(a: &Assignment) -> Self {
        AssignmentView {
            id: a.id.0,
            order_id: a.order_id.0,
            master_id: a.master_id.0,
            status: a.status,
            created_at: iso(a.created_at),
            expires_at: iso(a.expires_at),
            decided_at: a.decided_at.map(iso),
            reject_reason: a.reject_reason.clone(),
            delivered_at: a.delivered_at.map(iso),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MasterView {
    pub id: i64,
    pub on_shift: bool,
    pub updated_at: String,
}

impl From<&Master> for MasterView {
    fn from(m: &Master) -> Self {
        MasterView {
            id: m.id.0,
            on_shift: m.on_shift,
            updated_at: iso(m.updated_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateView {
    pub master_id: i64,
    pub outcome: CandidateOutcome,
    /// The offer made to this candidate, once there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DispatchView {
    pub id: i64,
    pub order_id: i64,
    pub status: DispatchStatus,
    pub mode: DispatchMode,
    pub candidates: Vec<CandidateView>,
    /// The candidates with an outstanding offer.
    pub current: Vec<i64>,
    pub batch_size: i64,
    pub ttl_seconds: i64,
    pub skip_offline: bool,
    /// Who accepted, once it is `assigned`.
    pub master_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Dispatch> for DispatchView {
    fn from(d: &Dispatch) -> Self {
        DispatchView {
            id: d.id.0,
            order_id: d.order_id.0,
            status: d.status,
            mode: d.mode,
            candidates: d
                .candidates
                .iter()
                .map(|c| CandidateView {
                    master_id: c.master_id.0,
                    outcome: c.outcome,
                    assignment_id: c.assignment_id.map(|a| a.0),
                })
                .collect(),
            current: d
                .candidates
                .iter()
                .filter(|c| c.outcome == CandidateOutcome::Offered)
                .map(|c| c.master_id.0)
                .collect(),
            batch_size: d.batch_size,
            ttl_seconds: d.ttl_ms / 1000,
            skip_offline: d.skip_offline,
            master_id: d.master_id.map(|m| m.0),
            created_at: iso(d.created_at),
            updated_at: iso(d.updated_at),
        }
    }
}

/// `POST /api/v1/assignments`: the offer, and how many of the answering node's connections it reached.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
pub struct AssignmentCreated {
    pub assignment: AssignmentView,
    pub delivered: usize,
}

/// `POST /api/v1/assignments/batch`: for each offer, in the order given, what
/// `POST /api/v1/assignments` would have answered for it alone.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
pub struct BatchAnswer {
    pub results: Vec<BatchResult>,
}

/// One offer's answer in a batch: the status it would have had, and that answer's body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BatchResult {
    Created {
        /// 201.
        status: u16,
        assignment: AssignmentView,
        delivered: usize,
    },
    Refused {
        status: u16,
        #[schema(value_type = String)]
        code: &'static str,
        message: String,
    },
}

/// A dispatch, as its routes answer it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
pub struct DispatchAnswer {
    pub dispatch: DispatchView,
}

/// `POST /api/v1/push`: how many of the answering node's connections were written to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
pub struct Delivered {
    pub delivered: usize,
}

/// The polling fallback: a master's open offers, as `new_assignment` shows them, with the
/// server's clock, so that an app counts down each offer's time left without trusting its own.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenOffers {
    pub server_time: String,
    pub assignments: Vec<OfferView>,
}

impl OpenOffers {
    pub fn new(offers: &[Offer], now: i64) -> Self {
        OpenOffers {
            server_time: iso(now),
            assignments: offers.iter().map(OfferView::from).collect(),
        }
    }
}

/// `POST /api/v1/webhooks/events/{eventId}/retry`: the event is being sent again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRetried {
    pub event_id: String,
    /// `open`: the sender takes it again.
    pub status: &'static str,
}
