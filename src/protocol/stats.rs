//! The admin stats as `GET /api/admin/websocket/stats` answers them and `stats` frames carry them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::{MasterId, UserId};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRow {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(value_type = i64)]
    pub master_id: MasterId,
    pub subscribed: bool,
    pub on_shift: bool,
    pub last_ping: Option<String>,
    pub is_active: bool,
    pub node: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub id: String,
    pub connections: usize,
    pub last_seen: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebsocketStats {
    pub total_connected: usize,
    /// Over every node: `master`, `client`, `service`, `admin`, `unauthenticated`.
    pub connections_by_role: BTreeMap<String, usize>,
    pub total_subscribed: usize,
    pub active_subscriptions: usize,
    pub on_shift_subscriptions: usize,
    /// Sorted by `masterId`: the page `?limit=` and `?after=` asked for.
    pub subscriptions: Vec<SubscriptionRow>,
    /// Present, and true, when rows were left out after the page: ask again with `?after=`
    /// the last row's `masterId`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub nodes: Vec<NodeRow>,
    pub offers: OfferFigures,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferFigures {
    pub window_secs: i64,
    /// Offers ever made (the highest offer id): its rise per second is the offer rate.
    pub created_total: i64,
    pub created: usize,
    pub delivered: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub expired: usize,
    pub cancelled: usize,
    /// Creation to the first acknowledgement.
    pub time_to_deliver_ms: Percentiles,
    /// Creation to the accept.
    pub time_to_accept_ms: Percentiles,
}

/// Nearest-rank percentiles; null when there is nothing to rank.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema, schemars::JsonSchema)]
pub struct Percentiles {
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub p99: Option<i64>,
}
