//! A small run of every scenario, so the load generator keeps working. Timings are not asserted
//! here (they belong in BENCHMARKS.md); what must hold at any size is.

use serde_json::Value;

#[test]
fn every_scenario_runs_small_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let args = [
        "run",
        "all",
        "--connections",
        "150",
        "--rate",
        "50",
        "--duration",
        "2",
        "--idle-secs",
        "1",
        "--pending",
        "500",
        "--expiry-min",
        "1",
        "--expiry-max",
        "3",
        "--e2e-steps",
        "100",
        "--e2e-step-secs",
        "1",
        "--routing-rates",
        "2000",
    ];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .current_dir(dir.path())
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("scenario"),
        "the table is printed: {stdout}"
    );

    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let value = |scenario: &str, metric: &str| -> f64 {
        rows.iter()
            .find(|r| r["scenario"] == scenario && r["metric"] == metric)
            .unwrap_or_else(|| panic!("no {scenario}/{metric} in {report}"))["value"]
            .as_f64()
            .unwrap()
    };
    for scenario in ["idle", "e2e", "routing", "storm", "expiry", "slow", "push"] {
        assert!(
            rows.iter().any(|r| r["scenario"] == scenario),
            "{scenario} missing"
        );
    }
    assert_eq!(value("idle", "connect failures"), 0.0);
    assert_eq!(value("e2e", "offers lost"), 0.0);
    assert_eq!(value("e2e", "HTTP errors"), 0.0);
    assert_eq!(value("slow", "offers lost"), 0.0);
    assert_eq!(value("storm", "reconnect failures"), 0.0);
    assert_eq!(value("expiry", "missed (still pending)"), 0.0);
    assert_eq!(value("expiry", "expired early"), 0.0);
    assert!(value("routing", "deliveries/s with p99 < 50 ms") > 0.0);
    assert!(value("idle", "server memory per connection") > 0.0);
    assert_eq!(value("push", "connect failures"), 0.0);
    assert_eq!(
        value("push", "1000 users in 1 request(s): rounds complete"),
        20.0
    );
}

#[test]
fn the_soak_runs_small_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "soak", "--soak-masters", "200", "--soak-secs", "14"])
        .args(["--soak-rate", "20", "--soak-ttl", "2"])
        .arg("--json")
        .arg(&json)
        .current_dir(dir.path())
        .output()
        .expect("loadgen runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let value = |metric: &str| -> f64 {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scenario"] == "soak" && r["metric"] == metric)
            .unwrap_or_else(|| panic!("no soak/{metric} in {report}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert!(value("offers created") >= 100.0, "{report}");
    assert!(value("accepted") > 0.0, "{report}");
    assert!(value("expiries pushed") > 0.0, "{report}");
    assert!(value("reconnects") >= 150.0, "{report}");
    assert_eq!(value("offers lost"), 0.0, "{report}");
    assert_eq!(value("still pending after deadline"), 0.0, "{report}");
    assert_eq!(value("errors"), 0.0, "{report}");
    assert_eq!(value("unexpected closes"), 0.0, "{report}");
    assert_eq!(value("connect failures"), 0.0, "{report}");
}

#[test]
fn the_cluster_scenario_runs_small_and_loses_nothing() {
    let (Ok(postgres), Ok(_)) = (
        std::env::var("TEST_DATABASE_URL"),
        std::env::var("TEST_REDIS_URL"),
    ) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the cluster scenario: set TEST_DATABASE_URL and TEST_REDIS_URL"
        );
        eprintln!("skipped: set TEST_DATABASE_URL and TEST_REDIS_URL to run the cluster scenario");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "cluster", "--connections", "90", "--rate", "50"])
        .args([
            "--duration",
            "2",
            "--e2e-steps",
            "100",
            "--e2e-step-secs",
            "1",
        ])
        .arg("--postgres-url")
        .arg(&postgres)
        .arg("--json")
        .arg(&json)
        .current_dir(dir.path())
        .output()
        .expect("loadgen runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let value = |metric: &str| -> f64 {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scenario"] == "cluster" && r["metric"] == metric)
            .unwrap_or_else(|| panic!("no cluster/{metric} in {report}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(value("connect failures"), 0.0);
    assert_eq!(value("same node offers lost"), 0.0);
    assert_eq!(value("cross node offers lost"), 0.0);
    assert_eq!(value("cross node HTTP errors"), 0.0);
}
