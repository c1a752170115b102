//! An in-process server on a free port, and the requests tests make of it.

use std::{net::TcpListener, sync::Arc, thread::JoinHandle, time::Duration};

use dispatcher::{
    config::Config,
    domain::Role,
    startup::{Application, StopHandle},
    wire::auth::JwtKeys,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Db, SECRET, Storage, Vars, WsClient};

pub struct TestApp {
    pub port: u16,
    pub address: String,
    pub jwt: JwtKeys,
    pub http: reqwest::Client,
    pub storage: Arc<Storage>,
    vars: Vars,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, vec![]).await
}

pub async fn spawn_app_with(db: Db, vars: Vars) -> TestApp {
    start(Storage::new(db), vars)
}

/// Another server on the same database.
pub fn spawn_app_on(storage: Arc<Storage>, vars: Vars) -> TestApp {
    start(storage, vars)
}

fn start(storage: Arc<Storage>, vars: Vars) -> TestApp {
    let db_url = storage.url.clone();
    let lookup_vars = vars.clone();
    let config = Config::from_lookup(move |name| {
        if let Some((_, v)) = lookup_vars.iter().find(|(k, _)| *k == name) {
            return Some(v.clone());
        }
        match name {
            "DATABASE_URL" => Some(db_url.clone()),
            "JWT_SECRET" => Some(SECRET.into()),
            _ => None,
        }
    })
    .expect("test config");
    let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build_with_listener(config, listener)
                .await
                .expect("app starts");
            tx.send((app.port(), app.stop_handle())).unwrap();
            app.run_until_stopped().await.expect("app runs");
        })
    });
    let (port, stop) = rx.recv().expect("app reports its port");
    TestApp {
        port,
        address: format!("http://127.0.0.1:{port}"),
        jwt: JwtKeys::new(SECRET),
        http: reqwest::Client::new(),
        storage,
        vars,
        stop,
        thread: Some(thread),
    }
}

impl TestApp {
    /// Stops the server as SIGTERM would and waits for it to finish.
    pub fn stop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread ends cleanly");
        }
    }

    /// Stops this server, waits `down` and starts a new one on the same database file.
    pub fn restart_after(mut self, down: Duration) -> TestApp {
        self.stop();
        std::thread::sleep(down);
        start(self.storage.clone(), self.vars.clone())
    }

    pub fn token(&self, role: Role, user_id: i64, master_id: Option<i64>) -> String {
        self.jwt.mint(user_id, role, master_id, 3600)
    }

    pub fn admin_token(&self) -> String {
        self.token(Role::Admin, 1, None)
    }

    pub fn service_token(&self) -> String {
        self.token(Role::Service, 2, None)
    }

    pub fn master_token(&self, master_id: i64) -> String {
        self.token(Role::Master, 1000 + master_id, Some(master_id))
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path_and_query)
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.address, path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn put_order(&self, id: i64, client_user_id: i64) -> Value {
        let body = json!({
            "clientUserId": client_user_id,
            "address": format!("Lenina {id}"),
            "deviceType": "washing machine",
            "problem": "does not drain",
            "clientName": "Ivan Petrov",
            "clientPhone": "+79001234567",
        });
        let (status, order) = self
            .request(
                reqwest::Method::PUT,
                &format!("/api/v1/orders/{id}"),
                Some(&self.service_token()),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{order}");
        order
    }

    /// Offers an order to a master; answers the status and body.
    pub async fn offer(
        &self,
        order_id: i64,
        master_id: i64,
        ttl_seconds: Option<u64>,
    ) -> (StatusCode, Value) {
        let mut body = json!({ "orderId": order_id, "masterId": master_id });
        if let Some(ttl) = ttl_seconds {
            body["ttlSeconds"] = json!(ttl);
        }
        self.request(
            reqwest::Method::POST,
            "/api/v1/assignments",
            Some(&self.service_token()),
            Some(body),
        )
        .await
    }

    /// Offers and returns the new assignment's id, asserting 201.
    pub async fn offer_ok(
        &self,
        order_id: i64,
        master_id: i64,
        ttl_seconds: Option<u64>,
    ) -> (i64, Value) {
        let (status, body) = self.offer(order_id, master_id, ttl_seconds).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["assignment"]["id"].as_i64().unwrap(), body)
    }

    pub async fn get_assignment(&self, id: i64) -> Value {
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/assignments/{id}"),
                Some(&self.admin_token()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn stats(&self) -> Value {
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                "/api/admin/websocket/stats",
                Some(&self.admin_token()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Opens a WebSocket and reads the `connected` greeting.
    pub async fn ws(&self, path_and_query: &str) -> WsClient {
        let mut client = WsClient::connect(&self.ws_url(path_and_query), &[]).await;
        client.recv_type("connected").await;
        client
    }

    /// A connection with `token` that has subscribed to `assignment_event`s.
    pub async fn event_listener(&self, token: &str) -> WsClient {
        let mut client = self.ws(&format!("/ws?token={token}")).await;
        client.recv_type("auth_success").await;
        client.send(json!({"type": "subscribe_events"})).await;
        client.recv_type("subscribed_events").await;
        client
    }

    /// A master connection authenticated by query token.
    pub async fn master_ws(&self, master_id: i64) -> WsClient {
        let mut client = self
            .ws(&format!("/ws?token={}", self.master_token(master_id)))
            .await;
        let ok = client.recv_type("auth_success").await;
        assert_eq!(ok["masterId"], json!(master_id));
        client
    }

    /// A master connection that has subscribed to offers (and received any open ones).
    pub async fn subscribed_master(&self, master_id: i64) -> WsClient {
        let mut client = self.master_ws(master_id).await;
        client.send(json!({"type": "subscribe_assignments"})).await;
        client.recv_type("subscribed_assignments").await;
        client
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}
