use dispatcher::{domain::Role, wire::auth::Claims};
use serde_json::json;

use crate::helpers::*;

async fn connected_comes_first_with_an_opaque_id_and_millisecond_utc_time(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = WsClient::connect(&app.ws_url("/ws"), &[]).await;
    let hello = ws.recv_type("connected").await;
    assert!(
        hello["connectionId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let time = hello["serverTime"].as_str().unwrap();
    assert_eq!(time.len(), "2025-12-23T10:45:00.000Z".len(), "{time}");
    assert!(time.ends_with('Z'));
}

async fn a_query_token_authenticates_on_both_paths(db: Db) {
    let app = spawn_app(db).await;
    for path in ["/ws", "/api/v1/ws"] {
        let mut ws = app
            .ws(&format!("{path}?token={}", app.master_token(3)))
            .await;
        let ok = ws.recv_type("auth_success").await;
        assert_eq!(
            ok,
            json!({"type": "auth_success", "userId": 1003, "role": "master", "masterId": 3})
        );
    }
}

async fn a_bearer_header_authenticates(db: Db) {
    let app = spawn_app(db).await;
    let header = format!("Bearer {}", app.token(Role::Client, 77, None));
    let mut ws = WsClient::connect(&app.ws_url("/api/v1/ws"), &[("Authorization", &header)]).await;
    ws.recv_type("connected").await;
    let ok = ws.recv_type("auth_success").await;
    assert_eq!(
        ok,
        json!({"type": "auth_success", "userId": 77, "role": "client", "masterId": null})
    );
}

async fn an_auth_message_authenticates_and_echoes_the_request_id(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = app.ws("/ws").await;
    ws.send(json!({"type": "auth", "token": app.admin_token(), "requestId": "r-1"}))
        .await;
    let ok = ws.recv_type("auth_success").await;
    assert_eq!(ok["role"], "admin");
    assert_eq!(ok["requestId"], "r-1");
    ws.send(json!({"type": "auth", "token": app.admin_token(), "requestId": 2}))
        .await;
    let again = ws.recv_error("bad_request").await;
    assert_eq!(again["requestId"], 2);
}

async fn a_sub_given_as_a_string_is_the_user_id(db: Db) {
    let app = spawn_app(db).await;
    #[derive(serde::Serialize)]
    struct StringSub {
        sub: &'static str,
        role: &'static str,
        exp: u64,
    }
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &StringSub {
            sub: "42",
            role: "service",
            exp: 4_000_000_000,
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut ws = app.ws(&format!("/ws?token={token}")).await;
    assert_eq!(ws.recv_type("auth_success").await["userId"], 42);
}

async fn assert_refused(app: &TestApp, token: &str) {
    // By query string and by auth message alike.
    let mut ws = app.ws(&format!("/ws?token={token}")).await;
    let err = ws.recv_type("auth_error").await;
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(ws.closed().await.code, 1008);

    let mut ws = app.ws("/ws").await;
    ws.send(json!({"type": "auth", "token": token})).await;
    ws.recv_type("auth_error").await;
    assert_eq!(ws.closed().await.code, 1008);
}

async fn bad_tokens_get_auth_error_and_1008(db: Db) {
    let app = spawn_app(db).await;
    let keys = &app.jwt;
    let expired = keys.encode(&Claims {
        sub: 5,
        role: Role::Master,
        master_id: Some(3),
        exp: 1_000,
    });
    let master_without_id = keys.encode(&Claims {
        sub: 5,
        role: Role::Master,
        master_id: None,
        exp: 4_000_000_000,
    });
    let wrong_secret =
        dispatcher::wire::auth::JwtKeys::new("another secret").mint(5, Role::Admin, None, 3600);
    let unknown_role = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": 5, "role": "janitor", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let no_exp = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": 5, "role": "admin"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    // alg "none": a header and claims with an empty signature.
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let unsigned = |alg: &str| {
        format!(
            "{}.{}",
            b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes()),
            b64(json!({"sub": 5, "role": "admin", "exp": 4_000_000_000u64})
                .to_string()
                .as_bytes())
        )
    };
    // Signed rightly with the right secret, but HS512: the service takes HS256 only.
    let hs512 = {
        use hmac::Mac;
        let message = unsigned("HS512");
        let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        format!("{message}.{}", b64(&mac.finalize().into_bytes()))
    };
    let alg_none = format!("{}.", unsigned("none"));
    for token in [
        expired,
        master_without_id,
        wrong_secret,
        unknown_role,
        no_exp,
        hs512,
        alg_none,
        "garbage".into(),
    ] {
        assert_refused(&app, &token).await;
    }
}

/// Tokens a careless or hostile issuer could sign with the right secret: not valid yet, issued in
/// the future, naming master 0, or valid past the year 9999.
async fn tokens_outside_their_time_or_with_impossible_ids_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let now = chrono::Utc::now().timestamp() as u64;
    let signed = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let hour = now + 3600;
    let not_yet = signed(json!({"sub": 5, "role": "admin", "exp": hour, "nbf": now + 600}));
    let from_the_future = signed(json!({"sub": 5, "role": "admin", "exp": hour, "iat": now + 600}));
    let master_zero = signed(json!({"sub": 5, "role": "master", "master_id": 0, "exp": hour}));
    let master_negative = signed(json!({"sub": 5, "role": "master", "master_id": -3, "exp": hour}));
    let forever = signed(json!({"sub": 5, "role": "admin", "exp": u64::MAX}));
    for token in [
        not_yet,
        from_the_future,
        master_zero,
        master_negative,
        forever,
    ] {
        assert_refused(&app, &token).await;
        let (status, _) = app
            .request(
                reqwest::Method::GET,
                "/api/v1/assignments/1",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    }
    // Within the rules: valid since a minute ago, issued just now by a clock a little ahead.
    let fine =
        signed(json!({"sub": 5, "role": "admin", "exp": hour, "nbf": now - 60, "iat": now + 30}));
    let mut ws = app.ws(&format!("/ws?token={fine}")).await;
    ws.recv_type("auth_success").await;
}

async fn an_expired_token_says_so(db: Db) {
    let app = spawn_app(db).await;
    let expired = app.jwt.encode(&Claims {
        sub: 5,
        role: Role::Admin,
        master_id: None,
        exp: 1_000,
    });
    let mut ws = app.ws(&format!("/ws?token={expired}")).await;
    assert_eq!(ws.recv_type("auth_error").await["message"], "token expired");
}

async fn only_auth_and_ping_are_allowed_before_auth(db: Db) {
    let app = spawn_app(db).await;
    let mut ws = app.ws("/ws").await;
    ws.send(json!({"type": "ping", "requestId": "p"})).await;
    assert_eq!(ws.recv_type("pong").await["requestId"], "p");
    for kind in [
        "subscribe_assignments",
        "unsubscribe_assignments",
        "subscribe_events",
    ] {
        ws.send(json!({"type": kind})).await;
        ws.recv_error("unauthorized").await;
    }
    ws.send(json!({"type": "accept_assignment", "assignmentId": 1}))
        .await;
    ws.recv_error("unauthorized").await;
}

async fn a_connection_that_never_authenticates_is_closed_with_1008(db: Db) {
    let app = spawn_app_with(db, vec![("AUTH_TIMEOUT_SECS", "1".into())]).await;
    let mut ws = app.ws("/ws").await;
    let started = std::time::Instant::now();
    assert_eq!(ws.closed().await.code, 1008);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}

fn token_with(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn first_auth_reply(app: &TestApp, token: &str) -> serde_json::Value {
    let mut ws = app.ws(&format!("/ws?token={token}")).await;
    ws.recv().await
}

/// Tokens from common identity providers carry `aud` and `iss`: accepted unless configured, and
/// then required and checked.
async fn audience_and_issuer_are_checked_only_when_configured(db: Db) {
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({"sub": "5", "role": "admin", "exp": 4_000_000_000u64});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        token_with(c)
    };
    let open = spawn_app(db).await;
    let from_idp = claims(serde_json::json!({"aud": "some-app", "iss": "https://idp"}));
    assert_eq!(
        first_auth_reply(&open, &from_idp).await["type"],
        "auth_success"
    );

    let strict = spawn_app_with(
        db,
        vec![
            ("JWT_AUDIENCE", "dispatcher".into()),
            ("JWT_ISSUER", "https://idp".into()),
        ],
    )
    .await;
    let right = claims(serde_json::json!({"aud": "dispatcher", "iss": "https://idp"}));
    assert_eq!(
        first_auth_reply(&strict, &right).await["type"],
        "auth_success"
    );
    for wrong in [
        claims(serde_json::json!({})),
        claims(serde_json::json!({"aud": "some-app", "iss": "https://idp"})),
        claims(serde_json::json!({"aud": "dispatcher", "iss": "https://other"})),
        claims(serde_json::json!({"aud": "dispatcher"})),
    ] {
        let reply = first_auth_reply(&strict, &wrong).await;
        assert_eq!(reply["type"], "auth_error", "{reply}");
    }
}

on_both_backends!(
    audience_and_issuer_are_checked_only_when_configured,
    connected_comes_first_with_an_opaque_id_and_millisecond_utc_time,
    a_query_token_authenticates_on_both_paths,
    a_bearer_header_authenticates,
    an_auth_message_authenticates_and_echoes_the_request_id,
    a_sub_given_as_a_string_is_the_user_id,
    bad_tokens_get_auth_error_and_1008,
    an_expired_token_says_so,
    tokens_outside_their_time_or_with_impossible_ids_are_refused,
    only_auth_and_ping_are_allowed_before_auth,
    a_connection_that_never_authenticates_is_closed_with_1008,
);
