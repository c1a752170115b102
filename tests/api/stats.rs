use std::time::Duration;

use dispatcher::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn row(stats: &Value, master_id: i64) -> Value {
    stats["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["masterId"] == master_id)
        .cloned()
        .unwrap_or_else(|| panic!("no row for master {master_id}: {stats}"))
}

async fn stats_count_connected_subscribed_active_and_on_shift(db: Db) {
    let app = spawn_app_with(db, vec![("ACTIVE_WINDOW_SECS", "2".into())]).await;
    let (status, _) = app
        .request(
            Method::PUT,
            "/api/v1/masters/3/shift",
            Some(&app.service_token()),
            Some(json!({"onShift": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let _anonymous = app.ws("/ws").await;
    let mut client = app
        .ws(&format!("/ws?token={}", app.token(Role::Client, 7, None)))
        .await;
    client.recv_type("auth_success").await;
    let mut on_shift = app.subscribed_master(3).await;
    let _off_shift = app.subscribed_master(4).await;
    let _idle = app.master_ws(5).await;

    let stats = app.stats().await;
    assert_eq!(stats["totalConnected"], 5, "{stats}");
    assert_eq!(stats["totalSubscribed"], 2);
    assert_eq!(stats["activeSubscriptions"], 2);
    assert_eq!(stats["onShiftSubscriptions"], 1);
    assert_eq!(stats["subscriptions"].as_array().unwrap().len(), 3);
    let three = row(&stats, 3);
    assert_eq!(three["userId"], 1003);
    assert_eq!(
        (
            three["subscribed"].clone(),
            three["onShift"].clone(),
            three["isActive"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    assert!(three["lastPing"].as_str().unwrap().ends_with('Z'));
    let five = row(&stats, 5);
    assert_eq!(
        (
            five["subscribed"].clone(),
            five["lastPing"].clone(),
            five["isActive"].clone()
        ),
        (json!(false), Value::Null, json!(false))
    );

    // Out of the active window until the next ping.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let stats = app.stats().await;
    assert_eq!(
        (
            stats["totalSubscribed"].clone(),
            stats["activeSubscriptions"].clone()
        ),
        (json!(2), json!(0))
    );
    on_shift.send(json!({"type": "ping"})).await;
    on_shift.recv_type("pong").await;
    let stats = app.stats().await;
    assert_eq!(
        (
            stats["activeSubscriptions"].clone(),
            stats["onShiftSubscriptions"].clone()
        ),
        (json!(1), json!(1))
    );

    drop(on_shift);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = app.stats().await;
    assert_eq!(stats["totalConnected"], 4, "{stats}");
    assert_eq!(stats["totalSubscribed"], 1);
}

async fn cleanup_drops_silent_subscriptions_but_keeps_the_connection(db: Db) {
    let app = spawn_app_with(
        db,
        vec![
            ("SUBSCRIPTION_TIMEOUT_SECS", "1".into()),
            ("CLEANUP_INTERVAL_SECS", "1".into()),
        ],
    )
    .await;
    app.put_order(1, 7).await;
    let mut silent = app.subscribed_master(3).await;
    let mut pinging = app.subscribed_master(4).await;

    let keep_alive = async {
        for _ in 0..10 {
            pinging.send(json!({"type": "ping"})).await;
            pinging.recv_type("pong").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        pinging
    };
    let dropped = async { silent.recv_within(Duration::from_secs(4)).await };
    let (mut pinging, dropped) = tokio::join!(keep_alive, dropped);
    assert_eq!(
        dropped,
        Some(json!({"type": "unsubscribed_assignments", "reason": "idle"}))
    );

    let stats = app.stats().await;
    assert_eq!(row(&stats, 3)["subscribed"], false);
    assert_eq!(row(&stats, 4)["subscribed"], true);
    silent.send(json!({"type": "ping"})).await;
    silent.recv_type("pong").await;
    let (_, created) = app.offer_ok(1, 3, None).await;
    assert_eq!(created["delivered"], 0);
    pinging.expect_silence(Duration::from_millis(100)).await;
}

async fn a_client_that_stops_reading_is_disconnected(db: Db) {
    let app = spawn_app_with(db, vec![("MAX_QUEUED_BYTES", "200000".into())]).await;
    let _stuck = app.subscribed_master(3).await;
    let mut healthy = app.subscribed_master(4).await;
    let big_problem = "x".repeat(60_000);
    let mut dropped_after = None;
    for order in 1..=400 {
        let body =
            json!({"clientUserId": 7, "address": "a", "deviceType": "d", "problem": big_problem});
        let (status, _) = app
            .request(
                Method::PUT,
                &format!("/api/v1/orders/{order}"),
                Some(&app.service_token()),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, created) = app.offer_ok(order, 3, None).await;
        if created["delivered"] == 0 {
            dropped_after = Some(order);
            break;
        }
    }
    assert!(
        dropped_after.is_some(),
        "the stuck client was never dropped"
    );
    let stats = app.stats().await;
    assert_eq!(stats["totalConnected"], 1, "{stats}");
    assert_eq!(row(&stats, 4)["subscribed"], true);
    healthy.send(json!({"type": "ping"})).await;
    healthy.recv_type("pong").await;
}

/// `?limit=` and `?after=` page the rows; the totals still count every connection.
async fn stats_page_their_rows_by_master_and_say_when_rows_were_left_out(db: Db) {
    let app = spawn_app(db).await;
    let mut masters = Vec::new();
    for master in [3, 4, 5, 6] {
        masters.push(app.subscribed_master(master).await);
    }
    // Master 4 twice: its rows stay on one page.
    masters.push(app.subscribed_master(4).await);
    let page = |query: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .request(
                    Method::GET,
                    &format!("/api/admin/websocket/stats{query}"),
                    Some(&app.admin_token()),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let ids: Vec<i64> = body["subscriptions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["masterId"].as_i64().unwrap())
                .collect();
            (ids, body)
        }
    };

    let (all, body) = page("").await;
    assert_eq!(all, [3, 4, 4, 5, 6]);
    assert!(body.get("truncated").is_none(), "{body}");

    let (first, body) = page("?limit=2").await;
    assert_eq!(first, [3], "{body}");
    assert_eq!(body["truncated"], true);
    assert_eq!(body["totalConnected"], 5);
    assert_eq!(body["totalSubscribed"], 5);
    let (second, body) = page("?limit=2&after=3").await;
    assert_eq!(second, [4, 4], "{body}");
    assert_eq!(body["truncated"], true);
    let (last, body) = page("?limit=2&after=4").await;
    assert_eq!(last, [5, 6], "{body}");
    assert!(body.get("truncated").is_none(), "{body}");

    for bad in ["?limit=0", "?limit=many", "?limit=100001", "?after=x"] {
        let (status, body) = app
            .request(
                Method::GET,
                &format!("/api/admin/websocket/stats{bad}"),
                Some(&app.admin_token()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "bad_request", "{body}");
    }
}

on_both_backends!(
    stats_page_their_rows_by_master_and_say_when_rows_were_left_out,
    stats_count_connected_subscribed_active_and_on_shift,
    cleanup_drops_silent_subscriptions_but_keeps_the_connection,
    a_client_that_stops_reading_is_disconnected,
);
