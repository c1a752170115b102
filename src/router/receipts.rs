//! Offer receipts: a connection that subscribed with `acks` acknowledges each offer. Until it
//! does, the offer is sent again 2 s, then 4 s, later (gaps doubling, capped at 30 s); when the
//! 4th send falls due with none acknowledged, the socket is taken as dead and closed with 1001,
//! so that the phone reconnects. Node-local: the acknowledgement itself is stored by the service.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use super::{Router, messages::CloseConnection};
use crate::{
    domain::time::now_ms,
    domain::{AssignmentId, Offer},
    protocol::{CloseCode, ServerMessage},
    router::messages::ConnId,
};

/// The first gap between sends; each next one is twice the last, up to `MAX_GAP_MS`.
const FIRST_GAP_MS: i64 = 2_000;
const MAX_GAP_MS: i64 = 30_000;
/// Unacknowledged sends after which the next due one closes the connection instead.
const SENDS_BEFORE_DEAD: u32 = 3;

/// A connection's offers sent and not yet acknowledged.
#[derive(Debug, Default)]
pub struct Receipts {
    unacked: HashMap<AssignmentId, Unacked>,
}

#[derive(Debug)]
struct Unacked {
    offer: Arc<Offer>,
    sends: u32,
    next_due: i64,
}

/// When each connection's next send of each offer falls due, in order.
#[derive(Debug, Default)]
pub struct Redeliveries(BTreeSet<(i64, ConnId, AssignmentId)>);

fn gap_after(sends: u32) -> i64 {
    (FIRST_GAP_MS << (sends.saturating_sub(1)).min(8)).min(MAX_GAP_MS)
}

impl Receipts {
    /// The offer was acknowledged, or decided: it is not sent again.
    pub fn stop_waiting(&mut self, assignment_id: AssignmentId) {
        self.unacked.remove(&assignment_id);
    }
}

impl Router {
    /// Starts waiting for the receipts of an offer just pushed to its master's connections.
    pub(super) fn await_receipts(&mut self, offer: &Offer) {
        let sent_to: Vec<ConnId> = self
            .by_master
            .get(&offer.master_id)
            .filter(|id| {
                self.connections.get(id).is_some_and(|c| {
                    c.receipts.is_some() && c.offered.contains(&offer.assignment_id)
                })
            })
            .collect();
        if sent_to.is_empty() {
            return;
        }
        let (offer, now) = (Arc::new(offer.clone()), now_ms());
        for id in sent_to {
            self.await_receipt(id, &offer, now);
        }
    }

    /// Starts waiting for `id`'s receipt of `offer`, just sent, if it acknowledges offers.
    pub(super) fn await_receipt(&mut self, id: ConnId, offer: &Arc<Offer>, now: i64) {
        let Some(receipts) = self
            .connections
            .get_mut(&id)
            .and_then(|c| c.receipts.as_mut())
        else {
            return;
        };
        if receipts.unacked.contains_key(&offer.assignment_id) {
            return;
        }
        let next_due = now + gap_after(1);
        receipts.unacked.insert(
            offer.assignment_id,
            Unacked {
                offer: offer.clone(),
                sends: 1,
                next_due,
            },
        );
        self.redeliveries
            .0
            .insert((next_due, id, offer.assignment_id));
    }

    /// Sends again what fell due; closes connections that acknowledged none of its sends.
    pub(super) fn redeliver_due(&mut self) {
        let now = now_ms();
        while let Some(&(due, id, assignment_id)) = self.redeliveries.0.first() {
            if due > now {
                break;
            }
            self.redeliveries.0.pop_first();
            let Some(conn) = self.connections.get_mut(&id) else {
                continue;
            };
            let Some(receipts) = conn.receipts.as_mut() else {
                continue;
            };
            let Some(unacked) = receipts.unacked.get_mut(&assignment_id) else {
                continue;
            };
            if unacked.next_due != due {
                continue;
            }
            if now >= unacked.offer.expires_at {
                receipts.unacked.remove(&assignment_id);
                continue;
            }
            if unacked.sends >= SENDS_BEFORE_DEAD {
                log::info!(
                    "connection {id:016x} acknowledged none of {} sends of offer {assignment_id}; closing it",
                    unacked.sends
                );
                conn.control.do_send(CloseConnection {
                    code: CloseCode::Away,
                    reason: "no acknowledgement",
                });
                self.remove(id);
                continue;
            }
            unacked.sends += 1;
            unacked.next_due = due + gap_after(unacked.sends);
            let next = (unacked.next_due, id, assignment_id);
            let frame = ServerMessage::new_assignment(&unacked.offer, now).frame(None);
            self.redeliveries.0.insert(next);
            self.send_to(id, frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_fall_due_at_0_2_6_and_14_seconds() {
        let mut at = 0;
        let mut sends = vec![at];
        for sent in 1..=3 {
            at += gap_after(sent);
            sends.push(at);
        }
        assert_eq!(sends, vec![0, 2_000, 6_000, 14_000]);
        assert_eq!(gap_after(10), MAX_GAP_MS);
    }
}
