//! Webhooks to the assignment service: every `assignment_event` and `dispatch_event`, POSTed as
//! JSON with a unique `eventId` and signed as Stripe signs (`X-Dispatcher-Signature:
//! t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`).
//!
//! At least once: the service records the events in the outbox table in the transaction of the
//! decision ([`bodies`]); a sender on every node claims them from there. Per order, one event is
//! in flight at a time, so a receiver gets an order's events in order. Any answer but a 2xx is
//! tried again, backing off, until `WEBHOOK_MAX_AGE_SECS`; a redirect is a failure, never
//! followed with the signed body. Delivered rows are deleted after `WEBHOOK_RETENTION_SECS`.

use std::{sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::{
    config::WebhookConfig,
    domain::DomainEvent,
    domain::time::{deciding_now, now_ms},
    protocol::webhook_body,
    storage::{
        self, DbError, DbPool,
        webhook_deliveries::{NewWebhookDelivery, WebhookDelivery, WebhookDone},
    },
};

pub const SIGNATURE_HEADER: &str = "X-Dispatcher-Signature";

/// The first retry waits this long; each next one twice as long, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A receiver that has not answered by then has failed this attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A claimed event is this node's for this long; if the node dies, another sends it after.
const CLAIM: Duration = Duration::from_secs(30);
/// Events sent at once (each of a different order).
const BATCH: i64 = 32;
/// How often the outbox is read when nothing wakes the sender: for retries falling due and for
/// events other nodes recorded.
const POLL: Duration = Duration::from_secs(1);

/// The webhook rows for those of `events` that are sent, each body built by the protocol with a
/// unique `eventId`. Runs inside the decision's transaction, so it only builds text.
pub fn bodies(events: &[DomainEvent]) -> Vec<NewWebhookDelivery> {
    events
        .iter()
        .filter_map(|event| {
            let event_id = format!("{:032x}", rand::random::<u128>());
            let body = webhook_body(event, &event_id)?;
            Some(NewWebhookDelivery {
                order_id: event.order_id()?.0,
                event_id,
                body,
            })
        })
        .collect()
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn signature(secret: &[u8], unix_secs: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix_secs},v1={hex}")
}

/// The wait before attempt `attempts + 1`, after `attempts` failed ones.
fn backoff(attempts: i64) -> Duration {
    let doublings = attempts.clamp(0, 16) as u32;
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// How one POST went.
enum Answer {
    Taken,
    Failed(String),
}

/// The longest a working sender goes between two rounds: a round waits for its receivers
/// (`REQUEST_TIMEOUT`) and the database, each well within this.
const STALL_AFTER: Duration = Duration::from_secs(30);

/// Sends the outbox's events: woken when this node records some, and every `POLL` for the rest.
pub struct Sender {
    pool: DbPool,
    config: WebhookConfig,
    client: reqwest::Client,
    wake: Arc<Notify>,
    heartbeat: Heartbeat,
}

/// When the sender last began a round, for `/health`.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<std::sync::Mutex<tokio::time::Instant>>);

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat(Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())))
    }
}

impl Heartbeat {
    fn beat(&self) {
        *self.0.lock().expect("no panic while the lock is held") = tokio::time::Instant::now();
    }

    /// Whether the sender has been stuck in one round, or gone, for longer than a round takes.
    pub fn stalled(&self) -> bool {
        self.0
            .lock()
            .expect("no panic while the lock is held")
            .elapsed()
            > STALL_AFTER
    }
}

