use std::time::Duration;

use dispatcher::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn an_offer_reaches_the_subscribed_master_with_basic_information_only(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut subscribed = app.subscribed_master(3).await;
    let mut unsubscribed = app.master_ws(3).await;
    let mut other_master = app.subscribed_master(4).await;

    let (id, created) = app.offer_ok(10, 3, Some(120)).await;
    assert_eq!(created["delivered"], 1);
    let assignment = &created["assignment"];
    assert_eq!(assignment["status"], "pending");
    assert_eq!(
        (
            assignment["orderId"].clone(),
            assignment["masterId"].clone()
        ),
        (json!(10), json!(3))
    );

    let pushed = subscribed.recv_type("new_assignment").await;
    let offer = pushed["assignment"].as_object().unwrap();
    let mut keys: Vec<_> = offer.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "address",
            "createdAt",
            "deviceType",
            "expiresAt",
            "id",
            "orderId",
            "problem"
        ]
    );
    assert_eq!(offer["id"], id);
    assert_eq!(offer["address"], "Lenina 10");
    assert_eq!(offer["expiresAt"], assignment["expiresAt"]);
    assert!(!pushed.to_string().contains("Ivan") && !pushed.to_string().contains("+7900"));

    unsubscribed
        .expect_silence(Duration::from_millis(300))
        .await;
    other_master
        .expect_silence(Duration::from_millis(100))
        .await;
}

async fn delivered_counts_every_subscribed_connection_of_the_master(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(1, 7).await;
    app.put_order(2, 7).await;
    let (_, nobody) = app.offer_ok(1, 3, None).await;
    assert_eq!(nobody["delivered"], 0);
    let mut phone = app.subscribed_master(3).await;
    phone.recv_type("new_assignment").await; // the open offer, replayed on subscribe
    let mut tablet = app.subscribed_master(3).await;
    tablet.recv_type("new_assignment").await;
    let (_, both) = app.offer_ok(2, 3, None).await;
    assert_eq!(both["delivered"], 2);
    assert_eq!(
        phone.recv_type("new_assignment").await["assignment"]["orderId"],
        2
    );
    assert_eq!(
        tablet.recv_type("new_assignment").await["assignment"]["orderId"],
        2
    );
}

