use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::{MasterUser, StaffOrMaster},
    domain::MasterId,
    error::AppError,
    state::AppState,
    views::MasterView,
    wire::OfferView,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShiftBody {
    on_shift: bool,
}

/// The polling fallback: the caller's open offers.
pub async fn my_assignments(
    MasterUser(user): MasterUser,
    app: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let master_id = user.master().expect("MasterUser has a master id");
    let offers = app.service.pending_offers(master_id).await?;
    let assignments: Vec<OfferView> = offers.iter().map(OfferView::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "assignments": assignments })))
}

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
