//! The WebSocket wire protocol as plain data: JSON text frames tagged by `type`, camelCase
//! fields, the close codes, and the shapes of offers, orders and errors that HTTP answers share.
//!
//! A leaf: it imports only the domain and serde. [`route`] turns a domain event into its frames
//! and their audiences; the router only queues them.

mod client;
pub mod close;
mod route;
pub mod schema;
mod server;
pub mod shapes;
pub mod stats;

pub use client::{CLIENT_TYPES, ClientMessage, Incoming, ParseError, parse};
pub use close::CloseCode;
pub use route::{Audience, missed_decision, route, webhook_body};
pub use server::{AssignmentEventKind, Frame, SERVER_TYPES, ServerMessage, is_reserved_type};
