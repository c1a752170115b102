//! Cluster mode: `dispatcher` processes on one PostgreSQL database and a Redis of the test's own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

async fn cluster(nodes: usize) -> Option<Cluster> {
    if !redis_available() {
        return None;
    }
    let db = Db::postgres()?;
    Some(Cluster::start(Storage::new(db), nodes).await)
}

/// Messages of one type until `quiet` passes with none.
async fn collect(ws: &mut WsClient, kind: &str, quiet: Duration) -> Vec<Value> {
    let mut found = Vec::new();
    while let Some(message) = ws.recv_within(quiet).await {
        if message["type"] == kind {
            found.push(message);
        }
    }
    found
}

#[tokio::test]
async fn an_offer_made_through_one_node_reaches_a_master_on_another() {
    let Some(c) = cluster(3).await else { return };
    let mut on_a = c.subscribed_master(0, 3).await;
    let mut on_c = c.subscribed_master(2, 3).await;
    c.put_order(1, 10, 7).await;

    let (id, delivered) = c.offer(1, 10, 3, 60).await;

    assert_eq!(
        delivered, 0,
        "delivered counts the connections of the node that was asked"
    );
    for ws in [&mut on_a, &mut on_c] {
        let offer = ws.recv_type("new_assignment").await;
        assert_eq!(offer["assignment"]["id"], id);
        assert_eq!(offer["assignment"]["address"], "Lenina 10");
        assert!(offer["assignment"].get("clientName").is_none());
        ws.expect_silence(Duration::from_millis(300)).await;
    }
    // An offer made on the master's own node counts him.
    c.put_order(0, 11, 7).await;
    let (_, delivered) = c.offer(0, 11, 3, 60).await;
    assert_eq!(delivered, 1);
    on_a.recv_type("new_assignment").await;
    on_c.recv_type("new_assignment").await;
}

