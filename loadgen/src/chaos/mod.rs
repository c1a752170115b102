//! `loadgen run chaos`: three nodes on one PostgreSQL database and a Redis of the run's own, each
//! node behind proxies the run cuts and slows; masters, an assignment service and event listeners
//! at work; a fault every 5–15 s; then a checker over the database and every client's log.

mod checker;
mod cluster;
mod proxy;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use dispatcher::{domain::Role, wire::auth::JwtKeys};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

use self::cluster::Node;
use crate::{
    cluster::{Database, Redis},
    report::Report,
    scenarios::Opts,
};

/// Nodes in the cluster.
const NODES: usize = 3;
/// A master's app pings this often, and takes a connection that has been silent for
/// `SILENT_FOR` as dead (a frozen node), then reconnects.
const PING_EVERY: Duration = Duration::from_secs(1);
const SILENT_FOR: Duration = Duration::from_millis(2_500);
/// Offers' deadlines, in seconds.
const TTL: std::ops::RangeInclusive<u64> = 3..=8;
/// The node's default; the checker allows it after a deadline.
const EXPIRY_SWEEP_MS: i64 = 5_000;

pub struct ChaosOpts {
    pub duration: Duration,
    pub masters: usize,
    pub rate: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn chance(p: f64) -> bool {
    rand_f64() < p
}

fn rand_f64() -> f64 {
    (rand_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    STATE.with(|state| {
        let next = RandomState::new().hash_one(state.get());
        state.set(next);
        next
    })
}

fn pick(range: std::ops::RangeInclusive<u64>) -> u64 {
    range.start() + rand_u64() % (range.end() - range.start() + 1)
}

/// One connection of a master, from its subscription until the server was last heard on it
/// (a frozen node's connections stay open for a while, but nothing comes through them).
#[derive(Debug, Clone)]
pub struct Session {
    pub master: i64,
    pub conn: u64,
    pub subscribed_at: i64,
    pub last_heard: i64,
}

/// What every client saw, with this machine's clock (the database's, on this one machine).
#[derive(Default)]
pub struct History {
    pub sessions: Mutex<Vec<Session>>,
    /// `(master, conn, assignment, at)` for each `new_assignment`.
    pub received: Mutex<Vec<(i64, u64, i64, i64)>>,
    /// `(master, conn, assignment)` for each expiry, cancellation or own decision heard.
    pub told: Mutex<Vec<(i64, u64, i64)>>,
    /// `(listener, assignment, event)` for each `assignment_event` a listener got.
    pub events: Mutex<Vec<(usize, i64, String)>>,
    pub http_errors: AtomicU64,
    /// Each failed request's status, or how it failed.
    pub http_error_kinds: Mutex<std::collections::BTreeMap<String, u64>>,
    pub offers_made: AtomicU64,
    pub cascades_made: AtomicU64,
}

impl History {
    /// Whether a request succeeded; counts how it failed if not.
    fn succeeded(&self, sent: reqwest::Result<reqwest::Response>) -> bool {
        let kind = match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".into(),
            Err(e) if e.is_connect() => "connect".into(),
            Err(_) => "other".into(),
        };
        self.http_errors.fetch_add(1, Ordering::Relaxed);
        *self
            .http_error_kinds
            .lock()
            .unwrap()
            .entry(kind)
            .or_default() += 1;
        false
    }
}

struct Shared {
    fronts: Vec<u16>,
    /// Which nodes are running (not killed); masters reconnect to one of these.
    running: RwLock<Vec<bool>>,
    keys: JwtKeys,
    history: History,
    stop_load: AtomicBool,
    stop_clients: AtomicBool,
    next_conn: AtomicU64,
}

impl Shared {
    async fn random_running_node(&self) -> usize {
        let running = self.running.read().await;
        let live: Vec<usize> = (0..running.len()).filter(|&i| running[i]).collect();
        if live.is_empty() {
            return (rand_u64() % running.len() as u64) as usize;
        }
        live[(rand_u64() % live.len() as u64) as usize]
    }
}

pub async fn chaos(opts: &Opts, chaos: &ChaosOpts, report: &mut Report) {
    let database = Database::create(&opts.postgres_url);
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let mut node = Node::new(i, dir.path(), &database.url, redis.port, &opts.jwt_secret).await;
        node.start(None).await;
        nodes.push(node);
    }
    let shared = Arc::new(Shared {
        fronts: nodes.iter().map(|n| n.front.port).collect(),
        running: RwLock::new(vec![true; NODES]),
        keys: JwtKeys::new(&opts.jwt_secret),
        history: History::default(),
        stop_load: AtomicBool::new(false),
        stop_clients: AtomicBool::new(false),
        next_conn: AtomicU64::new(0),
    });

