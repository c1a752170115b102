//! Stored orders, assignments and masters. Each struct comes first, then its local methods, then its queries.

use std::collections::HashMap;

use diesel::{prelude::*, result::Error as QueryError};

use super::{
    DbConn, is_unique_violation, lock_order, lock_pending,
    schema::{assignments, masters, orders},
    write_tx,
};
use crate::domain::{
    self, AssignmentId, AssignmentStatus, Decision, Delivery, MasterId, Offer, OrderId,
    OrderStatus, OrderStatusChange, Outcome, UndeliveredOffer, UserId, input::OrderDetails,
};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = orders)]
pub struct Order {
    pub id: i64,
    pub client_user_id: i64,
    pub address: String,
    pub device_type: String,
    pub problem: String,
    pub client_name: Option<String>,
    pub client_phone: Option<String>,
    pub status: OrderStatus,
    pub master_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The caller-supplied part of an order, as `PUT /api/v1/orders/{id}` replaces it.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = orders, treat_none_as_null = true)]
pub struct OrderFields {
    pub client_user_id: i64,
    pub address: String,
    pub device_type: String,
    pub problem: String,
    pub client_name: Option<String>,
    pub client_phone: Option<String>,
}

impl From<OrderDetails> for OrderFields {
    fn from(d: OrderDetails) -> Self {
        OrderFields {
            client_user_id: d.client_user_id.0,
            address: d.address,
            device_type: d.device_type,
            problem: d.problem,
            client_name: d.client_name,
            client_phone: d.client_phone,
        }
    }
}

