use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{dispatcher::messages::CountConnections, state::AppState};

/// `ok`; `degraded` when a cluster node has lost Redis but still serves its own connections;
/// `unavailable` (503) when the database does not answer.
pub async fn health(app: web::Data<AppState>) -> HttpResponse {
    let database_ok = app.service.database_ok().await;
    let connections = app.dispatcher.send(CountConnections).await.unwrap_or(0);
    let redis_up = app.node.redis_up();
    let status = match (database_ok, redis_up) {
        (false, _) => "unavailable",
        (true, Some(false)) => "degraded",
        (true, _) => "ok",
    };
    let mut body = json!({
        "status": status,
        "node": &*app.node.id,
        "database": if database_ok { "ok" } else { "unavailable" },
        "connections": connections,
        "uptimeSecs": app.started_at.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(up) = redis_up {
        body["redis"] = json!(if up { "ok" } else { "down" });
    }
    if database_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
