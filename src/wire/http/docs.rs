//! The API's OpenAPI 3.1 description, generated from the handlers and their types, and an
//! embedded Swagger UI to read it (`/api/docs`), which works offline.

use actix_web::{HttpResponse, http::header::ContentType, web};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dispatcher",
        description = "Real-time assignment dispatcher: offers orders to masters over WebSocket. \
                       The WebSocket protocol (messages, close codes) is in docs/PROTOCOL.md.",
    ),
    paths(
        super::health::health,
        super::not_upgraded,
        super::not_upgraded_v1,
        super::dashboard::page,
        super::dashboard::script,
        super::dashboard::style,
        super::debug::page,
        super::debug::script,
        super::debug::style,
        super::debug::close_codes,
        super::metrics::guarded,
        openapi,
        page,
        bundle,
        style,
        start,
        super::admin::websocket_stats,
        super::orders::upsert,
        super::orders::set_status,
        super::dispatches::create,
        super::dispatches::get,
        super::dispatches::cancel,
        super::assignments::create,
        super::assignments::create_batch,
        super::assignments::get,
        super::assignments::accept,
        super::assignments::reject,
        super::assignments::cancel,
        super::masters::my_assignments,
        super::masters::set_shift,
        super::push::push,
        super::webhooks::retry,
    ),
    modifiers(&BearerTokens),
)]
pub struct ApiDoc;

/// Every route but `/health`, the page assets and the docs takes `Authorization: Bearer <JWT>`.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "service", responses(
    (status = 200, description = "this document", content_type = "application/json"),
))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

const SWAGGER_BUNDLE: &str = include_str!("../../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_STYLE: &str = include_str!("../../../assets/swagger-ui/swagger-ui.css");

#[utoipa::path(get, path = "/api/docs", tag = "service", responses(
    (status = 200, description = "Swagger UI over /api/openapi.json, embedded (no CDN)", content_type = "text/html"),
))]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::html()).body(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dispatcher API</title><link rel="stylesheet" href="/api/docs/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/start.js"></script></body></html>"#,
    )
}

#[utoipa::path(get, path = "/api/docs/swagger-ui-bundle.js", tag = "service", responses((status = 200, description = "the docs page's asset", content_type = "text/javascript")))]
pub async fn bundle() -> HttpResponse {
    super::embedded(super::JAVASCRIPT, SWAGGER_BUNDLE)
}

#[utoipa::path(get, path = "/api/docs/swagger-ui.css", tag = "service", responses((status = 200, description = "the docs page's asset", content_type = "text/css")))]
pub async fn style() -> HttpResponse {
    super::embedded(super::CSS, SWAGGER_STYLE)
}

#[utoipa::path(get, path = "/api/docs/start.js", tag = "service", responses((status = 200, description = "the docs page's asset", content_type = "text/javascript")))]
pub async fn start() -> HttpResponse {
    super::embedded(
        super::JAVASCRIPT,
        r##"window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#ui" });"##,
    )
}

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(openapi))
        .route("/api/docs", web::get().to(page))
        .route("/api/docs/swagger-ui-bundle.js", web::get().to(bundle))
        .route("/api/docs/swagger-ui.css", web::get().to(style))
        .route("/api/docs/start.js", web::get().to(start));
}
