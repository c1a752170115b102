use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::{
    domain::MasterId,
    protocol::OfferView,
    protocol::shapes::MasterView,
    service::error::AppError,
    wire::auth::{MasterUser, StaffOrMaster},
    wire::state::AppState,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShiftBody {
    on_shift: bool,
}

/// The polling fallback: a master's open offers, as `new_assignment` shows them.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OpenOffers {
    assignments: Vec<OfferView>,
}

/// The polling fallback: the caller's open offers.
#[utoipa::path(get, path = "/api/v1/masters/me/assignments", tag = "masters", security(("bearer" = [])), responses((status = 200, body = OpenOffers), (status = 401, description = "unauthorized", body = crate::service::error::ErrorBody), (status = 403, description = "forbidden", body = crate::service::error::ErrorBody), (status = 503, description = "unavailable", body = crate::service::error::ErrorBody)))]
pub async fn my_assignments(
    MasterUser(user): MasterUser,
    app: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let master_id = user.master().expect("MasterUser has a master id");
    let offers = app.service.pending_offers(master_id).await?;
    let assignments: Vec<OfferView> = offers.iter().map(OfferView::from).collect();
    Ok(HttpResponse::Ok().json(OpenOffers { assignments }))
}

#[utoipa::path(put, path = "/api/v1/masters/{id}/shift", tag = "masters", security(("bearer" = [])), params(("id" = i64, Path)), request_body = ShiftBody, responses((status = 200, body = MasterView), (status = 400, description = "bad_request", body = crate::service::error::ErrorBody), (status = 401, description = "unauthorized", body = crate::service::error::ErrorBody), (status = 403, description = "forbidden", body = crate::service::error::ErrorBody), (status = 503, description = "unavailable", body = crate::service::error::ErrorBody)))]
pub async fn set_shift(
    StaffOrMaster(user): StaffOrMaster,
    app: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<ShiftBody>,
) -> Result<HttpResponse, AppError> {
    let master_id = id.into_inner();
    if !user.role.is_staff() && user.master() != Some(MasterId(master_id)) {
        return Err(AppError::Forbidden(
            "a master may only change his own shift".into(),
        ));
    }
    let master = app.service.set_shift(master_id, body.on_shift).await?;
    Ok(HttpResponse::Ok().json(MasterView::from(&master)))
}
