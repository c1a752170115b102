//! `/admin` and `/debug` in a real browser: Debian's chromium driven by playwright-core
//! (`tests/browser/dashboard.mjs`). Skipped where either is missing, except in CI.

use std::{path::Path, process::Command};

use reqwest::StatusCode;

use crate::helpers::*;

pub fn browser_ready() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let playwright =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if Path::new(&chromium).exists() && playwright.exists() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the browser test: install chromium and run npm ci in tests/browser"
    );
    eprintln!("skipped: the browser test needs /usr/bin/chromium and npm ci in tests/browser");
    false
}

async fn the_dashboard_shows_a_master_and_an_accepted_offer_live_and_refuses_a_master(db: Db) {
    let app = spawn_app(db).await;
    let (status, _) = app
        .request(reqwest::Method::GET, "/admin", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    if !browser_ready() {
        return;
    }
    // DASHBOARD_SCREENSHOT=docs/dashboard.png keeps the screenshot for the README.
    let dir = tempfile::tempdir().unwrap();
    let screenshot = std::env::var("DASHBOARD_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("dashboard.png"));
    let args = vec![
        app.address.clone(),
        app.admin_token(),
        app.master_token(3),
        app.service_token(),
        screenshot.display().to_string(),
    ];
    let result = run_browser_script("dashboard.mjs", args).await;
    assert_eq!(result["ok"], true);
    for within_3s in ["masterSeenMs", "acceptSeenMs"] {
        assert!(result[within_3s].as_u64().unwrap() <= 3000, "{result}");
    }
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}

/// Runs a script of `tests/browser` with `args`; answers its one JSON line.
async fn run_browser_script(script: &str, args: Vec<String>) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser").join(script);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    let complained = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}\n{complained}");
    serde_json::from_str(said.trim()).expect("one JSON line")
}

async fn the_debug_page_connects_sends_by_clicking_and_explains_a_refused_token(db: Db) {
    let app = spawn_app(db).await;
    let (status, causes) = app
        .request(reqwest::Method::GET, "/debug/close-codes.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(causes.as_array().unwrap().iter().any(|c| c["code"] == 1006));
    if !browser_ready() {
        return;
    }
    let result = run_browser_script(
        "debug.mjs",
        vec![
            app.address.clone(),
            app.master_token(3),
            app.service_token(),
        ],
    )
    .await;
    assert_eq!(result["ok"], true, "{result}");
    assert!(
        result["sent"].as_u64().unwrap() >= 4,
        "auth, subscribe, accept and ping: {result}"
    );
}

on_both_backends!(
    the_dashboard_shows_a_master_and_an_accepted_offer_live_and_refuses_a_master,
    the_debug_page_connects_sends_by_clicking_and_explains_a_refused_token,
);
