//! A connection's bounded outbound queue and the task that writes it to the socket.

use actix_web::web::Bytes;
use actix_ws::{CloseCode, CloseReason, Session};
use bytestring::ByteString;
use tokio::sync::mpsc::{self, error::TrySendError};

#[derive(Debug)]
pub enum Outbound {
    Text(ByteString),
    Ping,
    Pong(Bytes),
    Close(CloseReason),
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The client is not reading: the queue is at its limit.
    Full,
    /// The connection is gone.
    Closed,
}

/// The sending side of a connection's queue; cheap to clone, shared with the Dispatcher.
#[derive(Debug, Clone)]
pub struct Outbox(mpsc::Sender<Outbound>);

impl Outbox {
    /// Starts the writer task for `session` and returns the queue feeding it.
    pub fn spawn(session: Session, capacity: usize) -> (Outbox, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let writer = actix_web::rt::spawn(write_frames(session, rx));
        (Outbox(tx), writer)
    }

    pub fn push(&self, frame: Outbound) -> Result<(), QueueError> {
        self.0.try_send(frame).map_err(|e| match e {
            TrySendError::Full(_) => QueueError::Full,
            TrySendError::Closed(_) => QueueError::Closed,
        })
    }

    pub fn text(&self, text: ByteString) -> Result<(), QueueError> {
        self.push(Outbound::Text(text))
    }

    pub fn close(&self, code: CloseCode, description: &str) -> Result<(), QueueError> {
        self.push(Outbound::Close(CloseReason {
            code,
            description: Some(description.to_string()),
        }))
    }
}

async fn write_frames(mut session: Session, mut rx: mpsc::Receiver<Outbound>) {
    while let Some(frame) = rx.recv().await {
        let sent = match frame {
            Outbound::Text(text) => session.text(text).await,
            Outbound::Ping => session.ping(b"").await,
            Outbound::Pong(payload) => session.pong(&payload).await,
            Outbound::Close(reason) => {
                let _ = session.close(Some(reason)).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
