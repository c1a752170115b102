//! What every request handler and connection shares.

use std::{sync::Arc, time::Instant};

use actix::Addr;

use crate::{
    cluster::Node, config::Config, metrics::Metrics, router::Dispatcher, service::Service,
    stats::feed::StatsFeed, wire::auth::JwtKeys, wire::connection_limits::ConnectionLimits,
};

#[derive(Clone)]
pub struct AppState {
    pub limits: Arc<ConnectionLimits>,
    pub service: Service,
    pub node: Node,
    pub dispatcher: Addr<Dispatcher>,
    pub jwt: JwtKeys,
    pub config: Arc<Config>,
    pub started_at: Instant,
    pub metrics: Arc<Metrics>,
    pub stats_feed: Arc<StatsFeed>,
}
