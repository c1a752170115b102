use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    protocol::shapes::Delivered, service::error::AppError, wire::auth::Staff, wire::state::AppState,
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
#[utoipa::path(post, path = "/api/v1/push", tag = "pushes", security(("bearer" = [])), request_body = PushBody, responses((status = 202, body = Delivered), (status = 400, description = "bad_request", body = crate::service::error::ErrorBody), (status = 401, description = "unauthorized", body = crate::service::error::ErrorBody), (status = 403, description = "forbidden", body = crate::service::error::ErrorBody), (status = 413, description = "payload_too_large", body = crate::service::error::ErrorBody), (status = 503, description = "unavailable", body = crate::service::error::ErrorBody)))]
pub async fn push(
    _: Staff,
    app: web::Data<AppState>,
    body: web::Json<PushBody>,
) -> Result<HttpResponse, AppError> {
    let PushBody {
        user_ids,
        kind,
        payload,
        topic,
    } = body.into_inner();
    let delivered = app.service.push(user_ids, kind, payload, topic).await?;
    Ok(HttpResponse::Accepted().json(Delivered { delivered }))
}
