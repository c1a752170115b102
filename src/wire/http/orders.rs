use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{at_most, required};
use crate::{
    domain::OrderStatus, protocol::shapes::OrderView, service::error::AppError,
    storage::models::OrderFields, wire::auth::Staff, wire::state::AppState,
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

#[utoipa::path(put, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path, description = "the platform's order id")), request_body = OrderBody, responses((status = 200, body = crate::protocol::shapes::OrderView), (status = 400, description = "bad_request", body = crate::service::error::ErrorBody), (status = 401, description = "unauthorized", body = crate::service::error::ErrorBody), (status = 403, description = "forbidden", body = crate::service::error::ErrorBody), (status = 413, description = "payload_too_large", body = crate::service::error::ErrorBody), (status = 503, description = "unavailable", body = crate::service::error::ErrorBody)))]
pub async fn upsert(
    _: Staff,
    app: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<OrderBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let fields = OrderFields {
        client_user_id: body.client_user_id,
        address: at_most("address", 500, required("address", body.address)?)?,
        device_type: at_most("deviceType", 100, required("deviceType", body.device_type)?)?,
        problem: at_most("problem", 60_000, required("problem", body.problem)?)?,
        client_name: body
            .client_name
            .map(|n| at_most("clientName", 200, n))
            .transpose()?,
        client_phone: body
            .client_phone
            .map(|p| at_most("clientPhone", 50, p))
            .transpose()?,
    };
    let order = app.service.upsert_order(id.into_inner(), fields).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(&order)))
}

#[utoipa::path(patch, path = "/api/v1/orders/{id}/status", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)), request_body = StatusBody, responses((status = 200, body = crate::protocol::shapes::OrderView), (status = 400, description = "bad_request", body = crate::service::error::ErrorBody), (status = 401, description = "unauthorized", body = crate::service::error::ErrorBody), (status = 403, description = "forbidden", body = crate::service::error::ErrorBody), (status = 404, description = "not_found", body = crate::service::error::ErrorBody), (status = 503, description = "unavailable", body = crate::service::error::ErrorBody)))]
pub async fn set_status(
    _: Staff,
    app: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<StatusBody>,
) -> Result<HttpResponse, AppError> {
    let status: OrderStatus = body.into_inner().status.parse().map_err(|_| {
        AppError::BadRequest(format!("status must be one of {}", OrderStatus::list()))
    })?;
    let order = app
        .service
        .set_order_status(id.into_inner(), status)
        .await?;
    Ok(HttpResponse::Ok().json(OrderView::from(&order)))
}
