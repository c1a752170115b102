//! The benchmark scenarios of BENCHMARKS.md.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use dispatcher::{
    bus::Deliver,
    config::Config,
    domain::{DomainEvent, MasterId, OrderId, OrderStatus, OrderStatusChange, Role, UserId},
    startup::Application,
    wire::auth::JwtKeys,
};
use serde_json::json;

use crate::{
    fleet::{Fleet, Recorder, unix_us},
    floor,
    holder::Holders,
    report::{Goal, Report},
    target::{Target, settled_rss},
};

/// Everything a scenario may be told.
#[derive(Clone, Debug)]
pub struct Opts {
    pub connections: usize,
    pub rate: u64,
    pub duration: Duration,
    pub idle_window: Duration,
    pub pending: usize,
    pub expiry_spread: (u64, u64),
    pub e2e_steps: Vec<u64>,
    pub e2e_step: Duration,
    /// Offers per request in the end-to-end scenario.
    pub batch: usize,
    pub routing_rates: Vec<u64>,
    pub source_ips: u8,
    pub jwt_secret: String,
    pub addr: Option<SocketAddr>,
    pub server_pid: Option<u32>,
    pub concurrency: usize,
    /// A PostgreSQL server's URL; the cluster scenario creates a database of its own there.
    pub postgres_url: String,
    /// Offer rates tried in the cluster scenario's throughput step, lowest first.
    pub cluster_steps: Vec<u64>,
    /// Nodes in the cluster scenario, and the masters spread over them.
    pub nodes: usize,
    pub cluster_masters: usize,
}

/// Orders created up front; an offer's order and master follow from its sequence number, so
/// every (order, master) pair is offered once.
pub(crate) const ORDERS: usize = 200;
pub(crate) const MB: f64 = 1024.0 * 1024.0;

async fn start_dispatcher(opts: &Opts, dir: &std::path::Path, env: &[(&str, String)]) -> Target {
    match opts.addr {
        Some(addr) => Target::external(addr, opts.server_pid),
        None => Target::dispatcher(dir, &opts.jwt_secret, env).await,
    }
}

pub(crate) fn service_token(opts: &Opts) -> String {
    JwtKeys::new(&opts.jwt_secret).mint(1, Role::Service, None, 24 * 3600)
}

pub(crate) async fn create_orders(target: &Target, token: &str) {
    let http = reqwest::Client::new();
    let puts = (1..=ORDERS).map(|id| {
        let (http, url) = (http.clone(), target.http(&format!("/api/v1/orders/{id}")));
        let body = json!({"clientUserId": 7, "address": format!("Lenina {id}"), "deviceType": "washer", "problem": "leaks", "clientName": "Ivan", "clientPhone": "+79001234567"});
        async move {
            let resp = http.put(url).bearer_auth(token).json(&body).send().await.expect("PUT order");
            assert!(resp.status().is_success(), "PUT order: {}", resp.status());
        }
    });
    futures_util::future::join_all(puts).await;
}

/// Scenario 1: Idle: memory per connection and CPU while masters only ping every 45 s.
pub async fn idle(opts: &Opts, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = start_dispatcher(opts, dir.path(), &[]).await;
    let (per_conn, cpu, failures) = hold_idle(opts, &dispatcher).await;
    let floor = Target::floor().await;
    let (floor_per_conn, floor_cpu, _) = hold_idle(opts, &floor).await;
    report.add(
        "idle",
        "connect failures",
        failures as f64,
        "",
        Goal::AtMost(0.0),
    );
    report
        .add(
            "idle",
            "server memory per connection",
            per_conn,
            "bytes",
            Goal::AtMost(16384.0),
        )
        .against_floor(floor_per_conn);
    report
        .add(
            "idle",
            "server CPU while idle",
            cpu,
            "% core",
            Goal::AtMost(2.0),
        )
        .against_floor(floor_cpu);
}

