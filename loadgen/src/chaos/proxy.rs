//! A TCP proxy that the run can cut (every connection through it is closed, and new ones are
//! refused) or slow (each chunk waits before it is passed on).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

/// How often a quiet connection checks whether it was cut.
const CHECK: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Link {
    cut: AtomicBool,
    delay_ms: AtomicU64,
}

/// Stops its connections when dropped.
pub struct Proxy {
    pub port: u16,
    link: Arc<Link>,
    _tasks: JoinSet<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let port = listener.local_addr().unwrap().port();
        let link = Arc::new(Link::default());
        let mut tasks = JoinSet::new();
        let accepting = link.clone();
        tasks.spawn(async move {
            // The connections live in this task's set, so they end with the proxy.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        if accepting.cut.load(Ordering::Relaxed) {
                            continue;
                        }
                        connections.spawn(relay(client, target, accepting.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Proxy {
            port,
            link,
            _tasks: tasks,
        }
    }

    pub fn cut(&self, cut: bool) {
        self.link.cut.store(cut, Ordering::Relaxed);
    }

    pub fn delay(&self, delay: Duration) {
        self.link
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

async fn relay(client: TcpStream, target: SocketAddr, link: Arc<Link>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending (or a cut) ends both.
    tokio::select! {
        _ = pump(client_read, server_write, &link) => {}
        _ = pump(server_read, client_write, &link) => {}
    }
}

/// Passes bytes on, each chunk `delay_ms` after it was read: a slower link, not a narrower one.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: &Link,
) {
    let (chunks, mut due) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if link.cut.load(Ordering::Relaxed) {
                return;
            }
            let n = match tokio::time::timeout(CHECK, from.read(&mut buf)).await {
                Err(_) => continue,
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
            };
            let delay = Duration::from_millis(link.delay_ms.load(Ordering::Relaxed));
            let at = tokio::time::Instant::now() + delay;
            if chunks.send((at, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if link.cut.load(Ordering::Relaxed) || to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The writer finishes what was read before the reader ended; a cut ends both.
    tokio::join!(read, write);
}
