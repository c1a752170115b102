//! Every message the router takes (besides the bus's `Deliver`), and the one it sends back
//! to connections.

use actix::{Message, Recipient};

use crate::{
    domain::AuthUser,
    domain::{AssignmentId, Decision, MasterId, Offer, UserId},
    protocol::CloseCode,
    router::outbox::Outbox,
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
    pub replay_more: Recipient<ReplayMore>,
    pub last_ping: PingClock,
}

/// When a connection last pinged (ms since the epoch, 0 for never). The session writes it on
/// every ping; the router reads it for stats and cleanup. Pings are frequent and idempotent,
/// so they need no message, and no thread is woken for them.
#[derive(Debug, Clone, Default)]
pub struct PingClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl PingClock {
    pub fn touch(&self) {
        self.0.store(
            crate::domain::time::now_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
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
    /// The app acknowledges each offer (`ack_assignment`).
    pub acks: bool,
}

/// A connection acknowledged an offer: it is not sent again there.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Acknowledged {
    pub id: ConnId,
    pub assignment_id: AssignmentId,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct UnsubscribeAssignments {
    pub id: ConnId,
}

/// A connection subscribes to push topics (already checked and without repeats).
#[derive(Message)]
#[rtype(result = "Result<(), TooManyTopics>")]
pub struct SubscribeTopics {
    pub id: ConnId,
    pub topics: Vec<String>,
}

/// The connection would have more than `Topics::MAX` topics.
#[derive(Debug)]
pub struct TooManyTopics;

#[derive(Message)]
#[rtype(result = "()")]
pub struct UnsubscribeTopics {
    pub id: ConnId,
    pub topics: Vec<String>,
}

/// A service or admin connection starts receiving `assignment_event`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeEvents {
    pub id: ConnId,
}

/// Open offers read for a connection that just subscribed; any it was already pushed are skipped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplayOffers {
    pub id: ConnId,
    pub offers: Vec<Offer>,
}

/// To a session: its replay left offers out for want of room and has sent the rest, so the open
/// offers are read again; those already sent are skipped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplayMore;

/// After a gap: a subscribed connection's open offers, read from the database. The router
/// sends those it has not been sent, and answers the offers it was sent that are not among them
/// (perhaps decided while this node heard nothing).
#[derive(Message)]
#[rtype(result = "Vec<AssignmentId>")]
pub struct Resync {
    pub id: ConnId,
    pub open: Vec<Offer>,
}

/// After a gap: decisions a connection missed, to tell it as the events would have.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TellMissed {
    pub id: ConnId,
    pub decisions: Vec<Decision>,
}

/// What the database says changed lately, in case an event about it was lost between nodes:
/// open offers go to subscribed connections that have not had them (unless decided meanwhile),
/// decisions to the connections still holding their offers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUp {
    pub offers: Vec<Offer>,
    pub decisions: Vec<(Decision, crate::domain::records::Order)>,
}

/// Closes every subscribed connection with 1013: this node cannot learn what it missed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ShedSubscribed;

/// A master's connection as the admin stats show it; nodes share these through Redis.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterConnection {
    pub user_id: UserId,
    pub master_id: MasterId,
    pub subscribed: bool,
    pub last_ping: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub total_connected: usize,
    /// Connections by role (`master`, `client`, `service`, `admin`, `unauthenticated`).
    pub by_role: std::collections::BTreeMap<String, usize>,
    pub masters: Vec<MasterConnection>,
}

#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

/// The subscribed master connections, for re-sending open offers after a gap.
#[derive(Message)]
#[rtype(result = "Vec<(ConnId, MasterId)>")]
pub struct SubscribedMasters;

/// Those of these masters with a connection subscribed to offers on this node.
#[derive(Message)]
#[rtype(result = "Vec<MasterId>")]
pub struct SubscribedAmong(pub Vec<MasterId>);

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
