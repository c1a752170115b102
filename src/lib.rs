//! dispatcher: pushes field-service offers to masters over WebSocket, with deadlines that expire on time.
//!
//! The data path is one line through these rooms: `wire` (HTTP routes and WebSocket sessions) →
//! `service` → `storage` → `bus` → `router` → the sessions again. `protocol` is the shape of
//! every frame, `domain` the language all of them speak. docs/ARCHITECTURE.md has the map.

pub mod bus;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod expiry;
pub mod metrics;
pub mod protocol;
pub mod recovery;
pub mod router;
pub mod service;
pub mod startup;
pub mod stats;
pub mod storage;
pub mod webhooks;
pub mod wire;
