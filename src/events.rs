//! The event bus: the one road by which stored changes reach whoever must know.
//!
//! The service publishes [`DomainEvent`]s here after committing them. Each goes to the local
//! router (the Dispatcher, which pushes frames to connections) and to the local expiry actor
//! (which arms and disarms deadlines).

use actix::{Message, Recipient};

use crate::domain::DomainEvent;

/// Events for an actor of this node; answers how many connections they reached.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct Deliver(pub Vec<DomainEvent>);

/// A cheap, cloneable handle; publishing never waits on the database.
#[derive(Clone)]
pub struct EventBus {
    router: Recipient<Deliver>,
    expiry: Recipient<Deliver>,
}

impl EventBus {
    pub fn new(router: Recipient<Deliver>, expiry: Recipient<Deliver>) -> Self {
        EventBus { router, expiry }
    }

    /// Publishes committed events in order; answers how many of this node's connections an
    /// offer among them reached.
    pub async fn publish(&self, events: Vec<DomainEvent>) -> usize {
        if events.is_empty() {
            return 0;
        }
        self.deliver_local(events).await
    }

    /// Hands events to this node's actors, waiting for room in their bounded mailboxes.
    pub async fn deliver_local(&self, events: Vec<DomainEvent>) -> usize {
        if self.expiry.send(Deliver(events.clone())).await.is_err() {
            log::error!("the expiry actor did not take events");
        }
        self.router.send(Deliver(events)).await.unwrap_or_else(|e| {
            log::error!("the dispatcher did not take events: {e}");
            0
        })
    }
}
