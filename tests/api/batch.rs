//! Offers at disk speed: `POST /api/v1/assignments/batch` (many offers, one commit, each answered
//! as it would have been alone), and the writer's bounded queue.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn batch(app: &TestApp, token: &str, offers: Value) -> (StatusCode, Value) {
    let body = json!({ "offers": offers });
    app.request(
        Method::POST,
        "/api/v1/assignments/batch",
        Some(token),
        Some(body),
    )
    .await
}

async fn a_batch_answers_each_offer_as_alone_and_one_refusal_fails_none_of_the_rest(db: Db) {
    let app = spawn_app(db).await;
    for order in [10, 11, 12] {
        app.put_order(order, 7).await;
    }
    app.offer_ok(11, 4, Some(60)).await;
    let mut three = app.subscribed_master(3).await;
    let mut four = app.subscribed_master(4).await;
    four.recv_type("new_assignment").await; // the open offer, replayed

    let (status, body) = batch(
        &app,
        &app.service_token(),
        json!([
            {"orderId": 10, "masterId": 3, "ttlSeconds": 60},
            {"orderId": 11, "masterId": 4},
            {"orderId": 99, "masterId": 3},
            {"orderId": 12, "masterId": 4, "ttlSeconds": 30},
            {"orderId": 12, "masterId": 0},
            {"orderId": 12, "masterId": 3, "ttlSeconds": 90},
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<&Value> = results.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [201, 409, 404, 201, 400, 201], "{body}");
    assert_eq!(results[1]["code"], "conflict", "{body}");
    assert_eq!(results[2]["code"], "not_found", "{body}");
    assert_eq!(results[4]["code"], "bad_request", "{body}");
    for (i, order, master) in [(0, 10, 3), (3, 12, 4), (5, 12, 3)] {
        let created = &results[i];
        assert_eq!(created["delivered"], 1, "{body}");
        assert_eq!(created["assignment"]["orderId"], order, "{body}");
        assert_eq!(created["assignment"]["masterId"], master, "{body}");
        let stored = app
            .get_assignment(created["assignment"]["id"].as_i64().unwrap())
            .await;
        assert_eq!(stored["status"], "pending", "{stored}");
        assert_eq!(stored["expiresAt"], created["assignment"]["expiresAt"]);
    }

    // The stored offers reached their masters, in the batch's order, and nothing else did.
    let ids = |frames: Vec<Value>| -> Vec<i64> {
        frames
            .iter()
            .map(|f| f["assignment"]["id"].as_i64().unwrap())
            .collect()
    };
    let to_three = vec![
        three.recv_type("new_assignment").await,
        three.recv_type("new_assignment").await,
    ];
    assert_eq!(
        ids(to_three),
        [&results[0], &results[5]].map(|r| r["assignment"]["id"].as_i64().unwrap())
    );
    let to_four = four.recv_type("new_assignment").await;
    assert_eq!(to_four["assignment"]["id"], results[3]["assignment"]["id"]);
    three.expect_silence(Duration::from_millis(300)).await;
}

async fn a_batch_takes_one_to_a_hundred_offers_from_the_service_and_admins_only(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let one = json!([{"orderId": 10, "masterId": 3}]);

    let (status, body) = batch(&app, &app.service_token(), json!([])).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("bad_request"))
    );
    let many: Vec<Value> = (1..=101)
        .map(|m| json!({"orderId": 10, "masterId": m}))
        .collect();
    let (status, body) = batch(&app, &app.service_token(), json!(many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("101"), "{body}");
    let (status, _) = batch(&app, &app.master_token(3), one.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = batch(&app, &app.admin_token(), one).await;
    assert_eq!(
        (status, &body["results"][0]["status"]),
        (StatusCode::OK, &json!(201))
    );

    let hundred: Vec<Value> = (1..=100)
        .map(|m| json!({"orderId": 10, "masterId": m}))
        .collect();
    let (status, body) = batch(&app, &app.service_token(), json!(hundred)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let created = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 201)
        .count();
    // Master 3 already had this order's offer from the admin's batch.
    assert_eq!(created, 99, "{body}");
}

async fn a_full_write_queue_answers_unavailable_at_once_and_the_queued_writes_still_commit(db: Db) {
    let app = spawn_app_with(
        db,
        vec![
            ("MAX_QUEUED_WRITES", "2".into()),
            ("DB_TIMEOUT_SECS", "30".into()),
        ],
    )
    .await;
    for order in 1..=12 {
        app.put_order(order, 7).await;
    }
    let lock = app.storage.lock_writes();
    let token = app.service_token();
    let offers = (1..=12).map(|order| {
        let body = json!({"orderId": order, "masterId": 3});
        app.request(
            Method::POST,
            "/api/v1/assignments",
            Some(&token),
            Some(body),
        )
    });
    // Each answer with the time it took; the lock goes after 2 s.
    let answers = futures_util::future::join_all(offers.map(|offer| async move {
        let started = std::time::Instant::now();
        let (status, body) = offer.await;
        (status, body, started.elapsed())
    }));
    let release = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(lock);
    };
    let (answers, ()) = tokio::join!(answers, release);

    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    // Two writes waiting (on SQLite, besides the one the writer took before it stuck behind
    // the lock; on PostgreSQL, stuck themselves) commit; with a queue that never fills, none
    // would be refused.
    assert!(refused.len() >= 6, "{answers:?}");
    for (_, body, took) in &refused {
        assert_eq!(body["code"], "unavailable", "{body}");
        assert!(
            *took < Duration::from_secs(1),
            "refused after {took:?}, not at once"
        );
    }
    let created: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len() + refused.len(), 12, "{answers:?}");
    assert!(created.len() >= 2, "{answers:?}");
    for (_, body, took) in created {
        assert!(
            *took >= Duration::from_millis(1_500),
            "answered before the commit"
        );
        let stored = app
            .get_assignment(body["assignment"]["id"].as_i64().unwrap())
            .await;
        assert_eq!(stored["status"], "pending");
    }
}

on_both_backends!(
    a_full_write_queue_answers_unavailable_at_once_and_the_queued_writes_still_commit,
    a_batch_answers_each_offer_as_alone_and_one_refusal_fails_none_of_the_rest,
    a_batch_takes_one_to_a_hundred_offers_from_the_service_and_admins_only,
);
