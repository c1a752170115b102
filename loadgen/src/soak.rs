//! The soak: masters that stay connected for a long time, a tenth of them reconnecting each
//! minute, under a steady stream of offers that are accepted or left to expire. What must hold is
//! that the server's memory stays flat after warm-up, that no offer is lost, and nothing errs.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use dispatcher::{domain::Role, wire::auth::JwtKeys};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::{
    report::{Goal, Report},
    scenarios::{Opts, service_token},
    target::{Target, rss_of},
};

/// How the soak runs; `loadgen run soak` takes each from a flag.
#[derive(Clone, Debug)]
pub struct SoakOpts {
    pub masters: usize,
    pub duration: Duration,
    pub rate: u64,
    /// An offer's deadline; offers not accepted expire after it.
    pub ttl_secs: u64,
}

/// Every master reconnects once in this period, at his own offset: a tenth of them each minute.
/// A run shorter than this uses its own length, so each master still reconnects once.
const RECONNECT_PERIOD: Duration = Duration::from_secs(600);
/// RSS is read this often; the first tenth of the run (at least one reading) is warm-up.
const RSS_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Tally {
    delivered: Mutex<HashSet<i64>>,
    accepted: AtomicU64,
    expired_pushes: AtomicU64,
    late_accepts: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    unexpected_closes: AtomicU64,
    connect_failures: AtomicU64,
}

impl Tally {
    fn error(&self, what: impl std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("soak error: {what}");
        }
    }
}

/// Half the offers are accepted on arrival, the others left to expire.
fn accepts(assignment_id: i64) -> bool {
    assignment_id % 2 == 0
}

pub async fn soak(opts: &Opts, soak: &SoakOpts, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let target = match opts.addr {
        Some(addr) => Target::external(addr, opts.server_pid),
        None => Target::dispatcher(dir.path(), &opts.jwt_secret, &[]).await,
    };
    let keys = JwtKeys::new(&opts.jwt_secret);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let end = started + soak.duration;

    let period = RECONNECT_PERIOD.min(soak.duration);
    let mut masters = Vec::with_capacity(soak.masters);
    for index in 0..soak.masters {
        let master_id = index as i64 + 1;
        let token = keys.mint(
            200_000 + master_id,
            Role::Master,
            Some(master_id),
            48 * 3600,
        );
        // Spread over the period, so each minute a tenth of them reconnect.
        let offset = period.mul_f64(index as f64 / soak.masters as f64);
        masters.push(tokio::spawn(run_master(
            target.addr,
            token,
            (started + offset, period),
            end,
            tally.clone(),
        )));
        if index % 256 == 255 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Let every master connect and subscribe before offers start.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let rss = Arc::new(Mutex::new(Vec::<(Duration, u64)>::new()));
    let sampler = {
        let (rss, pid) = (rss.clone(), target.pid);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RSS_EVERY);
            loop {
                tick.tick().await;
                if let Some(bytes) = pid.and_then(rss_of) {
                    rss.lock().unwrap().push((started.elapsed(), bytes));
                }
            }
        })
    };

    let created = offer_load(&target, &service_token(opts), soak, end, &tally).await;
    for master in masters {
        let _ = master.await;
    }
    sampler.abort();

    // Every offer is decided by now (its deadline has passed): none may still be pending.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = still_pending(&target, &service_token(opts), &created).await;
    let delivered = tally.delivered.lock().unwrap().clone();
    let lost = created.iter().filter(|id| !delivered.contains(id)).count();

    let scenario = "soak";
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    report.add(scenario, "masters", soak.masters as f64, "", Goal::None);
    report.add(
        scenario,
        "minutes",
        soak.duration.as_secs_f64() / 60.0,
        "min",
        Goal::None,
    );
    report.add(
        scenario,
        "offers created",
        created.len() as f64,
        "",
        Goal::None,
    );
    report.add(scenario, "offers lost", lost as f64, "", Goal::AtMost(0.0));
    report.add(scenario, "accepted", n(&tally.accepted), "", Goal::None);
    report.add(
        scenario,
        "expiries pushed",
        n(&tally.expired_pushes),
        "",
        Goal::None,
    );
    report.add(
        scenario,
        "still pending after deadline",
        pending as f64,
        "",
        Goal::AtMost(0.0),
    );
    report.add(scenario, "reconnects", n(&tally.reconnects), "", Goal::None);
    report.add(scenario, "errors", n(&tally.errors), "", Goal::AtMost(0.0));
    report.add(
        scenario,
        "unexpected closes",
        n(&tally.unexpected_closes),
        "",
        Goal::AtMost(0.0),
    );
    report.add(
        scenario,
        "connect failures",
        n(&tally.connect_failures),
        "",
        Goal::AtMost(0.0),
    );

    let samples = rss.lock().unwrap().clone();
    let warm_up = soak.duration / 10;
    let after: Vec<u64> = samples
        .iter()
        .filter(|(at, _)| *at >= warm_up)
        .map(|&(_, b)| b)
        .collect();
    let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
    // The course of memory over the run, every fifth of it.
    let step = (samples.len() / 5).max(1);
    for (at, bytes) in samples.iter().skip(step - 1).step_by(step) {
        let minute = at.as_secs_f64() / 60.0;
        report.add(
            scenario,
            &format!("RSS at {minute:.1} min"),
            mib(*bytes),
            "MiB",
            Goal::None,
        );
    }
    if let Some(size) = database_size(dir.path()) {
        report.add(
            scenario,
            "SQLite file at the end",
            mib(size),
            "MiB",
            Goal::None,
        );
    }
    if let (Some(&first), Some(&max)) = (after.first(), after.iter().max()) {
        report.add(scenario, "RSS after warm-up", mib(first), "MiB", Goal::None);
        report.add(
            scenario,
            "RSS highest after warm-up",
            mib(max),
            "MiB",
            Goal::None,
        );
        report.add(
            scenario,
            "RSS growth after warm-up",
            100.0 * (max as f64 - first as f64) / first as f64,
            "%",
            Goal::AtMost(10.0),
        );
    }
}

