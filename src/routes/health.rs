use actix_web::{HttpResponse, web};
use diesel::RunQueryDsl;
use serde_json::json;

use crate::{dispatcher::messages::CountConnections, service, startup::AppState};

pub async fn health(app: web::Data<AppState>) -> HttpResponse {
    let database_ok =
        service::with_db(
            &app,
            |conn| Ok(diesel::sql_query("SELECT 1").execute(conn)?),
        )
        .await
        .is_ok();
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
