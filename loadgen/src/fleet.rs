//! Many master connections held by real WebSocket clients with small buffers, and the recorder
//! that turns what they receive into latencies.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use dispatcher::{domain::Role, wire::auth::JwtKeys};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use hdrhistogram::Histogram;
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Send times by key, and the latency histogram of what arrived.
pub struct Recorder {
    start: Instant,
    /// Keys are send times (µs since the epoch), so sender and receiver may be separate processes.
    timestamped: bool,
    sent_us: Vec<AtomicU64>,
    hist: Mutex<Histogram<u64>>,
    received: AtomicU64,
}

impl Recorder {
    pub fn new(keys: usize) -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            timestamped: false,
            sent_us: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            hist: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()),
            received: AtomicU64::new(0),
        })
    }

    /// A recorder whose keys are the send times themselves.
    pub fn timestamped() -> Arc<Recorder> {
        Arc::new(Recorder {
            timestamped: true,
            ..Arc::into_inner(Recorder::new(0)).unwrap()
        })
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }

    pub fn mark_sent(&self, key: usize) {
        if let Some(slot) = self.sent_us.get(key) {
            slot.store(self.now_us(), Ordering::Relaxed);
        }
    }

    fn arrived(&self, key: usize) {
        if self.timestamped {
            let latency = unix_us().saturating_sub(key as u64).max(1);
            self.hist.lock().unwrap().saturating_record(latency);
            self.received.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(sent) = self.sent_us.get(key).map(|s| s.swap(0, Ordering::Relaxed)) else {
            return;
        };
        if sent == 0 {
            return; // a replay or a duplicate: not a new delivery
        }
        let latency = self.now_us().saturating_sub(sent).max(1);
        self.hist.lock().unwrap().saturating_record(latency);
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Latencies and count recorded since the last call.
    pub fn take(&self) -> (Histogram<u64>, u64) {
        let mut hist = self.hist.lock().unwrap();
        let taken = hist.clone();
        hist.reset();
        (taken, self.received.swap(0, Ordering::Relaxed))
    }
}

pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// How a pushed message maps to a recorder key.
#[derive(Clone, Copy)]
pub struct KeyScheme {
    /// Number of masters: an offer's key is `orderId * masters + first + master index`.
    pub masters: usize,
    /// The index of this fleet's first master among all masters of the run.
    pub first: usize,
}

pub struct MasterConn {
    sink: Arc<tokio::sync::Mutex<Sink>>,
    reader: JoinHandle<()>,
    stalled: Arc<AtomicBool>,
}

impl Drop for MasterConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

pub struct Fleet {
    pub conns: Vec<MasterConn>,
    pub recorder: Arc<Recorder>,
    pub closed: Arc<AtomicU64>,
    scheme: KeyScheme,
    tokens: Vec<String>,
    offset: i64,
    source_ips: u8,
}

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
}

impl Fleet {
    /// Mints a token for each master index `offset..offset + count`; ids on the wire are the
    /// index plus 1, since the service takes only positive ids.
    pub fn new(
        jwt_secret: &str,
        count: usize,
        offset: i64,
        source_ips: u8,
        recorder: Arc<Recorder>,
    ) -> Fleet {
        let keys = JwtKeys::new(jwt_secret);
        let tokens = (0..count as i64)
            .map(|i| {
                keys.mint(
                    100_000 + offset + i,
                    Role::Master,
                    Some(offset + i + 1),
                    24 * 3600,
                )
            })
            .collect();
        Fleet {
            conns: Vec::new(),
            recorder,
            closed: Arc::new(AtomicU64::new(0)),
            scheme: KeyScheme {
                masters: count,
                first: 0,
            },
            tokens,
            offset,
            source_ips: source_ips.max(1),
        }
    }

    /// Makes this fleet one part of `total` masters, its first being master `offset`, so that
    /// offers keyed over all masters are recognised.
    pub fn part_of(mut self, total: usize) -> Fleet {
        self.scheme = KeyScheme {
            masters: total,
            first: self.offset as usize,
        };
        self
    }

