//! Pushes: how long until the last of many users' connections has one push, for one request to
//! 1,000 users and for 10 requests that together reach 10,000.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use dispatcher::{domain::Role, wire::auth::JwtKeys};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::{
    fleet::unix_us,
    report::{Goal, Report},
    scenarios::{Opts, service_token},
    target::Target,
};

const ROUNDS: usize = 20;
const USERS_PER_REQUEST: usize = 1_000;

/// Per round: how many connections have the push, and when the last one got it.
struct Arrivals {
    count: Vec<AtomicU64>,
    last_us: Vec<AtomicU64>,
}

pub async fn push(opts: &Opts, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let target = match opts.addr {
        Some(addr) => Target::external(addr, opts.server_pid),
        None => Target::dispatcher(dir.path(), &opts.jwt_secret, &[]).await,
    };
    let users = opts.connections.max(USERS_PER_REQUEST);
    let arrivals = Arc::new(Arrivals {
        count: (0..2 * ROUNDS).map(|_| AtomicU64::new(0)).collect(),
        last_us: (0..2 * ROUNDS).map(|_| AtomicU64::new(0)).collect(),
    });
    let keys = JwtKeys::new(&opts.jwt_secret);
    let connected = futures_util::stream::iter(1..=users as i64)
        .map(|user| {
            let token = keys.mint(user, Role::Client, None, 3600);
            hold(target.addr, token, arrivals.clone())
        })
        .buffer_unordered(opts.concurrency)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    report.add(
        "push",
        "connect failures",
        (users - connected) as f64,
        "",
        Goal::AtMost(0.0),
    );

    let token = service_token(opts);
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/push", target.addr);
    for (first_round, requests) in [(0, 1), (ROUNDS, users / USERS_PER_REQUEST)] {
        let reached = requests * USERS_PER_REQUEST;
        let label = format!("{reached} users in {requests} request(s)");
        let mut hist = Histogram::<u64>::new(3).unwrap();
        for round in first_round..first_round + ROUNDS {
            let started = unix_us();
            let sends = (0..requests).map(|r| {
                let ids: Vec<usize> =
                    (r * USERS_PER_REQUEST + 1..=(r + 1) * USERS_PER_REQUEST).collect();
                let body =
                    json!({"userIds": ids, "type": "bench_push", "payload": {"round": round}});
                http.post(&url).bearer_auth(&token).json(&body).send()
            });
            for sent in futures_util::future::join_all(sends).await {
                if !sent.is_ok_and(|r| r.status().is_success()) {
                    eprintln!("a push was refused");
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while (arrivals.count[round].load(Ordering::Acquire) as usize) < reached
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let got = arrivals.count[round].load(Ordering::Acquire) as usize;
            if got < reached {
                eprintln!("round {round}: {got} of {reached} connections got the push");
                continue;
            }
            let last = arrivals.last_us[round].load(Ordering::Acquire);
            hist.record(last.saturating_sub(started)).unwrap();
        }
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        report.add(
            "push",
            &format!("{label}: last has it, p50"),
            ms(0.5),
            "ms",
            Goal::None,
        );
        report.add(
            "push",
            &format!("{label}: last has it, p99"),
            ms(0.99),
            "ms",
            Goal::None,
        );
        report.add(
            "push",
            &format!("{label}: rounds complete"),
            hist.len() as f64,
            "",
            Goal::AtLeast(ROUNDS as f64),
        );
        if requests * USERS_PER_REQUEST >= users {
            break;
        }
    }
}

/// Connects one user and records when each push round reaches it; answers whether it connected.
async fn hold(server: SocketAddr, token: String, arrivals: Arc<Arrivals>) -> bool {
    let Ok((ws, _)) = connect_async(format!("ws://{server}/ws?token={token}")).await else {
        return false;
    };
    let (_sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let _sink = _sink;
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let Some(at) = text.find("\"round\":") else {
                continue;
            };
            let digits: String = text[at + 8..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let Ok(round) = digits.parse::<usize>() else {
                continue;
            };
            if let (Some(count), Some(last)) =
                (arrivals.count.get(round), arrivals.last_us.get(round))
            {
                last.fetch_max(unix_us(), Ordering::AcqRel);
                count.fetch_add(1, Ordering::AcqRel);
            }
        }
    });
    true
}
