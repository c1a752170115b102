//! The composition root: builds the parts (database pool, router, bus, service, expiry actor,
//! cluster link, stats), wires them together, runs start-up recovery and serves HTTP and
//! WebSocket on a listener.

use std::{net::TcpListener, sync::Arc, time::Instant};

use actix::{Actor, Addr, AsyncContext, Context};
use actix_server::{Server, ServerHandle};
use actix_web::web;
use thiserror::Error;
use tokio::sync::{Notify, mpsc};

use crate::{
    bus::{EventBus, REMOTE_QUEUE, Remote},
    cluster::{Node, Parts, Reach},
    config::{Config, ConfigError},
    expiry::{Expiry, ExpiryWatch},
    metrics::Metrics,
    recovery::{self, PrepareError},
    router::{Router, RouterSettings, messages::Shutdown},
    service::{Service, ServiceSettings, WebhookOutbox},
    stats::Stats,
    storage, webhooks,
    wire::{self, auth::JwtKeys, connection_limits::ConnectionLimits, state::AppState},
};

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Database(#[from] PrepareError),
    #[error("REDIS_URL: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    /// `/metrics` on `METRICS_BIND_ADDR`, when set.
    metrics_server: Option<ServerHandle>,
    node: Node,
    router: Addr<Router>,
    stop: Arc<Notify>,
}

/// Asks a running [`Application`] to shut down as a SIGTERM would.
#[derive(Clone)]
pub struct StopHandle(Arc<Notify>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.notify_one();
    }
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(config.bind_addr)?;
        Self::build_with_listener(config, listener).await
    }

    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        let metrics = Arc::new(Metrics::new(config.redis_url.is_some()));
        let pool = storage::pool(
            &config.database_url,
            config.db_pool_size,
            config.db_timeout,
            Some(metrics.clone()),
        );
        let router = Router::new(
            RouterSettings {
                subscription_timeout: config.subscription_timeout,
                cleanup_interval: config.cleanup_interval,
                max_connections_per_user: config.max_connections_per_user,
            },
            metrics.clone(),
        )
        .start();
        let node = match (&config.redis_url, &config.cluster_secret) {
            (Some(url), Some(secret)) => Node::clustered(&config.node_id, url, secret.expose())?,
            _ => Node::single(&config.node_id),
        };
        let (to_other_nodes, outgoing) = match node.dropped_flag() {
            Some(dropped) => {
                let (batches, outgoing) = mpsc::channel(REMOTE_QUEUE);
                (Some(Remote { batches, dropped }), Some(outgoing))
            }
            None => (None, None),
        };
        let presence = Arc::new(Reach {
            router: router.clone(),
            node: node.clone(),
        });
        let webhook_outbox = config.webhook.as_ref().map(|_| WebhookOutbox {
            bodies: webhooks::bodies,
            wake: Arc::new(Notify::new()),
        });
        // The bus comes first: the expiry actor's address exists before the actor, which
        // needs the service, which needs the bus.
        let expiry_context = Context::<Expiry>::new();
        let bus = EventBus::new(
            router.clone().recipient(),
            expiry_context.address().recipient(),
            to_other_nodes,
        );
        let service = Service::new(
            pool.clone(),
            bus.clone(),
            presence,
            webhook_outbox.clone(),
            metrics.clone(),
            ServiceSettings {
                default_ttl: config.assignment_ttl,
                undelivered_after: config.undelivered_after,
                max_queued_writes: config.max_queued_writes,
                max_write_wait: config.db_timeout,
                backend: storage::Backend::of(&config.database_url),
            },
        )?;
        let expiry_watch = ExpiryWatch::default();
        let expiry = expiry_context.run(Expiry::new(
            service.clone(),
            expiry_watch.clone(),
            config.undelivered_after,
        ));
        log::info!(
            "node {} starting ({})",
            config.node_id,
            if config.redis_url.is_some() {
                "cluster mode, Redis"
            } else {
                "single process"
            }
        );
        recovery::start_up(&config.database_url, &pool, &expiry).await?;
        let webhook_heartbeat = match (&config.webhook, webhook_outbox) {
            (Some(webhook), Some(outbox)) => {
                let heartbeat = webhooks::Heartbeat::default();
                let sender = webhooks::Sender::new(
                    pool.clone(),
                    webhook.clone(),
                    outbox.wake,
                    heartbeat.clone(),
                );
                actix_web::rt::spawn(sender.run());
                Some(heartbeat)
            }
            _ => None,
        };
        actix_web::rt::spawn(recovery::sweep_dispatches(service.clone()));
        actix_web::rt::spawn(recovery::sweep_deadlines(
            expiry.clone(),
            config.expiry_sweep,
        ));
        if let Some(outgoing) = outgoing {
            let gaps = Arc::new(Notify::new());
            let parts = Parts {
                bus,
                router: router.clone(),
                metrics: metrics.clone(),
                gaps: gaps.clone(),
            };
            node.start(outgoing, parts);
            let link = node.clone();
            actix_web::rt::spawn(recovery::catch_up(
                router.clone(),
                service.clone(),
                move || link.redis_up() != Some(false),
            ));
            actix_web::rt::spawn(recovery::recover_gaps(
                gaps,
                expiry,
                router.clone(),
                service.clone(),
            ));
        }
        let jwt = web::Data::new(JwtKeys::from_config(&config));
        log::info!(
            "limits: {} WebSocket connections (MAX_CONNECTIONS), {} per master or client, {} \
             unauthenticated in all and {} per address, {} unsent bytes per connection",
            config.max_connections,
            config.max_connections_per_user,
            config.max_unauthenticated,
            config.max_unauthenticated_per_ip,
            config.max_queued_bytes
        );
        let limits = ConnectionLimits::new(
            config.max_connections,
            config.max_unauthenticated,
            config.max_unauthenticated_per_ip,
        );
        let stats = Stats::start(
            router.clone(),
            node.clone(),
            service.clone(),
            config.active_window,
        );
        let state = web::Data::new(AppState {
            limits,
            service: service.clone(),
            node: node.clone(),
            router: router.clone(),
            jwt: jwt.get_ref().clone(),
            config: Arc::new(config),
            started_at: Instant::now(),
            metrics: metrics.clone(),
            stats,
            expiry_watch,
            webhook_heartbeat,
        });
        let metrics_server = match state.config.metrics_bind_addr {
            Some(addr) => Some(wire::server::serve_metrics(state.clone(), addr)?),
            None => None,
        };
        let port = listener.local_addr()?.port();
        let server = wire::server::serve(state, jwt, listener)?;
        log::info!("dispatcher listening on port {port}");
        Ok(Application {
            port,
            server,
            metrics_server,
            node,
            router,
            stop: Arc::new(Notify::new()),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process's router, for in-process harnesses that bypass HTTP.
    pub fn router(&self) -> Addr<Router> {
        self.router.clone()
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Serves until SIGTERM, SIGINT or [`StopHandle::stop`]; then closes every client with 1001.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = actix_web::rt::spawn(self.server);
        tokio::select! {
            result = &mut server => return result.unwrap_or(Ok(())),
            signal = shutdown_signal() => log::info!("{signal} received; shutting down"),
            _ = self.stop.notified() => log::info!("stop requested; shutting down"),
        }
        let closed = self.router.send(Shutdown).await.unwrap_or(0);
        log::info!("closing {closed} WebSocket connections with 1001");
        self.node.leave().await;
        if let Some(metrics_server) = &self.metrics_server {
            metrics_server.stop(true).await;
        }
        handle.stop(true).await;
        let _ = server.await;
        Ok(())
    }
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