impl Sender {
    pub fn new(
        pool: DbPool,
        config: WebhookConfig,
        wake: Arc<Notify>,
        heartbeat: Heartbeat,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // A redirect would carry the signed body to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dispatcher/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Sender {
            pool,
            config,
            client,
            wake,
            heartbeat,
        }
    }

    pub async fn run(self) {
        log::info!(
            "webhooks: sending assignment and dispatch events to the configured WEBHOOK_URL"
        );
        let mut pruned_at = tokio::time::Instant::now();
        loop {
            self.heartbeat.beat();
            if pruned_at.elapsed() >= self.prune_every() {
                pruned_at = tokio::time::Instant::now();
                self.prune().await;
            }
            match self.send_due().await {
                Ok(0) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    log::warn!("webhooks: cannot read the outbox: {e}");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Pruning runs this often: every minute, or more often for a retention under a minute.
    fn prune_every(&self) -> Duration {
        self.config
            .retention
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Deletes the delivered rows older than `WEBHOOK_RETENTION_SECS`.
    async fn prune(&self) {
        let retention = self.config.retention.as_millis() as i64;
        let deleted = storage::run(&self.pool, move |conn| {
            let before = storage::clock(conn)?.saturating_sub(retention);
            WebhookDelivery::delete_delivered_before(conn, before).map_err(DbError::from)
        })
        .await;
        match deleted {
            Ok(0) => {}
            Ok(count) => log::info!("webhooks: deleted {count} delivered events past retention"),
            Err(e) => log::warn!("webhooks: cannot prune delivered events: {e}"),
        }
    }

    /// Sends what is due now; answers how many were sent (well or not).
    async fn send_due(&self) -> Result<usize, DbError> {
        // Leases go by the database's clock, so a node whose own clock runs fast does not take
        // over events that another node still holds.
        let claimed = storage::run(&self.pool, move |conn| {
            let now = storage::clock(conn)?;
            let hold_until = now.saturating_add(CLAIM.as_millis() as i64);
            WebhookDelivery::claim_due(conn, now, hold_until, BATCH).map_err(DbError::from)
        })
        .await?;
        let count = claimed.len();
        let sends = claimed.into_iter().map(|event| async move {
            let answer = self.post(&event).await;
            (event, answer)
        });
        for (event, answer) in futures_util::future::join_all(sends).await {
            self.settle(event, answer).await?;
        }
        Ok(count)
    }

    async fn post(&self, event: &WebhookDelivery) -> Answer {
        let signed = signature(
            self.config.secret.expose().as_bytes(),
            now_ms() / 1000,
            &event.body,
        );
        let sent = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signed)
            .body(event.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Answer::Taken
                } else if status.is_redirection() {
                    let location = response
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .unwrap_or("none");
                    Answer::Failed(format!(
                        "answered {status}, Location: {location}; redirects are not followed, \
                         set WEBHOOK_URL to where it points"
                    ))
                } else {
                    // A 4xx may pass (a secret being rotated, a receiver being deployed).
                    Answer::Failed(format!("answered {status}"))
                }
            }
            // Without the URL: it may carry credentials.
            Err(e) => Answer::Failed(e.without_url().to_string()),
        }
    }

    async fn settle(&self, event: WebhookDelivery, answer: Answer) -> Result<(), DbError> {
        let now = deciding_now();
        let max_age = self.config.max_age.as_millis() as i64;
        let id = event.id;
        let retry_at = now.saturating_add(backoff(event.attempts).as_millis() as i64);
        let done = match answer {
            Answer::Taken => Some(WebhookDone::Delivered),
            Answer::Failed(why) if retry_at - event.created_at > max_age => {
                log::warn!(
                    "webhooks: event {} (order {}) not delivered within WEBHOOK_MAX_AGE_SECS \
                     after {} attempts ({why}); given up (POST \
                     /api/v1/webhooks/events/{{eventId}}/retry sends it again)",
                    event.event_id,
                    event.order_id,
                    event.attempts + 1
                );
                Some(WebhookDone::TooOld)
            }
            Answer::Failed(why) => {
                log::info!(
                    "webhooks: event {} (order {}) attempt {} failed ({why}); next in {:?}",
                    event.event_id,
                    event.order_id,
                    event.attempts + 1,
                    backoff(event.attempts)
                );
                None
            }
        };
        storage::run(&self.pool, move |conn| {
            match done {
                Some(done) => WebhookDelivery::finish(conn, id, done, now),
                None => WebhookDelivery::retry_at(conn, id, retry_at),
            }
            .map_err(DbError::from)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body_in_hex() {
        // Computed independently with Python's hmac module.
        assert_eq!(
            signature(b"0123456789abcdef0123456789abcdef", 1_700_000_000, "{}"),
            "t=1700000000,v1=417adf36b901772f658597a76d329694e335e65fc0849d7715c3ca33406309b5"
        );
    }

    #[test]
    fn retries_double_from_one_second_up_to_five_minutes() {
        let waits: Vec<u64> = (0..11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }
}
