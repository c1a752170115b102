//! The verdict: the database and every client's log, checked against the promise. Each check
//! counts its violations.

use std::collections::{HashMap, HashSet};

use diesel::{
    Connection, QueryableByName, RunQueryDsl, sql_types::BigInt, sql_types::Nullable,
    sql_types::Text,
};

use super::History;

/// How long after a decision a master still connected must have been told of it.
const TELL_WITHIN_MS: i64 = 3_000;

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = BigInt)]
    master_id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = BigInt)]
    expires_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    decided_at: Option<i64>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub struct Verdict {
    pub checks: Vec<(&'static str, usize)>,
    pub offers: usize,
    pub decided: usize,
}

pub fn check(
    database_url: &str,
    history: &History,
    health: &[(String, Option<u16>)],
    sweep_ms: i64,
) -> Verdict {
    let mut conn = diesel::PgConnection::establish(database_url).expect("the run's database");
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT id, order_id, master_id, status, created_at, expires_at, decided_at \
         FROM assignments ORDER BY id",
    )
    .load(&mut conn)
    .expect("assignments");
    let now =
        diesel::sql_query("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS n")
            .get_result::<Count>(&mut conn)
            .expect("the database's clock")
            .n;
    let running_dispatches =
        diesel::sql_query("SELECT COUNT(*) AS n FROM dispatches WHERE status = 'running'")
            .get_result::<Count>(&mut conn)
            .expect("dispatches")
            .n as usize;

    let mut count = |sql: &str| -> i64 {
        diesel::sql_query(sql)
            .get_result::<Count>(&mut conn)
            .map(|c| c.n)
            .unwrap_or(-1)
    };
    println!(
        "chaos: the database holds {} orders, {} assignments, {} dispatches",
        count("SELECT COUNT(*) AS n FROM orders"),
        count("SELECT COUNT(*) AS n FROM assignments"),
        count("SELECT COUNT(*) AS n FROM dispatches"),
    );
    let sessions = history.sessions.lock().unwrap();
    let received = history.received.lock().unwrap();
    let told = history.told.lock().unwrap();
    let events = history.events.lock().unwrap();

    // Decided at most once: every listener heard at most one outcome of an assignment, the one
    // stored; no order has two accepted offers.
    let mut outcomes: HashMap<i64, HashSet<&str>> = HashMap::new();
    for (_, assignment, event) in events.iter() {
        outcomes.entry(*assignment).or_default().insert(event);
    }
    let by_id: HashMap<i64, &Row> = rows.iter().map(|r| (r.id, r)).collect();
    let mut twice = outcomes
        .iter()
        .filter(|(id, heard)| {
            heard.len() > 1
                || by_id
                    .get(id)
                    .is_none_or(|row| heard.iter().any(|e| *e != row.status))
        })
        .count();
    let mut accepted_per_order: HashMap<i64, usize> = HashMap::new();
    for row in rows.iter().filter(|r| r.status == "accepted") {
        *accepted_per_order.entry(row.order_id).or_default() += 1;
    }
    twice += accepted_per_order.values().filter(|&&n| n > 1).count();

    let late_allowed = sweep_ms + 1_000;
    let stuck = rows
        .iter()
        .filter(|r| match (r.status.as_str(), r.decided_at) {
            ("pending", _) => now > r.expires_at + late_allowed,
            ("expired", Some(at)) => at > r.expires_at + late_allowed,
            _ => false,
        })
        .count();
    let accepted_late = rows
        .iter()
        .filter(|r| r.status == "accepted" && r.decided_at.is_none_or(|at| at >= r.expires_at))
        .count();

    // Offers reach the masters subscribed throughout.
    let mut first_received: HashMap<i64, i64> = HashMap::new();
    for &(_, _, assignment, at) in received.iter() {
        let first = first_received.entry(assignment).or_insert(at);
        *first = (*first).min(at);
    }
    let mut sessions_of: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for s in sessions.iter() {
        sessions_of
            .entry(s.master)
            .or_default()
            .push((s.subscribed_at, s.last_heard));
    }
    let missed = rows
        .iter()
        .filter(|r| {
            let held_throughout = sessions_of.get(&r.master_id).is_some_and(|spans| {
                spans
                    .iter()
                    .any(|&(from, until)| from <= r.created_at && until >= r.expires_at)
            });
            let in_time = first_received
                .get(&r.id)
                .is_some_and(|&at| at < r.expires_at);
            let decided_first =
                r.status != "expired" && r.decided_at.is_some_and(|d| d < r.expires_at);
            let missed = held_throughout && !in_time && !decided_first;
            if missed {
                eprintln!(
                    "chaos: missed: assignment {} of master {} made at {} due {} ended {} {:?}; \
                     received at {:?}; sessions {:?}",
                    r.id,
                    r.master_id,
                    r.created_at,
                    r.expires_at,
                    r.status,
                    r.decided_at,
                    first_received.get(&r.id),
                    sessions_of.get(&r.master_id)
                );
            }
            missed
        })
        .count();

    // Masters holding an offer hear how it ended, while the server is heard on their connection.
    let ended: HashMap<u64, i64> = sessions.iter().map(|s| (s.conn, s.last_heard)).collect();
    let told: HashSet<(u64, i64)> = told.iter().map(|&(_, conn, a)| (conn, a)).collect();
    let untold = received
        .iter()
        .filter(|&&(_, conn, assignment, at)| {
            let Some(row) = by_id.get(&assignment) else {
                return false;
            };
            let Some(decided) = row.decided_at else {
                return false;
            };
            let open_long_enough = ended
                .get(&conn)
                .is_some_and(|&end| end >= decided.max(at) + TELL_WITHIN_MS);
            let untold = open_long_enough && !told.contains(&(conn, assignment));
            if untold {
                eprintln!(
                    "chaos: untold: assignment {assignment} received on connection {conn} at \
                     {at}, ended {} at {decided}, connection ended at {:?}",
                    row.status,
                    ended.get(&conn)
                );
            }
            untold
        })
        .count();

    let mut seen: HashSet<(usize, i64, &str)> = HashSet::new();
    let duplicates = events
        .iter()
        .filter(|(listener, assignment, event)| !seen.insert((*listener, *assignment, event)))
        .count();

    let unhealthy = health
        .iter()
        .filter(|(_, status)| *status != Some(200))
        .count();
    for (name, status) in health.iter().filter(|(_, status)| *status != Some(200)) {
        eprintln!("chaos: {name} answered /health with {status:?}");
    }

    Verdict {
        checks: vec![
            ("decided at most once", twice),
            ("pending 1 s after deadline + sweep", stuck),
            ("accepted after the deadline", accepted_late),
            (
                "subscribed master did not receive the offer before its deadline",
                missed,
            ),
            ("master holding an offer not told how it ended", untold),
            ("cascades not ended", running_dispatches),
            ("decision twice to one listener", duplicates),
            ("running node not answering /health 200", unhealthy),
        ],
        offers: rows.len(),
        decided: rows.iter().filter(|r| r.status != "pending").count(),
    }
}
