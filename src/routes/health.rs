use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{dispatcher::messages::CountConnections, state::AppState};

pub async fn health(app: web::Data<AppState>) -> HttpResponse {
    let database_ok = app.service.database_ok().await;
    let connections = app.dispatcher.send(CountConnections).await.unwrap_or(0);
    let body = json!({
        "status": if database_ok { "ok" } else { "unavailable" },
        "database": if database_ok { "ok" } else { "unavailable" },
        "connections": connections,
        "uptimeSecs": app.started_at.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if database_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
