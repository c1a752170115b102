//! What callers can do to orders, assignments and masters. HTTP routes and WebSocket messages both
//! come here after their role checks, so both answer the same way.
//!
//! Each operation decides and stores first, then publishes what changed on the event bus; it
//! builds no frames, so pushes only ever follow committed changes.

pub mod error;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use diesel::RunQueryDsl;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use crate::{
    bus::EventBus,
    domain::AuthUser,
    domain::time::now_ms,
    domain::{
        AssignmentId, Decision, DispatchId, DispatchMode, DomainEvent, MasterId, Offer,
        OrderStatus, Outcome, Push, UserId,
    },
    metrics::{Metrics, ms_to_secs},
    protocol::{check_push_type, check_topic},
    service::error::AppError,
    stats::offer_figures::{self, OfferFigures},
    storage::{
        self, DbConn, DbPool,
        dispatches::{Dispatch, DispatchPlan, DispatchRefused, DispatchState},
        models::{Accepted, Assignment, Deadline, Master, OfferRefused, Order, OrderFields},
        webhook_events::WebhookEvent,
        write_tx,
    },
    webhooks,
};

/// Users one push may name.
pub const MAX_PUSH_USERS: usize = 1000;

/// Candidates one dispatch may name.
pub const MAX_DISPATCH_CANDIDATES: usize = 100;

/// The longest response deadline an offer may ask for.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which masters have a connection subscribed to offers now, on any node: what `skipOffline`
/// asks. Answered by the Dispatcher and, between nodes, by their presence in Redis.
pub trait Presence: Send + Sync + 'static {
    fn subscribed_among(&self, masters: Vec<MasterId>) -> BoxFuture<'static, HashSet<MasterId>>;
}

/// What `POST /api/v1/orders/{id}/dispatch` asks for.
#[derive(Debug, Clone)]
pub struct DispatchRequest {
    pub candidates: Vec<i64>,
    pub ttl: Option<Duration>,
    pub mode: DispatchMode,
    pub batch_size: i64,
    pub skip_offline: bool,
}

#[derive(Clone)]
pub struct Service {
    pool: DbPool,
    bus: EventBus,
    default_ttl: Duration,
    presence: Arc<dyn Presence>,
    /// Set when webhooks are on: events are recorded for them, and this wakes their sender.
    webhooks: Option<Arc<Notify>>,
    metrics: Arc<Metrics>,
}

impl Service {
    pub fn new(
        pool: DbPool,
        bus: EventBus,
        default_ttl: Duration,
        presence: Arc<dyn Presence>,
        webhooks: Option<Arc<Notify>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Service {
            pool,
            bus,
            default_ttl,
            presence,
            webhooks,
            metrics,
        }
    }

    /// Runs a decision in one write transaction together with what follows from its events:
    /// the dispatches of their orders, and the webhook outbox. Once committed, publishes the
    /// events and takes the dispatch steps they call for. Answers the decision's value and how
    /// many of this node's connections an offer among the events reached.
    async fn commit<T, F>(&self, decide: F) -> Result<(T, usize), AppError>
    where
        F: FnOnce(&mut DbConn) -> Result<(T, Vec<DomainEvent>), AppError> + Send + 'static,
        T: Send + 'static,
    {
        let now = now_ms();
        let record_webhooks = self.webhooks.is_some();
        let (value, events, to_step) = self
            .with_db(move |conn| {
                write_tx(conn, |conn| {
                    let (value, mut events) = decide(conn)?;
                    let followed = Dispatch::follow(conn, &events, now)?;
                    events.extend(followed.ended.into_iter().map(DomainEvent::DispatchEnded));
                    if record_webhooks {
                        WebhookEvent::record(conn, &webhooks::bodies(&events), now)?;
                    }
                    Ok((value, events, followed.to_step))
                })
            })
            .await?;
        if let Some(wake) = &self.webhooks {
            wake.notify_one();
        }
        self.count(&events);
        let reached = self.bus.publish(events).await;
        if !to_step.is_empty() {
            let service = self.clone();
            actix_web::rt::spawn(async move { service.step_logged(to_step).await });
        }
        Ok((value, reached))
    }

