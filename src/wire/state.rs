//! What every request handler and connection shares.

use std::{sync::Arc, time::Instant};

use actix::Addr;

use crate::{
    cluster::Node, config::Config, metrics::Metrics, router::Router, service::Service,
    stats::Stats, wire::auth::JwtKeys, wire::connection_limits::ConnectionLimits,
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
}
