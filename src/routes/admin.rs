use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::{
    auth::AdminUser,
    dispatcher::messages::GetStats,
    domain::{MasterId, UserId},
    error::AppError,
    state::AppState,
    time::{iso, now_ms},
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionRow {
    user_id: UserId,
    master_id: MasterId,
    subscribed: bool,
    on_shift: bool,
    last_ping: Option<String>,
    is_active: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebsocketStats {
    total_connected: usize,
    total_subscribed: usize,
    active_subscriptions: usize,
    on_shift_subscriptions: usize,
    subscriptions: Vec<SubscriptionRow>,
}

/// Seed 001's monitoring view: connections from the Dispatcher, shifts from the database.
pub async fn websocket_stats(
    _: AdminUser,
    app: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let stats = app
        .dispatcher
        .send(GetStats)
        .await
        .map_err(|e| AppError::Internal(format!("dispatcher unreachable: {e}")))?;
    let mut master_ids: Vec<MasterId> = stats.masters.iter().map(|m| m.master_id).collect();
    master_ids.sort_unstable();
    master_ids.dedup();
    let on_shift = app.service.on_shift_of(master_ids).await?;

    let active_since = now_ms() - app.config.active_window.as_millis() as i64;
    let subscriptions: Vec<SubscriptionRow> = stats
        .masters
        .iter()
        .map(|m| SubscriptionRow {
            user_id: m.user_id,
            master_id: m.master_id,
            subscribed: m.subscribed,
            on_shift: on_shift.get(&m.master_id).copied().unwrap_or(false),
            last_ping: m.last_ping.map(iso),
            is_active: m.subscribed && m.last_ping.is_some_and(|t| t >= active_since),
        })
        .collect();
    Ok(HttpResponse::Ok().json(WebsocketStats {
        total_connected: stats.total_connected,
        total_subscribed: subscriptions.iter().filter(|s| s.subscribed).count(),
        active_subscriptions: subscriptions.iter().filter(|s| s.is_active).count(),
        on_shift_subscriptions: subscriptions
            .iter()
            .filter(|s| s.is_active && s.on_shift)
            .count(),
        subscriptions,
    }))
}
