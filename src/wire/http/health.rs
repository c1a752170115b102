use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{router::messages::CountConnections, wire::state::AppState};

/// The router answers within this or counts as down.
const DISPATCHER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// `ok`; `degraded` when a cluster node has lost Redis but still serves its own connections;
/// `unavailable` (503) when the database does not answer, or the router not within 1 s.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, description = "ok or degraded: status, node, database, dispatcher, connections, uptimeSecs, version, and redis in cluster mode", body = Object), (status = 503, description = "the database or the router does not answer", body = Object)))]
pub async fn health(app: web::Data<AppState>) -> HttpResponse {
    let database_ok = app.service.database_ok().await;
    let connections = tokio::time::timeout(DISPATCHER_PATIENCE, app.router.send(CountConnections))
        .await
        .ok()
        .and_then(Result::ok);
    let dispatcher_ok = connections.is_some();
    let redis_up = app.node.redis_up();
    let expiry_ok = !app.expiry_watch.stalled();
    let webhooks = app.webhook_heartbeat.as_ref().map(|h| !h.stalled());
    let working = database_ok && dispatcher_ok && expiry_ok && webhooks != Some(false);
    let status = match (working, redis_up) {
        (false, _) => "unavailable",
        (true, Some(false)) => "degraded",
        (true, _) => "ok",
    };
    let mut body = json!({
        "status": status,
        "node": &*app.node.id,
        "database": if database_ok { "ok" } else { "unavailable" },
        "dispatcher": if dispatcher_ok { "ok" } else { "unavailable" },
        "expiry": if expiry_ok { "ok" } else { "stalled" },
        "webhooks": match webhooks {
            Some(true) => "ok",
            Some(false) => "stalled",
            None => "off",
        },
        "connections": connections.unwrap_or(0),
        "uptimeSecs": app.started_at.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(up) = redis_up {
        body["redis"] = json!(if up { "ok" } else { "down" });
    }
    if working {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
