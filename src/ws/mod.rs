//! WebSocket connections: the upgrade route, the session actor and the wire protocol.

pub mod outbox;
pub mod protocol;
mod rate_limit;
pub mod route;
pub mod session;
