//! Scenario 7: several nodes as one. `--nodes` `dispatcher` nodes (3 unless told) on this machine
//! share one PostgreSQL database and a Redis of their own; masters are spread over the nodes, and
//! what the cluster costs Redis, each node's memory and one admin stats call is measured.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use diesel::{Connection, RunQueryDsl};
use hdrhistogram::Histogram;

use crate::{
    fleet::{Fleet, Recorder},
    report::{Goal, Report},
    scenarios::{
        Load, MB, ORDERS, Opts, Steps, create_orders, highest_rate, offer_load_via, service_token,
    },
    target::{Target, free_port},
};

/// Offers sent, and discarded, before measuring.
const WARM_UP: Duration = Duration::from_secs(3);
/// The latency phases alternate in slices this long.
const SLICE: Duration = Duration::from_secs(5);

/// What one latency phase measured over its slices.
struct Phase {
    hist: Histogram<u64>,
    lost: usize,
    errors: usize,
}

impl Default for Phase {
    fn default() -> Self {
        Phase {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).unwrap(),
            lost: 0,
            errors: 0,
        }
    }
}

/// A PostgreSQL database of the run's own, dropped afterwards.
pub struct Database {
    base: String,
    name: String,
    pub url: String,
}

impl Database {
    pub fn create(base: &str) -> Database {
        let name = format!("loadgen_{:016x}", rand_u64());
        sql(base, &format!("CREATE DATABASE {name}"));
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        Database {
            base: base.to_string(),
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        sql(
            &self.base,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn sql(base: &str, statement: &str) {
    let mut conn = diesel::PgConnection::establish(base)
        .unwrap_or_else(|e| panic!("the cluster scenario needs PostgreSQL at {base}: {e}"));
    diesel::sql_query(statement)
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// A `redis-server` of the run's own on a free port, which can be killed and started again on it.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("the cluster scenarios need redis-server installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `count` nodes on `database` and `redis`, each listening to the others before this returns.
async fn start_nodes(opts: &Opts, database: &Database, redis: &Redis, count: usize) -> Vec<Target> {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..count {
        let env = [
            ("DATABASE_URL", database.url.clone()),
            ("REDIS_URL", format!("redis://127.0.0.1:{}", redis.port)),
            ("NODE_ID", format!("node-{i}")),
            (
                "CLUSTER_SECRET",
                "loadgen-cluster-secret-0123456789abcdef".into(),
            ),
        ];
        nodes.push(Target::dispatcher(dir.path(), &opts.jwt_secret, &env).await);
    }
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health: serde_json::Value = reqwest::get(node.http("/health"))
                .await
                .expect("health")
                .json()
                .await
                .unwrap_or_default();
            if health["redis"] == "ok" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node never reached Redis: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    nodes
}

/// Connects the masters, spread evenly over `nodes` in blocks (`per_node` = total ÷ nodes,
/// rounded up); answers the fleets and the connect failures.
async fn spread_masters(
    opts: &Opts,
    nodes: &[Target],
    recorder: &Arc<Recorder>,
) -> (Vec<Fleet>, usize) {
    let total = opts.cluster_masters;
    let per_node = total.div_ceil(nodes.len());
    let mut fleets = Vec::new();
    let mut failures = 0;
    for (i, node) in nodes.iter().enumerate() {
        let first = i * per_node;
        let count = per_node.min(total.saturating_sub(first));
        let mut fleet = Fleet::new(
            &opts.jwt_secret,
            count,
            first as i64,
            opts.source_ips,
            recorder.clone(),
        )
        .part_of(total);
        failures += fleet.connect_all(node.addr, opts.concurrency).await;
        fleets.push(fleet);
    }
    (fleets, failures)
}

pub async fn cluster(opts: &Opts, report: &mut Report) {
    let database = Database::create(&opts.postgres_url);
    let redis = Redis::start();
    let nodes = start_nodes(opts, &database, &redis, opts.nodes).await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let token = service_token(opts);
    create_orders(&nodes[0], &token).await;
    let masters = opts.cluster_masters;
    let per_node = masters.div_ceil(nodes.len());
    let node_of = move |master: usize| master / per_node;
    let recorder = Recorder::new(ORDERS * masters);
    let (fleets, failures) = spread_masters(opts, &nodes, &recorder).await;
    report.add("cluster", "nodes", nodes.len() as f64, "", Goal::None);
    report.add(
        "cluster",
        "connect failures",
        failures as f64,
        "",
        Goal::AtMost(0.0),
    );

    report_presence(report, redis.port, nodes.len()).await;

    // Offers made on the master's own node against offers made on another node, in alternating
    // slices after a warm-up, so that drift on this shared machine affects both alike.
    let via = |cross: bool| {
        let addrs = addrs.clone();
        move |seq: usize, master: usize| {
            let home = node_of(master);
            let other = (home + 1 + seq % 2) % addrs.len();
            addrs[if cross { other } else { home }]
        }
    };
    let mut next = 0;
    let warm_up = Load {
        rate: opts.rate,
        duration: WARM_UP,
        first: next,
        stalled_masters: 0,
        batch: 1,
    };
    next = offer_load_via(via(false), &token, masters, &recorder, warm_up)
        .await
        .2;
    recorder.take();
    let redis_before = RedisCounters::read(redis.port).await;
    let measured_from = Instant::now();
    let mut offers_made = 0;
    let mut phases = [Phase::default(), Phase::default()];
    let slice = SLICE.min(opts.duration);
    let slices = (opts.duration.as_secs_f64() / slice.as_secs_f64()).ceil() as usize;
    for _ in 0..slices {
        for cross in [false, true] {
            let load = Load {
                rate: opts.rate,
                duration: slice,
                first: next,
                stalled_masters: 0,
                batch: 1,
            };
            let (expected, errors, after) =
                offer_load_via(via(cross), &token, masters, &recorder, load).await;
            next = after;
            offers_made += expected;
            let (hist, received) = recorder.take();
            let phase = &mut phases[usize::from(cross)];
            phase.hist.add(&hist).expect("same bounds");
            phase.lost += expected.saturating_sub(received as usize);
            phase.errors += errors;
        }
    }
    let rate = opts.rate;
    for (name, phase) in [("same node", &phases[0]), ("cross node", &phases[1])] {
        for (quantile, label) in [(0.5, "p50"), (0.99, "p99")] {
            report.add(
                "cluster",
                &format!("{name} {label} at {rate}/s"),
                phase.hist.value_at_quantile(quantile) as f64 / 1000.0,
                "ms",
                Goal::None,
            );
        }
        report.add(
            "cluster",
            &format!("{name} offers lost"),
            phase.lost as f64,
            "",
            Goal::AtMost(0.0),
        );
        report.add(
            "cluster",
            &format!("{name} HTTP errors"),
            phase.errors as f64,
            "",
            Goal::AtMost(0.0),
        );
    }
    let p99 = |phase: &Phase| phase.hist.value_at_quantile(0.99) as f64 / 1000.0;
    report.add(
        "cluster",
        "cross-node p99 − same-node p99",
        p99(&phases[1]) - p99(&phases[0]),
        "ms",
        Goal::AtMost(5.0),
    );

    let redis_after = RedisCounters::read(redis.port).await;
    report_redis(
        report,
        &redis_before,
        &redis_after,
        measured_from.elapsed(),
        offers_made,
        nodes.len(),
    );
    report_stats_call(report, opts, &nodes[0]).await;
    let rss: Vec<f64> = nodes
        .iter()
        .filter_map(|n| n.rss())
        .map(|b| b as f64)
        .collect();
    for (label, value) in [
        ("mean", rss.iter().sum::<f64>() / rss.len().max(1) as f64),
        ("highest", rss.iter().copied().fold(0.0, f64::max)),
    ] {
        report.add(
            "cluster",
            &format!("RSS per node, {label}"),
            value / MB,
            "MB",
            Goal::None,
        );
    }

    // Throughput: offers made round robin over every node, against the same on 1 node.
    let all = round_robin_rate(opts, &addrs, &token, &recorder, next).await;
    drop(fleets);
    drop(nodes);
    let database_one = Database::create(&opts.postgres_url);
    let one_node = start_nodes(opts, &database_one, &redis, 1).await;
    create_orders(&one_node[0], &token).await;
    let recorder = Recorder::new(ORDERS * masters);
    let (_one_fleets, _) = spread_masters(opts, &one_node, &recorder).await;
    let one = round_robin_rate(opts, &[one_node[0].addr], &token, &recorder, 0).await;
    report.add(
        "cluster",
        &format!(
            "highest offers/s, {} nodes (p99 <= 10 ms, none lost)",
            addrs.len()
        ),
        all as f64,
        "offers/s",
        Goal::None,
    );
    report.add(
        "cluster",
        "highest offers/s, 1 node (p99 <= 10 ms, none lost)",
        one as f64,
        "offers/s",
        Goal::None,
    );
}

/// The highest offer rate, made round robin over `addrs`, with p99 <= 10 ms and nothing lost.
async fn round_robin_rate(
    opts: &Opts,
    addrs: &[SocketAddr],
    token: &str,
    recorder: &Arc<Recorder>,
    next: usize,
) -> u64 {
    let label = format!("cluster of {}", addrs.len());
    let steps = Steps {
        rates: &opts.cluster_steps,
        each: opts.e2e_step,
        label: &label,
        batch: 1,
    };
    let via = |seq: usize, _| addrs[seq % addrs.len()];
    highest_rate(steps, via, token, opts.cluster_masters, recorder, next).await
}

/// Redis's own counters, from `INFO`.
#[derive(Default)]
struct RedisCounters {
    commands: f64,
    publishes: f64,
    bytes_in: f64,
    bytes_out: f64,
}

impl RedisCounters {
    async fn read(port: u16) -> RedisCounters {
        let info = redis_info(port).await;
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let publishes = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
            .and_then(|v| v.split(',').next()?.parse().ok())
            .unwrap_or(0.0);
        RedisCounters {
            commands: field("total_commands_processed"),
            publishes,
            bytes_in: field("total_net_input_bytes"),
            bytes_out: field("total_net_output_bytes"),
        }
    }
}

/// The run's Redis's `INFO all`.
async fn redis_info(port: u16) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the run's Redis");
    redis::cmd("INFO")
        .arg("all")
        .query_async(&mut conn)
        .await
        .expect("a Redis answer")
}

/// What Redis took in and sent out during the latency phases, per second and per offer. A
/// message in is a command (a publish, a presence write or read); a message out is a publish
/// as each subscribed node receives it.
fn report_redis(
    report: &mut Report,
    before: &RedisCounters,
    after: &RedisCounters,
    over: Duration,
    offers: usize,
    nodes: usize,
) {
    let secs = over.as_secs_f64();
    let offers = offers.max(1) as f64;

    let rows = [
        ("messages in", after.commands - before.commands, ""),
        (
            "messages out",
            (after.publishes - before.publishes) * nodes as f64,
            "",
        ),
        ("bytes in", after.bytes_in - before.bytes_in, "B"),
        ("bytes out", after.bytes_out - before.bytes_out, "B"),
    ];
    for (name, total, unit) in rows {
        report.add(
            "cluster",
            &format!("Redis {name} per second"),
            total / secs,
            &format!("{unit}/s"),
            Goal::None,
        );
        report.add(
            "cluster",
            &format!("Redis {name} per offer"),
            total / offers,
            unit,
            Goal::None,
        );
    }
}

/// What the nodes write to Redis with no offers made: their presence, as a rate per node
/// (two heartbeats, every 5 s, fall in the window), once the masters' first report is written.
async fn report_presence(report: &mut Report, port: u16, nodes: usize) {
    const WINDOW: Duration = Duration::from_secs(10);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = RedisCounters::read(port).await;
    tokio::time::sleep(WINDOW).await;
    let after = RedisCounters::read(port).await;
    report.add(
        "cluster",
        "presence written per node, no offers",
        (after.bytes_in - before.bytes_in) / WINDOW.as_secs_f64() / nodes.max(1) as f64,
        "B/s",
        Goal::None,
    );
}

/// One `GET /api/admin/websocket/stats` on `node`, as an admin's page makes it: time and size
/// (the best of three, so that a stray pause on this shared machine does not count).
async fn report_stats_call(report: &mut Report, opts: &Opts, node: &Target) {
    let token = dispatcher::wire::auth::JwtKeys::new(&opts.jwt_secret).mint(
        2,
        dispatcher::domain::Role::Admin,
        None,
        3600,
    );
    let http = reqwest::Client::new();
    let mut best = (Duration::MAX, 0);
    for _ in 0..3 {
        let started = Instant::now();
        let body = http
            .get(node.http("/api/admin/websocket/stats"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("stats")
            .bytes()
            .await
            .expect("stats body");
        best = best.min((started.elapsed(), body.len()));
    }
    report.add(
        "cluster",
        "one admin stats call",
        best.0.as_secs_f64() * 1000.0,
        "ms",
        Goal::None,
    );
    report.add(
        "cluster",
        "one admin stats call, size",
        best.1 as f64 / 1024.0,
        "KB",
        Goal::None,
    );
}
