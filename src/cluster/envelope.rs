//! Events as they travel between nodes: versioned JSON that names the node that published them.

use serde::{Deserialize, Serialize};

use crate::domain::DomainEvent;

/// Bumped when the envelope or an event changes incompatibly; nodes skip versions they do not know.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub node: String,
    pub events: Vec<DomainEvent>,
    /// The node could not publish some events (it lost Redis while others may not have): the
    /// others catch up from the database.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an event envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("envelope version {0} is not understood (this node speaks {VERSION})")]
    Version(u32),
}

pub fn encode(node: &str, events: Vec<DomainEvent>) -> String {
    to_json(Envelope {
        v: VERSION,
        node: node.to_string(),
        events,
        dropped: false,
    })
}

/// Tells the other nodes that `node` dropped events while it could not reach Redis.
pub fn encode_dropped(node: &str) -> String {
    to_json(Envelope {
        v: VERSION,
        node: node.to_string(),
        events: Vec::new(),
        dropped: true,
    })
}

fn to_json(envelope: Envelope) -> String {
    serde_json::to_string(&envelope).expect("events always serialize")
}

pub fn decode(payload: &[u8]) -> Result<Envelope, EnvelopeError> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let Version { v } = serde_json::from_slice(payload)?;
    if v != VERSION {
        return Err(EnvelopeError::Version(v));
    }
    Ok(serde_json::from_slice(payload)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MasterId, OrderId, OrderStatus, OrderStatusChange, UserId};

    #[test]
    fn an_envelope_round_trips_and_unknown_versions_are_refused() {
        let event = DomainEvent::OrderStatusChanged(OrderStatusChange {
            order_id: OrderId(10),
            client_user_id: UserId(7),
            master_id: Some(MasterId(3)),
            status: OrderStatus::Assigned,
            updated_at: 1,
        });
        let text = encode("a", vec![event.clone()]);
        let envelope = decode(text.as_bytes()).unwrap();
        assert_eq!(
            (envelope.node.as_str(), envelope.events),
            ("a", vec![event])
        );
        assert!(matches!(
            decode(br#"{"v":2,"node":"a","events":[]}"#),
            Err(EnvelopeError::Version(2))
        ));
        assert!(decode(b"[]").is_err());
        assert!(!text.contains("dropped"));
        assert!(decode(encode_dropped("a").as_bytes()).unwrap().dropped);
    }
}
