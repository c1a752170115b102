//! Offer receipts: an app that opts in acknowledges each offer; unacknowledged offers are sent
//! again, and a socket that acknowledges nothing is closed as dead.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

async fn acking_master(app: &TestApp, master_id: i64) -> WsClient {
    let mut ws = app.master_ws(master_id).await;
    ws.send(json!({"type": "subscribe_assignments", "acks": true}))
        .await;
    ws.recv_type("subscribed_assignments").await;
    ws
}

async fn an_unacknowledged_offer_is_sent_again_then_the_socket_is_closed_as_dead(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut ws = acking_master(&app, 3).await;
    let (id, _) = app.offer_ok(10, 3, Some(120)).await;
    let first = ws.recv_type("new_assignment").await;
    let sent_at = Instant::now();
    assert_eq!(first["assignment"]["id"], id);

    // Sent again at 2 s and 6 s; when the 4th send falls due at 14 s, the socket is dead.
    let again = [ws.recv().await, ws.recv().await];
    let mut more = Vec::new();
    let closed = ws.closed_after(&mut more).await;
    let closed_after = sent_at.elapsed();
    assert!(more.is_empty(), "{more:?}");
    assert_eq!(
        closed,
        Closed {
            code: 1001,
            reason: "no acknowledgement".into()
        }
    );
    assert!(
        (Duration::from_secs(13)..Duration::from_secs(18)).contains(&closed_after),
        "closed after {closed_after:?}"
    );
    for message in &again {
        assert_eq!(message["type"], "new_assignment");
        assert_eq!(message["assignment"]["id"], id);
        assert!(message["expiresInMs"].as_i64().unwrap() < first["expiresInMs"].as_i64().unwrap());
    }
    // The offer stays open: the phone reconnects and gets it again.
    assert_eq!(app.get_assignment(id).await["status"], "pending");
    let mut back = app.subscribed_master(3).await;
    assert_eq!(
        back.recv_type("new_assignment").await["assignment"]["id"],
        id
    );
}

async fn an_acknowledged_offer_records_its_delivery_once_and_is_not_sent_again(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut listener = app.event_listener(&app.service_token()).await;
    let mut ws = acking_master(&app, 3).await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    ws.recv_type("new_assignment").await;
    assert_eq!(app.get_assignment(id).await["deliveredAt"], json!(null));
    for _ in 0..2 {
        ws.send(json!({"type": "ack_assignment", "assignmentId": id}))
            .await;
    }
    let event = listener.recv_type("assignment_event").await;
    assert_eq!(
        (
            event["event"].clone(),
            event["assignmentId"].clone(),
            event["masterId"].clone()
        ),
        (json!("delivered"), json!(id), json!(3))
    );
    let delivered_at = app.get_assignment(id).await["deliveredAt"].clone();
    assert!(
        delivered_at.as_str().is_some_and(|t| t.ends_with('Z')),
        "{delivered_at}"
    );
    // No reply to an ack, no second event, and no send again past the 2 s mark.
    ws.expect_silence(Duration::from_millis(2_600)).await;
    listener.expect_silence(Duration::from_millis(100)).await;

    // Another master may not acknowledge it.
    let mut other = acking_master(&app, 4).await;
    other
        .send(json!({"type": "ack_assignment", "assignmentId": id}))
        .await;
    other.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(app.get_assignment(id).await["deliveredAt"], delivered_at);
}

async fn without_acks_nothing_is_sent_again_and_a_decision_stops_redelivery(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    app.put_order(11, 7).await;
    let mut plain = app.subscribed_master(3).await;
    let mut acking = acking_master(&app, 4).await;
    app.offer_ok(10, 3, None).await;
    let (id, _) = app.offer_ok(11, 4, None).await;
    plain.recv_type("new_assignment").await;
    acking.recv_type("new_assignment").await;
    acking
        .send(json!({"type": "reject_assignment", "assignmentId": id}))
        .await;
    acking.recv_type("assignment_rejected").await;
    plain.expect_silence(Duration::from_millis(2_600)).await;
    acking.expect_silence(Duration::from_millis(100)).await;
}

async fn the_admin_stats_show_how_the_last_15_minutes_of_offers_fared(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = acking_master(&app, 3).await;
    let mut ids = Vec::new();
    for order in 1..=4 {
        app.put_order(order, 7).await;
        ids.push(app.offer_ok(order, 3, Some(60)).await.0);
        ws.recv_type("new_assignment").await;
    }
    for &id in &ids[..3] {
        ws.send(json!({"type": "ack_assignment", "assignmentId": id}))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(json!({"type": "accept_assignment", "assignmentId": ids[0]}))
        .await;
    ws.send(json!({"type": "reject_assignment", "assignmentId": ids[1]}))
        .await;
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let message = ws.recv().await;
        if message["type"] != "order_status_update" {
            replies.push(message["type"].clone());
        }
    }
    replies.sort_by_key(|t| t.to_string());
    assert_eq!(
        replies,
        vec![json!("assignment_accepted"), json!("assignment_rejected")]
    );
    let token = app.service_token();
    let path = format!("/api/v1/assignments/{}/cancel", ids[2]);
    let (status, _) = app
        .request(reqwest::Method::POST, &path, Some(&token), None)
        .await;
    assert!(status.is_success());

    let offers = app.stats().await["offers"].clone();
    let counts: Vec<i64> = [
        "created",
        "delivered",
        "accepted",
        "rejected",
        "expired",
        "cancelled",
    ]
    .iter()
    .map(|k| offers[*k].as_i64().unwrap())
    .collect();
    assert_eq!(counts, vec![4, 3, 1, 1, 0, 1], "{offers}");
    assert_eq!(offers["windowSecs"], 900);
    for figure in ["timeToDeliverMs", "timeToAcceptMs"] {
        for p in ["p50", "p90", "p99"] {
            assert!(
                offers[figure][p].as_i64().is_some_and(|ms| ms >= 0),
                "{offers}"
            );
        }
    }
    assert!(
        offers["timeToAcceptMs"]["p50"].as_i64() >= Some(50),
        "{offers}"
    );
}

on_both_backends!(
    the_admin_stats_show_how_the_last_15_minutes_of_offers_fared,
    an_unacknowledged_offer_is_sent_again_then_the_socket_is_closed_as_dead,
    an_acknowledged_offer_records_its_delivery_once_and_is_not_sent_again,
    without_acks_nothing_is_sent_again_and_a_decision_stops_redelivery,
);
