//! What callers can do to orders, assignments and masters. HTTP routes and WebSocket messages both
//! come here after their role checks, so both answer the same way.
//!
//! Each operation decides and stores first, then publishes what changed on the event bus; it
//! builds no frames, so pushes only ever follow committed changes.

use std::{collections::HashMap, time::Duration};

use diesel::RunQueryDsl;

use crate::{
    auth::AuthUser,
    db::{
        self, DbPool,
        models::{Accepted, Assignment, Deadline, Master, OfferRefused, Order, OrderFields},
    },
    domain::{
        AssignmentId, Decision, DomainEvent, MasterId, Offer, OrderStatus, Outcome, Push, UserId,
    },
    error::AppError,
    events::EventBus,
    lifecycle::{self, OfferFigures},
    time::now_ms,
    wire::{check_push_type, check_topic},
};

/// Users one push may name.
pub const MAX_PUSH_USERS: usize = 1000;

/// The longest response deadline an offer may ask for.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone)]
pub struct Service {
    pool: DbPool,
    bus: EventBus,
    default_ttl: Duration,
}

impl Service {
    pub fn new(pool: DbPool, bus: EventBus, default_ttl: Duration) -> Self {
        Service {
            pool,
            bus,
            default_ttl,
        }
    }

    /// Runs database work for a request on a blocking thread.
    async fn with_db<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut db::DbConn) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        db::run(&self.pool, f).await
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
        let (order, cancelled) = self
            .with_db(move |conn| {
                Order::set_status(conn, id, status, now)?
                    .ok_or_else(|| AppError::NotFound(format!("order {id} not found")))
            })
            .await?;
        let mut events = decided(&cancelled, Outcome::Cancelled);
        events.push(DomainEvent::OrderStatusChanged(order.status_change()));
        self.bus.publish(events).await;
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
        let ttl = ttl.unwrap_or(self.default_ttl);
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(AppError::BadRequest(format!(
                "ttlSeconds must be between 1 and {}",
                MAX_TTL.as_secs()
            )));
        }
        let now = now_ms();
        let expires_at = now + ttl.as_millis() as i64;
        let (assignment, order) = self
            .with_db(move |conn| {
                match Assignment::insert_offer(conn, order_id, master_id, now, expires_at)? {
                    Ok(a) => Ok((
                        a,
                        Order::find(conn, order_id)?.expect("offered order exists"),
                    )),
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
            .await?;
        let offered = DomainEvent::Offered(assignment.offer(&order));
        let delivered = self.bus.publish(vec![offered]).await;
        Ok((assignment, delivered))
    }

    pub async fn get_assignment(&self, user: AuthUser, id: i64) -> Result<Assignment, AppError> {
        positive("assignment id", id)?;
        self.with_db(move |conn| visible(conn, &user, id)).await
    }

    /// A master takes the order: the first accept wins, the order's other offers are cancelled.
    pub async fn accept(&self, user: AuthUser, id: i64) -> Result<Accepted, AppError> {
        positive("assignment id", id)?;
        let now = now_ms();
        let accepted = self
            .with_db(move |conn| {
                visible(conn, &user, id)?;
                Assignment::accept(conn, id, now)?.ok_or(AppError::NotPending(id))
            })
            .await?;
        let mut events = decided(
            std::slice::from_ref(&accepted.assignment),
            Outcome::Accepted,
        );
        events.extend(decided(&accepted.cancelled, Outcome::Cancelled));
        events.push(DomainEvent::OrderStatusChanged(
            accepted.order.status_change(),
        ));
        self.bus.publish(events).await;
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
        let first = self
            .with_db(move |conn| Ok(Assignment::mark_delivered(conn, id, master_id.0, now)?))
            .await?;
        if let Some(delivery) = first {
            self.bus
                .publish(vec![DomainEvent::Delivered(delivery)])
                .await;
        }
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
        let assignment = self
            .with_db(move |conn| {
                visible(conn, &user, id)?;
                Assignment::decide_one(
                    conn,
                    id,
                    outcome.status(),
                    deadline,
                    now,
                    reason.as_deref(),
                )?
                .ok_or(AppError::NotPending(id))
            })
            .await?;
        self.bus
            .publish(decided(std::slice::from_ref(&assignment), outcome))
            .await;
        Ok(assignment)
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
        let since = now_ms() - lifecycle::WINDOW_SECS * 1000;
        let offers = self
            .with_db(move |conn| Ok(Assignment::created_since(conn, since)?))
            .await?;
        Ok(lifecycle::figures(&offers))
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
fn visible(conn: &mut db::DbConn, user: &AuthUser, id: i64) -> Result<Assignment, AppError> {
    let assignment = Assignment::find(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("assignment {id} not found")))?;
    if !user.role.is_staff() && user.master() != Some(MasterId(assignment.master_id)) {
        return Err(AppError::Forbidden(format!(
            "assignment {id} belongs to another master"
        )));
    }
    Ok(assignment)
}
