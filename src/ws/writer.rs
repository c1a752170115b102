//! The task that drains a connection's queue into its socket.

use actix_ws::{CloseReason, Session};
use tokio::sync::mpsc;

use crate::{outbox::Outbound, wire::CloseCode};

/// Starts the writer task for `session`, draining `rx`.
pub fn spawn(session: Session, rx: mpsc::Receiver<Outbound>) -> tokio::task::JoinHandle<()> {
    actix_web::rt::spawn(write_frames(session, rx))
}

pub fn close_code(code: CloseCode) -> actix_ws::CloseCode {
    actix_ws::CloseCode::from(code as u16)
}

async fn write_frames(mut session: Session, mut rx: mpsc::Receiver<Outbound>) {
    while let Some(frame) = rx.recv().await {
        let sent = match frame {
            Outbound::Text(text) => session.text(text).await,
            Outbound::Ping => session.ping(b"").await,
            Outbound::Pong(payload) => session.pong(&payload).await,
            Outbound::Close(code, description) => {
                let reason = CloseReason {
                    code: close_code(code),
                    description: Some(description),
                };
                let _ = session.close(Some(reason)).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
