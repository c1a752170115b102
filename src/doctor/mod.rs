//! `dispatcher doctor URL --token T`: the troubleshooting checklist as a tool. It opens a WebSocket the
//! way an app does, one step at a time (URL, DNS, TCP, TLS, upgrade, origin, authentication,
//! subscription, round trips, an idle hold, the close), and on the first failure says what it
//! most likely means and how to fix it. Blocking code: it is a command, not part of the server.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, protocol::Role};

use dispatcher::protocol::close;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A certificate this close to expiry is warned about.
const EXPIRY_WARNING_DAYS: i32 = 14;

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub token: String,
    pub origin: Option<String>,
    pub hold: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub ms: u128,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A step that failed: what was seen, and the fix.
struct Failed(String, Option<String>);

impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Self {
        Failed(e.to_string(), None)
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

struct Target {
    secure: bool,
    host: String,
    port: u16,
    path: String,
}

/// Runs every step in order, up to the first that fails.
pub fn run(options: &Options) -> Vec<Step> {
    let mut doctor = Doctor {
        steps: Vec::new(),
        options: options.clone(),
    };
    let _ = doctor.examine();
    doctor.steps
}

struct Doctor {
    steps: Vec<Step>,
    options: Options,
}

impl Doctor {
    /// Times `work` as step `name`; a failure stops the run.
    fn step<T>(
        &mut self,
        name: &'static str,
        work: impl FnOnce(&mut Self) -> Result<(T, String), Failed>,
    ) -> Result<T, ()> {
        let started = Instant::now();
        let outcome = work(self);
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok((value, detail)) => {
                self.steps.push(Step {
                    step: name,
                    ok: true,
                    ms,
                    detail,
                    fix: None,
                });
                Ok(value)
            }
            Err(Failed(detail, fix)) => {
                self.steps.push(Step {
                    step: name,
                    ok: false,
                    ms,
                    detail,
                    fix,
                });
                Err(())
            }
        }
    }

    fn examine(&mut self) -> Result<(), ()> {
        let target = self.step("url", |d| parse_url(&d.options.url))?;
        let addrs = self.step("dns", |_| resolve(&target))?;
        let tcp = self.step("tcp", |_| connect(&addrs))?;
        // The same socket, for setting read timeouts under TLS and the WebSocket.
        let socket = tcp.try_clone().map_err(drop)?;
        let stream: Box<dyn Stream> = if target.secure {
            self.step("tls", |_| tls(&target, tcp))?
        } else {
            Box::new(tcp)
        };
        let origin = self
            .options
            .origin
            .clone()
            .unwrap_or_else(|| format!("https://{}", target.host));
        let stream = self.step("upgrade", |_| upgrade(stream, &target, &origin))?;
        let mut ws = WebSocket::from_raw_socket(stream, Role::Client, None);
        self.step("origin", |_| first_frame(&mut ws, &origin))?;
        let token = self.options.token.clone();
        let role = self.step("auth", |_| authenticate(&mut ws, &token))?;
        if role == "master" {
            self.step("subscribe", |_| subscribe(&mut ws, &socket))?;
        }
        self.step("round trip", |_| round_trips(&mut ws))?;
        let hold = self.options.hold;
        self.step("hold", |_| hold_idle(&mut ws, &socket, hold))?;
        self.step("close", |_| close(&mut ws))?;
        Ok(())
    }
}

fn parse_url(url: &str) -> Result<(Target, String), Failed> {
    let (secure, rest) = if let Some(rest) = url.strip_prefix("wss://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("ws://") {
        (false, rest)
    } else {
        return Err(Failed(
            format!("{url} is not a WebSocket URL"),
            Some("use ws://host:port/api/v1/ws, or wss:// behind TLS".into()),
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path_only = path.split('?').next().unwrap_or("/");
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
            host.trim_matches(['[', ']']).to_string(),
            port.parse()
                .map_err(|_| Failed(format!("the port in {url} is not a number"), None))?,
        ),
        _ => (authority.to_string(), if secure { 443 } else { 80 }),
    };
    // A proxy may map another path to the server's, so an unusual one is a hint, not a failure.
    let hint = if ["/ws", "/api/v1/ws"].contains(&path_only) {
        ""
    } else {
        " (hint: dispatcher serves /api/v1/ws and /ws; another path works only if a proxy maps it)"
    };
    let detail = format!(
        "{} to {host} port {port}, path {path_only}{hint}",
        if secure { "TLS" } else { "plain TCP" }
    );
    Ok((
        Target {
            secure,
            host,
            port,
            path,
        },
        detail,
    ))
}

fn resolve(target: &Target) -> Result<(Vec<SocketAddr>, String), Failed> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| {
            Failed(
                format!("{} does not resolve: {e}", target.host),
                Some("check the host name and the DNS record".into()),
            )
        })?
        .collect();
    let listed = addrs
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Ok((addrs, listed))
}

