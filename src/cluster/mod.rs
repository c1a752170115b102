//! Several nodes as one, over Redis.
//!
//! - Events: every node publishes the events it produces on one pub/sub channel and hands what
//!   the others publish to its own bus, so its connections hear of every change and its expiry
//!   actor arms every offer.
//! - Gaps: the subscription is a loop of its own. Each time it (re)subscribes, and when another
//!   node says it dropped events, it tells `Parts::gaps`, and recovery reads back what the node
//!   may have missed, so nothing published while Redis was away is lost.
//! - Presence: a heartbeat keeps this node's connections in Redis with a TTL, so any node can
//!   answer the stats for all of them.

mod envelope;
mod presence;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use actix::Addr;
use futures_util::{StreamExt, future::BoxFuture};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, mpsc};

pub use presence::NodePresence;

use crate::{
    bus::EventBus,
    domain::{DomainEvent, MasterId, time::deciding_now},
    metrics::Metrics,
    router::{
        Router,
        messages::{GetStats, SubscribedAmong},
    },
    service::Presence,
};

/// The one channel every node publishes on and listens to.
const CHANNEL: &str = "dispatcher:events";
const HEARTBEAT: Duration = Duration::from_secs(5);
const PRESENCE_TTL_SECS: u64 = 15;
/// How long a Redis call may take before the node treats Redis as down.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// A quiet subscription is checked this often, so a dead link is noticed without traffic.
const SUBSCRIPTION_CHECK: Duration = Duration::from_secs(3);
/// How long a batch that failed to publish is tried again before Redis counts as down.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(3);
const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// Short, so offers made while Redis was away arrive soon after it is back.
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Who is subscribed on the other nodes is read from Redis at most this often: every offer to a
/// master not on this node asks, and presence is a heartbeat old anyway.
const PRESENCE_READ_EVERY: Duration = Duration::from_secs(1);
/// A refused message is logged at most this often for each reason.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The other live nodes, and when that was read.
type PresenceRead = (std::time::Instant, Arc<[String]>);

/// This node: its name and, in cluster mode, its link to Redis.
#[derive(Clone)]
pub struct Node {
    pub id: Arc<str>,
    redis: Option<Link>,
}

#[derive(Clone)]
struct Link {
    client: redis::Client,
    conn: ConnectionManager,
    subscribed: Arc<AtomicBool>,
    /// Set as the node shuts down, so the heartbeat does not write back what `leave` removed.
    leaving: Arc<AtomicBool>,
    /// Set while events this node could not publish have not been announced to the others.
    dropped: Arc<AtomicBool>,
    /// `CLUSTER_SECRET`: signs what this node writes, and checks what it reads.
    secret: Arc<[u8]>,
    /// The other live nodes, as last read, and when.
    elsewhere: Arc<std::sync::Mutex<Option<PresenceRead>>>,
}

/// What the links to the other nodes reach on this one.
#[derive(Clone)]
pub struct Parts {
    pub bus: EventBus,
    pub router: Addr<Router>,
    pub metrics: Arc<Metrics>,
    /// Told after every gap in what this node heard from the others; recovery reads back
    /// what it may have missed.
    pub gaps: Arc<Notify>,
}

/// Which masters have a subscribed connection: this node's Router, then the other nodes'
/// presence for the rest.
pub struct Reach {
    pub router: Addr<Router>,
    pub node: Node,
}

impl Presence for Reach {
    fn subscribed_among(&self, masters: Vec<MasterId>) -> BoxFuture<'static, HashSet<MasterId>> {
        let (router, node) = (self.router.clone(), self.node.clone());
        Box::pin(async move {
            let wanted = masters.clone();
            let mut found: HashSet<MasterId> = router
                .send(SubscribedAmong(masters))
                .await
                .unwrap_or_default()
                .into_iter()
                .collect();
            if found.len() < wanted.len() && node.redis_up().is_some() {
                let missing: Vec<MasterId> =
                    wanted.into_iter().filter(|m| !found.contains(m)).collect();
                found.extend(node.subscribed_elsewhere(&missing).await);
            }
            found
        })
    }
}

impl Node {
    /// A process on its own.
    pub fn single(id: &str) -> Node {
        Node {
            id: id.into(),
            redis: None,
        }
    }

    /// A node of a cluster. Connects lazily, so a Redis that is down does not stop the node.
    pub fn clustered(id: &str, redis_url: &str, secret: &str) -> redis::RedisResult<Node> {
        let client = redis::Client::open(redis_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_MAX);
        let conn = client.get_connection_manager_lazy(config)?;
        Ok(Node {
            id: id.into(),
            redis: Some(Link {
                client,
                conn,
                subscribed: Arc::new(AtomicBool::new(false)),
                leaving: Arc::new(AtomicBool::new(false)),
                dropped: Arc::new(AtomicBool::new(false)),
                secret: secret.as_bytes().into(),
                elsewhere: Arc::default(),
            }),
        })
    }

    /// In cluster mode, the flag that has this node tell the others it dropped events, so that
    /// they catch up from the database.
    pub fn dropped_flag(&self) -> Option<Arc<AtomicBool>> {
        self.redis.as_ref().map(|link| link.dropped.clone())
    }