    /// Runs database work for a request on a blocking thread.
    async fn with_db<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut storage::DbConn) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        storage::run(&self.pool, f).await
    }

    /// Whether the database answers.
    pub async fn database_ok(&self) -> bool {
        self.with_db(|conn| Ok(diesel::sql_query("SELECT 1").execute(conn)?))
            .await
            .is_ok()
    }

    pub async fn upsert_order(&self, id: i64, fields: OrderFields) -> Result<Order, AppError> {
        positive("order id", id)?;
        positive("clientUserId", fields.client_user_id)?;
        let now = now_ms();
        self.with_db(move |conn| Ok(Order::upsert(conn, id, &fields, now)?))
            .await
    }

    pub async fn set_order_status(&self, id: i64, status: OrderStatus) -> Result<Order, AppError> {
        positive("order id", id)?;
        let now = now_ms();
        let (order, _) = self
            .commit(move |conn| {
                let (order, cancelled) = Order::set_status(conn, id, status, now)?
                    .ok_or_else(|| AppError::NotFound(format!("order {id} not found")))?;
                let mut events = decided(&cancelled, Outcome::Cancelled);
                events.push(DomainEvent::OrderStatusChanged(order.status_change()));
                Ok((order, events))
            })
            .await?;
        Ok(order)
    }

    /// Stores an offer and publishes it; answers the assignment and how many of this node's
    /// connections it reached.
    pub async fn offer(
        &self,
        order_id: i64,
        master_id: i64,
        ttl: Option<Duration>,
    ) -> Result<(Assignment, usize), AppError> {
        positive("orderId", order_id)?;
        positive("masterId", master_id)?;
        let ttl = self.checked_ttl(ttl)?;
        let now = now_ms();
        let expires_at = now + ttl.as_millis() as i64;
        self.commit(move |conn| {
            match Assignment::insert_offer(conn, order_id, master_id, now, expires_at)? {
                Ok((assignment, order)) => {
                    let offered = DomainEvent::Offered(assignment.offer(&order));
                    Ok((assignment, vec![offered]))
                }
                Err(OfferRefused::OrderNotFound) => {
                    Err(AppError::NotFound(format!("order {order_id} not found")))
                }
                Err(OfferRefused::OrderClosed) => Err(AppError::Conflict(format!(
                    "order {order_id} is already accepted, completed or cancelled"
                ))),
                Err(OfferRefused::AlreadyOffered) => Err(AppError::Conflict(format!(
                    "order {order_id} already has a pending offer to master {master_id}"
                ))),
            }
        })
        .await
    }

    pub async fn get_assignment(&self, user: AuthUser, id: i64) -> Result<Assignment, AppError> {
        positive("assignment id", id)?;
        self.with_db(move |conn| visible(conn, &user, id)).await
    }

    /// A master takes the order: the first accept wins, the order's other offers are cancelled.
    pub async fn accept(&self, user: AuthUser, id: i64) -> Result<Accepted, AppError> {
        positive("assignment id", id)?;
        let now = now_ms();
        let (accepted, _) = self
            .commit(move |conn| {
                visible(conn, &user, id)?;
                let accepted =
                    Assignment::accept(conn, id, now)?.ok_or(AppError::NotPending(id))?;
                let mut events = decided(
                    std::slice::from_ref(&accepted.assignment),
                    Outcome::Accepted,
                );
                events.extend(decided(&accepted.cancelled, Outcome::Cancelled));
                events.push(DomainEvent::OrderStatusChanged(
                    accepted.order.status_change(),
                ));
                Ok((accepted, events))
            })
            .await?;
        Ok(accepted)
    }

    /// A master's app acknowledges that an offer reached it. The first acknowledgement records
    /// `deliveredAt` and tells event listeners; repeats change nothing.
    pub async fn acknowledge(&self, user: AuthUser, id: i64) -> Result<(), AppError> {
        positive("assignmentId", id)?;
        let Some(master_id) = user.master() else {
            return Err(AppError::Forbidden(
                "only masters acknowledge offers".into(),
            ));
        };
        let now = now_ms();
        self.commit(move |conn| {
            let first = Assignment::mark_delivered(conn, id, master_id.0, now)?;
            Ok(((), first.into_iter().map(DomainEvent::Delivered).collect()))
        })
        .await?;
        Ok(())
    }

    /// A master turns an offer down before its deadline.
    pub async fn reject(
        &self,
        user: AuthUser,
        id: i64,
        reason: Option<String>,
    ) -> Result<Assignment, AppError> {
        let now = now_ms();
        self.decide(user, id, Outcome::Rejected, Deadline::Before(now), reason)
            .await
    }

    /// Staff withdraw an offer, at any time.
    pub async fn cancel(&self, user: AuthUser, id: i64) -> Result<Assignment, AppError> {
        self.decide(user, id, Outcome::Cancelled, Deadline::Ignored, None)
            .await
    }

    async fn decide(
        &self,
        user: AuthUser,
        id: i64,
        outcome: Outcome,
        deadline: Deadline,
        reason: Option<String>,
    ) -> Result<Assignment, AppError> {
        positive("assignment id", id)?;
        let now = now_ms();
        let (assignment, _) = self
            .commit(move |conn| {
                visible(conn, &user, id)?;
                let assignment = Assignment::decide_one(
                    conn,
                    id,
                    outcome.status(),
                    deadline,
                    now,
                    reason.as_deref(),
                )?
                .ok_or(AppError::NotPending(id))?;
                let events = decided(std::slice::from_ref(&assignment), outcome);
                Ok((assignment, events))
            })
            .await?;
        Ok(assignment)
    }

    /// Counts the offers made and decided here (so that over all nodes, each is counted once).
    fn count(&self, events: &[DomainEvent]) {
        for event in events {
            match event {
                DomainEvent::Offered(_) => {
                    self.metrics.offers.with_label_values(&["created"]).inc()
                }
                DomainEvent::Decided(d) => {
                    self.metrics.offer_decided(d.outcome, d.offered_at, d.at)
                }
                _ => {}
            }
        }
    }

    /// Expires those of these offers that are still pending and due; answers how many.
    pub async fn expire_due(&self, ids: Vec<AssignmentId>) -> Result<usize, AppError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let ((count, lateness), _) = self
            .commit(move |conn| {
                let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
                let expired = Assignment::expire_due(conn, &ids, now)?;
                let lateness: Vec<i64> = expired.iter().map(|a| now - a.expires_at).collect();
                Ok((
                    (expired.len(), lateness),
                    decided(&expired, Outcome::Expired),
                ))
            })
            .await?;
        for late in lateness {
            self.metrics.expiry_lateness.observe(ms_to_secs(late));
        }
        Ok(count)
    }

    /// The deadline of every pending offer, for arming the expiry timers at start.
    pub async fn pending_deadlines(&self) -> Result<Vec<(AssignmentId, i64)>, AppError> {
        let pending = self
            .with_db(|conn| Ok(Assignment::all_pending(conn)?))
            .await?;
        Ok(pending.iter().map(|a| (a.id(), a.expires_at)).collect())
    }

    /// Starts a cascade of offers of an order and takes its first step.
    pub async fn dispatch(
        &self,
        order_id: i64,
        request: DispatchRequest,
    ) -> Result<DispatchState, AppError> {
        positive("order id", order_id)?;
        let bad = AppError::BadRequest;
        let count = request.candidates.len();
        if count == 0 || count > MAX_DISPATCH_CANDIDATES {
            return Err(bad(format!(
                "candidates must hold 1 to {MAX_DISPATCH_CANDIDATES} master ids, not {count}"
            )));
        }
        let mut seen = HashSet::with_capacity(count);
        for &id in &request.candidates {
            positive("candidates", id)?;
            if !seen.insert(id) {
                return Err(bad(format!("candidates name master {id} twice")));
            }
        }
        if request.batch_size < 1 {
            return Err(bad(format!(
                "batchSize must be at least 1, not {}",
                request.batch_size
            )));
        }
        let ttl = self.checked_ttl(request.ttl)?;
        let online = if request.skip_offline {
            self.subscribed_among(&request.candidates).await
        } else {
            HashSet::new()
        };
        let plan = DispatchPlan {
            order_id,
            mode: request.mode,
            batch_size: request.batch_size,
            ttl_ms: ttl.as_millis() as i64,
            skip_offline: request.skip_offline,
            candidates: request.candidates,
        };
        let now = now_ms();
        let (state, _) = self
            .commit(
                move |conn| match Dispatch::create(conn, &plan, &online, now)? {
                    Ok((state, step)) => Ok((state, step.events())),
                    Err(DispatchRefused::OrderNotFound) => {
                        Err(AppError::NotFound(format!("order {order_id} not found")))
                    }
                    Err(DispatchRefused::OrderTaken) => Err(AppError::Conflict(format!(
                        "order {order_id} is already taken, completed or cancelled"
                    ))),
                    Err(DispatchRefused::AlreadyDispatching(running)) => {
                        Err(AppError::Conflict(format!(
                            "order {order_id} is already being dispatched (dispatch {running})"
                        )))
                    }
                },
            )
            .await?;
        Ok(state)
    }

    pub async fn get_dispatch(&self, id: i64) -> Result<DispatchState, AppError> {
        positive("dispatch id", id)?;
        self.with_db(move |conn| {
            Dispatch::find(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("dispatch {id} not found")))
        })
        .await
    }

    /// Cancels a running dispatch and its outstanding offers.
    pub async fn cancel_dispatch(&self, id: i64) -> Result<DispatchState, AppError> {
        positive("dispatch id", id)?;
        let now = now_ms();
        self.commit(move |conn| match Dispatch::cancel(conn, id, now)? {
            None => Err(AppError::NotFound(format!("dispatch {id} not found"))),
            Some(Err(status)) => Err(AppError::Conflict(format!(
                "dispatch {id} has ended already ({status})"
            ))),
            Some(Ok((end, cancelled))) => {
                let mut events = decided(&cancelled, Outcome::Cancelled);
                events.push(DomainEvent::DispatchEnded(end));
                Ok(((), events))
            }
        })
        .await?;
        self.get_dispatch(id).await
    }

    /// Offers dispatches to their next candidates, when decisions left them short of offers.
    /// A burst (many offers expiring at once) is taken in batches side by side, each with one
    /// read, one presence check and one transaction, so the first offers go out early.
    pub async fn step(&self, ids: Vec<DispatchId>) -> Result<(), AppError> {
        const BATCH: usize = 10;
        let batches = ids
            .chunks(BATCH)
            .map(|batch| self.step_batch(batch.to_vec()));
        futures_util::future::join_all(batches)
            .await
            .into_iter()
            .collect()
    }

    async fn step_batch(&self, ids: Vec<DispatchId>) -> Result<(), AppError> {
        let raw: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let waiting = {
            let raw = raw.clone();
            self.with_db(move |conn| Ok(Dispatch::waiting_candidates(conn, &raw)?))
                .await?
        };
        let online = self.subscribed_among(&waiting).await;
        let now = now_ms();
        self.commit(move |conn| {
            let mut events = Vec::new();
            for id in raw {
                events.extend(Dispatch::step(conn, id, &online, now)?.events());
            }
            Ok(((), events))
        })
        .await?;
        Ok(())
    }

    async fn step_logged(&self, ids: Vec<DispatchId>) {
        if let Err(e) = self.step(ids.clone()).await {
            log::warn!("dispatches {ids:?}: the next step failed ({e}); the sweep takes it again");
        }
    }

    /// Takes the steps that the node which decided did not take (it died, or the database
    /// failed in between).
    pub async fn step_overdue(&self, overdue_after: Duration) -> Result<usize, AppError> {
        let before = now_ms() - overdue_after.as_millis() as i64;
        let overdue = self
            .with_db(move |conn| Ok(Dispatch::needing_step(conn, before)?))
            .await?;
        let count = overdue.len();
        if count > 0 {
            self.step(overdue.into_iter().map(DispatchId).collect())
                .await?;
        }
        Ok(count)
    }

    async fn subscribed_among(&self, masters: &[i64]) -> HashSet<i64> {
        if masters.is_empty() {
            return HashSet::new();
        }
        let masters = masters.iter().copied().map(MasterId).collect();
        self.presence
            .subscribed_among(masters)
            .await
            .into_iter()
            .map(|m| m.0)
            .collect()
    }

    fn checked_ttl(&self, ttl: Option<Duration>) -> Result<Duration, AppError> {
        let ttl = ttl.unwrap_or(self.default_ttl);
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(AppError::BadRequest(format!(
                "ttlSeconds must be between 1 and {}",
                MAX_TTL.as_secs()
            )));
        }
        Ok(ttl)
    }

    /// A master's offers still open, as `new_assignment` shows them.
    pub async fn pending_offers(&self, master_id: MasterId) -> Result<Vec<Offer>, AppError> {
        self.pending_offers_of(vec![master_id]).await
    }

    /// The open offers of several masters, oldest first.
    pub async fn pending_offers_of(
        &self,
        master_ids: Vec<MasterId>,
    ) -> Result<Vec<Offer>, AppError> {
        /// Keeps each query well under the backends' limits on bound parameters.
        const CHUNK: usize = 1000;
        let now = now_ms();
        let ids: Vec<i64> = master_ids.iter().map(|m| m.0).collect();
        let rows = self
            .with_db(move |conn| {
                let mut rows = Vec::new();
                for chunk in ids.chunks(CHUNK) {
                    rows.extend(Assignment::pending_for_masters(conn, chunk, now)?);
                }
                Ok(rows)
            })
            .await?;
        Ok(rows.iter().map(|(a, o)| a.offer(o)).collect())
    }

    /// How those of these offers that are no longer pending ended.
    pub async fn decisions_among(&self, ids: Vec<AssignmentId>) -> Result<Vec<Decision>, AppError> {
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let decided = self
            .with_db(move |conn| Ok(Assignment::decided_among(conn, &ids)?))
            .await?;
        Ok(decided
            .iter()
            .filter_map(|a| Some(a.decision(a.outcome()?)))
            .collect())
    }

    pub async fn set_shift(&self, master_id: i64, on_shift: bool) -> Result<Master, AppError> {
        positive("master id", master_id)?;
        let now = now_ms();
        self.with_db(move |conn| Ok(Master::set_shift(conn, master_id, on_shift, now)?))
            .await
    }

    /// Pushes a frame to the open connections of `user_ids` (on every node), at most once and
    /// only to those online: nothing is stored. Answers how many of this node's connections
    /// were written to.
    pub async fn push(
        &self,
        user_ids: Vec<i64>,
        kind: String,
        payload: serde_json::Value,
        topic: Option<String>,
    ) -> Result<usize, AppError> {
        let bad = AppError::BadRequest;
        check_push_type(&kind).map_err(bad)?;
        let serde_json::Value::Object(payload) = payload else {
            return Err(bad("payload must be a JSON object".into()));
        };
        if payload.contains_key("type") {
            return Err(bad(
                "payload must not have a type key: the push's type is its own field".into(),
            ));
        }
        if let Some(topic) = &topic {
            check_topic(topic).map_err(bad)?;
        }
        if user_ids.is_empty() || user_ids.len() > MAX_PUSH_USERS {
            return Err(bad(format!(
                "userIds must hold 1 to {MAX_PUSH_USERS} ids, not {}",
                user_ids.len()
            )));
        }
        let mut users = Vec::with_capacity(user_ids.len());
        for id in user_ids {
            users.push(UserId(positive("userIds", id)?));
        }
        users.sort_unstable();
        users.dedup();
        let push = Push {
            user_ids: users,
            kind,
            payload,
            topic,
        };
        Ok(self.bus.publish(vec![DomainEvent::Pushed(push)]).await)
    }

    /// How the offers of the last 15 minutes fared.
    pub async fn offer_figures(&self) -> Result<OfferFigures, AppError> {
        let since = now_ms() - offer_figures::WINDOW_SECS * 1000;
        let (offers, created_total) = self
            .with_db(move |conn| {
                Ok((
                    Assignment::created_since(conn, since)?,
                    Assignment::highest_id(conn)?,
                ))
            })
            .await?;
        Ok(OfferFigures {
            created_total,
            ..offer_figures::figures(&offers)
        })
    }

    /// Shift flags of the given masters; a master with no row is off shift.
    pub async fn on_shift_of(
        &self,
        master_ids: Vec<MasterId>,
    ) -> Result<HashMap<MasterId, bool>, AppError> {
        let ids: Vec<i64> = master_ids.iter().map(|m| m.0).collect();
        let rows = self
            .with_db(move |conn| Ok(Master::on_shift_of(conn, &ids)?))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, on)| (MasterId(id), on))
            .collect())
    }
}

/// Ids are positive: the platform numbers its orders, masters and users from 1.
fn positive(field: &str, id: i64) -> Result<i64, AppError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(AppError::BadRequest(format!(
            "{field} must be a positive id, not {id}"
        )))
    }
}

fn decided(assignments: &[Assignment], outcome: Outcome) -> Vec<DomainEvent> {
    assignments
        .iter()
        .map(|a| DomainEvent::Decided(a.decision(outcome)))
        .collect()
}

/// Finds an assignment the caller may see: staff see all, a master only his own.
fn visible(conn: &mut storage::DbConn, user: &AuthUser, id: i64) -> Result<Assignment, AppError> {
    let assignment = Assignment::find(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("assignment {id} not found")))?;
    if !user.role.is_staff() && user.master() != Some(MasterId(assignment.master_id)) {
        return Err(AppError::Forbidden(format!(
            "assignment {id} belongs to another master"
        )));
    }
    Ok(assignment)
}
