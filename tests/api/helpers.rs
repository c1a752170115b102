//! A real server on a free port with its own SQLite file, real WebSocket and HTTP clients.

use std::{net::TcpListener, sync::Arc, thread::JoinHandle, time::Duration};

use dispatcher::{
    auth::{JwtKeys, Role},
    config::Config,
    startup::{Application, StopHandle},
};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

pub const SECRET: &str = "integration-test-secret";
/// How long a test waits for a message it expects.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Environment-style overrides for one test server.
pub type Vars = Vec<(&'static str, String)>;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// PostgreSQL when `TEST_DATABASE_URL` is set; outside CI its absence skips the test, in CI it fails.
    pub fn postgres() -> Option<Db> {
        if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
            return Some(Db::Postgres);
        }
        assert!(
            std::env::var("CI").is_err(),
            "CI is set but TEST_DATABASE_URL is not: the PostgreSQL tests must run"
        );
        eprintln!("skipped: set TEST_DATABASE_URL to run the PostgreSQL tests");
        None
    }
}

/// Runs each listed `async fn(Db)` as a test on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::helpers::Db::postgres() {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

/// A database of a test's own: a SQLite file in a temporary folder, or a fresh PostgreSQL database
/// that is dropped afterwards.
pub struct Storage {
    pub url: String,
    pub dir: TempDir,
    postgres: Option<(String, String)>,
}

impl Storage {
    pub fn new(db: Db) -> Arc<Storage> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, postgres) = match db {
            Db::Sqlite => (
                dir.path()
                    .join("dispatcher.db")
                    .to_string_lossy()
                    .to_string(),
                None,
            ),
            Db::Postgres => {
                let base = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
                let name = format!("dispatcher_test_{:016x}", rand::random::<u64>());
                admin_sql(&base, &format!("CREATE DATABASE {name}"));
                (database_url(&base, &name), Some((base, name)))
            }
        };
        Arc::new(Storage { url, dir, postgres })
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some((base, name)) = &self.postgres {
            admin_sql(
                base,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// `base` with its database name replaced by `name`.
pub fn database_url(base: &str, name: &str) -> String {
    let (server, query) = base
        .split_once('?')
        .map_or((base, None), |(s, q)| (s, Some(q)));
    let scheme_end = server.find("://").map_or(0, |i| i + 3);
    let server = match server[scheme_end..].find('/') {
        Some(slash) => &server[..scheme_end + slash],
        None => server,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

fn admin_sql(base: &str, sql: &str) {
    use diesel::{Connection, RunQueryDsl};
    let mut conn = diesel::PgConnection::establish(base).expect("TEST_DATABASE_URL reachable");
    diesel::sql_query(sql)
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

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

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl WsClient {
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> WsClient {
        let mut request = url.into_client_request().expect("ws url");
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (stream, _) = connect_async(request).await.expect("websocket connects");
        WsClient { stream }
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("send");
    }

    /// The next JSON message; panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        self.recv_within(PATIENCE).await.expect("a message in time")
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(wait, self.stream.next()).await.ok()?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next message, which must have this `type`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["type"], json!(kind), "unexpected message {message}");
        message
    }

    /// The next `error`, which must carry this code.
    pub async fn recv_error(&mut self, code: &str) -> Value {
        let message = self.recv_type("error").await;
        assert_eq!(message["code"], json!(code), "{message}");
        assert!(
            message["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{message}"
        );
        message
    }

    /// Asserts that nothing arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(message) = self.recv_within(wait).await {
            panic!("expected no message, got {message}");
        }
    }

    /// Reads until the server's close frame, skipping other messages.
    pub async fn closed(&mut self) -> Closed {
        self.closed_after(&mut Vec::new()).await
    }

    /// Like [`closed`], keeping the messages that came before the close.
    pub async fn closed_after(&mut self, before: &mut Vec<Value>) -> Closed {
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("the server closes in time");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Closed {
                        code: u16::from(frame.code),
                        reason: frame.reason.to_string(),
                    };
                }
                Some(Ok(Message::Text(text))) => before.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `/health` answers `want`.
pub async fn wait_health(port: u16, want: StatusCode, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await
            && resp.status() == want
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/health never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real `dispatcher` binary, serving on a free port; killed when dropped.
pub struct ServerProcess {
    pub port: u16,
    pub child: std::process::Child,
}

impl ServerProcess {
    pub async fn start(database_url: &str, dir: &std::path::Path) -> ServerProcess {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_dispatcher"))
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("JWT_SECRET", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        wait_health(port, StatusCode::OK, Duration::from_secs(10)).await;
        ServerProcess { port, child }
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of PostgreSQL that can be cut, to play a database outage.
pub struct FlakyProxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl FlakyProxy {
    pub fn start(target: std::net::SocketAddr, up: bool) -> FlakyProxy {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(up));
        let generation = Arc::new(AtomicU64::new(0));
        let (flag, gen_) = (up.clone(), generation.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if !flag.load(Ordering::SeqCst) {
                        continue; // dropped: connection refused in effect
                    }
                    let (flag, gen_) = (flag.clone(), gen_.clone());
                    let born = gen_.load(Ordering::SeqCst);
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                        let cut = async {
                            while flag.load(Ordering::SeqCst) && gen_.load(Ordering::SeqCst) == born
                            {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        };
                        tokio::select! { _ = copy => {}, _ = cut => {} }
                    });
                }
            });
        });
        FlakyProxy {
            port,
            up,
            generation,
        }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn down(&self) {
        use std::sync::atomic::Ordering;
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `url` pointed at this proxy instead of the real server.
    pub fn url_for(&self, url: &str) -> String {
        let scheme_end = url.find("://").unwrap() + 3;
        let rest = &url[scheme_end..];
        let host_start = rest.find('@').map_or(0, |i| i + 1);
        let host_end = rest[host_start..]
            .find('/')
            .map_or(rest.len(), |i| host_start + i);
        format!(
            "{}{}127.0.0.1:{}{}",
            &url[..scheme_end],
            &rest[..host_start],
            self.port,
            &rest[host_end..]
        )
    }
}

/// Host and port of a PostgreSQL URL.
pub fn postgres_addr(url: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let rest = &url[url.find("://").unwrap() + 3..];
    let rest = &rest[rest.find('@').map_or(0, |i| i + 1)..];
    let hostport = &rest[..rest.find('/').unwrap_or(rest.len())];
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    hostport.to_socket_addrs().unwrap().next().unwrap()
}
