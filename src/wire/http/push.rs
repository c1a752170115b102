use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    domain::Push,
    protocol::{is_reserved_type, shapes::Delivered},
    service::{error::AppError, policy},
    wire::{auth::Permitted, state::AppState},
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushBody {
    user_ids: Vec<i64>,
    #[serde(rename = "type")]
    kind: String,
    #[schema(value_type = Object)]
    payload: Value,
    topic: Option<String>,
}

/// A push from the rest of the platform (chat messages, dialog updates) to users' connections.
#[utoipa::path(post, path = "/api/v1/push", tag = "pushes", security(("bearer" = [])), request_body = PushBody, responses((status = 202, body = Delivered), (status = 400, description = "bad_request", body = crate::protocol::shapes::ErrorBody), (status = 401, description = "unauthorized", body = crate::protocol::shapes::ErrorBody), (status = 403, description = "forbidden", body = crate::protocol::shapes::ErrorBody), (status = 413, description = "payload_too_large", body = crate::protocol::shapes::ErrorBody), (status = 503, description = "unavailable", body = crate::protocol::shapes::ErrorBody)))]
pub async fn push(
    Permitted(permit): Permitted<policy::Push>,
    app: web::Data<AppState>,
    body: web::Json<PushBody>,
) -> Result<HttpResponse, AppError> {
    let PushBody {
        user_ids,
        kind,
        payload,
        topic,
    } = body.into_inner();
    let push = Push::parse(user_ids, kind, payload, topic, is_reserved_type)?;
    let delivered = app.service.push(permit, push).await;
    Ok(HttpResponse::Accepted().json(Delivered { delivered }))
}
