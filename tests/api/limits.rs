//! Connection limits: in all, per user, and not yet authenticated per client address.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use dispatcher::domain::Role;

use crate::helpers::*;

async fn past_max_connections_upgrades_get_503_and_http_keeps_answering(db: Db) {
    // Both places may go to connections without a token (the default would leave them one).
    let vars = vec![
        ("MAX_CONNECTIONS", "2".into()),
        ("MAX_UNAUTHENTICATED", "2".into()),
    ];
    let app = spawn_app_with(db, vars).await;
    let first = app.master_ws(3).await;
    let _second = app.ws("/ws").await;
    let refused = WsClient::try_connect(&app.ws_url("/ws"), &[]).await;
    let Err((status, body)) = refused else {
        panic!("a third connection was accepted");
    };
    assert_eq!(status, 503);
    assert_eq!(body["code"], "over_capacity", "{body}");
    let (status, _) = app.request(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);

    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match WsClient::try_connect(&app.ws_url("/ws"), &[]).await {
            Ok(_) => break,
            Err((503, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(refusal) => panic!("still refused after a disconnect: {refusal:?}"),
        }
    }
}

async fn a_users_newest_connection_replaces_the_oldest_past_the_cap(db: Db) {
    let app = spawn_app_with(db, vec![("MAX_CONNECTIONS_PER_USER", "2".into())]).await;
    let mut oldest = app.subscribed_master(3).await;
    let mut middle = app.master_ws(3).await;
    let mut newest = app.master_ws(3).await;
    let closed = oldest.closed().await;
    assert_eq!(
        closed,
        Closed {
            code: 1008,
            reason: "replaced by a newer connection".into()
        }
    );
    for ws in [&mut middle, &mut newest] {
        ws.send(json!({"type": "ping"})).await;
        ws.recv_type("pong").await;
    }

    // Staff connections are not capped.
    let token = app.admin_token();
    let mut admins = Vec::new();
    for _ in 0..4 {
        let mut ws = app.ws(&format!("/ws?token={token}")).await;
        ws.recv_type("auth_success").await;
        admins.push(ws);
    }
    for ws in &mut admins {
        ws.send(json!({"type": "ping"})).await;
        ws.recv_type("pong").await;
    }
    assert_eq!(app.stats().await["totalConnected"], 6);
}

async fn unauthenticated_connections_per_address_are_capped(db: Db) {
    let app = spawn_app_with(db, vec![("MAX_UNAUTHENTICATED_PER_IP", "2".into())]).await;
    let mut waiting = app.ws("/ws").await;
    let _also_waiting = app.ws("/ws").await;
    let Err((status, body)) = WsClient::try_connect(&app.ws_url("/ws"), &[]).await else {
        panic!("a third unauthenticated connection was accepted");
    };
    assert_eq!(status, 429);
    assert_eq!(body["code"], "rate_limited", "{body}");
    // A connection with a valid token in the URL is authenticated from the start.
    let _master = app.master_ws(3).await;

    waiting
        .send(json!({"type": "auth", "token": app.master_token(4)}))
        .await;
    waiting.recv_type("auth_success").await;
    let _next = app.ws("/ws").await;
}

/// Connections without a token may hold MAX_UNAUTHENTICATED places in all, from any number of
/// addresses; a master whose app brings its token still gets in, up to MAX_CONNECTIONS.
async fn unauthenticated_connections_cannot_take_the_places_of_tokens(db: Db) {
    let app = spawn_app_with(
        db,
        vec![
            ("MAX_CONNECTIONS", "6".into()),
            ("MAX_UNAUTHENTICATED", "2".into()),
            ("TRUSTED_PROXIES", "127.0.0.1".into()),
        ],
    )
    .await;
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    let _one = WsClient::connect(&app.ws_url("/ws"), &from("1.1.1.1")).await;
    let _two = WsClient::connect(&app.ws_url("/ws"), &from("2.2.2.2")).await;
    let Err((status, body)) = WsClient::try_connect(&app.ws_url("/ws"), &from("3.3.3.3")).await
    else {
        panic!("a third connection without a token took a place");
    };
    assert_eq!(
        (status, body["code"].clone()),
        (503, json!("over_capacity"))
    );
    let mut masters = Vec::new();
    for master in 3..7 {
        masters.push(app.master_ws(master).await);
    }
    let refused = WsClient::try_connect(
        &app.ws_url(&format!("/ws?token={}", app.master_token(7))),
        &[],
    )
    .await;
    assert_eq!(
        refused.err().map(|(status, _)| status),
        Some(503),
        "past MAX_CONNECTIONS"
    );
}

async fn forwarded_for_counts_only_from_trusted_proxies(db: Db) {
    let forwarded = |ip: &'static str| [("X-Forwarded-For", ip)];
    let untrusted = spawn_app_with(db, vec![("MAX_UNAUTHENTICATED_PER_IP", "1".into())]).await;
    let _one = WsClient::connect(&untrusted.ws_url("/ws"), &forwarded("1.1.1.1")).await;
    let other = WsClient::try_connect(&untrusted.ws_url("/ws"), &forwarded("2.2.2.2")).await;
    assert_eq!(
        other.err().map(|(status, _)| status),
        Some(429),
        "X-Forwarded-For was believed from an untrusted peer"
    );

    let trusting = spawn_app_on(
        untrusted.storage.clone(),
        vec![
            ("MAX_UNAUTHENTICATED_PER_IP", "1".into()),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1".into()),
        ],
    );
    let _one = WsClient::connect(&trusting.ws_url("/ws"), &forwarded("1.1.1.1")).await;
    let _two = WsClient::connect(&trusting.ws_url("/ws"), &forwarded("2.2.2.2")).await;
    let again = WsClient::try_connect(&trusting.ws_url("/ws"), &forwarded("1.1.1.1")).await;
    assert_eq!(again.err().map(|(status, _)| status), Some(429));
}

async fn a_websocket_reject_reason_has_the_same_500_character_limit_as_http(db: Db) {
    let app = spawn_app(db).await;
    app.put_order(10, 7).await;
    let mut master = app.subscribed_master(3).await;
    let (id, _) = app.offer_ok(10, 3, None).await;
    master.recv_type("new_assignment").await;

    let too_long = "x".repeat(501);
    master
        .send(json!({"type": "reject_assignment", "assignmentId": id, "reason": too_long}))
        .await;
    let refused = master.recv_error("bad_request").await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("reason"),
        "{refused}"
    );
    let stored = app.get_assignment(id).await;
    assert_eq!(stored["status"], "pending", "{stored}");

    let longest = "ж".repeat(500);
    master
        .send(json!({"type": "reject_assignment", "assignmentId": id, "reason": longest}))
        .await;
    master.recv_type("assignment_rejected").await;
    assert_eq!(app.get_assignment(id).await["rejectReason"], longest);
}

