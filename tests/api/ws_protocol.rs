use std::time::Duration;

use dispatcher::domain::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

async fn ping_answers_pong_with_server_time(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = app.master_ws(3).await;
    ws.send(json!({"type": "ping"})).await;
    let pong = ws.recv_type("pong").await;
    assert!(pong["serverTime"].as_str().unwrap().ends_with('Z'));
    assert!(pong.get("requestId").is_none());
}

async fn malformed_messages_get_errors_and_the_connection_stays_open(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = app.master_ws(3).await;
    ws.send_text("{not json").await;
    ws.recv_error("bad_request").await;
    ws.send(json!({"no": "type"})).await;
    ws.recv_error("bad_request").await;
    ws.send(json!({"type": "teleport", "requestId": "t"})).await;
    assert_eq!(ws.recv_error("unknown_type").await["requestId"], "t");
    ws.send(json!({"type": "accept_assignment", "requestId": 9}))
        .await;
    assert_eq!(ws.recv_error("bad_request").await["requestId"], 9);
    ws.send(json!({"type": "accept_assignment", "assignmentId": "seven"}))
        .await;
    ws.recv_error("bad_request").await;
    ws.send(json!({"type": "accept_assignment", "assignmentId": 999_999}))
        .await;
    ws.recv_error("not_found").await;
    ws.send(json!({"type": "ping"})).await;
    ws.recv_type("pong").await;
}

async fn roles_are_checked_per_message(db: Db) {
    let app = spawn_app(db).await;
    let mut client = app
        .ws(&format!("/ws?token={}", app.token(Role::Client, 7, None)))
        .await;
    client.recv_type("auth_success").await;
    client
        .send(json!({"type": "subscribe_assignments", "requestId": "s"}))
        .await;
    assert_eq!(client.recv_error("forbidden").await["requestId"], "s");
    client.send(json!({"type": "subscribe_events"})).await;
    client.recv_error("forbidden").await;
    client
        .send(json!({"type": "accept_assignment", "assignmentId": 1}))
        .await;
    client.recv_error("forbidden").await;

    let mut master = app.master_ws(3).await;
    master.send(json!({"type": "subscribe_events"})).await;
    master.recv_error("forbidden").await;

    let mut service = app.ws(&format!("/ws?token={}", app.service_token())).await;
    service.recv_type("auth_success").await;
    service
        .send(json!({"type": "subscribe_events", "requestId": 1}))
        .await;
    assert_eq!(service.recv_type("subscribed_events").await["requestId"], 1);
}

async fn subscribe_and_unsubscribe_are_acknowledged(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = app.subscribed_master(3).await;
    ws.send(json!({"type": "unsubscribe_assignments", "requestId": "u"}))
        .await;
    let ack = ws.recv_type("unsubscribed_assignments").await;
    assert_eq!(ack["requestId"], "u");
    assert!(ack.get("reason").is_none());
}

async fn a_binary_frame_closes_with_1003(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = app.master_ws(3).await;
    ws.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(ws.closed().await.code, 1003);
}

async fn a_message_over_the_limit_closes_with_1009(db: Db) {
    let app = spawn_app_with(db, vec![("MAX_MESSAGE_BYTES", "1024".into())]).await;
    let mut ws = app.master_ws(3).await;
    ws.send(json!({"type": "ping", "requestId": "x".repeat(900)}))
        .await;
    ws.recv_type("pong").await;
    ws.send(json!({"type": "ping", "requestId": "x".repeat(2000)}))
        .await;
    assert_eq!(ws.closed().await.code, 1009);
}

