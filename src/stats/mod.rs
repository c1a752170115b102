//! The admin stats over every live node, in one room: connections from each node's router
//! (through Redis in cluster mode) with their roles, shifts and offer figures from the database.
//! `GET /api/admin/websocket/stats` answers them, and `subscribe_stats` streams them through
//! the [`feed`].

pub mod feed;
pub mod offer_figures;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use actix::Addr;

use crate::{
    cluster::{Node, NodePresence},
    domain::{
        MasterId, Role,
        time::{iso, now_ms},
    },
    protocol::{
        Frame, ServerMessage,
        stats::{NodeRow, SubscriptionRow, WebsocketStats},
    },
    router::{Router, messages::GetStats},
    service::{Service, error::AppError},
};

/// Which subscription rows one answer holds: those of masters after `after`, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: usize,
    pub after: Option<MasterId>,
}

impl Page {
    pub const DEFAULT_LIMIT: usize = 10_000;
    pub const MAX_LIMIT: usize = 100_000;
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: Page::DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// Gathers the admin stats, and streams them to whoever listens.
pub struct Stats {
    router: Addr<Router>,
    node: Node,
    service: Service,
    /// A subscribed master who pinged within this is active.
    active_window: Duration,
    feed: Arc<feed::StatsFeed>,
}

impl Stats {
    /// The stats of this node and the others; the feed starts gathering once anyone listens.
    pub fn start(
        router: Addr<Router>,
        node: Node,
        service: Service,
        active_window: Duration,
    ) -> Arc<Stats> {
        let stats = Arc::new(Stats {
            router,
            node,
            service,
            active_window,
            feed: feed::StatsFeed::new(),
        });
        let gatherer = stats.clone();
        actix_web::rt::spawn(stats.feed.clone().run(move || {
            let stats = gatherer.clone();
            Box::pin(async move { stats.frame().await })
        }));
        stats
    }

    /// The newest `stats` frame whenever it changes, the first one at once.
    pub fn listen(&self) -> tokio::sync::watch::Receiver<Option<Frame>> {
        self.feed.listen()
    }

    /// The stats over every live node. The totals and `nodes` count every connection; the
    /// subscription rows are `page`'s, with `truncated` when rows were left out after it.
    pub async fn gather(&self, page: Page) -> Result<WebsocketStats, AppError> {
        let stats = self
            .router
            .send(GetStats)
            .await
            .map_err(|e| AppError::Internal(format!("router unreachable: {e}")))?;
        let nodes = self
            .node
            .presence(NodePresence::new(&self.node.id, stats))
            .await;
        let mut master_ids: Vec<MasterId> = nodes
            .iter()
            .flat_map(|n| n.masters.iter().map(|m| m.master_id))
            .collect();
        master_ids.sort_unstable();
        master_ids.dedup();
        let on_shift = self.service.on_shift_of(master_ids).await?;
        let (recent, created_total) = self
            .service
            .offers_since(now_ms() - offer_figures::WINDOW_SECS * 1000)
            .await?;
        let offers = offer_figures::figures(&recent, created_total);

        let active_since = now_ms() - self.active_window.as_millis() as i64;
        let mut subscriptions: Vec<SubscriptionRow> = nodes
            .iter()
            .flat_map(|n| n.masters.iter().map(move |m| (n.id.as_str(), m)))
            .map(|(node, m)| SubscriptionRow {
                user_id: m.user_id,
                master_id: m.master_id,
                subscribed: m.subscribed,
                on_shift: on_shift.get(&m.master_id).copied().unwrap_or(false),
                last_ping: m.last_ping.map(iso),
                is_active: m.subscribed && m.last_ping.is_some_and(|t| t >= active_since),
                node: node.to_string(),
            })
            .collect();
        subscriptions.sort_by(|a, b| {
            (a.master_id, a.user_id, &a.node).cmp(&(b.master_id, b.user_id, &b.node))
        });
        let total_subscribed = subscriptions.iter().filter(|s| s.subscribed).count();
        let active_subscriptions = subscriptions.iter().filter(|s| s.is_active).count();
        let on_shift_subscriptions = subscriptions
            .iter()
            .filter(|s| s.is_active && s.on_shift)
            .count();
        if let Some(after) = page.after {
            subscriptions.retain(|s| s.master_id > after);
        }
        let truncated = subscriptions.len() > page.limit;
        if truncated {
            // A master's rows stay on one page, since the next starts after its masterId.
            let next = subscriptions[page.limit].master_id;
            let mut end = page.limit;
            while end > 0 && subscriptions[end - 1].master_id == next {
                end -= 1;
            }
            subscriptions.truncate(if end == 0 { page.limit } else { end });
        }
        let mut connections_by_role = BTreeMap::new();
        for role in Role::labels() {
            connections_by_role.insert(role.to_string(), 0);
        }
        for node in &nodes {
            for (role, count) in &node.by_role {
                *connections_by_role.entry(role.clone()).or_insert(0) += count;
            }
        }
        Ok(WebsocketStats {
            total_connected: nodes.iter().map(|n| n.connections).sum(),
            connections_by_role,
            total_subscribed,
            active_subscriptions,
            on_shift_subscriptions,
            subscriptions,
            truncated,
            nodes: nodes
                .iter()
                .map(|n| NodeRow {
                    id: n.id.clone(),
                    connections: n.connections,
                    last_seen: iso(n.last_seen),
                })
                .collect(),
            offers,
        })
    }

    /// The admin stats as a `stats` frame; `None` (and a warning) when they cannot be gathered.
    async fn frame(&self) -> Option<Frame> {
        match self.gather(Page::default()).await {
            Ok(gathered) => Some(ServerMessage::Stats(gathered).frame(None)),
            Err(e) => {
                log::warn!("cannot gather the stats for subscribe_stats: {e}");
                None
            }
        }
    }
}
