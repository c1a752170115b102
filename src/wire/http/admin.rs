use actix_web::{HttpResponse, web};

use crate::{
    service::{error::AppError, policy::WatchStats},
    wire::{auth::Permitted, state::AppState},
};

/// The monitoring view over every live node.
#[utoipa::path(get, path = "/api/admin/websocket/stats", tag = "operators", security(("bearer" = [])), responses((status = 200, body = crate::protocol::stats::WebsocketStats), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn websocket_stats(
    _: Permitted<WatchStats>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(app.stats.gather().await?))
}