impl From<Order> for domain::records::Order {
    fn from(o: Order) -> Self {
        domain::records::Order {
            id: OrderId(o.id),
            client_user_id: UserId(o.client_user_id),
            address: o.address,
            device_type: o.device_type,
            problem: o.problem,
            client_name: o.client_name,
            client_phone: o.client_phone,
            status: o.status,
            master_id: o.master_id.map(MasterId),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

impl From<Assignment> for domain::records::Assignment {
    fn from(a: Assignment) -> Self {
        domain::records::Assignment {
            id: AssignmentId(a.id),
            order_id: OrderId(a.order_id),
            master_id: MasterId(a.master_id),
            status: a.status,
            created_at: a.created_at,
            expires_at: a.expires_at,
            decided_at: a.decided_at,
            reject_reason: a.reject_reason,
            delivered_at: a.delivered_at,
        }
    }
}

impl From<Master> for domain::records::Master {
    fn from(m: Master) -> Self {
        domain::records::Master {
            id: MasterId(m.id),
            on_shift: m.on_shift,
            updated_at: m.updated_at,
        }
    }
}

impl Order {
    /// An order may be offered until a master accepts it or it is closed.
    pub fn takes_offers(&self) -> bool {
        self.master_id.is_none() && !self.status.is_closed()
    }

    pub fn status_change(&self) -> OrderStatusChange {
        OrderStatusChange {
            order_id: OrderId(self.id),
            client_user_id: UserId(self.client_user_id),
            master_id: self.master_id.map(MasterId),
            status: self.status,
            updated_at: self.updated_at,
        }
    }

    pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Order>> {
        orders::table.find(id).first(conn).optional()
    }

    pub fn upsert(
        conn: &mut DbConn,
        id: i64,
        fields: &OrderFields,
        now: i64,
    ) -> QueryResult<Order> {
        write_tx(conn, |conn| {
            let update = |conn: &mut DbConn| {
                diesel::update(orders::table.find(id))
                    .set((fields, orders::updated_at.eq(now)))
                    .execute(conn)
            };
            update_or_insert(conn, update, |conn| {
                diesel::insert_into(orders::table)
                    .values((
                        orders::id.eq(id),
                        orders::client_user_id.eq(fields.client_user_id),
                        orders::address.eq(&fields.address),
                        orders::device_type.eq(&fields.device_type),
                        orders::problem.eq(&fields.problem),
                        orders::client_name.eq(&fields.client_name),
                        orders::client_phone.eq(&fields.client_phone),
                        orders::status.eq(OrderStatus::New),
                        orders::created_at.eq(now),
                        orders::updated_at.eq(now),
                    ))
                    .execute(conn)
            })?;
            orders::table.find(id).first(conn)
        })
    }

    /// Stores a new status; closing an order cancels its pending offers in the same transaction.
    pub fn set_status(
        conn: &mut DbConn,
        id: i64,
        status: OrderStatus,
        now: i64,
    ) -> QueryResult<Option<(Order, Vec<Assignment>)>> {
        write_tx(conn, |conn| {
            lock_order(conn, id)?;
            let updated = diesel::update(orders::table.find(id))
                .set((orders::status.eq(status), orders::updated_at.eq(now)))
                .execute(conn)?;
            if updated == 0 {
                return Ok(None);
            }
            let order: Order = orders::table.find(id).first(conn)?;
            let cancelled = if order.status.is_closed() {
                Assignment::cancel_pending_of_order(conn, id, None, now)?
            } else {
                Vec::new()
            };
            Ok(Some((order, cancelled)))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = assignments)]
pub struct Assignment {
    pub id: i64,
    pub order_id: i64,
    pub master_id: i64,
    pub status: AssignmentStatus,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub reject_reason: Option<String>,
    /// When the master's app first acknowledged the offer.
    pub delivered_at: Option<i64>,
    /// When event listeners were told that no connection of the master acknowledged it in time.
    pub undelivered_at: Option<i64>,
}

/// Why an offer could not be made.
#[derive(Debug, PartialEq)]
pub enum OfferRefused {
    OrderNotFound,
    OrderClosed,
    AlreadyOffered,
}

/// What the first accept of an order changed.
#[derive(Debug)]
pub struct Accepted {
    pub assignment: Assignment,
    pub order: Order,
    /// The order's other pending offers, now cancelled.
    pub cancelled: Vec<Assignment>,
}

/// Whether a decision must come before the deadline (masters') or may come at any time (staff's).
#[derive(Debug, Clone, Copy)]
pub enum Deadline {
    Before,
    Ignored,
}

impl Deadline {
    /// The open-closed range of `expires_at` values the decision applies to at `now`.
    fn bounds(self, now: i64) -> (i64, i64) {
        match self {
            Deadline::Before => (now, i64::MAX),
            Deadline::Ignored => (i64::MIN, i64::MAX),
        }
    }
}

/// Open offers and decided offers, with their orders: see [`Assignment::changed_since`].
pub type Changed = (Vec<(Assignment, Order)>, Vec<(Assignment, Order)>);

impl Assignment {
    pub fn is_pending(&self) -> bool {
        self.status == AssignmentStatus::Pending
    }

    pub fn id(&self) -> AssignmentId {
        AssignmentId(self.id)
    }

    /// The offer as its master sees it.
    pub fn offer(&self, order: &Order) -> Offer {
        Offer {
            assignment_id: self.id(),
            order_id: OrderId(self.order_id),
            master_id: MasterId(self.master_id),
            address: order.address.clone(),
            device_type: order.device_type.clone(),
            problem: order.problem.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }

    /// How this assignment ended, if it has.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.status {
            AssignmentStatus::Pending => None,
            AssignmentStatus::Accepted => Some(Outcome::Accepted),
            AssignmentStatus::Rejected => Some(Outcome::Rejected),
            AssignmentStatus::Expired => Some(Outcome::Expired),
            AssignmentStatus::Cancelled => Some(Outcome::Cancelled),
        }
    }

    /// How this (just decided) assignment ended.
    pub fn decision(&self, outcome: Outcome) -> Decision {
        Decision {
            assignment_id: self.id(),
            order_id: OrderId(self.order_id),
            master_id: MasterId(self.master_id),
            outcome,
            at: self.decided_at.unwrap_or(self.created_at),
            offered_at: self.created_at,
        }
    }

    /// The receipt of an offer reaching master `master_id`'s app; answers what it delivered
    /// the first time, `None` for a repeat, another master's offer or one no longer pending.
    pub fn mark_delivered(
        conn: &mut DbConn,
        id: i64,
        master_id: i64,
        now: i64,
    ) -> QueryResult<Option<Delivery>> {
        let first = diesel::update(
            assignments::table
                .filter(assignments::id.eq(id))
                .filter(assignments::master_id.eq(master_id))
                .filter(assignments::status.eq(AssignmentStatus::Pending))
                .filter(assignments::delivered_at.is_null()),
        )
        .set(assignments::delivered_at.eq(now))
        .execute(conn)?;
        if first == 0 {
            return Ok(None);
        }
        let assignment: Assignment = assignments::table.find(id).first(conn)?;
        Ok(Some(Delivery {
            assignment_id: assignment.id(),
            order_id: OrderId(assignment.order_id),
            master_id: MasterId(assignment.master_id),
            at: now,
        }))
    }

    /// Marks as undelivered those of `ids` still pending that no connection acknowledged and
    /// that were not marked yet; answers the ones this call marked, so that one node alone
    /// tells of each.
    pub fn mark_undelivered(
        conn: &mut DbConn,
        ids: &[i64],
        now: i64,
    ) -> QueryResult<Vec<UndeliveredOffer>> {
        let mut marked = Vec::new();
        // Every node's timer marks the same offers: rows locked in one order cannot deadlock.
        lock_pending(conn, ids)?;
        for &id in ids {
            let first = diesel::update(
                assignments::table
                    .filter(assignments::id.eq(id))
                    .filter(assignments::status.eq(AssignmentStatus::Pending))
                    .filter(assignments::delivered_at.is_null())
                    .filter(assignments::undelivered_at.is_null()),
            )
            .set(assignments::undelivered_at.eq(now))
            .execute(conn)?;
            if first == 1 {
                let assignment: Assignment = assignments::table.find(id).first(conn)?;
                marked.push(UndeliveredOffer {
                    assignment_id: assignment.id(),
                    order_id: OrderId(assignment.order_id),
                    master_id: MasterId(assignment.master_id),
                    at: now,
                    expires_at: assignment.expires_at,
                });
            }
        }
        Ok(marked)
    }

    /// When each pending offer that nobody acknowledged and that was not marked undelivered was
    /// made, for those made before `before` (all with `None`).
    pub fn unacknowledged(conn: &mut DbConn, before: Option<i64>) -> QueryResult<Vec<(i64, i64)>> {
        let unacknowledged = assignments::table
            .filter(assignments::status.eq(AssignmentStatus::Pending))
            .filter(assignments::delivered_at.is_null())
            .filter(assignments::undelivered_at.is_null())
            .select((assignments::id, assignments::created_at));
        match before {
            Some(before) => unacknowledged
                .filter(assignments::created_at.lt(before))
                .load(conn),
            None => unacknowledged.load(conn),
        }
    }

    pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Assignment>> {
        assignments::table.find(id).first(conn).optional()
    }

    /// The highest offer id: how many offers were ever made.
    pub fn highest_id(conn: &mut DbConn) -> QueryResult<i64> {
        let highest: Option<i64> = assignments::table
            .select(diesel::dsl::max(assignments::id))
            .first(conn)?;
        Ok(highest.unwrap_or(0))
    }

    /// Every offer made since `since` (ms), for the lifecycle figures.
    pub fn created_since(conn: &mut DbConn, since: i64) -> QueryResult<Vec<Assignment>> {
        assignments::table
            .filter(assignments::created_at.ge(since))
            .load(conn)
    }

    pub fn insert_offer(
        conn: &mut DbConn,
        order_id: i64,
        master_id: i64,
        ttl_ms: i64,
    ) -> QueryResult<Result<(Assignment, Order), OfferRefused>> {
        write_tx(conn, |conn| {
            lock_order(conn, order_id)?;
            let Some(order) = Order::find(conn, order_id)? else {
                return Ok(Err(OfferRefused::OrderNotFound));
            };
            if !order.takes_offers() {
                return Ok(Err(OfferRefused::OrderClosed));
            }
            // The unique index refuses a second pending offer: no read first on this hot path.
            // Refused, the transaction is rolled back by the caller.
            match Self::insert_row(conn, order_id, master_id, ttl_ms) {
                Ok(assignment) => Ok(Ok((assignment, order))),
                Err(e) if is_unique_violation(&e) => Ok(Err(OfferRefused::AlreadyOffered)),
                Err(e) => Err(e),
            }
        })
    }

    /// Inserts a pending offer, or `None` when the master has one of this order already. The
    /// caller holds the order's lock (`lock_order`), so no other offer of it is being made.
    pub(super) fn insert_pending(
        conn: &mut DbConn,
        order_id: i64,
        master_id: i64,
        ttl_ms: i64,
    ) -> QueryResult<Option<Assignment>> {
        let offered_already = diesel::select(diesel::dsl::exists(
            assignments::table
                .filter(assignments::order_id.eq(order_id))
                .filter(assignments::master_id.eq(master_id))
                .filter(assignments::status.eq(AssignmentStatus::Pending)),
        ))
        .get_result::<bool>(conn)?;
        if offered_already {
            return Ok(None);
        }
        Self::insert_row(conn, order_id, master_id, ttl_ms).map(Some)
    }

    /// The offer's time is read from the deciding clock as it is inserted, not when its
    /// transaction began: a slow link to the database must not eat into the master's time.
    fn insert_row(
        conn: &mut DbConn,
        order_id: i64,
        master_id: i64,
        ttl_ms: i64,
    ) -> QueryResult<Assignment> {
        let now = super::clock(conn)?;
        let expires_at = now.saturating_add(ttl_ms);
        diesel::insert_into(assignments::table)
            .values((
                assignments::order_id.eq(order_id),
                assignments::master_id.eq(master_id),
                assignments::status.eq(AssignmentStatus::Pending),
                assignments::created_at.eq(now),
                assignments::expires_at.eq(expires_at),
            ))
            .returning(assignments::all_columns)
            .get_result(conn)
    }

    /// Moves a pending assignment to `to`; false when something else decided it first.
    pub(super) fn decide(
        conn: &mut DbConn,
        id: i64,
        to: AssignmentStatus,
        deadline: Deadline,
        now: i64,
        reason: Option<&str>,
    ) -> QueryResult<bool> {
        let (after, until) = deadline.bounds(now);
        let changed = diesel::update(
            assignments::table
                .find(id)
                .filter(assignments::status.eq(AssignmentStatus::Pending))
                .filter(assignments::expires_at.gt(after))
                .filter(assignments::expires_at.le(until)),
        )
        .set((
            assignments::status.eq(to),
            assignments::decided_at.eq(now),
            assignments::reject_reason.eq(reason),
        ))
        .execute(conn)?;
        Ok(changed == 1)
    }

    /// Decides one assignment; `None` when it was no longer pending.
    pub fn decide_one(
        conn: &mut DbConn,
        id: i64,
        to: AssignmentStatus,
        deadline: Deadline,
        now: i64,
        reason: Option<&str>,
    ) -> QueryResult<Option<Assignment>> {
        write_tx(conn, |conn| {
            if Self::decide(conn, id, to, deadline, now, reason)? {
                assignments::table.find(id).first(conn).map(Some)
            } else {
                Ok(None)
            }
        })
    }

    /// The first accept of an order wins it: the order becomes `assigned` to the acceptor and its other offers are cancelled.
    pub fn accept(conn: &mut DbConn, id: i64, now: i64) -> QueryResult<Option<Accepted>> {
        // Its own transaction (a savepoint when nested), because a lost race undoes the
        // accepting write and goes on.
        let outcome = write_tx(conn, |conn| {
            conn.transaction(|conn| {
                let order_id: i64 = assignments::table
                    .find(id)
                    .select(assignments::order_id)
                    .first(conn)?;
                lock_order(conn, order_id)?;
                if !Self::decide(
                    conn,
                    id,
                    AssignmentStatus::Accepted,
                    Deadline::Before,
                    now,
                    None,
                )? {
                    return Err(QueryError::RollbackTransaction);
                }
                let assignment: Assignment = assignments::table.find(id).first(conn)?;
                let won_order = diesel::update(
                    orders::table
                        .find(assignment.order_id)
                        .filter(orders::master_id.is_null())
                        .filter(
                            orders::status.ne_all([OrderStatus::Completed, OrderStatus::Cancelled]),
                        ),
                )
                .set((
                    orders::status.eq(OrderStatus::Assigned),
                    orders::master_id.eq(assignment.master_id),
                    orders::updated_at.eq(now),
                ))
                .execute(conn)?;
                if won_order == 0 {
                    return Err(QueryError::RollbackTransaction);
                }
                let order = orders::table.find(assignment.order_id).first(conn)?;
                let cancelled =
                    Self::cancel_pending_of_order(conn, assignment.order_id, Some(id), now)?;
                Ok(Accepted {
                    assignment,
                    order,
                    cancelled,
                })
            })
        });
        match outcome {
            Ok(accepted) => Ok(Some(accepted)),
            Err(QueryError::RollbackTransaction) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Cancels the pending offers of an order (but `except`), returning the ones this call cancelled.
    fn cancel_pending_of_order(
        conn: &mut DbConn,
        order_id: i64,
        except: Option<i64>,
        now: i64,
    ) -> QueryResult<Vec<Assignment>> {
        let pending: Vec<i64> = assignments::table
            .filter(assignments::order_id.eq(order_id))
            .filter(assignments::status.eq(AssignmentStatus::Pending))
            .filter(assignments::id.ne(except.unwrap_or(-1)))
            .order(assignments::id.asc())
            .select(assignments::id)
            .load(conn)?;
        let mut cancelled = Vec::with_capacity(pending.len());
        for id in pending {
            if Self::decide(
                conn,
                id,
                AssignmentStatus::Cancelled,
                Deadline::Ignored,
                now,
                None,
            )? {
                cancelled.push(assignments::table.find(id).first(conn)?);
            }
        }
        Ok(cancelled)
    }

    /// Expires those of `ids` whose deadline has passed and that are still pending.
    pub fn expire_due(conn: &mut DbConn, ids: &[i64], now: i64) -> QueryResult<Vec<Assignment>> {
        write_tx(conn, |conn| {
            let mut expired = Vec::new();
            // Chunks keep each statement under the backends' limits on bound parameters.
            for chunk in ids.chunks(1000) {
                lock_pending(conn, chunk)?;
                expired.extend(
                    diesel::update(
                        assignments::table
                            .filter(assignments::id.eq_any(chunk))
                            .filter(assignments::status.eq(AssignmentStatus::Pending))
                            .filter(assignments::expires_at.le(now)),
                    )
                    .set((
                        assignments::status.eq(AssignmentStatus::Expired),
                        assignments::decided_at.eq(now),
                    ))
                    .returning(assignments::all_columns)
                    .get_results::<Assignment>(conn)?,
                );
            }
            expired.sort_unstable_by_key(|a| a.id);
            Ok(expired)
        })
    }

    /// These masters' pending, unexpired offers with their orders, oldest first.
    pub fn pending_for_masters(
        conn: &mut DbConn,
        master_ids: &[i64],
        now: i64,
    ) -> QueryResult<Vec<(Assignment, Order)>> {
        assignments::table
            .inner_join(orders::table)
            .filter(assignments::master_id.eq_any(master_ids))
            .filter(assignments::status.eq(AssignmentStatus::Pending))
            .filter(assignments::expires_at.gt(now))
            .order(assignments::id.asc())
            .select((Assignment::as_select(), Order::as_select()))
            .load(conn)
    }

    /// What changed since `since`: the offers made since then still open at `now` (with their
    /// orders), and the offers decided since then.
    pub fn changed_since(conn: &mut DbConn, since: i64, now: i64) -> QueryResult<Changed> {
        let open = assignments::table
            .inner_join(orders::table)
            .filter(assignments::created_at.ge(since))
            .filter(assignments::status.eq(AssignmentStatus::Pending))
            .filter(assignments::expires_at.gt(now))
            .order(assignments::id.asc())
            .select((Assignment::as_select(), Order::as_select()))
            .load(conn)?;
        let decided = assignments::table
            .inner_join(orders::table)
            .filter(assignments::decided_at.ge(since))
            .filter(assignments::status.ne(AssignmentStatus::Pending))
            .select((Assignment::as_select(), Order::as_select()))
            .load(conn)?;
        Ok((open, decided))
    }

    /// Those of `ids` that are no longer pending.
    pub fn decided_among(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<Assignment>> {
        assignments::table
            .filter(assignments::id.eq_any(ids))
            .filter(assignments::status.ne(AssignmentStatus::Pending))
            .load(conn)
    }

    /// The id and deadline of every pending assignment due before `before` (all of them with
    /// `None`), for arming the expiry timers.
    pub fn pending_deadlines(
        conn: &mut DbConn,
        before: Option<i64>,
    ) -> QueryResult<Vec<(i64, i64)>> {
        let pending = assignments::table
            .filter(assignments::status.eq(AssignmentStatus::Pending))
            .select((assignments::id, assignments::expires_at));
        match before {
            Some(before) => pending
                .filter(assignments::expires_at.lt(before))
                .load(conn),
            None => pending.load(conn),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = masters)]
pub struct Master {
    pub id: i64,
    pub on_shift: bool,
    pub updated_at: i64,
}

impl Master {
    pub fn set_shift(conn: &mut DbConn, id: i64, on_shift: bool, now: i64) -> QueryResult<Master> {
        write_tx(conn, |conn| {
            let update = |conn: &mut DbConn| {
                diesel::update(masters::table.find(id))
                    .set((masters::on_shift.eq(on_shift), masters::updated_at.eq(now)))
                    .execute(conn)
            };
            update_or_insert(conn, update, |conn| {
                diesel::insert_into(masters::table)
                    .values((
                        masters::id.eq(id),
                        masters::on_shift.eq(on_shift),
                        masters::updated_at.eq(now),
                    ))
                    .execute(conn)
            })?;
            masters::table.find(id).first(conn)
        })
    }

    /// Shift flags of the given masters; a master with no row is off shift.
    pub fn on_shift_of(conn: &mut DbConn, ids: &[i64]) -> QueryResult<HashMap<i64, bool>> {
        let rows: Vec<(i64, bool)> = masters::table
            .filter(masters::id.eq_any(ids))
            .select((masters::id, masters::on_shift))
            .load(conn)?;
        Ok(rows.into_iter().collect())
    }
}

/// Updates a row, or inserts it when there is none. Two first writes of one id may both find no
/// row; the insert that loses to the unique key is undone to a savepoint and becomes an update.
fn update_or_insert(
    conn: &mut DbConn,
    update: impl Fn(&mut DbConn) -> QueryResult<usize>,
    insert: impl FnOnce(&mut DbConn) -> QueryResult<usize>,
) -> QueryResult<()> {
    if update(conn)? > 0 {
        return Ok(());
    }
    match conn.transaction(insert) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => update(conn).map(drop),
        Err(e) => Err(e),
    }
}
