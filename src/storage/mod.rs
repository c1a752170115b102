//! Database connection, pool, embedded migrations and the blocking-thread bridge.

mod columns;
pub mod dispatches;
pub mod group_commit;
pub mod models;
pub mod schema;
pub mod webhook_deliveries;

use std::time::Duration;

use diesel::{
    Connection,
    connection::{AnsiTransactionManager, SimpleConnection, TransactionManager},
    pg::PgConnection,
    r2d2::{CustomizeConnection, ManageConnection, Pool, R2D2Connection},
    result::{DatabaseErrorKind, Error as QueryError},
    sqlite::SqliteConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use thiserror::Error;

/// One connection type over both backends; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<DbManager>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// `postgres://` and `postgresql://` URLs select PostgreSQL; anything else is a SQLite path.
    pub fn of(database_url: &str) -> Backend {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

#[derive(Debug, Error)]
pub enum DbError {
    #[error("no database connection: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("query failed: {0}")]
    Query(#[from] QueryError),
    #[error("cannot open the database: {0}")]
    Connect(String),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("the blocking database task was cancelled")]
    Cancelled,
    #[error("the database task panicked (a bug)")]
    Panicked,
    #[error("the group of writes this one was in failed to commit")]
    GroupFailed,
    #[error("waited too long for the database's writer")]
    Waited,
}

impl DbError {
    /// Whether the database is out of reach (as opposed to a bug or bad data).
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_)
            | DbError::Connect(_)
            | DbError::Cancelled
            | DbError::GroupFailed
            | DbError::Waited => true,
            DbError::Query(e) => is_connection_lost(e),
            DbError::Migration(_) | DbError::Panicked => false,
        }
    }
}

fn is_connection_lost(e: &QueryError) -> bool {
    match e {
        QueryError::DatabaseError(kind, info) => {
            matches!(
                kind,
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
            ) || [
                "database is locked",
                "server closed the connection",
                "terminating connection",
                "no connection to the server",
                "could not receive data",
                "could not send data",
            ]
            .iter()
            .any(|m| info.message().contains(m))
        }
        QueryError::BrokenTransactionManager => true,
        _ => false,
    }
}

pub fn is_unique_violation(e: &QueryError) -> bool {
    matches!(
        e,
        QueryError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Opens connections of the backend the URL names (never guessing by trying each).
#[derive(Debug)]
pub struct DbManager {
    url: String,
    backend: Backend,
}

impl ManageConnection for DbManager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        let conn = match self.backend {
            Backend::Postgres => PgConnection::establish(&self.url).map(DbConn::Postgresql),
            Backend::Sqlite => SqliteConnection::establish(&self.url).map(DbConn::Sqlite),
        };
        conn.map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConn, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), diesel::r2d2::Error> {
        if let DbConn::Sqlite(conn) = conn {
            // busy_timeout makes writers queue for the lock instead of failing at once.
            // The page cache is 256 KiB per pooled connection, not SQLite's 2 MiB: what is read
            // often (open offers and their orders) is small, and with the default the memory of
            // a long-running process grows with the file until the pool holds 16 MiB of pages.
            conn.batch_execute(
                "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA cache_size = -256;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Tells the metrics how long each checkout waited for a connection.
struct PoolWaits(std::sync::Arc<crate::metrics::Metrics>);

impl std::fmt::Debug for PoolWaits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolWaits")
    }
}

impl diesel::r2d2::HandleEvent for PoolWaits {
    fn handle_checkout(&self, event: diesel::r2d2::event::CheckoutEvent) {
        self.0.db_pool_wait.observe(event.duration().as_secs_f64());
    }

    fn handle_timeout(&self, event: diesel::r2d2::event::TimeoutEvent) {
        self.0.db_pool_wait.observe(event.timeout().as_secs_f64());
    }
}

/// The pool, built without connecting, so a database that is down does not stop the service.
/// With `metrics`, each checkout's wait is observed.
pub fn pool(
    database_url: &str,
    size: u32,
    timeout: Duration,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
) -> DbPool {
    if Backend::of(database_url) == Backend::Sqlite {
        create_private_file(database_url);
    }
    let builder = Pool::builder();
    let builder = match metrics {
        Some(metrics) => builder.event_handler(Box::new(PoolWaits(metrics))),
        None => builder,
    };
    builder
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(timeout)
        .connection_customizer(Box::new(SqlitePragmas))
        .build_unchecked(DbManager {
            url: database_url.to_string(),
            backend: Backend::of(database_url),
        })
}

/// Creates the SQLite file, before anything opens it, readable by its owner alone: it holds
/// clients' names and phones. SQLite gives its WAL and shared-memory files the same mode.
fn create_private_file(path: &str) {
    if path.starts_with(':') || path.starts_with("file:") {
        return;
    }
    let path = std::path::Path::new(path);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => log::info!("created the database file {} (mode 0600)", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => log::warn!("cannot create the database file {}: {e}", path.display()),
    }
}

/// Prepares the database: for SQLite the file, its folder and WAL mode; then pending migrations.
pub fn migrate(database_url: &str, pool: &DbPool) -> Result<(), DbError> {
    let backend = Backend::of(database_url);
    if backend == Backend::Sqlite {
        if let Some(dir) = std::path::Path::new(database_url).parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        // WAL lets readers run beside the one writer. It is stored in the file, so one connection
        // sets it before the pool opens several at once.
        SqliteConnection::establish(database_url)
            .map_err(|e| DbError::Connect(e.to_string()))?
            .batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;")?;
    }
    let mut conn = pool.get()?;
    match backend {
        Backend::Sqlite => run_migrations(&mut conn, SQLITE_MIGRATIONS),
        Backend::Postgres => {
            // Nodes of a cluster start together: one migrates while the others wait for it.
            const MIGRATION_LOCK: i64 = 0x0064_6973_706d_6967; // "dispmig"
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let migrated = run_migrations(&mut conn, POSTGRES_MIGRATIONS);
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
            migrated
        }
    }
}

fn run_migrations(conn: &mut DbConn, migrations: EmbeddedMigrations) -> Result<(), DbError> {
    conn.run_pending_migrations(migrations)
        .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(())
}

/// Runs `f` with a pooled connection on a blocking thread, so no actor or worker waits on the database.
pub async fn run<T, E, F>(pool: &DbPool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        IN_DATABASE_TASK.set(true);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut conn)));
        IN_DATABASE_TASK.set(false);
        outcome.map_err(|_| E::from(DbError::Panicked))?
    })
    .await
    .map_err(|_| DbError::Cancelled)?
}

