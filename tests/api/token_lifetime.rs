//! A connection lives no longer than its token, unless the client refreshes it.

use std::time::Duration;

use dispatcher::domain::Role;
use serde_json::json;

use crate::helpers::*;

/// A master token for master 3 that runs out `secs` from now.
fn short_token(app: &TestApp, secs: u64) -> String {
    app.jwt.mint(1003, Role::Master, Some(3), secs)
}

async fn connect_with(app: &TestApp, token: &str) -> WsClient {
    let mut ws = app.ws(&format!("/ws?token={token}")).await;
    ws.recv_type("auth_success").await;
    ws
}

fn notice(secs: u64) -> Vars {
    vec![("TOKEN_EXPIRY_NOTICE_SECS", secs.to_string())]
}

async fn the_server_warns_before_exp_and_closes_at_it(db: Db) {
    let app = spawn_app_with(db, notice(1)).await;
    let mut ws = connect_with(&app, &short_token(&app, 3)).await;
    let expiring = ws
        .recv_within(Duration::from_secs(4))
        .await
        .expect("a warning");
    assert_eq!(expiring["type"], "token_expiring", "{expiring}");
    let expires_at = expiring["expiresAt"].as_str().unwrap();
    assert!(
        expires_at.ends_with('Z') && expires_at.contains('.'),
        "{expires_at}"
    );
    let closed = ws.closed().await;
    assert_eq!(
        closed,
        Closed {
            code: 1008,
            reason: "token expired".into()
        }
    );
}

async fn a_token_with_less_than_the_notice_left_is_warned_at_once(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = connect_with(&app, &short_token(&app, 30)).await;
    let expiring = ws
        .recv_within(Duration::from_secs(1))
        .await
        .expect("a warning");
    assert_eq!(expiring["type"], "token_expiring", "{expiring}");
}

async fn a_refresh_with_the_same_identity_moves_the_deadline(db: Db) {
    let app = spawn_app_with(db, notice(1)).await;
    let mut ws = connect_with(&app, &short_token(&app, 3)).await;
    let fresh = short_token(&app, 3600);
    ws.send(json!({"type": "refresh_token", "token": fresh, "requestId": 9}))
        .await;
    let refreshed = ws.recv_type("token_refreshed").await;
    assert_eq!(refreshed["requestId"], 9);
    assert!(refreshed["expiresAt"].as_str().is_some(), "{refreshed}");
    // Past the old exp: still open, and no warning for the old token.
    tokio::time::sleep(Duration::from_secs(4)).await;
    ws.send(json!({"type": "ping"})).await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "pong", "{reply}");
}

async fn a_refresh_with_another_identity_or_a_bad_token_leaves_the_deadline(db: Db) {
    let app = spawn_app_with(db, notice(1)).await;
    let mut ws = connect_with(&app, &short_token(&app, 3)).await;
    let other_master = app.jwt.mint(1003, Role::Master, Some(4), 3600);
    ws.send(json!({"type": "refresh_token", "token": other_master}))
        .await;
    ws.recv_error("forbidden").await;
    let other_role = app.jwt.mint(1003, Role::Client, None, 3600);
    ws.send(json!({"type": "refresh_token", "token": other_role}))
        .await;
    ws.recv_error("forbidden").await;
    ws.send(json!({"type": "refresh_token", "token": "not-a-token"}))
        .await;
    ws.recv_error("unauthorized").await;
    let closed = ws.closed().await;
    assert_eq!(closed.code, 1008);
    assert_eq!(closed.reason, "token expired");
}

on_both_backends!(
    the_server_warns_before_exp_and_closes_at_it,
    a_token_with_less_than_the_notice_left_is_warned_at_once,
    a_refresh_with_the_same_identity_moves_the_deadline,
    a_refresh_with_another_identity_or_a_bad_token_leaves_the_deadline,
);