    put_on_shift(&shared, chaos.masters).await;
    let mut clients = tokio::task::JoinSet::new();
    for listener in 0..NODES {
        clients.spawn(listen(shared.clone(), listener));
    }
    for master in 1..=chaos.masters as i64 {
        clients.spawn(master_app(shared.clone(), master));
        if master % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let load = tokio::spawn(assignment_service(
        shared.clone(),
        chaos.masters,
        chaos.rate,
    ));

    let faults = run_faults(&shared, &mut nodes, &mut redis, chaos.duration).await;

    // Let every offer end: the longest deadline, a sweep, and a cascade's later steps.
    shared.stop_load.store(true, Ordering::Relaxed);
    let _ = load.await;
    tokio::time::sleep(Duration::from_secs(*TTL.end() * 3 + 8)).await;
    shared.stop_clients.store(true, Ordering::Relaxed);
    while clients.join_next().await.is_some() {}

    let mut health = Vec::new();
    for node in &nodes {
        if node.running() {
            health.push((node.name.clone(), node.health().await));
        }
    }
    let verdict = checker::check(&database.url, &shared.history, &health, EXPIRY_SWEEP_MS);
    let history = &shared.history;
    println!(
        "chaos: {} offers made ({} in cascades), {} decided, {} faults ({}), {} HTTP errors {:?}",
        history.offers_made.load(Ordering::Relaxed),
        history.cascades_made.load(Ordering::Relaxed),
        verdict.decided,
        faults.total(),
        faults.describe(),
        history.http_errors.load(Ordering::Relaxed),
        history.http_error_kinds.lock().unwrap(),
    );
    println!(
        "chaos: {} master sessions, {} offers received, {} decisions told, {} listener events",
        history.sessions.lock().unwrap().len(),
        history.received.lock().unwrap().len(),
        history.told.lock().unwrap().len(),
        history.events.lock().unwrap().len(),
    );
    let mut violations = 0;
    for (check, count) in &verdict.checks {
        println!("{check}: {count} violations");
        report.add(
            "chaos",
            check,
            *count as f64,
            "",
            crate::report::Goal::AtMost(0.0),
        );
        violations += count;
    }
    println!("chaos: {violations} violations");
    report.add(
        "chaos",
        "offers",
        verdict.offers as f64,
        "",
        crate::report::Goal::None,
    );
    report.add(
        "chaos",
        "decisions",
        verdict.decided as f64,
        "",
        crate::report::Goal::None,
    );
    report.add(
        "chaos",
        "faults",
        faults.total() as f64,
        "",
        crate::report::Goal::None,
    );
    for (kind, count) in KINDS.iter().zip(faults.0) {
        report.add(
            "chaos",
            &format!("fault: {kind}"),
            count as f64,
            "",
            crate::report::Goal::None,
        );
    }
    report.add(
        "chaos",
        "violations",
        violations as f64,
        "",
        crate::report::Goal::AtMost(0.0),
    );
}

/// The faults, by kind, and how many of each were injected.
#[derive(Default)]
struct Faults([u64; KINDS.len()]);

const KINDS: [&str; 7] = [
    "kill -9 a node",
    "SIGSTOP a node",
    "kill Redis",
    "cut a node from Redis",
    "cut a node from PostgreSQL",
    "200 ms latency on a node",
    "a node's clock 20 s off",
];

impl Faults {
    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn describe(&self) -> String {
        KINDS
            .iter()
            .zip(self.0)
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A fault every 5–15 s (closer together in a short run, so that each kind comes at least
/// once): the kinds in a shuffled round first, then at random.
async fn run_faults(
    shared: &Shared,
    nodes: &mut [Node],
    redis: &mut Redis,
    duration: Duration,
) -> Faults {
    let mut faults = Faults::default();
    let mut order: Vec<usize> = (0..KINDS.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (rand_u64() % (i as u64 + 1)) as usize);
    }
    let started = tokio::time::Instant::now();
    // The longest fault lasts 10 s; each kind must fit in a short run.
    let slot = duration.as_secs() / (KINDS.len() as u64 + 1);
    let gaps = if slot >= 25 {
        5..=15
    } else {
        1..=(slot.saturating_sub(10)).max(1)
    };
    let mut n = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(pick(gaps.clone()))).await;
        if started.elapsed() >= duration {
            break;
        }
        let kind = order
            .get(n)
            .copied()
            .unwrap_or((rand_u64() % KINDS.len() as u64) as usize);
        n += 1;
        let node = (rand_u64() % nodes.len() as u64) as usize;
        log(&format!(
            "fault: {} ({})",
            KINDS[kind],
            if kind == 2 {
                "redis".into()
            } else {
                nodes[node].name.clone()
            }
        ));
        inject(kind, shared, &mut nodes[node], node, redis).await;
        faults.0[kind] += 1;
    }
    faults
}

async fn inject(kind: usize, shared: &Shared, node: &mut Node, i: usize, redis: &mut Redis) {
    match kind {
        0 => {
            shared.running.write().await[i] = false;
            node.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let skew = node.skew.take();
            node.start(skew).await;
            shared.running.write().await[i] = true;
        }
        1 => {
            node.signal("-STOP");
            tokio::time::sleep(Duration::from_secs(3)).await;
            node.signal("-CONT");
        }
        2 => {
            redis.kill();
            tokio::time::sleep(Duration::from_secs(3)).await;
            redis.restart();
        }
        3 => {
            node.to_redis.cut(true);
            tokio::time::sleep(Duration::from_secs(5)).await;
            node.to_redis.cut(false);
        }
        4 => {
            node.to_postgres.cut(true);
            tokio::time::sleep(Duration::from_secs(5)).await;
            node.to_postgres.cut(false);
        }
        5 => {
            node.delay(Duration::from_millis(200));
            tokio::time::sleep(Duration::from_secs(10)).await;
            node.delay(Duration::ZERO);
        }
        _ => {
            // Started again with its clock off; it keeps it until the run ends or it is killed.
            shared.running.write().await[i] = false;
            node.kill();
            let offset = if chance(0.5) { "+20s" } else { "-20s" };
            node.start(Some(offset.into())).await;
            shared.running.write().await[i] = true;
        }
    }
}

fn log(line: &str) {
    let at = chrono::Utc::now().format("%H:%M:%S%.3f");
    eprintln!("{at} chaos {line}");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(port: u16, token: &str) -> Option<Ws> {
    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .ok()?;
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().ok()?);
    let connected = tokio::time::timeout(Duration::from_secs(3), connect_async(request)).await;
    match connected {
        Ok(Ok((ws, _))) => Some(ws),
        _ => None,
    }
}

/// Reads until a message of type `wanted`, for up to 3 s.
async fn expect(ws: &mut Ws, wanted: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                if value["type"] == wanted {
                    return true;
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return false,
        }
    }
}

