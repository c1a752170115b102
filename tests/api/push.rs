//! Pushes from the rest of the platform (seeds 002 and 003): chat messages and dialog updates to
//! users' open connections, at most once, online only.

use std::time::Duration;

use dispatcher::domain::Role;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const QUIET: Duration = Duration::from_millis(300);

async fn user_ws(app: &TestApp, user_id: i64) -> WsClient {
    let token = app.token(Role::Client, user_id, None);
    let mut ws = app.ws(&format!("/ws?token={token}")).await;
    ws.recv_type("auth_success").await;
    ws
}

async fn push(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.request(
        Method::POST,
        "/api/v1/push",
        Some(&app.service_token()),
        Some(body),
    )
    .await
}

fn new_message(user_ids: Value) -> Value {
    json!({"userIds": user_ids, "type": "new_message",
        "payload": {"chatId": 12, "text": "Мастер будет через 10 минут", "from": 3}})
}

async fn every_connection_of_the_named_users_gets_the_payload_at_the_top_level(db: Db) {
    let app = spawn_app(db).await;
    let mut phone = user_ws(&app, 7).await;
    let mut laptop = user_ws(&app, 7).await;
    let mut other = user_ws(&app, 8).await;

    let (status, body) = push(&app, new_message(json!([7, 7, 9]))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"delivered": 2}));
    for ws in [&mut phone, &mut laptop] {
        let message = ws.recv().await;
        assert_eq!(
            message,
            json!({"type": "new_message", "chatId": 12, "text": "Мастер будет через 10 минут", "from": 3})
        );
        ws.expect_silence(QUIET).await;
    }
    other.expect_silence(QUIET).await;

    // Nobody online: nothing is stored, and the caller can tell.
    let (status, body) = push(&app, new_message(json!([8000]))).await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({"delivered": 0}))
    );
}

async fn a_topic_push_reaches_only_the_connections_subscribed_to_it(db: Db) {
    let app = spawn_app(db).await;
    let mut chat = user_ws(&app, 7).await;
    let mut orders = user_ws(&app, 7).await;
    chat.send(json!({"type": "subscribe", "topics": ["dialogs", "dialogs"], "requestId": 4}))
        .await;
    let subscribed = chat.recv_type("subscribed").await;
    assert_eq!(subscribed["topics"], json!(["dialogs"]));
    assert_eq!(subscribed["requestId"], 4);
    orders.send(json!({"type": "subscribe"})).await;
    assert_eq!(
        orders.recv_type("subscribed").await["topics"],
        json!(["default"])
    );

    let mut dialog_update = json!({"userIds": [7], "type": "dialog_update",
        "payload": {"dialogId": 5, "unread": 2}, "topic": "dialogs"});
    let (_, body) = push(&app, dialog_update.clone()).await;
    assert_eq!(body["delivered"], 1);
    let update = chat.recv_type("dialog_update").await;
    assert_eq!(
        (update["dialogId"].clone(), update["unread"].clone()),
        (json!(5), json!(2))
    );
    orders.expect_silence(QUIET).await;

    chat.send(json!({"type": "unsubscribe", "topics": ["dialogs"]}))
        .await;
    assert_eq!(
        chat.recv_type("unsubscribed").await["topics"],
        json!(["dialogs"])
    );
    let (_, body) = push(&app, dialog_update.clone()).await;
    assert_eq!(body["delivered"], 0);
    dialog_update["topic"] = json!("default");
    let (_, body) = push(&app, dialog_update).await;
    assert_eq!(body["delivered"], 1);
    orders.recv_type("dialog_update").await;
    chat.expect_silence(QUIET).await;

    // Topic names and counts are checked.
    chat.send(json!({"type": "subscribe", "topics": ["Bad Topic"]}))
        .await;
    chat.recv_error("bad_request").await;
    let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    chat.send(json!({"type": "subscribe", "topics": many}))
        .await;
    chat.recv_error("bad_request").await;
}

async fn bad_pushes_are_refused_with_the_field_named(db: Db) {
    let app = spawn_app(db).await;
    let refused = |body: Value, status: StatusCode, code: &'static str, field: &'static str| {
        let app = &app;
        async move {
            let (got, answer) = push(app, body.clone()).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert_eq!(answer["code"], code, "{answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.contains(field), "{message} should name {field}");
        }
    };
    let bad = StatusCode::BAD_REQUEST;
    let payload = json!({"chatId": 1});
    for kind in [
        "new_assignment",
        "pong",
        "subscribed",
        "New_message",
        "new-message",
        "",
    ] {
        let body = json!({"userIds": [7], "type": kind, "payload": payload});
        refused(body, bad, "bad_request", "type").await;
    }
    let body = json!({"userIds": [7], "type": "new_message", "payload": {"type": "x"}});
    refused(body, bad, "bad_request", "type").await;
    let body = json!({"userIds": [7], "type": "new_message", "payload": [1, 2]});
    refused(body, bad, "bad_request", "payload").await;
    let body = json!({"userIds": [], "type": "new_message", "payload": payload});
    refused(body, bad, "bad_request", "userIds").await;
    let thousand_and_one: Vec<i64> = (1..=1001).collect();
    let body = json!({"userIds": thousand_and_one, "type": "new_message", "payload": payload});
    refused(body, bad, "bad_request", "userIds").await;
    let body = json!({"userIds": [7, 0], "type": "new_message", "payload": payload});
    refused(body, bad, "bad_request", "userIds").await;
    let body = json!({"userIds": [7], "type": "new_message", "payload": payload, "topic": "A B"});
    refused(body, bad, "bad_request", "topic").await;
    let huge = json!({"userIds": [7], "type": "new_message",
        "payload": {"text": "x".repeat(70_000)}});
    refused(
        huge,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "bytes",
    )
    .await;

    let (status, _) = app
        .request(
            Method::POST,
            "/api/v1/push",
            Some(&app.master_token(3)),
            Some(new_message(json!([7]))),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn one_push_reaches_1000_users(db: Db) {
    let app = spawn_app(db).await;
    let mut users = join_all((1..=1000).map(|id| user_ws(&app, id))).await;
    let ids: Vec<i64> = (1..=1000).collect();
    let (status, body) = push(&app, new_message(json!(ids))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["delivered"], 1000);
    let received = join_all(users.iter_mut().map(|ws| ws.recv_type("new_message"))).await;
    assert!(received.iter().all(|m| m["chatId"] == 12));
}

async fn a_master_gets_pushes_and_offers_on_one_connection(db: Db) {
    let app = spawn_app(db).await;
    let mut master = app.subscribed_master(3).await;
    app.put_order(10, 7).await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    master.recv_type("new_assignment").await;
    // The master's token names user 1003.
    let (_, body) = push(&app, new_message(json!([1003]))).await;
    assert_eq!(body["delivered"], 1);
    master.recv_type("new_message").await;
    app.put_order(11, 7).await;
    let (second, _) = app.offer_ok(11, 3, None).await;
    let offer = master.recv_type("new_assignment").await;
    assert_eq!(offer["assignment"]["id"], second);
    assert_ne!(id, second);
}

on_both_backends!(
    every_connection_of_the_named_users_gets_the_payload_at_the_top_level,
    a_topic_push_reaches_only_the_connections_subscribed_to_it,
    bad_pushes_are_refused_with_the_field_named,
    one_push_reaches_1000_users,
    a_master_gets_pushes_and_offers_on_one_connection,
);
