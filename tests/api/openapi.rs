//! `/api/openapi.json` describes every route the app mounts, and `/api/docs` shows it offline.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};

use crate::helpers::*;

/// `(METHOD, path)` of every `.route(…)` in the sources that mount routes; a route for any
/// method (`web::to`) counts as GET. Routes inside `web::scope("/api/v1")` get that prefix.
fn mounted_routes() -> BTreeSet<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut routes = BTreeSet::new();
    for file in [
        "src/wire/http/mod.rs",
        "src/wire/http/docs.rs",
        "src/wire/server.rs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let scope_at = text.find("web::scope(\"/api/v1\")");
        let scope_end = text.find(".default_service(");
        let mut rest = text.as_str();
        let mut offset = 0;
        while let Some(at) = rest.find(".route(") {
            let call = &rest[at..];
            let path = call.split('"').nth(1).unwrap().to_string();
            let handler = &call[..call.find(".to(").unwrap_or(call.len())];
            let method = ["get", "post", "put", "patch", "delete"]
                .into_iter()
                .find(|m| handler.contains(&format!("web::{m}()")))
                .unwrap_or("get")
                .to_uppercase();
            let position = offset + at;
            let scoped =
                matches!((scope_at, scope_end), (Some(s), Some(e)) if position > s && position < e);
            let path = if scoped {
                format!("/api/v1{path}")
            } else {
                path
            };
            routes.insert((method, path));
            offset += at + 7;
            rest = &rest[at + 7..];
        }
    }
    routes
}

async fn every_mounted_route_is_in_the_openapi_document(db: Db) {
    let app = spawn_app(db).await;
    let (status, doc) = app
        .request(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let mounted = mounted_routes();
    assert!(mounted.len() >= 25, "the route reader found {mounted:?}");
    let missing: Vec<_> = mounted.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "mounted but not documented: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&mounted).collect();
    assert!(stale.is_empty(), "documented but not mounted: {stale:?}");

    // Error answers name the one error shape.
    let conflict = &doc["paths"]["/api/v1/orders/{id}/dispatch"]["post"]["responses"]["409"];
    assert_eq!(
        conflict["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

async fn the_docs_page_and_its_assets_are_served_from_the_binary(db: Db) {
    let app = spawn_app(db).await;
    let page = app
        .http
        .get(format!("{}/api/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("/api/docs/swagger-ui-bundle.js"), "{html}");
    for (asset, at_least) in [
        ("/api/docs/swagger-ui-bundle.js", 1_000_000),
        ("/api/docs/swagger-ui.css", 100_000),
        ("/api/docs/start.js", 40),
    ] {
        let response = app
            .http
            .get(format!("{}{asset}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(response.bytes().await.unwrap().len() >= at_least, "{asset}");
    }
}

on_both_backends!(
    every_mounted_route_is_in_the_openapi_document,
    the_docs_page_and_its_assets_are_served_from_the_binary,
);
