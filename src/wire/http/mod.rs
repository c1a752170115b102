//! HTTP routes, one file per resource, mounted by [`config`].

pub mod access;
mod admin;
mod assignments;
mod dashboard;
mod debug;
mod dispatches;
mod docs;
mod health;
mod masters;
pub mod metrics;
mod orders;
mod push;
mod webhooks;

use actix_web::{HttpRequest, error::JsonPayloadError, error::PathError, web};

use crate::{protocol::shapes::ErrorBody, service::error::AppError};

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .content_type_required(false)
            .limit(MAX_BODY_BYTES)
            .error_handler(|e: JsonPayloadError, _: &HttpRequest| match e {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    AppError::PayloadTooLarge(MAX_BODY_BYTES).into()
                }
                e => AppError::BadRequest(format!("invalid JSON body: {e}")).into(),
            }),
    )
    .app_data(
        web::PathConfig::default().error_handler(|_: PathError, req: &HttpRequest| {
            AppError::NotFound(format!("nothing at {}", req.path())).into()
        }),
    )
    .route("/health", web::get().to(health::health))
    .route("/admin", web::get().to(dashboard::page))
    .route("/admin/app.js", web::get().to(dashboard::script))
    .route("/admin/app.css", web::get().to(dashboard::style))
    .route("/debug", web::get().to(debug::page))
    .route("/debug/app.js", web::get().to(debug::script))
    .route("/debug/app.css", web::get().to(debug::style))
    .route("/debug/close-codes.json", web::get().to(debug::close_codes))
    .route("/ws", web::to(not_upgraded))
    .route("/api/v1/ws", web::to(not_upgraded_v1))
    .configure(docs::config)
    .route(
        "/api/admin/websocket/stats",
        web::get().to(admin::websocket_stats),
    )
    .service(
        web::scope("/api/v1")
            .route("/orders/{id}", web::put().to(orders::upsert))
            .route("/orders/{id}/status", web::patch().to(orders::set_status))
            .route("/orders/{id}/dispatch", web::post().to(dispatches::create))
            .route("/dispatches/{id}", web::get().to(dispatches::get))
            .route("/dispatches/{id}", web::delete().to(dispatches::cancel))
            .route("/assignments", web::post().to(assignments::create))
            .route(
                "/assignments/batch",
                web::post().to(assignments::create_batch),
            )
            .route("/assignments/{id}", web::get().to(assignments::get))
            .route(
                "/assignments/{id}/accept",
                web::post().to(assignments::accept),
            )
            .route(
                "/assignments/{id}/reject",
                web::post().to(assignments::reject),
            )
            .route(
                "/assignments/{id}/cancel",
                web::post().to(assignments::cancel),
            )
            .route(
                "/masters/me/assignments",
                web::get().to(masters::my_assignments),
            )
            .route("/masters/{id}/shift", web::put().to(masters::set_shift))
            .route("/push", web::post().to(push::push))
            .route(
                "/webhooks/events/{eventId}/retry",
                web::post().to(webhooks::retry),
            ),
    )
    .default_service(web::to(|req: HttpRequest| async move {
        Err::<actix_web::HttpResponse, _>(AppError::NotFound(format!("nothing at {}", req.path())))
    }));
}

/// A request for a WebSocket path without the upgrade headers (upgrades never reach the routes).
#[utoipa::path(get, path = "/ws", tag = "websocket", responses(
    (status = 101, description = "the WebSocket upgrade; a token in `?token=`, `Authorization: Bearer`, or the first message; the protocol is in docs/PROTOCOL.md"),
    (status = 400, description = "a request without the upgrade headers", body = ErrorBody),
    (status = 429, description = "rate_limited: too many unauthenticated connections from this address", body = ErrorBody),
    (status = 503, description = "over_capacity: MAX_CONNECTIONS reached", body = ErrorBody),
))]
async fn not_upgraded() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::BadRequest(
        "this path takes WebSocket upgrades only".into(),
    ))
}

/// The same WebSocket at the API's own prefix.
#[utoipa::path(get, path = "/api/v1/ws", tag = "websocket", responses(
    (status = 101, description = "the WebSocket upgrade, as `/ws`"),
    (status = 400, description = "a request without the upgrade headers", body = ErrorBody),
))]
async fn not_upgraded_v1() -> Result<actix_web::HttpResponse, AppError> {
    not_upgraded().await
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// A file embedded in the binary (the pages' scripts and styles).
fn embedded(content_type: &'static str, body: &'static str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type(content_type)
        .body(body)
}

/// The largest request body taken, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
