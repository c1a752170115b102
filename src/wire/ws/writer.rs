//! The task that drains a connection's queue into its socket. Each frame is encoded into a buffer
//! of its own size and written; no write buffer is kept between messages.

use actix_http::ws::{CloseReason, Codec, Message};
use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Encoder;

use std::sync::Arc;

use crate::{
    metrics::Metrics,
    protocol::CloseCode,
    router::outbox::{Drain, Outbound},
};

/// Starts the writer task for `io`, draining `rx`. After a close frame it shuts the socket's
/// write side at once: RFC 6455 §7.1.1 has the server close the TCP connection first.
pub fn spawn<W>(io: W, rx: Drain, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()>
where
    W: AsyncWrite + Unpin + 'static,
{
    actix_web::rt::spawn(write_frames(io, rx, metrics))
}

pub fn close_code(code: CloseCode) -> actix_http::ws::CloseCode {
    actix_http::ws::CloseCode::from(code as u16)
}

/// One frame, encoded for the server side (unmasked).
pub fn encode(message: Message) -> BytesMut {
    let mut frame = BytesMut::new();
    Codec::new()
        .encode(message, &mut frame)
        .expect("encoding a frame into memory cannot fail");
    frame
}

/// Writes each frame as it comes; every message the server sends is counted here, once, as it
/// leaves the queue for the socket.
async fn write_frames<W: AsyncWrite + Unpin>(mut io: W, mut rx: Drain, metrics: Arc<Metrics>) {
    while let Some(frame) = rx.next().await {
        rx.sent(&frame);
        let (message, last) = match frame {
            Outbound::Text(frame) | Outbound::Replayed(frame) => {
                metrics
                    .ws_messages_sent
                    .with_label_values(&[frame.kind])
                    .inc();
                (Message::Text(frame.text), false)
            }
            Outbound::Ping => (Message::Ping(Default::default()), false),
            Outbound::Pong(payload) => (Message::Pong(payload), false),
            Outbound::Close(code, description) => {
                let reason = CloseReason {
                    code: close_code(code),
                    description: Some(description).filter(|d| !d.is_empty()),
                };
                (Message::Close(Some(reason)), true)
            }
        };
        if io.write_all(&encode(message)).await.is_err() {
            return;
        }
        if last {
            break;
        }
    }
    let _ = io.shutdown().await;
}
