//! Cluster mode: a Redis server of the test's own, and `dispatcher` nodes on it.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ServerProcess, Storage, WsClient, free_port};

/// Whether the cluster tests run: when `TEST_REDIS_URL` is set (it tells that Redis and
/// `redis-server` are installed); outside CI its absence skips them, in CI it fails.
pub fn redis_available() -> bool {
    super::set_or_skipped("TEST_REDIS_URL", "cluster")
}

/// A `redis-server` of one test's own on a free port, so the test can kill it and start it again
/// and no other test hears its events.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server outright, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server on its port and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Nodes on one PostgreSQL database and one Redis.
pub struct Cluster {
    pub nodes: Vec<ServerProcess>,
    pub redis: RedisServer,
    pub storage: std::sync::Arc<Storage>,
    pub http: reqwest::Client,
}

impl Cluster {
    /// `count` nodes named a, b, c…, each subscribed to Redis before this returns.
    pub async fn start(storage: std::sync::Arc<Storage>, count: usize) -> Cluster {
        Self::start_via(storage, count, |_, url| url.to_string()).await
    }

    /// Like [`start`], node `i` reaching Redis at `via(i, redis_url)` (through a proxy, say).
    pub async fn start_via(
        storage: std::sync::Arc<Storage>,
        count: usize,
        via: impl Fn(usize, &str) -> String,
    ) -> Cluster {
        let redis = RedisServer::start();
        let mut nodes = Vec::new();
        for i in 0..count {
            let name = ((b'a' + i as u8) as char).to_string();
            let vars = [
                ("REDIS_URL", via(i, &redis.url())),
                ("NODE_ID", name),
                ("CLUSTER_SECRET", super::CLUSTER_SECRET.into()),
                ("RUST_LOG", "info,dispatcher=debug".into()),
            ];
            nodes.push(ServerProcess::start_with(&storage.url, storage.dir.path(), &vars).await);
        }
        let cluster = Cluster {
            nodes,
            redis,
            storage,
            http: reqwest::Client::new(),
        };
        for i in 0..count {
            cluster.wait_redis(i, "ok").await;
        }
        cluster
    }

    /// `/health` of node `i`.
    pub async fn health(&self, i: usize) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}/health", self.nodes[i].address()))
            .send()
            .await
            .expect("health answers");
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until node `i` reports Redis as `want` (`ok` or `down`).
    pub async fn wait_redis(&self, i: usize, want: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, health) = self.health(i).await;
            if health["redis"] == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {i} never reported redis {want}: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn ws_url(&self, i: usize, path_and_query: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.nodes[i].port, path_and_query)
    }

    /// A master on node `i` that has subscribed to offers.
    pub async fn subscribed_master(&self, i: usize, master_id: i64) -> WsClient {
        let token = master_token(master_id);
        let mut ws = WsClient::connect(&self.ws_url(i, &format!("/ws?token={token}")), &[]).await;
        ws.recv_type("connected").await;
        ws.recv_type("auth_success").await;
        ws.send(json!({"type": "subscribe_assignments"})).await;
        ws.recv_type("subscribed_assignments").await;
        ws
    }

    /// A service connection on node `i` subscribed to `assignment_event`s.
    pub async fn event_listener(&self, i: usize) -> WsClient {
        let url = self.ws_url(i, &format!("/ws?token={}", service_token()));
        let mut ws = WsClient::connect(&url, &[]).await;
        ws.recv_type("connected").await;
        ws.recv_type("auth_success").await;
        ws.send(json!({"type": "subscribe_events"})).await;
        ws.recv_type("subscribed_events").await;
        ws
    }

    pub async fn call(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        super::call(
            &self.http,
            &self.nodes[i].address(),
            method,
            path,
            token,
            body,
        )
        .await
    }

    /// A GET on node `i` whose answer is text, not JSON.
    pub async fn get_text(&self, i: usize, path: &str, token: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.nodes[i].address()))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent");
        (response.status(), response.text().await.unwrap_or_default())
    }

    pub async fn put_order(&self, i: usize, order_id: i64, client_user_id: i64) {
        let body = json!({"clientUserId": client_user_id, "address": format!("Lenina {order_id}"),
            "deviceType": "fridge", "problem": "warm"});
        let path = format!("/api/v1/orders/{order_id}");
        let (status, body) = self
            .call(i, reqwest::Method::PUT, &path, &service_token(), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Offers through node `i`; answers the assignment id and the `delivered` count.
    pub async fn offer(&self, i: usize, order_id: i64, master_id: i64, ttl: u64) -> (i64, i64) {
        let body = json!({"orderId": order_id, "masterId": master_id, "ttlSeconds": ttl});
        let (status, body) = self
            .call(
                i,
                reqwest::Method::POST,
                "/api/v1/assignments",
                &service_token(),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["assignment"]["id"].as_i64().unwrap(),
            body["delivered"].as_i64().unwrap(),
        )
    }

    pub async fn stats(&self, i: usize) -> Value {
        let (status, body) = self
            .call(
                i,
                reqwest::Method::GET,
                "/api/admin/websocket/stats",
                &admin_token(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The server log of node `i`, for failure messages.
    pub fn log(&self, i: usize) -> String {
        let path = self
            .storage
            .dir
            .path()
            .join(format!("server-{}.log", self.nodes[i].port));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

fn keys() -> dispatcher::wire::auth::JwtKeys {
    dispatcher::wire::auth::JwtKeys::new(super::SECRET)
}

pub fn service_token() -> String {
    keys().mint(2, dispatcher::domain::Role::Service, None, 3600)
}

pub fn admin_token() -> String {
    keys().mint(1, dispatcher::domain::Role::Admin, None, 3600)
}

pub fn master_token(master_id: i64) -> String {
    keys().mint(
        1000 + master_id,
        dispatcher::domain::Role::Master,
        Some(master_id),
        3600,
    )
}

pub fn client_token(user_id: i64) -> String {
    keys().mint(user_id, dispatcher::domain::Role::Client, None, 3600)
}
