use actix_web::{HttpResponse, web};

use crate::{auth::AdminUser, error::AppError, state::AppState, stats};

/// Seed 001's monitoring view over every live node.
pub async fn websocket_stats(
    _: AdminUser,
    app: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(stats::gather(&app).await?))
}
