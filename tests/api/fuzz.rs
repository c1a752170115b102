//! Fuzzing on stable: any input gives a clean error, never a panic, and the server keeps serving
//! everyone else. A short run is part of the suite; `FUZZ_SECS=1800` runs each target for that
//! long instead, and each prints how many inputs it tried.

use std::time::{Duration, Instant};

use dispatcher::protocol::parse;
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Runs `check` over inputs drawn from `strategy`: `FUZZ_CASES` of them (`default_cases` when
/// unset), or batches until `FUZZ_SECS` have passed.
fn fuzz<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let deadline = env("FUZZ_SECS").map(|secs| Instant::now() + Duration::from_secs(secs));
    let cases = match deadline {
        Some(_) => 2_000,
        None => env("FUZZ_CASES").map_or(default_cases, |n| n as u32),
    };
    let mut tried = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &check) {
            panic!("fuzz {name} found an input that fails: {e}");
        }
        tried += u64::from(cases);
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!("fuzz {name}: {tried} inputs, no failure");
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names the protocol and the routes use, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "token",
            "assignmentId",
            "reason",
            "requestId",
            "orderId",
            "masterId",
            "ttlSeconds",
            "clientUserId",
            "address",
            "deviceType",
            "problem",
            "clientName",
            "clientPhone",
            "status",
            "onShift",
            "topics",
            "userIds",
            "payload",
            "topic",
            "acks",
        ])
        .prop_map(String::from),
        "[a-zA-Z]{1,12}",
    ]
}

/// An object that looks like a client message: a known or unknown type and random fields.
fn message_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        prop::sample::select(vec![
            "auth",
            "ping",
            "subscribe_assignments",
            "unsubscribe_assignments",
            "accept_assignment",
            "reject_assignment",
            "subscribe_events",
            "refresh_token",
            "ack_assignment",
            "subscribe",
            "unsubscribe",
        ])
        .prop_map(Value::from),
        json_value(),
    ];
    (
        kind,
        prop::collection::btree_map(field_name(), json_value(), 0..5),
    )
        .prop_map(|(kind, fields)| {
            let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
            object.insert("type".into(), kind);
            Value::Object(object).to_string()
        })
}

/// Text of every kind: arbitrary Unicode, arbitrary bytes read as UTF-8, JSON, message-like.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        json_value().prop_map(|v| v.to_string()),
        message_like(),
    ]
}

#[test]
fn the_client_message_parser_answers_any_text_with_a_message_or_a_clean_error() {
    fuzz("client messages", 5_000, any_text(), |text| {
        let incoming = parse(&text);
        if let Err(e) = incoming.message {
            let body = e.body();
            prop_assert!(!body.code.is_empty() && !body.message.is_empty());
        }
        Ok(())
    });
}

/// The HTTP routes, with the token each needs to get past its role check.
fn route() -> impl Strategy<Value = (reqwest::Method, String, bool)> {
    use reqwest::Method;
    let id = prop_oneof![
        Just("1".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        "[^/?#]{0,12}"
    ];
    (
        prop::sample::select(vec![
            (Method::PUT, "/api/v1/orders/{}", false),
            (Method::PATCH, "/api/v1/orders/{}/status", false),
            (Method::POST, "/api/v1/assignments", false),
            (Method::GET, "/api/v1/assignments/{}", false),
            (Method::POST, "/api/v1/assignments/{}/accept", true),
            (Method::POST, "/api/v1/assignments/{}/reject", true),
            (Method::POST, "/api/v1/assignments/{}/cancel", false),
            (Method::PUT, "/api/v1/masters/{}/shift", false),
            (Method::GET, "/api/admin/websocket/stats", false),
            (Method::POST, "/api/v1/push", false),
        ]),
        id,
    )
        .prop_map(|((method, path, as_master), id)| {
            let id: String = id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (method, path.replace("{}", &id), as_master)
        })
}

/// Bodies: arbitrary bytes, JSON, and objects with the routes' own fields holding random values.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::btree_map(field_name(), json_value(), 0..8).prop_map(|m| {
            Value::Object(m.into_iter().collect())
                .to_string()
                .into_bytes()
        }),
    ]
}

#[test]
fn http_routes_answer_any_body_with_a_status_below_500() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app(Db::Sqlite));
    runtime.block_on(app.put_order(1, 7));
    let (service, master) = (app.service_token(), app.master_token(3));
    fuzz(
        "HTTP bodies",
        300,
        (route(), body()),
        |((method, path, as_master), body)| {
            let token = if as_master { &master } else { &service };
            let (status, text) = runtime.block_on(async {
                let response = app
                    .http
                    .request(method.clone(), format!("{}{path}", app.address))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("the server answers");
                (response.status(), response.text().await.unwrap_or_default())
            });
            prop_assert!(status.as_u16() < 500, "{method} {path}: {status} {text}");
            if !status.is_success() {
                let error: Value = serde_json::from_str(&text).unwrap_or_default();
                prop_assert!(
                    error["code"].is_string(),
                    "{method} {path}: {status} {text}"
                );
            }
            Ok(())
        },
    );
}

#[test]
fn the_websocket_reader_survives_any_bytes_after_the_handshake() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app(Db::Sqlite));
    let handshake = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.master_token(3)
    );
    let frames = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        // A masked text frame header, then random payload: reaches the JSON parser too.
        (any_text(), any::<[u8; 4]>()).prop_map(|(text, mask)| {
            let payload = text.as_bytes();
            let mut frame = vec![0x81];
            match payload.len() {
                n if n < 126 => frame.push(0x80 | n as u8),
                n => {
                    frame.push(0x80 | 126);
                    frame.extend_from_slice(&(n.min(65535) as u16).to_be_bytes());
                }
            }
            frame.extend_from_slice(&mask);
            frame.extend(
                payload
                    .iter()
                    .take(65535)
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i % 4]),
            );
            frame
        }),
    ];
    fuzz("WebSocket frames", 200, frames, |bytes| {
        runtime.block_on(async {
            let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
                .await
                .unwrap();
            tcp.write_all(handshake.as_bytes()).await.unwrap();
            let _ = tcp.write_all(&bytes).await;
            // Read what the server says until it closes or goes quiet.
            let mut seen = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(30), tcp.read(&mut buffer)).await
            {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buffer[..n]);
            }
            prop_assert!(seen.starts_with(b"HTTP/1.1 101"), "no upgrade answer");
            Ok(())
        })
    });
    // Everyone else is still served.
    let mut ws = runtime.block_on(app.master_ws(4));
    runtime.block_on(async {
        ws.send(json!({"type": "ping"})).await;
        ws.recv_type("pong").await;
    });
}
