//! Prometheus metrics, kept as things change so that a scrape costs the same however many
//! connections there are. One registry per process (per [`Metrics`]), never a global one, so that
//! several servers in one test process count apart.
//!
//! The `prometheus` crate (TiKV's): it is maintained, has a registry that is a plain value, and
//! brings the standard process metrics (`process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, `process_open_fds`) with its `process` feature.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::{Outcome, Role};

/// From 0.5 ms to 60 s: delivery takes milliseconds, an offer's decision up to its TTL.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Decisions take seconds to minutes.
const DECISION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

pub struct Metrics {
    registry: Registry,
    pub connections: IntGaugeVec,
    pub subscribed_masters: IntGauge,
    pub replays_in_flight: IntGauge,
    pub ws_messages_received: IntCounterVec,
    pub ws_messages_sent: IntCounterVec,
    pub ws_closes: IntCounterVec,
    pub ws_errors: IntCounterVec,
    pub offers: IntCounterVec,
    pub offer_delivery: Histogram,
    pub offer_decision: HistogramVec,
    pub expiry_lateness: Histogram,
    pub slow_consumers: IntCounter,
    pub db_pool_wait: Histogram,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    /// Cluster mode only.
    pub backplane: Option<Backplane>,
}

pub struct Backplane {
    pub up: IntGauge,
    pub events: IntCounterVec,
    pub rejected: IntCounterVec,
}

fn seconds(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    pub fn new(clustered: bool) -> Metrics {
        let registry = Registry::new();
        let register = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        macro_rules! metric {
            ($value:expr) => {{
                let metric = $value.expect("metric options are valid");
                register(Box::new(metric.clone()));
                metric
            }};
        }
        let connections = metric!(IntGaugeVec::new(
            Opts::new(
                "dispatcher_connections",
                "Open WebSocket connections, by role."
            ),
            &["role"]
        ));
        for role in Role::labels() {
            connections.with_label_values(&[role]).set(0);
        }
        let offers = metric!(IntCounterVec::new(
            Opts::new(
                "dispatcher_offers_total",
                "Offers created, and offers decided by this node, by outcome."
            ),
            &["outcome"]
        ));
        for outcome in ["created", "accepted", "rejected", "expired", "cancelled"] {
            offers.with_label_values(&[outcome]).inc_by(0);
        }
        let backplane = clustered.then(|| Backplane {
            up: metric!(IntGauge::new(
                "dispatcher_backplane_up",
                "1 while this node is subscribed to the other nodes' events in Redis."
            )),
            events: metric!(IntCounterVec::new(
                Opts::new(
                    "dispatcher_backplane_events_total",
                    "Events sent to (out) and received from (in) the other nodes."
                ),
                &["direction"]
            )),
            rejected: metric!(IntCounterVec::new(
                Opts::new(
                    "dispatcher_backplane_rejected_total",
                    "Messages from Redis dropped unread: unsigned, wrongly signed (signature), of \
                     an unknown version, older than a minute (stale), or with invalid values."
                ),
                &["reason"]
            )),
        });
        if let Some(backplane) = &backplane {
            for direction in ["in", "out"] {
                backplane.events.with_label_values(&[direction]).inc_by(0);
            }
            for reason in ["unsigned", "signature", "version", "stale", "invalid"] {
                backplane.rejected.with_label_values(&[reason]).inc_by(0);
            }
        }
        #[cfg(target_os = "linux")]
        register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            connections,
            replays_in_flight: metric!(IntGauge::new(
                "dispatcher_replays_in_flight",
                "Connections with open offers being sent again (on subscribe or after a gap): one \
                 task each at most."
            )),
            subscribed_masters: metric!(IntGauge::new(
                "dispatcher_subscribed_masters",
                "Masters with at least one connection subscribed to offers."
            )),
            ws_messages_received: metric!(IntCounterVec::new(
                Opts::new(
                    "dispatcher_ws_messages_received_total",
                    "WebSocket messages received, by type (unknown types as other)."
                ),
                &["type"]
            )),
            ws_messages_sent: metric!(IntCounterVec::new(
                Opts::new(
                    "dispatcher_ws_messages_sent_total",
                    "WebSocket messages queued to connections, by type (pushes as push)."
                ),
                &["type"]
            )),
            ws_closes: metric!(IntCounterVec::new(
                Opts::new(
                    "dispatcher_ws_closes_total",
                    "WebSocket connections ended, by close code (none: the socket just ended)."
                ),
                &["code"]
            )),
            ws_errors: metric!(IntCounterVec::new(
                Opts::new(
                    "dispatcher_ws_errors_total",
                    "WebSocket error messages sent, by code."
                ),
                &["code"]
            )),
            offers,
            offer_delivery: metric!(Histogram::with_opts(seconds(
                "dispatcher_offer_delivery_seconds",
                "From an offer's creation to its frame queued to a subscribed connection.",
                SECONDS_BUCKETS
            ))),
            offer_decision: metric!(HistogramVec::new(
                seconds(
                    "dispatcher_offer_decision_seconds",
                    "From an offer's creation to its decision, by outcome.",
                    DECISION_BUCKETS
                ),
                &["outcome"]
            )),
            expiry_lateness: metric!(Histogram::with_opts(seconds(
                "dispatcher_expiry_lateness_seconds",
                "From an offer's deadline to the write that expired it.",
                SECONDS_BUCKETS
            ))),
            slow_consumers: metric!(IntCounter::new(
                "dispatcher_slow_consumers_total",
                "Connections closed for not reading their messages."
            )),
            db_pool_wait: metric!(Histogram::with_opts(seconds(
                "dispatcher_db_pool_wait_seconds",
                "Time waited for a database connection from the pool.",
                SECONDS_BUCKETS
            ))),
            http_requests: metric!(IntCounterVec::new(
                Opts::new(
                    "dispatcher_http_requests_total",
                    "HTTP requests, by method, route pattern and status."
                ),
                &["method", "route", "status"]
            )),
            http_request_duration: metric!(HistogramVec::new(
                seconds(
                    "dispatcher_http_request_duration_seconds",
                    "HTTP request duration, by method and route pattern.",
                    SECONDS_BUCKETS
                ),
                &["method", "route"]
            )),
            backplane,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text encoder writes to memory");
        String::from_utf8(out).expect("the exposition is UTF-8")
    }

    pub fn offer_decided(&self, outcome: Outcome, offered_at: i64, at: i64) {
        let label = outcome_label(outcome);
        self.offers.with_label_values(&[label]).inc();
        self.offer_decision
            .with_label_values(&[label])
            .observe(ms_to_secs(at - offered_at));
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Accepted => "accepted",
        Outcome::Rejected => "rejected",
        Outcome::Expired => "expired",
        Outcome::Cancelled => "cancelled",
    }
}

pub fn ms_to_secs(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}
