//! Who is connected where. Each node keeps three keys in Redis, each with a TTL its heartbeat
//! refreshes, and signs what it writes like the events; a node that dies leaves the stats when
//! its keys expire, and nothing no node of the cluster signed is ever read.
//!
//! - `dispatcher:node:<id>`: its counts (connections by role), bounded whatever it holds;
//! - `dispatcher:node:<id>:rows`: a hash of its masters' connections as the stats show them;
//! - `dispatcher:node:<id>:subscribed`: a set of the masters subscribed on it.
//!
//! The hash and the set are written as changes since the node's last report, at most
//! [`MAX_CHANGES`] a heartbeat, so what a node writes is bounded in bytes whatever its
//! connection count; a node with more changes than that catches up over the next heartbeats.

use std::collections::{BTreeMap, HashMap, HashSet};

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

use super::envelope;
use crate::{
    domain::{MasterId, time::deciding_now},
    router::messages::{MasterConnection, Stats},
};

/// The set of node ids that have written presence; members whose key expired are pruned on read.
const NODES: &str = "dispatcher:nodes";
const NODE_KEY: &str = "dispatcher:node:";
/// The most rows and subscriptions one heartbeat writes or removes: about 150 bytes each.
pub const MAX_CHANGES: usize = 2_000;

/// One node's connections as the admin stats show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePresence {
    pub id: String,
    /// Every WebSocket connection the node holds, authenticated or not.
    pub connections: usize,
    /// Those connections by role.
    #[serde(default)]
    pub by_role: BTreeMap<String, usize>,
    /// When the node wrote this, in UTC ms.
    pub last_seen: i64,
    /// Its masters' connections: read from its rows, never written with the counts.
    #[serde(skip)]
    pub masters: Vec<MasterConnection>,
}

impl NodePresence {
    pub fn new(node_id: &str, stats: Stats) -> Self {
        NodePresence {
            id: node_id.to_string(),
            connections: stats.total_connected,
            by_role: stats.by_role,
            last_seen: deciding_now(),
            masters: stats.masters,
        }
    }
}

fn key(node_id: &str) -> String {
    format!("{NODE_KEY}{node_id}")
}

fn rows_key(node_id: &str) -> String {
    format!("{NODE_KEY}{node_id}:rows")
}

fn subscribed_key(node_id: &str) -> String {
    format!("{NODE_KEY}{node_id}:subscribed")
}

/// What this node last wrote of its rows and subscriptions, so that a heartbeat writes only
/// what changed since.
#[derive(Default)]
pub struct Reported {
    rows: HashMap<String, MasterConnection>,
    subscribed: HashSet<MasterId>,
    /// After a failed write nothing is known of what Redis holds: the next write starts over.
    unknown: bool,
}

/// The rows of a node's masters, each under a field that names it: a master's user may hold
/// several connections, numbered in a stable order.
fn fields(masters: &[MasterConnection]) -> HashMap<String, MasterConnection> {
    let mut sorted: Vec<&MasterConnection> = masters.iter().collect();
    sorted.sort_by_key(|m| (m.master_id, m.user_id, !m.subscribed, m.last_ping));
    let mut fields = HashMap::with_capacity(sorted.len());
    let mut previous = None;
    let mut n = 0;
    for m in sorted {
        let same = previous == Some((m.master_id, m.user_id));
        n = if same { n + 1 } else { 0 };
        previous = Some((m.master_id, m.user_id));
        fields.insert(format!("{}:{}:{n}", m.master_id.0, m.user_id.0), m.clone());
    }
    fields
}

/// What one heartbeat writes: at most [`MAX_CHANGES`] of the differences, removals first.
struct Changes {
    removed_rows: Vec<String>,
    rows: Vec<(String, MasterConnection)>,
    unsubscribed: Vec<MasterId>,
    subscribed: Vec<MasterId>,
}

impl Reported {
    fn changes(
        &self,
        now: &HashMap<String, MasterConnection>,
        subscribed: &HashSet<MasterId>,
    ) -> Changes {
        let mut budget = MAX_CHANGES;
        let mut take = |n: usize| {
            let n = n.min(budget);
            budget -= n;
            n
        };
        let unsubscribed: Vec<MasterId> = self.subscribed.difference(subscribed).copied().collect();
        let unsubscribed = unsubscribed[..take(unsubscribed.len())].to_vec();
        let newly: Vec<MasterId> = subscribed.difference(&self.subscribed).copied().collect();
        let newly = newly[..take(newly.len())].to_vec();
        let removed: Vec<String> = self
            .rows
            .keys()
            .filter(|f| !now.contains_key(*f))
            .cloned()
            .collect();
        let removed = removed[..take(removed.len())].to_vec();
        let changed: Vec<(String, MasterConnection)> = now
            .iter()
            .filter(|(f, row)| self.rows.get(*f) != Some(row))
            .map(|(f, row)| (f.clone(), row.clone()))
            .collect();
        let changed = changed[..take(changed.len())].to_vec();
        Changes {
            removed_rows: removed,
            rows: changed,
            unsubscribed,
            subscribed: newly,
        }
    }

    fn apply(&mut self, changes: Changes) {
        for field in changes.removed_rows {
            self.rows.remove(&field);
        }
        self.rows.extend(changes.rows);
        for master in changes.unsubscribed {
            self.subscribed.remove(&master);
        }
        self.subscribed.extend(changes.subscribed);
    }
}

