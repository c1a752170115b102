//! Plain HTTP connections under `MAX_HTTP_CONNECTIONS`. At the cap a newcomer takes the place of
//! the connection idle longest (connected or kept alive, with no request being answered), so idle
//! sockets cannot shut `/health` and the API out; when every one is busy, it gets 503 at once.
//! The cap sits within the open-files budget, so a newcomer always has a file descriptor.
//! A WebSocket upgrade takes its socket out of this count: WebSockets have their own limits.

use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd, RawFd},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::domain::time::now_ms;

/// What a connection is doing, written by its reads and writes.
#[derive(Default)]
struct Activity {
    /// When it last read or wrote (ms).
    last: AtomicI64,
    /// It has read a request that is not answered yet.
    answering: AtomicBool,
}

struct Entry {
    fd: RawFd,
    activity: Arc<Activity>,
    /// Shut down to make room; it stops counting at once, and leaves when its owner drops it.
    evicted: bool,
}

/// The open plain HTTP connections.
pub struct HttpConnections {
    cap: usize,
    entries: Mutex<(u64, HashMap<u64, Entry>)>,
}

impl HttpConnections {
    pub fn new(cap: usize) -> Arc<HttpConnections> {
        Arc::new(HttpConnections {
            cap: cap.max(1),
            entries: Mutex::new((0, HashMap::new())),
        })
    }

    /// Counts a new connection in, closing the one idle longest if the cap is reached; `Err`
    /// gives the socket back when every connection is busy.
    pub fn admit(self: &Arc<Self>, io: TcpStream) -> Result<HttpConn, TcpStream> {
        let mut guard = self
            .entries
            .lock()
            .expect("no panic while the lock is held");
        let (next_key, entries) = &mut *guard;
        let open = entries.values().filter(|e| !e.evicted).count();
        if open >= self.cap {
            let idlest = entries
                .values_mut()
                .filter(|e| !e.evicted && !e.activity.answering.load(Ordering::Acquire))
                .min_by_key(|e| e.activity.last.load(Ordering::Acquire));
            let Some(idlest) = idlest else {
                return Err(io);
            };
            // SAFETY: the entry is removed, under this lock, before its socket is closed, so
            // the descriptor is still that socket's.
            unsafe { libc::shutdown(idlest.fd, libc::SHUT_RDWR) };
            idlest.evicted = true;
        }
        let activity = Arc::new(Activity::default());
        activity.last.store(now_ms(), Ordering::Release);
        *next_key += 1;
        let key = *next_key;
        entries.insert(
            key,
            Entry {
                fd: io.as_raw_fd(),
                activity: activity.clone(),
                evicted: false,
            },
        );
        Ok(HttpConn {
            io: Some(io),
            key,
            activity,
            registry: self.clone(),
        })
    }

    fn remove(&self, key: u64) {
        self.entries
            .lock()
            .expect("no panic while the lock is held")
            .1
            .remove(&key);
    }
}

/// A plain HTTP connection, counted while it lives.
pub struct HttpConn {
    /// Always there until `into_inner` takes it.
    io: Option<TcpStream>,
    key: u64,
    activity: Arc<Activity>,
    registry: Arc<HttpConnections>,
}

impl HttpConn {
    /// The socket, no longer counted here (a WebSocket upgrade).
    pub fn into_inner(mut self) -> TcpStream {
        self.registry.remove(self.key);
        self.io.take().expect("the socket is there until taken")
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.io.as_ref().and_then(|io| io.peer_addr().ok())
    }

    fn io(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.io.as_mut().expect("the socket is there until taken"))
    }

    /// An answer going out: the request is answered, and the connection idle from now on.
    fn wrote(&self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.answering.store(false, Ordering::Release);
            self.activity.last.store(now_ms(), Ordering::Release);
        }
        polled
    }
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        if self.io.is_some() {
            self.registry.remove(self.key);
        }
    }
}

impl AsyncRead for HttpConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.io().poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.answering.store(true, Ordering::Release);
            self.activity.last.store(now_ms(), Ordering::Release);
        }
        polled
    }
}

impl AsyncWrite for HttpConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.io().poll_write(cx, buf);
        self.wrote(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.io().poll_write_vectored(cx, bufs);
        self.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}
