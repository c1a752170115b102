//! The real binary, as an operator runs it.

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_dispatcher");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dispatcher(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    cmd
}

async fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await
            && resp.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become healthy");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_token_command_and_server_share_a_generated_secret_and_sigterm_closes_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let out = dispatcher(dir.path())
        .args([
            "token",
            "--role",
            "master",
            "--sub",
            "5",
            "--master-id",
            "3",
            "--ttl",
            "600",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let secret_file = dir.path().join("data/jwt_secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secret_file)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    let port = free_port();
    let log_path = dir.path().join("server.log");
    let mut server = dispatcher(dir.path())
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .stderr(std::fs::File::create(&log_path).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(port).await;
    assert!(dir.path().join("data/dispatcher.db").exists());

    let mut ws = WsClient::connect(
        &format!("ws://127.0.0.1:{port}/api/v1/ws?token={token}"),
        &[("User-Agent", "Dart/3.2")],
    )
    .await;
    ws.recv_type("connected").await;
    let ok = ws.recv_type("auth_success").await;
    assert_eq!(
        ok,
        json!({"type": "auth_success", "userId": 5, "role": "master", "masterId": 3})
    );

    let sent_at = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(ws.closed().await.code, 1001);
    let status = wait_exit(&mut server, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(sent_at.elapsed() < Duration::from_secs(5));

    let mut log = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !log.contains(signature) && !log.contains(&token[..20]),
        "the token leaked into the log"
    );
    assert!(
        log.contains("path=/api/v1/ws"),
        "the connection log names the path"
    );
    assert!(
        log.contains(r#""GET /health" 200"#),
        "HTTP requests are access-logged"
    );
    assert!(log.contains("Dart/3.2"), "the user agent is logged");
}

#[tokio::test]
async fn token_requires_a_master_id_for_masters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dispatcher(dir.path())
        .args(["token", "--role", "master", "--sub", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn stopping_closes_every_client_with_1001() {
    let mut app = spawn_app(Db::Sqlite).await;
    let mut master = app.subscribed_master(3).await;
    let mut anonymous = app.ws("/ws").await;
    app.stop();
    assert_eq!(master.closed().await.code, 1001);
    assert_eq!(anonymous.closed().await.code, 1001);
}