async fn hold_idle(opts: &Opts, target: &Target) -> (f64, f64, usize) {
    let before = settled_rss(target).await.unwrap_or(0);
    let mut fleet = Fleet::new(
        &opts.jwt_secret,
        opts.connections,
        0,
        opts.source_ips,
        Recorder::new(0),
    );
    let failures = fleet.connect_all(target.addr, opts.concurrency).await;
    let after = settled_rss(target).await.unwrap_or(0);
    let per_conn = after.saturating_sub(before) as f64 / fleet.len().max(1) as f64;

    // Pings spread evenly, each master once per 45 s, as the phone app does.
    let cpu_before = target.cpu_time().unwrap_or_default();
    let started = Instant::now();
    let gap = Duration::from_secs(45) / fleet.len().max(1) as u32;
    let mut next = 0;
    while started.elapsed() < opts.idle_window {
        fleet.ping(next).await;
        next += 1;
        tokio::time::sleep(gap).await;
    }
    let cpu = target
        .cpu_time()
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let cpu_percent = 100.0 * cpu.as_secs_f64() / started.elapsed().as_secs_f64();
    fleet.drop_all().await;
    (per_conn, cpu_percent, failures)
}

/// One open-loop burst of offers.
pub(crate) struct Load {
    pub rate: u64,
    pub duration: Duration,
    /// The first sequence number; an offer's order and master follow from it.
    pub first: usize,
    /// Offers to masters below this index go to stalled clients and are not expected back.
    pub stalled_masters: usize,
    /// Offers per request: above 1, through the batch endpoint.
    pub batch: usize,
}

/// Sends offers open-loop to one server; answers (offers expected to arrive, HTTP errors, next
/// free sequence).
async fn offer_load(
    target: &Target,
    token: &str,
    masters: usize,
    recorder: &Arc<Recorder>,
    load: Load,
) -> (usize, usize, usize) {
    offer_load_via(|_, _| target.addr, token, masters, recorder, load).await
}

