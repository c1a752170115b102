use actix::{Context, Handler, MessageResult};

use super::{Connection, Router, messages::*};
use crate::domain::{Role, input::Topics};
use crate::{
    bus::Deliver,
    domain::DomainEvent,
    domain::time::now_ms,
    metrics::ms_to_secs,
    protocol::CloseCode,
    protocol::{Audience, missed_decision, route},
};

/// Registers a new connection, not yet authenticated.
impl Handler<Connect> for Router {
    type Result = ();

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) {
        self.metrics
            .connections
            .with_label_values(&[Role::label(None)])
            .inc();
        self.connections.insert(msg.id, Connection::new(msg));
        self.note_churn(ctx);
    }
}

/// Forgets a closed connection.
impl Handler<Disconnect> for Router {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        self.remove(msg.id);
        self.note_churn(ctx);
    }
}

/// Indexes a connection by its user and, for masters, by master id.
impl Handler<Authenticated> for Router {
    type Result = ();

    fn handle(&mut self, msg: Authenticated, _: &mut Context<Self>) {
        let Some(conn) = self.connections.get_mut(&msg.id) else {
            return;
        };
        let gauge = &self.metrics.connections;
        gauge
            .with_label_values(&[Role::label(conn.user.map(|u| u.role))])
            .dec();
        gauge
            .with_label_values(&[Role::label(Some(msg.user.role))])
            .inc();
        conn.user = Some(msg.user);
        self.authentications += 1;
        conn.authenticated_seq = self.authentications;
        self.by_user.insert(msg.user.user_id, msg.id);
        if let Some(master_id) = msg.user.master() {
            self.by_master.insert(master_id, msg.id);
        }
        self.enforce_per_user_cap(msg.user);
    }
}

/// Subscribes a master connection to offers, recording the time as a ping.
impl Handler<SubscribeAssignments> for Router {
    type Result = ();

    fn handle(&mut self, msg: SubscribeAssignments, _: &mut Context<Self>) {
        let newly = self
            .connections
            .get(&msg.id)
            .filter(|c| !c.subscribed)
            .and_then(|c| c.user?.master());
        if let Some(master_id) = newly {
            self.note_subscribed(master_id);
        }
        if let Some(conn) = self.connections.get_mut(&msg.id) {
            conn.subscribed = true;
            conn.last_ping.touch();
            if msg.acks && conn.receipts.is_none() {
                conn.receipts = Some(Box::default());
            }
        }
    }
}

/// Stops sending an offer again to the connection that acknowledged it.
impl Handler<Acknowledged> for Router {
    type Result = ();

    fn handle(&mut self, msg: Acknowledged, _: &mut Context<Self>) {
        if let Some(receipts) = self
            .connections
            .get_mut(&msg.id)
            .and_then(|c| c.receipts.as_mut())
        {
            receipts.stop_waiting(msg.assignment_id);
        }
    }
}

/// Stops offers to a connection.
impl Handler<UnsubscribeAssignments> for Router {
    type Result = ();

    fn handle(&mut self, msg: UnsubscribeAssignments, _: &mut Context<Self>) {
        self.unsubscribe(msg.id);
    }
}

/// Adds a service or admin connection to the assignment event feed.
impl Handler<SubscribeEvents> for Router {
    type Result = ();

    fn handle(&mut self, msg: SubscribeEvents, _: &mut Context<Self>) {
        if self.connections.contains_key(&msg.id) {
            self.event_listeners.insert(msg.id);
        }
    }
}

/// Routes events to this node's connections; answers how many connections the offers and
/// pushes among them reached.
impl Handler<Deliver> for Router {
    type Result = usize;

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) -> usize {
        let mut delivered = 0;
        for event in &msg.0 {
            match event {
                DomainEvent::Decided(d) => self.forget_offer(d.master_id, d.assignment_id),
                // Late: its node published it after the offer was decided (it was stopped).
                DomainEvent::Offered(offer)
                    if self.recently_decided.contains(&offer.assignment_id) =>
                {
                    continue;
                }
                _ => {}
            }
            for (audience, message) in route(event) {
                let counted = matches!(audience, Audience::Offer(..) | Audience::Users(..));
                let reached = self.deliver(audience, message.frame(None));
                if counted {
                    delivered += reached;
                }
                if let DomainEvent::Offered(offer) = event
                    && counted
                    && reached > 0
                {
                    self.metrics
                        .offer_delivery
                        .observe(ms_to_secs(now_ms() - offer.created_at));
                }
            }
            if let DomainEvent::Offered(offer) = event {
                self.await_receipts(offer);
            }
        }
        delivered
    }
}

/// Adds push topics to a connection; refuses past `Topics::MAX`, adding none.
impl Handler<SubscribeTopics> for Router {
    type Result = Result<(), TooManyTopics>;

    fn handle(&mut self, msg: SubscribeTopics, _: &mut Context<Self>) -> Self::Result {
        let Some(conn) = self.connections.get_mut(&msg.id) else {
            return Ok(());
        };
        let new: Vec<Box<str>> = msg
            .topics
            .into_iter()
            .filter(|t| !conn.topics.iter().any(|have| **have == **t))
            .map(String::into_boxed_str)
            .collect();
        if conn.topics.len() + new.len() > Topics::MAX {
            return Err(TooManyTopics);
        }
        conn.topics.extend(new);
        Ok(())
    }
}

impl Handler<UnsubscribeTopics> for Router {
    type Result = ();

    fn handle(&mut self, msg: UnsubscribeTopics, _: &mut Context<Self>) {
        if let Some(conn) = self.connections.get_mut(&msg.id) {
            conn.topics
                .retain(|t| !msg.topics.iter().any(|gone| **gone == **t));
        }
    }
}

