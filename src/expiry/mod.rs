//! The expiry actor: every pending offer's deadline in one queue with one timer, the conditional
//! write that expires an offer, and the recovery of deadlines from the database. Beside the
//! deadlines, the same timer keeps each offer's undelivered cue (`UNDELIVERED_AFTER_SECS` after
//! it was made, unless a connection acknowledged it first).
//!
//! It arms on `offered` events and disarms on `decided` ones (and the cue on `delivered`). When a
//! time passes it tries the conditional write; only if the write wins (the offer was still
//! pending, or still unacknowledged and untold) is the event published. So any number of actors,
//! on any number of nodes, may arm the same offer.

mod queue;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseActFuture, SpawnHandle,
    WrapFuture,
};

pub use queue::ExpiryQueue;

use crate::{
    bus::Deliver,
    domain::{AssignmentId, DomainEvent, time::deciding_now},
    service::Service,
    service::error::AppError,
};

/// When the database refuses an expiry write, try again this much later.
const RETRY_MS: i64 = 1_000;
/// Bounds the mailbox; the bus waits for room.
const MAILBOX_CAPACITY: usize = 65_536;

/// A stall is a deadline this much past with its offer neither expired nor being expired.
const STALL_AFTER_MS: i64 = 2_000;

pub struct Expiry {
    service: Service,
    queue: ExpiryQueue,
    /// When each unacknowledged offer is to be told undelivered.
    undelivered: ExpiryQueue,
    /// `UNDELIVERED_AFTER_SECS` in ms, when on.
    undelivered_after: Option<i64>,
    timer: Option<(i64, SpawnHandle)>,
    /// Expiring writes under way, each with when it began.
    writing: BTreeMap<u64, i64>,
    next_write: u64,
    watch: ExpiryWatch,
}

/// What `/health` reads to tell a working expiry from a stalled one: the earliest of the
/// armed deadlines and the starts of the writes under way.
#[derive(Debug, Clone)]
pub struct ExpiryWatch(Arc<AtomicI64>);

impl Default for ExpiryWatch {
    fn default() -> Self {
        ExpiryWatch(Arc::new(AtomicI64::new(i64::MAX)))
    }
}

impl ExpiryWatch {
    /// Whether a deadline passed more than 2 s ago without its offer being expired.
    pub fn stalled(&self) -> bool {
        deciding_now()
            > self
                .0
                .load(Ordering::Relaxed)
                .saturating_add(STALL_AFTER_MS)
    }
}

/// Reads pending offers from the database: expires those that fell due, arms the rest. Answers
/// how many were armed.
#[derive(Message)]
#[rtype(result = "Result<usize, AppError>")]
pub struct Recover {
    /// Only offers due within this (a sweep); every pending offer with `None` (at start, after
    /// a gap).
    pub due_within: Option<Duration>,
}

/// Which conditional write a due time asks for.
#[derive(Debug, Clone, Copy)]
enum Due {
    Deadline,
    Undelivered,
}

impl Expiry {
    pub fn new(service: Service, watch: ExpiryWatch, undelivered_after: Option<Duration>) -> Self {
        Expiry {
            service,
            queue: ExpiryQueue::default(),
            undelivered: ExpiryQueue::default(),
            undelivered_after: undelivered_after
                .map(|after| i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            timer: None,
            writing: BTreeMap::new(),
            next_write: 0,
            watch,
        }
    }

    /// Keeps exactly one timer, set for the earliest pending deadline or cue.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let deadline = self.queue.next_deadline();
        let oldest_write = self.writing.values().min().copied();
        let watched = deadline.into_iter().chain(oldest_write).min();
        let next = deadline
            .into_iter()
            .chain(self.undelivered.next_deadline())
            .min();
        self.watch
            .0
            .store(watched.unwrap_or(i64::MAX), Ordering::Relaxed);
        if let Some((armed_for, handle)) = self.timer {
            if Some(armed_for) == next {
                return;
            }
            ctx.cancel_future(handle);
            self.timer = None;
        }
        if let Some(deadline) = next {
            let delay =
                Duration::from_millis(deadline.saturating_sub(deciding_now()).max(0) as u64);
            let handle = ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                act.write_due(ctx, Due::Deadline);
                act.write_due(ctx, Due::Undelivered);
                act.schedule(ctx);
            });
            self.timer = Some((deadline, handle));
        }
    }

    fn queue_of(&mut self, due: Due) -> &mut ExpiryQueue {
        match due {
            Due::Deadline => &mut self.queue,
            Due::Undelivered => &mut self.undelivered,
        }
    }

    /// Tries the conditional write for every offer whose time of this kind came; the service
    /// publishes what the write won (`decided: expired`, `undelivered`) to every node.
    fn write_due(&mut self, ctx: &mut Context<Self>, kind: Due) {
        let now = deciding_now();
        let due = self.queue_of(kind).pop_due(now);
        if due.is_empty() {
            return;
        }
        let service = self.service.clone();
        let write = {
            let due = due.clone();
            async move {
                match kind {
                    Due::Deadline => service.expire_due(due).await,
                    Due::Undelivered => service.mark_undelivered(due).await,
                }
            }
        };
        let write_id = self.next_write;
        self.next_write += 1;
        if let Due::Deadline = kind {
            self.writing.insert(write_id, now);
        }
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.writing.remove(&write_id);
            if let Err(e) = result {
                log::warn!(
                    "could not write {kind:?} of {} assignments, retrying: {e}",
                    due.len()
                );
                for id in due {
                    act.queue_of(kind)
                        .arm(id, deciding_now().saturating_add(RETRY_MS));
                }
            }
            act.schedule(ctx);
        }));
    }

    fn arm_undelivered(&mut self, id: AssignmentId, made_at: i64, expires_at: Option<i64>) {
        let Some(after) = self.undelivered_after else {
            return;
        };
        let at = made_at.saturating_add(after);
        // An offer that ends first is told by its end.
        if expires_at.is_none_or(|deadline| at < deadline) {
            self.undelivered.arm(id, at);
        }
    }
}