/// Sends offers open-loop, each to the server `via(sequence, master)` names.
pub(crate) async fn offer_load_via(
    via: impl Fn(usize, usize) -> SocketAddr,
    token: &str,
    masters: usize,
    recorder: &Arc<Recorder>,
    load: Load,
) -> (usize, usize, usize) {
    let Load {
        rate,
        duration,
        first,
        stalled_masters,
        batch,
    } = load;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let errors = Arc::new(AtomicU64::new(0));
    let batch = batch.max(1);
    let total = (rate as f64 * duration.as_secs_f64()) as usize;
    let period = Duration::from_secs_f64(batch as f64 / rate as f64);
    let mut ticker = tokio::time::interval(period);
    let mut tasks = Vec::with_capacity(total / batch + 1);
    let mut expected = 0;
    let end = first + total;
    for start in (first..end).step_by(batch) {
        ticker.tick().await;
        let mut offers = Vec::with_capacity(batch);
        for seq in start..(start + batch).min(end) {
            let (order, master) = (seq / masters, seq % masters);
            if master >= stalled_masters {
                expected += 1;
            }
            recorder.mark_sent(seq);
            offers.push(
                json!({"orderId": order % ORDERS + 1, "masterId": master + 1, "ttlSeconds": 600}),
            );
        }
        let server = via(start, start % masters);
        let (url, body) = if batch == 1 {
            let one = offers.pop().expect("one offer");
            (format!("http://{server}/api/v1/assignments"), one)
        } else {
            let many = json!({ "offers": offers });
            (format!("http://{server}/api/v1/assignments/batch"), many)
        };
        let (http, errors, token) = (http.clone(), errors.clone(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let refused = match http.post(url).bearer_auth(token).json(&body).send().await {
                Ok(r) if r.status().is_success() && batch == 1 => None,
                Ok(r) if r.status().is_success() => {
                    // A batch answers 200 with each offer's own status.
                    let answer: serde_json::Value = r.json().await.unwrap_or_default();
                    let results = answer["results"].as_array().cloned().unwrap_or_default();
                    let failed: Vec<_> = results.iter().filter(|r| r["status"] != 201).collect();
                    (failed.len() + batch.saturating_sub(results.len()) > 0)
                        .then(|| format!("a batch refused {} offers: {answer}", failed.len()))
                }
                Ok(r) => Some(format!(
                    "offer answered {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => Some(format!("offer failed: {e}")),
            };
            if let Some(refused) = refused
                && errors.fetch_add(1, Ordering::Relaxed) < 3
            {
                eprintln!("{refused}");
            }
        }));
    }
    futures_util::future::join_all(tasks).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    (
        expected,
        errors.load(Ordering::Relaxed) as usize,
        first + total,
    )
}

/// Scenario 2: End to end: request sent → `new_assignment` received, at a fixed rate and at the highest
/// rate sustained. Answers the fixed-rate p99 in µs, for scenario 6.
pub async fn end_to_end(opts: &Opts, report: &mut Report, stalled_share: f64) -> f64 {
    let name = match (stalled_share > 0.0, opts.batch) {
        (true, _) => "slow".to_owned(),
        (false, 1) => "e2e".to_owned(),
        (false, batch) => format!("e2e batch {batch}"),
    };
    let name = name.as_str();
    let dir = tempfile::tempdir().unwrap();
    let target = start_dispatcher(opts, dir.path(), &[]).await;
    let token = service_token(opts);
    create_orders(&target, &token).await;
    let masters = opts.connections;
    let recorder = Recorder::new(ORDERS * masters);
    let mut fleet = Fleet::new(
        &opts.jwt_secret,
        masters,
        0,
        opts.source_ips,
        recorder.clone(),
    );
    let failures = fleet.connect_all(target.addr, opts.concurrency).await;
    report.add(
        name,
        "connect failures",
        failures as f64,
        "",
        Goal::AtMost(0.0),
    );
    let stalled = (masters as f64 * stalled_share).round() as usize;
    fleet.stall(stalled);
    let rss_before = settled_rss(&target).await.unwrap_or(0);

    let load = Load {
        rate: opts.rate,
        duration: opts.duration,
        first: 0,
        stalled_masters: stalled,
        batch: opts.batch,
    };
    let (expected, errors, next) = offer_load(&target, &token, masters, &recorder, load).await;
    let (hist, received) = recorder.take();
    let rate = opts.rate;
    report.add(
        name,
        &format!("p50 at {rate}/s"),
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        "ms",
        Goal::AtMost(2.0),
    );
    let p99 = hist.value_at_quantile(0.99) as f64;
    let p99_goal = if stalled_share > 0.0 {
        Goal::None
    } else {
        Goal::AtMost(10.0)
    };
    report.add(
        name,
        &format!("p99 at {rate}/s"),
        p99 / 1000.0,
        "ms",
        p99_goal,
    );
    report.add(
        name,
        &format!("max at {rate}/s"),
        hist.max() as f64 / 1000.0,
        "ms",
        Goal::None,
    );
    report.add(
        name,
        "offers lost",
        expected.saturating_sub(received as usize) as f64,
        "",
        Goal::AtMost(0.0),
    );
    report.add(name, "HTTP errors", errors as f64, "", Goal::AtMost(0.0));
    if stalled_share > 0.0 {
        let rss_after = settled_rss(&target).await.unwrap_or(0);
        report.add(name, "stalled clients", stalled as f64, "", Goal::None);
        report.add(
            name,
            "server RSS growth with stalled clients",
            (rss_after as f64 - rss_before as f64) / MB,
            "MiB",
            Goal::None,
        );
        return p99;
    }

    let steps = Steps {
        rates: &opts.e2e_steps,
        each: opts.e2e_step,
        label: name,
        batch: opts.batch,
    };
    let sustained = highest_rate(steps, |_, _| target.addr, &token, masters, &recorder, next).await;
    report.add(
        name,
        "highest rate with p99 <= 10 ms, none lost",
        sustained as f64,
        "offers/s",
        Goal::None,
    );
    p99
}

/// Offer rates to try in turn, each for `each`.
pub(crate) struct Steps<'a> {
    pub rates: &'a [u64],
    pub each: Duration,
    pub label: &'a str,
    /// Offers per request.
    pub batch: usize,
}