/// Sends a newly subscribed connection the open offers it has not been pushed yet, paced by how
/// fast it reads (see [`Outbox::replay`](crate::router::outbox::Outbox::replay)).
impl Handler<ReplayOffers> for Router {
    type Result = ();

    fn handle(&mut self, msg: ReplayOffers, _: &mut Context<Self>) {
        self.replay(msg.id, &msg.offers);
    }
}

/// Replays a connection's open offers after a gap; answers those it holds that are not open.
impl Handler<Resync> for Router {
    type Result = MessageResult<Resync>;

    fn handle(&mut self, msg: Resync, _: &mut Context<Self>) -> Self::Result {
        let stale = match self.connections.get(&msg.id) {
            Some(conn) => conn
                .offered
                .iter()
                .filter(|id| !msg.open.iter().any(|o| o.assignment_id == **id))
                .copied()
                .collect(),
            None => Vec::new(),
        };
        self.replay(msg.id, &msg.open);
        MessageResult(stale)
    }
}

/// Tells one connection the decisions it missed in a gap, with the frames a master gets.
impl Handler<TellMissed> for Router {
    type Result = ();

    fn handle(&mut self, msg: TellMissed, _: &mut Context<Self>) {
        for decision in msg.decisions {
            let Some(conn) = self.connections.get_mut(&msg.id) else {
                return;
            };
            if !conn.offered.remove(&decision.assignment_id) {
                continue;
            }
            for (audience, message) in route(&DomainEvent::Decided(decision)) {
                if matches!(audience, Audience::Master(_)) {
                    self.send_to(msg.id, message.frame(None));
                }
            }
        }
    }
}

/// Catches up with what the database says changed: offers and decisions whose events were
/// lost between nodes (a node died between its commit and its publish, or was cut from Redis).
impl Handler<CatchUp> for Router {
    type Result = ();

    fn handle(&mut self, msg: CatchUp, ctx: &mut Context<Self>) {
        for (decision, order) in msg.decisions {
            let (master, assignment_id) = (decision.master_id, decision.assignment_id);
            let holders: Vec<_> = self
                .by_master
                .ids(&master)
                .into_iter()
                .filter(|id| {
                    self.connections
                        .get(id)
                        .is_some_and(|c| c.offered.contains(&assignment_id))
                })
                .collect();
            self.forget_offer(master, assignment_id);
            // Holders hear of their own accept or reject too: its answer may have been lost.
            let frame = missed_decision(&decision, &order).frame(None);
            for &id in &holders {
                self.send_to(id, frame.clone());
            }
        }
        let offers: Vec<DomainEvent> = msg
            .offers
            .into_iter()
            .filter(|offer| !self.recently_decided.contains(&offer.assignment_id))
            .map(DomainEvent::Offered)
            .collect();
        if !offers.is_empty() {
            Handler::<Deliver>::handle(self, Deliver(offers), ctx);
        }
    }
}

/// Sends the subscribed connections to other nodes; answers how many.
impl Handler<ShedSubscribed> for Router {
    type Result = usize;

    fn handle(&mut self, _: ShedSubscribed, _: &mut Context<Self>) -> usize {
        let subscribed = self.connections.values().filter(|c| c.subscribed);
        let mut shed = 0;
        for conn in subscribed {
            conn.control.do_send(CloseConnection {
                code: CloseCode::TryAgainLater,
                reason: crate::protocol::close::CUT_OFF,
            });
            shed += 1;
        }
        shed
    }
}

/// A snapshot of the connections for the admin stats.
impl Handler<GetStats> for Router {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        let masters = self
            .connections
            .values()
            .filter_map(|c| {
                let user = c.user?;
                Some(MasterConnection {
                    user_id: user.user_id,
                    master_id: user.master()?,
                    subscribed: c.subscribed,
                    last_ping: c.last_ping.get(),
                })
            })
            .collect();
        let mut by_role = std::collections::BTreeMap::new();
        for conn in self.connections.values() {
            *by_role
                .entry(Role::label(conn.user.map(|u| u.role)).to_string())
                .or_insert(0) += 1;
        }
        MessageResult(Stats {
            total_connected: self.connections.len(),
            by_role,
            masters,
        })
    }
}

/// Which connections are subscribed to offers, and whose.
impl Handler<SubscribedMasters> for Router {
    type Result = MessageResult<SubscribedMasters>;

    fn handle(&mut self, _: SubscribedMasters, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.connections
                .iter()
                .filter(|(_, c)| c.subscribed)
                .filter_map(|(&id, c)| Some((id, c.user?.master()?)))
                .collect(),
        )
    }
}

impl Handler<SubscribedAmong> for Router {
    type Result = MessageResult<SubscribedAmong>;

    fn handle(&mut self, msg: SubscribedAmong, _: &mut Context<Self>) -> Self::Result {
        let mut masters = msg.0;
        masters.retain(|master_id| {
            self.by_master
                .get(master_id)
                .any(|id| self.connections.get(&id).is_some_and(|c| c.subscribed))
        });
        MessageResult(masters)
    }
}

/// How many connections are open.
impl Handler<CountConnections> for Router {
    type Result = usize;

    fn handle(&mut self, _: CountConnections, _: &mut Context<Self>) -> usize {
        self.connections.len()
    }
}

/// Closes every connection with 1001 as the server goes down.
impl Handler<Shutdown> for Router {
    type Result = usize;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> usize {
        let count = self.connections.len();
        for (_, conn) in self.connections.drain() {
            conn.control.do_send(CloseConnection {
                code: CloseCode::Away,
                reason: "server shutting down",
            });
        }
        self.by_master.clear();
        self.by_user.clear();
        self.event_listeners.clear();
        count
    }
}