impl Actor for Expiry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

/// Arms offers and disarms decided ones.
impl Handler<Deliver> for Expiry {
    type Result = usize;

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) -> usize {
        for event in msg.0 {
            match event {
                DomainEvent::Offered(offer) => {
                    self.queue.arm(offer.assignment_id, offer.expires_at);
                    self.arm_undelivered(
                        offer.assignment_id,
                        offer.created_at,
                        Some(offer.expires_at),
                    );
                }
                DomainEvent::Decided(decision) => {
                    self.queue.disarm(decision.assignment_id);
                    self.undelivered.disarm(decision.assignment_id);
                }
                DomainEvent::Delivered(delivery) => self.undelivered.disarm(delivery.assignment_id),
                DomainEvent::Undelivered(told) => self.undelivered.disarm(told.assignment_id),
                DomainEvent::OrderStatusChanged(_)
                | DomainEvent::DispatchEnded(_)
                | DomainEvent::Pushed(_) => {}
            }
        }
        self.schedule(ctx);
        0
    }
}

impl Handler<Recover> for Expiry {
    type Result = ResponseActFuture<Self, Result<usize, AppError>>;

    fn handle(&mut self, recover: Recover, _: &mut Context<Self>) -> Self::Result {
        let service = self.service.clone();
        let sweep = recover.due_within;
        let undelivered_after = self.undelivered_after;
        let load = async move {
            let (now, pending) = service.pending_deadlines(sweep).await?;
            let (overdue, open): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|&(_, deadline)| deadline <= now);
            let overdue: Vec<AssignmentId> = overdue.into_iter().map(|(id, _)| id).collect();
            let expired = service.expire_due(overdue).await?;
            let unacknowledged = match undelivered_after {
                Some(after) => recover_undelivered(&service, after, sweep).await?,
                None => Vec::new(),
            };
            Ok::<_, AppError>((expired, open, unacknowledged))
        };
        Box::pin(load.into_actor(self).map(move |result, act, ctx| {
            let (expired, open, unacknowledged) = result?;
            for (id, made_at) in unacknowledged {
                act.arm_undelivered(id, made_at, None);
            }
            if sweep.is_none() {
                log::info!(
                    "expiry recovery: {} pending assignments armed, {expired} overdue expired",
                    open.len(),
                );
            } else if expired > 0 {
                log::info!("expiry sweep: {expired} overdue assignments expired");
            }
            let armed = open.len();
            for (id, deadline) in open {
                act.queue.arm(id, deadline);
            }
            act.schedule(ctx);
            Ok(armed)
        }))
    }
}

/// Tells of the unacknowledged offers whose cue passed with nobody armed for it (their node died,
/// or this one restarted), and answers the rest that fall due within `due_within` (all of them
/// with `None`), with when each was made.
async fn recover_undelivered(
    service: &Service,
    after_ms: i64,
    due_within: Option<Duration>,
) -> Result<Vec<(AssignmentId, i64)>, AppError> {
    let after = Duration::from_millis(after_ms.max(0) as u64);
    let made_before_ago = due_within.map(|window| after.saturating_sub(window));
    let (now, offers) = service.unacknowledged(made_before_ago).await?;
    let (overdue, waiting): (Vec<_>, Vec<_>) = offers
        .into_iter()
        .partition(|&(_, made_at)| made_at.saturating_add(after_ms) <= now);
    service
        .mark_undelivered(overdue.into_iter().map(|(id, _)| id).collect())
        .await?;
    Ok(waiting)
}
