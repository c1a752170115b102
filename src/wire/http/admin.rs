use actix_web::{HttpRequest, HttpResponse, web};

use crate::{
    domain::MasterId,
    service::{error::AppError, policy::WatchStats},
    stats::Page,
    wire::{auth::Permitted, state::AppState},
};

/// The monitoring view over every live node.
#[utoipa::path(get, path = "/api/admin/websocket/stats", tag = "operators", security(("bearer" = [])), params(("limit" = Option<usize>, Query, description = "the most subscription rows, 1 to 100000 (10000 unless given); `truncated` is true when rows were left out"), ("after" = Option<i64>, Query, description = "only rows of masters with a greater masterId: the last masterId of the page before")), responses((status = 200, body = crate::protocol::stats::WebsocketStats), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn websocket_stats(
    _: Permitted<WatchStats>,
    app: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let page = page(req.query_string())?;
    Ok(HttpResponse::Ok().json(app.stats.gather(page).await?))
}

fn page(query: &str) -> Result<Page, AppError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| AppError::BadRequest(format!("bad query string: {e}")))?;
    let mut page = Page::default();
    for (name, value) in pairs.into_inner() {
        match name.as_str() {
            "limit" => {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=Page::MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        AppError::BadRequest(format!(
                            "limit must be a whole number from 1 to {}",
                            Page::MAX_LIMIT
                        ))
                    })?
            }
            "after" => {
                page.after = Some(MasterId(value.parse().map_err(|_| {
                    AppError::BadRequest("after must be a masterId".to_string())
                })?))
            }
            _ => {}
        }
    }
    Ok(page)
}
