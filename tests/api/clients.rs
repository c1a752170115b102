//! The client libraries' own suites, run against this build's `dispatcher` binary, so that the
//! README's test command covers them.

use std::{path::Path, process::Command};

/// Runs `npm test` in `clients/js` (which builds the library first) with `DISPATCHER_BIN` set.
#[test]
fn the_typescript_client_passes_its_suite_against_the_real_binary() {
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    if !package.join("node_modules/typescript").exists() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the TypeScript client's tests: run clients/setup.sh"
        );
        eprintln!("skipped: run clients/setup.sh to test the TypeScript client");
        return;
    }
    passes(Command::new("npm").arg("test").current_dir(&package));
}

/// Runs `clients/java/build.sh test` (the jar, then the JUnit suite) with `DISPATCHER_BIN` set.
#[test]
fn the_java_client_passes_its_suite_against_the_real_binary() {
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/java");
    let jars = [
        "okhttp",
        "okio",
        "gson",
        "junit-platform-console-standalone",
    ];
    if jars
        .iter()
        .any(|jar| !Path::new(&format!("/usr/share/java/{jar}.jar")).exists())
    {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the Java client's tests: run clients/setup.sh"
        );
        eprintln!("skipped: run clients/setup.sh to test the Java client");
        return;
    }
    passes(Command::new(package.join("build.sh")).arg("test"));
}

/// Runs a suite against this build's binary and fails with its output unless it passes.
fn passes(suite: &mut Command) {
    let output = suite
        .env("DISPATCHER_BIN", env!("CARGO_BIN_EXE_dispatcher"))
        .output()
        .unwrap_or_else(|error| panic!("{suite:?} does not run: {error}"));
    assert!(
        output.status.success(),
        "{suite:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
