//! What callers can do to orders, assignments and masters. HTTP routes and WebSocket messages
//! both come here with a [`Permit`](policy::Permit) from the policy, so both answer the same way.
//!
//! Each operation decides and stores first, then publishes what changed on the event bus. It
//! builds no frames (that is the protocol's job), so pushes only ever follow committed changes.

pub mod error;
pub mod policy;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use diesel::RunQueryDsl;
use futures_util::future::{BoxFuture, Either};
use tokio::sync::Notify;

use self::policy::{
    CancelOffers, DecideOffers, Dispatch as Dispatching, MakeOffers, ManageOrders, Permit,
    ReceiveOffers, RetryWebhooks, SeeAssignments, SetShifts,
};
use crate::{
    bus::EventBus,
    domain::{
        AssignmentId, Decision, DispatchId, DispatchMode, DomainEvent, MasterId, Offer,
        OrderStatus, Outcome, Push,
        input::{MAX_OFFER_TTL_MS, OrderDetails, RejectReason, positive},
        records,
        time::deciding_now,
    },
    metrics::{Metrics, ms_to_secs},
    service::error::AppError,
    storage::{
        self, DbConn, DbPool,
        dispatches::{Dispatch, DispatchPlan, DispatchRefused},
        group_commit::{QueueFull, Writer},
        models::{Assignment, Deadline, Master, OfferRefused, Order},
        webhook_deliveries::{NewWebhookDelivery, Reopened, WebhookDelivery},
    },
};

/// Candidates one dispatch may name.
pub const MAX_DISPATCH_CANDIDATES: usize = 100;

/// The longest response deadline an offer may ask for.
const MAX_TTL: Duration = Duration::from_millis(MAX_OFFER_TTL_MS as u64);

/// Which masters have a connection subscribed to offers now, on any node: what `skipOffline`
/// asks. Answered by the router and, between nodes, by their presence in Redis.
pub trait Presence: Send + Sync + 'static {
    fn subscribed_among(&self, masters: Vec<MasterId>) -> BoxFuture<'static, HashSet<MasterId>>;
}

/// The webhook outbox, when webhooks are on: events are recorded for them in the transaction of
/// the decision that made them, and `wake` wakes their sender. The bodies come from the
/// protocol, handed in by the composition root, so that the service builds no frames.
#[derive(Clone)]
pub struct WebhookOutbox {
    pub bodies: fn(&[DomainEvent]) -> Vec<NewWebhookDelivery>,
    pub wake: Arc<Notify>,
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

/// What a decision answers inside its transaction: its value, and the events it caused.
type Decided<T> = Result<(T, Vec<DomainEvent>), AppError>;

/// The service's own settings.
pub struct ServiceSettings {
    /// `ASSIGNMENT_TTL_SECS`: an offer's time to answer when its maker names none.
    pub default_ttl: Duration,
    /// `UNDELIVERED_AFTER_SECS`, when on.
    pub undelivered_after: Option<Duration>,
    pub backend: storage::Backend,
    /// `MAX_QUEUED_WRITES`: decisions waiting to be written; more are refused.
    pub max_queued_writes: usize,
    /// `DB_TIMEOUT_SECS`: how long a decision may wait for SQLite's writer before it is refused.
    pub max_write_wait: Duration,
}

#[derive(Clone)]
pub struct Service {
    pool: DbPool,
    /// Where decisions are written: in groups on SQLite, a transaction each on PostgreSQL.
    writer: Arc<Writer<AppError>>,
    bus: EventBus,
    default_ttl: Duration,
    /// `UNDELIVERED_AFTER_SECS`, when on: offers to masters with no subscribed connection are
    /// told undelivered as they are made.
    undelivered_after: Option<Duration>,
    presence: Arc<dyn Presence>,
    webhooks: Option<WebhookOutbox>,
    metrics: Arc<Metrics>,
}

impl Service {
    pub fn new(
        pool: DbPool,
        bus: EventBus,
        presence: Arc<dyn Presence>,
        webhooks: Option<WebhookOutbox>,
        metrics: Arc<Metrics>,
        settings: ServiceSettings,
    ) -> std::io::Result<Self> {
        let writer = Arc::new(Writer::start(
            pool.clone(),
            settings.backend,
            settings.max_queued_writes,
            settings.max_write_wait,
        )?);
        Ok(Service {
            writer,
            pool,
            bus,
            default_ttl: settings.default_ttl,
            undelivered_after: settings.undelivered_after,
            presence,
            webhooks,
            metrics,
        })
    }

