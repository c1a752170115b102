use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::{
    domain::{OrderStatus, input::OrderDetails},
    protocol::shapes::OrderView,
    service::{error::AppError, policy::ManageOrders},
    wire::{auth::Permitted, state::AppState},
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderBody {
    client_user_id: i64,
    address: String,
    device_type: String,
    problem: String,
    client_name: Option<String>,
    client_phone: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct StatusBody {
    status: String,
}

#[utoipa::path(put, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path, description = "the platform's order id")), request_body = OrderBody, responses((status = 200, body = OrderView), (status = 400, description = "bad_request", body = crate::protocol::shapes::ErrorBody), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 413, description = "payload_too_large", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn upsert(
    Permitted(permit): Permitted<ManageOrders>,
    app: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<OrderBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let details = OrderDetails::parse(
        body.client_user_id,
        body.address,
        body.device_type,
        body.problem,
        body.client_name,
        body.client_phone,
    )?;
    let order = app
        .service
        .upsert_order(permit, id.into_inner(), details)
        .await?;
    Ok(HttpResponse::Ok().json(OrderView::from(&order)))
}

#[utoipa::path(patch, path = "/api/v1/orders/{id}/status", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)), request_body = StatusBody, responses((status = 200, body = OrderView), (status = 400, description = "bad_request", body = crate::protocol::shapes::ErrorBody), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn set_status(
    Permitted(permit): Permitted<ManageOrders>,
    app: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<StatusBody>,
) -> Result<HttpResponse, AppError> {
    let status: OrderStatus = body.into_inner().status.parse().map_err(|_| {
        AppError::BadRequest(format!("status must be one of {}", OrderStatus::list()))
    })?;
    let order = app
        .service
        .set_order_status(permit, id.into_inner(), status)
        .await?;
    Ok(HttpResponse::Ok().json(OrderView::from(&order)))
}
