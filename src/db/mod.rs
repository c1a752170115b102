//! Database connection, pool, embedded migrations and the blocking-thread bridge.

pub mod models;
pub mod schema;

use std::time::Duration;

use diesel::{
    connection::SimpleConnection,
    r2d2::{ConnectionManager, CustomizeConnection, Pool},
    result::{DatabaseErrorKind, Error as QueryError},
    sqlite::SqliteConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use thiserror::Error;

pub type DbConn = SqliteConnection;
pub type DbPool = Pool<ConnectionManager<DbConn>>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

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
}

impl DbError {
    /// Whether the database is out of reach (as opposed to a bug or bad data).
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Connect(_) | DbError::Cancelled => true,
            DbError::Query(QueryError::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                ) || info.message().contains("database is locked")
            }
            DbError::Query(QueryError::BrokenTransactionManager) => true,
            _ => false,
        }
    }
}

pub fn is_unique_violation(e: &QueryError) -> bool {
    matches!(
        e,
        QueryError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // busy_timeout makes writers queue for the lock instead of failing at once.
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens the pool (creating the SQLite file and its folder) and runs pending migrations.
pub fn connect(database_url: &str, size: u32, timeout: Duration) -> Result<DbPool, DbError> {
    if let Some(dir) = std::path::Path::new(database_url).parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    // WAL lets readers run beside the one writer. It is stored in the file, so one connection sets it
    // before the pool opens several at once.
    diesel::Connection::establish(database_url)
        .and_then(|mut conn: DbConn| {
            conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;")
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
        })
        .map_err(|e| DbError::Connect(e.to_string()))?;
    let pool = Pool::builder()
        .max_size(size)
        .connection_timeout(timeout)
        .connection_customizer(Box::new(SqlitePragmas))
        .build(ConnectionManager::<DbConn>::new(database_url))?;
    pool.get()?
        .run_pending_migrations(SQLITE_MIGRATIONS)
        .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(pool)
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
        f(&mut conn)
    })
    .await
    .map_err(|_| DbError::Cancelled)?
}

/// A write transaction that takes the write lock up front, so concurrent deciders queue rather than deadlock.
pub fn write_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<QueryError>,
{
    conn.immediate_transaction(f)
}
