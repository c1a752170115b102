use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

pub fn millis(iso: &Value) -> i64 {
    DateTime::parse_from_rfc3339(iso.as_str().expect("a time"))
        .expect("RFC 3339")
        .timestamp_millis()
}

async fn an_offer_expires_at_its_deadline_never_early_and_at_most_a_second_late(db: Db) {
    let app = spawn_app(db).await;
    for order in [1, 2, 3] {
        app.put_order(order, 7).await;
    }
    let mut subscribed = app.subscribed_master(3).await;
    let mut unsubscribed = app.master_ws(3).await;
    let mut service = app.event_listener(&app.service_token()).await;

    let mut deadlines = Vec::new();
    for (order, ttl) in [(1, 2), (2, 1), (3, 3)] {
        let (id, created) = app.offer_ok(order, 3, Some(ttl)).await;
        subscribed.recv_type("new_assignment").await;
        deadlines.push((id, millis(&created["assignment"]["expiresAt"])));
    }
    deadlines.sort_by_key(|&(_, deadline)| deadline);

    for &(id, deadline) in &deadlines {
        let expired = subscribed.recv_type("assignment_expired").await;
        let arrived = Utc::now().timestamp_millis();
        assert_eq!(
            expired["assignmentId"], id,
            "expiry order follows deadlines"
        );
        assert!(expired["orderId"].is_i64());
        assert!(
            arrived >= deadline,
            "expired {} ms early",
            deadline - arrived
        );
        assert!(
            arrived - deadline <= 1000,
            "expired {} ms late",
            arrived - deadline
        );
        assert_eq!(
            unsubscribed.recv_type("assignment_expired").await["assignmentId"],
            id
        );
        let event = service.recv_type("assignment_event").await;
        assert_eq!(
            (event["event"].clone(), event["assignmentId"].clone()),
            (json!("expired"), json!(id))
        );
        assert!(millis(&event["at"]) >= deadline);
    }
    for &(id, _) in &deadlines {
        assert_eq!(app.get_assignment(id).await["status"], "expired");
        subscribed
            .send(json!({"type": "accept_assignment", "assignmentId": id}))
            .await;
        subscribed.recv_error("assignment_not_pending").await;
    }
    let (_, open) = app
        .request(
            Method::GET,
            "/api/v1/masters/me/assignments",
            Some(&app.master_token(3)),
            None,
        )
        .await;
    assert_eq!(open["assignments"], json!([]));
}

async fn a_decided_offer_does_not_expire_later(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(1, 7).await;
    let mut master = app.subscribed_master(3).await;
    let (id, _) = app.offer_ok(1, 3, Some(1)).await;
    master.recv_type("new_assignment").await;
    master
        .send(json!({"type": "reject_assignment", "assignmentId": id}))
        .await;
    master.recv_type("assignment_rejected").await;
    master.expect_silence(Duration::from_millis(1500)).await;
    assert_eq!(app.get_assignment(id).await["status"], "rejected");
}

async fn assignment_ttl_secs_is_the_default_deadline(db: Db) {
    let app = spawn_app_with(db, vec![("ASSIGNMENT_TTL_SECS", "42".into())]).await;
    app.put_order(1, 7).await;
    let (_, created) = app.offer_ok(1, 3, None).await;
    let a = &created["assignment"];
    assert_eq!(millis(&a["expiresAt"]) - millis(&a["createdAt"]), 42_000);
}

/// A node that stored an offer and died before publishing it leaves a pending row that no other
/// node heard of. The sweep expires it anyway, through the same write and the same events.
async fn a_pending_offer_that_no_node_heard_of_expires_within_one_sweep(db: Db) {
    let app = spawn_app_with(db, vec![("EXPIRY_SWEEP_SECS", "1".into())]).await;
    app.put_order(10, 7).await;
    let mut master = app.subscribed_master(3).await;
    let mut service = app.event_listener(&app.service_token()).await;

    let now = Utc::now().timestamp_millis();
    let deadline = now + 1_500;
    app.storage.execute(&format!(
        "INSERT INTO assignments (id, order_id, master_id, status, created_at, expires_at) \
         VALUES (4242, 10, 3, 'pending', {now}, {deadline})"
    ));
    let (status, _) = app.offer(10, 3, None).await;
    assert_eq!(status, 409, "the left row is pending");

    let expired = master.recv_type("assignment_expired").await;
    let arrived = Utc::now().timestamp_millis();
    assert_eq!(expired["assignmentId"], 4242);
    assert!(
        arrived >= deadline,
        "expired {} ms early",
        deadline - arrived
    );
    assert!(
        arrived - deadline <= 1_000 + 1_000,
        "expired {} ms after its deadline, more than one sweep late",
        arrived - deadline
    );
    let event = service.recv_type("assignment_event").await;
    assert_eq!(
        (event["event"].clone(), event["assignmentId"].clone()),
        (json!("expired"), json!(4242))
    );
    assert_eq!(app.get_assignment(4242).await["status"], "expired");
    let (status, body) = app.offer(10, 3, None).await;
    assert_eq!(status, 201, "{body}");
}

on_both_backends!(
    an_offer_expires_at_its_deadline_never_early_and_at_most_a_second_late,
    a_decided_offer_does_not_expire_later,
    assignment_ttl_secs_is_the_default_deadline,
    a_pending_offer_that_no_node_heard_of_expires_within_one_sweep,
);
