//! The event bus: how committed changes reach this node's router and expiry actor, and the other
//! nodes. (Webhooks take another way: their rows are written in the decision's own transaction.)
//!
//! The service publishes [`DomainEvent`]s here after committing them. Each goes to the local
//! router (which pushes frames to connections) and to the local expiry actor
//! (which arms and disarms deadlines). In cluster mode it also goes to the other nodes, whose
//! buses deliver it to their own actors.

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

/// A cheap, cloneable handle; publishing never waits on the database.
#[derive(Clone)]
pub struct EventBus {
    router: Recipient<Deliver>,
    expiry: Recipient<Deliver>,
    remote: Option<mpsc::Sender<Vec<DomainEvent>>>,
}

impl EventBus {
    /// A bus for one process; `remote`, in cluster mode, carries batches to the other nodes.
    pub fn new(
        router: Recipient<Deliver>,
        expiry: Recipient<Deliver>,
        remote: Option<mpsc::Sender<Vec<DomainEvent>>>,
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
            match remote.try_send(events.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(lost)) => log::warn!(
                    "the link to the other nodes is stuck; {} events not sent to them",
                    lost.len()
                ),
                Err(TrySendError::Closed(_)) => log::error!("the link to the other nodes is gone"),
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
