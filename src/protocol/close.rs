//! What each WebSocket close means here, why it happens, and what fixes it: one table that the
//! `/debug` page and `dispatcher doctor` explain closes with, covering the standard codes and
//! every close reason this server sends.

use serde::Serialize;

/// The close codes this service sends (RFC 6455, section 7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Normal = 1000,
    Away = 1001,
    Protocol = 1002,
    Unsupported = 1003,
    Policy = 1008,
    Size = 1009,
    Error = 1011,
    TryAgainLater = 1013,
}

/// The reason of a 1013: the node missed events and can read them neither from Redis nor from
/// the database, so its masters are better served by another node.
pub const CUT_OFF: &str = "this node is cut off; reconnect";

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloseCause {
    pub code: u16,
    /// The close reason this server sends with it; `None`: any reason, or none.
    pub reason: Option<&'static str>,
    pub meaning: &'static str,
    pub fix: &'static str,
}

const fn cause(
    code: u16,
    reason: Option<&'static str>,
    meaning: &'static str,
    fix: &'static str,
) -> CloseCause {
    CloseCause {
        code,
        reason,
        meaning,
        fix,
    }
}

pub const CLOSE_CAUSES: &[CloseCause] = &[
    cause(
        1000,
        None,
        "Normal closure: one side closed on purpose.",
        "Nothing to fix.",
    ),
    cause(
        1001,
        Some("no acknowledgement"),
        "The app subscribed with acks but acknowledged none of an offer's three sends: the socket looked open, the phone was gone.",
        "Reconnect and subscribe again (the offer is sent again); make the app send ack_assignment for each offer it shows.",
    ),
    cause(
        1001,
        None,
        "Going away: the server is shutting down or restarting.",
        "Reconnect with backoff; open offers are sent again on subscribe.",
    ),
    cause(
        1002,
        None,
        "Protocol error: the client sent a malformed WebSocket frame.",
        "Use a standard WebSocket client library; check that nothing between rewrites frames.",
    ),
    cause(
        1003,
        None,
        "Unsupported data: the client sent a binary frame; this server takes JSON text frames only.",
        "Send text frames.",
    ),
    cause(
        1006,
        None,
        "Abnormal closure: the connection ended without a close frame. Usually a proxy or the network cut it: an idle timeout (nginx's proxy_read_timeout defaults to 60 s), a proxy that does not pass the upgrade, or a TLS failure.",
        "In nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\"; proxy_read_timeout 300s. Check the certificate for wss://. Run `dispatcher doctor` against the URL.",
    ),
    cause(
        1008,
        Some("authentication failed"),
        "The token was refused: expired, malformed, or signed with another secret.",
        "Get a fresh token from the platform; every node and the token issuer must share JWT_SECRET.",
    ),
    cause(
        1008,
        Some("authentication timeout"),
        "No auth message came within AUTH_TIMEOUT_SECS of connecting.",
        "Send {\"type\":\"auth\",\"token\":…} right after connected, or put the token in ?token=.",
    ),
    cause(
        1008,
        Some("token expired"),
        "The token's exp passed while the socket was open.",
        "Answer token_expiring with refresh_token and a new token.",
    ),
    cause(
        1008,
        Some("origin not allowed"),
        "A browser origin that ALLOWED_ORIGINS does not list.",
        "Add the web app's origin to ALLOWED_ORIGINS. Mobile apps send no browser origin and are always let in.",
    ),
    cause(
        1008,
        Some("slow consumer"),
        "The client did not read its messages: more than MAX_QUEUED_BYTES waited unsent.",
        "Read the socket continuously; do not block the app's socket reader.",
    ),
    cause(
        1008,
        Some("too many messages"),
        "Flooding: the client kept sending past RATE_LIMIT_PER_SEC.",
        "Send pings every 25–30 s, not in a loop; back off on rate_limited errors.",
    ),
    cause(
        1008,
        Some("replaced by a newer connection"),
        "The same user opened more than MAX_CONNECTIONS_PER_USER connections; the oldest was closed.",
        "Close the old socket before opening a new one; this is the old, half-dead one.",
    ),
    cause(
        1008,
        None,
        "Policy violation.",
        "Read the close reason; it names the rule.",
    ),
    cause(
        1009,
        None,
        "A message larger than MAX_MESSAGE_BYTES.",
        "Send smaller messages.",
    ),
    cause(
        1011,
        None,
        "The server hit an internal error.",
        "Reconnect; report it with the server's log around that time.",
    ),
    cause(
        1013,
        Some(CUT_OFF),
        "The node lost Redis and cannot reach the database either, so offers made through other nodes may not reach it.",
        "Reconnect at once (the load balancer picks a healthy node); the new subscription replays every open offer.",
    ),
    cause(
        1015,
        None,
        "The TLS handshake failed (browsers report it, servers never send it).",
        "Check the certificate's chain, name and expiry; phones reject self-signed certificates.",
    ),
];

/// The most specific cause of a close: the code with this reason, else the code alone.
pub fn explain(code: u16, reason: &str) -> Option<&'static CloseCause> {
    CLOSE_CAUSES
        .iter()
        .find(|c| c.code == code && c.reason == Some(reason))
        .or_else(|| {
            CLOSE_CAUSES
                .iter()
                .find(|c| c.code == code && c.reason.is_none())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_this_server_sends_is_explained() {
        for (code, reason) in [
            (1001, "no acknowledgement"),
            (1001, "server shutting down"),
            (1002, "protocol error"),
            (1003, "binary frames are not supported"),
            (1008, "authentication failed"),
            (1008, "authentication timeout"),
            (1008, "token expired"),
            (1008, "origin not allowed"),
            (1008, "slow consumer"),
            (1008, "too many messages"),
            (1008, "replaced by a newer connection"),
            (1009, "message too big"),
            (1013, CUT_OFF),
        ] {
            let cause = explain(code, reason).unwrap_or_else(|| panic!("{code} {reason}"));
            assert_eq!(cause.code, code);
        }
        assert_eq!(
            explain(1008, "token expired").unwrap().reason,
            Some("token expired")
        );
        assert!(
            explain(1006, "")
                .unwrap()
                .fix
                .contains("proxy_read_timeout")
        );
    }
}
