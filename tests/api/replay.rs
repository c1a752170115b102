//! Replay on subscribe is paced by what the client reads: never dropped, never held against it.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

const OFFERS: i64 = 1000;

async fn a_master_with_1000_open_offers_gets_each_once_on_subscribe(db: Db) {
    let app = spawn_app(db).await;
    // 4 KB each: 4 MB in all, four times MAX_QUEUED_BYTES.
    let problem = "p".repeat(4000);
    let token = app.service_token();
    for chunk in (1..=OFFERS).collect::<Vec<_>>().chunks(50) {
        join_all(chunk.iter().map(|&order| {
            let body = json!({"clientUserId": 7, "address": "a", "deviceType": "d",
                "problem": problem});
            let (app, token) = (&app, &token);
            async move {
                let path = format!("/api/v1/orders/{order}");
                let (status, body) = app
                    .request(Method::PUT, &path, Some(token), Some(body))
                    .await;
                assert!(status.is_success(), "{body}");
                app.offer_ok(order, 3, None).await;
            }
        }))
        .await;
    }

    let mut master = app.subscribed_master(3).await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < OFFERS as usize {
        let offer = master.recv_type("new_assignment").await;
        let order = offer["assignment"]["orderId"].as_i64().unwrap();
        assert!(seen.insert(order), "order {order} offered twice");
    }
    master.send(json!({"type": "ping"})).await;
    master.recv_type("pong").await;
    assert_eq!(app.stats().await["totalConnected"], 1);
}

on_both_backends!(a_master_with_1000_open_offers_gets_each_once_on_subscribe);
