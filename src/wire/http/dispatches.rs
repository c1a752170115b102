use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::{
    domain::{DispatchMode, records::Dispatch},
    protocol::shapes::{DispatchAnswer, DispatchView},
    service::{DispatchRequest, error::AppError, policy},
    wire::{auth::Permitted, state::AppState},
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DispatchBody {
    candidates: Vec<i64>,
    ttl_seconds: Option<u64>,
    mode: Option<String>,
    batch_size: Option<i64>,
    skip_offline: Option<bool>,
}

fn answer(dispatch: &Dispatch) -> DispatchAnswer {
    DispatchAnswer {
        dispatch: DispatchView::from(dispatch),
    }
}

/// Starts a cascade of offers of the order to its candidates.
#[utoipa::path(post, path = "/api/v1/orders/{id}/dispatch", tag = "dispatches", security(("bearer" = [])), params(("id" = i64, Path, description = "the order")), request_body = DispatchBody, responses((status = 201, body = DispatchAnswer), (status = 400, description = "bad_request", body = crate::protocol::shapes::ErrorBody), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 409, description = "conflict or assignment_not_pending", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn create(
    Permitted(permit): Permitted<policy::Dispatch>,
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
    let state = app
        .service
        .dispatch(permit, order_id.into_inner(), request)
        .await?;
    Ok(HttpResponse::Created().json(answer(&state)))
}

#[utoipa::path(get, path = "/api/v1/dispatches/{id}", tag = "dispatches", security(("bearer" = [])), params(("id" = i64, Path)), responses((status = 200, body = DispatchAnswer), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn get(
    Permitted(permit): Permitted<policy::Dispatch>,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let state = app.service.get_dispatch(permit, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(answer(&state)))
}

/// Cancels the dispatch and its outstanding offers.
#[utoipa::path(delete, path = "/api/v1/dispatches/{id}", tag = "dispatches", security(("bearer" = [])), params(("id" = i64, Path)), responses((status = 200, body = DispatchAnswer), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 409, description = "conflict or assignment_not_pending", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn cancel(
    Permitted(permit): Permitted<policy::Dispatch>,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let state = app.service.cancel_dispatch(permit, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(answer(&state)))
}
