//! Who is connected where: each node's connections, kept in Redis under a key with a TTL that the
//! node's heartbeat refreshes. A node that dies leaves the stats when its key expires.

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

use crate::{
    domain::time::now_ms,
    router::messages::{MasterConnection, Stats},
};

/// The set of node ids that have written presence; members whose key expired are pruned on read.
const NODES: &str = "dispatcher:nodes";
const NODE_KEY: &str = "dispatcher:node:";

/// One node's connections as the admin stats show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePresence {
    pub id: String,
    /// Every WebSocket connection the node holds, authenticated or not.
    pub connections: usize,
    /// Those connections by role; older nodes do not send it.
    #[serde(default)]
    pub by_role: std::collections::BTreeMap<String, usize>,
    /// When the node wrote this, in UTC ms.
    pub last_seen: i64,
    pub masters: Vec<MasterConnection>,
}

impl NodePresence {
    pub fn new(node_id: &str, stats: Stats) -> Self {
        NodePresence {
            id: node_id.to_string(),
            connections: stats.total_connected,
            by_role: stats.by_role,
            last_seen: now_ms(),
            masters: stats.masters,
        }
    }
}

fn key(node_id: &str) -> String {
    format!("{NODE_KEY}{node_id}")
}

pub async fn write(
    conn: &mut ConnectionManager,
    presence: &NodePresence,
    ttl_secs: u64,
) -> redis::RedisResult<()> {
    let json = serde_json::to_string(presence).expect("presence always serializes");
    redis::pipe()
        .set_ex(key(&presence.id), json, ttl_secs)
        .ignore()
        .sadd(NODES, &presence.id)
        .ignore()
        .query_async(conn)
        .await
}

/// Every live node's presence.
pub async fn read_all(conn: &mut ConnectionManager) -> redis::RedisResult<Vec<NodePresence>> {
    let ids: Vec<String> = conn.smembers(NODES).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| key(id)).collect();
    let values: Vec<Option<String>> = conn.mget(&keys).await?;
    let mut live = Vec::with_capacity(ids.len());
    for (id, value) in ids.iter().zip(values) {
        match value.map(|v| serde_json::from_str::<NodePresence>(&v)) {
            Some(Ok(presence)) => live.push(presence),
            Some(Err(e)) => log::warn!("unreadable presence of node {id}: {e}"),
            None => {
                let _: () = conn.srem(NODES, id).await?;
            }
        }
    }
    Ok(live)
}

/// Removes a node's presence at once, as it shuts down.
pub async fn remove(conn: &mut ConnectionManager, node_id: &str) -> redis::RedisResult<()> {
    redis::pipe()
        .del(key(node_id))
        .ignore()
        .srem(NODES, node_id)
        .ignore()
        .query_async(conn)
        .await
}
