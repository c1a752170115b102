//! Inputs as both doors (HTTP and WebSocket) take them: each limit is checked here once, and a
//! value of one of these types has passed it.

use std::collections::HashSet;

use super::{DomainEvent, Push, UserId};

/// An input that breaks a limit; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

fn refuse<T>(message: String) -> Result<T, InputError> {
    Err(InputError(message))
}

/// Ids are positive: the platform numbers its orders, masters and users from 1.
pub fn positive(field: &str, id: i64) -> Result<i64, InputError> {
    if id > 0 {
        Ok(id)
    } else {
        refuse(format!("{field} must be a positive id, not {id}"))
    }
}

/// Refuses text longer than `max` characters, naming the field.
pub fn at_most(field: &str, max: usize, value: String) -> Result<String, InputError> {
    if value.chars().count() > max {
        refuse(format!("{field} must be at most {max} characters"))
    } else {
        Ok(value)
    }
}

/// Refuses blank required text, naming the field; answers it trimmed.
pub fn required(field: &str, value: String) -> Result<String, InputError> {
    let value = value.trim().to_string();
    if value.is_empty() {
        refuse(format!("{field} must not be empty"))
    } else {
        Ok(value)
    }
}

/// Why a master turned an offer down: at most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectReason(String);

impl RejectReason {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(reason: Option<String>) -> Result<Option<RejectReason>, InputError> {
        reason
            .map(|r| at_most("reason", Self::MAX_CHARS, r).map(RejectReason))
            .transpose()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The caller-supplied part of an order, as `PUT /api/v1/orders/{id}` replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDetails {
    pub client_user_id: UserId,
    pub address: String,
    pub device_type: String,
    pub problem: String,
    pub client_name: Option<String>,
    pub client_phone: Option<String>,
}

impl OrderDetails {
    pub fn parse(
        client_user_id: i64,
        address: String,
        device_type: String,
        problem: String,
        client_name: Option<String>,
        client_phone: Option<String>,
    ) -> Result<OrderDetails, InputError> {
        Ok(OrderDetails {
            client_user_id: UserId(positive("clientUserId", client_user_id)?),
            address: at_most("address", 500, required("address", address)?)?,
            device_type: at_most("deviceType", 100, required("deviceType", device_type)?)?,
            problem: at_most("problem", 60_000, required("problem", problem)?)?,
            client_name: client_name
                .map(|n| at_most("clientName", 200, n))
                .transpose()?,
            client_phone: client_phone
                .map(|p| at_most("clientPhone", 50, p))
                .transpose()?,
        })
    }
}

/// The push topics of one `subscribe` or `unsubscribe`: checked, without repeats, `default`
/// when none are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics(Vec<String>);

impl Topics {
    /// Topics one connection may hold, and one message may name (repeats counted).
    pub const MAX: usize = 32;
    /// The topic a `subscribe` names when it names none.
    pub const DEFAULT: &str = "default";

