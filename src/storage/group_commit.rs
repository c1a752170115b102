//! Group commit: a writer takes the write commands waiting for it and commits them in one
//! transaction, so that many decisions share one fsync. Each command after the first runs in its
//! own savepoint, so one command's refusal is its own answer and the rest commit. Every caller
//! hears its answer after the COMMIT, never before. The queue is bounded: a full one refuses at
//! once instead of waiting.
//!
//! A group takes commands one at a time, while it has run for less than [`GROUP_TIME`] and holds
//! fewer than [`MAX_GROUP`].
//!
//! This is SQLite's writer: it takes one write at a time and pays an fsync for each commit.
//! PostgreSQL already shares its WAL flushes among concurrent commits; there a group's
//! statements would run one after another over the link, and groups lock many orders' rows in no
//! common order across nodes, deadlocking each other (BENCHMARKS.md). So there a write keeps a
//! transaction and a pooled connection of its own, and the bound is on writes in flight.

use std::{
    any::Any,
    future::Future,
    sync::{
        Arc,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    time::{Duration, Instant},
};

use diesel::Connection;
use futures_util::future::BoxFuture;

use super::{Backend, DbConn, DbError, DbPool, IN_DATABASE_TASK, QueryError, clock, write_tx};

/// The most commands one transaction takes.
pub const MAX_GROUP: usize = 256;
/// A group takes no more commands once it has run this long.
pub const GROUP_TIME: Duration = Duration::from_millis(2);

type Output = Box<dyn Any + Send>;
type Job<E> = Box<dyn FnOnce(&mut DbConn, i64) -> Result<Output, E> + Send>;

struct Command<E> {
    job: Job<E>,
    reply: tokio::sync::oneshot::Sender<Result<Output, E>>,
    queued: Instant,
}

/// The write queue was full: the caller answers `unavailable` rather than wait without bound.
#[derive(Debug)]
pub struct QueueFull;

/// The writes of one database, bounded: a write past the bound is refused at once.
pub enum Writer<E> {
    Grouped(GroupCommit<E>),
    /// Each write in a transaction of its own, at most this many waiting or running.
    Direct {
        pool: DbPool,
        slots: Arc<tokio::sync::Semaphore>,
    },
}

impl<E> Writer<E>
where
    E: From<DbError> + From<QueryError> + std::fmt::Display + Send + 'static,
{
    /// Group commit for SQLite, a transaction each on PostgreSQL; `capacity` writes waiting (or,
    /// on PostgreSQL, waiting and running) at most.
    pub fn start(
        pool: DbPool,
        backend: Backend,
        capacity: usize,
        max_wait: Duration,
    ) -> std::io::Result<Self> {
        Ok(match backend {
            Backend::Sqlite => Writer::Grouped(GroupCommit::start(pool, capacity, max_wait)?),
            Backend::Postgres => Writer::Direct {
                pool,
                slots: Arc::new(tokio::sync::Semaphore::new(capacity)),
            },
        })
    }

    /// Runs a write with its transaction's clock reading, answered after its COMMIT; refused
    /// at once when `capacity` writes are already waiting.
    pub fn submit<T, F>(&self, job: F) -> Result<BoxFuture<'static, Result<T, E>>, QueueFull>
    where
        F: FnOnce(&mut DbConn, i64) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Writer::Grouped(group_commit) => Ok(Box::pin(group_commit.submit(job)?)),
            Writer::Direct { pool, slots } => {
                let slot = slots.clone().try_acquire_owned().map_err(|_| QueueFull)?;
                let pool = pool.clone();
                Ok(Box::pin(async move {
                    let committed = super::run(&pool, move |conn| {
                        write_tx(conn, |conn| {
                            let now = clock(conn)?;
                            job(conn, now)
                        })
                    })
                    .await;
                    drop(slot);
                    committed
                }))
            }
        }
    }
}

/// The handle to a database's writer. It ends when the last handle is dropped.
pub struct GroupCommit<E> {
    commands: SyncSender<Command<E>>,
}