fn connect(addrs: &[SocketAddr]) -> Result<(TcpStream, String), Failed> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(tcp) => {
                tcp.set_read_timeout(Some(ANSWER_TIMEOUT))?;
                return Ok((tcp, format!("connected to {addr}")));
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(Failed(
        format!("cannot connect: {}", last.unwrap_or_default()),
        Some(
            "is the server (or its proxy) running and reachable on that port? Check firewalls"
                .into(),
        ),
    ))
}

fn tls(target: &Target, tcp: TcpStream) -> Result<(Box<dyn Stream>, String), Failed> {
    use openssl::{
        asn1::Asn1Time,
        ssl::{SslConnector, SslMethod},
    };
    let connector = SslConnector::builder(SslMethod::tls())
        .map_err(|e| Failed(format!("TLS is not available: {e}"), None))?
        .build();
    let stream = connector.connect(&target.host, tcp).map_err(|e| {
        let text = e.to_string();
        let fix = if text.contains("self-signed") || text.contains("self signed") {
            "the certificate is self-signed: phones and browsers refuse it; use one from a public CA (Let's Encrypt)"
        } else if text.contains("hostname mismatch") || text.contains("Hostname mismatch") {
            "the certificate does not name this host; issue one for it"
        } else if text.contains("expired") {
            "the certificate has expired; renew it"
        } else {
            "check the certificate chain (serve fullchain.pem, not cert.pem) and that the port speaks TLS"
        };
        Failed(format!("the TLS handshake failed: {text}"), Some(fix.into()))
    })?;
    let ssl = stream.ssl();
    let version = ssl.version_str();
    let days = ssl
        .peer_certificate()
        .and_then(|cert| {
            let now = Asn1Time::days_from_now(0).ok()?;
            now.diff(cert.not_after()).ok().map(|d| d.days)
        })
        .unwrap_or(0);
    if days < EXPIRY_WARNING_DAYS {
        return Err(Failed(
            format!("{version}, but the certificate expires in {days} days"),
            Some("renew the certificate now".into()),
        ));
    }
    Ok((
        Box::new(stream),
        format!(
            "{version}, certificate trusted for {}, expires in {days} days",
            target.host
        ),
    ))
}

fn upgrade(
    mut stream: Box<dyn Stream>,
    target: &Target,
    origin: &str,
) -> Result<(Box<dyn Stream>, String), Failed> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\nUser-Agent: dispatcher-doctor\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(request.as_bytes())?;
    let head = read_head(&mut stream)?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_string();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let server = header("server");
    let served_by = server
        .as_ref()
        .map(|s| format!(" (Server: {s})"))
        .unwrap_or_default();
    let upgraded = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if status == 101 && upgraded {
        return Ok((stream, format!("101 Switching Protocols{served_by}")));
    }
    let nginx = "nginx needs: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; \
                 proxy_set_header Connection \"upgrade\";";
    let (meaning, fix) = match status {
        101 => ("101 without Upgrade: websocket", nginx.to_string()),
        200 => (
            "200: a proxy in front answered as for a page, without the Upgrade headers",
            nginx.to_string(),
        ),
        301 | 302 | 307 | 308 => (
            "a redirect: WebSocket clients do not follow it",
            format!(
                "use the final URL (Location: {})",
                header("location").unwrap_or_default()
            ),
        ),
        400 => (
            "400: the server got a plain GET, so a proxy in front dropped the Upgrade headers",
            nginx.to_string(),
        ),
        404 => (
            "404: nothing at this path",
            "the WebSocket is at /api/v1/ws; check the proxy's location block too".to_string(),
        ),
        426 => (
            "426: the server wants an upgrade it did not get",
            nginx.to_string(),
        ),
        429 => (
            "429: too many connections from this address are not signed in yet",
            "set TRUSTED_PROXIES to the proxy's address, so clients are told apart".to_string(),
        ),
        503 => (
            "503: the server is at MAX_CONNECTIONS",
            "raise MAX_CONNECTIONS and the open-files limit, or add a node".to_string(),
        ),
        _ => ("an unexpected answer", nginx.to_string()),
    };
    Err(Failed(
        format!("{status_line}: {meaning}{served_by}"),
        Some(fix),
    ))
}

