use actix_web::{HttpResponse, web};

use crate::{service::error::AppError, stats, wire::auth::AdminUser, wire::state::AppState};

/// Seed 001's monitoring view over every live node.
#[utoipa::path(get, path = "/api/admin/websocket/stats", tag = "operators", security(("bearer" = [])), responses((status = 200, body = crate::stats::WebsocketStats), (status = 401, description = "unauthorized", body = crate::service::error::ErrorBody), (status = 403, description = "forbidden", body = crate::service::error::ErrorBody), (status = 503, description = "unavailable", body = crate::service::error::ErrorBody)))]
pub async fn websocket_stats(
    _: AdminUser,
    app: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(stats::gather(&app).await?))
}
