//! Cascades: how long a dispatch takes to offer the order to the next candidate, after the
//! current one rejects (from his reject leaving the phone to the next offer reaching the next
//! phone) and after his offer expires (from the deadline to the next offer reaching the phone).

use std::time::Duration;

use dispatcher::{domain::Role, wire::auth::JwtKeys};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::{
    fleet::unix_us,
    report::{Goal, Report},
    scenarios::{Opts, service_token},
    target::Target,
};

const REJECT_ROUNDS: i64 = 200;
/// Dispatches started at once whose first offers all expire together.
const EXPIRY_ROUNDS: i64 = 100;
const FIRST: i64 = 1;
const NEXT: i64 = 2;

/// A subscribed master: frames in with their arrival time (µs), frames out.
struct Phone {
    incoming: mpsc::UnboundedReceiver<(u64, Value)>,
    outgoing: mpsc::UnboundedSender<Value>,
}

impl Phone {
    async fn connect(target: &Target, keys: &JwtKeys, master_id: i64) -> Phone {
        let token = keys.mint(1000 + master_id, Role::Master, Some(master_id), 3600);
        let (ws, _) = connect_async(format!("ws://{}/ws?token={token}", target.addr))
            .await
            .expect("a master connects");
        let (mut sink, mut stream) = ws.split();
        let (in_tx, incoming) = mpsc::unbounded_channel();
        let (outgoing, mut out_rx) = mpsc::unbounded_channel::<Value>();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message {
                    let at = unix_us();
                    if let Ok(value) = serde_json::from_str(&text) {
                        let _ = in_tx.send((at, value));
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some(value) = out_rx.recv().await {
                if sink.send(Message::text(value.to_string())).await.is_err() {
                    break;
                }
            }
        });
        let phone = Phone { incoming, outgoing };
        phone.send(json!({"type": "subscribe_assignments"}));
        phone
    }

    fn send(&self, value: Value) {
        let _ = self.outgoing.send(value);
    }

    /// The next `new_assignment`, with when it arrived (µs).
    async fn offer(&mut self) -> (u64, Value) {
        loop {
            let (at, value) = tokio::time::timeout(Duration::from_secs(10), self.incoming.recv())
                .await
                .expect("an offer within 10 s")
                .expect("the connection is open");
            if value["type"] == "new_assignment" {
                return (at, value);
            }
        }
    }
}

pub async fn cascade(opts: &Opts, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let target = match opts.addr {
        Some(addr) => Target::external(addr, opts.server_pid),
        None => Target::dispatcher(dir.path(), &opts.jwt_secret, &[]).await,
    };
    let keys = JwtKeys::new(&opts.jwt_secret);
    let token = service_token(opts);
    let http = reqwest::Client::new();
    for master in [FIRST, NEXT] {
        let url = target.http(&format!("/api/v1/masters/{master}/shift"));
        let shift = http
            .put(url)
            .bearer_auth(&token)
            .json(&json!({"onShift": true}));
        assert!(shift.send().await.unwrap().status().is_success());
    }
    let mut first = Phone::connect(&target, &keys, FIRST).await;
    let mut next = Phone::connect(&target, &keys, NEXT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let start = |order: i64, ttl: u64| {
        let (http, token) = (http.clone(), token.clone());
        let order_url = target.http(&format!("/api/v1/orders/{order}"));
        let dispatch_url = target.http(&format!("/api/v1/orders/{order}/dispatch"));
        async move {
            let body = json!({"clientUserId": 7, "address": "Lenina 1", "deviceType": "washer", "problem": "leaks"});
            let put = http.put(order_url).bearer_auth(&token).json(&body);
            assert!(put.send().await.unwrap().status().is_success());
            let body = json!({"candidates": [FIRST, NEXT], "ttlSeconds": ttl});
            let started = http.post(dispatch_url).bearer_auth(&token).json(&body);
            assert_eq!(started.send().await.unwrap().status().as_u16(), 201);
        }
    };

    let mut after_reject = Histogram::<u64>::new(3).unwrap();
    for order in 1..=REJECT_ROUNDS {
        start(order, 60).await;
        let (_, offer) = first.offer().await;
        let rejected_at = unix_us();
        first.send(json!({"type": "reject_assignment", "assignmentId": offer["assignment"]["id"]}));
        let (arrived, _) = next.offer().await;
        after_reject
            .record(arrived.saturating_sub(rejected_at))
            .unwrap();
    }

    let orders = REJECT_ROUNDS + 1..=REJECT_ROUNDS + EXPIRY_ROUNDS;
    futures_util::future::join_all(orders.map(|order| start(order, 1))).await;
    let mut deadlines = std::collections::HashMap::new();
    for _ in 0..EXPIRY_ROUNDS {
        let (_, offer) = first.offer().await;
        let deadline = chrono::DateTime::parse_from_rfc3339(
            offer["assignment"]["expiresAt"].as_str().unwrap(),
        )
        .unwrap()
        .timestamp_micros() as u64;
        deadlines.insert(offer["assignment"]["orderId"].as_i64().unwrap(), deadline);
    }
    let mut after_expiry = Histogram::<u64>::new(3).unwrap();
    for _ in 0..EXPIRY_ROUNDS {
        let (arrived, offer) = next.offer().await;
        let order = offer["assignment"]["orderId"].as_i64().unwrap();
        after_expiry
            .record(arrived.saturating_sub(deadlines[&order]))
            .unwrap();
    }

    report.add(
        "cascade",
        "next offers after a reject",
        after_reject.len() as f64,
        "",
        Goal::AtLeast(REJECT_ROUNDS as f64),
    );
    report.add(
        "cascade",
        "next offers after an expiry",
        after_expiry.len() as f64,
        "",
        Goal::AtLeast(EXPIRY_ROUNDS as f64),
    );
    for (label, hist) in [
        ("after a reject", &after_reject),
        (
            &*format!("after {EXPIRY_ROUNDS} expire at once"),
            &after_expiry,
        ),
    ] {
        for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
            report.add(
                "cascade",
                &format!("next offer {label}, {name}"),
                hist.value_at_quantile(q) as f64 / 1000.0,
                "ms",
                Goal::AtMost(50.0),
            );
        }
    }
}
