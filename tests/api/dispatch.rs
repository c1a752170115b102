//! Cascading dispatch: an order offered to candidates in turn (or all at once) until one accepts.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

impl TestApp {
    pub async fn dispatch(&self, order_id: i64, body: Value) -> (StatusCode, Value) {
        self.request(
            Method::POST,
            &format!("/api/v1/orders/{order_id}/dispatch"),
            Some(&self.service_token()),
            Some(body),
        )
        .await
    }

    pub async fn dispatch_ok(&self, order_id: i64, body: Value) -> Value {
        let (status, answer) = self.dispatch(order_id, body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["dispatch"].clone()
    }

    pub async fn get_dispatch(&self, id: &Value) -> Value {
        let (status, answer) = self
            .request(
                Method::GET,
                &format!("/api/v1/dispatches/{id}"),
                Some(&self.admin_token()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["dispatch"].clone()
    }

    pub async fn set_shift(&self, master_id: i64, on_shift: bool) {
        let (status, body) = self
            .request(
                Method::PUT,
                &format!("/api/v1/masters/{master_id}/shift"),
                Some(&self.master_token(master_id)),
                Some(json!({ "onShift": on_shift })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Masters on shift, each with a connection subscribed to offers, in order.
    pub async fn ready_masters<const N: usize>(&self, ids: [i64; N]) -> [WsClient; N] {
        let mut ready = Vec::with_capacity(N);
        for id in ids {
            ready.push(self.ready_master(id).await);
        }
        ready.try_into().ok().expect("one connection per master")
    }

    /// A master on shift with a connection subscribed to offers.
    pub async fn ready_master(&self, master_id: i64) -> WsClient {
        self.set_shift(master_id, true).await;
        self.subscribed_master(master_id).await
    }
}

/// `[[masterId, outcome], …]` of a dispatch view.
pub fn outcomes(dispatch: &Value) -> Vec<(i64, String)> {
    dispatch["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["masterId"].as_i64().unwrap(),
                c["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(i64, &str)]) -> Vec<(i64, String)> {
    list.iter().map(|&(m, o)| (m, o.to_string())).collect()
}

async fn offer_id(ws: &mut WsClient, order_id: i64) -> i64 {
    let offer = ws.recv_type("new_assignment").await;
    assert_eq!(offer["assignment"]["orderId"], order_id);
    offer["assignment"]["id"].as_i64().unwrap()
}

async fn a_sequential_dispatch_moves_on_after_a_reject_and_an_expiry_until_an_accept(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut listener = app.event_listener(&app.service_token()).await;
    let [mut m3, mut m5, mut m8] = app.ready_masters([3, 5, 8]).await;

    let dispatch = app
        .dispatch_ok(
            10,
            json!({"candidates": [3, 5, 8], "ttlSeconds": 2, "mode": "sequential", "batchSize": 1}),
        )
        .await;
    assert_eq!(dispatch["status"], "running");
    assert_eq!(dispatch["orderId"], 10);
    assert_eq!(dispatch["mode"], "sequential");
    assert_eq!(dispatch["current"], json!([3]));
    assert_eq!(
        outcomes(&dispatch),
        pairs(&[(3, "offered"), (5, "pending"), (8, "pending")])
    );
    assert!(dispatch["createdAt"].as_str().unwrap().ends_with('Z'));
    let id = dispatch["id"].clone();

    // 3 rejects: the offer goes to 5 at once.
    let first = offer_id(&mut m3, 10).await;
    m3.send(json!({"type": "reject_assignment", "assignmentId": first}))
        .await;
    m3.recv_type("assignment_rejected").await;
    let second = offer_id(&mut m5, 10).await;
    assert_eq!(app.get_dispatch(&id).await["current"], json!([5]));
    // 5 lets it expire: it goes to 8.
    m5.recv_type("assignment_expired").await;
    let third = offer_id(&mut m8, 10).await;
    assert!(first < second && second < third);
    m8.send(json!({"type": "accept_assignment", "assignmentId": third}))
        .await;
    m8.recv_skipping_to("assignment_accepted").await;

    let ended = listener.recv_skipping_to("dispatch_event").await;
    assert_eq!(
        (
            ended["event"].clone(),
            ended["dispatchId"].clone(),
            ended["orderId"].clone(),
            ended["masterId"].clone()
        ),
        (json!("assigned"), id.clone(), json!(10), json!(8))
    );
    let dispatch = app.get_dispatch(&id).await;
    assert_eq!(dispatch["status"], "assigned");
    assert_eq!(dispatch["masterId"], 8);
    assert_eq!(dispatch["current"], json!([]));
    assert_eq!(
        outcomes(&dispatch),
        pairs(&[(3, "rejected"), (5, "expired"), (8, "accepted")])
    );
    // Nobody was offered anything twice.
    m3.expect_silence(Duration::from_millis(300)).await;
}

async fn skip_offline_passes_over_masters_off_shift_or_not_subscribed(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut listener = app.event_listener(&app.service_token()).await;
    // 3 is subscribed but off shift; 5 is on shift with no connection; 8 is ready.
    let mut m3 = app.subscribed_master(3).await;
    app.set_shift(5, true).await;
    let mut m8 = app.ready_master(8).await;

    let dispatch = app
        .dispatch_ok(10, json!({"candidates": [3, 5, 8], "ttlSeconds": 30}))
        .await;
    assert_eq!(dispatch["current"], json!([8]));
    assert_eq!(
        outcomes(&dispatch),
        pairs(&[(3, "skipped"), (5, "skipped"), (8, "offered")])
    );
    let offer = offer_id(&mut m8, 10).await;
    m3.expect_silence(Duration::from_millis(200)).await;

    // The last candidate rejects: nobody is left.
    m8.send(json!({"type": "reject_assignment", "assignmentId": offer}))
        .await;
    let ended = listener.recv_skipping_to("dispatch_event").await;
    assert_eq!(ended["event"], "exhausted");
    assert_eq!(ended["masterId"], json!(null));
    assert!(ended.get("masterId").is_none(), "{ended}");
    let dispatch = app.get_dispatch(&dispatch["id"]).await;
    assert_eq!(dispatch["status"], "exhausted");
    assert_eq!(
        outcomes(&dispatch),
        pairs(&[(3, "skipped"), (5, "skipped"), (8, "rejected")])
    );

    // Without skipOffline, everyone is offered in turn, connected or not.
    app.put_order(11, 7).await;
    let dispatch = app
        .dispatch_ok(
            11,
            json!({"candidates": [5, 3], "skipOffline": false, "ttlSeconds": 30}),
        )
        .await;
    assert_eq!(dispatch["current"], json!([5]));
    assert_eq!(dispatch["skipOffline"], false);
}

async fn a_broadcast_offers_everyone_and_the_first_accept_cancels_the_rest(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut listener = app.event_listener(&app.service_token()).await;
    let [mut m3, mut m5, mut m8] = app.ready_masters([3, 5, 8]).await;
    let dispatch = app
        .dispatch_ok(
            10,
            json!({"candidates": [3, 5, 8], "mode": "broadcast", "ttlSeconds": 60}),
        )
        .await;
    assert_eq!(dispatch["current"], json!([3, 5, 8]));
    let (_, winner, _) = (
        offer_id(&mut m3, 10).await,
        offer_id(&mut m5, 10).await,
        offer_id(&mut m8, 10).await,
    );
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{winner}/accept"),
            Some(&app.master_token(5)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    m3.recv_type("assignment_cancelled").await;
    m8.recv_type("assignment_cancelled").await;
    let ended = listener.recv_skipping_to("dispatch_event").await;
    assert_eq!(
        (ended["event"].clone(), ended["masterId"].clone()),
        (json!("assigned"), json!(5))
    );
    let dispatch = app.get_dispatch(&dispatch["id"]).await;
    assert_eq!(
        outcomes(&dispatch),
        pairs(&[(3, "cancelled"), (5, "accepted"), (8, "cancelled")])
    );
}

async fn a_batch_keeps_that_many_offers_out_and_delete_cancels_them(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut listener = app.event_listener(&app.service_token()).await;
    let [mut m3, mut m5, mut m8] = app.ready_masters([3, 5, 8]).await;
    let dispatch = app
        .dispatch_ok(10, json!({"candidates": [3, 5, 8], "batchSize": 2}))
        .await;
    assert_eq!(dispatch["current"], json!([3, 5]));
    let first = offer_id(&mut m3, 10).await;
    offer_id(&mut m5, 10).await;
    m3.send(json!({"type": "reject_assignment", "assignmentId": first}))
        .await;
    offer_id(&mut m8, 10).await;
    assert_eq!(
        app.get_dispatch(&dispatch["id"]).await["current"],
        json!([5, 8])
    );

    let path = format!("/api/v1/dispatches/{}", dispatch["id"]);
    let (status, cancelled) = app
        .request(Method::DELETE, &path, Some(&app.service_token()), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["dispatch"]["status"], "cancelled");
    assert_eq!(cancelled["dispatch"]["current"], json!([]));
    assert_eq!(
        outcomes(&cancelled["dispatch"]),
        pairs(&[(3, "rejected"), (5, "cancelled"), (8, "cancelled")])
    );
    m5.recv_type("assignment_cancelled").await;
    m8.recv_type("assignment_cancelled").await;
    let ended = listener.recv_skipping_to("dispatch_event").await;
    assert_eq!(ended["event"], "cancelled");

    let (status, body) = app
        .request(Method::DELETE, &path, Some(&app.service_token()), None)
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::CONFLICT, json!("conflict"))
    );

    // A new dispatch of the order may start; closing the order cancels it.
    let again = app
        .dispatch_ok(10, json!({"candidates": [3], "skipOffline": false}))
        .await;
    let (status, _) = app
        .request(
            Method::PATCH,
            "/api/v1/orders/10/status",
            Some(&app.service_token()),
            Some(json!({"status": "cancelled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ended = listener.recv_skipping_to("dispatch_event").await;
    assert_eq!(
        (ended["event"].clone(), ended["dispatchId"].clone()),
        (json!("cancelled"), again["id"].clone())
    );
    assert_eq!(app.get_dispatch(&again["id"]).await["status"], "cancelled");
}

async fn conflicts_and_bad_requests_get_clear_errors(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let first = app
        .dispatch_ok(10, json!({"candidates": [3], "skipOffline": false}))
        .await;

    let cases = [
        (
            10,
            json!({"candidates": [5]}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            99,
            json!({"candidates": [5]}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            10,
            json!({"candidates": []}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            10,
            json!({"candidates": [3, 3]}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            10,
            json!({"candidates": [0]}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            10,
            json!({"candidates": [3], "mode": "random"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            10,
            json!({"candidates": [3], "batchSize": 0}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            10,
            json!({"candidates": [3], "ttlSeconds": 0}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            10,
            json!({"candidates": [3], "skip_offline": false}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            10,
            json!({"candidates": (1..=101).collect::<Vec<i64>>()}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (order, body, want_status, want_code) in cases {
        let (status, answer) = app.dispatch(order, body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (want_status, Some(want_code)),
            "{body}: {answer}"
        );
    }
    let (_, answer) = app.dispatch(10, json!({"candidates": [5]})).await;
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("already being dispatched"),
        "{answer}"
    );

    // A taken order cannot be dispatched.
    app.put_order(11, 7).await;
    let (id, _) = app.offer_ok(11, 4, None).await;
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{id}/accept"),
            Some(&app.master_token(4)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = app.dispatch(11, json!({"candidates": [5]})).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::CONFLICT, json!("conflict"))
    );

    // Masters and clients may not dispatch or read dispatches.
    let (status, _) = app
        .request(
            Method::POST,
            "/api/v1/orders/10/dispatch",
            Some(&app.master_token(3)),
            Some(json!({"candidates": [3]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .request(
            Method::GET,
            &format!("/api/v1/dispatches/{}", first["id"]),
            Some(&app.master_token(3)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = app
        .request(
            Method::GET,
            "/api/v1/dispatches/12345",
            Some(&app.admin_token()),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
}

async fn a_dispatch_survives_a_restart_and_moves_on_when_its_offer_expires_meanwhile(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let dispatch = app
        .dispatch_ok(
            10,
            json!({"candidates": [3, 5], "ttlSeconds": 1, "skipOffline": false}),
        )
        .await;
    assert_eq!(dispatch["current"], json!([3]));

    // Down while 3's offer runs out: the new process expires it and offers to 5.
    let app = app.restart_after(Duration::from_millis(1500));
    let mut m5 = app.subscribed_master(5).await;
    let offer = m5.recv_type("new_assignment").await;
    assert_eq!(offer["assignment"]["orderId"], 10);
    let dispatch = app.get_dispatch(&dispatch["id"]).await;
    assert_eq!(dispatch["status"], "running");
    assert_eq!(
        outcomes(&dispatch),
        pairs(&[(3, "expired"), (5, "offered")])
    );
}

on_both_backends!(
    a_sequential_dispatch_moves_on_after_a_reject_and_an_expiry_until_an_accept,
    skip_offline_passes_over_masters_off_shift_or_not_subscribed,
    a_broadcast_offers_everyone_and_the_first_accept_cancels_the_rest,
    a_batch_keeps_that_many_offers_out_and_delete_cancels_them,
    conflicts_and_bad_requests_get_clear_errors,
    a_dispatch_survives_a_restart_and_moves_on_when_its_offer_expires_meanwhile,
);