/// Steps the offer rate up; answers the highest whose p99 stays within 10 ms with nothing lost.
pub(crate) async fn highest_rate(
    steps: Steps<'_>,
    via: impl Fn(usize, usize) -> SocketAddr + Copy,
    token: &str,
    masters: usize,
    recorder: &Arc<Recorder>,
    mut next: usize,
) -> u64 {
    let mut sustained = 0;
    for &rate in steps.rates {
        let load = Load {
            rate,
            duration: steps.each,
            first: next,
            stalled_masters: 0,
            batch: steps.batch,
        };
        let (expected, errors, after) = offer_load_via(via, token, masters, recorder, load).await;
        next = after;
        let (hist, received) = recorder.take();
        let p99 = hist.value_at_quantile(0.99) as f64 / 1000.0;
        eprintln!(
            "{} at {rate}/s: p99 {p99:.2} ms, {received}/{expected} delivered, {errors} errors",
            steps.label
        );
        if p99 > 10.0 || (received as usize) < expected || errors > 0 {
            break;
        }
        sustained = rate;
    }
    sustained
}

/// Scenario 6: Slow consumers: 1% of clients stop reading during scenario 2's load.
pub async fn slow_consumers(opts: &Opts, report: &mut Report, baseline_p99_us: f64) {
    let p99 = end_to_end(opts, report, 0.01).await;
    report.add(
        "slow",
        "p99 ÷ e2e p99",
        p99 / baseline_p99_us.max(1.0),
        "ratio",
        Goal::AtMost(1.2),
    );
}

/// Scenario 4: Reconnect storm: every master drops and reconnects with its token.
pub async fn reconnect_storm(opts: &Opts, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = start_dispatcher(opts, dir.path(), &[]).await;
    let (secs, failures, growth) = storm(opts, &dispatcher).await;
    let floor = Target::floor().await;
    let (floor_secs, _, _) = storm(opts, &floor).await;
    report
        .add(
            "storm",
            "time until all back and subscribed",
            secs,
            "s",
            Goal::AtMost(3.0),
        )
        .against_floor(floor_secs);
    report.add(
        "storm",
        "reconnect failures",
        failures as f64,
        "",
        Goal::AtMost(0.0),
    );
    report.add(
        "storm",
        "server memory after ÷ before",
        growth,
        "ratio",
        Goal::AtMost(1.05),
    );
}

async fn storm(opts: &Opts, target: &Target) -> (f64, usize, f64) {
    let mut fleet = Fleet::new(
        &opts.jwt_secret,
        opts.connections,
        0,
        opts.source_ips,
        Recorder::new(0),
    );
    let mut failures = fleet.connect_all(target.addr, opts.concurrency).await;
    let before = settled_rss(target).await.unwrap_or(0);
    fleet.drop_all().await;
    let started = Instant::now();
    failures += fleet.connect_all(target.addr, opts.concurrency).await;
    let secs = started.elapsed().as_secs_f64();
    let after = settled_rss(target).await.unwrap_or(0);
    fleet.drop_all().await;
    (secs, failures, after as f64 / before.max(1) as f64)
}

