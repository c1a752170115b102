//! `/admin`: the operations page, embedded in the binary (no CDN, no build step). It asks for an
//! admin token and reads everything over one WebSocket.

use actix_web::{HttpResponse, http::header::ContentType};

const PAGE: &str = include_str!("../../../assets/admin/index.html");
const SCRIPT: &str = include_str!("../../../assets/admin/app.js");
const STYLE: &str = include_str!("../../../assets/admin/app.css");

#[utoipa::path(get, path = "/admin", tag = "operators", responses((status = 200, description = "the operations page (HTML); it asks for an admin token", content_type = "text/html")))]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:",
        ))
        .body(PAGE)
}

#[utoipa::path(get, path = "/admin/app.js", tag = "operators", responses((status = 200, description = "the operations page's script", content_type = "text/javascript")))]
pub async fn script() -> HttpResponse {
    super::embedded(super::JAVASCRIPT, SCRIPT)
}

#[utoipa::path(get, path = "/admin/app.css", tag = "operators", responses((status = 200, description = "the operations page's style sheet", content_type = "text/css")))]
pub async fn style() -> HttpResponse {
    super::embedded(super::CSS, STYLE)
}
