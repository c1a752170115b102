//! Replays: the open offers a connection is sent again on subscribe or after a gap. A connection
//! has at most one replay task, paced by its queue's room; offers to replay while it runs join it.
//! Unsubscribing or closing stops the task and frees the offers it still held.
//!
//! What a replay holds and what its queue holds stay within `MAX_QUEUED_BYTES` together: offers
//! past that are left out, and once the rest are out the session reads the open offers again.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use actix::Recipient;
use prometheus::IntGauge;

use super::{messages::ReplayMore, outbox::Outbox};
use crate::{
    domain::{Offer, time::deciding_now},
    protocol::ServerMessage,
};

#[derive(Default)]
struct Pending {
    offers: VecDeque<Offer>,
    /// What the offers' frames will take, roughly.
    bytes: usize,
    /// A task is taking offers from here.
    running: bool,
    /// Offers were left out for want of room: once these are sent, ask for them again.
    left_out: bool,
    /// Counts this replay in `dispatcher_replays_in_flight` from its start until nothing is left,
    /// across the reads it asks for.
    counted: Option<InFlight>,
}

/// One connection's replay.
#[derive(Default)]
pub struct Replay {
    pending: Arc<Mutex<Pending>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Where a replay that left offers out asks for them again.
pub struct Asker<'a> {
    pub more: &'a Recipient<ReplayMore>,
    pub in_flight: &'a IntGauge,
}

impl Replay {
    /// Bytes of offers it may still take: the queue's room less what it holds already.
    pub fn room(&self, outbox: &Outbox) -> usize {
        outbox.room().saturating_sub(self.lock().bytes)
    }

    /// It holds nothing, and the queue is empty.
    pub fn is_idle(&self, outbox: &Outbox) -> bool {
        self.lock().offers.is_empty() && outbox.room() == outbox.max_bytes()
    }

    /// Queues `offers` to be sent; starts the task unless one is running. `left_out` says that
    /// offers did not fit, to be asked for once these are out. Nothing to add, when nothing is
    /// running, ends the replay.
    pub fn add(&mut self, offers: Vec<Offer>, left_out: bool, outbox: &Outbox, asker: Asker) {
        let mut pending = self.lock();
        pending.bytes += offers.iter().map(frame_size).sum::<usize>();
        pending.offers.extend(offers);
        pending.left_out |= left_out;
        if pending.running {
            return;
        }
        if pending.offers.is_empty() && !pending.left_out {
            pending.counted = None;
            return;
        }
        pending.running = true;
        if pending.counted.is_none() {
            pending.counted = Some(InFlight::new(asker.in_flight.clone()));
        }
        drop(pending);
        let task = send(outbox.clone(), self.pending.clone(), asker.more.clone());
        self.task = Some(actix_web::rt::spawn(task));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .expect("no panic while the lock is held")
    }

    /// Drops a decided offer that has not gone out yet.
    pub fn forget(&self, assignment_id: crate::domain::AssignmentId) {
        let mut pending = self.lock();
        let Some(at) = pending
            .offers
            .iter()
            .position(|offer| offer.assignment_id == assignment_id)
        else {
            return;
        };
        if let Some(offer) = pending.offers.remove(at) {
            pending.bytes = pending.bytes.saturating_sub(frame_size(&offer));
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What an offer's frame takes on the wire, roughly: its texts and the frame's fixed part.
pub fn frame_size(offer: &Offer) -> usize {
    const FIXED: usize = 256;
    FIXED + offer.address.len() + offer.device_type.len() + offer.problem.len()
}

/// Sends the pending offers one at a time, each once there is room for it, built when it goes in
/// (so it carries the time left then), and skipped if its deadline passed meanwhile. Then, if
/// offers were left out, waits until the queue is empty and asks the session to read them again.
async fn send(outbox: Outbox, pending: Arc<Mutex<Pending>>, more: Recipient<ReplayMore>) {
    /// Room kept for the next frame before it is built.
    const TYPICAL_FRAME: usize = 512;
    let lock = || pending.lock().expect("no panic while the lock is held");
    loop {
        if !outbox.room_for(TYPICAL_FRAME).await {
            return;
        }
        let next = {
            let mut pending = lock();
            let next = pending.offers.pop_front();
            match &next {
                Some(offer) => pending.bytes = pending.bytes.saturating_sub(frame_size(offer)),
                None if !pending.left_out => (pending.running, pending.counted) = (false, None),
                None => {}
            }
            next
        };
        let Some(offer) = next else {
            if !lock().left_out || !outbox.room_for(outbox.max_bytes()).await {
                return;
            }
            let mut pending = lock();
            if !pending.offers.is_empty() {
                continue;
            }
            (pending.left_out, pending.running) = (false, false);
            more.do_send(ReplayMore);
            return;
        };
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
