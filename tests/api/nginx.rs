//! docs/deploy/nginx.conf proven by `dispatcher doctor` through a real nginx (Debian's package):
//! its proxy settings pass every step, a hold included; with `proxy_read_timeout 10s` instead,
//! the doctor fails at the hold with the fix. Skipped where nginx is missing, except in CI.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::helpers::*;

const NGINX: &str = "/usr/sbin/nginx";
const BIN: &str = env!("CARGO_BIN_EXE_dispatcher");

fn nginx_ready() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the nginx test: install nginx"
    );
    eprintln!("skipped: the nginx test needs Debian's nginx");
    false
}

/// The block of `docs/deploy/nginx.conf` that starts at `opening`, through its closing brace.
fn block(conf: &str, opening: &str) -> String {
    let start = conf.find(opening).unwrap_or_else(|| panic!("no {opening}"));
    let mut depth = 0;
    for (i, c) in conf[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return conf[start..=start + i].to_string();
                }
            }
            _ => {}
        }
    }
    panic!("{opening} is not closed");
}

/// The statement of `docs/deploy/nginx.conf` that starts at `opening`, through its semicolon.
fn statement(conf: &str, opening: &str) -> String {
    let start = conf.find(opening).unwrap_or_else(|| panic!("no {opening}"));
    let end = conf[start..].find(';').expect("a closing semicolon");
    conf[start..=start + end].to_string()
}

struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, so the master stops its workers too (a KILL would orphan them).
        // SAFETY: kill only sends a signal to this child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// nginx with the deployment's `map` and `location /` blocks (TLS aside), proxying to `target`.
async fn nginx(target: u16, change: impl Fn(String) -> String) -> Nginx {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deploy = std::fs::read_to_string(root.join("docs/deploy/nginx.conf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream dispatcher {{ server 127.0.0.1:{target}; keepalive 32; }}\n{}\n{}\n\
         server {{\n  listen 127.0.0.1:{port};\n  client_max_body_size 128k;\n{}\n}}\n}}\n",
        statement(&deploy, "log_format dispatcher"),
        block(&deploy, "map $http_upgrade"),
        change(block(&deploy, "location / {")).replace("/var/log/nginx/", &format!("{d}/")),
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let child = Command::new(NGINX)
        .args([
            "-p",
            &d.to_string(),
            "-c",
            "nginx.conf",
            "-g",
            "daemon off;",
        ])
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    wait_health(port, reqwest::StatusCode::OK, Duration::from_secs(10)).await;
    Nginx { child, port, dir }
}

#[tokio::test]
async fn the_deployment_nginx_conf_keeps_query_tokens_out_of_its_access_log() {
    if !nginx_ready() {
        return;
    }
    let app = spawn_app(Db::Sqlite).await;
    let proxy = nginx(app.port, |location| location).await;
    let token = app.master_token(3);
    let mut ws = WsClient::connect(
        &format!("ws://127.0.0.1:{}/api/v1/ws?token={token}", proxy.port),
        &[],
    )
    .await;
    ws.recv_type("connected").await;
    ws.recv_type("auth_success").await;
    drop(ws);
    reqwest::get(format!(
        "http://127.0.0.1:{}/health?token={token}",
        proxy.port
    ))
    .await
    .unwrap();
    let log_path = proxy.dir.path().join("dispatcher.access.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.lines().count() >= 2 || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        log.contains("GET /api/v1/ws") && log.contains("GET /health"),
        "{log}"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !log.contains(signature) && !log.contains("token="),
        "the token reached the proxy's log: {log}"
    );
}

async fn doctor(url: String, token: String, hold: &str) -> (bool, Value) {
    let hold = hold.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["doctor", &url, "--token", &token, "--hold", &hold, "--json"])
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    (
        output.status.success(),
        serde_json::from_slice(&output.stdout).expect("a JSON report"),
    )
}

/// How long CI holds the connection idle; `NGINX_HOLD_SECS=75` runs the full hold.
fn hold_secs() -> String {
    std::env::var("NGINX_HOLD_SECS").unwrap_or_else(|_| "15".into())
}

#[tokio::test]
async fn the_deployment_nginx_conf_passes_the_doctor_and_a_short_read_timeout_fails_it() {
    if !nginx_ready() {
        return;
    }
    let app = spawn_app(Db::Sqlite).await;
    let proxy = nginx(app.port, |location| location).await;
    let url = format!("ws://127.0.0.1:{}/api/v1/ws", proxy.port);
    let (ok, report) = doctor(url, app.master_token(3), &hold_secs()).await;
    assert!(ok, "through the deployment's nginx: {report}");
    let upgrade = &report["steps"][3];
    assert!(
        upgrade["detail"].as_str().unwrap().contains("nginx"),
        "{report}"
    );

    // The default that cuts WebSockets, shortened to fit a test.
    let short = nginx(app.port, |location| {
        location.replace("proxy_read_timeout 300s;", "proxy_read_timeout 10s;")
    })
    .await;
    let url = format!("ws://127.0.0.1:{}/api/v1/ws", short.port);
    let (ok, report) = doctor(url, app.master_token(3), "15").await;
    assert!(!ok);
    let hold = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "hold")
        .unwrap_or_else(|| panic!("no hold step: {report}"));
    assert_eq!(hold["ok"], false, "{report}");
    assert!(
        // 10 s, or a little more on a loaded machine.
        ["after 10 s", "after 11 s", "after 12 s"]
            .iter()
            .any(|cut| hold["detail"].as_str().unwrap().contains(cut))
            && hold["fix"]
                .as_str()
                .unwrap()
                .contains("proxy_read_timeout 300s"),
        "{report}"
    );
}