async fn a_fragmented_message_is_put_back_together_and_held_to_the_limit(db: Db) {
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    let app = spawn_app_with(db, vec![("MAX_MESSAGE_BYTES", "1024".into())]).await;
    let mut ws = app.master_ws(3).await;
    let fragment = |opcode, last: bool, text: &str| {
        Message::Frame(Frame::message(text.as_bytes().to_vec(), opcode, last))
    };
    ws.send_raw(fragment(OpCode::Data(Data::Text), false, r#"{"type":"pi"#))
        .await;
    ws.send_raw(fragment(OpCode::Data(Data::Continue), true, r#"ng"}"#))
        .await;
    ws.recv_type("pong").await;

    let half = format!(r#"{{"type":"ping","requestId":"{}"#, "x".repeat(600));
    ws.send_raw(fragment(OpCode::Data(Data::Text), false, &half))
        .await;
    ws.send_raw(fragment(
        OpCode::Data(Data::Continue),
        true,
        &"x".repeat(600),
    ))
    .await;
    assert_eq!(ws.closed().await.code, 1009);
}

/// RFC 6455 §7.1.1: after the close handshake the server closes the TCP connection first, so a
/// closing phone is done at once instead of waiting for a timer.
async fn a_client_close_is_finished_by_the_server_at_once(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = app.master_ws(3).await;
    let started = std::time::Instant::now();
    let reply = ws.close_handshake().await;
    let took = started.elapsed();
    assert_eq!(reply.code, 1000);
    // The old transport waited out a 1 s timer here.
    assert!(took < Duration::from_millis(250), "the close took {took:?}");
}

async fn messages_over_the_rate_are_dropped_with_rate_limited(db: Db) {
    let app = spawn_app_with(
        db,
        vec![
            ("RATE_LIMIT_PER_SEC", "1".into()),
            ("RATE_LIMIT_BURST", "3".into()),
        ],
    )
    .await;
    let mut ws = app.master_ws(3).await;
    for i in 0..5 {
        ws.send(json!({"type": "ping", "requestId": i})).await;
    }
    let replies: Vec<_> = [
        ws.recv().await,
        ws.recv().await,
        ws.recv().await,
        ws.recv().await,
        ws.recv().await,
    ]
    .into();
    let pongs = replies.iter().filter(|m| m["type"] == "pong").count();
    let limited = replies
        .iter()
        .filter(|m| m["code"] == "rate_limited")
        .count();
    assert_eq!((pongs, limited), (3, 2), "{replies:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.send(json!({"type": "ping"})).await;
    ws.recv_type("pong").await;
}

async fn a_client_that_keeps_flooding_is_closed_with_1008(db: Db) {
    let app = spawn_app_with(
        db,
        vec![
            ("RATE_LIMIT_PER_SEC", "1".into()),
            ("RATE_LIMIT_BURST", "1".into()),
        ],
    )
    .await;
    let mut ws = app.master_ws(3).await;
    // The server may close before all of them are sent.
    for _ in 0..150 {
        if !ws.try_send(json!({"type": "ping"})).await {
            break;
        }
    }
    let mut before = Vec::new();
    let closed = ws.closed_after(&mut before).await;
    assert_eq!(closed.code, 1008);
    let limited = before
        .iter()
        .filter(|m| m["code"] == "rate_limited")
        .count();
    assert!(
        (90..=100).contains(&limited),
        "{limited} rate_limited errors before closing"
    );
}

/// A client that floods without reading, then reads: the server's answers, and its close, were
/// all sent before it closed the socket, and none is lost to a reset.
async fn a_flooding_client_that_reads_only_at_the_end_hears_everything_and_the_close(db: Db) {
    let app = spawn_app(db).await;
    let url = app.ws_url(&format!("/ws?token={}", app.master_token(3)));
    // A small window keeps the server's answers in its own send queue while this client goes on
    // writing, for 300 ms after the server has closed: a socket closed under unread input, or
    // that input arriving after the close, resets the connection and discards that queue.
    let mut ws = WsClient::connect_with_small_window(&url).await;
    ws.recv_type("connected").await;
    ws.recv_type("auth_success").await;
    for _ in 0..30 {
        let pings = vec![json!({"type": "ping"}); 50];
        ws.send_all_unflushed(&pings).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut before = Vec::new();
    let closed = ws.closed_after(&mut before).await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "too many messages")
    );
    let count = |kind: &str| before.iter().filter(|m| m["type"] == kind).count();
    let limited = before
        .iter()
        .filter(|m| m["code"] == "rate_limited")
        .count();
    assert!(count("pong") >= 40, "{} pongs", count("pong"));
    assert!(limited >= 90, "{limited} rate_limited errors");
}

/// Bytes that arrive in the same packet as the upgrade request are read at once, not when more
/// bytes come.
async fn a_frame_sent_with_the_upgrade_request_is_answered_at_once(db: Db) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(db).await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let request = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        app.master_token(3)
    );
    // A masked text frame of {"type":"ping","requestId":"p"}, in the same write.
    let payload = br#"{"type":"ping","requestId":"p"}"#;
    let mask = [1u8, 2, 3, 4];
    let mut bytes = request.into_bytes();
    bytes.extend([0x81, 0x80 | payload.len() as u8]);
    bytes.extend(mask);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&bytes).await.unwrap();

    let mut heard = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(&heard).contains(r#""requestId":"p""#) {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, socket.read(&mut chunk))
            .await
            .expect("the pipelined ping is answered without more bytes")
            .unwrap();
        assert!(read > 0, "closed: {}", String::from_utf8_lossy(&heard));
        heard.extend_from_slice(&chunk[..read]);
    }
    let heard = String::from_utf8_lossy(&heard);
    assert!(heard.starts_with("HTTP/1.1 101"), "{heard}");
    assert!(heard.contains(r#""type":"pong""#), "{heard}");
}

on_both_backends!(
    a_flooding_client_that_reads_only_at_the_end_hears_everything_and_the_close,
    a_frame_sent_with_the_upgrade_request_is_answered_at_once,
    ping_answers_pong_with_server_time,
    malformed_messages_get_errors_and_the_connection_stays_open,
    roles_are_checked_per_message,
    subscribe_and_unsubscribe_are_acknowledged,
    a_binary_frame_closes_with_1003,
    a_message_over_the_limit_closes_with_1009,
    a_fragmented_message_is_put_back_together_and_held_to_the_limit,
    a_client_close_is_finished_by_the_server_at_once,
    messages_over_the_rate_are_dropped_with_rate_limited,
    a_client_that_keeps_flooding_is_closed_with_1008,
);