impl<E> GroupCommit<E>
where
    E: From<DbError> + From<QueryError> + std::fmt::Display + Send + 'static,
{
    /// Starts the writer, with a queue of `capacity` commands. A command still waiting after `max_wait` (the pool's own
    /// checkout timeout) is answered `unavailable` without being run, as a checkout would have
    /// been: a database that was out of reach leaves no backlog of stale writes in front of the
    /// fresh ones (deadlines among them).
    pub fn start(pool: DbPool, capacity: usize, max_wait: Duration) -> std::io::Result<Self> {
        let (commands, queue) = sync_channel(capacity);
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || write_groups(&pool, &queue, max_wait))?;
        Ok(GroupCommit { commands })
    }

    /// Queues a write, run with the transaction's clock reading. Refused at once when the queue
    /// is full; else the answer comes once the command's group has committed (or failed).
    pub fn submit<T, F>(
        &self,
        job: F,
    ) -> Result<impl Future<Output = Result<T, E>> + use<T, F, E>, QueueFull>
    where
        F: FnOnce(&mut DbConn, i64) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job<E> = Box::new(move |conn, now| job(conn, now).map(|v| Box::new(v) as Output));
        let queued = Instant::now();
        match self.commands.try_send(Command { job, reply, queued }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return Err(QueueFull),
        }
        Ok(async move {
            match answer.await {
                Ok(answered) => answered.map(|value| {
                    *value
                        .downcast::<T>()
                        .expect("a command's answer is of its own type")
                }),
                Err(_) => Err(E::from(DbError::Cancelled)),
            }
        })
    }
}

fn write_groups<E>(pool: &DbPool, queue: &Receiver<Command<E>>, max_wait: Duration)
where
    E: From<DbError> + From<QueryError> + std::fmt::Display + Send + 'static,
{
    // A command whose caller is gone is not run: nobody would hear of it. One that waited too
    // long is answered without being run.
    let runnable = |command: Command<E>| {
        if command.reply.is_closed() {
            return None;
        }
        if command.queued.elapsed() > max_wait {
            let _ = command.reply.send(Err(E::from(DbError::Waited)));
            return None;
        }
        Some(command)
    };
    let first = || loop {
        if let Some(command) = runnable(queue.recv().ok()?) {
            return Some(command);
        }
    };
    // A group never waits for more: its transaction must not stand still while open.
    let more = || loop {
        if let Some(command) = runnable(queue.try_recv().ok()?) {
            return Some(command);
        }
    };
    while let Some(command) = first() {
        commit_group(pool, command, more);
    }
}

/// One transaction: `first`, then whatever `more` gives while the group has time and room.
fn commit_group<E>(pool: &DbPool, first: Command<E>, more: impl Fn() -> Option<Command<E>>)
where
    E: From<DbError> + From<QueryError> + std::fmt::Display + Send + 'static,
{
    let started = Instant::now();
    let mut replies = vec![first.reply];
    let mut answers: Vec<Result<Output, E>> = Vec::new();
    IN_DATABASE_TASK.set(true);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut conn = pool.get().map_err(DbError::from)?;
        write_tx(&mut conn, |conn| {
            let now = clock(conn)?;
            // The first command's error rolls the transaction back: it is the group's answer.
            answers.push(Ok((first.job)(conn, now)?));
            while replies.len() < MAX_GROUP && started.elapsed() < GROUP_TIME {
                let Some(command) = more() else { break };
                replies.push(command.reply);
                answers.push(conn.transaction(|conn| (command.job)(conn, now)));
            }
            Ok::<_, E>(())
        })
    }));
    IN_DATABASE_TASK.set(false);
    let answers: Vec<Result<Output, E>> = match outcome {
        Ok(Ok(())) => answers,
        Ok(Err(failed)) if replies.len() == 1 => vec![Err(failed)],
        Ok(Err(failed)) => {
            log::warn!(
                "a group of {} writes failed to commit: {failed}",
                replies.len()
            );
            replies
                .iter()
                .map(|_| Err(E::from(DbError::GroupFailed)))
                .collect()
        }
        Err(_) => replies
            .iter()
            .map(|_| Err(E::from(DbError::Panicked)))
            .collect(),
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that stopped waiting still had its command committed; nothing to tell.
        let _ = reply.send(answer);
    }
}
