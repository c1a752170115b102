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

/// The real binary's resident memory, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn replays_in_flight_of(http: &reqwest::Client, server: &ServerProcess) -> f64 {
    let admin = dispatcher::wire::auth::JwtKeys::new(SECRET).mint(
        1,
        dispatcher::domain::Role::Admin,
        None,
        3600,
    );
    let text = http
        .get(format!("{}/metrics", server.address()))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    crate::metrics::value(
        &crate::metrics::parse(&text),
        "dispatcher_replays_in_flight",
        &[],
    )
}

/// `connections` clients of twenty masters with 4 KB offers each send subscribe and unsubscribe
/// 100 times, never reading, then close; answers when the server holds no replay.
async fn subscribe_churn_without_reading(
    http: &reqwest::Client,
    server: &ServerProcess,
    connections: usize,
) {
    let keys = dispatcher::wire::auth::JwtKeys::new(SECRET);
    let mut clients = Vec::new();
    for n in 0..connections {
        let master = (n % 20) as i64 + 1;
        let token = keys.mint(
            1000 + master,
            dispatcher::domain::Role::Master,
            Some(master),
            3600,
        );
        let url = format!("ws://127.0.0.1:{}/api/v1/ws?token={token}", server.port);
        clients.push(WsClient::connect(&url, &[]).await);
    }
    let churn: Vec<serde_json::Value> = (0..100)
        .flat_map(|_| {
            [
                json!({"type": "subscribe_assignments"}),
                json!({"type": "unsubscribe_assignments"}),
            ]
        })
        .chain([json!({"type": "subscribe_assignments"})])
        .collect();
    join_all(clients.iter_mut().map(|c| c.send_all_unflushed(&churn))).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    drop(clients);
    let deadline = std::time::Instant::now() + PATIENCE;
    while replays_in_flight_of(http, server).await > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a replay outlived its connection"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
/// 200 connections that never read, each subscribing and unsubscribing 100 times, leave the
/// server's memory where it was once they close.
async fn two_hundred_readers_that_never_read_cost_nothing_once_gone() {
    let storage = Storage::new(Db::Sqlite);
    let vars = [
        ("RATE_LIMIT_PER_SEC", "100000".to_string()),
        ("RATE_LIMIT_BURST", "100000".to_string()),
        ("MAX_CONNECTIONS_PER_USER", "50".to_string()),
        ("MAX_QUEUED_BYTES", "65536".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let server = ServerProcess::start_with(&storage.url, storage.dir.path(), &vars).await;
    // Twenty masters with 25 open offers of 4 KB each: 100 KB a master, more than a queue holds.
    let now = chrono::Utc::now().timestamp_millis();
    let problem = "p".repeat(4000);
    let orders: Vec<String> = (1..=500)
        .map(|id| {
            format!("({id}, 7, 'a', 'd', '{problem}', NULL, NULL, 'new', NULL, {now}, {now})")
        })
        .collect();
    storage.execute(&format!(
        "INSERT INTO orders (id, client_user_id, address, device_type, problem, client_name, \
         client_phone, status, master_id, created_at, updated_at) VALUES {}",
        orders.join(", ")
    ));
    let offers: Vec<String> = (1..=500)
        .map(|id| {
            format!(
                "({id}, {}, 'pending', {now}, {})",
                id % 20 + 1,
                now + 600_000
            )
        })
        .collect();
    storage.execute(&format!(
        "INSERT INTO assignments (order_id, master_id, status, created_at, expires_at) VALUES {}",
        offers.join(", ")
    ));
    let http = reqwest::Client::new();
    let pid = server.child.id();

    // A first round warms the server's pools and caches up; the second must cost nothing more.
    subscribe_churn_without_reading(&http, &server, 200).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let before = rss_kib(pid);
    subscribe_churn_without_reading(&http, &server, 200).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    eprintln!("RSS before {before} KiB, after {after} KiB");
    assert!(
        after * 10 <= before * 11,
        "RSS went from {before} KiB to {after} KiB"
    );
}