#[tokio::test]
async fn a_push_made_through_one_node_reaches_the_users_on_every_node() {
    let Some(c) = cluster(3).await else { return };
    let mut on_a =
        WsClient::connect(&c.ws_url(0, &format!("/ws?token={}", client_token(7))), &[]).await;
    let mut on_c =
        WsClient::connect(&c.ws_url(2, &format!("/ws?token={}", client_token(7))), &[]).await;
    for ws in [&mut on_a, &mut on_c] {
        ws.recv_type("connected").await;
        ws.recv_type("auth_success").await;
    }
    let body =
        json!({"userIds": [7], "type": "new_message", "payload": {"chatId": 12, "text": "hi"}});
    let (status, answer) = c
        .call(
            1,
            Method::POST,
            "/api/v1/push",
            &service_token(),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        answer["delivered"], 0,
        "delivered counts the node that was asked"
    );
    for ws in [&mut on_a, &mut on_c] {
        let message = ws.recv_type("new_message").await;
        assert_eq!(
            message,
            json!({"type": "new_message", "chatId": 12, "text": "hi"})
        );
        ws.expect_silence(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn an_accept_on_one_node_cancels_the_rival_offer_on_another_and_tells_the_client_on_a_third()
{
    let Some(c) = cluster(3).await else { return };
    let mut winner = c.subscribed_master(0, 3).await;
    let mut rival = c.subscribed_master(2, 4).await;
    let mut client =
        WsClient::connect(&c.ws_url(1, &format!("/ws?token={}", client_token(7))), &[]).await;
    client.recv_type("connected").await;
    client.recv_type("auth_success").await;
    let mut listeners = vec![
        c.event_listener(0).await,
        c.event_listener(1).await,
        c.event_listener(2).await,
    ];
    c.put_order(1, 10, 7).await;
    let (won, _) = c.offer(1, 10, 3, 60).await;
    let (lost, _) = c.offer(2, 10, 4, 60).await;
    winner.recv_type("new_assignment").await;
    rival.recv_type("new_assignment").await;

    winner
        .send(json!({"type": "accept_assignment", "assignmentId": won}))
        .await;
    let mut replies = vec![winner.recv().await, winner.recv().await];
    replies.sort_by_key(|m| m["type"].as_str().unwrap().to_string());
    assert_eq!(replies[0]["type"], "assignment_accepted", "{replies:?}");
    assert_eq!(replies[0]["order"]["clientPhone"], Value::Null);
    assert_eq!(replies[1]["type"], "order_status_update");

    let cancelled = rival.recv_type("assignment_cancelled").await;
    assert_eq!(
        (
            cancelled["assignmentId"].clone(),
            cancelled["orderId"].clone()
        ),
        (json!(lost), json!(10))
    );
    let update = client.recv_type("order_status_update").await;
    assert_eq!(
        (update["orderId"].clone(), update["status"].clone()),
        (json!(10), json!("assigned"))
    );

    for listener in &mut listeners {
        let events = collect(listener, "assignment_event", Duration::from_millis(800)).await;
        // An offer made just as its master subscribed on another node may be told undelivered
        // (presence is at most a heartbeat old); that is no decision.
        let seen: Vec<(Value, Value)> = events
            .iter()
            .filter(|e| e["event"] != "undelivered")
            .map(|e| (e["assignmentId"].clone(), e["event"].clone()))
            .collect();
        assert_eq!(seen.len(), 2, "each decision once: {seen:?}");
        assert!(seen.contains(&(json!(won), json!("accepted"))), "{seen:?}");
        assert!(
            seen.contains(&(json!(lost), json!("cancelled"))),
            "{seen:?}"
        );
    }
}

#[tokio::test]
async fn stats_are_equal_on_every_node_and_list_every_connection_with_its_node() {
    let Some(c) = cluster(3).await else { return };
    let _three = c.subscribed_master(0, 3).await;
    let _four = c.subscribed_master(1, 4).await;
    let _five = c.subscribed_master(2, 5).await;
    let _anonymous = WsClient::connect(&c.ws_url(2, "/ws"), &[]).await;

    // Each node's presence reaches Redis with its next heartbeat (every 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    let all = loop {
        let all = join_all((0..3).map(|i| c.stats(i))).await;
        if all
            .iter()
            .all(|s| s["subscriptions"].as_array().unwrap().len() == 3 && s["totalConnected"] == 4)
        {
            break all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stats never converged: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rows: Vec<(Value, Value)> = all[0]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["masterId"].clone(), r["node"].clone()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (json!(3), json!("a")),
            (json!(4), json!("b")),
            (json!(5), json!("c"))
        ]
    );
    for stats in &all {
        assert_eq!(stats["subscriptions"], all[0]["subscriptions"]);
        assert_eq!(stats["totalSubscribed"], 3);
        assert_eq!(stats["activeSubscriptions"], 3);
        let nodes: Vec<(Value, Value)> = stats["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].clone(), n["connections"].clone()))
            .collect();
        assert_eq!(
            nodes,
            vec![
                (json!("a"), json!(1)),
                (json!("b"), json!(1)),
                (json!("c"), json!(2))
            ]
        );
        for node in stats["nodes"].as_array().unwrap() {
            assert!(node["lastSeen"].as_str().unwrap().ends_with('Z'), "{node}");
        }
    }
}

#[tokio::test]
async fn a_killed_node_loses_no_expiry_and_leaves_the_stats() {
    let Some(mut c) = cluster(3).await else {
        return;
    };
    let mut master = c.subscribed_master(1, 3).await;
    c.put_order(0, 10, 7).await;
    let (id, _) = c.offer(0, 10, 3, 3).await;
    let offer = master.recv_type("new_assignment").await;
    let expires_at: DateTime<Utc> = offer["assignment"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        c.stats(1).await["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "a")
    );

    // kill -9 of the node that made the offer.
    let mut dead = c.nodes.remove(0);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();

    let expired = master
        .recv_within(Duration::from_secs(6))
        .await
        .unwrap_or_else(|| panic!("the offer expires although its node died; b: {}", c.log(0)));
    let late = Utc::now() - expires_at;
    assert_eq!(expired["type"], "assignment_expired", "{expired}");
    assert_eq!(expired["assignmentId"], id);
    assert!(
        late <= chrono::Duration::milliseconds(1000),
        "{late} after expiresAt"
    );
    let stored = c
        .call(
            0,
            Method::GET,
            &format!("/api/v1/assignments/{id}"),
            &admin_token(),
            None,
        )
        .await
        .1;
    assert_eq!(stored["status"], "expired");

    // The dead node's presence lapses within its 15 s TTL.
    let deadline = std::time::Instant::now() + Duration::from_secs(17);
    loop {
        let stats = c.stats(0).await;
        if !stats["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "a")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node a never left the stats: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn while_redis_is_down_changes_arrive_from_the_database_and_after_it_nothing_twice() {
    let Some(mut c) = cluster(2).await else {
        return;
    };
    let mut master = c.subscribed_master(0, 3).await;
    c.put_order(1, 10, 7).await;
    c.put_order(1, 11, 7).await;
    c.put_order(1, 12, 7).await;
    let (before, _) = c.offer(1, 10, 3, 60).await;
    assert_eq!(
        master.recv_type("new_assignment").await["assignment"]["id"],
        before
    );

    c.redis.kill();
    c.wait_redis(0, "down").await;
    let (status, health) = c.health(0).await;
    assert_eq!(
        (status, health["status"].clone()),
        (StatusCode::OK, json!("degraded"))
    );
    let (during, _) = c.offer(1, 11, 3, 60).await;
    let cancel = format!("/api/v1/assignments/{before}/cancel");
    let (status, _) = c
        .call(1, Method::POST, &cancel, &service_token(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Both changes were made on node b and live only in the database: node a reads them back.
    let mut caught_up = Vec::new();
    for _ in 0..2 {
        caught_up.push(
            master
                .recv_within(Duration::from_secs(4))
                .await
                .expect("what happens while Redis is down arrives from the database"),
        );
    }
    caught_up.sort_by_key(|m| m["type"].as_str().unwrap().to_string());
    assert_eq!(
        caught_up[0]["type"], "assignment_cancelled",
        "{caught_up:?}"
    );
    assert_eq!(caught_up[0]["assignmentId"], before);
    assert_eq!(caught_up[1]["type"], "new_assignment");
    assert_eq!(caught_up[1]["assignment"]["id"], during);

    c.redis.restart();
    c.wait_redis(0, "ok").await;
    c.wait_redis(1, "ok").await;
    // The gap's recovery and the publishes retried sends nothing a second time.
    master.expect_silence(Duration::from_secs(3)).await;
    let (after, _) = c.offer(1, 12, 3, 60).await;
    let next = master.recv_type("new_assignment").await;
    assert_eq!(next["assignment"]["id"], after, "{}", c.log(0));
    master.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_offer_made_on_a_node_cut_from_redis_reaches_a_master_on_another_from_the_database() {
    if !redis_available() {
        return;
    }
    let Some(db) = Db::postgres() else { return };
    let proxy = std::sync::OnceLock::new();
    let c = Cluster::start_via(Storage::new(db), 2, |i, url| {
        if i == 0 {
            return url.to_string();
        }
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let cut = proxy.get_or_init(|| FlakyProxy::start(([127, 0, 0, 1], port).into(), true));
        format!("redis://127.0.0.1:{}", cut.port)
    })
    .await;
    let proxy = proxy.get().unwrap();
    let mut master = c.subscribed_master(0, 3).await;
    c.put_order(1, 10, 7).await;

    // Only node b loses Redis; node a's subscription never breaks, so it sees no gap.
    proxy.down();
    c.wait_redis(1, "down").await;
    let (cut_off, _) = c.offer(1, 10, 3, 60).await;
    let reached = master
        .recv_within(Duration::from_secs(4))
        .await
        .expect("node a reads the offer from the database within its catch-up");
    assert_eq!(reached["type"], "new_assignment");
    assert_eq!(reached["assignment"]["id"], cut_off);
    assert_eq!(c.health(0).await.1["redis"], "ok");

    // Once node b is back, nothing arrives twice.
    proxy.up();
    c.wait_redis(1, "ok").await;
    master.expect_silence(Duration::from_secs(3)).await;
}

/// A node that committed and died before publishing leaves rows no other node heard of: an
/// offer, then a decision. The live node reads both back and tells its master each once.
#[tokio::test]
async fn what_a_dead_node_committed_but_never_published_reaches_the_masters_of_the_live_one() {
    let Some(c) = cluster(1).await else { return };
    c.put_order(0, 10, 7).await;
    let mut master = c.subscribed_master(0, 3).await;

    let now = Utc::now().timestamp_millis();
    c.storage.execute(&format!(
        "INSERT INTO assignments (id, order_id, master_id, status, created_at, expires_at) \
         VALUES (4242, 10, 3, 'pending', {now}, {})",
        now + 60_000
    ));
    let offered = master
        .recv_within(Duration::from_secs(4))
        .await
        .expect("the unpublished offer is read back");
    assert_eq!(offered["type"], "new_assignment");
    assert_eq!(offered["assignment"]["id"], 4242);

    let decided = Utc::now().timestamp_millis();
    c.storage.execute(&format!(
        "UPDATE assignments SET status = 'cancelled', decided_at = {decided} WHERE id = 4242"
    ));
    let told = master
        .recv_within(Duration::from_secs(4))
        .await
        .expect("the unpublished decision is read back");
    assert_eq!(told["type"], "assignment_cancelled");
    assert_eq!(told["assignmentId"], 4242);
    master.expect_silence(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn concurrent_accepts_through_all_nodes_decide_exactly_once() {
    let Some(c) = cluster(3).await else { return };
    let mut listeners = vec![
        c.event_listener(0).await,
        c.event_listener(1).await,
        c.event_listener(2).await,
    ];
    let mut assignments = Vec::new();
    for order in 0..5 {
        c.put_order(order % 3, 100 + order as i64, 7).await;
        assignments.push(c.offer(order % 3, 100 + order as i64, 3, 60).await.0);
    }
    let token = master_token(3);
    for &id in &assignments {
        let path = format!("/api/v1/assignments/{id}/accept");
        let tries = (0..6).map(|i| c.call(i % 3, Method::POST, &path, &token, None));
        let statuses: Vec<StatusCode> = join_all(tries).await.into_iter().map(|(s, _)| s).collect();
        assert_decided_once(&statuses);
    }
    for listener in &mut listeners {
        let events = collect(listener, "assignment_event", Duration::from_millis(800)).await;
        let mut accepted: Vec<i64> = events
            .iter()
            .filter(|e| e["event"] == "accepted")
            .map(|e| e["assignmentId"].as_i64().unwrap())
            .collect();
        accepted.sort_unstable();
        assert_eq!(
            accepted, assignments,
            "every accept seen once on every node"
        );
    }
}

#[test]
fn cluster_mode_refuses_sqlite_and_a_missing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let run = |vars: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dispatcher"))
            .current_dir(dir.path())
            .env_clear()
            .envs(vars.iter().copied())
            .output()
            .expect("the binary runs")
    };
    let sqlite = run(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("DATABASE_URL", "x.db"),
        ("JWT_SECRET", "a-secret-that-is-long-enough-for-hs256"),
    ]);
    let said = String::from_utf8_lossy(&sqlite.stderr);
    assert!(!sqlite.status.success());
    assert!(
        said.contains("REDIS_URL") && said.contains("DATABASE_URL"),
        "{said}"
    );

    let no_secret = run(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("DATABASE_URL", "postgres://u@127.0.0.1:1/d"),
    ]);
    let said = String::from_utf8_lossy(&no_secret.stderr);
    assert!(!no_secret.status.success());
    assert!(
        said.contains("REDIS_URL") && said.contains("JWT_SECRET"),
        "{said}"
    );
    assert!(!dir.path().join("data").exists(), "no secret was generated");
}

#[tokio::test]
async fn a_dispatch_steps_once_across_nodes_that_all_expire_its_offers() {
    let Some(c) = cluster(3).await else { return };
    let mut listeners = vec![
        c.event_listener(0).await,
        c.event_listener(1).await,
        c.event_listener(2).await,
    ];
    let mut masters = [
        c.subscribed_master(0, 3).await,
        c.subscribed_master(1, 5).await,
        c.subscribed_master(2, 8).await,
    ];
    c.put_order(0, 10, 7).await;
    let body = json!({"candidates": [3, 5, 8], "ttlSeconds": 1, "skipOffline": false});
    let (status, created) = c
        .call(
            1,
            Method::POST,
            "/api/v1/orders/10/dispatch",
            &service_token(),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["dispatch"]["id"].clone();

    // 3 rejects through node 0; the next offers expire while every node watches their deadlines.
    let offer = masters[0].recv_type("new_assignment").await;
    let rejected = offer["assignment"]["id"].as_i64().unwrap();
    masters[0]
        .send(json!({"type": "reject_assignment", "assignmentId": rejected}))
        .await;
    for (i, listener) in listeners.iter_mut().enumerate() {
        let ended = listener.recv_skipping_to("dispatch_event").await;
        assert_eq!(
            (ended["event"].clone(), ended["dispatchId"].clone()),
            (json!("exhausted"), id.clone()),
            "node {i}: {}",
            c.log(i)
        );
    }
    for (i, master) in masters.iter_mut().enumerate() {
        let offers = collect(master, "new_assignment", Duration::from_millis(800)).await;
        let read_already = usize::from(i == 0);
        assert_eq!(
            offers.len() + read_already,
            1,
            "master on node {i}: {offers:?}"
        );
    }
    for listener in &mut listeners {
        let more = collect(listener, "dispatch_event", Duration::from_millis(300)).await;
        assert!(more.is_empty(), "{more:?}");
    }
    let (status, seen) = c
        .call(
            2,
            Method::GET,
            &format!("/api/v1/dispatches/{id}"),
            &admin_token(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let candidates = seen["dispatch"]["candidates"].as_array().unwrap();
    let outcomes: Vec<&str> = candidates
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["rejected", "expired", "expired"]);
    let mut offers: Vec<i64> = candidates
        .iter()
        .map(|c| c["assignmentId"].as_i64().unwrap())
        .collect();
    offers.dedup();
    assert_eq!(offers.len(), 3, "one offer per candidate: {seen}");
}

/// An offer that no node's connection acknowledges is told `undelivered` once, cluster-wide, after
/// `UNDELIVERED_AFTER_SECS` (5); one to a master subscribed on no node is told at once.
#[tokio::test]
async fn an_offer_no_connection_acknowledges_is_told_undelivered_once_across_nodes() {
    let Some(c) = cluster(3).await else { return };
    let mut listeners = vec![
        c.event_listener(0).await,
        c.event_listener(1).await,
        c.event_listener(2).await,
    ];
    // Subscribed on node 1 without acks: the offer reaches him, but nothing acknowledges it.
    let mut master = c.subscribed_master(1, 3).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    while !c.stats(0).await["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["masterId"] == 3)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "node 0 never saw master 3"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.put_order(0, 10, 7).await;
    c.put_order(0, 11, 7).await;
    let made = std::time::Instant::now();
    let (id, _) = c.offer(0, 10, 3, 60).await;
    master.recv_type("new_assignment").await;
    for (i, listener) in listeners.iter_mut().enumerate() {
        let event = listener
            .recv_within(Duration::from_secs(10))
            .await
            .expect("undelivered in time");
        assert_eq!(
            (&event["event"], &event["assignmentId"]),
            (&json!("undelivered"), &json!(id)),
            "node {i}: {event}"
        );
        assert!(
            made.elapsed() >= Duration::from_millis(4_500),
            "told after {:?}",
            made.elapsed()
        );
    }
    for listener in &mut listeners {
        listener.expect_silence(Duration::from_millis(1_500)).await;
    }

    // Master 9 has no connection anywhere: told at once, through whichever node.
    let made = std::time::Instant::now();
    let (nobodys, _) = c.offer(2, 11, 9, 60).await;
    for (i, listener) in listeners.iter_mut().enumerate() {
        let event = listener.recv().await;
        assert_eq!(
            (&event["event"], &event["assignmentId"]),
            (&json!("undelivered"), &json!(nobodys)),
            "node {i}: {event}"
        );
    }
    assert!(
        made.elapsed() < Duration::from_secs(3),
        "told after {:?}",
        made.elapsed()
    );
    for listener in &mut listeners {
        listener.expect_silence(Duration::from_millis(1_000)).await;
    }
}

#[tokio::test]
async fn each_node_reports_its_backplane_in_its_metrics() {
    let Some(c) = cluster(2).await else { return };
    c.put_order(0, 10, 7).await;
    c.offer(0, 10, 3, 60).await;
    let scrape = |i: usize| {
        let c = &c;
        async move {
            let (status, text) = c.get_text(i, "/metrics", &admin_token()).await;
            assert_eq!(status, StatusCode::OK);
            crate::metrics::parse(&text)
        }
    };
    let mut received = 0.0;
    for _ in 0..50 {
        let seen = scrape(1).await;
        received = crate::metrics::value(
            &seen,
            "dispatcher_backplane_events_total",
            &[("direction", "in")],
        );
        if received >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(received >= 1.0, "the offer reached node 1: {received}");
    let sender = scrape(0).await;
    assert_eq!(
        crate::metrics::value(&sender, "dispatcher_backplane_up", &[]),
        1.0
    );
    assert!(
        crate::metrics::value(
            &sender,
            "dispatcher_backplane_events_total",
            &[("direction", "out")]
        ) >= 1.0
    );
    assert_eq!(
        crate::metrics::value(
            &sender,
            "dispatcher_offers_total",
            &[("outcome", "created")]
        ),
        1.0
    );
    // Offers are counted by the node that made them, so the sum over nodes counts each once.
    let other = scrape(1).await;
    assert_eq!(
        crate::metrics::value(&other, "dispatcher_offers_total", &[("outcome", "created")]),
        0.0
    );
}

/// `<hex HMAC-SHA256>.<json>`, as a node signs what it publishes, with `secret`.
fn signed_with(secret: &str, message: &Value) -> String {
    use hmac::Mac;
    let json = message.to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(json.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex}.{json}")
}

fn redis_cli(c: &Cluster, args: &[&str]) {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &c.redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What anyone who can publish on the channel might send: no signature, another secret's, a stale
/// one, garbage, and values that would wrap the expiry timer. None of it is acted on.
#[tokio::test]
async fn forged_and_corrupt_backplane_messages_are_counted_and_never_acted_on() {
    let Some(c) = cluster(1).await else { return };
    c.put_order(0, 10, 7).await;
    c.put_order(0, 11, 7).await;
    let mut master = c.subscribed_master(0, 3).await;
    let (real, _) = c.offer(0, 11, 3, 2).await;
    master.recv_type("new_assignment").await;

    let now = Utc::now().timestamp_millis();
    let offered = |expires_at: i64| {
        json!({"kind": "offered", "assignmentId": 999, "orderId": 10, "masterId": 3,
               "address": "forged", "deviceType": "x", "problem": "x",
               "createdAt": now, "expiresAt": expires_at})
    };
    let envelope =
        |at: i64, events: Value| json!({"v": 2, "node": "evil", "at": at, "events": events});
    let cancel_real = json!({"kind": "decided", "assignmentId": real, "orderId": 11,
                             "masterId": 3, "outcome": "cancelled", "at": now, "offeredAt": now});
    let forged = [
        envelope(now, json!([offered(now + 60_000)])).to_string(),
        envelope(now, json!([cancel_real])).to_string(),
        json!({"v": 1, "node": "evil", "events": [offered(now + 60_000)]}).to_string(),
        json!({"v": 1, "node": "evil", "events": [offered(i64::MIN)]}).to_string(),
        "garbage".to_string(),
        signed_with(
            "another-cluster-secret-0123456789",
            &envelope(now, json!([offered(now + 60_000)])),
        ),
        signed_with(
            CLUSTER_SECRET,
            &envelope(now - 120_000, json!([cancel_real])),
        ),
        signed_with(CLUSTER_SECRET, &envelope(now, json!([offered(i64::MIN)]))),
        signed_with(
            CLUSTER_SECRET,
            &envelope(
                now,
                json!([{"kind": "pushed", "userIds": [1003], "type": "new_assignment",
                                   "payload": {"assignment": {"id": 999}}}]),
            ),
        ),
    ];
    for payload in &forged {
        redis_cli(&c, &["PUBLISH", "dispatcher:events", payload]);
    }

    // The forged offer and push never reach the master; the real offer is neither cancelled nor
    // left pending: it expires at its deadline, so the timer survived.
    let expired = master.recv_type("assignment_expired").await;
    assert_eq!(expired["assignmentId"], real);
    master.expect_silence(Duration::from_millis(300)).await;

    let (status, text) = c.get_text(0, "/metrics", &admin_token()).await;
    assert_eq!(status, StatusCode::OK);
    let seen = crate::metrics::parse(&text);
    let rejected = |reason: &str| {
        crate::metrics::value(
            &seen,
            "dispatcher_backplane_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected("unsigned"), 5.0, "{text}");
    assert_eq!(rejected("signature"), 1.0);
    assert_eq!(rejected("stale"), 1.0);
    assert_eq!(rejected("invalid"), 2.0);
    let log = c.log(0);
    assert_eq!(
        log.matches("dropped a cluster message (not signed)")
            .count(),
        1,
        "one line a minute for each reason"
    );
}

/// A presence key that no node signed adds no node, and no connection, to the stats.
#[tokio::test]
async fn a_forged_presence_adds_nothing_to_the_stats() {
    let Some(c) = cluster(1).await else { return };
    let now = Utc::now().timestamp_millis();
    let ghost = |id: &str| {
        json!({"id": id, "connections": 5000, "byRole": {"master": 5000}, "lastSeen": now,
               "masters": [{"userId": 1003, "masterId": 3, "subscribed": true, "lastPing": now}]})
    };
    let unsigned = ghost("ghost").to_string();
    let wrongly_signed = signed_with("another-cluster-secret-0123456789", &ghost("phantom"));
    redis_cli(&c, &["SET", "dispatcher:node:ghost", &unsigned]);
    redis_cli(&c, &["SET", "dispatcher:node:phantom", &wrongly_signed]);
    redis_cli(&c, &["SADD", "dispatcher:nodes", "ghost", "phantom"]);

    let stats = c.stats(0).await;
    let nodes: Vec<&str> = stats["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["a"], "{stats}");
    assert_eq!(stats["totalConnected"], 0);
    assert_eq!(stats["totalSubscribed"], 0);
}
