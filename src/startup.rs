//! Builds the application on a listener: database, the Dispatcher, the expiry actor and the
//! event bus between them, start-up recovery, the HTTP server.

use std::{
    collections::HashSet,
    net::TcpListener,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{Actor, Addr, AsyncContext};
use actix_http::{HttpService, KeepAlive};
use actix_server::{Server, ServerHandle};
use actix_service::{fn_service, map_config};
use actix_web::{
    App,
    dev::{AppConfig, Service as _},
    web,
};
use thiserror::Error;
use tokio::sync::{Notify, mpsc};

use futures_util::future::BoxFuture;

use crate::{
    bus::{EventBus, REMOTE_QUEUE},
    cluster::{Node, Parts},
    config::{Config, ConfigError},
    domain::MasterId,
    expiry::{Expiry, Recover},
    metrics::Metrics,
    router::{
        Dispatcher, DispatcherSettings,
        messages::{Shutdown, SubscribedAmong},
    },
    service::error::AppError,
    service::{Presence, Service},
    stats,
    stats::feed::StatsFeed,
    storage::{self, Backend, DbError, DbPool},
    webhooks,
    wire::auth::JwtKeys,
    wire::connection_limits::ConnectionLimits,
    wire::http as routes,
    wire::http::access,
    wire::state::AppState,
    wire::ws,
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

/// Why the database could not be made ready at start.
#[derive(Debug, Error)]
pub enum PrepareError {
    #[error(transparent)]
    Migrate(#[from] DbError),
    #[error("recovering open offers: {0}")]
    Recover(AppError),
}

impl PrepareError {
    fn is_unavailable(&self) -> bool {
        match self {
            PrepareError::Migrate(e) => e.is_unavailable(),
            PrepareError::Recover(e) => matches!(e, AppError::Unavailable),
        }
    }
}

/// Which masters have a subscribed connection: this node's Dispatcher, then the other nodes'
/// presence for the rest.
struct Reach {
    dispatcher: Addr<Dispatcher>,
    node: Node,
}

impl Presence for Reach {
    fn subscribed_among(&self, masters: Vec<MasterId>) -> BoxFuture<'static, HashSet<MasterId>> {
        let (dispatcher, node) = (self.dispatcher.clone(), self.node.clone());
        Box::pin(async move {
            let wanted = masters.clone();
            let mut found: HashSet<MasterId> = dispatcher
                .send(SubscribedAmong(masters))
                .await
                .unwrap_or_default()
                .into_iter()
                .collect();
            if found.len() < wanted.len() && node.redis_up().is_some() {
                let elsewhere = node.subscribed_elsewhere().await;
                found.extend(wanted.into_iter().filter(|m| elsewhere.contains(m)));
            }
            found
        })
    }
}

/// A decided offer's dispatch step that has not been taken this long after is taken by the sweep.
const STEP_OVERDUE_AFTER: Duration = Duration::from_secs(2);

pub struct Application {
    port: u16,
    server: Server,
    /// `/metrics` on `METRICS_BIND_ADDR`, when set.
    metrics_server: Option<ServerHandle>,
    node: Node,
    dispatcher: Addr<Dispatcher>,
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
        let dispatcher = Dispatcher::new(
            DispatcherSettings {
                subscription_timeout: config.subscription_timeout,
                cleanup_interval: config.cleanup_interval,
                max_connections_per_user: config.max_connections_per_user,
            },
            metrics.clone(),
        )
        .start();
        let node = match &config.redis_url {
            Some(url) => Node::clustered(&config.node_id, url)?,
            None => Node::single(&config.node_id),
        };
        let (to_other_nodes, outgoing) = match config.redis_url {
            Some(_) => {
                let (tx, rx) = mpsc::channel(REMOTE_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let presence = Arc::new(Reach {
            dispatcher: dispatcher.clone(),
            node: node.clone(),
        });
        let webhook_wake = config.webhook.as_ref().map(|_| Arc::new(Notify::new()));
        let mut built = None;
        let expiry = Expiry::create(|ctx| {
            let bus = EventBus::new(
                dispatcher.clone().recipient(),
                ctx.address().recipient(),
                to_other_nodes,
            );
            let service = Service::new(
                pool.clone(),
                bus.clone(),
                config.assignment_ttl,
                presence,
                webhook_wake.clone(),
                metrics.clone(),
            );
            built = Some((bus, service.clone()));
            Expiry::new(service)
        });
        let (bus, service) = built.expect("the bus and service are built with the expiry actor");
        log::info!(
            "node {} starting ({})",
            config.node_id,
            if config.redis_url.is_some() {
                "cluster mode, Redis"
            } else {
                "single process"
            }
        );
        match prepare_database(&config.database_url, &pool, &expiry).await {
            Ok(()) => {}
            Err(e)
                if e.is_unavailable() && Backend::of(&config.database_url) == Backend::Postgres =>
            {
                log::warn!("database unavailable at start ({e}); serving 503 and retrying");
                actix_web::rt::spawn(retry_prepare(
                    config.database_url.clone(),
                    pool.clone(),
                    expiry.clone(),
                ));
            }
            Err(e) => return Err(e.into()),
        }

        if let (Some(webhook), Some(wake)) = (&config.webhook, webhook_wake) {
            let sender = webhooks::Sender::new(pool.clone(), webhook.clone(), wake);
            actix_web::rt::spawn(sender.run());
        }
        actix_web::rt::spawn(sweep_dispatches(service.clone()));
        if let Some(outgoing) = outgoing {
            let parts = Parts {
                bus,
                dispatcher: dispatcher.clone(),
                expiry,
                service: service.clone(),
                metrics: metrics.clone(),
            };
            node.start(outgoing, parts);
        }
        let jwt = web::Data::new(JwtKeys::from_config(&config));
        log::info!(
            "limits: {} WebSocket connections (MAX_CONNECTIONS), {} per master or client, {} \
             unauthenticated per address, {} unsent bytes per connection",
            config.max_connections,
            config.max_connections_per_user,
            config.max_unauthenticated_per_ip,
            config.max_queued_bytes
        );
        let limits =
            ConnectionLimits::new(config.max_connections, config.max_unauthenticated_per_ip);
        let state = web::Data::new(AppState {
            limits,
            service,
            node: node.clone(),
            dispatcher: dispatcher.clone(),
            jwt: jwt.get_ref().clone(),
            config: Arc::new(config),
            started_at: Instant::now(),
            metrics: metrics.clone(),
            stats_feed: StatsFeed::new(),
        });
        {
            let app = state.clone();
            actix_web::rt::spawn(state.stats_feed.clone().run(move || {
                let app = app.clone();
                Box::pin(async move { stats::frame(&app).await })
            }));
        }
        let metrics_server = match state.config.metrics_bind_addr {
            Some(addr) => Some(serve_metrics(state.clone(), addr)?),
            None => None,
        };
        let port = listener.local_addr()?.port();
        // Database calls run on blocking threads; more of them than pooled connections would
        // only wait (and each costs a stack and allocator arena), so cap them at the pool size.
        let blocking_threads = state.config.db_pool_size.max(2) as usize;
        // actix-web serves the HTTP API; WebSocket upgrades leave actix-http with their socket
        // (see `ws::route`), so an idle connection keeps no HTTP dispatcher or its buffers.
        let builder = Server::build();
        // Idle keep-alive connections close at once on shutdown instead of holding it up.
        let draining = builder.graceful_shutdown_signal();
        let server = builder
            .listen("dispatcher", listener, move || {
                let proxies = state.config.trusted_proxies.clone();
                let metrics_here = state.config.metrics_bind_addr.is_none();
                let counted = state.metrics.clone();
                let app = App::new()
                    .app_data(state.clone())
                    .app_data(jwt.clone())
                    // %U is the path alone: tokens in query strings never reach the log.
                    .wrap_fn(move |req, srv| {
                        let (metrics, proxies) = (counted.clone(), proxies.clone());
                        let started = Instant::now();
                        let request_id = access::new_request_id();
                        let response = srv.call(req);
                        async move {
                            let mut response = response.await?;
                            access::record(&metrics, &proxies, &request_id, started, &mut response);
                            Ok(response)
                        }
                    })
                    .configure(routes::config)
                    .configure(|cfg| {
                        if metrics_here {
                            cfg.route("/metrics", web::get().to(routes::metrics::guarded));
                        }
                    });
                let upgrade_state = state.clone();
                let draining = draining.clone();
                HttpService::build()
                    .graceful_shutdown_signal(move || {
                        let draining = draining.clone();
                        async move { draining.notified().await }
                    })
                    .keep_alive(KeepAlive::Timeout(Duration::from_secs(5)))
                    .client_request_timeout(Duration::from_secs(5))
                    // Lets an early error answer reach a client still sending its body.
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .upgrade(fn_service(move |upgrade| {
                        ws::route::upgrade(upgrade_state.clone(), upgrade)
                    }))
                    .finish(map_config(app, |_| AppConfig::default()))
                    .tcp()
            })?
            .worker_max_blocking_threads(blocking_threads)
            .disable_signals()
            .shutdown_timeout(3)
            .run();
        log::info!("dispatcher listening on port {port}");
        Ok(Application {
            port,
            server,
            metrics_server,
            node,
            dispatcher,
            stop: Arc::new(Notify::new()),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process's Dispatcher, for in-process harnesses that bypass HTTP.
    pub fn dispatcher(&self) -> Addr<Dispatcher> {
        self.dispatcher.clone()
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
        let closed = self.dispatcher.send(Shutdown).await.unwrap_or(0);
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

/// `/metrics` alone, without a token, on its own address.
fn serve_metrics(
    state: web::Data<AppState>,
    addr: std::net::SocketAddr,
) -> std::io::Result<ServerHandle> {
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(routes::metrics::open))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run();
    log::info!("metrics served on {addr}/metrics");
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(handle)
}

/// Migrates, then has the expiry actor expire what fell due while the service was down and arm
/// the rest.
async fn prepare_database(
    database_url: &str,
    pool: &DbPool,
    expiry: &Addr<Expiry>,
) -> Result<(), PrepareError> {
    let (url, migrate_pool) = (database_url.to_string(), pool.clone());
    actix_web::web::block(move || storage::migrate(&url, &migrate_pool))
        .await
        .map_err(|_| DbError::Cancelled)??;
    expiry
        .send(Recover)
        .await
        .map_err(|_| DbError::Cancelled)?
        .map_err(PrepareError::Recover)
        .map(|_| ())
}

/// Takes the dispatch steps that were decided but not taken: at start, for what a stop left,
/// then for what another node (or this one) left when it died or lost the database.
async fn sweep_dispatches(service: Service) {
    loop {
        match service.step_overdue(STEP_OVERDUE_AFTER).await {
            Ok(0) => {}
            Ok(taken) => log::info!("dispatch sweep: took {taken} overdue steps"),
            Err(AppError::Unavailable) => {}
            Err(e) => log::warn!("dispatch sweep failed: {e}"),
        }
        tokio::time::sleep(STEP_OVERDUE_AFTER).await;
    }
}

/// Keeps trying to reach a database that was down at start, backing off up to `MAX_BACKOFF`.
async fn retry_prepare(database_url: String, pool: DbPool, expiry: Addr<Expiry>) {
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    let mut backoff = Duration::from_millis(500);
    loop {
        tokio::time::sleep(backoff).await;
        match prepare_database(&database_url, &pool, &expiry).await {
            Ok(()) => {
                log::info!("database reachable again");
                return;
            }
            Err(e) => {
                backoff = (backoff * 2).min(MAX_BACKOFF);
                log::warn!("database still unavailable ({e}); next try in {backoff:?}");
            }
        }
    }
}