/// The SQLite file and its write-ahead log, when the soak started the server itself.
fn database_size(dir: &std::path::Path) -> Option<u64> {
    let size = |name: &str| std::fs::metadata(dir.join(name)).map(|m| m.len()).ok();
    Some(size("dispatcher.db")? + size("dispatcher.db-wal").unwrap_or(0))
}

/// Offers at a steady rate, each on an order of its own; answers the ids created.
async fn offer_load(
    target: &Target,
    token: &str,
    soak: &SoakOpts,
    end: Instant,
    tally: &Arc<Tally>,
) -> Vec<i64> {
    let http = reqwest::Client::new();
    let created = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / soak.rate as f64));
    // Offers stop a deadline before the end, so that every one is decided while watched.
    let last_offer = end - Duration::from_secs(soak.ttl_secs + 2).min(soak.duration / 2);
    let mut tasks = Vec::new();
    let mut seq: i64 = 0;
    while Instant::now() < last_offer {
        tick.tick().await;
        seq += 1;
        let master_id = (seq - 1) % soak.masters as i64 + 1;
        let (http, token, tally, created) = (
            http.clone(),
            token.to_string(),
            tally.clone(),
            created.clone(),
        );
        let base = format!("http://{}", target.addr);
        let ttl = soak.ttl_secs;
        tasks.push(tokio::spawn(async move {
            let order = json!({"clientUserId": 7, "address": format!("Soak {seq}"),
                "deviceType": "boiler", "problem": "no hot water"});
            let put = http
                .put(format!("{base}/api/v1/orders/{seq}"))
                .bearer_auth(&token)
                .json(&order)
                .send()
                .await;
            if !put.as_ref().is_ok_and(|r| r.status().is_success()) {
                return tally.error(format!("PUT order {seq}: {put:?}"));
            }
            let offer = json!({"orderId": seq, "masterId": master_id, "ttlSeconds": ttl});
            match http
                .post(format!("{base}/api/v1/assignments"))
                .bearer_auth(&token)
                .json(&offer)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    let body: Value = r.json().await.unwrap_or_default();
                    match body["assignment"]["id"].as_i64() {
                        Some(id) => created.lock().unwrap().push(id),
                        None => tally.error(format!("offer answer without an id: {body}")),
                    }
                }
                other => tally.error(format!("offer {seq}: {other:?}")),
            }
        }));
        tasks.retain(|t| !t.is_finished());
    }
    futures_util::future::join_all(tasks).await;
    std::mem::take(&mut *created.lock().unwrap())
}

