//! Webhooks: assignment and dispatch events reach a real receiver, signed, at least once and in
//! order per order, across its outage and a restart of the service.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn webhook_vars(receiver: &WebhookReceiver) -> Vars {
    vec![
        ("WEBHOOK_URL", receiver.url()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        // These tests follow decisions; tests/api/undelivered.rs sends `undelivered` ones.
        ("UNDELIVERED_AFTER_SECS", "0".into()),
    ]
}

/// `(type, event, orderId, assignmentId or dispatchId)` of each event, as received.
fn summary(events: &[Value]) -> Vec<(String, String, i64, i64)> {
    events
        .iter()
        .map(|e| {
            let id = e["assignmentId"].as_i64().or(e["dispatchId"].as_i64());
            (
                e["type"].as_str().unwrap().to_string(),
                e["event"].as_str().unwrap().to_string(),
                e["orderId"].as_i64().unwrap(),
                id.unwrap(),
            )
        })
        .collect()
}

async fn accept(app: &TestApp, id: i64, master_id: i64) {
    let (status, body) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{id}/accept"),
            Some(&app.master_token(master_id)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn every_event_arrives_signed_in_order_across_an_outage_and_a_restart(db: Db) {
    let mut receiver = WebhookReceiver::down(free_port());
    let app = spawn_app_with(db, webhook_vars(&receiver)).await;
    app.put_order(10, 7).await;
    app.put_order(11, 7).await;

    // While the receiver is down: an offer of order 10 rejected, and a dispatch of order 11
    // whose two offers expire, so it is exhausted.
    let (rejected, _) = app.offer_ok(10, 3, None).await;
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{rejected}/reject"),
            Some(&app.master_token(3)),
            Some(json!({"reason": "too far"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, dispatch) = app
        .request(
            Method::POST,
            "/api/v1/orders/11/dispatch",
            Some(&app.service_token()),
            Some(json!({"candidates": [3, 5], "ttlSeconds": 1, "skipOffline": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{dispatch}");
    let dispatch_id = dispatch["dispatch"]["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The service restarts while they wait; then one more decision, and the receiver comes back.
    let app = app.restart_after(Duration::from_millis(200));
    let (accepted, _) = app.offer_ok(10, 4, None).await;
    accept(&app, accepted, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiver.up();

    receiver
        .wait_for(Duration::from_secs(20), |r| r.events.len() >= 5)
        .await;
    {
        let received = receiver.received.lock().unwrap();
        assert_eq!(received.bad_signatures, 0);
        let mut of_10: Vec<_> = summary(&received.events);
        let of_11: Vec<_> = of_10.iter().filter(|e| e.2 == 11).cloned().collect();
        of_10.retain(|e| e.2 == 10);
        assert_eq!(
            of_10,
            [
                ("assignment_event".into(), "rejected".into(), 10, rejected),
                ("assignment_event".into(), "accepted".into(), 10, accepted),
            ]
        );
        let expired: Vec<i64> = of_11
            .iter()
            .filter(|e| e.1 == "expired")
            .map(|e| e.3)
            .collect();
        assert_eq!(expired.len(), 2, "{of_11:?}");
        assert!(expired[0] < expired[1], "in order: {of_11:?}");
        assert_eq!(
            of_11.last().unwrap(),
            &("dispatch_event".into(), "exhausted".into(), 11, dispatch_id)
        );
        for event in &received.events {
            assert_eq!(event["eventId"].as_str().unwrap().len(), 32, "{event}");
            assert!(event["at"].as_str().unwrap().ends_with('Z'), "{event}");
        }
    }

    // Delivered events are not sent again.
    let posts = receiver.received.lock().unwrap().posts;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let received = receiver.received.lock().unwrap();
    assert_eq!(received.events.len(), 5, "{:#?}", received.events);
    assert_eq!(received.posts, posts);
}

/// A refusal may pass (a secret being rotated, a receiver being deployed): any answer but a 2xx
/// is tried again, and the order's next event waits for it.
async fn a_refused_event_is_sent_again_until_taken_and_its_order_waits_for_it(db: Db) {
    let mut receiver = WebhookReceiver::down(free_port());
    let app = spawn_app_with(db, webhook_vars(&receiver)).await;
    app.put_order(10, 7).await;
    let (refused, _) = app.offer_ok(10, 3, None).await;
    {
        let mut received = receiver.received.lock().unwrap();
        received.refuse_assignment = Some(refused);
        received.refuse_with = Some(401);
        received.refuse_times = Some(2);
    }
    receiver.up();
    let mut ws = app.master_ws(3).await;
    ws.send(json!({"type": "reject_assignment", "assignmentId": refused}))
        .await;
    ws.recv_type("assignment_rejected").await;
    let (taken, _) = app.offer_ok(10, 4, None).await;
    accept(&app, taken, 4).await;

    receiver
        .wait_for(Duration::from_secs(15), |r| r.events.len() == 2)
        .await;
    let received = receiver.received.lock().unwrap();
    assert_eq!(received.refused, 2, "{received:#?}");
    assert_eq!(
        summary(&received.events),
        [
            ("assignment_event".into(), "rejected".into(), 10, refused),
            ("assignment_event".into(), "accepted".into(), 10, taken),
        ]
    );
    assert_eq!(
        received.refused_ids,
        vec![received.events[0]["eventId"].clone(); 2]
    );
}

/// A given-up event (WEBHOOK_MAX_AGE_SECS passed) is sent again when an admin asks; a delivered
/// one is deleted after WEBHOOK_RETENTION_SECS.
async fn a_given_up_event_is_sent_again_on_request_and_deleted_after_retention(db: Db) {
    let mut receiver = WebhookReceiver::down(free_port());
    let mut vars = webhook_vars(&receiver);
    vars.push(("WEBHOOK_MAX_AGE_SECS", "1".into()));
    vars.push(("WEBHOOK_RETENTION_SECS", "1".into()));
    let app = spawn_app_with(db, vars).await;
    app.put_order(10, 7).await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    receiver.received.lock().unwrap().refuse_assignment = Some(id);
    receiver.up();
    let mut ws = app.master_ws(3).await;
    ws.send(json!({"type": "reject_assignment", "assignmentId": id}))
        .await;
    ws.recv_type("assignment_rejected").await;
    receiver
        .wait_for(Duration::from_secs(10), |r| r.refused >= 1)
        .await;
    let event_id = receiver.received.lock().unwrap().refused_ids[0]
        .as_str()
        .unwrap()
        .to_string();
    let retry = |token: String| {
        let (app, path) = (&app, format!("/api/v1/webhooks/events/{event_id}/retry"));
        async move { app.request(Method::POST, &path, Some(&token), None).await }
    };
    let (status, _) = retry(app.master_token(3)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .request(
            Method::POST,
            "/api/v1/webhooks/events/no-such-event/retry",
            Some(&app.admin_token()),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );

    // Given up after its first failure (the next try would be past a second), then asked for.
    receiver.received.lock().unwrap().refuse_assignment = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = retry(app.admin_token()).await;
        if status == StatusCode::OK {
            assert_eq!(body, json!({"eventId": event_id, "status": "open"}));
            break;
        }
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(std::time::Instant::now() < deadline, "never given up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver
        .wait_for(Duration::from_secs(10), |r| r.events.len() == 1)
        .await;
    assert_eq!(
        receiver.received.lock().unwrap().events[0]["eventId"],
        event_id.as_str()
    );
    let (status, _) = retry(app.admin_token()).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a delivered event is not given up"
    );

    // Delivered more than a second ago: deleted.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = retry(app.admin_token()).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(std::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A redirect would carry the signed body elsewhere: it is a failure, never followed.
async fn a_redirect_is_not_followed(db: Db) {
    let mut receiver = WebhookReceiver::down(free_port());
    let vars = vec![
        (
            "WEBHOOK_URL",
            format!("http://127.0.0.1:{}/moved", receiver.port),
        ),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
    ];
    receiver.up();
    let app = spawn_app_with(db, vars).await;
    app.put_order(10, 7).await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    accept(&app, id, 3).await;
    receiver
        .wait_for(Duration::from_secs(10), |r| r.redirected >= 2)
        .await;
    assert_eq!(
        receiver.received.lock().unwrap().posts,
        0,
        "followed a redirect"
    );
}

#[test]
fn a_short_webhook_secret_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dispatcher"))
        .current_dir(dir.path())
        .env_clear()
        .env("WEBHOOK_URL", "http://127.0.0.1:1/hooks")
        .env("WEBHOOK_SECRET", "short")
        .output()
        .expect("the binary runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(said.contains("WEBHOOK_SECRET is 5 bytes long"), "{said}");
}

on_both_backends!(
    every_event_arrives_signed_in_order_across_an_outage_and_a_restart,
    a_refused_event_is_sent_again_until_taken_and_its_order_waits_for_it,
    a_given_up_event_is_sent_again_on_request_and_deleted_after_retention,
    a_redirect_is_not_followed,
);
