//! The Dispatcher actor: who is connected and subscribed, the cleanup and expiry timers, and routing.
//!
//! It never touches the database on its own thread: expiry writes run on blocking threads and
//! their results come back as messages.

mod expiry;
mod handlers;
pub mod messages;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Recipient, SpawnHandle, WrapFuture};
use actix_ws::CloseCode;
use bytestring::ByteString;

pub use expiry::ExpiryQueue;
use messages::{CloseConnection, ConnId, DomainEvent, PingClock};

use crate::{
    auth::AuthUser,
    db::{self, DbError, DbPool, models::Assignment},
    time::{iso, now_ms},
    ws::{
        outbox::{Outbox, QueueError},
        protocol::{AssignmentEventKind, ServerMessage},
    },
};

/// Bounds the Dispatcher's mailbox; senders that use `send` wait for room.
const MAILBOX_CAPACITY: usize = 65_536;
/// Offers remembered per connection to avoid sending one twice; past this the memory starts over.
const MAX_REMEMBERED_OFFERS: usize = 1024;
/// After this many connects and disconnects, once they have stopped for `CHURN_QUIET`, freed
/// memory is handed back to the OS.
const CHURN_BEFORE_TRIM: u32 = 512;
const CHURN_QUIET: Duration = Duration::from_millis(500);
/// When the database refuses an expiry write, try again this much later.
const EXPIRY_RETRY_MS: i64 = 1_000;

/// The timing settings the Dispatcher needs.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    pub subscription_timeout: Duration,
    pub cleanup_interval: Duration,
}

struct Connection {
    outbox: Outbox,
    control: Recipient<CloseConnection>,
    user: Option<AuthUser>,
    subscribed: bool,
    last_ping: PingClock,
    /// Open offers this connection has been sent since it subscribed.
    offered: HashSet<i64>,
}

impl Connection {
    pub fn new(outbox: Outbox, control: Recipient<CloseConnection>, last_ping: PingClock) -> Self {
        Connection {
            outbox,
            control,
            user: None,
            subscribed: false,
            last_ping,
            offered: HashSet::new(),
        }
    }

    fn unsubscribe(&mut self) {
        self.subscribed = false;
        self.offered.clear();
    }
}

/// Who a message is for. A multi-node backplane would carry `(Audience, message)` pairs, and
/// offers as `(master, assignment, message)`, to every node; each node would deliver them to its
/// own connections with [`Dispatcher::deliver_local`] and [`Dispatcher::offer`].
#[derive(Debug, Clone, Copy)]
pub enum Audience {
    /// All of a master's connections.
    Master(i64),
    /// All connections of a user.
    User(i64),
    /// Service and admin connections that subscribed to events.
    EventListeners,
}

pub struct Dispatcher {
    pool: DbPool,
    settings: DispatcherSettings,
    connections: HashMap<ConnId, Connection>,
    by_master: HashMap<i64, Vec<ConnId>>,
    by_user: HashMap<i64, Vec<ConnId>>,
    event_listeners: HashSet<ConnId>,
    expiry: ExpiryQueue,
    expiry_timer: Option<(i64, SpawnHandle)>,
    churn_since_trim: u32,
    last_churn: std::time::Instant,
    trim_scheduled: bool,
}

impl Dispatcher {
    pub fn new(pool: DbPool, settings: DispatcherSettings) -> Self {
        Dispatcher {
            pool,
            settings,
            connections: HashMap::new(),
            by_master: HashMap::new(),
            by_user: HashMap::new(),
            event_listeners: HashSet::new(),
            expiry: ExpiryQueue::default(),
            expiry_timer: None,
            churn_since_trim: 0,
            last_churn: std::time::Instant::now(),
            trim_scheduled: false,
        }
    }

    /// Sends an offer to a master's subscribed connections that have not had it yet.
    pub fn offer(&mut self, master_id: i64, assignment_id: i64, text: ByteString) -> usize {
        let targets = self.by_master.get(&master_id).cloned().unwrap_or_default();
        targets
            .into_iter()
            .filter(|&id| self.offer_to(id, assignment_id, text.clone()))
            .count()
    }

    fn offer_to(&mut self, id: ConnId, assignment_id: i64, text: ByteString) -> bool {
        let Some(conn) = self.connections.get_mut(&id) else {
            return false;
        };
        if !conn.subscribed || conn.offered.contains(&assignment_id) {
            return false;
        }
        if conn.offered.len() >= MAX_REMEMBERED_OFFERS {
            conn.offered.clear();
        }
        conn.offered.insert(assignment_id);
        self.send_to(id, text)
    }

    /// The one place notifications leave the Dispatcher; answers how many connections got it.
    fn publish(&mut self, audience: Audience, message: &ServerMessage) -> usize {
        self.deliver_local(audience, message.encode(None))
    }

    pub fn deliver_local(&mut self, audience: Audience, text: ByteString) -> usize {
        let targets: &[ConnId] = match audience {
            Audience::Master(master_id) => {
                self.by_master.get(&master_id).map_or(&[], Vec::as_slice)
            }
            Audience::User(user_id) => self.by_user.get(&user_id).map_or(&[], Vec::as_slice),
            Audience::EventListeners => {
                let listeners: Vec<ConnId> = self.event_listeners.iter().copied().collect();
                return self.deliver_each(&listeners, text);
            }
        };
        if let [only] = *targets {
            return usize::from(self.send_to(only, text));
        }
        let targets = targets.to_vec();
        self.deliver_each(&targets, text)
    }

