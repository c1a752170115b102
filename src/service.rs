//! What callers can do to orders, assignments and masters. HTTP routes and WebSocket messages both
//! come here after their role checks, so both answer the same way.
//!
//! Each operation stores first, then tells the Dispatcher, whose pushes only follow committed changes.

use std::time::Duration;

use crate::{
    auth::AuthUser,
    db::{
        self,
        models::{
            Accepted, Assignment, Deadline, Master, OfferRefused, Order, OrderFields,
            assignment_status,
        },
    },
    dispatcher::messages::{DomainEvent, Offer, Publish},
    error::AppError,
    startup::AppState,
    time::now_ms,
    views::OfferView,
    ws::protocol::{AssignmentEventKind, ServerMessage},
};

/// The longest response deadline an offer may ask for.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Runs database work for a request on a blocking thread.
pub async fn with_db<T, F>(app: &AppState, f: F) -> Result<T, AppError>
where
    F: FnOnce(&mut db::DbConn) -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    db::run(&app.pool, f).await
}

async fn publish(app: &AppState, events: Vec<DomainEvent>) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = app.dispatcher.send(Publish(events)).await {
        log::error!("dispatcher did not take notifications: {e}");
    }
}

fn decided(assignment: Assignment, kind: AssignmentEventKind) -> DomainEvent {
    DomainEvent::Decided { assignment, kind }
}

pub async fn upsert_order(app: &AppState, id: i64, fields: OrderFields) -> Result<Order, AppError> {
    let now = now_ms();
    with_db(app, move |conn| Ok(Order::upsert(conn, id, &fields, now)?)).await
}

pub async fn set_order_status(app: &AppState, id: i64, status: String) -> Result<Order, AppError> {
    let now = now_ms();
    let (order, cancelled) = with_db(app, move |conn| {
        Order::set_status(conn, id, &status, now)?
            .ok_or_else(|| AppError::NotFound(format!("order {id} not found")))
    })
    .await?;
    let mut events: Vec<DomainEvent> = cancelled
        .into_iter()
        .map(|a| decided(a, AssignmentEventKind::Cancelled))
        .collect();
    events.push(DomainEvent::OrderStatusChanged(order.clone()));
    publish(app, events).await;
    Ok(order)
}

/// Stores an offer and pushes it; answers the assignment and how many connections it reached.
pub async fn offer(
    app: &AppState,
    order_id: i64,
    master_id: i64,
    ttl: Option<Duration>,
) -> Result<(Assignment, usize), AppError> {
    let ttl = ttl.unwrap_or(app.config.assignment_ttl);
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(AppError::BadRequest(format!(
            "ttlSeconds must be between 1 and {}",
            MAX_TTL.as_secs()
        )));
    }
    let now = now_ms();
    let expires_at = now + ttl.as_millis() as i64;
    let (assignment, order) = with_db(app, move |conn| {
        match Assignment::offer(conn, order_id, master_id, now, expires_at)? {
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
    let message = ServerMessage::NewAssignment {
        assignment: OfferView::new(&assignment, &order),
    };
    let delivered = app
        .dispatcher
        .send(Offer {
            assignment: assignment.clone(),
            message,
        })
        .await
        .map_err(|e| AppError::Internal(format!("dispatcher unreachable: {e}")))?;
    Ok((assignment, delivered))
}

/// Finds an assignment the caller may see: staff see all, a master only his own.
fn visible(conn: &mut db::DbConn, user: &AuthUser, id: i64) -> Result<Assignment, AppError> {
    let assignment = Assignment::find(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("assignment {id} not found")))?;
    if !user.role.is_staff() && user.master() != Some(assignment.master_id) {
        return Err(AppError::Forbidden(format!(
            "assignment {id} belongs to another master"
        )));
    }
    Ok(assignment)
}

pub async fn get_assignment(
    app: &AppState,
    user: AuthUser,
    id: i64,
) -> Result<Assignment, AppError> {
    with_db(app, move |conn| visible(conn, &user, id)).await
}

/// A master takes the order: the first accept wins, the order's other offers are cancelled.
pub async fn accept(app: &AppState, user: AuthUser, id: i64) -> Result<Accepted, AppError> {
    let now = now_ms();
    let accepted = with_db(app, move |conn| {
        visible(conn, &user, id)?;
        Assignment::accept(conn, id, now)?.ok_or(AppError::NotPending(id))
    })
    .await?;
    let mut events = vec![decided(
        accepted.assignment.clone(),
        AssignmentEventKind::Accepted,
    )];
    events.extend(
        accepted
            .cancelled
            .iter()
            .map(|a| decided(a.clone(), AssignmentEventKind::Cancelled)),
    );
    events.push(DomainEvent::OrderStatusChanged(accepted.order.clone()));
    publish(app, events).await;
    Ok(accepted)
}

pub async fn reject(
    app: &AppState,
    user: AuthUser,
    id: i64,
    reason: Option<String>,
) -> Result<Assignment, AppError> {
    decide(app, user, id, AssignmentEventKind::Rejected, reason).await
}

pub async fn cancel(app: &AppState, user: AuthUser, id: i64) -> Result<Assignment, AppError> {
    decide(app, user, id, AssignmentEventKind::Cancelled, None).await
}

async fn decide(
    app: &AppState,
    user: AuthUser,
    id: i64,
    kind: AssignmentEventKind,
    reason: Option<String>,
) -> Result<Assignment, AppError> {
    let now = now_ms();
    // Staff may cancel at any time; a master must reject before the deadline.
    let (to, deadline) = match kind {
        AssignmentEventKind::Cancelled => (assignment_status::CANCELLED, Deadline::Ignored),
        _ => (assignment_status::REJECTED, Deadline::Before(now)),
    };
    let assignment = with_db(app, move |conn| {
        visible(conn, &user, id)?;
        Assignment::decide_one(conn, id, to, deadline, now, reason.as_deref())?
            .ok_or(AppError::NotPending(id))
    })
    .await?;
    publish(app, vec![decided(assignment.clone(), kind)]).await;
    Ok(assignment)
}

/// A master's offers still open, as `new_assignment` shows them.
pub async fn pending_offers(app: &AppState, master_id: i64) -> Result<Vec<OfferView>, AppError> {
    let now = now_ms();
    let rows = with_db(app, move |conn| {
        Ok(Assignment::pending_for_master(conn, master_id, now)?)
    })
    .await?;
    Ok(rows.iter().map(|(a, o)| OfferView::new(a, o)).collect())
}

pub async fn set_shift(app: &AppState, master_id: i64, on_shift: bool) -> Result<Master, AppError> {
    let now = now_ms();
    with_db(app, move |conn| {
        Ok(Master::set_shift(conn, master_id, on_shift, now)?)
    })
    .await
}
