use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{auth::Staff, error::AppError, state::AppState};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushBody {
    user_ids: Vec<i64>,
    #[serde(rename = "type")]
    kind: String,
    payload: Value,
    topic: Option<String>,
}

/// A push from the rest of the platform (chat messages, dialog updates) to users' connections.
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
    Ok(HttpResponse::Accepted().json(json!({ "delivered": delivered })))
}
