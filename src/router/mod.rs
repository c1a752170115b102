//! The router (the design's Dispatcher actor): the registry of connections, subscriptions and ping
//! times. For each event it asks the protocol for its (audience, frame) pairs and queues each
//! frame for the connections of its audience.
//!
//! It touches neither the database nor a socket, and never waits: frames go into each
//! connection's bounded queue, which the connection's writer drains.

mod handlers;
mod index;
pub mod messages;
pub mod outbox;
mod receipts;
mod replay;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use actix::{Actor, AsyncContext, Context, Recipient};

use index::ConnIndex;
use messages::{CloseConnection, ConnId, PingClock, ReplayMore};

use crate::{
    domain::time::now_ms,
    domain::{AssignmentId, MasterId, Offer, UserId},
    domain::{AuthUser, Role},
    metrics::Metrics,
    protocol::{Audience, CloseCode, Frame, ServerMessage},
    router::outbox::{Outbox, QueueError},
};

/// Bounds the router's mailbox; senders that use `send` wait for room.
const MAILBOX_CAPACITY: usize = 65_536;
/// How often offers that fell due are sent again.
const REDELIVERY_TICK: Duration = Duration::from_millis(250);
/// Offers remembered per connection to avoid sending one twice; past this the memory starts over.
const MAX_REMEMBERED_OFFERS: usize = 1024;
/// After this many connects and disconnects, once they have stopped for `CHURN_QUIET`, freed
/// memory is handed back to the OS.
const CHURN_BEFORE_TRIM: u32 = 256;
const CHURN_QUIET: Duration = Duration::from_millis(500);

/// The timing settings the router needs.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub subscription_timeout: Duration,
    pub cleanup_interval: Duration,
    /// A master's or client's connections past this close the oldest.
    pub max_connections_per_user: usize,
}

struct Connection {
    outbox: Outbox,
    control: Recipient<CloseConnection>,
    replay_more: Recipient<ReplayMore>,
    user: Option<AuthUser>,
    subscribed: bool,
    last_ping: PingClock,
    /// Open offers this connection has been sent since it subscribed.
    offered: HashSet<AssignmentId>,
    /// When it authenticated, in the router's count: lower is older.
    authenticated_seq: u64,
    /// Push topics it subscribed to; at most `Topics::MAX`.
    topics: Vec<Box<str>>,
    /// Offers awaiting its acknowledgement, when it subscribed with `acks`.
    receipts: Option<Box<receipts::Receipts>>,
    /// Open offers being sent again, at most one task at a time.
    replay: Option<Box<replay::Replay>>,
}

impl Connection {
    pub fn new(connect: messages::Connect) -> Self {
        Connection {
            outbox: connect.outbox,
            control: connect.control,
            replay_more: connect.replay_more,
            user: None,
            subscribed: false,
            last_ping: connect.last_ping,
            offered: HashSet::new(),
            authenticated_seq: 0,
            topics: Vec::new(),
            receipts: None,
            replay: None,
        }
    }

    /// Notes that an offer is being sent; false if it was sent already.
    fn remember(&mut self, assignment_id: AssignmentId) -> bool {
        if self.offered.contains(&assignment_id) {
            return false;
        }
        if self.offered.len() >= MAX_REMEMBERED_OFFERS {
            self.offered.clear();
        }
        self.offered.insert(assignment_id)
    }

    fn unsubscribe(&mut self) {
        self.subscribed = false;
        self.offered.clear();
        self.receipts = None;
        self.replay = None;
    }
}

pub struct Router {
    settings: RouterSettings,
    connections: HashMap<ConnId, Connection>,
    by_master: ConnIndex<MasterId>,
    by_user: ConnIndex<UserId>,
    event_listeners: HashSet<ConnId>,
    authentications: u64,
    redeliveries: receipts::Redeliveries,
    churn_since_trim: u32,
    last_churn: std::time::Instant,
    trim_scheduled: bool,
    metrics: Arc<Metrics>,
    /// Offers lately decided, so that catching up on a stale read does not offer them again.
    recently_decided: RecentlyDecided,
}

/// The last `RECENTLY_DECIDED` decided offers.
#[derive(Default)]
struct RecentlyDecided {
    order: std::collections::VecDeque<AssignmentId>,
    ids: HashSet<AssignmentId>,
}

/// Decisions remembered; at 50 a second, the last twenty minutes.
const RECENTLY_DECIDED: usize = 65_536;

impl RecentlyDecided {
    fn insert(&mut self, id: AssignmentId) {
        if !self.ids.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > RECENTLY_DECIDED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
    }

    fn contains(&self, id: &AssignmentId) -> bool {
        self.ids.contains(id)
    }
}

impl Router {
    pub fn new(settings: RouterSettings, metrics: Arc<Metrics>) -> Self {
        Router {
            metrics,
            settings,
            connections: HashMap::new(),
            by_master: ConnIndex::default(),
            by_user: ConnIndex::default(),
            event_listeners: HashSet::new(),
            authentications: 0,
            redeliveries: receipts::Redeliveries::default(),
            churn_since_trim: 0,
            last_churn: std::time::Instant::now(),
            trim_scheduled: false,
            recently_decided: RecentlyDecided::default(),
        }
    }

