//! The real `dispatcher` binary as a child process, and a cuttable proxy to play outages.

use std::{sync::Arc, time::Duration};

use reqwest::StatusCode;

use super::SECRET;

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

/// One HTTP request to a server at `address`; answers the status and the JSON body.
pub async fn call(
    http: &reqwest::Client,
    address: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut req = http
        .request(method, format!("{address}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Asserts that of racing decisions exactly one won and the rest were refused with 409.
pub fn assert_decided_once(statuses: &[StatusCode]) {
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
}

/// The real `dispatcher` binary, serving on a free port; killed when dropped.
pub struct ServerProcess {
    pub port: u16,
    pub child: std::process::Child,
}

impl ServerProcess {
    pub async fn start(database_url: &str, dir: &std::path::Path) -> ServerProcess {
        Self::start_with(database_url, dir, &[]).await
    }

    /// Like [`start`], with more environment variables.
    pub async fn start_with(
        database_url: &str,
        dir: &std::path::Path,
        vars: &[(&str, String)],
    ) -> ServerProcess {
        let command = std::process::Command::new(env!("CARGO_BIN_EXE_dispatcher"));
        Self::spawn(command, database_url, dir, vars).await
    }

    /// Like [`start_with`], under an open-files limit of `open_files` (soft and hard).
    pub async fn start_with_open_files(
        open_files: u64,
        database_url: &str,
        dir: &std::path::Path,
        vars: &[(&str, String)],
    ) -> ServerProcess {
        let mut command = std::process::Command::new("prlimit");
        command
            .arg(format!("--nofile={open_files}:{open_files}"))
            .arg(env!("CARGO_BIN_EXE_dispatcher"));
        Self::spawn(command, database_url, dir, vars).await
    }

    async fn spawn(
        mut command: std::process::Command,
        database_url: &str,
        dir: &std::path::Path,
        vars: &[(&str, String)],
    ) -> ServerProcess {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
        let child = command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("JWT_SECRET", SECRET)
            .envs(vars.iter().map(|(k, v)| (k, v)))
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
