//! The servers under test: the dispatcher or the floor, in a child process of this binary
//! (so their memory and CPU are their own), or a dispatcher already running elsewhere.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A server the load is aimed at.
pub struct Target {
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    child: Option<Child>,
}

impl Target {
    /// Starts the `dispatcher` binary built beside this one (else `loadgen serve`, the same
    /// `Application`) on a fresh SQLite file.
    pub async fn dispatcher(dir: &Path, secret: &str, extra_env: &[(&str, String)]) -> Target {
        let port = free_port();
        let own = std::env::current_exe().expect("own path");
        let sibling = own.with_file_name("dispatcher");
        let mut cmd = if sibling.exists() {
            Command::new(sibling)
        } else {
            let mut cmd = Command::new(own);
            cmd.arg("serve");
            cmd
        };
        cmd.current_dir(dir)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", dir.join("dispatcher.db"))
            .env("JWT_SECRET", secret)
            .env("RUST_LOG", "warn")
            .env("RATE_LIMIT_PER_SEC", "1000")
            .env("RATE_LIMIT_BURST", "1000");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, port, Some("/health")).await
    }

    /// Starts `loadgen floor`: a minimal server that only holds connections and forwards by id.
    pub async fn floor() -> Target {
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.args(["floor", "--port", &port.to_string()]);
        Self::spawn(cmd, port, None).await
    }

    pub fn external(addr: SocketAddr, pid: Option<u32>) -> Target {
        Target {
            addr,
            pid,
            child: None,
        }
    }

    /// Starts `cmd` and waits until `health` answers 200 (or, without one, until the port accepts).
    async fn spawn(mut cmd: Command, port: u16, health: Option<&str>) -> Target {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("server process starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = match health {
                Some(path) => reqwest::get(format!("http://{addr}{path}"))
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                None => tokio::net::TcpStream::connect(addr).await.is_ok(),
            };
            if ready {
                return Target {
                    addr,
                    pid: Some(child.id()),
                    child: Some(child),
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server on port {port} did not come up");
    }

    /// Resident memory in bytes, when the process is known.
    pub fn rss(&self) -> Option<u64> {
        rss_of(self.pid?)
    }

    /// CPU time used so far (user + system), when the process is known.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(6);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Resident memory of process `pid` in bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for RSS to settle (allocators return memory lazily) and returns it.
pub async fn settled_rss(target: &Target) -> Option<u64> {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    target.rss()
}