    /// Queues a frame for an audience; answers how many connections took it.
    fn deliver(&mut self, audience: Audience, frame: Frame) -> usize {
        match audience {
            Audience::Offer(master_id, assignment_id) => {
                let targets = self.by_master.ids(&master_id);
                targets
                    .into_iter()
                    .filter(|&id| self.offer_to(id, assignment_id, frame.clone()))
                    .count()
            }
            Audience::Master(master_id) => {
                let targets = self.by_master.ids(&master_id);
                self.deliver_each(targets, frame)
            }
            Audience::Client(user_id) => {
                let clients = self
                    .by_user
                    .get(&user_id)
                    .filter(|id| {
                        self.connections
                            .get(id)
                            .and_then(|c| c.user)
                            .is_some_and(|u| u.role == Role::Client)
                    })
                    .collect::<smallvec::SmallVec<[ConnId; 2]>>();
                self.deliver_each(clients, frame)
            }
            Audience::EventListeners => {
                let targets: Vec<ConnId> = self.event_listeners.iter().copied().collect();
                self.deliver_each(targets, frame)
            }
            Audience::Users(user_ids, topic) => {
                let targets: Vec<ConnId> = user_ids
                    .iter()
                    .flat_map(|user_id| self.by_user.get(user_id))
                    .filter(|id| match &topic {
                        None => true,
                        Some(topic) => self
                            .connections
                            .get(id)
                            .is_some_and(|c| c.topics.iter().any(|t| **t == **topic)),
                    })
                    .collect();
                self.deliver_each(targets, frame)
            }
        }
    }

    fn deliver_each(&mut self, targets: impl IntoIterator<Item = ConnId>, frame: Frame) -> usize {
        targets
            .into_iter()
            .filter(|&id| self.send_to(id, frame.clone()))
            .count()
    }

    /// Sends an offer to one subscribed connection unless it has had it already.
    fn offer_to(&mut self, id: ConnId, assignment_id: AssignmentId, frame: Frame) -> bool {
        let Some(conn) = self.connections.get_mut(&id) else {
            return false;
        };
        if !conn.subscribed || !conn.remember(assignment_id) {
            return false;
        }
        self.send_to(id, frame)
    }

    /// Queues, paced, the offers a subscribed connection has not been sent yet, as many as its
    /// queue has room for (see [`replay`](replay::Replay)).
    fn replay(&mut self, id: ConnId, offers: &[Offer]) {
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        if !conn.subscribed {
            return;
        }
        let replay = conn.replay.get_or_insert_with(Box::default);
        let (mut room, idle) = (replay.room(&conn.outbox), replay.is_idle(&conn.outbox));
        let mut unsent = Vec::new();
        let mut left_out = false;
        for offer in offers {
            if conn.offered.contains(&offer.assignment_id) {
                continue;
            }
            let size = replay::frame_size(offer);
            // An idle replay takes one offer however large, so that it moves on.
            if size > room && !(idle && unsent.is_empty()) {
                left_out = true;
                break;
            }
            room = room.saturating_sub(size);
            conn.remember(offer.assignment_id);
            unsent.push(offer.clone());
        }
        if conn.receipts.is_some() {
            let now = now_ms();
            for offer in &unsent {
                self.await_receipt(id, &std::sync::Arc::new(offer.clone()), now);
            }
        }
        if let Some(conn) = self.connections.get_mut(&id) {
            let replay = conn.replay.get_or_insert_with(Box::default);
            let asker = replay::Asker {
                more: &conn.replay_more,
                in_flight: &self.metrics.replays_in_flight,
            };
            replay.add(unsent, left_out, &conn.outbox, asker);
        }
    }

    /// A decided offer is no longer open, so it need not be remembered.
    fn forget_offer(&mut self, master_id: MasterId, assignment_id: AssignmentId) {
        self.recently_decided.insert(assignment_id);
        for id in self.by_master.get(&master_id) {
            if let Some(conn) = self.connections.get_mut(&id) {
                conn.offered.remove(&assignment_id);
                if let Some(replay) = &conn.replay {
                    replay.forget(assignment_id);
                }
                if let Some(receipts) = conn.receipts.as_mut() {
                    receipts.stop_waiting(assignment_id);
                }
            }
        }
    }

    /// Queues a frame for one connection; a full queue marks a slow consumer, which is closed.
    fn send_to(&mut self, id: ConnId, frame: Frame) -> bool {
        let Some(conn) = self.connections.get(&id) else {
            return false;
        };
        match conn.outbox.text(frame) {
            Ok(()) => true,
            Err(QueueError::Full) => {
                self.metrics.slow_consumers.inc();
                log::warn!("connection {id:016x} is not reading its messages; closing it");
                conn.control.do_send(CloseConnection {
                    code: CloseCode::Policy,
                    reason: "slow consumer",
                });
                self.remove(id);
                false
            }
            Err(QueueError::Closed) => {
                self.remove(id);
                false
            }
        }
    }

