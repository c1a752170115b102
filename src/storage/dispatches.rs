//! Cascades of offers: a dispatch, its candidates in order, and the steps that move it on.
//!
//! Every change to a dispatch happens in a write transaction that holds its order's lock, so each
//! step is decided once, whichever node takes it. Decisions of its offers are recorded in the
//! decision's own transaction ([`Dispatch::follow`]), which marks the dispatch as needing a step;
//! the step itself ([`Dispatch::step`]) follows at once, or from another node's sweep if the node
//! that decided died in between.

use std::collections::HashSet;

use diesel::prelude::*;

use super::{
    DbConn, lock_order,
    models::{Assignment, Deadline, Master, Order},
    schema::{dispatch_candidates, dispatches},
    write_tx,
};
use crate::domain::{
    self, AssignmentId, AssignmentStatus, CandidateOutcome, DispatchEnd, DispatchId, DispatchMode,
    DispatchStatus, DomainEvent, MasterId, OrderId, Outcome,
};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = dispatches)]
pub struct Dispatch {
    pub id: i64,
    pub order_id: i64,
    pub status: DispatchStatus,
    pub mode: DispatchMode,
    pub batch_size: i64,
    pub ttl_ms: i64,
    pub skip_offline: bool,
    /// Who accepted, once it is `assigned`.
    pub master_id: Option<i64>,
    pub needs_step: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = dispatch_candidates)]
pub struct Candidate {
    pub dispatch_id: i64,
    pub position: i64,
    pub master_id: i64,
    pub outcome: CandidateOutcome,
    pub assignment_id: Option<i64>,
}

/// What a new dispatch asks for; checked by the service.
#[derive(Debug, Clone)]
pub struct DispatchPlan {
    pub order_id: i64,
    pub mode: DispatchMode,
    pub batch_size: i64,
    pub ttl_ms: i64,
    pub skip_offline: bool,
    pub candidates: Vec<i64>,
}

/// Why a dispatch could not start.
#[derive(Debug, PartialEq)]
pub enum DispatchRefused {
    OrderNotFound,
    /// Accepted by a master, completed or cancelled.
    OrderTaken,
    /// This running dispatch has the order already.
    AlreadyDispatching(i64),
}

/// A dispatch with its candidates in order.
#[derive(Debug, Clone)]
pub struct DispatchState {
    pub dispatch: Dispatch,
    pub candidates: Vec<Candidate>,
}

