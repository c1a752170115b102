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

async fn in_flight(app: &TestApp) -> f64 {
    let seen = crate::metrics::scrape(app).await;
    crate::metrics::value(&seen, "dispatcher_replays_in_flight", &[])
}

/// A client that never reads and keeps subscribing and unsubscribing holds one replay at a time,
/// and closing frees it: nothing stays parked.
async fn a_reader_that_never_reads_holds_one_replay_and_closing_frees_it(db: Db) {
    let app = spawn_app_with(
        db,
        vec![
            ("MAX_QUEUED_BYTES", "16384".into()),
            ("MAX_CONNECTIONS_PER_USER", "50".into()),
        ],
    )
    .await;
    // 300 open offers of 4 KB: more than a socket's buffers and the queue hold.
    let now = chrono::Utc::now().timestamp_millis();
    let problem = "p".repeat(4000);
    let orders: Vec<String> = (1..=300)
        .map(|id| {
            format!("({id}, 7, 'a', 'd', '{problem}', NULL, NULL, 'new', NULL, {now}, {now})")
        })
        .collect();
    app.storage.execute(&format!(
        "INSERT INTO orders (id, client_user_id, address, device_type, problem, client_name, \
         client_phone, status, master_id, created_at, updated_at) VALUES {}",
        orders.join(", ")
    ));
    let offers: Vec<String> = (1..=300)
        .map(|id| format!("({id}, 3, 'pending', {now}, {})", now + 600_000))
        .collect();
    app.storage.execute(&format!(
        "INSERT INTO assignments (order_id, master_id, status, created_at, expires_at) VALUES {}",
        offers.join(", ")
    ));

    let mut readers = Vec::new();
    for _ in 0..10 {
        let mut ws = WsClient::connect(
            &app.ws_url(&format!("/ws?token={}", app.master_token(3))),
            &[],
        )
        .await;
        // Within the burst of the rate limit: 30 messages, never reading an answer.
        for _ in 0..15 {
            ws.send(json!({"type": "subscribe_assignments"})).await;
            ws.send(json!({"type": "unsubscribe_assignments"})).await;
        }
        ws.send(json!({"type": "subscribe_assignments"})).await;
        readers.push(ws);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let during = in_flight(&app).await;
    assert!(
        (1.0..=10.0).contains(&during),
        "one replay per connection at most, and they are stuck: {during}"
    );
    drop(readers);
    let deadline = std::time::Instant::now() + PATIENCE;
    while in_flight(&app).await > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a replay stayed parked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

on_both_backends!(
    a_master_with_1000_open_offers_gets_each_once_on_subscribe,
    a_reader_that_never_reads_holds_one_replay_and_closing_frees_it,
);