    /// Runs database work that stores times, given the time by the clock that decides
    /// deadlines ([`storage::clock`]).
    async fn with_clock<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConn, i64) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.with_db(move |conn| {
            let now = storage::clock(conn)?;
            f(conn, now)
        })
        .await
    }

    /// Runs a decision in one write transaction together with what follows from its events:
    /// the dispatches of their orders, and the webhook outbox. Once committed, publishes the
    /// events and takes the dispatch steps they call for. Answers the decision's value and how
    /// many of this node's connections an offer among the events reached.
    async fn commit<T, F>(&self, decide: F) -> Result<(T, usize), AppError>
    where
        F: FnOnce(&mut DbConn, i64) -> Decided<T> + Send + 'static,
        T: Send + 'static,
    {
        self.commit_answering(decide, |_| {}).await
    }

    /// As [`Service::commit`], and `answer` runs between the commit and the publishing, so that
    /// the caller's own answer goes out before anyone hears of the decision.
    async fn commit_answering<T, F>(
        &self,
        decide: F,
        answer: impl FnOnce(&T),
    ) -> Result<(T, usize), AppError>
    where
        F: FnOnce(&mut DbConn, i64) -> Decided<T> + Send + 'static,
        T: Send + 'static,
    {
        let mut results = self
            .commit_each(vec![decide], |results| {
                if let [Ok(value)] = results {
                    answer(value);
                }
            })
            .await?;
        results.pop().expect("one decision, one result")
    }

    /// Runs decisions through the database's writer, which commits them with whatever else is
    /// waiting, each in its own savepoint (so one refused decision is its own answer), together
    /// with what follows from their events: the dispatches of their orders, and the webhook
    /// outbox. Once committed, `answer` sees the values, then the events are published in the
    /// decisions' order. Answers each decision's value and how many of this node's connections
    /// its offers reached, in order; a full write queue answers `unavailable`.
    async fn commit_each<T, F>(
        &self,
        decides: Vec<F>,
        answer: impl FnOnce(&[Result<T, AppError>]),
    ) -> Result<Vec<Result<(T, usize), AppError>>, AppError>
    where
        F: FnOnce(&mut DbConn, i64) -> Decided<T> + Send + 'static,
        T: Send + 'static,
    {
        if decides.is_empty() {
            return Ok(Vec::new());
        }
        let webhook_bodies = self.webhooks.as_ref().map(|w| w.bodies);
        let committed = decides.into_iter().map(|decide| {
            let job = move |conn: &mut DbConn, now: i64| {
                let (value, mut events) = decide(conn, now)?;
                let followed = Dispatch::follow(conn, &events, now)?;
                events.extend(followed.ended.into_iter().map(DomainEvent::DispatchEnded));
                if let Some(bodies) = webhook_bodies {
                    WebhookDelivery::record(conn, &bodies(&events), now)?;
                }
                Ok((value, events, followed.to_step))
            };
            match self.writer.submit(job) {
                Ok(answer) => Either::Left(answer),
                Err(QueueFull) => Either::Right(std::future::ready(Err(AppError::Unavailable))),
            }
        });
        let outcomes = futures_util::future::join_all(committed).await;
        if let Some(webhooks) = &self.webhooks {
            webhooks.wake.notify_one();
        }
        let mut values = Vec::with_capacity(outcomes.len());
        let mut published = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Ok((value, events, to_step)) => {
                    values.push(Ok(value));
                    published.push(Some((events, to_step)));
                }
                Err(refused) => {
                    values.push(Err(refused));
                    published.push(None);
                }
            }
        }
        answer(&values);
        let mut answers = Vec::with_capacity(values.len());
        for (value, published) in values.into_iter().zip(published) {
            let reached = match published {
                Some((events, to_step)) => self.publish_decided(events, to_step).await,
                None => 0,
            };
            answers.push(value.map(|value| (value, reached)));
        }
        Ok(answers)
    }

    /// After a commit: publishes one decision's events and starts what follows from them.
    async fn publish_decided(&self, events: Vec<DomainEvent>, to_step: Vec<DispatchId>) -> usize {
        self.count(&events);
        let offered = offers_in(&events);
        let reached = self.bus.publish(events).await;
        if !offered.is_empty() && self.undelivered_after.is_some() {
            // Not on the answer's path: asking the other nodes' presence may take a Redis read.
            // Bounded by that read's timeout and one commit; a failure is left to the timer.
            let service = self.clone();
            actix_web::rt::spawn(async move {
                service.undelivered_unless_subscribed(offered).await;
            });
        }
        if !to_step.is_empty() {
            let service = self.clone();
            actix_web::rt::spawn(async move { service.step_logged(to_step).await });
        }
        reached
    }

    async fn with_db<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, AppError> + Send + 'static,
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

    pub async fn upsert_order(
        &self,
        _: Permit<ManageOrders>,
        id: i64,
        details: OrderDetails,
    ) -> Result<records::Order, AppError> {
        positive("order id", id)?;
        let fields = details.into();
        let order = self
            .with_clock(move |conn, now| Ok(Order::upsert(conn, id, &fields, now)?))
            .await?;
        Ok(order.into())
    }

    pub async fn set_order_status(
        &self,
        _: Permit<ManageOrders>,
        id: i64,
        status: OrderStatus,
    ) -> Result<records::Order, AppError> {
        positive("order id", id)?;
        let (order, _) = self
            .commit(move |conn, now| {
                let (order, cancelled) = Order::set_status(conn, id, status, now)?
                    .ok_or_else(|| AppError::NotFound(format!("order {id} not found")))?;
                let mut events = decided(&cancelled, Outcome::Cancelled);
                events.push(DomainEvent::OrderStatusChanged(order.status_change()));
                Ok((order, events))
            })
            .await?;
        Ok(order.into())
    }

    /// Stores an offer and publishes it; answers the assignment and how many of this node's
    /// connections it reached.
    pub async fn offer(
        &self,
        _: Permit<MakeOffers>,
        order_id: i64,
        master_id: i64,
        ttl: Option<Duration>,
    ) -> Result<(records::Assignment, usize), AppError> {
        let decide = self.offer_decision(order_id, master_id, ttl)?;
        self.commit(decide)
            .await
            .map(|(assignment, reached)| (assignment.into(), reached))
    }

    /// Stores many offers with one commit and publishes those stored: each answered, in order,
    /// as [`Service::offer`] would have answered it alone.
    pub async fn offer_each(
        &self,
        _: Permit<MakeOffers>,
        offers: Vec<(i64, i64, Option<Duration>)>,
    ) -> Result<Vec<Result<(records::Assignment, usize), AppError>>, AppError> {
        let mut answers: Vec<Option<Result<(records::Assignment, usize), AppError>>> =
            Vec::with_capacity(offers.len());
        let mut decides = Vec::new();
        for (order_id, master_id, ttl) in offers {
            match self.offer_decision(order_id, master_id, ttl) {
                Ok(decide) => {
                    decides.push(decide);
                    answers.push(None);
                }
                Err(refused) => answers.push(Some(Err(refused))),
            }
        }
        let mut committed = self.commit_each(decides, |_| {}).await?.into_iter();
        Ok(answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    committed
                        .next()
                        .expect("one result per stored offer")
                        .map(|(assignment, reached)| (assignment.into(), reached))
                })
            })
            .collect())
    }

    /// The checked inputs of one offer, as a decision to commit.
    fn offer_decision(
        &self,
        order_id: i64,
        master_id: i64,
        ttl: Option<Duration>,
    ) -> Result<impl FnOnce(&mut DbConn, i64) -> Decided<Assignment> + Send + 'static, AppError>
    {
        positive("orderId", order_id)?;
        positive("masterId", master_id)?;
        let ttl_ms = self.checked_ttl(ttl)?.as_millis() as i64;
        Ok(move |conn: &mut DbConn, _| {
            match Assignment::insert_offer(conn, order_id, master_id, ttl_ms)? {
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
    }

    /// Tells at once of the offers whose masters have no subscribed connection on any node:
    /// nothing could acknowledge them. A failure here is left to the timer.
    async fn undelivered_unless_subscribed(&self, offered: Vec<(AssignmentId, MasterId)>) {
        let masters: Vec<i64> = offered.iter().map(|(_, master)| master.0).collect();
        let subscribed = self.subscribed_among(&masters).await;
        let unreachable = offered
            .iter()
            .filter(|(_, master)| !subscribed.contains(&master.0))
            .map(|(id, _)| *id)
            .collect();
        if let Err(e) = self.mark_undelivered(unreachable).await {
            log::warn!("could not mark offers undelivered at once ({e}); the timer will");
        }
    }

    /// Marks offers undelivered where they are still pending and unacknowledged, and tells
    /// event listeners and webhooks of each that this call marked. Answers how many.
    pub async fn mark_undelivered(&self, ids: Vec<AssignmentId>) -> Result<usize, AppError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (count, _) = self
            .commit(move |conn, now| {
                let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
                let marked = Assignment::mark_undelivered(conn, &ids, now)?;
                let count = marked.len();
                Ok((
                    count,
                    marked.into_iter().map(DomainEvent::Undelivered).collect(),
                ))
            })
            .await?;
        Ok(count)
    }

    /// The time now, and when each pending, unacknowledged, unmarked offer made before
    /// `now - made_before_ago` was made (every one with `None`), for arming the undelivered cue.
    pub async fn unacknowledged(
        &self,
        made_before_ago: Option<Duration>,
    ) -> Result<(i64, Vec<(AssignmentId, i64)>), AppError> {
        let (now, offers) = self
            .with_clock(move |conn, now| {
                let before = made_before_ago.map(|ago| now.saturating_sub(ago.as_millis() as i64));
                Ok((now, Assignment::unacknowledged(conn, before)?))
            })
            .await?;
        let offers = offers
            .into_iter()
            .map(|(id, made)| (AssignmentId(id), made))
            .collect();
        Ok((now, offers))
    }

    pub async fn get_assignment(
        &self,
        permit: Permit<SeeAssignments>,
        id: i64,
    ) -> Result<records::Assignment, AppError> {
        positive("assignment id", id)?;
        let master = permit.master();
        let assignment = self.with_db(move |conn| visible(conn, master, id)).await?;
        Ok(assignment.into())
    }

    /// A master takes the order: the first accept wins, the order's other offers are cancelled.
    /// `answer` hears of the win before anyone else does.
    pub async fn accept(
        &self,
        permit: Permit<DecideOffers>,
        id: i64,
        answer: impl FnOnce(&records::Accepted),
    ) -> Result<records::Accepted, AppError> {
        positive("assignment id", id)?;
        let master = permit.master();
        let (accepted, _) = self
            .commit_answering(
                move |conn, now| {
                    visible(conn, master, id)?;
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
                    let won = records::Accepted {
                        assignment: accepted.assignment.into(),
                        order: accepted.order.into(),
                    };
                    Ok((won, events))
                },
                answer,
            )
            .await?;
        Ok(accepted)
    }

    /// A master's app acknowledges that an offer reached it. The first acknowledgement records
    /// `deliveredAt` and tells event listeners; repeats change nothing.
    pub async fn acknowledge(&self, permit: Permit<DecideOffers>, id: i64) -> Result<(), AppError> {
        positive("assignmentId", id)?;
        let Some(master_id) = permit.master() else {
            return Err(AppError::Forbidden(
                "only masters act on assignments".into(),
            ));
        };
        self.commit(move |conn, now| {
            let first = Assignment::mark_delivered(conn, id, master_id.0, now)?;
            Ok(((), first.into_iter().map(DomainEvent::Delivered).collect()))
        })
        .await?;
        Ok(())
    }

    /// A master turns an offer down before its deadline.
    pub async fn reject(
        &self,
        permit: Permit<DecideOffers>,
        id: i64,
        reason: Option<RejectReason>,
    ) -> Result<records::Assignment, AppError> {
        let master = permit.master();
        self.decide(master, id, Outcome::Rejected, Deadline::Before, reason)
            .await
    }

    /// Staff withdraw an offer, at any time.
    pub async fn cancel(
        &self,
        _: Permit<CancelOffers>,
        id: i64,
    ) -> Result<records::Assignment, AppError> {
        self.decide(None, id, Outcome::Cancelled, Deadline::Ignored, None)
            .await
    }

    /// Decides one offer; `master`, when set, must be the one it was made to.
    async fn decide(
        &self,
        master: Option<MasterId>,
        id: i64,
        outcome: Outcome,
        deadline: Deadline,
        reason: Option<RejectReason>,
    ) -> Result<records::Assignment, AppError> {
        positive("assignment id", id)?;
        let (assignment, _) = self
            .commit(move |conn, now| {
                visible(conn, master, id)?;
                let assignment = Assignment::decide_one(
                    conn,
                    id,
                    outcome.status(),
                    deadline,
                    now,
                    reason.as_ref().map(RejectReason::as_str),
                )?
                .ok_or(AppError::NotPending(id))?;
                let events = decided(std::slice::from_ref(&assignment), outcome);
                Ok((assignment, events))
            })
            .await?;
        Ok(assignment.into())
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
        let ((count, lateness), _) = self
            .commit(move |conn, now| {
                let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
                let expired = Assignment::expire_due(conn, &ids, now)?;
                let lateness: Vec<i64> = expired
                    .iter()
                    .map(|a| now.saturating_sub(a.expires_at))
                    .collect();
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

    /// The time now, and the deadline of every pending offer due within `due_within` (of all
    /// of them with `None`), for arming the expiry timers.
    pub async fn pending_deadlines(
        &self,
        due_within: Option<Duration>,
    ) -> Result<(i64, Vec<(AssignmentId, i64)>), AppError> {
        let (now, pending) = self
            .with_clock(move |conn, now| {
                let before = due_within.map(|ahead| now.saturating_add(ahead.as_millis() as i64));
                Ok((now, Assignment::pending_deadlines(conn, before)?))
            })
            .await?;
        let pending = pending
            .into_iter()
            .map(|(id, deadline)| (AssignmentId(id), deadline))
            .collect();
        Ok((now, pending))
    }

    /// Starts a cascade of offers of an order and takes its first step.
    pub async fn dispatch(
        &self,
        _: Permit<Dispatching>,
        order_id: i64,
        request: DispatchRequest,
    ) -> Result<records::Dispatch, AppError> {
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
        let (state, _) = self
            .commit(
                move |conn, now| match Dispatch::create(conn, &plan, &online, now)? {
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
        Ok(state.into())
    }

    pub async fn get_dispatch(
        &self,
        _: Permit<Dispatching>,
        id: i64,
    ) -> Result<records::Dispatch, AppError> {
        positive("dispatch id", id)?;
        let state = self
            .with_db(move |conn| {
                Dispatch::find(conn, id)?
                    .ok_or_else(|| AppError::NotFound(format!("dispatch {id} not found")))
            })
            .await?;
        Ok(state.into())
    }

    /// Cancels a running dispatch and its outstanding offers.
    pub async fn cancel_dispatch(
        &self,
        permit: Permit<Dispatching>,
        id: i64,
    ) -> Result<records::Dispatch, AppError> {
        positive("dispatch id", id)?;
        self.commit(move |conn, now| match Dispatch::cancel(conn, id, now)? {
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
        self.get_dispatch(permit, id).await
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
        self.commit(move |conn, now| {
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
        let before = deciding_now().saturating_sub(overdue_after.as_millis() as i64);
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

    /// The caller's offers still open, as `new_assignment` shows them.
    pub async fn open_offers(&self, permit: Permit<ReceiveOffers>) -> Result<Vec<Offer>, AppError> {
        let Some(master_id) = permit.master() else {
            return Ok(Vec::new());
        };
        self.pending_offers_of(vec![master_id]).await
    }

    /// The open offers of several masters, oldest first.
    pub async fn pending_offers_of(
        &self,
        master_ids: Vec<MasterId>,
    ) -> Result<Vec<Offer>, AppError> {
        /// Keeps each query well under the backends' limits on bound parameters.
        const CHUNK: usize = 1000;
        let now = deciding_now();
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

    /// The offers made since `since` (ms; `lately` before now with `None`) that are still
    /// open, and the decisions made since; with the time by the deciding clock they were read at.
    pub async fn changed_since(
        &self,
        since: Option<i64>,
        lately: Duration,
    ) -> Result<(i64, Vec<Offer>, Vec<(Decision, records::Order)>), AppError> {
        let (now, (open, decided)) = self
            .with_clock(move |conn, now| {
                let since = since.unwrap_or(now.saturating_sub(lately.as_millis() as i64));
                Ok((now, Assignment::changed_since(conn, since, now)?))
            })
            .await?;
        let offers = open.iter().map(|(a, o)| a.offer(o)).collect();
        let decisions = decided
            .into_iter()
            .filter_map(|(a, o)| Some((a.decision(a.outcome()?), o.into())))
            .collect();
        Ok((now, offers, decisions))
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

    /// Puts a master on or off shift: staff any master, a master himself.
    pub async fn set_shift(
        &self,
        permit: Permit<SetShifts>,
        master_id: i64,
        on_shift: bool,
    ) -> Result<records::Master, AppError> {
        positive("master id", master_id)?;
        if permit
            .master()
            .is_some_and(|own| own != MasterId(master_id))
        {
            return Err(AppError::Forbidden(
                "a master may only change his own shift".into(),
            ));
        }
        let master = self
            .with_clock(move |conn, now| Ok(Master::set_shift(conn, master_id, on_shift, now)?))
            .await?;
        Ok(master.into())
    }

    /// Pushes a frame to the open connections of its users (on every node), at most once and
    /// only to those online: nothing is stored. Answers how many of this node's connections
    /// were written to.
    pub async fn push(&self, _: Permit<policy::Push>, push: Push) -> usize {
        self.bus.publish(vec![DomainEvent::Pushed(push)]).await
    }

    /// Sends a webhook event that was given up (`WEBHOOK_MAX_AGE_SECS` passed) again, with a
    /// fresh `WEBHOOK_MAX_AGE_SECS`.
    pub async fn retry_webhook(
        &self,
        _: Permit<RetryWebhooks>,
        event_id: String,
    ) -> Result<(), AppError> {
        let id = event_id.clone();
        let reopened = self
            .with_clock(move |conn, now| Ok(WebhookDelivery::reopen(conn, &id, now)?))
            .await?;
        match reopened {
            Reopened::Reopened => {
                if let Some(webhooks) = &self.webhooks {
                    webhooks.wake.notify_one();
                }
                Ok(())
            }
            Reopened::NotFound => Err(AppError::NotFound(format!("no webhook event {event_id}"))),
            Reopened::NotGivenUp => Err(AppError::Conflict(format!(
                "webhook event {event_id} was not given up: it is being sent, or was delivered"
            ))),
        }
    }

    /// The offers made since `since` (ms), and how many were ever made (the highest id).
    pub async fn offers_since(
        &self,
        since: i64,
    ) -> Result<(Vec<records::Assignment>, i64), AppError> {
        let (offers, created_total) = self
            .with_db(move |conn| {
                Ok((
                    Assignment::created_since(conn, since)?,
                    Assignment::highest_id(conn)?,
                ))
            })
            .await?;
        Ok((offers.into_iter().map(Into::into).collect(), created_total))
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

/// The offer and master of each `offered` event.
fn offers_in(events: &[DomainEvent]) -> Vec<(AssignmentId, MasterId)> {
    events
        .iter()
        .filter_map(|event| match event {
            DomainEvent::Offered(offer) => Some((offer.assignment_id, offer.master_id)),
            _ => None,
        })
        .collect()
}

fn decided(assignments: &[Assignment], outcome: Outcome) -> Vec<DomainEvent> {
    assignments
        .iter()
        .map(|a| DomainEvent::Decided(a.decision(outcome)))
        .collect()
}

/// Finds an assignment; with `master` set, only if it was made to him.
fn visible(conn: &mut DbConn, master: Option<MasterId>, id: i64) -> Result<Assignment, AppError> {
    let assignment = Assignment::find(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("assignment {id} not found")))?;
    if master.is_some_and(|m| m != MasterId(assignment.master_id)) {
        return Err(AppError::Forbidden(format!(
            "assignment {id} belongs to another master"
        )));
    }
    Ok(assignment)
}
