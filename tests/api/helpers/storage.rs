//! A database of each test's own, on SQLite or PostgreSQL.

use std::sync::Arc;

use tempfile::TempDir;

/// Environment-style overrides for one test server.
pub type Vars = Vec<(&'static str, String)>;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// PostgreSQL when `TEST_DATABASE_URL` is set; outside CI its absence skips the test, in CI it fails.
    pub fn postgres() -> Option<Db> {
        super::set_or_skipped("TEST_DATABASE_URL", "PostgreSQL").then_some(Db::Postgres)
    }
}

/// A database of a test's own: a SQLite file in a temporary folder, or a fresh PostgreSQL database
/// that is dropped afterwards.
pub struct Storage {
    pub url: String,
    pub dir: TempDir,
    postgres: Option<(String, String)>,
}

impl Storage {
    pub fn new(db: Db) -> Arc<Storage> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, postgres) = match db {
            Db::Sqlite => (
                dir.path()
                    .join("dispatcher.db")
                    .to_string_lossy()
                    .to_string(),
                None,
            ),
            Db::Postgres => {
                let base = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
                let name = format!("dispatcher_test_{:016x}", rand::random::<u64>());
                admin_sql(&base, &format!("CREATE DATABASE {name}"));
                (database_url(&base, &name), Some((base, name)))
            }
        };
        Arc::new(Storage { url, dir, postgres })
    }
}

impl Storage {
    /// Runs SQL on this database from outside the server, as another process would.
    pub fn execute(&self, sql: &str) {
        use diesel::{Connection, RunQueryDsl};
        let done = if self.postgres.is_some() {
            let mut conn = diesel::PgConnection::establish(&self.url).expect("the test database");
            diesel::sql_query(sql).execute(&mut conn)
        } else {
            let mut conn =
                diesel::SqliteConnection::establish(&self.url).expect("the test database");
            diesel::sql_query(sql).execute(&mut conn)
        };
        done.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

type Execute = dyn FnMut(&str) -> diesel::QueryResult<usize>;

/// A lock on a whole table, held by another session until dropped: a database whose queries on
/// that table hang.
pub struct TableLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Storage {
    /// Locks `table` against every read and write (PostgreSQL), until the answer is dropped.
    pub fn lock_table(&self, table: &str) -> TableLock {
        assert!(self.postgres.is_some(), "table locks are PostgreSQL's");
        self.hold(vec![
            "BEGIN".into(),
            format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"),
        ])
    }

    /// Holds every write to offers back (reads go on), until the answer is dropped: a database
    /// whose writer is stuck.
    pub fn lock_writes(&self) -> TableLock {
        if self.postgres.is_some() {
            self.hold(vec![
                "BEGIN".into(),
                "LOCK TABLE assignments IN EXCLUSIVE MODE".into(),
            ])
        } else {
            self.hold(vec!["BEGIN EXCLUSIVE".into()])
        }
    }

    /// Runs `statements` in another session and keeps it open until the answer is dropped.
    fn hold(&self, statements: Vec<String>) -> TableLock {
        use diesel::{Connection, RunQueryDsl};
        let url = self.url.clone();
        let postgres = self.postgres.is_some();
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut execute: Box<Execute> = if postgres {
                let mut conn = diesel::PgConnection::establish(&url).expect("the test database");
                Box::new(move |sql| diesel::sql_query(sql).execute(&mut conn))
            } else {
                let mut conn =
                    diesel::SqliteConnection::establish(&url).expect("the test database");
                Box::new(move |sql| diesel::sql_query(sql).execute(&mut conn))
            };
            let mut run = |sql: &str| {
                execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            };
            for sql in &statements {
                run(sql);
            }
            locked_tx.send(()).unwrap();
            let _ = released.recv();
            run("ROLLBACK");
        });
        locked.recv().expect("the lock is held");
        TableLock {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some((base, name)) = &self.postgres {
            admin_sql(
                base,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// `base` with its database name replaced by `name`.
pub fn database_url(base: &str, name: &str) -> String {
    let (server, query) = base
        .split_once('?')
        .map_or((base, None), |(s, q)| (s, Some(q)));
    let scheme_end = server.find("://").map_or(0, |i| i + 3);
    let server = match server[scheme_end..].find('/') {
        Some(slash) => &server[..scheme_end + slash],
        None => server,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

fn admin_sql(base: &str, sql: &str) {
    use diesel::{Connection, RunQueryDsl};
    let mut conn = diesel::PgConnection::establish(base).expect("TEST_DATABASE_URL reachable");
    diesel::sql_query(sql)
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
