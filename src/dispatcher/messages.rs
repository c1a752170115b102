//! Every message the Dispatcher takes, and the one it sends back to connections.

use actix::{Message, Recipient};
use actix_ws::CloseCode;

use crate::{
    auth::AuthUser,
    db::models::{Assignment, Order},
    views::OfferView,
    ws::{
        outbox::Outbox,
        protocol::{AssignmentEventKind, ServerMessage},
    },
};

/// Opaque per-process connection id; shown to clients as hex.
pub type ConnId = u64;

/// A new WebSocket connection registers its queue, a way to close it, and its ping clock.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub id: ConnId,
    pub outbox: Outbox,
    pub control: Recipient<CloseConnection>,
    pub last_ping: PingClock,
}

/// When a connection last pinged (ms since the epoch, 0 for never). The session writes it on
/// every ping; the Dispatcher reads it for stats and cleanup. Pings are frequent and idempotent,
/// so they need no message, and no thread is woken for them.
#[derive(Debug, Clone, Default)]
pub struct PingClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl PingClock {
    pub fn touch(&self) {
        self.0
            .store(crate::time::now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<i64> {
        Some(self.0.load(std::sync::atomic::Ordering::Relaxed)).filter(|&t| t > 0)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub id: ConnId,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Authenticated {
    pub id: ConnId,
    pub user: AuthUser,
}

/// A master's connection starts receiving `new_assignment`; counts as a ping.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeAssignments {
    pub id: ConnId,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct UnsubscribeAssignments {
    pub id: ConnId,
}

/// A service or admin connection starts receiving `assignment_event`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeEvents {
    pub id: ConnId,
}

/// A stored offer: arm its deadline and push it; answers how many connections it was sent to.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Offer {
    pub assignment: Assignment,
    pub message: ServerMessage,
}

/// Open offers read for a connection that just subscribed; any it was already pushed are skipped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplayOffers {
    pub id: ConnId,
    pub offers: Vec<OfferView>,
}

/// Pending deadlines loaded at start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ArmExpiry(pub Vec<(i64, i64)>);

/// Something stored changed; tell whoever must know.
#[derive(Debug, Clone)]
pub enum DomainEvent {
    Decided {
        assignment: Assignment,
        kind: AssignmentEventKind,
    },
    OrderStatusChanged(Order),
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Vec<DomainEvent>);

/// A master's connection as the admin stats show it.
#[derive(Debug, Clone)]
pub struct MasterConnection {
    pub user_id: i64,
    pub master_id: i64,
    pub subscribed: bool,
    pub last_ping: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub total_connected: usize,
    pub masters: Vec<MasterConnection>,
}

#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountConnections;

/// Close every connection with 1001; answers how many there were.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

/// Sent to a connection: close with this code and stop.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct CloseConnection {
    pub code: CloseCode,
    pub reason: &'static str,
}