/// How many of these offers the server still holds as pending.
async fn still_pending(target: &Target, token: &str, ids: &[i64]) -> usize {
    let http = reqwest::Client::new();
    let mut pending = 0;
    for chunk in ids.chunks(64) {
        let answers = futures_util::future::join_all(chunk.iter().map(|id| {
            http.get(format!("http://{}/api/v1/assignments/{id}", target.addr))
                .bearer_auth(token)
                .send()
        }))
        .await;
        for answer in answers {
            let status = match answer {
                Ok(r) => r.json::<Value>().await.ok().map(|b| b["status"].clone()),
                Err(_) => None,
            };
            pending += usize::from(status.is_none_or(|s| s == "pending"));
        }
    }
    pending
}

/// One master: connected and subscribed until `end`, dropping and re-opening the connection
/// once a `period`, from `first_reconnect`. Accepts half of his offers.
async fn run_master(
    server: SocketAddr,
    token: String,
    (first_reconnect, period): (Instant, Duration),
    end: Instant,
    tally: Arc<Tally>,
) {
    let url = format!("ws://{server}/ws?token={token}");
    let mut next_reconnect = first_reconnect;
    while Instant::now() < end {
        let ws = match connect_async(url.as_str()).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                tally.connect_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("soak connect failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (mut sink, mut stream) = ws.split();
        if sink
            .send(Message::text(r#"{"type":"subscribe_assignments"}"#))
            .await
            .is_err()
        {
            tally.unexpected_closes.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let hang_up = next_reconnect.min(end);
        let mut ping = tokio::time::interval(Duration::from_secs(45));
        let mut planned = false;
        loop {
            let message = tokio::select! {
                _ = tokio::time::sleep_until(hang_up.into()) => {
                    planned = true;
                    break;
                }
                _ = ping.tick() => {
                    let _ = sink.send(Message::text(r#"{"type":"ping"}"#)).await;
                    continue;
                }
                message = stream.next() => message,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    tally.unexpected_closes.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => continue,
            };
            let Ok(message) = serde_json::from_str::<Value>(&text) else {
                tally.error(format!("not JSON: {text}"));
                continue;
            };
            match message["type"].as_str().unwrap_or("") {
                "new_assignment" => {
                    let id = message["assignment"]["id"].as_i64().unwrap_or(0);
                    let first_time = tally.delivered.lock().unwrap().insert(id);
                    if first_time && accepts(id) {
                        let accept = json!({"type": "accept_assignment", "assignmentId": id});
                        let _ = sink.send(Message::text(accept.to_string())).await;
                    }
                }
                "assignment_accepted" => {
                    tally.accepted.fetch_add(1, Ordering::Relaxed);
                }
                "assignment_expired" => {
                    tally.expired_pushes.fetch_add(1, Ordering::Relaxed);
                }
                "error" if message["code"] == "assignment_not_pending" => {
                    tally.late_accepts.fetch_add(1, Ordering::Relaxed);
                }
                "connected"
                | "auth_success"
                | "subscribed_assignments"
                | "pong"
                | "order_status_update" => {}
                _ => tally.error(format!("unexpected message: {text}")),
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        if planned {
            next_reconnect += period;
            if Instant::now() < end {
                tally.reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
