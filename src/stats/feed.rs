//! The `stats` frames of `subscribe_stats`: gathered once a second while anyone listens, and
//! handed to every listener through one watch channel, so slow listeners skip to the newest
//! frame instead of queueing old ones, and ten dashboards cost one gathering.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, watch};

use crate::protocol::Frame;

const EVERY: Duration = Duration::from_secs(1);

pub struct StatsFeed {
    frames: watch::Sender<Option<Frame>>,
    /// Wakes the gathering at once for a first listener, instead of at the next second.
    listener_arrived: Notify,
}

impl StatsFeed {
    pub fn new() -> Arc<StatsFeed> {
        Arc::new(StatsFeed {
            frames: watch::channel(None).0,
            listener_arrived: Notify::new(),
        })
    }

    /// A listener: the newest frame whenever it changes, the first one at once.
    pub fn listen(&self) -> watch::Receiver<Option<Frame>> {
        let mut receiver = self.frames.subscribe();
        receiver.mark_changed();
        self.listener_arrived.notify_one();
        receiver
    }

    /// Gathers with `gather` once a second while anyone listens; a `None` is skipped.
    pub async fn run(self: Arc<Self>, gather: impl Fn() -> BoxFuture<'static, Option<Frame>>) {
        loop {
            if self.frames.receiver_count() == 0 {
                self.listener_arrived.notified().await;
            }
            if let Some(frame) = gather().await {
                self.frames.send_replace(Some(frame));
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = self.listener_arrived.notified() => {}
            }
        }
    }
}
