//! The edge: HTTP routes and WebSocket sessions, who the caller is, and the connection limits.
//! Everything here authenticates and translates; the service decides.

pub mod auth;
pub mod connection_limits;
pub mod errors;
pub mod http;
pub mod http_connections;
pub mod server;
pub mod state;
pub mod ws;
