//! Events as they travel between nodes: versioned JSON that names the node that published them
//! and when, signed with `CLUSTER_SECRET`. A node acts only on what a node of its cluster signed
//! within the last minute, and only when every value in it could have come from that node.
//!
//! On the wire: `<hex HMAC-SHA256 of the JSON>.<the JSON>`.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{DomainEvent, input::InputError};

/// Bumped when the envelope or an event changes incompatibly; nodes skip versions they do not know.
pub const VERSION: u32 = 2;
/// An envelope older (or further ahead) than this is a replay, or from a clock gone wrong.
pub const MAX_AGE_MS: i64 = 60_000;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub node: String,
    /// When it was sent (UTC ms).
    pub at: i64,
    pub events: Vec<DomainEvent>,
    /// The node could not publish some events (it lost Redis while others may not have): the
    /// others catch up from the database.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
}

/// Why a message on the channel was dropped unread; `reason` labels the metric.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not signed")]
    Unsigned,
    #[error("signed with another secret")]
    Signature,
    #[error("envelope version {0} is not understood (this node speaks {VERSION})")]
    Version(u32),
    #[error("sent {0} ms from now, more than a minute")]
    Stale(i64),
    #[error("not a valid envelope: {0}")]
    Invalid(String),
}

impl EnvelopeError {
    pub fn reason(&self) -> &'static str {
        match self {
            EnvelopeError::Unsigned => "unsigned",
            EnvelopeError::Signature => "signature",
            EnvelopeError::Version(_) => "version",
            EnvelopeError::Stale(_) => "stale",
            EnvelopeError::Invalid(_) => "invalid",
        }
    }
}

impl From<InputError> for EnvelopeError {
    fn from(e: InputError) -> Self {
        EnvelopeError::Invalid(e.0)
    }
}

pub fn encode(secret: &[u8], node: &str, events: Vec<DomainEvent>, now: i64) -> String {
    sign_envelope(secret, node, events, false, now)
}

/// Tells the other nodes that `node` dropped events while it could not reach Redis.
pub fn encode_dropped(secret: &[u8], node: &str, now: i64) -> String {
    sign_envelope(secret, node, Vec::new(), true, now)
}

fn sign_envelope(
    secret: &[u8],
    node: &str,
    events: Vec<DomainEvent>,
    dropped: bool,
    now: i64,
) -> String {
    let envelope = Envelope {
        v: VERSION,
        node: node.to_string(),
        at: now,
        events,
        dropped,
    };
    signed(secret, &envelope)
}

/// `<hex HMAC-SHA256 of the JSON>.<the JSON>` of any value.
pub fn signed<T: Serialize>(secret: &[u8], value: &T) -> String {
    let json = serde_json::to_string(value).expect("cluster messages always serialize");
    format!(
        "{}.{json}",
        hex(&mac(secret, json.as_bytes()).finalize().into_bytes())
    )
}

/// The JSON of a signed message, once its signature checks out.
pub fn verified<'a>(secret: &[u8], payload: &'a [u8]) -> Result<&'a [u8], EnvelopeError> {
    let split = payload.iter().position(|&b| b == b'.');
    let (signature, json) = match split {
        Some(64) => (&payload[..64], &payload[65..]),
        _ => return Err(EnvelopeError::Unsigned),
    };
    let signature = unhex(signature).ok_or(EnvelopeError::Unsigned)?;
    mac(secret, json)
        .verify_slice(&signature)
        .map_err(|_| EnvelopeError::Signature)?;
    Ok(json)
}

/// A signed envelope, checked: its signature, version and age, and every event's values.
pub fn decode(secret: &[u8], payload: &[u8], now: i64) -> Result<Envelope, EnvelopeError> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let json = verified(secret, payload)?;
    let invalid = |e: serde_json::Error| EnvelopeError::Invalid(e.to_string());
    let Version { v } = serde_json::from_slice(json).map_err(invalid)?;
    if v != VERSION {
        return Err(EnvelopeError::Version(v));
    }
    let envelope: Envelope = serde_json::from_slice(json).map_err(invalid)?;
    let age = now.saturating_sub(envelope.at);
    if age.saturating_abs() > MAX_AGE_MS {
        return Err(EnvelopeError::Stale(age));
    }
    for event in &envelope.events {
        event.check(now, crate::protocol::is_reserved_type)?;
    }
    Ok(envelope)
}

fn mac(secret: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(message);
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        AssignmentId, MasterId, Offer, OrderId, OrderStatus, OrderStatusChange, UserId,
    };

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000_000;

    fn offer(expires_at: i64) -> DomainEvent {
        DomainEvent::Offered(Offer {
            assignment_id: AssignmentId(1),
            order_id: OrderId(10),
            master_id: MasterId(3),
            address: "a".into(),
            device_type: "b".into(),
            problem: "c".into(),
            created_at: NOW,
            expires_at,
        })
    }

    #[test]
    fn a_signed_envelope_round_trips() {
        let event = DomainEvent::OrderStatusChanged(OrderStatusChange {
            order_id: OrderId(10),
            client_user_id: UserId(7),
            master_id: Some(MasterId(3)),
            status: OrderStatus::Assigned,
            updated_at: NOW,
        });
        let text = encode(SECRET, "a", vec![event.clone()], NOW);
        let envelope = decode(SECRET, text.as_bytes(), NOW + 10).unwrap();
        assert_eq!(
            (envelope.node.as_str(), envelope.events),
            ("a", vec![event])
        );
        assert!(!text.contains("dropped"));
        let dropped = encode_dropped(SECRET, "a", NOW);
        assert!(decode(SECRET, dropped.as_bytes(), NOW).unwrap().dropped);
    }

    #[test]
    fn forged_stale_and_impossible_envelopes_are_refused_with_their_reason() {
        let reason = |payload: &str, now: i64| {
            decode(SECRET, payload.as_bytes(), now)
                .map(|_| "accepted")
                .unwrap_or_else(|e| e.reason())
        };
        let good = encode(SECRET, "a", vec![offer(NOW + 2_000)], NOW);
        assert_eq!(reason(&good, NOW), "accepted");
        let json = &good[65..];
        assert_eq!(reason(json, NOW), "unsigned");
        assert_eq!(reason("[]", NOW), "unsigned");
        let other = encode(
            b"another secret, also 32 bytes long",
            "a",
            vec![offer(NOW)],
            NOW,
        );
        assert_eq!(reason(&other, NOW), "signature");
        let tampered = good.replace("\"address\":\"a\"", "\"address\":\"b\"");
        assert_eq!(reason(&tampered, NOW), "signature");
        assert_eq!(reason(&good, NOW + MAX_AGE_MS + 1), "stale");
        let old_version = signed(
            SECRET,
            &serde_json::json!({"v": 1, "node": "a", "events": []}),
        );
        assert_eq!(reason(&old_version, NOW), "version");
        let wrapping = encode(SECRET, "a", vec![offer(i64::MIN)], NOW);
        assert_eq!(reason(&wrapping, NOW), "invalid");
        let unknown = signed(
            SECRET,
            &serde_json::json!({"v": 2, "node": "a", "at": NOW, "events": [{"kind": "teleported"}]}),
        );
        assert_eq!(reason(&unknown, NOW), "invalid");
    }
}
