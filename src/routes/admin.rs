use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::{
    auth::AdminUser,
    cluster::NodePresence,
    dispatcher::messages::GetStats,
    domain::{MasterId, UserId},
    error::AppError,
    lifecycle::OfferFigures,
    state::AppState,
    time::{iso, now_ms},
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionRow<'a> {
    user_id: UserId,
    master_id: MasterId,
    subscribed: bool,
    on_shift: bool,
    last_ping: Option<String>,
    is_active: bool,
    node: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeRow<'a> {
    id: &'a str,
    connections: usize,
    last_seen: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebsocketStats<'a> {
    total_connected: usize,
    total_subscribed: usize,
    active_subscriptions: usize,
    on_shift_subscriptions: usize,
    subscriptions: Vec<SubscriptionRow<'a>>,
    nodes: Vec<NodeRow<'a>>,
    offers: OfferFigures,
}

/// Seed 001's monitoring view over every live node: connections from each node's Dispatcher
/// (through Redis in cluster mode), shifts from the database.
pub async fn websocket_stats(
    _: AdminUser,
    app: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
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
            node,
        })
        .collect();
    subscriptions.sort_by_key(|s| (s.master_id, s.user_id, s.node));
    Ok(HttpResponse::Ok().json(WebsocketStats {
        total_connected: nodes.iter().map(|n| n.connections).sum(),
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
                id: &n.id,
                connections: n.connections,
                last_seen: iso(n.last_seen),
            })
            .collect(),
        offers,
    }))
}
