use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::{MAX_BODY_BYTES, at_most};
use crate::{
    auth::{AuthUser, MasterUser, Staff},
    error::AppError,
    state::AppState,
    views::AssignmentView,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    order_id: i64,
    master_id: i64,
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
pub struct RejectBody {
    reason: Option<String>,
}

pub async fn create(
    _: Staff,
    app: web::Data<AppState>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let ttl = body.ttl_seconds.map(Duration::from_secs);
    let (assignment, delivered) = app
        .service
        .offer(body.order_id, body.master_id, ttl)
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "assignment": AssignmentView::from(&assignment),
        "delivered": delivered,
    })))
}

pub async fn get(
    user: AuthUser,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    if !user.role.is_staff() && user.master().is_none() {
        return Err(AppError::Forbidden(
            "only staff and masters see assignments".into(),
        ));
    }
    let assignment = app.service.get_assignment(user, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(AssignmentView::from(&assignment)))
}

pub async fn accept(
    MasterUser(user): MasterUser,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let accepted = app.service.accept(user, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(AssignmentView::from(&accepted.assignment)))
}

pub async fn reject(
    MasterUser(user): MasterUser,
    app: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Payload,
) -> Result<HttpResponse, AppError> {
    let body = body
        .to_bytes_limited(MAX_BODY_BYTES)
        .await
        .map_err(|_| AppError::PayloadTooLarge(MAX_BODY_BYTES))?
        .map_err(|e| AppError::BadRequest(format!("cannot read the body: {e}")))?;
    let body: RejectBody = if body.iter().all(u8::is_ascii_whitespace) {
        RejectBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let reason = body.reason.map(|r| at_most("reason", 500, r)).transpose()?;
    let assignment = app.service.reject(user, id.into_inner(), reason).await?;
    Ok(HttpResponse::Ok().json(AssignmentView::from(&assignment)))
}

pub async fn cancel(
    Staff(user): Staff,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let assignment = app.service.cancel(user, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(AssignmentView::from(&assignment)))
}