fn read_head(stream: &mut Box<dyn Stream>) -> Result<String, Failed> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(Failed(
                    "the connection closed before an answer".into(),
                    Some("a proxy or the server dropped the request; check their logs".into()),
                ));
            }
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(Failed(format!("no answer to the upgrade: {e}"), None)),
        }
        if head.len() > 16 * 1024 {
            return Err(Failed("the answer's head is over 16 KiB".into(), None));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

type Socket = WebSocket<Box<dyn Stream>>;

/// A read that ended for its timeout, not for the connection.
fn timed_out(error: &tungstenite::Error) -> bool {
    matches!(error, tungstenite::Error::Io(e) if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

/// The next text message as JSON; a close is a failure explained from the close-code table.
fn next_message(ws: &mut Socket) -> Result<Value, Failed> {
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                return serde_json::from_str(&text)
                    .map_err(|e| Failed(format!("a frame that is not JSON: {e}"), None));
            }
            Ok(Message::Close(frame)) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return Err(closed(code, &reason));
            }
            Ok(_) => continue,
            Err(e) if timed_out(&e) => {
                return Err(Failed("no answer within 10 s".into(), None));
            }
            Err(e) => return Err(closed_abnormally(&e.to_string())),
        }
    }
}

fn closed(code: u16, reason: &str) -> Failed {
    let cause = close::explain(code, reason);
    Failed(
        format!(
            "closed with {code} {reason:?}: {}",
            cause.map_or("a code this server does not send", |c| c.meaning)
        ),
        cause.map(|c| c.fix.to_string()),
    )
}

fn closed_abnormally(error: &str) -> Failed {
    let mut failed = closed(1006, "");
    failed.0 = format!(
        "the connection ended without a close frame ({error}): {}",
        failed.0
    );
    failed
}

fn send(ws: &mut Socket, message: Value) -> Result<(), Failed> {
    ws.send(Message::text(message.to_string()))
        .map_err(|e| closed_abnormally(&e.to_string()))
}

fn first_frame(ws: &mut Socket, origin: &str) -> Result<((), String), Failed> {
    let first = next_message(ws).map_err(|mut failed| {
        if failed.0.contains("origin not allowed") {
            failed.1 = Some(format!(
                "{origin} is not in ALLOWED_ORIGINS: add it, or unset ALLOWED_ORIGINS. Mobile apps send \
                 no browser origin and are always let in; pass --origin to test another"
            ));
        }
        failed
    })?;
    if first["type"] != "connected" {
        return Err(Failed(format!("expected connected, got {first}"), None));
    }
    Ok(((), format!("{origin} accepted")))
}

fn authenticate(ws: &mut Socket, token: &str) -> Result<(String, String), Failed> {
    send(ws, json!({"type": "auth", "token": token}))?;
    loop {
        let answer = next_message(ws)?;
        match answer["type"].as_str() {
            Some("auth_success") => {
                let role = answer["role"].as_str().unwrap_or("?").to_string();
                let detail = format!("signed in as {role}, user {}", answer["userId"]);
                return Ok((role, detail));
            }
            Some("auth_error") => {
                let message = answer["message"].as_str().unwrap_or_default().to_string();
                let fix = if message.contains("xpired") {
                    "the token has expired: get a fresh one from the platform"
                } else if message.contains("ignature") {
                    "the token was signed with another secret: the issuer and every node must share JWT_SECRET"
                } else {
                    "check the token (a JWT with sub, role and exp)"
                };
                return Err(Failed(format!("auth_error: {message}"), Some(fix.into())));
            }
            _ => continue,
        }
    }
}

