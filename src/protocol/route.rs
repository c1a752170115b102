//! The one place that decides who hears of an event, and in which frame.

use super::{AssignmentEventKind, ServerMessage, shapes::OrderView};
use crate::domain::{
    AssignmentId, Decision, DomainEvent, MasterId, Outcome, Push, UserId, records,
    time::{deciding_now, iso},
};

/// Who a frame is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// A master's subscribed connections that have not been sent this offer yet.
    Offer(MasterId, AssignmentId),
    /// All of a master's connections.
    Master(MasterId),
    /// The connections of a client user (role `client`).
    Client(UserId),
    /// Service and admin connections that subscribed to events.
    EventListeners,
    /// Every authenticated connection of these users, or, with a topic, those subscribed to it.
    Users(Vec<UserId>, Option<String>),
}

/// What a connection that held an offer is told when it missed how the offer ended, whoever
/// decided it: the frame the master would have had, or the answer to his own accept or reject.
pub fn missed_decision(decision: &Decision, order: &records::Order) -> ServerMessage {
    let (assignment_id, order_id) = (decision.assignment_id.0, decision.order_id.0);
    match decision.outcome {
        Outcome::Rejected => ServerMessage::AssignmentRejected {
            assignment_id,
            order_id,
        },
        Outcome::Accepted => ServerMessage::AssignmentAccepted {
            assignment_id,
            order_id,
            order: OrderView::from(order),
        },
        Outcome::Expired | Outcome::Cancelled => {
            pushed_to_master(decision).expect("expiries and cancellations are pushed")
        }
    }
}

/// What the master hears of a decision he did not make; the one who decided was answered.
fn pushed_to_master(d: &Decision) -> Option<ServerMessage> {
    let (assignment_id, order_id) = (d.assignment_id.0, d.order_id.0);
    match d.outcome {
        Outcome::Expired => Some(ServerMessage::AssignmentExpired {
            assignment_id,
            order_id,
        }),
        Outcome::Cancelled => Some(ServerMessage::AssignmentCancelled {
            assignment_id,
            order_id,
        }),
        Outcome::Accepted | Outcome::Rejected => None,
    }
}

/// The frames an event becomes, each with its audience.
pub fn route(event: &DomainEvent) -> Vec<(Audience, ServerMessage)> {
    let to_listeners = listener_frame(event).map(|frame| (Audience::EventListeners, frame));
    match event {
        DomainEvent::Offered(offer) => vec![(
            Audience::Offer(offer.master_id, offer.assignment_id),
            ServerMessage::new_assignment(offer, deciding_now()),
        )],
        DomainEvent::Decided(d) => {
            let to_master = pushed_to_master(d);
            to_master
                .map(|m| (Audience::Master(d.master_id), m))
                .into_iter()
                .chain(to_listeners)
                .collect()
        }
        DomainEvent::OrderStatusChanged(change) => {
            let message = ServerMessage::OrderStatusUpdate {
                order_id: change.order_id.0,
                status: change.status,
                updated_at: iso(change.updated_at),
            };
            let mut frames = vec![(Audience::Client(change.client_user_id), message.clone())];
            frames.extend(
                change
                    .master_id
                    .map(|m| (Audience::Master(m), message.clone())),
            );
            frames.push((Audience::EventListeners, message));
            frames
        }
        DomainEvent::Delivered(_) | DomainEvent::Undelivered(_) | DomainEvent::DispatchEnded(_) => {
            to_listeners.into_iter().collect()
        }
        DomainEvent::Pushed(push) => vec![(
            Audience::Users(push.user_ids.clone(), push.topic.clone()),
            push_frame(push),
        )],
    }
}

/// The frame event listeners get of what happened to an offer or a dispatch.
fn listener_frame(event: &DomainEvent) -> Option<ServerMessage> {
    match event {
        DomainEvent::Decided(d) => Some(ServerMessage::AssignmentEvent {
            event: d.outcome.into(),
            assignment_id: d.assignment_id.0,
            order_id: d.order_id.0,
            master_id: d.master_id.0,
            at: iso(d.at),
            offered_at: (d.offered_at > 0).then(|| iso(d.offered_at)),
            expires_at: None,
        }),
        DomainEvent::Delivered(delivery) => Some(ServerMessage::AssignmentEvent {
            event: AssignmentEventKind::Delivered,
            assignment_id: delivery.assignment_id.0,
            order_id: delivery.order_id.0,
            master_id: delivery.master_id.0,
            at: iso(delivery.at),
            offered_at: None,
            expires_at: None,
        }),
        DomainEvent::Undelivered(offer) => Some(ServerMessage::AssignmentEvent {
            event: AssignmentEventKind::Undelivered,
            assignment_id: offer.assignment_id.0,
            order_id: offer.order_id.0,
            master_id: offer.master_id.0,
            at: iso(offer.at),
            offered_at: None,
            expires_at: Some(iso(offer.expires_at)),
        }),
        DomainEvent::DispatchEnded(end) => Some(ServerMessage::DispatchEvent {
            event: end.status,
            dispatch_id: end.dispatch_id.0,
            order_id: end.order_id.0,
            master_id: end.master_id.map(|m| m.0),
            at: iso(end.at),
        }),
        DomainEvent::Offered(_) | DomainEvent::OrderStatusChanged(_) | DomainEvent::Pushed(_) => {
            None
        }
    }
}

/// The body of the webhook an event is sent as: the frame event listeners get of it, with a
/// unique `eventId` first. `None` for events that are not sent (offers, status changes, pushes).
pub fn webhook_body(event: &DomainEvent, event_id: &str) -> Option<String> {
    let frame = listener_frame(event)?;
    let mut body = serde_json::Map::new();
    body.insert("eventId".into(), event_id.into());
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&frame) {
        body.extend(fields);
    }
    Some(serde_json::Value::Object(body).to_string())
}

/// `{"type": …, …payload}`: the payload's fields at the top level, as the chat apps read them.
fn push_frame(push: &Push) -> ServerMessage {
    let mut frame = serde_json::Map::with_capacity(push.payload.len() + 1);
    frame.insert("type".into(), push.kind.clone().into());
    frame.extend(push.payload.clone());
    ServerMessage::Push(frame)
}