/// Scenario 5: Expiry at scale: pending assignments seeded in the database, armed by start-up recovery.
pub async fn expiry(opts: &Opts, report: &mut Report) {
    let empty_dir = tempfile::tempdir().unwrap();
    let baseline = {
        let target = Target::dispatcher(empty_dir.path(), &opts.jwt_secret, &[]).await;
        settled_rss(&target).await.unwrap_or(0)
    };
    let dir = tempfile::tempdir().unwrap();
    let url = dir
        .path()
        .join("dispatcher.db")
        .to_string_lossy()
        .to_string();
    let (min, max) = opts.expiry_spread;
    let seeded_at = dispatcher::domain::time::now_ms();
    seed_pending(&url, opts.pending, seeded_at, min, max);
    let target = Target::dispatcher(dir.path(), &opts.jwt_secret, &[]).await;
    let armed = settled_rss(&target).await.unwrap_or(0);
    let per_pending = armed.saturating_sub(baseline) as f64 / opts.pending as f64;

    let wait_until = seeded_at + (max as i64 + 3) * 1000;
    let remaining = wait_until - dispatcher::domain::time::now_ms();
    if remaining > 0 {
        tokio::time::sleep(Duration::from_millis(remaining as u64)).await;
    }
    let (lateness, still_pending, early) = read_lateness(&url);
    report.add(
        "expiry",
        "pending assignments seeded",
        opts.pending as f64,
        "",
        Goal::None,
    );
    report.add(
        "expiry",
        "p50 lateness",
        lateness.value_at_quantile(0.5) as f64,
        "ms",
        Goal::None,
    );
    report.add(
        "expiry",
        "p99 lateness",
        lateness.value_at_quantile(0.99) as f64,
        "ms",
        Goal::AtMost(100.0),
    );
    report.add(
        "expiry",
        "max lateness",
        lateness.max() as f64,
        "ms",
        Goal::None,
    );
    report.add(
        "expiry",
        "missed (still pending)",
        still_pending as f64,
        "",
        Goal::AtMost(0.0),
    );
    report.add(
        "expiry",
        "expired early",
        early as f64,
        "",
        Goal::AtMost(0.0),
    );
    report.add(
        "expiry",
        "server memory per pending assignment",
        per_pending,
        "bytes",
        Goal::AtMost(1024.0),
    );
}

fn seed_pending(url: &str, count: usize, now: i64, min_secs: u64, max_secs: u64) {
    use diesel::{Connection, RunQueryDsl};
    let pool = dispatcher::storage::pool(url, 1, Duration::from_secs(5), None);
    dispatcher::storage::migrate(url, &pool).expect("migrations");
    let mut conn = diesel::SqliteConnection::establish(url).unwrap();
    let span = (max_secs - min_secs) * 1000;
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        diesel::sql_query(format!(
            "INSERT INTO orders (id, client_user_id, address, device_type, problem, status, created_at, updated_at) \
             VALUES (1, 7, 'Lenina 1', 'washer', 'leaks', 'new', {now}, {now})"
        ))
        .execute(conn)?;
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|&i| {
                    // Spread evenly over the window, in a scrambled order.
                    let offset = (i as u64 * 7919) % span.max(1);
                    let expires = now + (min_secs * 1000 + offset) as i64;
                    format!("(1, {i}, 'pending', {now}, {expires})")
                })
                .collect();
            diesel::sql_query(format!(
                "INSERT INTO assignments (order_id, master_id, status, created_at, expires_at) VALUES {}",
                values.join(",")
            ))
            .execute(conn)?;
        }
        Ok(())
    })
    .expect("seeding");
}

fn read_lateness(url: &str) -> (hdrhistogram::Histogram<u64>, usize, usize) {
    use diesel::{Connection, QueryableByName, RunQueryDsl, sql_types::BigInt};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        late: i64,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = diesel::SqliteConnection::establish(url).unwrap();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT decided_at - expires_at AS late FROM assignments WHERE status = 'expired'",
    )
    .load(&mut conn)
    .unwrap();
    let pending: Vec<Count> =
        diesel::sql_query("SELECT COUNT(*) AS n FROM assignments WHERE status = 'pending'")
            .load(&mut conn)
            .unwrap();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut early = 0;
    for r in rows {
        if r.late < 0 {
            early += 1;
        }
        hist.saturating_record(r.late.max(0) as u64);
    }
    (hist, pending[0].n as usize, early)
}