thread_local! {
    static IN_DATABASE_TASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is running database work, whose panics are caught and answered with 500.
/// A panic anywhere else leaves the process half-dead, so the binary exits on it.
pub fn in_database_task() -> bool {
    IN_DATABASE_TASK.get()
}

/// The time that decides deadlines, in ms. On PostgreSQL it is the database's clock, so that
/// nodes whose clocks disagree still agree on when an offer was made and when it ended; SQLite
/// is one process, whose clock is the one clock. Each reading also sets what
/// [`deciding_now`](crate::domain::time::deciding_now) answers between readings.
pub fn clock(conn: &mut DbConn) -> Result<i64, QueryError> {
    let now = read_clock(conn)?;
    crate::domain::time::learn_deciding_clock(now);
    Ok(now)
}

fn read_clock(conn: &mut DbConn) -> Result<i64, QueryError> {
    use diesel::{RunQueryDsl, sql_types::BigInt};
    #[derive(diesel::QueryableByName)]
    struct Now {
        #[diesel(sql_type = BigInt)]
        ms: i64,
    }
    match conn {
        DbConn::Postgresql(pg) => Ok(diesel::sql_query(
            "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS ms",
        )
        .get_result::<Now>(pg)?
        .ms),
        DbConn::Sqlite(_) => Ok(crate::domain::time::now_ms()),
    }
}

/// Locks an order's row and then its pending offers' rows, lowest id first. Every transaction that
/// touches an order and its offers takes its locks in this one order, so concurrent accepts,
/// offers, closes and expiries wait for each other instead of deadlocking. On SQLite
/// `BEGIN IMMEDIATE` already serializes writers, so this is PostgreSQL's alone.
pub fn lock_order(conn: &mut DbConn, order_id: i64) -> Result<(), QueryError> {
    use diesel::{RunQueryDsl, sql_types::BigInt};
    if let DbConn::Postgresql(pg) = conn {
        diesel::sql_query("SELECT id FROM orders WHERE id = $1 FOR UPDATE")
            .bind::<BigInt, _>(order_id)
            .execute(pg)?;
        diesel::sql_query(
            "SELECT id FROM assignments WHERE order_id = $1 AND status = 'pending' \
             ORDER BY id FOR UPDATE",
        )
        .bind::<BigInt, _>(order_id)
        .execute(pg)?;
    }
    Ok(())
}

/// Locks those of these offers that are pending, lowest id first, as [`lock_order`] takes them,
/// so that a write to many offers at once waits for (and never deadlocks with) an accept, or the
/// same write on another node. PostgreSQL's alone, as above.
pub fn lock_pending(conn: &mut DbConn, ids: &[i64]) -> Result<(), QueryError> {
    use diesel::{
        RunQueryDsl,
        sql_types::{Array, BigInt},
    };
    if let DbConn::Postgresql(pg) = conn {
        diesel::sql_query(
            "SELECT id FROM assignments WHERE id = ANY($1) AND status = 'pending' \
             ORDER BY id FOR UPDATE",
        )
        .bind::<Array<BigInt>, _>(ids)
        .execute(pg)?;
    }
    Ok(())
}

/// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so a
/// transaction that reads before writing queues for the lock instead of failing on upgrade;
/// PostgreSQL's row locks need no such help. This is the one place the dialects differ.
/// Nested in another transaction it is part of that one.
pub fn write_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<QueryError>,
{
    // Inside another write transaction this one's work simply joins it: an error rolls the
    // whole of it back. (Work that must undo part of itself and go on takes a savepoint.)
    let depth = match conn {
        DbConn::Sqlite(sqlite) => {
            AnsiTransactionManager::transaction_manager_status_mut(sqlite).transaction_depth()?
        }
        DbConn::Postgresql(pg) => {
            AnsiTransactionManager::transaction_manager_status_mut(pg).transaction_depth()?
        }
    };
    if depth.is_some() {
        return f(conn);
    }
    let DbConn::Sqlite(sqlite) = conn else {
        return conn.transaction(f);
    };
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => {
            <DbConn as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            <DbConn as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_database_work_is_a_bug_not_an_outage() {
        let pool = pool(":memory:", 1, Duration::from_secs(1), None);
        let outcome = actix_web::rt::System::new()
            .block_on(async { run::<(), DbError, _>(&pool, |_| panic!("a bug in a query")).await });
        let error = outcome.expect_err("the panic is caught");
        assert!(matches!(error, DbError::Panicked), "{error}");
        assert!(!error.is_unavailable());
        assert!(!in_database_task(), "the flag is cleared on this thread");
    }
}