    fn deliver_each(&mut self, targets: &[ConnId], text: ByteString) -> usize {
        targets
            .iter()
            .filter(|&&id| self.send_to(id, text.clone()))
            .count()
    }

    /// Queues a frame for one connection; a full queue marks a slow consumer, which is closed.
    fn send_to(&mut self, id: ConnId, text: ByteString) -> bool {
        let Some(conn) = self.connections.get(&id) else {
            return false;
        };
        match conn.outbox.text(text) {
            Ok(()) => true,
            Err(QueueError::Full) => {
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
        self.event_listeners.remove(&id);
        if let Some(user) = conn.user {
            unindex(&mut self.by_user, user.user_id, id);
            if let Some(master_id) = user.master() {
                unindex(&mut self.by_master, master_id, id);
            }
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

    fn on_event(&mut self, ctx: &mut Context<Self>, event: DomainEvent) {
        match event {
            DomainEvent::Decided { assignment, kind } => self.on_decided(ctx, &assignment, kind),
            DomainEvent::OrderStatusChanged(order) => {
                let message = ServerMessage::OrderStatusUpdate {
                    order_id: order.id,
                    status: order.status.clone(),
                    updated_at: iso(order.updated_at),
                };
                let mut audiences = vec![Audience::User(order.client_user_id)];
                audiences.extend(order.master_id.map(Audience::Master));
                let text = message.encode(None);
                for audience in audiences {
                    self.deliver_local(audience, text.clone());
                }
            }
        }
    }

    fn on_decided(&mut self, ctx: &mut Context<Self>, a: &Assignment, kind: AssignmentEventKind) {
        self.expiry.disarm(a.id);
        self.schedule_expiry(ctx);
        for id in self.by_master.get(&a.master_id).into_iter().flatten() {
            if let Some(conn) = self.connections.get_mut(id) {
                conn.offered.remove(&a.id);
            }
        }
        let (assignment_id, order_id) = (a.id, a.order_id);
        let to_master = match kind {
            AssignmentEventKind::Expired => Some(ServerMessage::AssignmentExpired {
                assignment_id,
                order_id,
            }),
            AssignmentEventKind::Cancelled => Some(ServerMessage::AssignmentCancelled {
                assignment_id,
                order_id,
            }),
            AssignmentEventKind::Accepted | AssignmentEventKind::Rejected => None,
        };
        if let Some(message) = to_master {
            self.publish(Audience::Master(a.master_id), &message);
        }
        let event = ServerMessage::AssignmentEvent {
            event: kind,
            assignment_id,
            order_id,
            master_id: a.master_id,
            at: iso(a.decided_at.unwrap_or_else(now_ms)),
        };
        self.publish(Audience::EventListeners, &event);
    }

    /// Keeps exactly one timer, set for the earliest pending deadline.
    fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        let next = self.expiry.next_deadline();
        if let Some((armed_for, handle)) = self.expiry_timer {
            if Some(armed_for) == next {
                return;
            }
            ctx.cancel_future(handle);
            self.expiry_timer = None;
        }
        if let Some(deadline) = next {
            let delay = Duration::from_millis((deadline - now_ms()).max(0) as u64);
            let handle = ctx.run_later(delay, |act, ctx| {
                act.expiry_timer = None;
                act.expire_due(ctx);
            });
            self.expiry_timer = Some((deadline, handle));
        }
    }

    fn expire_due(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let due = self.expiry.pop_due(now);
        if !due.is_empty() {
            let pool = self.pool.clone();
            let ids = due.clone();
            let write = async move {
                db::run(&pool, move |conn| {
                    Assignment::expire_due(conn, &ids, now).map_err(DbError::from)
                })
                .await
            };
            ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
                match result {
                    Ok(expired) => {
                        for a in &expired {
                            act.on_decided(ctx, a, AssignmentEventKind::Expired);
                        }
                    }
                    Err(e) => {
                        log::warn!("could not expire {} assignments, retrying: {e}", due.len());
                        for id in due {
                            act.expiry.arm(id, now_ms() + EXPIRY_RETRY_MS);
                        }
                    }
                }
                act.schedule_expiry(ctx);
            }));
        }
        self.schedule_expiry(ctx);
    }

    fn drop_idle_subscriptions(&mut self) {
        let cutoff = now_ms() - self.settings.subscription_timeout.as_millis() as i64;
        let idle: Vec<ConnId> = self
            .connections
            .iter_mut()
            .filter(|(_, c)| c.subscribed && c.last_ping.get().unwrap_or(i64::MIN) < cutoff)
            .map(|(&id, c)| {
                c.unsubscribe();
                id
            })
            .collect();
        if idle.is_empty() {
            return;
        }
        log::info!("dropped {} idle subscriptions", idle.len());
        let text = ServerMessage::UnsubscribedAssignments {
            reason: Some("idle"),
        }
        .encode(None);
        for id in idle {
            self.send_to(id, text.clone());
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

fn unindex(index: &mut HashMap<i64, Vec<ConnId>>, key: i64, id: ConnId) {
    if let Some(ids) = index.get_mut(&key) {
        ids.retain(|&c| c != id);
        if ids.is_empty() {
            index.remove(&key);
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(self.settings.cleanup_interval, |act, _| {
            act.drop_idle_subscriptions()
        });
    }
}
