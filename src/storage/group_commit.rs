//! Group commit: a writer takes the write commands waiting for it and commits them in one
//! transaction, so that many decisions share one fsync. Each command after the first runs in its
//! own savepoint, so one command's refusal is its own answer and the rest commit. Every caller
//! hears its answer after the COMMIT, never before. The queue is bounded: a full one refuses at
//! once instead of waiting.
//!
//! A group takes commands one at a time, while it has run for less than [`GROUP_TIME`] and holds
//! fewer than its maximum: the statements of a group run one after another on one connection,
//! so over a slow link (each statement a round trip) a group is one command.

use std::{
    any::Any,
    future::Future,
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    time::{Duration, Instant},
};

use diesel::Connection;

use super::{DbConn, DbError, DbPool, IN_DATABASE_TASK, QueryError, clock, write_tx};

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

/// The handle to a database's writers. They end when the last handle is dropped.
pub struct GroupCommit<E> {
    commands: SyncSender<Command<E>>,
}

impl<E> GroupCommit<E>
where
    E: From<DbError> + From<QueryError> + std::fmt::Display + Send + 'static,
{
    /// Starts `writers` writers, each committing up to `max_group` commands at once, with a
    /// queue of `capacity` commands. A command still waiting after `max_wait` (the pool's own
    /// checkout timeout) is answered `unavailable` without being run, as a checkout would have
    /// been: a database that was out of reach leaves no backlog of stale writes in front of the
    /// fresh ones (deadlines among them).
    pub fn start(
        pool: DbPool,
        capacity: usize,
        writers: usize,
        max_group: usize,
        max_wait: Duration,
    ) -> std::io::Result<Self> {
        let (commands, queue) = sync_channel(capacity);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            let (pool, queue) = (pool.clone(), queue.clone());
            std::thread::Builder::new()
                .name("group-commit".into())
                .spawn(move || write_groups(&pool, &queue, max_group.max(1), max_wait))?;
        }
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

fn write_groups<E>(
    pool: &DbPool,
    queue: &Mutex<Receiver<Command<E>>>,
    max_group: usize,
    max_wait: Duration,
) where
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
        let queue = queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let command = queue.recv().ok()?;
        drop(queue);
        if let Some(command) = runnable(command) {
            return Some(command);
        }
    };
    // Never waits for the lock: another writer holding it is waiting for work, so none waits,
    // and a group must not stand still with its transaction open.
    let more = || loop {
        let command = queue.try_lock().ok()?.try_recv().ok()?;
        if let Some(command) = runnable(command) {
            return Some(command);
        }
    };
    while let Some(command) = first() {
        commit_group(pool, command, max_group, more);
    }
}

/// One transaction: `first`, then whatever `more` gives while the group has time and room.
fn commit_group<E>(
    pool: &DbPool,
    first: Command<E>,
    max_group: usize,
    more: impl Fn() -> Option<Command<E>>,
) where
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
            while replies.len() < max_group && started.elapsed() < GROUP_TIME {
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