async fn subscribing_replays_open_offers_and_the_polling_fallback_lists_them(db: Db) {
    let app = spawn_app(db).await;
    for order in [1, 2, 3] {
        app.put_order(order, 7).await;
    }
    let (a1, _) = app.offer_ok(1, 3, None).await;
    let (a2, _) = app.offer_ok(2, 3, None).await;
    let (a3, _) = app.offer_ok(3, 3, None).await;
    app.offer_ok(3, 4, None).await;
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{a3}/cancel"),
            Some(&app.service_token()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut ws = app.subscribed_master(3).await;
    let first = ws.recv_type("new_assignment").await;
    let second = ws.recv_type("new_assignment").await;
    assert_eq!(
        [
            first["assignment"]["id"].clone(),
            second["assignment"]["id"].clone()
        ],
        [json!(a1), json!(a2)]
    );
    ws.expect_silence(Duration::from_millis(300)).await;

    let (status, body) = app
        .request(
            Method::GET,
            "/api/v1/masters/me/assignments",
            Some(&app.master_token(3)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<Value> = body["assignments"].as_array().unwrap().clone();
    assert_eq!(
        listed,
        vec![first["assignment"].clone(), second["assignment"].clone()]
    );
}

async fn accepting_over_websocket_gives_the_full_order_and_tells_everyone_concerned(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut winner = app.subscribed_master(3).await;
    let mut loser = app.subscribed_master(4).await;
    let mut client = app
        .ws(&format!("/ws?token={}", app.token(Role::Client, 7, None)))
        .await;
    client.recv_type("auth_success").await;
    let mut service = app.event_listener(&app.service_token()).await;

    let (mine, _) = app.offer_ok(10, 3, None).await;
    let (theirs, _) = app.offer_ok(10, 4, None).await;
    winner.recv_type("new_assignment").await;
    loser.recv_type("new_assignment").await;

    winner
        .send(json!({"type": "accept_assignment", "assignmentId": mine, "requestId": "a"}))
        .await;
    // The winner hears of his win before the order's status push of the same decision.
    let (accepted, own_update) = (winner.recv().await, winner.recv().await);
    assert_eq!(accepted["type"], "assignment_accepted");
    assert_eq!(own_update["type"], "order_status_update");
    assert_eq!(own_update["status"], "assigned");
    assert_eq!(accepted["assignmentId"], mine);
    assert_eq!(accepted["orderId"], 10);
    assert_eq!(accepted["requestId"], "a");
    assert_eq!(accepted["order"]["clientName"], "Ivan Petrov");
    assert_eq!(accepted["order"]["clientPhone"], "+79001234567");
    assert_eq!(accepted["order"]["status"], "assigned");
    assert_eq!(accepted["order"]["masterId"], 3);

    let cancelled = loser.recv_type("assignment_cancelled").await;
    assert_eq!(
        (
            cancelled["assignmentId"].clone(),
            cancelled["orderId"].clone()
        ),
        (json!(theirs), json!(10))
    );

    let update = client.recv_type("order_status_update").await;
    assert_eq!(
        (update["orderId"].clone(), update["status"].clone()),
        (json!(10), json!("assigned"))
    );
    assert!(update["updatedAt"].as_str().unwrap().ends_with('Z'));

    let mut events = [
        service.recv_type("assignment_event").await,
        service.recv_type("assignment_event").await,
    ];
    events.sort_by_key(|e| e["assignmentId"].as_i64());
    assert_eq!(events[0]["event"], "accepted");
    assert_eq!(events[0]["masterId"], 3);
    assert_eq!(events[1]["event"], "cancelled");
    assert_eq!(events[1]["masterId"], 4);
    assert!(events[0]["at"].as_str().unwrap().ends_with('Z'));
    // Event listeners hear of the order's new status too.
    let status = service.recv_type("order_status_update").await;
    assert_eq!(
        (status["orderId"].clone(), status["status"].clone()),
        (json!(10), json!("assigned"))
    );

    assert_eq!(app.get_assignment(mine).await["status"], "accepted");
    assert_eq!(app.get_assignment(theirs).await["status"], "cancelled");

    loser
        .send(json!({"type": "accept_assignment", "assignmentId": theirs}))
        .await;
    loser.recv_error("assignment_not_pending").await;
    let (status, body) = app.offer(10, 5, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

async fn rejecting_stores_the_reason_and_emits_an_event(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut master = app.subscribed_master(3).await;
    let mut admin = app.event_listener(&app.admin_token()).await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    master.recv_type("new_assignment").await;

    master
        .send(json!({"type": "reject_assignment", "assignmentId": id, "reason": "too far"}))
        .await;
    let rejected = master.recv_type("assignment_rejected").await;
    assert_eq!(
        (
            rejected["assignmentId"].clone(),
            rejected["orderId"].clone()
        ),
        (json!(id), json!(10))
    );
    let stored = app.get_assignment(id).await;
    assert_eq!(stored["status"], "rejected");
    assert_eq!(stored["rejectReason"], "too far");
    let event = admin.recv_type("assignment_event").await;
    assert_eq!(
        (event["event"].clone(), event["assignmentId"].clone()),
        (json!("rejected"), json!(id))
    );

    master
        .send(json!({"type": "accept_assignment", "assignmentId": id}))
        .await;
    master.recv_error("assignment_not_pending").await;
    // Rejected, the order can be offered to the same master again.
    app.offer_ok(10, 3, None).await;
}

async fn a_master_cannot_act_on_another_masters_assignment(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    let mut intruder = app.master_ws(4).await;
    intruder
        .send(json!({"type": "accept_assignment", "assignmentId": id}))
        .await;
    intruder.recv_error("forbidden").await;
    intruder
        .send(json!({"type": "reject_assignment", "assignmentId": id}))
        .await;
    intruder.recv_error("forbidden").await;
    let other = app.master_token(4);
    for path in [
        format!("/api/v1/assignments/{id}/accept"),
        format!("/api/v1/assignments/{id}/reject"),
    ] {
        let (status, body) = app.request(Method::POST, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["code"], "forbidden");
    }
    let (status, _) = app
        .request(
            Method::GET,
            &format!("/api/v1/assignments/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.get_assignment(id).await["status"], "pending");
}

async fn http_accept_reject_and_cancel_decide_once(db: Db) {
    let app = spawn_app(db).await;
    for order in [1, 2, 3] {
        app.put_order(order, 7).await;
    }
    let mut master = app.master_ws(3).await;
    let (a1, _) = app.offer_ok(1, 3, None).await;
    let (a2, _) = app.offer_ok(2, 3, None).await;
    let (a3, _) = app.offer_ok(3, 3, None).await;
    let me = app.master_token(3);

    let (status, body) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{a1}/accept"),
            Some(&me),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["id"].clone(), body["status"].clone()),
        (json!(a1), json!("accepted"))
    );
    let (status, body) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{a2}/reject"),
            Some(&me),
            Some(json!({"reason": "busy"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "rejected");
    let (status, body) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{a3}/cancel"),
            Some(&app.service_token()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "cancelled");
    // A cancelled offer vanishes from every connection of the master, subscribed or not.
    assert_eq!(master.recv_type("order_status_update").await["orderId"], 1);
    assert_eq!(
        master.recv_type("assignment_cancelled").await["assignmentId"],
        a3
    );

    for (path, token) in [
        (format!("/api/v1/assignments/{a1}/reject"), me.clone()),
        (format!("/api/v1/assignments/{a2}/accept"), me.clone()),
        (
            format!("/api/v1/assignments/{a3}/cancel"),
            app.admin_token(),
        ),
    ] {
        let (status, body) = app.request(Method::POST, &path, Some(&token), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}");
        assert_eq!(body["code"], "assignment_not_pending");
    }
}

async fn order_status_changes_reach_the_client_and_the_master_and_closing_cancels_offers(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    app.put_order(11, 7).await;
    let mut client = app
        .ws(&format!("/ws?token={}", app.token(Role::Client, 7, None)))
        .await;
    client.recv_type("auth_success").await;
    let mut other_client = app
        .ws(&format!("/ws?token={}", app.token(Role::Client, 8, None)))
        .await;
    other_client.recv_type("auth_success").await;
    let mut master = app.master_ws(3).await;
    let mut bystander = app.subscribed_master(4).await;

    let (accepted, _) = app.offer_ok(10, 3, None).await;
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{accepted}/accept"),
            Some(&app.master_token(3)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    client.recv_type("order_status_update").await;
    master.recv_type("order_status_update").await;

    let (status, order) = app
        .request(
            Method::PATCH,
            "/api/v1/orders/10/status",
            Some(&app.admin_token()),
            Some(json!({"status": "in_progress"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(order["status"], "in_progress");
    assert_eq!(
        client.recv_type("order_status_update").await["status"],
        "in_progress"
    );
    assert_eq!(
        master.recv_type("order_status_update").await["status"],
        "in_progress"
    );

    let (pending, _) = app.offer_ok(11, 4, None).await;
    bystander.recv_type("new_assignment").await;
    let (status, _) = app
        .request(
            Method::PATCH,
            "/api/v1/orders/11/status",
            Some(&app.service_token()),
            Some(json!({"status": "cancelled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bystander.recv_type("assignment_cancelled").await["assignmentId"],
        pending
    );
    assert_eq!(app.get_assignment(pending).await["status"], "cancelled");
    assert_eq!(client.recv_type("order_status_update").await["orderId"], 11);
    other_client
        .expect_silence(Duration::from_millis(200))
        .await;
    let (status, _) = app.offer(11, 5, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

async fn orders_upsert_and_an_offer_is_refused_twice_to_the_same_master(db: Db) {
    let app = spawn_app(db).await;
    let first = app.put_order(10, 7).await;
    assert_eq!(first["status"], "new");
    let body =
        json!({"clientUserId": 8, "address": "Mira 2", "deviceType": "oven", "problem": "cold"});
    let (status, updated) = app
        .request(
            Method::PUT,
            "/api/v1/orders/10",
            Some(&app.service_token()),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["address"], "Mira 2");
    assert_eq!(updated["clientUserId"], 8);
    assert_eq!(updated["clientName"], Value::Null);
    assert_eq!(updated["createdAt"], first["createdAt"]);

    app.offer_ok(10, 3, None).await;
    let (status, body) = app.offer(10, 3, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "conflict");
    app.offer_ok(10, 4, None).await;
}

async fn shifts_are_stored_per_master(db: Db) {
    let app = spawn_app(db).await;
    let (status, body) = app
        .request(
            Method::PUT,
            "/api/v1/masters/3/shift",
            Some(&app.master_token(3)),
            Some(json!({"onShift": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["id"].clone(), body["onShift"].clone()),
        (json!(3), json!(true))
    );
    let (status, body) = app
        .request(
            Method::PUT,
            "/api/v1/masters/3/shift",
            Some(&app.service_token()),
            Some(json!({"onShift": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["onShift"], false);
    let (status, _) = app
        .request(
            Method::PUT,
            "/api/v1/masters/4/shift",
            Some(&app.master_token(3)),
            Some(json!({"onShift": true})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn an_offer_racing_a_new_subscription_arrives_exactly_once(db: Db) {
    let app = spawn_app(db).await;
    for round in 1..=8 {
        app.put_order(round, 7).await;
        let mut ws = app.master_ws(3).await;
        let subscribe = async {
            ws.send(json!({"type": "subscribe_assignments"})).await;
            let mut received = Vec::new();
            while let Some(message) = ws.recv_within(Duration::from_millis(400)).await {
                received.push(message);
            }
            received
        };
        let (received, _) = tokio::join!(subscribe, app.offer_ok(round, 3, None));
        let mut offered: Vec<i64> = received
            .iter()
            .filter(|m| m["type"] == "new_assignment")
            .map(|m| m["assignment"]["orderId"].as_i64().unwrap())
            .collect();
        offered.sort_unstable();
        assert_eq!(
            offered,
            (1..=round).collect::<Vec<_>>(),
            "round {round}: {received:?}"
        );
    }
}

/// Status pushes reach the order's client as a client, not whoever shares the number as `sub`.
async fn order_status_updates_go_to_the_client_role_only(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut client = app
        .ws(&format!("/ws?token={}", app.token(Role::Client, 7, None)))
        .await;
    client.recv_type("auth_success").await;
    let mut same_sub = app
        .ws(&format!("/ws?token={}", app.token(Role::Admin, 7, None)))
        .await;
    same_sub.recv_type("auth_success").await;
    let (status, _) = app
        .request(
            reqwest::Method::PATCH,
            "/api/v1/orders/10/status",
            Some(&app.service_token()),
            Some(json!({"status": "in_progress"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let update = client.recv_type("order_status_update").await;
    assert_eq!(update["status"], "in_progress");
    same_sub
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
}

/// Every offer carries the server's clock and the time left, so that a phone with a skewed clock
/// counts down right; a replayed offer carries what is left then, not the original TTL.
async fn offers_carry_the_server_time_and_the_time_left(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut live = app.subscribed_master(3).await;
    app.offer_ok(10, 3, Some(60)).await;
    let offer = live.recv_type("new_assignment").await;
    let server_time = offer["serverTime"].as_str().unwrap().to_string();
    assert!(
        server_time.ends_with('Z') && server_time.len() == 24,
        "{server_time}"
    );
    let left = offer["expiresInMs"].as_i64().unwrap();
    assert!((58_000..=60_000).contains(&left), "{offer}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut late = app.subscribed_master(3).await;
    let replayed = late.recv_type("new_assignment").await;
    let left_later = replayed["expiresInMs"].as_i64().unwrap();
    assert!(left_later <= left - 1400, "{left} then {left_later}");
    assert!(replayed["serverTime"].as_str().unwrap() > server_time.as_str());
    assert_eq!(replayed["assignment"]["id"], offer["assignment"]["id"]);
}

on_both_backends!(
    offers_carry_the_server_time_and_the_time_left,
    order_status_updates_go_to_the_client_role_only,
    an_offer_racing_a_new_subscription_arrives_exactly_once,
    an_offer_reaches_the_subscribed_master_with_basic_information_only,
    delivered_counts_every_subscribed_connection_of_the_master,
    subscribing_replays_open_offers_and_the_polling_fallback_lists_them,
    accepting_over_websocket_gives_the_full_order_and_tells_everyone_concerned,
    rejecting_stores_the_reason_and_emits_an_event,
    a_master_cannot_act_on_another_masters_assignment,
    http_accept_reject_and_cancel_decide_once,
    order_status_changes_reach_the_client_and_the_master_and_closing_cancels_offers,
    orders_upsert_and_an_offer_is_refused_twice_to_the_same_master,
    shifts_are_stored_per_master,
);