/// Scenario 3: Routing: notifications straight into the Dispatcher actor (no HTTP, no database), delivered
/// to masters held by real clients; the same against the floor.
pub async fn routing(opts: &Opts, report: &mut Report) {
    let dispatcher_best = route_dispatcher(opts).await;
    let floor_best = route_floor(opts).await;
    report
        .add(
            "routing",
            "deliveries/s with p99 < 50 ms",
            dispatcher_best,
            "msg/s",
            Goal::AtLeast(200_000.0),
        )
        .against_floor(floor_best);
    report.add(
        "routing",
        "dispatcher ÷ floor",
        dispatcher_best / floor_best.max(1.0),
        "ratio",
        Goal::AtLeast(0.5),
    );
}

async fn route_dispatcher(opts: &Opts) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let url = dir
        .path()
        .join("dispatcher.db")
        .to_string_lossy()
        .to_string();
    let secret = opts.jwt_secret.clone();
    let config = Config::from_lookup(move |name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "JWT_SECRET" => Some(secret.clone()),
        "RATE_LIMIT_PER_SEC" | "RATE_LIMIT_BURST" => Some("1000".into()),
        _ => None,
    })
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build_with_listener(config, listener)
                .await
                .expect("app");
            tx.send((app.port(), app.router(), app.stop_handle()))
                .unwrap();
            let _ = app.run_until_stopped().await;
        })
    });
    let (port, addr, stop) = rx.recv().unwrap();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let send = move |batch: Vec<(u64, i64)>| {
        let events = batch
            .into_iter()
            .map(|(seq, master)| {
                DomainEvent::OrderStatusChanged(OrderStatusChange {
                    order_id: OrderId(seq as i64),
                    client_user_id: UserId(-1),
                    master_id: Some(MasterId(master)),
                    status: OrderStatus::InProgress,
                    updated_at: 0,
                })
            })
            .collect();
        addr.try_send(Deliver(events)).is_ok()
    };
    let best = route(opts, server, send, "dispatcher").await;
    stop.stop();
    best
}

async fn route_floor(opts: &Opts) -> f64 {
    let (server, floor) = floor::start_in_process();
    let send = move |batch: Vec<(u64, i64)>| {
        for (seq, master) in batch {
            let text = format!(
                r#"{{"type":"order_status_update","orderId":{seq},"status":"in_progress","updatedAt":"2025-12-23T10:45:00.000Z"}}"#
            );
            floor.send(master as u64, &text);
        }
        true
    };
    route(opts, server, send, "floor").await
}

/// Steps up the rate; answers the highest deliveries/s with p99 < 50 ms and ≥ 99.9% delivered.
/// Each message's key is its send time, so the clients (in holder processes) measure latency.
async fn route(
    opts: &Opts,
    server: SocketAddr,
    send: impl Fn(Vec<(u64, i64)>) -> bool,
    who: &str,
) -> f64 {
    const STEP: Duration = Duration::from_secs(3);
    let masters = opts.connections as u64;
    let mut holders = Holders::start(server, opts.connections, &opts.jwt_secret, opts.source_ips);
    assert_eq!(holders.failures, 0, "{who}: connections failed");
    let mut best = 0.0;
    let mut seq = 0u64;
    for &rate in &opts.routing_rates {
        let per_tick = (rate / 1000).max(1);
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        let started = Instant::now();
        let (mut sent, mut refused) = (0u64, 0u64);
        while started.elapsed() < STEP {
            ticker.tick().await;
            let now = unix_us();
            let batch: Vec<(u64, i64)> = (0..per_tick)
                .map(|i| (now, ((seq + i) % masters) as i64 + 1))
                .collect();
            seq += per_tick;
            if send(batch) {
                sent += per_tick;
            } else {
                refused += per_tick;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let window = holders.report();
        let p99_ms = window.p99_us as f64 / 1000.0;
        let achieved = window.received as f64 / elapsed;
        eprintln!(
            "routing {who} at {rate}/s: {achieved:.0} delivered/s, p99 {p99_ms:.2} ms, {}/{sent} delivered, {refused} refused",
            window.received
        );
        if p99_ms >= 50.0 || (window.received as f64) < 0.999 * (sent + refused) as f64 {
            break;
        }
        best = achieved;
    }
    best
}
