use dispatcher::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

async fn expect(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
    status: StatusCode,
    code: &str,
) {
    let (got, response) = app.request(method.clone(), path, token, body).await;
    assert_eq!(got, status, "{method} {path}: {response}");
    assert_eq!(response["code"], code, "{method} {path}: {response}");
    assert!(
        response["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{response}"
    );
}

async fn checks_run_in_order_401_403_400_404_409(db: Db) {
    let app = spawn_app(db).await;
    let service = app.service_token();
    let client = app.token(Role::Client, 7, None);
    let bad_body = Some(json!({"orderId": "ten"}));

    // 401 beats everything, even a malformed body.
    expect(
        &app,
        Method::POST,
        "/api/v1/assignments",
        None,
        bad_body.clone(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/api/v1/assignments",
        Some("not-a-jwt"),
        bad_body.clone(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // 403 for the wrong role beats a malformed body.
    expect(
        &app,
        Method::POST,
        "/api/v1/assignments",
        Some(&client),
        bad_body.clone(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // 400 beats an unknown id.
    expect(
        &app,
        Method::POST,
        "/api/v1/assignments",
        Some(&service),
        bad_body,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/api/v1/orders/99",
        Some(&service),
        Some(json!({"address": "x"})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/api/v1/orders/99",
        Some(&service),
        Some(json!({"clientUserId": 1, "address": " ", "deviceType": "a", "problem": "b"})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    expect(
        &app,
        Method::PATCH,
        "/api/v1/orders/99/status",
        Some(&service),
        Some(json!({"status": "lost"})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    // 404 for unknown ids in the body and in the path.
    expect(
        &app,
        Method::POST,
        "/api/v1/assignments",
        Some(&service),
        Some(json!({"orderId": 99, "masterId": 3})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect(
        &app,
        Method::PATCH,
        "/api/v1/orders/99/status",
        Some(&service),
        Some(json!({"status": "completed"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect(
        &app,
        Method::GET,
        "/api/v1/assignments/12345",
        Some(&service),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect(
        &app,
        Method::POST,
        "/api/v1/assignments/12345/accept",
        Some(&app.master_token(3)),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect(
        &app,
        Method::GET,
        "/api/v1/assignments/abc",
        Some(&service),
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    app.put_order(10, 7).await;
    expect(
        &app,
        Method::POST,
        "/api/v1/assignments",
        Some(&service),
        Some(json!({"orderId": 10, "masterId": 3, "ttlSeconds": 0})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    // Roles per route.
    expect(
        &app,
        Method::POST,
        &format!("/api/v1/assignments/{id}/cancel"),
        Some(&app.master_token(3)),
        None,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect(
        &app,
        Method::POST,
        &format!("/api/v1/assignments/{id}/accept"),
        Some(&service),
        None,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect(
        &app,
        Method::GET,
        &format!("/api/v1/assignments/{id}"),
        Some(&client),
        None,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect(
        &app,
        Method::GET,
        "/api/admin/websocket/stats",
        Some(&service),
        None,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect(
        &app,
        Method::GET,
        "/api/v1/masters/me/assignments",
        Some(&service),
        None,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect(
        &app,
        Method::PUT,
        "/api/v1/orders/10",
        Some(&app.master_token(3)),
        None,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // 409 once decided.
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/api/v1/assignments/{id}/cancel"),
            Some(&service),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    expect(
        &app,
        Method::POST,
        &format!("/api/v1/assignments/{id}/accept"),
        Some(&app.master_token(3)),
        None,
        StatusCode::CONFLICT,
        "assignment_not_pending",
    )
    .await;
}

async fn the_master_sees_his_own_assignment(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let (id, created) = app.offer_ok(10, 3, Some(60)).await;
    let (status, body) = app
        .request(
            Method::GET,
            &format!("/api/v1/assignments/{id}"),
            Some(&app.master_token(3)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["expiresAt"], created["assignment"]["expiresAt"]);
}

async fn health_answers_without_a_token(db: Db) {
    let app = spawn_app(db).await;
    let _ws = app.master_ws(3).await;
    let (status, body) = app.request(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["connections"], 1);
    assert!(body["uptimeSecs"].is_u64());
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

async fn unknown_paths_are_404_in_the_error_shape(db: Db) {
    let app = spawn_app(db).await;
    expect(
        &app,
        Method::GET,
        "/api/v1/nothing",
        None,
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

async fn bodies_are_bounded_and_texts_capped(db: Db) {
    let app = spawn_app(db).await;
    let service = app.service_token();
    let order = |address: String| json!({"clientUserId": 7, "address": address, "deviceType": "d", "problem": "p"});
    let huge = "x".repeat(70 * 1024);
    let put = |path: &'static str, body| {
        expect(
            &app,
            Method::PUT,
            path,
            Some(&service),
            Some(body),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        )
    };
    put("/api/v1/orders/1", order(huge.clone())).await;

    let (status, body) = app
        .request(
            Method::PUT,
            "/api/v1/orders/1",
            Some(&service),
            Some(order("x".repeat(501))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("address"),
        "{body}"
    );
    app.put_order(1, 7).await;

    let (id, _) = app.offer_ok(1, 3, None).await;
    let reject = app
        .http
        .post(format!("{}/api/v1/assignments/{id}/reject", app.address))
        .bearer_auth(app.master_token(3))
        .body(format!(r#"{{"reason":"{huge}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(reject.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = reject.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
    assert_eq!(app.get_assignment(id).await["status"], "pending");
}

async fn ids_must_be_positive(db: Db) {
    let app = spawn_app(db).await;
    let (service, master) = (app.service_token(), app.master_token(3));
    let order = json!({"clientUserId": 7, "address": "a", "deviceType": "d", "problem": "p"});
    let bad = StatusCode::BAD_REQUEST;
    for (method, path, token, body) in [
        (
            Method::PUT,
            "/api/v1/orders/0",
            &service,
            Some(order.clone()),
        ),
        (
            Method::PUT,
            "/api/v1/orders/-4",
            &service,
            Some(order.clone()),
        ),
        (
            Method::PUT,
            "/api/v1/orders/1",
            &service,
            Some(json!({"clientUserId": 0, "address": "a", "deviceType": "d", "problem": "p"})),
        ),
        (
            Method::PATCH,
            "/api/v1/orders/0/status",
            &service,
            Some(json!({"status": "completed"})),
        ),
        (
            Method::POST,
            "/api/v1/assignments",
            &service,
            Some(json!({"orderId": 1, "masterId": -3})),
        ),
        (
            Method::POST,
            "/api/v1/assignments",
            &service,
            Some(json!({"orderId": 0, "masterId": 3})),
        ),
        (Method::GET, "/api/v1/assignments/0", &service, None),
        (Method::POST, "/api/v1/assignments/-1/accept", &master, None),
        (Method::POST, "/api/v1/assignments/0/reject", &master, None),
        (Method::POST, "/api/v1/assignments/0/cancel", &service, None),
        (
            Method::PUT,
            "/api/v1/masters/0/shift",
            &service,
            Some(json!({"onShift": true})),
        ),
    ] {
        expect(&app, method, path, Some(token), body, bad, "bad_request").await;
    }
    let mut ws = app.subscribed_master(3).await;
    ws.send(json!({"type": "accept_assignment", "assignmentId": 0}))
        .await;
    let error = ws.recv_error("bad_request").await;
    assert!(
        error["message"].as_str().unwrap().contains("positive"),
        "{error}"
    );
}

on_both_backends!(
    ids_must_be_positive,
    bodies_are_bounded_and_texts_capped,
    checks_run_in_order_401_403_400_404_409,
    the_master_sees_his_own_assignment,
    health_answers_without_a_token,
    unknown_paths_are_404_in_the_error_shape,
);