    pub fn parse(requested: Option<Vec<String>>) -> Result<Topics, InputError> {
        let requested = requested.unwrap_or_else(|| vec![Self::DEFAULT.to_string()]);
        if requested.len() > Self::MAX {
            return refuse(format!(
                "a connection may subscribe to at most {} topics",
                Self::MAX
            ));
        }
        let mut seen = HashSet::with_capacity(requested.len());
        let mut topics = Vec::with_capacity(requested.len());
        for topic in requested {
            check_topic(&topic)?;
            if seen.insert(topic.clone()) {
                topics.push(topic);
            }
        }
        Ok(Topics(topics))
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A topic name: `^[a-z0-9][a-z0-9_:.-]{0,127}$`.
pub fn check_topic(topic: &str) -> Result<(), InputError> {
    let mut chars = topic.chars();
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let well_formed = topic.len() <= 128
        && chars.next().is_some_and(plain)
        && chars.all(|c| plain(c) || matches!(c, '_' | ':' | '.' | '-'));
    if well_formed {
        Ok(())
    } else {
        refuse(format!(
            "a topic must match ^[a-z0-9][a-z0-9_:.-]{{0,127}}$, not {topic:?}"
        ))
    }
}

/// Users one push may name.
pub const MAX_PUSH_USERS: usize = 1000;

impl Push {
    /// A push as `POST /api/v1/push` asks for it. `reserved` tells the protocol's own message
    /// types, which a push may not take.
    pub fn parse(
        user_ids: Vec<i64>,
        kind: String,
        payload: serde_json::Value,
        topic: Option<String>,
        reserved: impl Fn(&str) -> bool,
    ) -> Result<Push, InputError> {
        check_push_type(&kind, reserved)?;
        let serde_json::Value::Object(payload) = payload else {
            return refuse("payload must be a JSON object".into());
        };
        if payload.contains_key("type") {
            return refuse(
                "payload must not have a type key: the push's type is its own field".into(),
            );
        }
        if let Some(topic) = &topic {
            check_topic(topic)?;
        }
        if user_ids.is_empty() || user_ids.len() > MAX_PUSH_USERS {
            return refuse(format!(
                "userIds must hold 1 to {MAX_PUSH_USERS} ids, not {}",
                user_ids.len()
            ));
        }
        let mut users = Vec::with_capacity(user_ids.len());
        for id in user_ids {
            users.push(UserId(positive("userIds", id)?));
        }
        users.sort_unstable();
        users.dedup();
        Ok(Push {
            user_ids: users,
            kind,
            payload,
            topic,
        })
    }
}

/// A push's `type`: `^[a-z][a-z0-9_]{0,63}$`, and not one of the protocol's own.
fn check_push_type(kind: &str, reserved: impl Fn(&str) -> bool) -> Result<(), InputError> {
    let mut chars = kind.chars();
    let well_formed = kind.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        return refuse(format!(
            "type must match ^[a-z][a-z0-9_]{{0,63}}$, not {kind:?}"
        ));
    }
    if reserved(kind) {
        return refuse(format!(
            "type {kind:?} is one of the protocol's own messages"
        ));
    }
    Ok(())
}

/// The longest response deadline an offer may ask for.
pub const MAX_OFFER_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

impl DomainEvent {
    /// Whether every value could have come from a node of this cluster: positive ids, times
    /// within a day of `now` (a deadline within the longest one an offer may have), and pushes
    /// that `POST /api/v1/push` would have taken.
    pub fn check(&self, now: i64, reserved: impl Fn(&str) -> bool) -> Result<(), InputError> {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let id = |field: &str, id: i64| positive(field, id).map(drop);
        let around = |field: &str, at: i64, behind: i64, ahead: i64| {
            let offset = at.saturating_sub(now);
            if offset < -behind || offset > ahead {
                refuse(format!("{field} is {offset} ms from now"))
            } else {
                Ok(())
            }
        };
        let time = |field: &str, at: i64| around(field, at, DAY_MS, DAY_MS);
        match self {
            DomainEvent::Offered(o) => {
                id("assignmentId", o.assignment_id.0)?;
                id("orderId", o.order_id.0)?;
                id("masterId", o.master_id.0)?;
                time("createdAt", o.created_at)?;
                around("expiresAt", o.expires_at, DAY_MS, MAX_OFFER_TTL_MS + DAY_MS)
            }
            DomainEvent::Delivered(d) => {
                id("assignmentId", d.assignment_id.0)?;
                id("orderId", d.order_id.0)?;
                id("masterId", d.master_id.0)?;
                time("at", d.at)
            }
            DomainEvent::Undelivered(u) => {
                id("assignmentId", u.assignment_id.0)?;
                id("orderId", u.order_id.0)?;
                id("masterId", u.master_id.0)?;
                time("at", u.at)?;
                around("expiresAt", u.expires_at, DAY_MS, MAX_OFFER_TTL_MS + DAY_MS)
            }
            DomainEvent::Decided(d) => {
                id("assignmentId", d.assignment_id.0)?;
                id("orderId", d.order_id.0)?;
                id("masterId", d.master_id.0)?;
                time("at", d.at)?;
                // An offer may have waited out its whole deadline before being decided.
                if d.offered_at != 0 {
                    around("offeredAt", d.offered_at, MAX_OFFER_TTL_MS + DAY_MS, DAY_MS)?;
                }
                Ok(())
            }
            DomainEvent::OrderStatusChanged(c) => {
                id("orderId", c.order_id.0)?;
                id("clientUserId", c.client_user_id.0)?;
                c.master_id.map_or(Ok(()), |m| id("masterId", m.0))?;
                time("updatedAt", c.updated_at)
            }
            DomainEvent::DispatchEnded(e) => {
                id("dispatchId", e.dispatch_id.0)?;
                id("orderId", e.order_id.0)?;
                e.master_id.map_or(Ok(()), |m| id("masterId", m.0))?;
                time("at", e.at)
            }
            DomainEvent::Pushed(p) => {
                let checked = Push::parse(
                    p.user_ids.iter().map(|u| u.0).collect(),
                    p.kind.clone(),
                    serde_json::Value::Object(p.payload.clone()),
                    p.topic.clone(),
                    reserved,
                )?;
                if checked.user_ids.len() != p.user_ids.len() {
                    return refuse("userIds repeat".into());
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_types_and_topics_follow_their_patterns() {
        let reserved = |kind: &str| ["new_assignment", "pong", "error", "auth"].contains(&kind);
        let ok = |kind: &str| check_push_type(kind, reserved).is_ok();
        assert!(ok("new_message"));
        assert!(ok("dialog_update2"));
        for bad in [
            "",
            "New",
            "1abc",
            "new-message",
            "new_assignment",
            "pong",
            "error",
            "auth",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        assert!(ok(&"a".repeat(64)));
        assert!(!ok(&"a".repeat(65)));
        for good in ["dialogs", "chat:12", "a.b-c_d", "0"] {
            assert!(check_topic(good).is_ok(), "{good}");
        }
        for bad in ["", "Dialogs", "-x", "a b", "ж"] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
        assert!(check_topic(&"a".repeat(129)).is_err());
    }

    #[test]
    fn topics_are_counted_before_repeats_are_dropped() {
        assert_eq!(Topics::parse(None).unwrap().into_vec(), vec!["default"]);
        assert_eq!(
            Topics::parse(Some(vec!["a".into(), "a".into()]))
                .unwrap()
                .into_vec(),
            vec!["a"]
        );
        assert!(Topics::parse(Some(vec!["a".into(); 32])).is_ok());
        assert!(Topics::parse(Some(vec!["a".into(); 33])).is_err());
    }

    #[test]
    fn events_from_other_nodes_are_checked_for_values_a_node_could_send() {
        use crate::domain::{AssignmentId, Decision, MasterId, OrderId, Outcome};
        const NOW: i64 = 1_800_000_000_000;
        let decided = |offered_at: i64, at: i64| {
            DomainEvent::Decided(Decision {
                assignment_id: AssignmentId(1),
                order_id: OrderId(10),
                master_id: MasterId(3),
                outcome: Outcome::Accepted,
                at,
                offered_at,
            })
        };
        let check = |event: DomainEvent| event.check(NOW, |_| false);
        assert!(check(decided(NOW - 5_000, NOW)).is_ok());
        assert!(
            check(decided(0, NOW)).is_ok(),
            "older nodes send no offeredAt"
        );
        assert!(check(decided(NOW - MAX_OFFER_TTL_MS, NOW)).is_ok());
        assert!(check(decided(i64::MIN, NOW)).is_err());
        assert!(check(decided(NOW, i64::MAX)).is_err());
    }

    #[test]
    fn a_reject_reason_is_at_most_500_characters() {
        assert!(
            RejectReason::parse(Some("ж".repeat(500)))
                .unwrap()
                .is_some()
        );
        assert!(RejectReason::parse(Some("x".repeat(501))).is_err());
        assert_eq!(RejectReason::parse(None), Ok(None));
    }
}
