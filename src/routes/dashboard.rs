//! `/admin`: the operations page, embedded in the binary (no CDN, no build step). It asks for an
//! admin token and reads everything over one WebSocket.

use actix_web::{HttpResponse, http::header::ContentType};

const PAGE: &str = include_str!("../admin_page/index.html");
const SCRIPT: &str = include_str!("../admin_page/app.js");
const STYLE: &str = include_str!("../admin_page/app.css");

pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:",
        ))
        .body(PAGE)
}

pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(SCRIPT)
}

pub async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLE)
}