    /// Connects, authenticates and subscribes every master; answers the failures.
    pub async fn connect_all(&mut self, server: SocketAddr, concurrency: usize) -> usize {
        let jobs = (0..self.tokens.len()).map(|i| {
            let token = self.tokens[i].clone();
            let source = Ipv4Addr::new(127, 0, 0, 1 + (i % self.source_ips as usize) as u8);
            let (recorder, closed, scheme) =
                (self.recorder.clone(), self.closed.clone(), self.scheme);
            let master_id = self.offset + i as i64 + 1;
            async move {
                connect_master(
                    server, source, i, master_id, &token, recorder, closed, scheme,
                )
                .await
            }
        });
        let results: Vec<_> = futures_util::stream::iter(jobs)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut failures = 0;
        self.conns.clear();
        for result in results {
            match result {
                Ok(conn) => self.conns.push(conn),
                Err(e) => {
                    failures += 1;
                    if failures <= 3 {
                        eprintln!("connect failed: {e}");
                    }
                }
            }
        }
        failures
    }

    /// Pings from the connection at `index` (wrapping around the fleet).
    pub async fn ping(&self, index: usize) {
        if let Some(conn) = self.conns.get(index % self.conns.len().max(1)) {
            let _ = conn
                .sink
                .lock()
                .await
                .send(Message::text(r#"{"type":"ping"}"#))
                .await;
        }
    }

    /// Drops every connection at once (as a network blip would).
    pub async fn drop_all(&mut self) {
        for mut conn in self.conns.drain(..) {
            conn.reader.abort();
            // The socket closes once both halves are gone; wait for the reader's half.
            let _ = (&mut conn.reader).await;
        }
    }

    /// Makes the first `count` connections stop reading.
    pub fn stall(&self, count: usize) {
        for conn in self.conns.iter().take(count) {
            conn.stalled.store(true, Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect_master(
    server: SocketAddr,
    source: Ipv4Addr,
    index: usize,
    master_id: i64,
    token: &str,
    recorder: Arc<Recorder>,
    closed: Arc<AtomicU64>,
    scheme: KeyScheme,
) -> Result<MasterConn, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if source != Ipv4Addr::LOCALHOST {
        socket
            .bind(SocketAddr::new(IpAddr::V4(source), 0))
            .map_err(|e| e.to_string())?;
    }
    let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    // `id` is for the floor, which routes by it; the dispatcher reads the token.
    let url = format!("ws://{server}/ws?token={token}&id={master_id}");
    let (mut ws, _) = client_async_with_config(url, stream, Some(client_config()))
        .await
        .map_err(|e| e.to_string())?;
    expect_type(&mut ws, "auth_success").await?;
    ws.send(Message::text(r#"{"type":"subscribe_assignments"}"#))
        .await
        .map_err(|e| e.to_string())?;
    expect_type(&mut ws, "subscribed_assignments").await?;
    let (sink, mut stream) = ws.split();
    let stalled = Arc::new(AtomicBool::new(false));
    let stall = stalled.clone();
    let reader = tokio::spawn(async move {
        loop {
            if stall.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    if let Some(key) = key_of(&text, index, scheme) {
                        recorder.arrived(key);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    });
    Ok(MasterConn {
        sink: Arc::new(tokio::sync::Mutex::new(sink)),
        reader,
        stalled,
    })
}

/// Reads until a message of `kind`, skipping others (such as replayed offers).
async fn expect_type(ws: &mut WebSocketStream<TcpStream>, kind: &str) -> Result<(), String> {
    let wanted = format!("\"type\":\"{kind}\"");
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| format!("no {kind} in time"))?;
        match next {
            Some(Ok(Message::Text(t))) if t.contains(&wanted) => return Ok(()),
            Some(Ok(Message::Text(t))) if t.contains("\"type\":\"auth_error\"") => {
                return Err(t.to_string());
            }
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => return Err(format!("waiting for {kind}: {other:?}")),
        }
    }
}

/// The recorder key of a pushed frame, read without a full JSON parse.
fn key_of(text: &str, index: usize, scheme: KeyScheme) -> Option<usize> {
    let order_id = number_after(text, "\"orderId\":")?;
    if text.contains("\"type\":\"new_assignment\"") {
        Some((order_id.checked_sub(1)?) * scheme.masters + scheme.first + index)
    } else if text.contains("\"type\":\"order_status_update\"") {
        Some(order_id)
    } else {
        None
    }
}

fn number_after(text: &str, field: &str) -> Option<usize> {
    let start = text.find(field)? + field.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}
