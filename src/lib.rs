//! dispatcher: pushes field-service offers to masters over WebSocket, with deadlines that expire on time.

pub mod auth;
pub mod config;
pub mod db;
pub mod dispatcher;
pub mod error;
pub mod routes;
pub mod service;
pub mod startup;
pub mod time;
pub mod views;
pub mod ws;
