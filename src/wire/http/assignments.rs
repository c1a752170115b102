use std::time::Duration;

use actix_web::{HttpResponse, ResponseError, web};
use serde::Deserialize;

use super::MAX_BODY_BYTES;
use crate::{
    domain::input::RejectReason,
    protocol::shapes::{AssignmentCreated, AssignmentView, BatchAnswer, BatchResult},
    service::{
        error::AppError,
        policy::{CancelOffers, DecideOffers, MakeOffers, SeeAssignments},
    },
    wire::{auth::Permitted, state::AppState},
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    order_id: i64,
    master_id: i64,
    ttl_seconds: Option<u64>,
}

/// The most offers one batch takes.
pub const MAX_BATCH_OFFERS: usize = 100;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct BatchBody {
    /// 1 to 100 offers, each as `POST /api/v1/assignments` takes it.
    offers: Vec<CreateBody>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct RejectBody {
    reason: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/assignments", tag = "assignments", security(("bearer" = [])), request_body = CreateBody, responses((status = 201, body = AssignmentCreated), (status = 400, description = "bad_request", body = crate::protocol::shapes::ErrorBody), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 409, description = "conflict or assignment_not_pending", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn create(
    Permitted(permit): Permitted<MakeOffers>,
    app: web::Data<AppState>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let ttl = body.ttl_seconds.map(Duration::from_secs);
    let (assignment, delivered) = app
        .service
        .offer(permit, body.order_id, body.master_id, ttl)
        .await?;
    Ok(HttpResponse::Created().json(AssignmentCreated {
        assignment: AssignmentView::from(&assignment),
        delivered,
    }))
}

/// Many offers with one commit: each answered as `POST /api/v1/assignments` would have answered it,
/// so one refused offer (a 409) does not fail the rest.
#[utoipa::path(post, path = "/api/v1/assignments/batch", tag = "assignments", security(("bearer" = [])), request_body = BatchBody, responses((status = 200, body = BatchAnswer), (status = 400, description = "bad_request", body = crate::protocol::shapes::ErrorBody), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 413, description = "payload_too_large", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn create_batch(
    Permitted(permit): Permitted<MakeOffers>,
    app: web::Data<AppState>,
    body: web::Json<BatchBody>,
) -> Result<HttpResponse, AppError> {
    let offers = body.into_inner().offers;
    if offers.is_empty() || offers.len() > MAX_BATCH_OFFERS {
        return Err(AppError::BadRequest(format!(
            "offers: give 1 to {MAX_BATCH_OFFERS} offers, not {}",
            offers.len()
        )));
    }
    let offers = offers
        .into_iter()
        .map(|offer| {
            let ttl = offer.ttl_seconds.map(Duration::from_secs);
            (offer.order_id, offer.master_id, ttl)
        })
        .collect();
    let results = app.service.offer_each(permit, offers).await?;
    let results = results
        .iter()
        .map(|result| match result {
            Ok((assignment, delivered)) => BatchResult::Created {
                status: 201,
                assignment: AssignmentView::from(assignment),
                delivered: *delivered,
            },
            Err(refused) => BatchResult::Refused {
                status: refused.status_code().as_u16(),
                code: refused.code(),
                message: refused.to_string(),
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(BatchAnswer { results }))
}

#[utoipa::path(get, path = "/api/v1/assignments/{id}", tag = "assignments", security(("bearer" = [])), params(("id" = i64, Path)), responses((status = 200, body = AssignmentView), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn get(
    Permitted(permit): Permitted<SeeAssignments>,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let assignment = app.service.get_assignment(permit, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(AssignmentView::from(&assignment)))
}

#[utoipa::path(post, path = "/api/v1/assignments/{id}/accept", tag = "assignments", security(("bearer" = [])), params(("id" = i64, Path)), responses((status = 200, body = AssignmentView), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 409, description = "conflict or assignment_not_pending", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn accept(
    Permitted(permit): Permitted<DecideOffers>,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let accepted = app.service.accept(permit, id.into_inner(), |_| {}).await?;
    Ok(HttpResponse::Ok().json(AssignmentView::from(&accepted.assignment)))
}

#[utoipa::path(post, path = "/api/v1/assignments/{id}/reject", tag = "assignments", security(("bearer" = [])), params(("id" = i64, Path)), request_body(content = Option<RejectBody>, description = "optional"), responses((status = 200, body = AssignmentView), (status = 400, description = "bad_request", body = crate::protocol::shapes::ErrorBody), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 409, description = "conflict or assignment_not_pending", body = crate::protocol::shapes::ErrorBody), (status = 413, description = "payload_too_large", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn reject(
    Permitted(permit): Permitted<DecideOffers>,
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
    let reason = RejectReason::parse(body.reason)?;
    let assignment = app.service.reject(permit, id.into_inner(), reason).await?;
    Ok(HttpResponse::Ok().json(AssignmentView::from(&assignment)))
}

#[utoipa::path(post, path = "/api/v1/assignments/{id}/cancel", tag = "assignments", security(("bearer" = [])), params(("id" = i64, Path)), responses((status = 200, body = AssignmentView), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 404, description = "not_found", body = crate::protocol::shapes::ErrorBody), (status = 409, description = "conflict or assignment_not_pending", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn cancel(
    Permitted(permit): Permitted<CancelOffers>,
    app: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let assignment = app.service.cancel(permit, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(AssignmentView::from(&assignment)))
}