impl From<DispatchState> for domain::records::Dispatch {
    fn from(state: DispatchState) -> Self {
        let d = state.dispatch;
        domain::records::Dispatch {
            id: DispatchId(d.id),
            order_id: OrderId(d.order_id),
            status: d.status,
            mode: d.mode,
            candidates: state
                .candidates
                .into_iter()
                .map(|c| domain::records::Candidate {
                    master_id: MasterId(c.master_id),
                    outcome: c.outcome,
                    assignment_id: c.assignment_id.map(AssignmentId),
                })
                .collect(),
            batch_size: d.batch_size,
            ttl_ms: d.ttl_ms,
            skip_offline: d.skip_offline,
            master_id: d.master_id.map(MasterId),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// A cancelled dispatch's end, and the outstanding offers its cancel cancelled.
pub type Cancelled = (DispatchEnd, Vec<Assignment>);

/// What one step did.
#[derive(Debug, Default)]
pub struct Step {
    /// The offers it made, with their order.
    pub offers: Vec<(Assignment, Order)>,
    pub ended: Option<DispatchEnd>,
}

impl Step {
    /// The events that announce it: the offers it made, and its end.
    pub fn events(self) -> Vec<DomainEvent> {
        self.offers
            .iter()
            .map(|(assignment, order)| DomainEvent::Offered(assignment.offer(order)))
            .chain(self.ended.map(DomainEvent::DispatchEnded))
            .collect()
    }
}

/// What a transaction's decisions did to the dispatches of their orders.
#[derive(Debug, Default)]
pub struct Followed {
    pub ended: Vec<DispatchEnd>,
    /// Running dispatches that lost an outstanding offer and must offer to the next candidates.
    pub to_step: Vec<DispatchId>,
}

impl Dispatch {
    pub fn id(&self) -> DispatchId {
        DispatchId(self.id)
    }

    /// How many offers it keeps outstanding at once.
    fn outstanding_wanted(&self, candidates: usize) -> usize {
        match self.mode {
            DispatchMode::Sequential => self.batch_size.max(1) as usize,
            DispatchMode::Broadcast => candidates,
        }
    }

    fn end(&self) -> DispatchEnd {
        DispatchEnd {
            dispatch_id: self.id(),
            order_id: OrderId(self.order_id),
            status: self.status,
            master_id: self.master_id.map(MasterId),
            at: self.updated_at,
        }
    }

    pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<DispatchState>> {
        let Some(dispatch) = dispatches::table
            .find(id)
            .first::<Dispatch>(conn)
            .optional()?
        else {
            return Ok(None);
        };
        let candidates = Candidate::of(conn, id)?;
        Ok(Some(DispatchState {
            dispatch,
            candidates,
        }))
    }

    /// Starts a dispatch and takes its first step, in one transaction. `online` holds the
    /// candidates with a subscribed connection; it matters only with `skip_offline`.
    pub fn create(
        conn: &mut DbConn,
        plan: &DispatchPlan,
        online: &HashSet<i64>,
        now: i64,
    ) -> QueryResult<Result<(DispatchState, Step), DispatchRefused>> {
        write_tx(conn, |conn| {
            lock_order(conn, plan.order_id)?;
            let Some(order) = Order::find(conn, plan.order_id)? else {
                return Ok(Err(DispatchRefused::OrderNotFound));
            };
            if !order.takes_offers() {
                return Ok(Err(DispatchRefused::OrderTaken));
            }
            let running = dispatches::table
                .filter(dispatches::order_id.eq(plan.order_id))
                .filter(dispatches::status.eq(DispatchStatus::Running))
                .select(dispatches::id)
                .first::<i64>(conn)
                .optional()?;
            if let Some(running) = running {
                return Ok(Err(DispatchRefused::AlreadyDispatching(running)));
            }
            let dispatch: Dispatch = diesel::insert_into(dispatches::table)
                .values((
                    dispatches::order_id.eq(plan.order_id),
                    dispatches::status.eq(DispatchStatus::Running),
                    dispatches::mode.eq(plan.mode),
                    dispatches::batch_size.eq(plan.batch_size),
                    dispatches::ttl_ms.eq(plan.ttl_ms),
                    dispatches::skip_offline.eq(plan.skip_offline),
                    dispatches::needs_step.eq(false),
                    dispatches::created_at.eq(now),
                    dispatches::updated_at.eq(now),
                ))
                .returning(dispatches::all_columns)
                .get_result(conn)?;
            for (position, master_id) in plan.candidates.iter().enumerate() {
                diesel::insert_into(dispatch_candidates::table)
                    .values((
                        dispatch_candidates::dispatch_id.eq(dispatch.id),
                        dispatch_candidates::position.eq(position as i64),
                        dispatch_candidates::master_id.eq(master_id),
                        dispatch_candidates::outcome.eq(CandidateOutcome::Pending),
                    ))
                    .execute(conn)?;
            }
            let id = dispatch.id;
            let step = Self::step_locked(conn, dispatch, order, online, now)?;
            let state = Self::find(conn, id)?.expect("the dispatch was just stored");
            Ok(Ok((state, step)))
        })
    }

    /// The masters a step of these dispatches could offer to next.
    pub fn waiting_candidates(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<i64>> {
        dispatch_candidates::table
            .filter(dispatch_candidates::dispatch_id.eq_any(ids))
            .filter(dispatch_candidates::outcome.eq(CandidateOutcome::Pending))
            .select(dispatch_candidates::master_id)
            .load(conn)
    }

    /// Moves a running dispatch on: settles the candidates whose offers ended, offers to the next
    /// ones until enough offers are outstanding, and ends it when no candidate is left. Taken
    /// twice, or on two nodes, the second step finds nothing to do.
    pub fn step(conn: &mut DbConn, id: i64, online: &HashSet<i64>, now: i64) -> QueryResult<Step> {
        write_tx(conn, |conn| {
            let Some(dispatch) = Self::lock(conn, id)? else {
                return Ok(Step::default());
            };
            if dispatch.status != DispatchStatus::Running {
                return Ok(Step::default());
            }
            let order = Order::find(conn, dispatch.order_id)?.expect("a dispatch's order exists");
            Self::step_locked(conn, dispatch, order, online, now)
        })
    }

    /// Takes the lock of the dispatch's order (every change to a dispatch holds it), then reads
    /// the dispatch as it stands under the lock.
    fn lock(conn: &mut DbConn, id: i64) -> QueryResult<Option<Dispatch>> {
        let Some(order_id) = dispatches::table
            .find(id)
            .select(dispatches::order_id)
            .first::<i64>(conn)
            .optional()?
        else {
            return Ok(None);
        };
        lock_order(conn, order_id)?;
        dispatches::table.find(id).first(conn).map(Some)
    }

    fn step_locked(
        conn: &mut DbConn,
        dispatch: Dispatch,
        order: Order,
        online: &HashSet<i64>,
        now: i64,
    ) -> QueryResult<Step> {
        // Every decision recorded its candidate's outcome in its own transaction (`follow`).
        let mut candidates = Candidate::of(conn, dispatch.id)?;
        let mut step = Step::default();
        if !order.takes_offers() {
            let (status, master) = match order.master_id {
                Some(master) => (DispatchStatus::Assigned, Some(master)),
                None => (DispatchStatus::Cancelled, None),
            };
            step.ended = Some(Self::finish(conn, dispatch.id, status, master, now)?);
            return Ok(step);
        }
        let wanted = dispatch.outstanding_wanted(candidates.len());
        let mut outstanding = candidates
            .iter()
            .filter(|c| c.outcome == CandidateOutcome::Offered)
            .count();
        let waiting: Vec<i64> = candidates
            .iter()
            .filter(|c| c.outcome == CandidateOutcome::Pending)
            .map(|c| c.master_id)
            .collect();
        let on_shift = if dispatch.skip_offline {
            Master::on_shift_of(conn, &waiting)?
        } else {
            Default::default()
        };
        for candidate in &mut candidates {
            if outstanding >= wanted {
                break;
            }
            if candidate.outcome != CandidateOutcome::Pending {
                continue;
            }
            let master_id = candidate.master_id;
            let reachable = !dispatch.skip_offline
                || (on_shift.get(&master_id) == Some(&true) && online.contains(&master_id));
            let offered = if reachable {
                Assignment::insert_pending(conn, order.id, master_id, dispatch.ttl_ms)?
            } else {
                None
            };
            // A master who has an offer of this order from outside the dispatch is skipped too.
            match offered {
                Some(assignment) => {
                    candidate.settle(conn, CandidateOutcome::Offered, Some(assignment.id))?;
                    step.offers.push((assignment, order.clone()));
                    outstanding += 1;
                }
                None => candidate.settle(conn, CandidateOutcome::Skipped, None)?,
            }
        }
        if outstanding == 0 {
            step.ended = Some(Self::finish(
                conn,
                dispatch.id,
                DispatchStatus::Exhausted,
                None,
                now,
            )?);
        } else if dispatch.needs_step {
            diesel::update(dispatches::table.find(dispatch.id))
                .set((
                    dispatches::needs_step.eq(false),
                    dispatches::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        Ok(step)
    }

    fn finish(
        conn: &mut DbConn,
        id: i64,
        status: DispatchStatus,
        master: Option<i64>,
        now: i64,
    ) -> QueryResult<DispatchEnd> {
        let ended: Dispatch = diesel::update(dispatches::table.find(id))
            .set((
                dispatches::status.eq(status),
                dispatches::master_id.eq(master),
                dispatches::needs_step.eq(false),
                dispatches::updated_at.eq(now),
            ))
            .returning(dispatches::all_columns)
            .get_result(conn)?;
        Ok(ended.end())
    }

    /// Ends the order's running dispatch, if it has one.
    fn finish_running_of_order(
        conn: &mut DbConn,
        order_id: OrderId,
        status: DispatchStatus,
        master: Option<MasterId>,
        now: i64,
    ) -> QueryResult<Option<DispatchEnd>> {
        let running = dispatches::table
            .filter(dispatches::order_id.eq(order_id.0))
            .filter(dispatches::status.eq(DispatchStatus::Running))
            .select(dispatches::id)
            .first::<i64>(conn)
            .optional()?;
        running
            .map(|id| Self::finish(conn, id, status, master.map(|m| m.0), now))
            .transpose()
    }

    /// Records in the dispatches what a transaction's events decided, in that transaction: a
    /// candidate's offer ended, an accept assigns the order's running dispatch, a closed order
    /// cancels it. Every decision passes here, so none can leave a dispatch behind.
    pub fn follow(conn: &mut DbConn, events: &[DomainEvent], now: i64) -> QueryResult<Followed> {
        let mut followed = Followed::default();
        // One statement per outcome, however many offers ended (an expiry decides many at once).
        let mut touched = Vec::new();
        for outcome in [
            Outcome::Accepted,
            Outcome::Rejected,
            Outcome::Expired,
            Outcome::Cancelled,
        ] {
            let ids: Vec<i64> = events
                .iter()
                .filter_map(|e| match e {
                    DomainEvent::Decided(d) if d.outcome == outcome => Some(d.assignment_id.0),
                    _ => None,
                })
                .collect();
            for chunk in ids.chunks(1000) {
                let of_dispatches: Vec<i64> = diesel::update(
                    dispatch_candidates::table
                        .filter(dispatch_candidates::assignment_id.eq_any(chunk))
                        .filter(dispatch_candidates::outcome.eq(CandidateOutcome::Offered)),
                )
                .set(dispatch_candidates::outcome.eq(CandidateOutcome::from(outcome)))
                .returning(dispatch_candidates::dispatch_id)
                .get_results(conn)?;
                if outcome != Outcome::Accepted {
                    touched.extend(of_dispatches);
                }
            }
        }
        for event in events {
            match event {
                DomainEvent::Decided(d) if d.outcome == Outcome::Accepted => {
                    followed.ended.extend(Self::finish_running_of_order(
                        conn,
                        d.order_id,
                        DispatchStatus::Assigned,
                        Some(d.master_id),
                        now,
                    )?);
                }
                DomainEvent::OrderStatusChanged(change) if change.status.is_closed() => {
                    followed.ended.extend(Self::finish_running_of_order(
                        conn,
                        change.order_id,
                        DispatchStatus::Cancelled,
                        None,
                        now,
                    )?);
                }
                _ => {}
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for chunk in touched.chunks(1000) {
            let marked: Vec<i64> = diesel::update(
                dispatches::table
                    .filter(dispatches::id.eq_any(chunk))
                    .filter(dispatches::status.eq(DispatchStatus::Running)),
            )
            .set((
                dispatches::needs_step.eq(true),
                dispatches::updated_at.eq(now),
            ))
            .returning(dispatches::id)
            .get_results(conn)?;
            followed.to_step.extend(marked.into_iter().map(DispatchId));
        }
        followed.to_step.sort_unstable();
        Ok(followed)
    }

    /// Cancels a running dispatch: answers its end and the outstanding offers it cancelled, or
    /// the status it had ended with; `None` when there is no such dispatch.
    pub fn cancel(
        conn: &mut DbConn,
        id: i64,
        now: i64,
    ) -> QueryResult<Option<Result<Cancelled, DispatchStatus>>> {
        write_tx(conn, |conn| {
            let Some(dispatch) = Self::lock(conn, id)? else {
                return Ok(None);
            };
            if dispatch.status != DispatchStatus::Running {
                return Ok(Some(Err(dispatch.status)));
            }
            let end = Self::finish(conn, id, DispatchStatus::Cancelled, None, now)?;
            let mut cancelled = Vec::new();
            for candidate in Candidate::of(conn, id)? {
                if candidate.outcome == CandidateOutcome::Offered
                    && let Some(assignment_id) = candidate.assignment_id
                    && let Some(assignment) = Assignment::decide_one(
                        conn,
                        assignment_id,
                        AssignmentStatus::Cancelled,
                        Deadline::Ignored,
                        now,
                        None,
                    )?
                {
                    cancelled.push(assignment);
                }
            }
            Ok(Some(Ok((end, cancelled))))
        })
    }

    /// Running dispatches whose step is overdue: the node that decided their offer did not
    /// take it before `before` (ms).
    pub fn needing_step(conn: &mut DbConn, before: i64) -> QueryResult<Vec<i64>> {
        dispatches::table
            .filter(dispatches::needs_step.eq(true))
            .filter(dispatches::status.eq(DispatchStatus::Running))
            .filter(dispatches::updated_at.lt(before))
            .order(dispatches::id.asc())
            .limit(1000)
            .select(dispatches::id)
            .load(conn)
    }
}

impl Candidate {
    fn of(conn: &mut DbConn, dispatch_id: i64) -> QueryResult<Vec<Candidate>> {
        dispatch_candidates::table
            .filter(dispatch_candidates::dispatch_id.eq(dispatch_id))
            .order(dispatch_candidates::position.asc())
            .select(Candidate::as_select())
            .load(conn)
    }

    fn settle(
        &mut self,
        conn: &mut DbConn,
        outcome: CandidateOutcome,
        assignment_id: Option<i64>,
    ) -> QueryResult<()> {
        diesel::update(dispatch_candidates::table.find((self.dispatch_id, self.position)))
            .set((
                dispatch_candidates::outcome.eq(outcome),
                dispatch_candidates::assignment_id.eq(assignment_id.or(self.assignment_id)),
            ))
            .execute(conn)?;
        self.outcome = outcome;
        self.assignment_id = assignment_id.or(self.assignment_id);
        Ok(())
    }
}
