use serde_json::json;

use crate::helpers::*;

fn allowed() -> Vars {
    vec![("ALLOWED_ORIGINS", "https://pixeltoo.ru, file://".into())]
}

async fn refused(app: &TestApp, headers: &[(&str, &str)]) -> Closed {
    let mut ws = WsClient::connect(&app.ws_url("/ws"), headers).await;
    let mut before = Vec::new();
    let closed = ws.closed_after(&mut before).await;
    assert!(before.is_empty(), "{before:?}");
    closed
}

async fn a_foreign_origin_is_closed_with_1008_before_any_message(db: Db) {
    let app = spawn_app_with(db, allowed()).await;
    let closed = refused(&app, &[("Origin", "https://evil.example")]).await;
    assert_eq!(
        closed,
        Closed {
            code: 1008,
            reason: "origin not allowed".into()
        }
    );
}

async fn listed_origins_and_mobile_apps_are_let_in(db: Db) {
    let app = spawn_app_with(db, allowed()).await;
    let cases: [&[(&str, &str)]; 6] = [
        &[("Origin", "https://pixeltoo.ru")],
        &[("Origin", "file://")],
        &[],
        &[("Origin", "null")],
        &[
            ("Origin", "https://evil.example"),
            ("User-Agent", "Dart/3.2 (dart:io)"),
        ],
        &[
            ("Origin", "https://evil.example"),
            ("User-Agent", "MyApp Flutter/3.16"),
        ],
    ];
    for headers in cases {
        let mut ws = WsClient::connect(&app.ws_url("/ws"), headers).await;
        assert_eq!(ws.recv().await["type"], "connected", "{headers:?}");
    }
}

async fn a_near_miss_origin_is_refused(db: Db) {
    let app = spawn_app_with(db, allowed()).await;
    assert_eq!(
        refused(&app, &[("Origin", "https://pixeltoo.ru.evil.example")])
            .await
            .code,
        1008
    );
}

async fn without_allowed_origins_any_origin_is_let_in(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = WsClient::connect(
        &app.ws_url("/ws"),
        &[("Origin", "https://anything.example")],
    )
    .await;
    assert_eq!(ws.recv().await["type"], json!("connected"));
}

on_both_backends!(
    a_foreign_origin_is_closed_with_1008_before_any_message,
    listed_origins_and_mobile_apps_are_let_in,
    a_near_miss_origin_is_refused,
    without_allowed_origins_any_origin_is_let_in,
);
