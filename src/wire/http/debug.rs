//! `/debug`: try a connection from a browser, frame by frame; embedded in the binary.

use actix_web::{HttpResponse, http::header::ContentType};

use crate::protocol::close::{CLOSE_CAUSES, CloseCause};

const PAGE: &str = include_str!("../../../assets/debug/index.html");
const SCRIPT: &str = include_str!("../../../assets/debug/app.js");
const STYLE: &str = include_str!("../../../assets/debug/app.css");

#[utoipa::path(get, path = "/debug", tag = "operators", responses(
    (status = 200, description = "a page that opens a WebSocket, shows each frame and explains the close", content_type = "text/html"),
))]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(PAGE)
}

#[utoipa::path(get, path = "/debug/app.js", tag = "operators", responses(
    (status = 200, description = "the debug page's script", content_type = "text/javascript"),
))]
pub async fn script() -> HttpResponse {
    super::embedded(super::JAVASCRIPT, SCRIPT)
}

#[utoipa::path(get, path = "/debug/app.css", tag = "operators", responses(
    (status = 200, description = "the debug page's style sheet", content_type = "text/css"),
))]
pub async fn style() -> HttpResponse {
    super::embedded(super::CSS, STYLE)
}

#[utoipa::path(get, path = "/debug/close-codes.json", tag = "operators", responses(
    (status = 200, description = "every close code this server sends, with its reasons, meaning and fix", body = [CloseCause]),
))]
pub async fn close_codes() -> HttpResponse {
    HttpResponse::Ok().json(CLOSE_CAUSES)
}