/// Writes this node's counts, and the changes to its rows and subscriptions since `reported`,
/// in one transaction; `reported` follows what Redis then holds.
pub async fn write(
    conn: &mut ConnectionManager,
    secret: &[u8],
    presence: &NodePresence,
    reported: &mut Reported,
    ttl_secs: u64,
) -> redis::RedisResult<()> {
    let rows = rows_key(&presence.id);
    let subscriptions = subscribed_key(&presence.id);
    let now = fields(&presence.masters);
    let subscribed: HashSet<MasterId> = presence
        .masters
        .iter()
        .filter(|m| m.subscribed)
        .map(|m| m.master_id)
        .collect();
    if reported.unknown {
        *reported = Reported::default();
    }
    let starting_over = reported.rows.is_empty() && reported.subscribed.is_empty();
    let changes = reported.changes(&now, &subscribed);
    let mut pipe = redis::pipe();
    pipe.atomic();
    // Whether Redis still held the rows: a Redis restarted between heartbeats lost them.
    pipe.exists(&rows);
    if starting_over {
        pipe.del(&[&rows, &subscriptions]).ignore();
    }
    if !changes.removed_rows.is_empty() {
        pipe.hdel(&rows, &changes.removed_rows).ignore();
    }
    if !changes.rows.is_empty() {
        let signed: Vec<(&str, String)> = changes
            .rows
            .iter()
            .map(|(field, row)| (field.as_str(), envelope::signed(secret, row)))
            .collect();
        pipe.hset_multiple(&rows, &signed).ignore();
    }
    if !changes.unsubscribed.is_empty() {
        let ids: Vec<i64> = changes.unsubscribed.iter().map(|m| m.0).collect();
        pipe.srem(&subscriptions, ids).ignore();
    }
    if !changes.subscribed.is_empty() {
        let ids: Vec<i64> = changes.subscribed.iter().map(|m| m.0).collect();
        pipe.sadd(&subscriptions, ids).ignore();
    }
    pipe.expire(&rows, ttl_secs as i64)
        .ignore()
        .expire(&subscriptions, ttl_secs as i64)
        .ignore()
        .set_ex(
            key(&presence.id),
            envelope::signed(secret, presence),
            ttl_secs,
        )
        .ignore()
        .sadd(NODES, &presence.id)
        .ignore();
    let written: redis::RedisResult<(bool,)> = pipe.query_async(conn).await;
    let (had_rows,) = match written {
        Ok(answer) => answer,
        Err(e) => {
            reported.unknown = true;
            return Err(e);
        }
    };
    if !had_rows && !reported.rows.is_empty() {
        // Lost between heartbeats: Redis holds just what this write put there; the rest
        // follows over the next heartbeats.
        *reported = Reported::default();
        log::info!(
            "node {} presence was lost in Redis; writing it again",
            presence.id
        );
    }
    reported.apply(changes);
    Ok(())
}

/// Every live node's presence that a node of this cluster signed, with its rows.
pub async fn read_all(
    conn: &mut ConnectionManager,
    secret: &[u8],
) -> redis::RedisResult<Vec<NodePresence>> {
    let mut live = live_nodes(conn, secret).await?;
    if live.is_empty() {
        return Ok(live);
    }
    let mut pipe = redis::pipe();
    for node in &live {
        pipe.hgetall(rows_key(&node.id));
    }
    let all_rows: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
    for (node, rows) in live.iter_mut().zip(all_rows) {
        node.masters = rows
            .values()
            .filter_map(|signed| {
                let json = envelope::verified(secret, signed.as_bytes()).ok()?;
                serde_json::from_slice(json).ok()
            })
            .collect();
    }
    Ok(live)
}

/// The counts of every live node that a node of this cluster signed, without their rows.
pub async fn live_nodes(
    conn: &mut ConnectionManager,
    secret: &[u8],
) -> redis::RedisResult<Vec<NodePresence>> {
    let ids: Vec<String> = conn.smembers(NODES).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| key(id)).collect();
    let values: Vec<Option<String>> = conn.mget(&keys).await?;
    let mut live = Vec::with_capacity(ids.len());
    for (id, value) in ids.iter().zip(values) {
        let read = value.map(|v| {
            let json = envelope::verified(secret, v.as_bytes()).map_err(|e| e.to_string())?;
            serde_json::from_slice::<NodePresence>(json).map_err(|e| e.to_string())
        });
        match read {
            Some(Ok(presence)) if presence.id == *id => live.push(presence),
            Some(Ok(_)) => log::debug!("presence under node {id} names another node; skipped"),
            Some(Err(e)) => log::debug!("presence of node {id} skipped: {e}"),
            None => {
                let _: () = conn.srem(NODES, id).await?;
            }
        }
    }
    Ok(live)
}

/// Which of `masters` are subscribed on any of `nodes`: one set lookup on each.
pub async fn subscribed_on(
    conn: &mut ConnectionManager,
    nodes: &[String],
    masters: &[MasterId],
) -> redis::RedisResult<HashSet<MasterId>> {
    if nodes.is_empty() || masters.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<i64> = masters.iter().map(|m| m.0).collect();
    let mut pipe = redis::pipe();
    for node in nodes {
        pipe.cmd("SMISMEMBER").arg(subscribed_key(node)).arg(&ids);
    }
    let found: Vec<Vec<bool>> = pipe.query_async(conn).await?;
    Ok(found
        .iter()
        .flat_map(|on_node| {
            on_node
                .iter()
                .zip(masters)
                .filter(|(is, _)| **is)
                .map(|(_, m)| *m)
        })
        .collect())
}

/// Removes a node's presence at once, as it shuts down.
pub async fn remove(conn: &mut ConnectionManager, node_id: &str) -> redis::RedisResult<()> {
    redis::pipe()
        .del(&[key(node_id), rows_key(node_id), subscribed_key(node_id)])
        .ignore()
        .srem(NODES, node_id)
        .ignore()
        .query_async(conn)
        .await
}
