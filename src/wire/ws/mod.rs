//! WebSocket connections: the upgrade, the session actor that reads frames, and the task that
//! writes them.

mod commands;
mod frames;
mod rate_limit;
pub mod route;
pub mod session;
mod writer;
