//! The admin stats over every live node: connections from each node's Dispatcher (through Redis
//! in cluster mode), shifts and offer figures from the database. `GET
//! /api/admin/websocket/stats` answers them, and `subscribe_stats` streams them as [`frame`]s.

pub mod feed;
pub mod offer_figures;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    cluster::NodePresence,
    domain::Role,
    domain::time::{iso, now_ms},
    domain::{MasterId, UserId},
    router::messages::GetStats,
    service::error::AppError,
    stats::offer_figures::OfferFigures,
    wire::state::AppState,
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub id: String,
    pub connections: usize,
    pub last_seen: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebsocketStats {
    pub total_connected: usize,
    /// Over every node: `master`, `client`, `service`, `admin`, `unauthenticated`.
    pub connections_by_role: BTreeMap<String, usize>,
    pub total_subscribed: usize,
    pub active_subscriptions: usize,
    pub on_shift_subscriptions: usize,
    pub subscriptions: Vec<SubscriptionRow>,
    pub nodes: Vec<NodeRow>,
    pub offers: OfferFigures,
}

pub async fn gather(app: &AppState) -> Result<WebsocketStats, AppError> {
    let stats = app
        .dispatcher
        .send(GetStats)
        .await
        .map_err(|e| AppError::Internal(format!("dispatcher unreachable: {e}")))?;
    let nodes = app
        .node
        .presence(NodePresence::new(&app.node.id, stats))
        .await;
    let mut master_ids: Vec<MasterId> = nodes
        .iter()
        .flat_map(|n| n.masters.iter().map(|m| m.master_id))
        .collect();
    master_ids.sort_unstable();
    master_ids.dedup();
    let on_shift = app.service.on_shift_of(master_ids).await?;
    let offers = app.service.offer_figures().await?;

    let active_since = now_ms() - app.config.active_window.as_millis() as i64;
    let mut subscriptions: Vec<SubscriptionRow> = nodes
        .iter()
        .flat_map(|n| n.masters.iter().map(move |m| (n.id.as_str(), m)))
        .map(|(node, m)| SubscriptionRow {
            user_id: m.user_id,
            master_id: m.master_id,
            subscribed: m.subscribed,
            on_shift: on_shift.get(&m.master_id).copied().unwrap_or(false),
            last_ping: m.last_ping.map(iso),
            is_active: m.subscribed && m.last_ping.is_some_and(|t| t >= active_since),
            node: node.to_string(),
        })
        .collect();
    subscriptions
        .sort_by(|a, b| (a.master_id, a.user_id, &a.node).cmp(&(b.master_id, b.user_id, &b.node)));
    let mut connections_by_role = BTreeMap::new();
    for role in Role::labels() {
        connections_by_role.insert(role.to_string(), 0);
    }
    for node in &nodes {
        for (role, count) in &node.by_role {
            *connections_by_role.entry(role.clone()).or_insert(0) += count;
        }
    }
    Ok(WebsocketStats {
        total_connected: nodes.iter().map(|n| n.connections).sum(),
        connections_by_role,
        total_subscribed: subscriptions.iter().filter(|s| s.subscribed).count(),
        active_subscriptions: subscriptions.iter().filter(|s| s.is_active).count(),
        on_shift_subscriptions: subscriptions
            .iter()
            .filter(|s| s.is_active && s.on_shift)
            .count(),
        subscriptions,
        nodes: nodes
            .iter()
            .map(|n| NodeRow {
                id: n.id.clone(),
                connections: n.connections,
                last_seen: iso(n.last_seen),
            })
            .collect(),
        offers,
    })
}

/// The admin stats as a `stats` frame; `None` (and a warning) when they cannot be gathered.
pub async fn frame(app: &AppState) -> Option<bytestring::ByteString> {
    match gather(app).await {
        Ok(gathered) => {
            let mut frame = serde_json::Map::new();
            frame.insert("type".into(), "stats".into());
            if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&gathered) {
                frame.extend(fields);
            }
            Some(serde_json::Value::Object(frame).to_string().into())
        }
        Err(e) => {
            log::warn!("cannot gather the stats for subscribe_stats: {e}");
            None
        }
    }
}