fn subscribe(ws: &mut Socket, socket: &TcpStream) -> Result<((), String), Failed> {
    send(ws, json!({"type": "subscribe_assignments"}))?;
    let mut replayed = 0;
    loop {
        let message = next_message(ws)?;
        match message["type"].as_str() {
            Some("subscribed_assignments") => break,
            Some("new_assignment") => replayed += 1,
            _ => {}
        }
    }
    // Open offers follow the confirmation, paced.
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    while let Ok(message) = next_message(ws) {
        if message["type"] == "new_assignment" {
            replayed += 1;
        }
    }
    socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(((), format!("subscribed; {replayed} open offers replayed")))
}

fn round_trips(ws: &mut Socket) -> Result<((), String), Failed> {
    let mut times = Vec::new();
    let mut skew_ms = 0i64;
    for _ in 0..10 {
        let sent = Instant::now();
        let sent_at = chrono::Utc::now();
        send(ws, json!({"type": "ping"}))?;
        loop {
            let message = next_message(ws)?;
            if message["type"] == "pong" {
                let rtt = sent.elapsed();
                if let Some(server) = message["serverTime"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                {
                    let midpoint =
                        sent_at + chrono::Duration::from_std(rtt / 2).unwrap_or_default();
                    skew_ms = (server.with_timezone(&chrono::Utc) - midpoint).num_milliseconds();
                }
                times.push(rtt);
                break;
            }
        }
    }
    times.sort();
    Ok((
        (),
        format!(
            "10 pings: p50 {:.1} ms, max {:.1} ms; the server's clock is {skew_ms:+} ms off this one",
            times[4].as_secs_f64() * 1000.0,
            times[9].as_secs_f64() * 1000.0
        ),
    ))
}

fn hold_idle(ws: &mut Socket, socket: &TcpStream, hold: Duration) -> Result<((), String), Failed> {
    let started = Instant::now();
    while started.elapsed() < hold {
        let left = hold - started.elapsed();
        socket.set_read_timeout(Some(left.max(Duration::from_millis(10))))?;
        match ws.read() {
            Ok(_) => continue,
            Err(e) if timed_out(&e) => {
                continue;
            }
            Err(e) => {
                // Rounded: the proxy's clock started at the server's last frame, just before ours.
                let after = started.elapsed().as_secs_f64().round() as u64;
                let mut failed = closed_abnormally(&e.to_string());
                failed.0 = format!("the idle connection was cut after {after} s: {}", failed.0);
                failed.1 = Some(format!(
                    "a proxy's idle timeout cut it after about {after} s (nginx's proxy_read_timeout \
                     defaults to 60 s); the server may stay silent for 120 s, so set \
                     proxy_read_timeout 300s"
                ));
                return Err(failed);
            }
        }
    }
    socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(((), format!("idle for {} s and still open", hold.as_secs())))
}

fn close(ws: &mut Socket) -> Result<((), String), Failed> {
    ws.close(None)
        .map_err(|e| Failed(format!("cannot send a close frame: {e}"), None))?;
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                let _ = ws.flush();
                return Ok(((), format!("closed cleanly with {code}")));
            }
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => {
                return Ok(((), "closed cleanly".into()));
            }
            Err(e) => return Err(Failed(format!("no clean close: {e}"), None)),
        }
    }
}

/// Prints the steps for a person, or as JSON; answers whether all passed.
pub fn report(steps: &[Step], as_json: bool) -> bool {
    let passed = steps.iter().all(|s| s.ok) && steps.last().is_some_and(|s| s.step == "close");
    if as_json {
        println!("{}", json!({ "ok": passed, "steps": steps }));
        return passed;
    }
    for step in steps {
        let mark = if step.ok { "✔" } else { "✖" };
        println!(
            "{mark} {:<11} {:>6} ms  {}",
            step.step, step.ms, step.detail
        );
        if let Some(fix) = &step.fix {
            println!("  fix: {fix}");
        }
    }
    passed
}