    /// In cluster mode, whether this node is listening to the others now.
    pub fn redis_up(&self) -> Option<bool> {
        self.redis
            .as_ref()
            .map(|link| link.subscribed.load(Ordering::Relaxed))
    }

    /// Starts the tasks that carry events between nodes and keep presence; a single process has none.
    pub fn start(&self, outgoing: mpsc::Receiver<Vec<DomainEvent>>, parts: Parts) {
        let Some(link) = &self.redis else {
            return;
        };
        actix_web::rt::spawn(publish_loop(
            outgoing,
            link.clone(),
            self.id.clone(),
            parts.metrics.clone(),
        ));
        actix_web::rt::spawn(subscribe_loop(link.clone(), self.id.clone(), parts.clone()));
        actix_web::rt::spawn(heartbeat_loop(link.clone(), self.id.clone(), parts.router));
    }

    /// Every live node's presence, this node's (`own`) fresh; only `own` when Redis is away.
    pub async fn presence(&self, own: NodePresence) -> Vec<NodePresence> {
        let Some(link) = &self.redis else {
            return vec![own];
        };
        let mut conn = link.conn.clone();
        let read = presence::read_all(&mut conn, &link.secret);
        let mut nodes = match tokio::time::timeout(REDIS_TIMEOUT, read).await {
            Ok(Ok(nodes)) => nodes,
            Ok(Err(e)) => {
                log::warn!("cannot read cluster presence ({e}); showing this node only");
                Vec::new()
            }
            Err(_) => {
                log::warn!("cluster presence timed out; showing this node only");
                Vec::new()
            }
        };
        nodes.retain(|n| n.id != own.id);
        nodes.push(own);
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes
    }

    /// Which of `masters` have a subscribed connection on another live node, as its last
    /// heartbeat wrote it; none when Redis is away or this is a single process. One set lookup
    /// on each other node, whatever it holds.
    pub async fn subscribed_elsewhere(&self, masters: &[MasterId]) -> HashSet<MasterId> {
        let Some(link) = &self.redis else {
            return HashSet::new();
        };
        let mut conn = link.conn.clone();
        let read = async {
            let others = self.other_nodes(link).await?;
            presence::subscribed_on(&mut conn, &others, masters).await
        };
        match tokio::time::timeout(REDIS_TIMEOUT, read).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                log::warn!("cannot read cluster presence: {e}");
                HashSet::new()
            }
            Err(_) => {
                log::warn!("cluster presence timed out");
                HashSet::new()
            }
        }
    }

    /// The other live nodes, read at most every [`PRESENCE_READ_EVERY`]: every offer to a
    /// master not on this node asks.
    async fn other_nodes(&self, link: &Link) -> redis::RedisResult<Arc<[String]>> {
        if let Some((read_at, nodes)) = link.elsewhere.lock().unwrap().as_ref()
            && read_at.elapsed() < PRESENCE_READ_EVERY
        {
            return Ok(nodes.clone());
        }
        let mut conn = link.conn.clone();
        let nodes: Arc<[String]> = presence::live_nodes(&mut conn, &link.secret)
            .await?
            .into_iter()
            .map(|n| n.id)
            .filter(|id| **id != *self.id)
            .collect();
        *link.elsewhere.lock().unwrap() = Some((std::time::Instant::now(), nodes.clone()));
        Ok(nodes)
    }

    /// Takes this node out of the stats at once, as it shuts down.
    pub async fn leave(&self) {
        if let Some(link) = &self.redis {
            let mut conn = link.conn.clone();
            let _ =
                tokio::time::timeout(REDIS_TIMEOUT, presence::remove(&mut conn, &self.id)).await;
        }
    }
}

/// Sends this node's events to the others, in order.
///
/// The connection manager reconnects after a failed command, so a batch that fails is tried
/// again for a short while: a Redis that blinked loses nothing. While Redis stays down batches
/// are dropped after one try each. When publishing works again the node says so, and every other
/// node re-reads open offers from the database, as it does after a gap of its own.
async fn publish_loop(
    mut outgoing: mpsc::Receiver<Vec<DomainEvent>>,
    link: Link,
    node_id: Arc<str>,
    metrics: Arc<Metrics>,
) {
    let mut conn = link.conn.clone();
    let mut down = false;
    while let Some(events) = outgoing.recv().await {
        let count = events.len();
        let payload = envelope::encode(&link.secret, &node_id, events, deciding_now());
        if publish_patiently(&mut conn, &payload, !down).await.is_ok() {
            if let Some(backplane) = &metrics.backplane {
                backplane
                    .events
                    .with_label_values(&["out"])
                    .inc_by(count as u64);
            }
            if down {
                down = false;
                log::info!("node {node_id} publishing events to Redis again");
            }
            announce_dropped(&link, &node_id).await;
        } else if !down {
            down = true;
            link.dropped.store(true, Ordering::Relaxed);
            log::warn!(
                "node {node_id} cannot publish {count} events to Redis; dropping events until it \
                 is back"
            );
        } else {
            link.dropped.store(true, Ordering::Relaxed);
        }
    }
}

