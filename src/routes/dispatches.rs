use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::Staff, db::dispatches::DispatchState, domain::DispatchMode, error::AppError,
    service::DispatchRequest, state::AppState, views::DispatchView,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DispatchBody {
    candidates: Vec<i64>,
    ttl_seconds: Option<u64>,
    mode: Option<String>,
    batch_size: Option<i64>,
    skip_offline: Option<bool>,
}

fn answer(state: &DispatchState) -> serde_json::Value {
    json!({ "dispatch": DispatchView::from(state) })
}

/// Starts a cascade of offers of the order to its candidates.
pub async fn create(
    _: Staff,
    app: web::Data<AppState>,
    order_id: web::Path<i64>,
    body: web::Json<DispatchBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let mode = match body.mode.as_deref() {
        None => DispatchMode::Sequential,
        Some(mode) => mode.parse().map_err(|_| {
            AppError::BadRequest(format!(
                "mode must be sequential or broadcast, not {mode:?}"
            ))
        })?,
    };
    let request = DispatchRequest {
        candidates: body.candidates,
        ttl: body.ttl_seconds.map(Duration::from_secs),
        mode,
        batch_size: body.batch_size.unwrap_or(1),
        skip_offline: body.skip_offline.unwrap_or(true),
    };
    let state = app.service.dispatch(order_id.into_inner(), request).await?;
    Ok(HttpResponse::Created().json(answer(&state)))
}

pub async fn get(
    _: Staff,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let state = app.service.get_dispatch(id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(answer(&state)))
}

/// Cancels the dispatch and its outstanding offers.
pub async fn cancel(
    _: Staff,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let state = app.service.cancel_dispatch(id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(answer(&state)))
}
