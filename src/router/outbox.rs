//! A connection's outbound queue, bounded by bytes. The router and the session put frames in;
//! the session's writer task takes them out to the socket.
//!
//! A connection is a slow consumer when its unsent live frames pass `MAX_QUEUED_BYTES`. Replayed
//! offers are not held against it: they wait for room instead, so a master with many open offers
//! gets all of them, paced by how fast he reads.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use actix_web::web::Bytes;
use tokio::sync::{Notify, mpsc};

use crate::protocol::{CloseCode, Frame};

#[derive(Debug)]
pub enum Outbound {
    Text(Frame),
    /// An offer sent again on subscribe or after a gap.
    Replayed(Frame),
    Ping,
    Pong(Bytes),
    Close(CloseCode, String),
}

impl Outbound {
    /// Roughly what the frame takes on the wire: its payload and a small header.
    fn size(&self) -> usize {
        const HEADER: usize = 4;
        HEADER
            + match self {
                Outbound::Text(frame) | Outbound::Replayed(frame) => frame.text.len(),
                Outbound::Ping => 0,
                Outbound::Pong(payload) => payload.len(),
                Outbound::Close(_, reason) => 2 + reason.len(),
            }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The client is not reading: its unsent bytes are past the limit.
    Full,
    /// The connection is gone.
    Closed,
}

/// Unsent bytes, shared by the queue's senders and its writer.
#[derive(Debug, Default)]
struct Backlog {
    live: AtomicUsize,
    replayed: AtomicUsize,
    /// A live frame was refused: the client is not reading.
    stuck: AtomicBool,
    /// Signalled whenever the writer has sent a frame, or is gone.
    room: Notify,
}

impl Backlog {
    fn total(&self) -> usize {
        self.live.load(Ordering::Acquire) + self.replayed.load(Ordering::Acquire)
    }
}

/// The sending side of a connection's queue; cheap to clone, shared with the router.
#[derive(Debug, Clone)]
pub struct Outbox {
    frames: mpsc::UnboundedSender<Outbound>,
    backlog: Arc<Backlog>,
    max_bytes: usize,
}

/// The receiving side, for the writer task.
pub struct Drain {
    frames: mpsc::UnboundedReceiver<Outbound>,
    backlog: Arc<Backlog>,
}

impl Outbox {
    /// A queue that holds up to `max_bytes` of unsent live frames, and its receiving end.
    pub fn channel(max_bytes: usize) -> (Outbox, Drain) {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        (
            Outbox {
                frames: tx,
                backlog: backlog.clone(),
                max_bytes,
            },
            Drain {
                frames: rx,
                backlog,
            },
        )
    }

    /// Queues a frame, unless the client has let too many bytes pile up. One frame always goes
    /// into an empty queue, however large; a close always goes in unless the client is stuck,
    /// when it would never be read (the caller then drops the socket instead).
    pub fn push(&self, frame: Outbound) -> Result<(), QueueError> {
        let size = frame.size();
        let queued = self.backlog.live.load(Ordering::Acquire);
        let fits = queued == 0 || queued + size <= self.max_bytes;
        let refused = match frame {
            Outbound::Close(..) => self.backlog.stuck.load(Ordering::Acquire),
            _ => !fits,
        };
        if refused {
            self.backlog.stuck.store(true, Ordering::Release);
            return Err(QueueError::Full);
        }
        self.backlog.live.fetch_add(size, Ordering::AcqRel);
        self.frames.send(frame).map_err(|_| QueueError::Closed)
    }

    pub fn text(&self, frame: Frame) -> Result<(), QueueError> {
        self.push(Outbound::Text(frame))
    }

    pub fn close(&self, code: CloseCode, description: &str) -> Result<(), QueueError> {
        self.push(Outbound::Close(code, description.to_string()))
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes that may still be queued before the limit: what a replay may hold besides.
    pub fn room(&self) -> usize {
        self.max_bytes.saturating_sub(self.backlog.total())
    }

    /// Waits until the queue has room for `bytes` more, or is empty; false once the connection
    /// is gone. Replayed frames wait for room instead of counting against the client.
    pub async fn room_for(&self, bytes: usize) -> bool {
        loop {
            if self.frames.is_closed() {
                return false;
            }
            let queued = self.backlog.total();
            if queued == 0 || queued + bytes <= self.max_bytes {
                return true;
            }
            self.backlog.room.notified().await;
        }
    }

    /// Queues an offer sent again (on subscribe, after a gap), once there was room for it.
    pub fn replayed(&self, frame: Frame) -> Result<(), QueueError> {
        let replayed = Outbound::Replayed(frame);
        self.backlog
            .replayed
            .fetch_add(replayed.size(), Ordering::AcqRel);
        self.frames.send(replayed).map_err(|_| QueueError::Closed)
    }
}

impl Drain {
    pub async fn next(&mut self) -> Option<Outbound> {
        self.frames.recv().await
    }

    /// The frame is on the socket: its bytes no longer count.
    pub fn sent(&self, frame: &Outbound) {
        let counter = match frame {
            Outbound::Replayed(_) => &self.backlog.replayed,
            _ => &self.backlog.live,
        };
        counter.fetch_sub(frame.size(), Ordering::AcqRel);
        self.backlog.room.notify_one();
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.frames.close();
        self.backlog.room.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_frames_are_judged_by_bytes_and_replays_wait_for_room() {
        let frame = || Frame {
            kind: "test",
            text: "x".repeat(60).into(),
        };
        let (outbox, mut drain) = Outbox::channel(100);
        outbox.text(frame()).unwrap();
        // Past the limit, a replay waits for the client to read instead of being refused.
        let replaying = outbox.clone();
        let replay = tokio::spawn(async move {
            for _ in 0..2 {
                assert!(replaying.room_for(512).await);
                replaying.replayed(frame()).unwrap();
            }
        });
        let mut replayed = 0;
        while replayed < 2 {
            let next = drain.next().await.unwrap();
            replayed += usize::from(matches!(next, Outbound::Replayed(_)));
            drain.sent(&next);
        }
        replay.await.unwrap();
        assert_eq!(outbox.close(CloseCode::Normal, ""), Ok(()));

        // Refused once, the client is stuck: a close would never be read either.
        let (stuck, _drain) = Outbox::channel(100);
        stuck.text(frame()).unwrap();
        assert_eq!(stuck.text(frame()), Err(QueueError::Full));
        assert_eq!(
            stuck.close(CloseCode::Policy, "slow consumer"),
            Err(QueueError::Full)
        );
    }
}
