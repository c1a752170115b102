//! What every request handler and connection shares.

use std::{sync::Arc, time::Instant};

use actix::Addr;

use crate::{
    cluster::Node, config::Config, expiry::ExpiryWatch, metrics::Metrics, router::Router,
    service::Service, stats::Stats, webhooks, wire::auth::JwtKeys,
    wire::connection_limits::ConnectionLimits,
};

#[derive(Clone)]
pub struct AppState {
    pub limits: Arc<ConnectionLimits>,
    pub service: Service,
    pub node: Node,
    pub router: Addr<Router>,
    pub jwt: JwtKeys,
    pub config: Arc<Config>,
    pub started_at: Instant,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<Stats>,
    pub expiry_watch: ExpiryWatch,
    /// The webhook sender's, when webhooks are on.
    pub webhook_heartbeat: Option<webhooks::Heartbeat>,
}
