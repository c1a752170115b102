//! A connection's bounded outbound queue. The Dispatcher and the session put frames in; the
//! session's writer task takes them out to the socket.

use actix_web::web::Bytes;
use bytestring::ByteString;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::wire::CloseCode;

#[derive(Debug)]
pub enum Outbound {
    Text(ByteString),
    Ping,
    Pong(Bytes),
    Close(CloseCode, String),
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
    /// A queue of `capacity` frames and its receiving end, for the writer task.
    pub fn channel(capacity: usize) -> (Outbox, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Outbox(tx), rx)
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
        self.push(Outbound::Close(code, description.to_string()))
    }
}
