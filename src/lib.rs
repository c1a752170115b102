//! dispatcher: pushes field-service offers to masters over WebSocket, with deadlines that expire on time.

pub mod access;
pub mod auth;
pub mod client_addr;
pub mod cluster;
pub mod config;
pub mod connection_limits;
pub mod db;
pub mod dispatcher;
pub mod domain;
pub mod error;
pub mod events;
pub mod expiry;
pub mod lifecycle;
pub mod metrics;
pub mod outbox;
pub mod routes;
pub mod service;
pub mod startup;
pub mod state;
pub mod stats;
pub mod stats_feed;
pub mod time;
pub mod views;
pub mod webhooks;
pub mod wire;
pub mod ws;
