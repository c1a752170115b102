//! The upgrade route: origin policy, token from the query or header, then a session actor.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use actix_ws::{CloseCode, CloseReason};
use serde::Deserialize;

use super::session::{Peer, WsSession};
use crate::{auth::bearer_token, state::AppState};

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Seed 000: mobile apps send no Origin (or `null`) and identify as Dart/Flutter; they are always let in.
pub fn origin_allowed(allowed: Option<&[String]>, origin: &str, user_agent: &str) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    let is_mobile_app = origin.is_empty()
        || origin == "null"
        || user_agent.contains("Dart")
        || user_agent.contains("Flutter");
    is_mobile_app || allowed.iter().any(|o| o == origin)
}

fn header_text(req: &HttpRequest, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let peer = Peer {
        path: req.path().to_string(),
        addr: req
            .connection_info()
            .realip_remote_addr()
            .unwrap_or("unknown")
            .to_string(),
        origin: header_text(&req, header::ORIGIN),
        user_agent: header_text(&req, header::USER_AGENT),
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;

    if !origin_allowed(
        app.config.allowed_origins.as_deref(),
        &peer.origin,
        &peer.user_agent,
    ) {
        log::warn!("WebSocket refused: origin not allowed; {peer}");
        // Upgrade first and close with 1008, so browsers and apps see why.
        actix_web::rt::spawn(async move {
            let reason = CloseReason {
                code: CloseCode::Policy,
                description: Some("origin not allowed".into()),
            };
            let _ = session.close(Some(reason)).await;
            drop(stream);
        });
        return Ok(response);
    }
    log::info!("WebSocket accepted; {peer}");

    let query_token = web::Query::<TokenQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().token)
        .filter(|t| !t.is_empty());
    let upgrade_auth = query_token
        .as_deref()
        .or_else(|| bearer_token(&req))
        .map(|token| app.jwt.decode(token));

    let max = app.config.max_message_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    WsSession::start(app, session, stream, peer, upgrade_auth);
    Ok(response)
}
