//! Who is connected where: each node's connections, kept in Redis under a key with a TTL that the
//! node's heartbeat refreshes, signed like the events. A node that dies leaves the stats when its
//! key expires; a key that no node of the cluster signed is never read.

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

use super::envelope;
use crate::{
    domain::time::deciding_now,
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
            last_seen: deciding_now(),
            masters: stats.masters,
        }
    }
}

fn key(node_id: &str) -> String {
    format!("{NODE_KEY}{node_id}")
}

pub async fn write(
    conn: &mut ConnectionManager,
    secret: &[u8],
    presence: &NodePresence,
    ttl_secs: u64,
) -> redis::RedisResult<()> {
    let signed = envelope::signed(secret, presence);
    redis::pipe()
        .set_ex(key(&presence.id), signed, ttl_secs)
        .ignore()
        .sadd(NODES, &presence.id)
        .ignore()
        .query_async(conn)
        .await
}

/// Every live node's presence that a node of this cluster signed.
pub async fn read_all(
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
