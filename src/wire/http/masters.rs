use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::{
    domain::time::deciding_now,
    protocol::shapes::{MasterView, OpenOffers},
    service::{
        error::AppError,
        policy::{ReceiveOffers, SetShifts},
    },
    wire::{auth::Permitted, state::AppState},
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShiftBody {
    on_shift: bool,
}

/// The polling fallback: the caller's open offers.
#[utoipa::path(get, path = "/api/v1/masters/me/assignments", tag = "masters", security(("bearer" = [])), responses((status = 200, body = OpenOffers), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn my_assignments(
    Permitted(permit): Permitted<ReceiveOffers>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let offers = app.service.open_offers(permit).await?;
    Ok(HttpResponse::Ok().json(OpenOffers::new(&offers, deciding_now())))
}

#[utoipa::path(put, path = "/api/v1/masters/{id}/shift", tag = "masters", security(("bearer" = [])), params(("id" = i64, Path)), request_body = ShiftBody, responses((status = 200, body = MasterView), (status = 400, description = "bad_request", body = crate::protocol::shapes::ErrorBody), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn set_shift(
    Permitted(permit): Permitted<SetShifts>,
    app: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<ShiftBody>,
) -> Result<HttpResponse, AppError> {
    let master = app
        .service
        .set_shift(permit, id.into_inner(), body.on_shift)
        .await?;
    Ok(HttpResponse::Ok().json(MasterView::from(&master)))
}
