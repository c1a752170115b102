//! The webhook outbox: events written in the transaction of the decision they report, then sent
//! by any node, one at a time per order, until the receiver takes them or they are given up.

use diesel::prelude::*;

use super::{DbConn, schema::webhook_events};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = webhook_events)]
pub struct WebhookDelivery {
    pub id: i64,
    pub event_id: String,
    pub order_id: i64,
    pub body: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_until: Option<i64>,
    pub outcome: Option<String>,
    pub done_at: Option<i64>,
}

/// An event to send, as the transaction that decided it records it.
#[derive(Debug, Clone)]
pub struct NewWebhookDelivery {
    pub event_id: String,
    pub order_id: i64,
    pub body: String,
}

/// How sending an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookDone {
    Delivered,
    /// `WEBHOOK_MAX_AGE_SECS` passed without a delivery.
    TooOld,
}

impl WebhookDone {
    fn as_str(self) -> &'static str {
        match self {
            WebhookDone::Delivered => "delivered",
            WebhookDone::TooOld => "too_old",
        }
    }
}

/// What re-opening a given-up event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopened {
    Reopened,
    NotFound,
    /// Still being sent, or delivered.
    NotGivenUp,
}

impl WebhookDelivery {
    pub fn record(conn: &mut DbConn, events: &[NewWebhookDelivery], now: i64) -> QueryResult<()> {
        for event in events {
            diesel::insert_into(webhook_events::table)
                .values((
                    webhook_events::event_id.eq(&event.event_id),
                    webhook_events::order_id.eq(event.order_id),
                    webhook_events::body.eq(&event.body),
                    webhook_events::created_at.eq(now),
                    webhook_events::next_attempt_at.eq(now),
                ))
                .execute(conn)?;
        }
        Ok(())
    }

    /// Claims, until `hold_until`, up to `limit` events that are due: the oldest open event of
    /// each order, unless another sender holds it. Later events of an order wait for it, so a
    /// receiver gets each order's events in order.
    pub fn claim_due(
        conn: &mut DbConn,
        now: i64,
        hold_until: i64,
        limit: i64,
    ) -> QueryResult<Vec<WebhookDelivery>> {
        let heads: Vec<Option<i64>> = webhook_events::table
            .filter(webhook_events::done_at.is_null())
            .group_by(webhook_events::order_id)
            .select(diesel::dsl::min(webhook_events::id))
            .load(conn)?;
        let mut heads: Vec<i64> = heads.into_iter().flatten().collect();
        heads.sort_unstable();
        let mut due = Vec::new();
        // Chunks keep each query under the backends' limits on bound parameters.
        for chunk in heads.chunks(1000) {
            if due.len() as i64 >= limit {
                break;
            }
            due.extend(
                webhook_events::table
                    .filter(webhook_events::id.eq_any(chunk))
                    .filter(webhook_events::next_attempt_at.le(now))
                    .filter(
                        webhook_events::claimed_until
                            .is_null()
                            .or(webhook_events::claimed_until.lt(now)),
                    )
                    .order(webhook_events::id.asc())
                    .limit(limit - due.len() as i64)
                    .select(WebhookDelivery::as_select())
                    .load::<WebhookDelivery>(conn)?,
            );
        }
        let mut claimed = Vec::with_capacity(due.len());
        for event in due {
            // Conditional, so that of two nodes claiming at once only one wins.
            let won = diesel::update(
                webhook_events::table
                    .find(event.id)
                    .filter(webhook_events::done_at.is_null())
                    .filter(
                        webhook_events::claimed_until
                            .is_null()
                            .or(webhook_events::claimed_until.lt(now)),
                    ),
            )
            .set(webhook_events::claimed_until.eq(hold_until))
            .execute(conn)?;
            if won == 1 {
                claimed.push(event);
            }
        }
        Ok(claimed)
    }

    pub fn finish(conn: &mut DbConn, id: i64, done: WebhookDone, now: i64) -> QueryResult<()> {
        diesel::update(webhook_events::table.find(id))
            .set((
                webhook_events::outcome.eq(done.as_str()),
                webhook_events::done_at.eq(now),
                webhook_events::claimed_until.eq(None::<i64>),
                webhook_events::attempts.eq(webhook_events::attempts + 1),
            ))
            .execute(conn)?;
        Ok(())
    }

    pub fn retry_at(conn: &mut DbConn, id: i64, next_attempt_at: i64) -> QueryResult<()> {
        diesel::update(webhook_events::table.find(id))
            .set((
                webhook_events::attempts.eq(webhook_events::attempts + 1),
                webhook_events::next_attempt_at.eq(next_attempt_at),
                webhook_events::claimed_until.eq(None::<i64>),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// Sends a given-up event again, as if it had just been recorded: a fresh
    /// `WEBHOOK_MAX_AGE_SECS` from `now`. Events given up by older versions ('refused') too.
    pub fn reopen(conn: &mut DbConn, event_id: &str, now: i64) -> QueryResult<Reopened> {
        let reopened = diesel::update(
            webhook_events::table
                .filter(webhook_events::event_id.eq(event_id))
                .filter(webhook_events::outcome.eq_any(["too_old", "refused"])),
        )
        .set((
            webhook_events::outcome.eq(None::<String>),
            webhook_events::done_at.eq(None::<i64>),
            webhook_events::claimed_until.eq(None::<i64>),
            webhook_events::created_at.eq(now),
            webhook_events::next_attempt_at.eq(now),
        ))
        .execute(conn)?;
        if reopened == 1 {
            return Ok(Reopened::Reopened);
        }
        let known: i64 = webhook_events::table
            .filter(webhook_events::event_id.eq(event_id))
            .count()
            .get_result(conn)?;
        Ok(if known == 0 {
            Reopened::NotFound
        } else {
            Reopened::NotGivenUp
        })
    }

    /// Deletes the delivered events done before `before`; answers how many.
    pub fn delete_delivered_before(conn: &mut DbConn, before: i64) -> QueryResult<usize> {
        diesel::delete(
            webhook_events::table
                .filter(webhook_events::outcome.eq(WebhookDone::Delivered.as_str()))
                .filter(webhook_events::done_at.lt(before)),
        )
        .execute(conn)
    }

    /// How many events are still to be sent.
    pub fn open_count(conn: &mut DbConn) -> QueryResult<i64> {
        webhook_events::table
            .filter(webhook_events::done_at.is_null())
            .count()
            .get_result(conn)
    }
}
