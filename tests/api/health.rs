//! `/health` tells a stalled expiry or webhook sender from a working one: the database hangs on
//! their table (another session holds a lock on it) while `SELECT 1` still answers.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn health(app: &TestApp) -> (StatusCode, Value) {
    app.request(reqwest::Method::GET, "/health", None, None)
        .await
}

/// Polls `/health` until `done` holds, for up to `within`; answers the last reply.
async fn health_until(
    app: &TestApp,
    within: Duration,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> (StatusCode, Value) {
    let start = std::time::Instant::now();
    loop {
        let (status, body) = health(app).await;
        if done(status, &body) || start.elapsed() > within {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_expiry_that_hangs_past_a_deadline_is_reported_stalled_with_503() {
    let Some(db) = Db::postgres() else { return };
    let app = spawn_app(db).await;
    let (status, body) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expiry"], "ok");
    assert_eq!(body["webhooks"], "off");

    app.put_order(1, 7).await;
    let (id, _) = app.offer_ok(1, 3, Some(1)).await;
    let lock = app.storage.lock_table("assignments");
    // The deadline passes at 1 s; 2 s later the expiring write is still waiting for the lock.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (status, body) = health_until(&app, Duration::from_secs(3), |s, _| {
        s == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["expiry"], "stalled", "{body}");
    assert_eq!(body["database"], "ok", "{body}");

    drop(lock);
    let (status, body) =
        health_until(&app, Duration::from_secs(5), |s, _| s == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expiry"], "ok");
    assert_eq!(app.get_assignment(id).await["status"], "expired");
}

#[tokio::test]
async fn a_webhook_sender_stuck_in_the_database_is_reported_stalled_with_503() {
    let Some(db) = Db::postgres() else { return };
    let mut receiver = WebhookReceiver::down(free_port());
    receiver.up();
    let app = spawn_app_with(
        db,
        vec![
            ("WEBHOOK_URL", receiver.url()),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ],
    )
    .await;
    let (status, body) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhooks"], "ok");

    let lock = app.storage.lock_table("webhook_events");
    // A round takes at most a receiver's timeout (10 s); after 30 s in one, the sender is stuck.
    let (status, body) = health_until(&app, Duration::from_secs(40), |s, _| {
        s == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["webhooks"], "stalled", "{body}");
    assert_eq!(body["expiry"], "ok", "{body}");

    drop(lock);
    let (status, body) =
        health_until(&app, Duration::from_secs(5), |s, _| s == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhooks"], "ok");
}
