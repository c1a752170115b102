//! A small run of every scenario, so the load generator keeps working. Timings are not asserted
//! here (they belong in BENCHMARKS.md); what must hold at any size is.

use serde_json::Value;

#[test]
fn every_scenario_runs_small_and_loses_nothing() {
    let report = run_loadgen(&[
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
    ]);
    let rows = report["rows"].as_array().unwrap();
    let value = |scenario: &str, name: &str| metric(&report, scenario, name);
    for scenario in [
        "idle", "e2e", "routing", "storm", "expiry", "slow", "push", "cascade",
    ] {
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
    assert_eq!(value("cascade", "next offers after a reject"), 200.0);
    assert_eq!(value("cascade", "next offers after an expiry"), 100.0);
    assert_eq!(
        value("push", "1000 users in 1 request(s): rounds complete"),
        20.0
    );
}

#[test]
fn the_soak_runs_small_and_loses_nothing() {
    let report = run_loadgen(&[
        "run",
        "soak",
        "--soak-masters",
        "200",
        "--soak-secs",
        "14",
        "--soak-rate",
        "20",
        "--soak-ttl",
        "2",
    ]);
    let value = |name: &str| metric(&report, "soak", name);
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
    let Some(postgres) = postgres_with_redis("cluster scenario") else {
        return;
    };
    let report = run_loadgen(&[
        "run",
        "cluster",
        "--connections",
        "90",
        "--rate",
        "50",
        "--duration",
        "2",
        "--e2e-steps",
        "100",
        "--e2e-step-secs",
        "1",
        "--postgres-url",
        &postgres,
    ]);
    let value = |name: &str| metric(&report, "cluster", name);
    assert_eq!(value("connect failures"), 0.0);
    assert_eq!(value("same node offers lost"), 0.0);
    assert_eq!(value("cross node offers lost"), 0.0);
    assert_eq!(value("cross node HTTP errors"), 0.0);
}

/// A minute of faults of every kind against three nodes, and a verdict of no violations.
#[test]
fn the_chaos_run_injects_every_fault_and_finds_no_violation() {
    let Some(postgres) = postgres_with_redis("chaos run") else {
        return;
    };
    let report = run_loadgen(&[
        "run",
        "chaos",
        "--chaos-secs",
        "60",
        "--postgres-url",
        &postgres,
    ]);
    let rows = report["rows"].as_array().unwrap();
    let faults: Vec<(&str, f64)> = rows
        .iter()
        .filter(|r| r["scenario"] == "chaos")
        .filter_map(|r| {
            let kind = r["metric"].as_str()?.strip_prefix("fault: ")?;
            Some((kind, r["value"].as_f64()?))
        })
        .collect();
    assert_eq!(faults.len(), 7, "{report}");
    for (kind, count) in faults {
        assert!(count >= 1.0, "no fault of kind {kind}: {report}");
    }
    assert!(metric(&report, "chaos", "offers") >= 1_000.0, "{report}");
    assert_eq!(metric(&report, "chaos", "violations"), 0.0, "{report}");
}

/// The PostgreSQL URL when both TEST_DATABASE_URL and TEST_REDIS_URL are set; outside CI their
/// absence skips `what`, in CI it fails it.
fn postgres_with_redis(what: &str) -> Option<String> {
    let (Ok(postgres), Ok(_)) = (
        std::env::var("TEST_DATABASE_URL"),
        std::env::var("TEST_REDIS_URL"),
    ) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the {what}: set TEST_DATABASE_URL and TEST_REDIS_URL"
        );
        eprintln!("skipped: set TEST_DATABASE_URL and TEST_REDIS_URL to run the {what}");
        return None;
    };
    Some(postgres)
}

/// Runs loadgen with `args` in a folder of its own; answers its JSON report.
fn run_loadgen(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
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
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

/// One figure of a report.
fn metric(report: &Value, scenario: &str, name: &str) -> f64 {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scenario"] == scenario && r["metric"] == name)
        .unwrap_or_else(|| panic!("no {scenario}/{name} in {report}"))["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn the_end_to_end_scenario_runs_through_the_batch_endpoint_and_loses_nothing() {
    let report = run_loadgen(&[
        "run",
        "e2e",
        "--connections",
        "100",
        "--rate",
        "200",
        "--duration",
        "2",
        "--batch",
        "20",
        "--e2e-steps",
        "400",
        "--e2e-step-secs",
        "1",
    ]);
    let value = |name: &str| metric(&report, "e2e batch 20", name);
    assert_eq!(value("offers lost"), 0.0);
    assert_eq!(value("HTTP errors"), 0.0);
    assert!(value("p99 at 200/s") > 0.0, "{report}");
}
