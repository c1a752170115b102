//! `/metrics`: the Prometheus exposition, read with a real parser, moves as users act.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

/// Every sample of an exposition: name, labels, value.
pub type Scrape = Vec<(String, Vec<(String, String)>, f64)>;

/// One sample's value; a histogram's is its count of observations (`…_count`).
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let count = format!("{name}_count");
    scrape
        .iter()
        .find(|(metric, have, _)| {
            (*metric == name || *metric == count)
                && labels
                    .iter()
                    .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
        })
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
        .2
}

pub async fn scrape(app: &TestApp) -> Scrape {
    let response = app
        .http
        .get(format!("{}/metrics", app.address))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&response.text().await.unwrap())
}

pub fn parse(text: &str) -> Scrape {
    let (rest, families) = nom_openmetrics::parser::prometheus(text).expect("a valid exposition");
    assert!(rest.trim().is_empty(), "unparsed: {rest}");
    families
        .into_iter()
        .flat_map(|family| family.samples)
        .map(|s| {
            let labels = s
                .labels()
                .iter()
                .map(|l| (l.name.to_string(), l.value.clone()))
                .collect();
            (s.name().to_string(), labels, s.number())
        })
        .collect()
}

/// Waits until `name{labels}` reads `want`, or fails with what it read.
async fn eventually(app: &TestApp, name: &str, labels: &[(&str, &str)], want: f64) {
    let mut got = f64::NAN;
    for _ in 0..50 {
        got = value(&scrape(app).await, name, labels);
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} {labels:?} is {got}, not {want}");
}

async fn the_metrics_move_as_users_act(db: Db) {
    let app = spawn_app(db).await;
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(app.master_token(3)), StatusCode::FORBIDDEN),
    ] {
        let (status, _) = app
            .request(Method::GET, "/metrics", token.as_deref(), None)
            .await;
        assert_eq!(status, want);
    }
    let first = scrape(&app).await;
    assert_eq!(
        value(&first, "dispatcher_offers_total", &[("outcome", "created")]),
        0.0
    );
    assert_eq!(
        value(&first, "dispatcher_connections", &[("role", "master")]),
        0.0
    );
    assert!(value(&first, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&first, "process_open_fds", &[]) > 0.0);

    let mut master = app.subscribed_master(3).await;
    let mut second = app.subscribed_master(3).await;
    eventually(&app, "dispatcher_connections", &[("role", "master")], 2.0).await;
    eventually(&app, "dispatcher_subscribed_masters", &[], 1.0).await;

    app.put_order(10, 7).await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    master.recv_type("new_assignment").await;
    second.recv_type("new_assignment").await;
    master
        .send(json!({"type": "accept_assignment", "assignmentId": id}))
        .await;
    master.recv_type("assignment_accepted").await;
    master.recv_type("order_status_update").await;
    master.send(json!({"type": "no_such_type"})).await;
    master.recv_error("unknown_type").await;

    let seen = scrape(&app).await;
    let count = |name, labels: &[(&str, &str)]| value(&seen, name, labels);
    assert_eq!(
        count("dispatcher_offers_total", &[("outcome", "created")]),
        1.0
    );
    assert_eq!(
        count("dispatcher_offers_total", &[("outcome", "accepted")]),
        1.0
    );
    assert_eq!(count("dispatcher_offer_delivery_seconds", &[]), 1.0);
    assert_eq!(
        count(
            "dispatcher_offer_decision_seconds",
            &[("outcome", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "dispatcher_ws_messages_sent_total",
            &[("type", "new_assignment")]
        ),
        2.0
    );
    assert_eq!(
        count(
            "dispatcher_ws_messages_received_total",
            &[("type", "accept_assignment")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "dispatcher_ws_messages_received_total",
            &[("type", "other")]
        ),
        1.0
    );
    assert_eq!(
        count("dispatcher_ws_errors_total", &[("code", "unknown_type")]),
        1.0
    );
    assert_eq!(
        count(
            "dispatcher_http_requests_total",
            &[
                ("method", "PUT"),
                ("route", "/api/v1/orders/{id}"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        count(
            "dispatcher_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/assignments"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert!(count("dispatcher_db_pool_wait_seconds", &[]) >= 3.0);

    // A close from the client is answered with 1000; both connections leave the gauges.
    master.close_handshake().await;
    drop(second);
    eventually(&app, "dispatcher_connections", &[("role", "master")], 0.0).await;
    eventually(&app, "dispatcher_subscribed_masters", &[], 0.0).await;
    let seen = scrape(&app).await;
    assert_eq!(
        value(&seen, "dispatcher_ws_closes_total", &[("code", "1000")]),
        1.0
    );
}

async fn an_expiry_is_counted_with_its_lateness(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    app.offer_ok(10, 3, Some(1)).await;
    eventually(
        &app,
        "dispatcher_offers_total",
        &[("outcome", "expired")],
        1.0,
    )
    .await;
    let seen = scrape(&app).await;
    assert_eq!(value(&seen, "dispatcher_expiry_lateness_seconds", &[]), 1.0);
    assert_eq!(
        value(
            &seen,
            "dispatcher_offer_decision_seconds",
            &[("outcome", "expired")]
        ),
        1.0
    );
}

async fn metrics_bind_addr_serves_them_without_a_token_and_only_there(db: Db) {
    let port = free_port();
    let app = spawn_app_with(db, vec![("METRICS_BIND_ADDR", format!("127.0.0.1:{port}"))]).await;
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let scraped = parse(&response.text().await.unwrap());
    assert_eq!(
        value(
            &scraped,
            "dispatcher_connections",
            &[("role", "unauthenticated")]
        ),
        0.0
    );
    let (status, _) = app
        .request(Method::GET, "/metrics", Some(&app.admin_token()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

on_both_backends!(
    the_metrics_move_as_users_act,
    an_expiry_is_counted_with_its_lateness,
    metrics_bind_addr_serves_them_without_a_token_and_only_there,
);
