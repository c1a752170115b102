use actix_web::{HttpResponse, web};

use crate::{
    protocol::shapes::{ErrorBody, WebhookRetried},
    service::{error::AppError, policy::RetryWebhooks},
    wire::{auth::Permitted, state::AppState},
};

/// Sends a given-up webhook event (its `eventId`) again, with a fresh `WEBHOOK_MAX_AGE_SECS`.
#[utoipa::path(post, path = "/api/v1/webhooks/events/{eventId}/retry", tag = "webhooks", security(("bearer" = [])), params(("eventId" = String, Path, description = "the eventId the receiver got, or the log named")), responses((status = 200, body = WebhookRetried), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody), (status = 404, description = "not_found: no such event (or deleted after WEBHOOK_RETENTION_SECS)", body = ErrorBody), (status = 409, description = "conflict: the event was not given up", body = ErrorBody), (status = 503, description = "unavailable", body = ErrorBody)))]
pub async fn retry(
    Permitted(permit): Permitted<RetryWebhooks>,
    app: web::Data<AppState>,
    event_id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let event_id = event_id.into_inner();
    app.service.retry_webhook(permit, event_id.clone()).await?;
    Ok(HttpResponse::Ok().json(WebhookRetried {
        event_id,
        status: "open",
    }))
}
