//! The real binary, as an operator runs it.

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_dispatcher");

fn dispatcher(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    cmd
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
    wait_health(port, reqwest::StatusCode::OK, Duration::from_secs(10)).await;
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

/// The SQLite file holds clients' names and phones: only its owner may read it, or its WAL.
#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_created_readable_by_the_owner_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = dispatcher(dir.path())
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", SECRET)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_health(port, reqwest::StatusCode::OK, Duration::from_secs(10)).await;
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join("data").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    let modes = [mode("dispatcher.db"), mode("dispatcher.db-wal")];
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    wait_exit(&mut server, Duration::from_secs(5));
    assert_eq!(modes, [0o600, 0o600]);
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

/// Runs `dispatcher token …` in `dir` with `vars`; answers the exit code and what it printed.
fn mint(dir: &std::path::Path, vars: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = dispatcher(dir)
        .envs(vars.iter().copied())
        .args(["token", "--role", "admin", "--sub", "1"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn the_token_command_mints_sub_as_a_string() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let (code, token, said) = mint(dir.path(), &[("JWT_SECRET", SECRET)]);
    assert_eq!(code, Some(0), "{said}");
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], json!("1"), "{claims}");
}

#[test]
fn a_short_secret_or_postgres_without_one_stops_the_start_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, said) = mint(dir.path(), &[("JWT_SECRET", "too-short")]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("JWT_SECRET") && said.contains("32"), "{said}");

    let postgres = [("DATABASE_URL", "postgres://u@127.0.0.1:1/d")];
    let (code, _, said) = mint(dir.path(), &postgres);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("JWT_SECRET") && said.contains("PostgreSQL"),
        "{said}"
    );
    assert!(!dir.path().join("data").exists(), "no secret was generated");
}

#[test]
fn a_generated_secret_file_that_is_unusable_stops_the_start_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("jwt_secret")).unwrap();
    let (code, _, said) = mint(dir.path(), &[]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("jwt_secret") && said.contains("cannot be read"),
        "{said}"
    );

    std::fs::remove_dir(data.join("jwt_secret")).unwrap();
    std::fs::write(data.join("jwt_secret"), [0xff, 0xfe, 0x00]).unwrap();
    let (code, _, said) = mint(dir.path(), &[]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("not UTF-8"), "{said}");
    assert_eq!(
        std::fs::read(data.join("jwt_secret")).unwrap(),
        [0xff, 0xfe, 0x00],
        "never overwritten"
    );
}

#[test]
fn concurrent_first_starts_agree_on_one_secret_and_an_exposed_file_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let minted: Vec<_> = (0..8)
        .map(|_| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || mint(&dir, &[]))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let file = dir.path().join("data/jwt_secret");
    let secret = std::fs::read_to_string(&file).unwrap();
    let keys = dispatcher::wire::auth::JwtKeys::new(secret.trim());
    for (code, token, said) in &minted {
        assert_eq!(*code, Some(0), "{said}");
        assert!(
            keys.decode(token).is_ok(),
            "every token is signed with the file's secret"
        );
    }

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, _, said) = mint(dir.path(), &[]);
        assert_eq!(code, Some(0), "{said}");
        assert!(
            said.contains("can be read by other users") && said.contains("jwt_secret"),
            "{said}"
        );
    }
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line_with_the_request_and_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log_path = dir.path().join("server.log");
    let mut server = dispatcher(dir.path())
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", SECRET)
        .env("LOG_FORMAT", "json")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_health(port, reqwest::StatusCode::OK, Duration::from_secs(10)).await;
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    let request_id = health.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let token = dispatcher::wire::auth::JwtKeys::new(SECRET).mint(
        1003,
        dispatcher::domain::Role::Master,
        Some(3),
        3600,
    );
    let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{port}/ws?token={token}"), &[]).await;
    ws.recv_type("connected").await;
    ws.recv_type("auth_success").await;
    ws.close_handshake().await;
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    wait_exit(&mut server, Duration::from_secs(5));

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for field in ["time", "level", "target", "message"] {
            assert!(line[field].is_string(), "{field} missing: {line}");
        }
    }
    let access = lines
        .iter()
        .find(|l| l["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("no line with request_id {request_id}: {log}"));
    assert_eq!(
        (access["path"].clone(), access["status"].clone()),
        (json!("/health"), json!(200))
    );
    let closed = lines
        .iter()
        .find(|l| l["message"].as_str().unwrap().contains("closed") && l["user_id"] == 1003)
        .unwrap_or_else(|| panic!("no close line with user_id: {log}"));
    assert_eq!(closed["conn_id"].as_str().unwrap().len(), 16, "{closed}");
    assert!(
        !log.contains(token.rsplit('.').next().unwrap()),
        "the token leaked"
    );
}
