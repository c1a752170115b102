//! docs/PROTOCOL.md cannot drift from the code: each client example is read by the server's own
//! parser and written back unchanged, and each server example has the shape (fields, nesting,
//! kinds of values) of the frame a live server sends for it.

use std::{collections::BTreeMap, time::Duration};

use dispatcher::{
    domain::Role,
    protocol::{CLIENT_TYPES, ClientMessage, SERVER_TYPES, parse},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// The ```json blocks of the document's Examples section.
fn examples() -> Vec<Value> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PROTOCOL.md"),
    )
    .unwrap();
    let section = &doc[doc.find("## Examples").expect("an Examples section")..];
    section
        .split("```json")
        .skip(1)
        .map(|block| {
            let json = &block[..block.find("```").unwrap()];
            serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
        })
        .collect()
}

/// Fields and nesting, and whether each value is text, a number, a boolean, an object or a list;
/// `null` matches anything (an optional field that has no value this time).
fn same_shape(doc: &Value, live: &Value) -> Result<(), String> {
    match (doc, live) {
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (Value::Object(a), Value::Object(b)) => {
            let (keys_a, keys_b): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            let mut keys_a = keys_a;
            let mut keys_b = keys_b;
            keys_a.sort();
            keys_b.sort();
            if keys_a != keys_b {
                return Err(format!(
                    "fields {keys_a:?} in the document, {keys_b:?} live"
                ));
            }
            for (key, value) in a {
                same_shape(value, &b[key]).map_err(|e| format!("{key}: {e}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => match (a.first(), b.first()) {
            (Some(x), Some(y)) => same_shape(x, y),
            _ => Ok(()),
        },
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => Ok(()),
        _ => Err(format!("{doc} in the document, {live} live")),
    }
}

/// Every frame of every type a live server sends in one scripted session, by type and event.
async fn live_frames(db: Db) -> BTreeMap<String, Value> {
    let app = spawn_app_with(
        db,
        vec![
            // Less than the usual tokens' hour, so that only the 600 s token below is warned;
            // with the whole hour, every connection raced its warning against its replies.
            ("TOKEN_EXPIRY_NOTICE_SECS", "3000".into()),
            ("SUBSCRIPTION_TIMEOUT_SECS", "1".into()),
            ("CLEANUP_INTERVAL_SECS", "1".into()),
        ],
    )
    .await;
    let mut frames = BTreeMap::new();
    let mut keep = |frame: Value| {
        let mut key = frame["type"].as_str().unwrap_or("?").to_string();
        if let Some(event) = frame["event"].as_str() {
            key = format!("{key}/{event}");
        }
        frames.entry(key).or_insert(frame);
    };

    let mut admin = app.ws("/ws").await;
    admin
        .send(json!({"type": "auth", "token": app.admin_token()}))
        .await;
    keep(admin.recv_skipping_to("auth_success").await);
    admin.send(json!({"type": "subscribe_events"})).await;
    keep(admin.recv_skipping_to("subscribed_events").await);
    admin.send(json!({"type": "ping"})).await;
    keep(admin.recv_skipping_to("pong").await);
    admin
        .send(json!({"type": "accept_assignment", "assignmentId": 1, "requestId": 7}))
        .await;
    keep(admin.recv_skipping_to("error").await);

    let mut refused = app.ws("/ws").await;
    refused
        .send(json!({"type": "auth", "token": "not-a-token"}))
        .await;
    keep(refused.recv_type("auth_error").await);

    // A master whose token runs out within the notice gets token_expiring at once.
    let short = app.jwt.mint(1003, Role::Master, Some(3), 600);
    let mut master = WsClient::connect(&app.ws_url(&format!("/ws?token={short}")), &[]).await;
    keep(master.recv_type("connected").await);
    master.recv_type("auth_success").await;
    keep(master.recv_skipping_to("token_expiring").await);
    master
        .send(json!({"type": "refresh_token", "token": app.master_token(3)}))
        .await;
    keep(master.recv_skipping_to("token_refreshed").await);
    master
        .send(json!({"type": "subscribe", "topics": ["dialogs"]}))
        .await;
    keep(master.recv_skipping_to("subscribed").await);
    master
        .send(json!({"type": "unsubscribe", "topics": ["dialogs"]}))
        .await;
    keep(master.recv_skipping_to("unsubscribed").await);
    master.send(json!({"type": "subscribe_assignments"})).await;
    keep(master.recv_skipping_to("subscribed_assignments").await);

    app.put_order(10, 7).await;
    app.put_order(11, 7).await;
    app.put_order(12, 7).await;
    let mut client = WsClient::connect(
        &app.ws_url(&format!("/ws?token={}", app.token(Role::Client, 7, None))),
        &[],
    )
    .await;
    client.recv_type("connected").await;
    client.recv_type("auth_success").await;

    let (rejected, _) = app.offer_ok(11, 3, None).await;
    keep(master.recv_skipping_to("new_assignment").await);
    master
        .send(json!({"type": "reject_assignment", "assignmentId": rejected, "reason": "too far"}))
        .await;
    keep(master.recv_skipping_to("assignment_rejected").await);
    let (cancelled, _) = app.offer_ok(12, 3, None).await;
    let path = format!("/api/v1/assignments/{cancelled}/cancel");
    let (status, _) = app
        .request(Method::POST, &path, Some(&app.service_token()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    keep(master.recv_skipping_to("assignment_cancelled").await);
    app.offer_ok(12, 3, Some(1)).await;
    keep(master.recv_skipping_to("assignment_expired").await);

    let (status, _) = app
        .request(
            Method::POST,
            "/api/v1/orders/10/dispatch",
            Some(&app.service_token()),
            Some(json!({"candidates": [3], "skipOffline": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let offer = master.recv_skipping_to("new_assignment").await;
    master
        .send(json!({"type": "accept_assignment", "assignmentId": offer["assignment"]["id"]}))
        .await;
    keep(master.recv_skipping_to("assignment_accepted").await);
    keep(client.recv_skipping_to("order_status_update").await);
    for _ in 0..12 {
        match admin.recv_within(Duration::from_secs(3)).await {
            Some(frame) => keep(frame),
            None => break,
        }
    }
    admin.send(json!({"type": "subscribe_stats"})).await;
    keep(admin.recv_skipping_to("stats").await);

    // Not pinging for a second, a subscription is dropped as idle.
    let mut idle = app.subscribed_master(5).await;
    keep(idle.recv_skipping_to("unsubscribed_assignments").await);
    frames
}

async fn every_example_in_the_protocol_document_matches_the_code(db: Db) {
    let examples = examples();
    let live = live_frames(db).await;
    let mut client_types = Vec::new();
    let mut server_types = Vec::new();
    for example in &examples {
        let kind = example["type"].as_str().expect("every example has a type");
        if CLIENT_TYPES.contains(&kind) {
            client_types.push(kind);
            let incoming = parse(&example.to_string());
            let message: ClientMessage = incoming
                .message
                .unwrap_or_else(|e| panic!("the server refuses the example {example}: {e}"));
            let mut written = serde_json::to_value(&message).unwrap();
            if let Some(id) = &incoming.request_id {
                written["requestId"] = id.clone();
            }
            assert_eq!(&written, example, "read and written back");
        } else {
            assert!(
                SERVER_TYPES.contains(&kind),
                "unknown type in an example: {example}"
            );
            server_types.push(kind);
            let key = match example["event"].as_str() {
                Some(event) => format!("{kind}/{event}"),
                None => kind.to_string(),
            };
            let frame = live.get(&key).unwrap_or_else(|| {
                panic!("no live {key} frame to compare {example} with; live: {live:#?}")
            });
            same_shape(example, frame)
                .unwrap_or_else(|e| panic!("{key}: {e}\ndocument: {example}\nlive: {frame}"));
        }
    }
    for kind in CLIENT_TYPES {
        assert!(
            client_types.contains(&kind),
            "no example of the client message {kind}"
        );
    }
    for kind in SERVER_TYPES {
        assert!(
            server_types.contains(&kind),
            "no example of the server message {kind}; live: {live:#?}"
        );
    }
}

on_both_backends!(every_example_in_the_protocol_document_matches_the_code);