/// A master's phone: connects to a running node, subscribes with acks, acknowledges each offer,
/// accepts 30% and rejects 20% of them after 0.2–2 s, pings every second, and reconnects
/// elsewhere when the connection ends or falls silent.
async fn master_app(shared: Arc<Shared>, master: i64) {
    let token = shared
        .keys
        .mint(100_000 + master, Role::Master, Some(master), 24 * 3600);
    while !shared.stop_clients.load(Ordering::Relaxed) {
        let node = shared.random_running_node().await;
        if let Some(mut ws) = connect(shared.fronts[node], &token).await {
            let subscribe = json!({"type": "subscribe_assignments", "acks": true}).to_string();
            if ws.send(Message::text(subscribe)).await.is_ok()
                && expect(&mut ws, "subscribed_assignments").await
            {
                let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                let subscribed_at = now_ms();
                let last_heard = hold(&shared, master, conn, &mut ws).await;
                shared.history.sessions.lock().unwrap().push(Session {
                    master,
                    conn,
                    subscribed_at,
                    last_heard,
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
        }
        tokio::time::sleep(Duration::from_millis(pick(200..=700))).await;
    }
}

/// Answers when the server was last heard.
async fn hold(shared: &Shared, master: i64, conn: u64, ws: &mut Ws) -> i64 {
    let history = &shared.history;
    let mut heard = tokio::time::Instant::now();
    let mut last_heard = now_ms();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut decisions: Vec<(tokio::time::Instant, Value)> = Vec::new();
    let mut check = tokio::time::interval(Duration::from_millis(100));
    loop {
        if shared.stop_clients.load(Ordering::Relaxed) || heard.elapsed() > SILENT_FOR {
            return last_heard;
        }
        tokio::select! {
            message = ws.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => return last_heard,
                };
                heard = tokio::time::Instant::now();
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                let at = now_ms();
                last_heard = at;
                match value["type"].as_str().unwrap_or_default() {
                    "new_assignment" => {
                        let id = value["assignment"]["id"].as_i64().unwrap_or_default();
                        history.received.lock().unwrap().push((master, conn, id, at));
                        let ack = json!({"type": "ack_assignment", "assignmentId": id});
                        if ws.send(Message::text(ack.to_string())).await.is_err() {
                            return last_heard;
                        }
                        let due = tokio::time::Instant::now()
                            + Duration::from_millis(pick(200..=2_000));
                        if chance(0.3) {
                            decisions.push((due, json!({"type": "accept_assignment", "assignmentId": id})));
                        } else if chance(0.2 / 0.7) {
                            decisions.push((due, json!({"type": "reject_assignment", "assignmentId": id, "reason": "busy"})));
                        }
                    }
                    "assignment_expired" | "assignment_cancelled" | "assignment_accepted"
                    | "assignment_rejected" => {
                        let id = value["assignmentId"].as_i64().unwrap_or_default();
                        history.told.lock().unwrap().push((master, conn, id));
                    }
                    _ => {}
                }
            }
            _ = ping.tick() => {
                let ping = json!({"type": "ping"}).to_string();
                if ws.send(Message::text(ping)).await.is_err() {
                    return last_heard;
                }
            }
            _ = check.tick() => {
                let now = tokio::time::Instant::now();
                let (due, later): (Vec<_>, Vec<_>) = decisions.drain(..).partition(|(at, _)| *at <= now);
                decisions = later;
                for (_, decision) in due {
                    if ws.send(Message::text(decision.to_string())).await.is_err() {
                        return last_heard;
                    }
                }
            }
        }
    }
}

/// An event listener on node `i`, reconnecting to it when cut.
async fn listen(shared: Arc<Shared>, i: usize) {
    let token = shared.keys.mint(1, Role::Service, None, 24 * 3600);
    while !shared.stop_clients.load(Ordering::Relaxed) {
        if let Some(mut ws) = connect(shared.fronts[i], &token).await {
            let subscribe = json!({"type": "subscribe_events"}).to_string();
            if ws.send(Message::text(subscribe)).await.is_ok()
                && expect(&mut ws, "subscribed_events").await
            {
                loop {
                    if shared.stop_clients.load(Ordering::Relaxed) {
                        break;
                    }
                    let next = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
                    let text = match next {
                        Err(_) => continue,
                        Ok(Some(Ok(Message::Text(text)))) => text,
                        Ok(Some(Ok(_))) => continue,
                        Ok(_) => break,
                    };
                    let value: Value = serde_json::from_str(&text).unwrap_or_default();
                    if value["type"] == "assignment_event"
                        && !matches!(value["event"].as_str(), Some("delivered" | "undelivered"))
                    {
                        shared.history.events.lock().unwrap().push((
                            i,
                            value["assignmentId"].as_i64().unwrap_or_default(),
                            value["event"].as_str().unwrap_or_default().to_string(),
                        ));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every master goes on shift, so that cascades (which skip masters off shift) reach them.
async fn put_on_shift(shared: &Shared, masters: usize) {
    let token = shared.keys.mint(2, Role::Service, None, 3600);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", shared.fronts[0]);
    let ids: Vec<usize> = (1..=masters).collect();
    for batch in ids.chunks(50) {
        let puts = batch.iter().map(|id| {
            http.put(format!("{base}/api/v1/masters/{id}/shift"))
                .bearer_auth(&token)
                .json(&json!({"onShift": true}))
                .send()
        });
        for put in futures_util::future::join_all(puts).await {
            assert!(
                put.is_ok_and(|r| r.status().is_success()),
                "a master could not go on shift"
            );
        }
    }
}

/// Offers at `rate` a second through random running nodes, each of a new order, one in five
/// as a cascade over 2–3 masters.
async fn assignment_service(shared: Arc<Shared>, masters: usize, rate: u64) {
    let token = shared.keys.mint(2, Role::Service, None, 24 * 3600);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut requests = tokio::task::JoinSet::new();
    let mut order = 0i64;
    while !shared.stop_load.load(Ordering::Relaxed) {
        tick.tick().await;
        order += 1;
        let node = shared.random_running_node().await;
        let base = format!("http://127.0.0.1:{}", shared.fronts[node]);
        let (shared, http, token) = (shared.clone(), http.clone(), token.clone());
        requests.spawn(async move {
            let master = |_| 1 + (rand_u64() % masters as u64) as i64;
            let body =
                json!({"clientUserId": 7, "address": "a", "deviceType": "d", "problem": "p"});
            let put = http
                .put(format!("{base}/api/v1/orders/{order}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await;
            if !shared.history.succeeded(put) {
                return;
            }
            let ttl = pick(TTL);
            let made = if chance(0.2) {
                let mut candidates: Vec<i64> = (0..pick(2..=3)).map(master).collect();
                candidates.sort_unstable();
                candidates.dedup();
                shared.history.cascades_made.fetch_add(1, Ordering::Relaxed);
                http.post(format!("{base}/api/v1/orders/{order}/dispatch"))
                    .bearer_auth(&token)
                    .json(&json!({"candidates": candidates, "ttlSeconds": ttl, "batchSize": 1}))
                    .send()
                    .await
            } else {
                http.post(format!("{base}/api/v1/assignments"))
                    .bearer_auth(&token)
                    .json(&json!({"orderId": order, "masterId": master(0), "ttlSeconds": ttl}))
                    .send()
                    .await
            };
            if shared.history.succeeded(made) {
                shared.history.offers_made.fetch_add(1, Ordering::Relaxed);
            }
        });
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
}
