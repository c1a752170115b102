//! What every request handler and connection shares.

use std::{sync::Arc, time::Instant};

use actix::Addr;

use crate::{
    auth::JwtKeys, cluster::Node, config::Config, connection_limits::ConnectionLimits,
    dispatcher::Dispatcher, metrics::Metrics, service::Service, stats_feed::StatsFeed,
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
