use std::time::Duration;

use serde_json::json;

use crate::{expiry::millis, helpers::*};

async fn a_restart_loses_no_pending_offer(db: Db) {
    let app = spawn_app(db).await;
    for order in [1, 2, 3] {
        app.put_order(order, 7).await;
    }
    let (overdue, _) = app.offer_ok(1, 3, Some(1)).await;
    let (soon, created_soon) = app.offer_ok(2, 3, Some(4)).await;
    let (later, _) = app.offer_ok(3, 3, Some(600)).await;

    let mut master = app.subscribed_master(3).await;
    let replayed: Vec<_> = [
        master.recv().await,
        master.recv().await,
        master.recv().await,
    ]
    .into();
    assert!(replayed.iter().all(|m| m["type"] == "new_assignment"));
    drop(master);

    // Down long enough for the first deadline to pass unseen.
    let app = app.restart_after(Duration::from_millis(1200));
    assert_eq!(app.get_assignment(overdue).await["status"], "expired");
    assert_eq!(app.get_assignment(soon).await["status"], "pending");

    let mut master = app.subscribed_master(3).await;
    let again = [
        master.recv_type("new_assignment").await,
        master.recv_type("new_assignment").await,
    ];
    let ids: Vec<_> = again
        .iter()
        .map(|m| m["assignment"]["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(soon), json!(later)]);

    // The re-armed timer still fires on time.
    let expired = master.recv_type("assignment_expired").await;
    let late =
        chrono::Utc::now().timestamp_millis() - millis(&created_soon["assignment"]["expiresAt"]);
    assert_eq!(expired["assignmentId"], soon);
    assert!((0..=1000).contains(&late), "{late} ms after the deadline");
    assert_eq!(app.get_assignment(later).await["status"], "pending");
}

async fn shifts_survive_a_restart(db: Db) {
    let app = spawn_app(db).await;
    let (status, _) = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/masters/3/shift",
            Some(&app.service_token()),
            Some(json!({"onShift": true})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let app = app.restart_after(Duration::ZERO);
    let mut master = app.subscribed_master(3).await;
    master.send(json!({"type": "ping"})).await;
    master.recv_type("pong").await;
    let stats = app.stats().await;
    assert_eq!(stats["subscriptions"][0]["onShift"], true);
    assert_eq!(stats["onShiftSubscriptions"], 1);
}

on_both_backends!(a_restart_loses_no_pending_offer, shifts_survive_a_restart,);
