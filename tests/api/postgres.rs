//! What only a real PostgreSQL server shows: two processes on one database, races with expiry, outages.

use std::{collections::HashMap, time::Duration};

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn event_listener(port: u16, token: &str) -> WsClient {
    let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{port}/ws?token={token}"), &[]).await;
    ws.recv_type("connected").await;
    ws.recv_type("auth_success").await;
    ws.send(json!({"type": "subscribe_events"})).await;
    ws.recv_type("subscribed_events").await;
    ws
}

/// Collects `assignment_event`s until `quiet` passes with none.
async fn drain_events(ws: &mut WsClient, quiet: Duration, into: &mut Vec<Value>) {
    while let Some(message) = ws.recv_within(quiet).await {
        if message["type"] == "assignment_event" {
            into.push(message);
        }
    }
}

#[tokio::test]
async fn two_processes_on_one_database_decide_and_expire_each_assignment_once() {
    let Some(db) = Db::postgres() else { return };
    let storage = Storage::new(db);
    let a = ServerProcess::start(&storage.url, storage.dir.path()).await;
    let keys = dispatcher::wire::auth::JwtKeys::new(SECRET);
    let service = keys.mint(1, dispatcher::domain::Role::Service, None, 3600);
    let master = keys.mint(1003, dispatcher::domain::Role::Master, Some(3), 3600);
    let http = reqwest::Client::new();

    let mut short = Vec::new();
    let mut long = Vec::new();
    for order in 1..=10 {
        let body = json!({"clientUserId": 7, "address": "a", "deviceType": "d", "problem": "p"});
        let (status, _) = call(
            &http,
            &a.address(),
            Method::PUT,
            &format!("/api/v1/orders/{order}"),
            &service,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let ttl = if order < 5 { 4 } else { 600 };
        let (status, created) = call(
            &http,
            &a.address(),
            Method::POST,
            "/api/v1/assignments",
            &service,
            Some(json!({"orderId": order, "masterId": 3, "ttlSeconds": ttl})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = created["assignment"]["id"].as_i64().unwrap();
        if order < 5 {
            short.push(id)
        } else {
            long.push(id)
        }
    }
    // B starts after the offers exist, so both processes have armed every deadline.
    let b = ServerProcess::start(&storage.url, storage.dir.path()).await;
    let mut listen_a = event_listener(a.port, &service).await;
    let mut listen_b = event_listener(b.port, &service).await;

    for &id in &long {
        let path = format!("/api/v1/assignments/{id}/accept");
        let tries = (0..4).map(|i| {
            let address = if i % 2 == 0 { a.address() } else { b.address() };
            let (http, path, master) = (http.clone(), path.clone(), master.clone());
            async move {
                call(&http, &address, Method::POST, &path, &master, None)
                    .await
                    .0
            }
        });
        let statuses = join_all(tries).await;
        assert_decided_once(&statuses);
    }

    let mut events = Vec::new();
    drain_events(&mut listen_a, Duration::from_millis(5500), &mut events).await;
    drain_events(&mut listen_b, Duration::from_millis(500), &mut events).await;
    let mut per_assignment: HashMap<i64, Vec<String>> = HashMap::new();
    for e in &events {
        per_assignment
            .entry(e["assignmentId"].as_i64().unwrap())
            .or_default()
            .push(e["event"].as_str().unwrap().into());
    }
    for id in &short {
        assert_eq!(
            per_assignment.get(id),
            Some(&vec!["expired".to_string()]),
            "{events:?}"
        );
    }
    for id in &long {
        assert_eq!(
            per_assignment.get(id),
            Some(&vec!["accepted".to_string()]),
            "{events:?}"
        );
    }
    assert_eq!(events.len(), 10, "{events:?}");
    for id in short {
        let (_, a_view) = call(
            &http,
            &b.address(),
            Method::GET,
            &format!("/api/v1/assignments/{id}"),
            &service,
            None,
        )
        .await;
        assert_eq!(a_view["status"], "expired");
    }
}

#[tokio::test]
async fn an_accept_racing_the_deadline_either_wins_or_finds_it_expired() {
    let Some(db) = Db::postgres() else { return };
    let app = spawn_app(db).await;
    let mut listener = app.event_listener(&app.service_token()).await;
    let mut offers = Vec::new();
    for order in 1..=12 {
        app.put_order(order, 7).await;
        let (id, created) = app.offer_ok(order, 3, Some(1)).await;
        offers.push((
            id,
            crate::expiry::millis(&created["assignment"]["expiresAt"]),
        ));
    }
    let token = app.master_token(3);
    // Aim the accepts around the deadlines: some just before, some just after.
    let attempts = offers.iter().enumerate().map(|(i, &(id, deadline))| {
        let (app, token) = (&app, token.clone());
        async move {
            let aim = deadline - 30 + (i as i64 % 6) * 10;
            let wait = aim - chrono::Utc::now().timestamp_millis();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            let (status, _) = app
                .request(
                    Method::POST,
                    &format!("/api/v1/assignments/{id}/accept"),
                    Some(&token),
                    None,
                )
                .await;
            (id, status)
        }
    });
    let outcomes = join_all(attempts).await;
    let mut events = Vec::new();
    drain_events(&mut listener, Duration::from_millis(2000), &mut events).await;
    for (id, status) in outcomes {
        // The master has no connection, so each offer is told undelivered too: no decision.
        let decided: Vec<_> = events
            .iter()
            .filter(|e| e["assignmentId"] == id && e["event"] != "undelivered")
            .map(|e| e["event"].clone())
            .collect();
        let stored = app.get_assignment(id).await["status"].clone();
        match status {
            StatusCode::OK => {
                assert_eq!(decided, vec![json!("accepted")]);
                assert_eq!(stored, "accepted");
            }
            StatusCode::CONFLICT => {
                assert_eq!(decided, vec![json!("expired")]);
                assert_eq!(stored, "expired");
            }
            other => panic!("accept answered {other}"),
        }
    }
}

#[tokio::test]
async fn an_outage_gives_clear_errors_and_the_service_recovers() {
    let Some(db) = Db::postgres() else { return };
    let storage = Storage::new(db);
    let proxy = FlakyProxy::start(postgres_addr(&storage.url), true);
    let app = spawn_app_on(
        storage.clone(),
        vec![
            ("DATABASE_URL", proxy.url_for(&storage.url)),
            ("DB_TIMEOUT_SECS", "1".into()),
        ],
    );
    app.put_order(1, 7).await;
    let (id, _) = app.offer_ok(1, 3, Some(600)).await;
    let mut master = app.master_ws(3).await;

    proxy.down();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, health) = app.request(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["database"], "unavailable");
    let body = json!({"clientUserId": 7, "address": "a", "deviceType": "d", "problem": "p"});
    let (status, error) = app
        .request(
            Method::PUT,
            "/api/v1/orders/2",
            Some(&app.service_token()),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["code"], "unavailable");
    master
        .send(json!({"type": "accept_assignment", "assignmentId": id, "requestId": 1}))
        .await;
    let error = master.recv_error("unavailable").await;
    assert_eq!(error["requestId"], 1);
    master.send(json!({"type": "ping"})).await;
    master.recv_type("pong").await;

    proxy.up();
    wait_health(app.port, StatusCode::OK, Duration::from_secs(10)).await;
    let (status, _) = app
        .request(
            Method::PUT,
            "/api/v1/orders/2",
            Some(&app.service_token()),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    master
        .send(json!({"type": "accept_assignment", "assignmentId": id}))
        .await;
    let mut replies = vec![master.recv().await, master.recv().await];
    replies.retain(|m| m["type"] == "assignment_accepted");
    assert_eq!(replies.len(), 1);
}

#[tokio::test]
async fn a_database_down_at_start_is_retried_and_pending_offers_armed_once_it_answers() {
    let Some(db) = Db::postgres() else { return };
    let first = spawn_app(db).await;
    first.put_order(1, 7).await;
    let (id, created) = first.offer_ok(1, 3, Some(6)).await;
    let storage = first.storage.clone();
    drop(first);

    let proxy = FlakyProxy::start(postgres_addr(&storage.url), false);
    let app = spawn_app_on(
        storage.clone(),
        vec![
            ("DATABASE_URL", proxy.url_for(&storage.url)),
            ("DB_TIMEOUT_SECS", "1".into()),
        ],
    );
    let (status, health) = app.request(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    let mut master = app.master_ws(3).await;

    proxy.up();
    wait_health(app.port, StatusCode::OK, Duration::from_secs(10)).await;
    master.send(json!({"type": "subscribe_assignments"})).await;
    master.recv_type("subscribed_assignments").await;
    assert_eq!(
        master.recv_type("new_assignment").await["assignment"]["id"],
        id
    );
    let expired = master
        .recv_within(Duration::from_secs(8))
        .await
        .expect("the offer expires");
    assert_eq!(
        expired,
        json!({"type": "assignment_expired", "assignmentId": id, "orderId": 1})
    );
    let late = chrono::Utc::now().timestamp_millis()
        - crate::expiry::millis(&created["assignment"]["expiresAt"]);
    assert!((0..=1000).contains(&late), "{late} ms after the deadline");
}
