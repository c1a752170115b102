//! `dispatcher doctor` against a real server, and against test proxies that break a deployment
//! the ways seeds 000, 003 and 004 describe: each fault is named at its step, with its fix.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use dispatcher::domain::Role;
use serde_json::Value;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_dispatcher");

/// Runs the doctor; answers its exit status and its JSON report.
async fn doctor(url: &str, token: &str, extra: &[&str]) -> (bool, Value) {
    let mut args = vec![
        "doctor".to_string(),
        url.to_string(),
        "--token".into(),
        token.into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(args)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (output.status.success(), report)
}

/// The step that failed, as `(step, detail, fix)`.
fn failure(report: &Value) -> (String, String, String) {
    let failed = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ok"] == false)
        .unwrap_or_else(|| panic!("no step failed: {report}"));
    let text = |k: &str| failed[k].as_str().unwrap_or_default().to_string();
    (text("step"), text("detail"), text("fix"))
}

/// A proxy on a free port to `target`; `rewrite` may change the request head, and a silence of
/// `idle` cuts the connection without a close frame, as a proxy's read timeout does.
fn proxy(target: u16, rewrite: fn(String) -> String, idle: Option<Duration>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            thread::spawn(move || relay(client, target, rewrite, idle));
        }
    });
    port
}

fn relay(
    mut client: TcpStream,
    target: u16,
    rewrite: fn(String) -> String,
    idle: Option<Duration>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    let head = rewrite(String::from_utf8_lossy(&head).into_owned());
    if server.write_all(head.as_bytes()).is_err() {
        return;
    }
    let last = std::sync::Arc::new(std::sync::Mutex::new(Instant::now()));
    let pipe = |mut from: TcpStream,
                mut to: TcpStream,
                last: std::sync::Arc<std::sync::Mutex<Instant>>| {
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
                *last.lock().unwrap() = Instant::now();
            }
            let _ = to.shutdown(Shutdown::Both);
        })
    };
    pipe(
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        last.clone(),
    );
    pipe(
        server.try_clone().unwrap(),
        client.try_clone().unwrap(),
        last.clone(),
    );
    if let Some(idle) = idle {
        loop {
            thread::sleep(Duration::from_millis(100));
            if last.lock().unwrap().elapsed() >= idle {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

fn unchanged(head: String) -> String {
    head
}

/// What a proxy without `proxy_set_header Upgrade/Connection` sends on.
fn without_upgrade_headers(head: String) -> String {
    head.split("\r\n")
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            !lower.starts_with("upgrade:") && !lower.starts_with("connection:")
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

async fn a_healthy_server_passes_every_step(db: Db) {
    let app = spawn_app(db).await;
    let url = app.ws_url("/api/v1/ws");
    let (ok, report) = doctor(&url, &app.master_token(3), &["--hold", "1"]).await;
    assert!(ok, "{report}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "url",
            "dns",
            "tcp",
            "upgrade",
            "origin",
            "auth",
            "subscribe",
            "round trip",
            "hold",
            "close"
        ]
    );
}

async fn each_broken_deployment_is_named_at_its_step_with_its_fix(db: Db) {
    let app = spawn_app_with(
        db,
        vec![("ALLOWED_ORIGINS", "https://app.example.com".into())],
    )
    .await;
    let token = app.master_token(3);

    // A wrong path.
    let (ok, report) = doctor(&app.ws_url("/socket"), &token, &["--hold", "1"]).await;
    let (step, detail, fix) = failure(&report);
    assert!(!ok);
    assert_eq!(step, "upgrade", "{report}");
    assert!(
        detail.contains("404") && fix.contains("/api/v1/ws"),
        "{report}"
    );

    // A browser origin the server does not allow.
    let url = app.ws_url("/api/v1/ws");
    let evil = ["--origin", "https://evil.example.com", "--hold", "1"];
    let (_, report) = doctor(&url, &token, &evil).await;
    let (step, detail, fix) = failure(&report);
    assert_eq!(step, "origin", "{report}");
    assert!(
        detail.contains("1008") && fix.contains("ALLOWED_ORIGINS"),
        "{report}"
    );

    // An expired token.
    let expired = app.jwt.mint(1003, Role::Master, Some(3), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let good_origin = ["--origin", "https://app.example.com", "--hold", "1"];
    let (_, report) = doctor(&url, &expired, &good_origin).await;
    let (step, detail, fix) = failure(&report);
    assert_eq!(step, "auth", "{report}");
    assert!(
        detail.contains("expired") && fix.contains("fresh"),
        "{report}"
    );

    // A proxy that drops the Upgrade headers.
    let stripping = proxy(app.port, without_upgrade_headers, None);
    let url = format!("ws://127.0.0.1:{stripping}/api/v1/ws");
    let (_, report) = doctor(&url, &token, &good_origin).await;
    let (step, detail, fix) = failure(&report);
    assert_eq!(step, "upgrade", "{report}");
    assert!(
        detail.contains("400") && fix.contains("proxy_set_header Upgrade"),
        "{report}"
    );

    // A proxy that cuts idle connections after 3 s, held for 5.
    let cutting = proxy(app.port, unchanged, Some(Duration::from_secs(3)));
    let url = format!("ws://127.0.0.1:{cutting}/api/v1/ws");
    let held = ["--origin", "https://app.example.com", "--hold", "5"];
    let (_, report) = doctor(&url, &token, &held).await;
    let (step, detail, fix) = failure(&report);
    assert_eq!(step, "hold", "{report}");
    assert!(
        detail.contains("after 3 s") && fix.contains("proxy_read_timeout"),
        "{report}"
    );
}

/// A TLS proxy with a self-signed certificate in front of the server.
fn self_signed_tls_proxy(target: u16) -> u16 {
    use openssl::{
        asn1::Asn1Time,
        hash::MessageDigest,
        pkey::PKey,
        rsa::Rsa,
        ssl::{SslAcceptor, SslMethod},
        x509::{X509, X509NameBuilder},
    };
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(90).unwrap())
        .unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = cert.build();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&key).unwrap();
    acceptor.set_certificate(&cert).unwrap();
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            // The doctor refuses the certificate, so the handshake ends here.
            let _ = acceptor.accept(client);
            let _ = target;
        }
    });
    port
}

#[tokio::test]
async fn a_self_signed_certificate_is_reported_as_untrusted_with_the_fix() {
    let tls = self_signed_tls_proxy(1);
    let url = format!("wss://127.0.0.1:{tls}/api/v1/ws");
    let (ok, report) = doctor(&url, "any-token", &["--hold", "1"]).await;
    assert!(!ok);
    let (step, detail, fix) = failure(&report);
    assert_eq!(step, "tls", "{report}");
    assert!(
        detail.contains("self-signed") || detail.contains("self signed"),
        "{report}"
    );
    assert!(fix.contains("public CA"), "{report}");
}

on_both_backends!(
    a_healthy_server_passes_every_step,
    each_broken_deployment_is_named_at_its_step_with_its_fix,
);
