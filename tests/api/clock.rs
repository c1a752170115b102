//! Nodes whose clocks are off, played by libfaketime (Debian's `faketime`) around the real
//! binary: on PostgreSQL the database's clock decides when an offer was made and when it ends.
//! Skipped where faketime or PostgreSQL is missing, except in CI.

use std::{path::Path, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// Preloaded into the binary itself: the `faketime` wrapper would stay between the test and the
/// server, and killing it would leave the server running.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn faketime_ready() -> bool {
    if Path::new(LIBFAKETIME).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the clock tests: install faketime"
    );
    eprintln!("skipped: the clock tests need Debian's faketime");
    false
}

/// The binary with its clock moved by `offset` (such as `+30s`). Monotonic time is left alone,
/// as a wrong wall clock leaves it.
async fn skewed_node(storage: &Storage, offset: &str) -> ServerProcess {
    ServerProcess::start_with(
        &storage.url,
        storage.dir.path(),
        &[
            ("EXPIRY_SWEEP_SECS", "1".into()),
            ("LD_PRELOAD", LIBFAKETIME.into()),
            ("FAKETIME", offset.into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ],
    )
    .await
}

async fn normal_node(storage: &Storage) -> ServerProcess {
    ServerProcess::start_with(
        &storage.url,
        storage.dir.path(),
        &[("EXPIRY_SWEEP_SECS", "1".into())],
    )
    .await
}

async fn put_order(node: &ServerProcess, id: i64) {
    let body = json!({"clientUserId": 7, "address": "a", "deviceType": "d", "problem": "p"});
    let (status, answer) = call(
        &reqwest::Client::new(),
        &node.address(),
        Method::PUT,
        &format!("/api/v1/orders/{id}"),
        &service_token(),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn offer(node: &ServerProcess, order_id: i64, master_id: i64, ttl: u64) -> Value {
    let (status, answer) = call(
        &reqwest::Client::new(),
        &node.address(),
        Method::POST,
        "/api/v1/assignments",
        &service_token(),
        Some(json!({"orderId": order_id, "masterId": master_id, "ttlSeconds": ttl})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["assignment"].clone()
}

async fn status_of(node: &ServerProcess, assignment: &Value) -> String {
    let (status, answer) = call(
        &reqwest::Client::new(),
        &node.address(),
        Method::GET,
        &format!("/api/v1/assignments/{}", assignment["id"]),
        &service_token(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["status"].as_str().unwrap().to_string()
}

fn ms(iso: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn a_node_30_seconds_fast_stores_true_times_and_expires_nothing_early() {
    let Some(db) = Db::postgres() else { return };
    if !faketime_ready() {
        return;
    }
    let storage = Storage::new(db);
    let normal = normal_node(&storage).await;
    let fast = skewed_node(&storage, "+30s").await;
    put_order(&normal, 1).await;
    put_order(&normal, 2).await;

    let before = chrono::Utc::now().timestamp_millis();
    let made_fast = offer(&fast, 1, 3, 8).await;
    let made_normal = offer(&normal, 2, 4, 8).await;
    let after = chrono::Utc::now().timestamp_millis();
    let created = ms(&made_fast["createdAt"]);
    assert!(
        (before - 1_000..=after + 1_000).contains(&created),
        "the fast node stored its own time: createdAt {} is {} ms from now",
        made_fast["createdAt"],
        created - after
    );
    assert_eq!(ms(&made_fast["expiresAt"]) - created, 8_000);

    // Both nodes sweep every second; the fast one thinks both deadlines passed 22 s ago.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for made in [&made_fast, &made_normal] {
        assert_eq!(
            status_of(&normal, made).await,
            "pending",
            "expired 5 s before its deadline"
        );
    }
    // Expired once the deadline has passed, within a sweep.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for made in [&made_fast, &made_normal] {
        assert_eq!(status_of(&normal, made).await, "expired");
    }
}

#[tokio::test]
async fn a_node_30_seconds_slow_refuses_an_accept_after_the_deadline() {
    let Some(db) = Db::postgres() else { return };
    if !faketime_ready() {
        return;
    }
    let storage = Storage::new(db);
    let normal = normal_node(&storage).await;
    put_order(&normal, 1).await;
    let made = offer(&normal, 1, 3, 2).await;
    // Nobody else is left to expire it: only the slow node's clock and the database's.
    drop(normal);
    let slow = skewed_node(&storage, "-30s").await;

    let deadline = ms(&made["expiresAt"]);
    let wait = deadline + 1_000 - chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let (status, answer) = call(
        &reqwest::Client::new(),
        &slow.address(),
        Method::POST,
        &format!("/api/v1/assignments/{}/accept", made["id"]),
        &master_token(3),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "accepted 1 s after its deadline: {answer}"
    );
    assert_eq!(status_of(&slow, &made).await, "expired");
}
