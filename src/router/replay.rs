//! Replays: the open offers a connection is sent again on subscribe or after a gap. A connection
//! has at most one replay task, paced by its queue's room; offers to replay while it runs join it.
//! Unsubscribing or closing stops the task and frees the offers it still held.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use prometheus::IntGauge;

use super::outbox::Outbox;
use crate::{
    domain::{Offer, time::deciding_now},
    protocol::ServerMessage,
};

#[derive(Default)]
struct Pending {
    offers: VecDeque<Offer>,
    /// A task is taking offers from here.
    running: bool,
}

/// One connection's replay.
#[derive(Default)]
pub struct Replay {
    pending: Arc<Mutex<Pending>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Replay {
    /// Queues `offers` to be sent; starts the task unless one is running.
    pub fn add(&mut self, offers: Vec<Offer>, outbox: &Outbox, in_flight: &IntGauge) {
        let mut pending = self
            .pending
            .lock()
            .expect("no panic while the lock is held");
        pending.offers.extend(offers);
        if pending.running || pending.offers.is_empty() {
            return;
        }
        pending.running = true;
        let counted = InFlight::new(in_flight.clone());
        let task = send(outbox.clone(), self.pending.clone(), counted);
        self.task = Some(actix_web::rt::spawn(task));
    }
}

impl Replay {
    /// Drops a decided offer that has not gone out yet.
    pub fn forget(&self, assignment_id: crate::domain::AssignmentId) {
        self.pending
            .lock()
            .expect("no panic while the lock is held")
            .offers
            .retain(|offer| offer.assignment_id != assignment_id);
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Sends the pending offers one at a time, each once there is room for it, built when it goes in
/// (so it carries the time left then), and skipped if its deadline passed meanwhile.
async fn send(outbox: Outbox, pending: Arc<Mutex<Pending>>, _counted: InFlight) {
    loop {
        if !outbox.room_for_replay().await {
            return;
        }
        let next = {
            let mut pending = pending.lock().expect("no panic while the lock is held");
            let next = pending.offers.pop_front();
            pending.running = next.is_some();
            next
        };
        let Some(offer) = next else { return };
        let now = deciding_now();
        if now >= offer.expires_at {
            continue;
        }
        let frame = ServerMessage::new_assignment(&offer, now).frame(None);
        if outbox.replayed(frame).is_err() {
            return;
        }
    }
}

/// Counts a replay task in `dispatcher_replays_in_flight` for as long as it lives, aborted or not.
struct InFlight(IntGauge);

impl InFlight {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
