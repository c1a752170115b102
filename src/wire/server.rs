//! The HTTP server on the service's listener: the API's routes behind the access log, and
//! WebSocket upgrades handed to their sessions with their socket.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use actix_http::{HttpService, KeepAlive, Protocol, error::DispatchError};
use actix_server::{Server, ServerHandle};
use actix_service::{ServiceFactoryExt as _, fn_service, map_config};
use actix_web::{
    App,
    dev::{AppConfig, Service as _},
    web,
};

use super::{
    auth::JwtKeys,
    http::{self as routes, access},
    http_connections::HttpConnections,
    state::AppState,
    ws,
};

/// Serves the API and WebSocket upgrades on `listener` until stopped.
pub fn serve(
    state: web::Data<AppState>,
    jwt: web::Data<JwtKeys>,
    listener: TcpListener,
) -> std::io::Result<Server> {
    // Database calls run on blocking threads; more of them than pooled connections would
    // only wait (and each costs a stack and allocator arena), so cap them at the pool size.
    let blocking_threads = state.config.db_pool_size.max(2) as usize;
    // actix-web serves the HTTP API; WebSocket upgrades leave actix-http with their socket
    // (see `ws::route`), so an idle connection keeps no HTTP dispatcher or its buffers.
    let builder = Server::build();
    // Idle keep-alive connections close at once on shutdown instead of holding it up.
    let draining = builder.graceful_shutdown_signal();
    let http_connections = HttpConnections::new(state.config.max_http_connections);
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
            let http_connections = http_connections.clone();
            let admit = fn_service(move |io: tokio::net::TcpStream| {
                let admitted = http_connections.admit(io);
                async move {
                    match admitted {
                        Ok(conn) => {
                            let peer = conn.peer_addr();
                            Ok((conn, Protocol::Http1, peer))
                        }
                        Err(mut io) => {
                            refused_over_capacity();
                            let message = "the server is at its HTTP connection limit; try again";
                            let _ = ws::route::refuse(
                                &mut io,
                                "503 Service Unavailable",
                                "over_capacity",
                                message,
                            )
                            .await;
                            Err(DispatchError::Upgrade)
                        }
                    }
                }
            });
            let http = HttpService::build()
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
                .finish(map_config(app, |_| AppConfig::default()));
            admit.and_then(http)
        })?
        .worker_max_blocking_threads(blocking_threads)
        .disable_signals()
        .shutdown_timeout(3)
        .run();
    Ok(server)
}

/// Warns that plain HTTP connections are refused, once a minute at most.
fn refused_over_capacity() {
    static LAST_WARNED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = crate::domain::time::now_ms();
    let last = LAST_WARNED.load(std::sync::atomic::Ordering::Relaxed);
    if now - last >= 60_000
        && LAST_WARNED
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        log::warn!("HTTP connection refused with 503: MAX_HTTP_CONNECTIONS are open and all busy");
    }
}

/// `/metrics` alone, without a token, on its own address.
pub fn serve_metrics(
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
