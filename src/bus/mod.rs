//! The event bus: how committed changes reach this node's router and expiry actor, and the other
//! nodes. (Webhooks take another way: their rows are written in the decision's own transaction.)
//!
//! The service publishes [`DomainEvent`]s here after committing them. Each goes to the local
//! router (which pushes frames to connections) and to the local expiry actor
//! (which arms and disarms deadlines). In cluster mode it also goes to the other nodes, whose
//! buses deliver it to their own actors.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use actix::{Message, Recipient};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::domain::DomainEvent;

/// Batches waiting for the link to the other nodes; past this the link is stuck and batches are
/// dropped (the other nodes' gap recovery re-reads open offers).
pub const REMOTE_QUEUE: usize = 16_384;

/// Events for an actor of this node; answers how many connections they reached.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct Deliver(pub Vec<DomainEvent>);

/// The way to the other nodes, in cluster mode: a bounded queue of batches, and the flag that
/// makes the link tell the others when a batch could not go, so that they catch up from the
/// database instead of missing it in silence.
#[derive(Clone)]
pub struct Remote {
    pub batches: mpsc::Sender<Vec<DomainEvent>>,
    pub dropped: Arc<AtomicBool>,
}

/// A cheap, cloneable handle; publishing never waits on the database.
#[derive(Clone)]
pub struct EventBus {
    router: Recipient<Deliver>,
    expiry: Recipient<Deliver>,
    remote: Option<Remote>,
}

impl EventBus {
    /// A bus for one process; `remote`, in cluster mode, carries batches to the other nodes.
    pub fn new(
        router: Recipient<Deliver>,
        expiry: Recipient<Deliver>,
        remote: Option<Remote>,
    ) -> Self {
        EventBus {
            router,
            expiry,
            remote,
        }
    }

    /// Publishes committed events in order, to this node and the others; answers how many of
    /// this node's connections an offer among them reached.
    pub async fn publish(&self, events: Vec<DomainEvent>) -> usize {
        if events.is_empty() {
            return 0;
        }
        if let Some(remote) = &self.remote {
            match remote.batches.try_send(events.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(lost)) => {
                    remote.dropped.store(true, Ordering::Relaxed);
                    log::warn!(
                        "the link to the other nodes is stuck; {} events not sent to them (they \
                         will be told to catch up)",
                        lost.len()
                    );
                }
                Err(TrySendError::Closed(_)) => {
                    remote.dropped.store(true, Ordering::Relaxed);
                    log::error!("the link to the other nodes is gone");
                }
            }
        }
        self.deliver_local(events).await
    }

    /// Hands events to this node's actors at once, waiting for room in their bounded mailboxes.
    pub async fn deliver_local(&self, events: Vec<DomainEvent>) -> usize {
        // Pushes have no deadline: the expiry actor need not see (or copy) them.
        let for_expiry = events
            .iter()
            .any(|e| matches!(e, DomainEvent::Offered(_) | DomainEvent::Decided(_)))
            .then(|| events.clone());
        let arm = async {
            if let Some(events) = for_expiry
                && self.expiry.send(Deliver(events)).await.is_err()
            {
                log::error!("the expiry actor did not take events");
            }
        };
        let (_, routed) = futures_util::future::join(arm, self.router.send(Deliver(events))).await;
        routed.unwrap_or_else(|e| {
            log::error!("the dispatcher did not take events: {e}");
            0
        })
    }
}

#[cfg(test)]
mod tests {
    use actix::{Actor, Context, Handler};

    use super::*;
    use crate::domain::{OrderId, OrderStatus, OrderStatusChange, UserId};

    /// Takes events and does nothing, as a router with no connections would.
    struct Idle;

    impl Actor for Idle {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Idle {
        type Result = usize;

        fn handle(&mut self, _: Deliver, _: &mut Context<Self>) -> usize {
            0
        }
    }

    #[actix::test]
    async fn a_batch_the_stuck_link_cannot_take_is_announced_not_lost_in_silence() {
        let (batches, _stuck) = mpsc::channel(1);
        let dropped = Arc::new(AtomicBool::new(false));
        let idle = Idle.start();
        let bus = EventBus::new(
            idle.clone().recipient(),
            idle.recipient(),
            Some(Remote {
                batches,
                dropped: dropped.clone(),
            }),
        );
        let change = DomainEvent::OrderStatusChanged(OrderStatusChange {
            order_id: OrderId(10),
            client_user_id: UserId(7),
            master_id: None,
            status: OrderStatus::Cancelled,
            updated_at: 1,
        });
        bus.publish(vec![change.clone()]).await;
        assert!(!dropped.load(Ordering::Relaxed), "the first batch fits");
        bus.publish(vec![change]).await;
        assert!(
            dropped.load(Ordering::Relaxed),
            "the second does not, and says so"
        );
    }
}
