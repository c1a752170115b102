//! Group commit: one writer per database takes the write commands waiting for it (up to
//! [`MAX_GROUP`]) and commits them in one transaction, so that many decisions share one fsync.
//! Each command runs in its own savepoint, so one command's refusal is its own answer and the
//! rest commit. Every caller hears its answer after the COMMIT, never before. The queue is
//! bounded: a full one refuses at once instead of waiting.

use std::{
    any::Any,
    future::Future,
    sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
};

use diesel::Connection;

use super::{DbConn, DbError, DbPool, IN_DATABASE_TASK, QueryError, clock, write_tx};

/// The most commands one transaction takes.
pub const MAX_GROUP: usize = 256;

type Output = Box<dyn Any + Send>;
type Job<E> = Box<dyn FnOnce(&mut DbConn, i64) -> Result<Output, E> + Send>;

struct Command<E> {
    job: Job<E>,
    reply: tokio::sync::oneshot::Sender<Result<Output, E>>,
}

/// The write queue was full: the caller answers `unavailable` rather than wait without bound.
#[derive(Debug)]
pub struct QueueFull;

/// The handle to a database's writer. The writer thread ends when the last handle is dropped.
pub struct GroupCommit<E> {
    commands: SyncSender<Command<E>>,
}

impl<E> GroupCommit<E>
where
    E: From<DbError> + From<QueryError> + std::fmt::Display + Send + 'static,
{
    /// Starts the writer, with a queue of `capacity` commands.
    pub fn start(pool: DbPool, capacity: usize) -> std::io::Result<Self> {
        let (commands, queue) = sync_channel(capacity);
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || write_groups(&pool, &queue))?;
        Ok(GroupCommit { commands })
    }

    /// Queues a write, run with the transaction's clock reading. Refused at once when the queue
    /// is full; else the answer comes once the command's group has committed (or failed).
    pub fn submit<T, F>(&self, job: F) -> Result<impl Future<Output = Result<T, E>>, QueueFull>
    where
        F: FnOnce(&mut DbConn, i64) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job<E> = Box::new(move |conn, now| job(conn, now).map(|v| Box::new(v) as Output));
        match self.commands.try_send(Command { job, reply }) {
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

fn write_groups<E>(pool: &DbPool, queue: &Receiver<Command<E>>)
where
    E: From<DbError> + From<QueryError> + std::fmt::Display + Send + 'static,
{
    // What came while the last group committed is the next group: no waiting to fill one.
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(command) => group.push(command),
                Err(_) => break,
            }
        }
        commit_group(pool, group);
    }
}

fn commit_group<E>(pool: &DbPool, group: Vec<Command<E>>)
where
    E: From<DbError> + From<QueryError> + std::fmt::Display + Send + 'static,
{
    let (jobs, replies): (Vec<Job<E>>, Vec<_>) =
        group.into_iter().map(|c| (c.job, c.reply)).unzip();
    let alone = jobs.len() == 1;
    IN_DATABASE_TASK.set(true);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut conn = pool.get().map_err(DbError::from)?;
        write_tx(&mut conn, |conn| {
            let now = clock(conn)?;
            if alone {
                let job = jobs.into_iter().next().expect("one command");
                return Ok(vec![Ok(job(conn, now)?)]);
            }
            Ok(jobs
                .into_iter()
                .map(|job| conn.transaction(|conn| job(conn, now)))
                .collect::<Vec<_>>())
        })
    }));
    IN_DATABASE_TASK.set(false);
    let answers: Vec<Result<Output, E>> = match outcome {
        Ok(Ok(answers)) => answers,
        // Alone, the command's own error and the transaction's are one answer.
        Ok(Err(failed)) if alone => vec![Err(failed)],
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
