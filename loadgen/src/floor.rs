//! The floor: the least a WebSocket server can do here. It holds connections and forwards a
//! message to one connection by id, with the same bounded per-connection queue as the dispatcher,
//! so the dispatcher's figures can be read as multiples of it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use futures_util::{SinkExt, StreamExt};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::{
    accept_hdr_async_with_config,
    tungstenite::{
        Message,
        handshake::server::{Request, Response},
        protocol::WebSocketConfig,
    },
};

const QUEUE: usize = 256;

#[derive(Clone, Default)]
pub struct Floor {
    connections: Arc<RwLock<HashMap<u64, mpsc::Sender<Message>>>>,
}

impl Floor {
    /// Queues `text` for the connection registered as `id`; false if absent or its queue is full.
    pub fn send(&self, id: u64, text: &str) -> bool {
        let connections = self.connections.read().unwrap();
        connections
            .get(&id)
            .is_some_and(|tx| tx.try_send(Message::text(text)).is_ok())
    }

    /// Serves on `listener` until the runtime ends.
    #[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let floor = self.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut id = None;
                let callback = |req: &Request, resp: Response| {
                    id = req.uri().query().and_then(|q| {
                        q.split('&')
                            .find_map(|kv| kv.strip_prefix("id="))
                            .and_then(|v| v.parse::<u64>().ok())
                    });
                    Ok(resp)
                };
                // As lean as the dispatcher's connections: a small read buffer, nothing kept for
                // writes, and one task that both reads and writes.
                let config = WebSocketConfig::default()
                    .read_buffer_size(256)
                    .write_buffer_size(0)
                    .max_write_buffer_size(64 * 1024);
                let Ok(mut ws) = accept_hdr_async_with_config(stream, callback, Some(config)).await
                else {
                    return;
                };
                let id = id.unwrap_or(u64::MAX);
                let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
                let _ = tx.try_send(Message::text(r#"{"type":"auth_success"}"#));
                floor.connections.write().unwrap().insert(id, tx.clone());
                loop {
                    tokio::select! {
                        queued = rx.recv() => {
                            let Some(message) = queued else { break };
                            if ws.send(message).await.is_err() {
                                break;
                            }
                        }
                        received = ws.next() => match received {
                            Some(Ok(Message::Text(text))) if text.contains("subscribe_assignments") => {
                                let _ = tx.try_send(Message::text(r#"{"type":"subscribed_assignments"}"#));
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
                floor.connections.write().unwrap().remove(&id);
            });
        }
    }
}

/// Runs the floor in this process on a runtime of its own; answers its address and handle.
pub fn start_in_process() -> (SocketAddr, Floor) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let floor = Floor::default();
    let served = floor.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { served.serve(TcpListener::from_std(listener).unwrap()).await });
    });
    (addr, floor)
}

/// `loadgen floor --port P`: the floor as a process of its own, for memory and reconnect figures.
pub fn serve_process(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("floor port");
        Floor::default().serve(listener).await;
    });
}
