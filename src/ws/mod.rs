//! WebSocket connections: the upgrade route, the session actor and the task that writes frames.

mod rate_limit;
pub mod route;
pub mod session;
mod writer;
