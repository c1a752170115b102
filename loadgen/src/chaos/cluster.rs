//! The cluster under fault: `dispatcher` nodes, each reached through its own proxies (clients →
//! node, node → Redis, node → PostgreSQL), and a `redis-server` of the run's own.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::proxy::Proxy;
use crate::target::free_port;

pub const CLUSTER_SECRET: &str = "loadgen-chaos-cluster-secret-0123456789";
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One node: its process (when running) and its three proxies.
pub struct Node {
    pub name: String,
    port: u16,
    /// What clients reach the node through.
    pub front: Proxy,
    pub to_redis: Proxy,
    pub to_postgres: Proxy,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// The clock offset it runs with, such as `+20s`.
    pub skew: Option<String>,
}

impl Node {
    pub async fn new(
        i: usize,
        dir: &Path,
        database_url: &str,
        redis_port: u16,
        jwt_secret: &str,
    ) -> Node {
        let port = free_port();
        let local = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
        let front = Proxy::start(local(port)).await;
        let to_redis = Proxy::start(local(redis_port)).await;
        let postgres = postgres_addr(database_url);
        let to_postgres = Proxy::start(postgres).await;
        let name = format!("node-{i}");
        let env = vec![
            ("BIND_ADDR".into(), format!("127.0.0.1:{port}")),
            (
                "DATABASE_URL".into(),
                through(database_url, to_postgres.port),
            ),
            (
                "REDIS_URL".into(),
                format!("redis://127.0.0.1:{}", to_redis.port),
            ),
            ("NODE_ID".into(), name.clone()),
            ("CLUSTER_SECRET".into(), CLUSTER_SECRET.into()),
            ("JWT_SECRET".into(), jwt_secret.into()),
            ("RUST_LOG".into(), "warn".into()),
            ("RATE_LIMIT_PER_SEC".into(), "1000".into()),
            ("RATE_LIMIT_BURST".into(), "1000".into()),
        ];
        Node {
            log: dir.join(format!("{name}.log")),
            name,
            port,
            front,
            to_redis,
            to_postgres,
            env,
            child: None,
            skew: None,
        }
    }

    /// Starts the process (its clock moved by `skew`, through libfaketime) and waits for it to
    /// answer `/health`, up to 20 s.
    pub async fn start(&mut self, skew: Option<String>) {
        // The `dispatcher` binary beside this one, else `loadgen serve` (the same Application).
        let own = std::env::current_exe().expect("own path");
        let sibling = own.with_file_name("dispatcher");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let mut command = if sibling.exists() {
            Command::new(sibling)
        } else {
            let mut command = Command::new(own);
            command.arg("serve");
            command
        };
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(offset) = &skew {
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        self.child = Some(command.spawn().expect("the node starts"));
        self.skew = skew;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.health().await == Some(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "chaos: {} did not answer /health 200 within 20 s",
            self.name
        );
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    /// The status `/health` answers on the node's own port, if it answers within 2 s.
    pub async fn health(&self) -> Option<u16> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        client
            .get(format!("http://127.0.0.1:{}/health", self.port))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Slows every link of the node.
    pub fn delay(&self, delay: Duration) {
        for proxy in [&self.front, &self.to_redis, &self.to_postgres] {
            proxy.delay(delay);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

/// The URL with its host and port replaced by 127.0.0.1 and `port`.
fn through(url: &str, port: u16) -> String {
    let (scheme_user, rest) = match url.rsplit_once('@') {
        Some((before, rest)) => (format!("{before}@"), rest),
        None => {
            let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
            (format!("{scheme}://"), rest)
        }
    };
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    format!("{scheme_user}127.0.0.1:{port}{path}")
}

/// The host and port of a `postgres://user@host:port/db` URL.
fn postgres_addr(url: &str) -> SocketAddr {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let host_port = after_at.split('/').next().unwrap_or(after_at);
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .unwrap_or_else(|_| panic!("the chaos run needs PostgreSQL at an IP address: {url}"))
}
