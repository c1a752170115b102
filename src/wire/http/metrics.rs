use actix_web::{HttpResponse, http::header::ContentType, web};

use crate::{
    service::policy::WatchStats,
    wire::{auth::Permitted, state::AppState},
};

/// `/metrics` on the service's own address: admins only.
#[utoipa::path(get, path = "/metrics", tag = "operators", security(("bearer" = [])), responses((status = 200, description = "Prometheus text format 0.0.4; with METRICS_BIND_ADDR set it is served there without a token, and this path is 404", content_type = "text/plain"), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody)))]
pub async fn guarded(_: Permitted<WatchStats>, app: web::Data<AppState>) -> HttpResponse {
    exposition(&app)
}

/// `/metrics` on `METRICS_BIND_ADDR`: no token, for a scraper on a private network.
pub async fn open(app: web::Data<AppState>) -> HttpResponse {
    exposition(&app)
}

fn exposition(app: &AppState) -> HttpResponse {
    if let Some(backplane) = &app.metrics.backplane {
        backplane
            .up
            .set(i64::from(app.node.redis_up() == Some(true)));
    }
    HttpResponse::Ok()
        .content_type(ContentType(
            "text/plain; version=0.0.4; charset=utf-8".parse().unwrap(),
        ))
        .body(app.metrics.render())
}
