//! Test harness: a real server on a free port with its own database, real WebSocket and HTTP
//! clients, real `dispatcher` processes, and the outages tests play on PostgreSQL and Redis.

mod app;
mod cluster;
mod process;
mod storage;
mod webhook_receiver;
mod ws;

use std::time::Duration;

pub use app::*;
pub use cluster::*;
pub use process::*;
pub use storage::*;
pub use webhook_receiver::*;
pub use ws::*;

pub const SECRET: &str = "integration-test-secret-0123456789";
/// What the cluster tests' nodes sign their messages to each other with.
pub const CLUSTER_SECRET: &str = "integration-cluster-secret-0123456789";
/// How long a test waits for a message it expects.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Whether `variable` is set, so the `what` tests run; outside CI its absence skips them, in CI
/// it fails them.
pub fn set_or_skipped(variable: &str, what: &str) -> bool {
    if std::env::var(variable).is_ok_and(|v| !v.is_empty()) {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI is set but {variable} is not: the {what} tests must run"
    );
    eprintln!("skipped: set {variable} to run the {what} tests");
    false
}

/// Runs each listed `async fn(Db)` as a test on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::helpers::Db::postgres() {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}