    fn remove(&mut self, id: ConnId) {
        let Some(conn) = self.connections.remove(&id) else {
            return;
        };
        self.metrics
            .connections
            .with_label_values(&[Role::label(conn.user.map(|u| u.role))])
            .dec();
        if conn.subscribed
            && let Some(master_id) = conn.user.and_then(|u| u.master())
        {
            self.note_unsubscribed(master_id);
        }
        self.event_listeners.remove(&id);
        if let Some(user) = conn.user {
            self.by_user.remove(user.user_id, id);
            if let Some(master_id) = user.master() {
                self.by_master.remove(master_id, id);
            }
        }
    }

    /// Closes a user's oldest connections past `MAX_CONNECTIONS_PER_USER`, so that a phone that
    /// reconnects is never locked out by its own half-dead socket. Staff are not capped.
    fn enforce_per_user_cap(&mut self, user: AuthUser) {
        if user.role.is_staff() {
            return;
        }
        let mut capped: Vec<(u64, ConnId)> = self
            .by_user
            .get(&user.user_id)
            .filter_map(|id| {
                let conn = self.connections.get(&id)?;
                let role = conn.user?.role;
                (!role.is_staff()).then_some((conn.authenticated_seq, id))
            })
            .collect();
        let cap = self.settings.max_connections_per_user;
        if capped.len() <= cap {
            return;
        }
        capped.sort_unstable();
        let excess = capped.len() - cap;
        for &(_, id) in &capped[..excess] {
            if let Some(conn) = self.connections.get(&id) {
                log::info!(
                    "connection {id:016x} of user {} replaced by a newer connection",
                    user.user_id
                );
                conn.control.do_send(CloseConnection {
                    code: CloseCode::Policy,
                    reason: "replaced by a newer connection",
                });
            }
            self.remove(id);
        }
    }

    /// glibc keeps the memory of closed connections resident. After a wave of connects and
    /// disconnects (a reconnect storm) has settled, ask it to give free pages back, on a blocking
    /// thread.
    fn note_churn(&mut self, ctx: &mut Context<Self>) {
        self.churn_since_trim += 1;
        self.last_churn = std::time::Instant::now();
        if self.churn_since_trim >= CHURN_BEFORE_TRIM && !self.trim_scheduled {
            self.trim_scheduled = true;
            ctx.run_later(CHURN_QUIET, Self::trim_when_quiet);
        }
    }

    fn trim_when_quiet(&mut self, ctx: &mut Context<Self>) {
        let quiet_for = self.last_churn.elapsed();
        if quiet_for < CHURN_QUIET {
            ctx.run_later(CHURN_QUIET - quiet_for, Self::trim_when_quiet);
            return;
        }
        self.trim_scheduled = false;
        self.churn_since_trim = 0;
        actix_web::rt::task::spawn_blocking(release_memory);
    }

    /// Whether any of this master's connections is subscribed to offers.
    fn master_subscribed(&self, master_id: MasterId) -> bool {
        self.by_master
            .get(&master_id)
            .any(|id| self.connections.get(&id).is_some_and(|c| c.subscribed))
    }

    /// A master's connection subscribed: counts him if it is his first.
    fn note_subscribed(&mut self, master_id: MasterId) {
        // Called before the connection is marked, so "none yet" is what is checked.
        if !self.master_subscribed(master_id) {
            self.metrics.subscribed_masters.inc();
        }
    }

    /// A master's connection stopped being subscribed: uncounts him if it was his last.
    fn note_unsubscribed(&mut self, master_id: MasterId) {
        if !self.master_subscribed(master_id) {
            self.metrics.subscribed_masters.dec();
        }
    }

    fn unsubscribe(&mut self, id: ConnId) {
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        if !conn.subscribed {
            return;
        }
        conn.unsubscribe();
        if let Some(master_id) = conn.user.and_then(|u| u.master()) {
            self.note_unsubscribed(master_id);
        }
    }

    fn drop_idle_subscriptions(&mut self) {
        let cutoff = now_ms() - self.settings.subscription_timeout.as_millis() as i64;
        let idle: Vec<ConnId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.subscribed && c.last_ping.get().unwrap_or(i64::MIN) < cutoff)
            .map(|(&id, _)| id)
            .collect();
        if idle.is_empty() {
            return;
        }
        for &id in &idle {
            self.unsubscribe(id);
        }
        log::info!("dropped {} idle subscriptions", idle.len());
        let frame = ServerMessage::UnsubscribedAssignments {
            reason: Some("idle"),
        }
        .frame(None);
        for id in idle {
            self.send_to(id, frame.clone());
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_memory() {
    // SAFETY: malloc_trim only inspects and shrinks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_memory() {}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(self.settings.cleanup_interval, |act, _| {
            act.drop_idle_subscriptions()
        });
        ctx.run_interval(REDELIVERY_TICK, |act, _| act.redeliver_due());
    }
}