async fn topics_are_counted_before_repeats_are_dropped(db: Db) {
    let app = spawn_app(db).await;
    let mut chat = app
        .ws(&format!("/ws?token={}", app.token(Role::Client, 7, None)))
        .await;
    chat.recv_type("auth_success").await;
    let repeated = vec!["dialogs"; 33];
    chat.send(json!({"type": "subscribe", "topics": repeated}))
        .await;
    chat.recv_error("bad_request").await;
    let at_the_limit = vec!["dialogs"; 32];
    chat.send(json!({"type": "subscribe", "topics": at_the_limit}))
        .await;
    assert_eq!(
        chat.recv_type("subscribed").await["topics"],
        json!(["dialogs"])
    );
}

on_both_backends!(
    past_max_connections_upgrades_get_503_and_http_keeps_answering,
    a_users_newest_connection_replaces_the_oldest_past_the_cap,
    unauthenticated_connections_per_address_are_capped,
    forwarded_for_counts_only_from_trusted_proxies,
    unauthenticated_connections_cannot_take_the_places_of_tokens,
    a_websocket_reject_reason_has_the_same_500_character_limit_as_http,
    topics_are_counted_before_repeats_are_dropped,
);

/// Answers `/health` through a fresh connection, or `None` if it takes over 2 s.
async fn health_within_2s(port: u16) -> Option<StatusCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let health = client.get(format!("http://127.0.0.1:{port}/health")).send();
    health.await.ok().map(|r| r.status())
}

/// Whether the server closed this connection within a second.
async fn closed_by_server(socket: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), socket.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
/// Under a 256-file limit, 300 idle plain HTTP connections neither exhaust the process's files
/// nor shut `/health` out: at `MAX_HTTP_CONNECTIONS` the one idle longest makes way.
async fn idle_http_connections_make_way_and_health_keeps_answering() {
    let storage = Storage::new(Db::Sqlite);
    let vars = [("RUST_LOG", "warn".to_string())];
    let server =
        ServerProcess::start_with_open_files(256, &storage.url, storage.dir.path(), &vars).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        health_within_2s(server.port).await,
        Some(StatusCode::OK),
        "/health behind 300 idle connections"
    );
    assert!(
        closed_by_server(&mut idle[0]).await,
        "the connection idle longest was not closed"
    );
    assert!(
        !closed_by_server(&mut idle[299]).await,
        "the newest connection was closed"
    );
}

#[tokio::test]
/// At `MAX_HTTP_CONNECTIONS`, a newcomer replaces the idle connection, and a request still being
/// answered is not cut.
async fn at_max_http_connections_the_idle_one_makes_way_for_a_newcomer() {
    use tokio::io::AsyncWriteExt;
    let storage = Storage::new(Db::Sqlite);
    let vars = [("MAX_HTTP_CONNECTIONS", "3".to_string())];
    let server = ServerProcess::start_with(&storage.url, storage.dir.path(), &vars).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", server.port));
    // Busy: its request is not finished, so it is not answered yet.
    let mut busy = connect().await.unwrap();
    busy.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut idle = connect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut newer = connect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(health_within_2s(server.port).await, Some(StatusCode::OK));
    assert!(closed_by_server(&mut idle).await, "the idle one stayed");
    assert!(
        !closed_by_server(&mut newer).await,
        "a newer idle one went first"
    );
    busy.write_all(b"\r\n").await.unwrap();
    let mut answer = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut busy, &mut answer)
        .await
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
}
