//! The expiry actor: every pending offer's deadline in one queue with one timer, the conditional
//! write that expires an offer, and the recovery of deadlines from the database.
//!
//! It arms on `offered` events and disarms on `decided` ones. When a deadline passes it tries the
//! expiring write; only if the write wins (the offer was still pending) does it publish
//! `decided: expired`. So any number of actors, on any number of nodes, may arm the same offer.

mod queue;

use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseActFuture, SpawnHandle,
    WrapFuture,
};

pub use queue::ExpiryQueue;

use crate::{
    db::{self, DbError, DbPool, models::Assignment},
    domain::{AssignmentId, DomainEvent, Outcome},
    events::{Deliver, EventBus},
    time::now_ms,
};

/// When the database refuses an expiry write, try again this much later.
const RETRY_MS: i64 = 1_000;
/// Bounds the mailbox; the bus waits for room.
const MAILBOX_CAPACITY: usize = 65_536;

pub struct Expiry {
    pool: DbPool,
    bus: EventBus,
    queue: ExpiryQueue,
    timer: Option<(i64, SpawnHandle)>,
}

/// Reads every pending offer from the database: expires those that fell due, arms the rest.
/// Answers how many were armed.
#[derive(Message)]
#[rtype(result = "Result<usize, DbError>")]
pub struct Recover;

impl Expiry {
    pub fn new(pool: DbPool, bus: EventBus) -> Self {
        Expiry {
            pool,
            bus,
            queue: ExpiryQueue::default(),
            timer: None,
        }
    }

    /// Keeps exactly one timer, set for the earliest pending deadline.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let next = self.queue.next_deadline();
        if let Some((armed_for, handle)) = self.timer {
            if Some(armed_for) == next {
                return;
            }
            ctx.cancel_future(handle);
            self.timer = None;
        }
        if let Some(deadline) = next {
            let delay = Duration::from_millis((deadline - now_ms()).max(0) as u64);
            let handle = ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                act.expire_due(ctx);
            });
            self.timer = Some((deadline, handle));
        }
    }

    fn expire_due(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let due = self.queue.pop_due(now);
        if !due.is_empty() {
            let write = expire(self.pool.clone(), due.clone(), now);
            ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
                match result {
                    Ok(expired) => act.publish_expired(expired),
                    Err(e) => {
                        log::warn!("could not expire {} assignments, retrying: {e}", due.len());
                        for id in due {
                            act.queue.arm(id, now_ms() + RETRY_MS);
                        }
                    }
                }
                act.schedule(ctx);
            }));
        }
        self.schedule(ctx);
    }

    /// Publishes the expiries this actor's write won. Detached, because the bus delivers to
    /// this actor's own mailbox too.
    fn publish_expired(&self, expired: Vec<Assignment>) {
        if expired.is_empty() {
            return;
        }
        let events = expired
            .iter()
            .map(|a| DomainEvent::Decided(a.decision(Outcome::Expired)))
            .collect();
        let bus = self.bus.clone();
        actix_web::rt::spawn(async move { bus.publish(events).await });
    }
}

/// Expires those of `ids` that are still pending and due.
async fn expire(
    pool: DbPool,
    ids: Vec<AssignmentId>,
    now: i64,
) -> Result<Vec<Assignment>, DbError> {
    db::run(&pool, move |conn| {
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        Assignment::expire_due(conn, &ids, now).map_err(DbError::from)
    })
    .await
}

/// Every pending offer, split into those already due (now expired, if this call won them)
/// and the deadlines of the rest.
async fn load_pending(
    pool: DbPool,
) -> Result<(Vec<Assignment>, Vec<(AssignmentId, i64)>), DbError> {
    db::run(&pool, |conn| {
        let now = now_ms();
        let (overdue, open): (Vec<Assignment>, Vec<Assignment>) = Assignment::all_pending(conn)?
            .into_iter()
            .partition(|a| a.expires_at <= now);
        let overdue: Vec<i64> = overdue.iter().map(|a| a.id).collect();
        let expired = Assignment::expire_due(conn, &overdue, now)?;
        Ok((
            expired,
            open.into_iter().map(|a| (a.id(), a.expires_at)).collect(),
        ))
    })
    .await
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
                    self.queue.arm(offer.assignment_id, offer.expires_at)
                }
                DomainEvent::Decided(decision) => self.queue.disarm(decision.assignment_id),
                DomainEvent::Delivered(_)
                | DomainEvent::OrderStatusChanged(_)
                | DomainEvent::Pushed(_) => {}
            }
        }
        self.schedule(ctx);
        0
    }
}

impl Handler<Recover> for Expiry {
    type Result = ResponseActFuture<Self, Result<usize, DbError>>;

    fn handle(&mut self, _: Recover, _: &mut Context<Self>) -> Self::Result {
        let load = load_pending(self.pool.clone());
        Box::pin(load.into_actor(self).map(|result, act, ctx| {
            let (expired, open) = result?;
            log::info!(
                "expiry recovery: {} pending assignments armed, {} overdue expired",
                open.len(),
                expired.len()
            );
            act.publish_expired(expired);
            let armed = open.len();
            for (id, deadline) in open {
                act.queue.arm(id, deadline);
            }
            act.schedule(ctx);
            Ok(armed)
        }))
    }
}