/// Publishes `payload`; when `patient`, tries again for up to `PUBLISH_PATIENCE`, since the
/// connection manager reconnects after a failed command.
async fn publish_patiently(
    conn: &mut ConnectionManager,
    payload: &str,
    patient: bool,
) -> redis::RedisResult<()> {
    let give_up = tokio::time::Instant::now() + PUBLISH_PATIENCE;
    let mut wait = Duration::from_millis(50);
    loop {
        match publish(conn, payload).await {
            Ok(()) => return Ok(()),
            Err(e) if !patient || tokio::time::Instant::now() + wait > give_up => return Err(e),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// If this node dropped events, tells the others, which then catch up from the database.
async fn announce_dropped(link: &Link, node_id: &str) {
    if !link.dropped.swap(false, Ordering::Relaxed) {
        return;
    }
    let mut conn = link.conn.clone();
    let notice = envelope::encode_dropped(&link.secret, node_id, deciding_now());
    if publish_patiently(&mut conn, &notice, true).await.is_err() {
        link.dropped.store(true, Ordering::Relaxed);
    }
}

async fn publish(conn: &mut ConnectionManager, payload: &str) -> redis::RedisResult<()> {
    redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(payload)
        .query_async::<i64>(conn)
        .await
        .map(drop)
}

/// Listens to the other nodes for as long as the node lives, resubscribing after any loss.
async fn subscribe_loop(link: Link, node_id: Arc<str>, parts: Parts) {
    let mut backoff = RECONNECT_MIN;
    let mut reported = false;
    loop {
        match subscribe(&link.client).await {
            Ok(pubsub) => {
                link.subscribed.store(true, Ordering::Relaxed);
                log::info!("node {node_id} subscribed to cluster events");
                backoff = RECONNECT_MIN;
                reported = false;
                parts.gaps.notify_one();
                announce_dropped(&link, &node_id).await;
                listen(pubsub, &node_id, &link.secret, &parts).await;
                link.subscribed.store(false, Ordering::Relaxed);
                log::warn!("node {node_id} lost its Redis subscription; reconnecting");
            }
            Err(e) if !reported => {
                reported = true;
                log::warn!("node {node_id} cannot subscribe on Redis ({e}); retrying");
            }
            Err(_) => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok(pubsub)
    };
    tokio::time::timeout(REDIS_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

/// Delivers the other nodes' events to this node until the subscription ends or stops answering.
/// Delivers only what a node of this cluster signed; the rest is counted, and logged at most once a
/// minute for each reason.
async fn listen(pubsub: redis::aio::PubSub, node_id: &str, secret: &[u8], parts: &Parts) {
    let mut warned: HashMap<&'static str, tokio::time::Instant> = HashMap::new();
    let (mut sink, mut stream) = pubsub.split();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = tokio::time::sleep(SUBSCRIPTION_CHECK) => {
                let ping = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await;
                if matches!(ping, Ok(Ok(_))) {
                    continue;
                }
                return;
            }
        };
        let Some(message) = message else {
            return;
        };
        match envelope::decode(secret, message.get_payload_bytes(), deciding_now()) {
            Ok(envelope) if envelope.node == node_id => {}
            Ok(envelope) => {
                if envelope.dropped {
                    log::info!("node {} dropped events; catching up", envelope.node);
                    parts.gaps.notify_one();
                }
                if let Some(backplane) = &parts.metrics.backplane {
                    backplane
                        .events
                        .with_label_values(&["in"])
                        .inc_by(envelope.events.len() as u64);
                }
                parts.bus.deliver_local(envelope.events).await;
            }
            Err(e) => {
                if let Some(backplane) = &parts.metrics.backplane {
                    backplane.rejected.with_label_values(&[e.reason()]).inc();
                }
                let now = tokio::time::Instant::now();
                if warned
                    .get(e.reason())
                    .is_none_or(|at| now.duration_since(*at) >= WARN_EVERY)
                {
                    warned.insert(e.reason(), now);
                    log::warn!(
                        "dropped a cluster message ({e}); more like it are counted in \
                         dispatcher_backplane_rejected_total and logged once a minute"
                    );
                }
            }
        }
    }
}

/// Keeps this node's presence fresh in Redis.
async fn heartbeat_loop(link: Link, node_id: Arc<str>, router: Addr<Router>) {
    let mut conn = link.conn;
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut failing = false;
    let mut reported = presence::Reported::default();
    loop {
        tick.tick().await;
        let Ok(stats) = router.send(GetStats).await else {
            return;
        };
        if link.leaving.load(Ordering::Relaxed) {
            return;
        }
        let own = NodePresence::new(&node_id, stats);
        let written = tokio::time::timeout(
            REDIS_TIMEOUT,
            presence::write(
                &mut conn,
                &link.secret,
                &own,
                &mut reported,
                PRESENCE_TTL_SECS,
            ),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out()));
        match written {
            Ok(()) if failing => {
                failing = false;
                log::info!("node {node_id} presence written to Redis again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                log::warn!("node {node_id} cannot write its presence to Redis: {e}");
            }
            Err(_) => {}
        }
    }
}
