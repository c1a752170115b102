//! One actor per WebSocket connection, keeping the transport: it reads frames, watches the
//! heartbeat and the token's deadline, limits the rate, and queues what goes out in a bounded
//! queue that a writer task drains. It registers with the router for pushes. What each client
//! message does is in [`commands`](super::commands).

use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, SpawnHandle,
    StreamHandler, WrapFuture,
};
use actix_web::web;
use serde_json::Value;
use tokio::net::TcpStream;

use super::{
    frames::{Frames, Inbound},
    rate_limit::{RateLimiter, Verdict},
    writer,
};
use crate::{
    domain::{
        AuthUser,
        time::{iso, now_iso, now_ms},
    },
    protocol::{CloseCode, ServerMessage, parse},
    router::{
        Router,
        messages::{
            Authenticated, CloseConnection, ConnId, Connect, Disconnect, PingClock, ReplayMore,
        },
        outbox::{Outbound, Outbox, QueueError},
    },
    service::{
        error::AppError,
        policy::{self, Permit, ReceiveOffers},
    },
    wire::{
        auth::{AuthError, Verified},
        connection_limits::Admitted,
        state::AppState,
    },
};

/// How often the server checks that a peer is still there.
const HEARTBEAT: Duration = Duration::from_secs(60);
/// A peer silent this long gets a WebSocket ping; apps that ping every 45 s never need one.
const PING_WHEN_SILENT: Duration = Duration::from_secs(60);
/// After its close frame, how long a connection reads on for the peer's close, and how much.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
const CLOSE_DISCARD_BYTES: u32 = 64 * 1024;
/// A peer silent this long (no frame, not even a pong) is gone.
const PEER_TIMEOUT: Duration = Duration::from_secs(150);

/// Where a connection comes from, for the logs (never its token).
#[derive(Debug, Clone)]
pub struct Peer {
    pub path: String,
    pub addr: String,
    pub origin: String,
    pub user_agent: String,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "path={} addr={} origin={:?} user_agent={:?}",
            self.path, self.addr, self.origin, self.user_agent
        )
    }
}

/// Logs about a connection with its id and user as fields, which `LOG_FORMAT=json` writes out.
macro_rules! conn_log {
    ($level:ident, $session:expr, $($arg:tt)+) => {
        log::$level!(
            conn_id = format!("{:016x}", $session.id).as_str(),
            user_id = $session.user.map(|u| u.user_id.0);
            $($arg)+
        )
    };
}

pub struct WsSession {
    pub(super) id: ConnId,
    pub(super) app: web::Data<AppState>,
    pub(super) outbox: Outbox,
    writer: tokio::task::JoinHandle<()>,
    peer: Peer,
    /// Its place under the connection limits, given back when the session ends.
    admitted: Admitted,
    pub(super) user: Option<AuthUser>,
    /// The outcome of a token given in the query string or header, handled once started.
    upgrade_auth: Option<Result<Verified, AuthError>>,
    /// The connection's one timer: the heartbeat check, and the token's warning and deadline.
    watch: Option<SpawnHandle>,
    /// When the heartbeat is next checked (ms since the epoch).
    next_heartbeat: i64,
    /// The token's `exp` (ms), and whether `token_expiring` has been sent for it.
    token_deadline: Option<(i64, bool)>,
    limiter: RateLimiter,
    last_heard: Instant,
    pub(super) last_ping: PingClock,
    /// The close code the server sent, for the metrics; once set, the connection is closing.
    closed_with: Option<CloseCode>,
    /// Bytes read and discarded since the close frame.
    discarded: u32,
    /// The task that queues `stats` frames, after `subscribe_stats`.
    pub(super) stats: Option<tokio::task::JoinHandle<()>>,
    pub(super) open_offers_read: OpenOffersRead,
}

/// The one read of a master's open offers a connection may have running, for a replay.
pub(super) enum OpenOffersRead {
    Idle,
    Running,
    /// Running, and asked for again since it started.
    Again(Permit<ReceiveOffers>),
    /// Running, and unsubscribed from since: its answer is dropped.
    Discard,
}

impl WsSession {
    /// Starts the session on an upgraded socket; `already_read` holds bytes that arrived with
    /// the handshake.
    pub fn start(
        id: ConnId,
        app: web::Data<AppState>,
        io: TcpStream,
        already_read: &[u8],
        peer: Peer,
        admitted: Admitted,
        upgrade_auth: Option<Result<Verified, AuthError>>,
    ) {
        let (read, write) = io.into_split();
        let (outbox, queued) = Outbox::channel(app.config.max_queued_bytes);
        let writer = writer::spawn(write, queued, app.metrics.clone());
        let frames = Frames::new(read, already_read, app.config.max_message_bytes);
        let limiter = RateLimiter::new(app.config.rate_limit_per_sec, app.config.rate_limit_burst);
        WsSession::create(move |ctx| {
            ctx.add_stream(frames);
            WsSession {
                id,
                app,
                outbox,
                writer,
                peer,
                admitted,
                user: None,
                upgrade_auth,
                watch: None,
                next_heartbeat: now_ms() + HEARTBEAT.as_millis() as i64,
                token_deadline: None,
                limiter,
                last_heard: Instant::now(),
                last_ping: PingClock::default(),
                closed_with: None,
                discarded: 0,
                stats: None,
                open_offers_read: OpenOffersRead::Idle,
            }
        });
    }

    pub(super) fn send(
        &mut self,
        ctx: &mut Context<Self>,
        message: &ServerMessage,
        request_id: Option<&Value>,
    ) {
        let queued = self.outbox.text(message.frame(request_id));
        self.on_queued(ctx, queued);
    }

    /// Closes a connection whose queue refused a frame: a slow consumer, or one already gone.
    pub(super) fn on_queued(&mut self, ctx: &mut Context<Self>, queued: Result<(), QueueError>) {
        match queued {
            Ok(()) => {}
            Err(QueueError::Full) => self.close(ctx, CloseCode::Policy, "slow consumer"),
            Err(QueueError::Closed) => ctx.stop(),
        }
    }

    pub(super) fn send_error(
        &mut self,
        ctx: &mut Context<Self>,
        error: &AppError,
        request_id: Option<&Value>,
    ) {
        self.app
            .metrics
            .ws_errors
            .with_label_values(&[error.code()])
            .inc();
        self.send(ctx, &ServerMessage::from(error), request_id);
    }

    /// Sends a close frame after what is queued (or, when the queue is stuck, drops the write
    /// side), then reads and discards what the peer still sends until it closes too, for
    /// `CLOSE_LINGER` or `CLOSE_DISCARD_BYTES` at most. A socket closed with unread input is
    /// reset, and the peer would lose the frames before the close, and the close itself.
    pub(super) fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        if self.closed_with.is_some() {
            return;
        }
        self.closed_with = Some(code);
        if self.outbox.close(code, reason) == Err(QueueError::Full) {
            self.writer.abort();
        }
        ctx.run_later(CLOSE_LINGER, |_, ctx| ctx.stop());
    }

    /// Hands a message to the router and waits for it to be taken before reading further frames.
    pub(super) fn tell<M>(&self, ctx: &mut Context<Self>, message: M)
    where
        M: Message<Result = ()> + Send + 'static,
        Router: actix::Handler<M>,
    {
        let sent = self.app.router.send(message);
        ctx.wait(sent.into_actor(self).map(|result, _, ctx| {
            if result.is_err() {
                ctx.stop();
            }
        }));
    }

    pub(super) fn authenticate(
        &mut self,
        ctx: &mut Context<Self>,
        outcome: Result<Verified, AuthError>,
        request_id: Option<&Value>,
    ) {
        match outcome {
            Ok(Verified {
                user,
                expires_at_ms,
            }) => {
                conn_log!(
                    info,
                    self,
                    "WebSocket {:016x} authenticated user={} role={:?} master={:?} {}",
                    self.id,
                    user.user_id,
                    user.role,
                    user.master_id,
                    self.peer
                );
                self.user = Some(user);
                self.admitted.authenticated();
                self.tell(ctx, Authenticated { id: self.id, user });
                self.watch_token(ctx, expires_at_ms);
                let reply = ServerMessage::AuthSuccess {
                    user_id: user.user_id,
                    role: user.role,
                    master_id: user.master(),
                };
                self.send(ctx, &reply, request_id);
            }
            Err(e) => {
                conn_log!(
                    warn,
                    self,
                    "WebSocket {:016x} refused: {e}; {}",
                    self.id,
                    self.peer
                );
                let reply = ServerMessage::AuthError {
                    message: e.to_string(),
                };
                self.send(ctx, &reply, request_id);
                self.close(ctx, CloseCode::Policy, "authentication failed");
            }
        }
    }

    /// Warns `TOKEN_EXPIRY_NOTICE_SECS` before the token's `exp` (at once if less is left), then
    /// closes at `exp`, unless a refresh moves the deadline first.
    pub(super) fn watch_token(&mut self, ctx: &mut Context<Self>, expires_at_ms: i64) {
        self.token_deadline = Some((expires_at_ms, false));
        self.arm_watch(ctx);
    }

    /// Sets the one timer for whatever is due first. A timer per concern would cost every idle
    /// connection more memory.
    fn arm_watch(&mut self, ctx: &mut Context<Self>) {
        if let Some(previous) = self.watch.take() {
            ctx.cancel_future(previous);
        }
        let notice = self.app.config.token_expiry_notice.as_millis() as i64;
        let token_event = self.token_deadline.map(|(exp, warned)| {
            if warned {
                exp
            } else {
                exp.saturating_sub(notice)
            }
        });
        let due = token_event.map_or(self.next_heartbeat, |t| t.min(self.next_heartbeat));
        let wait = Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64);
        self.watch = Some(ctx.run_later(wait, |act, ctx| {
            act.watch = None;
            act.on_watch(ctx);
        }));
    }

    fn on_watch(&mut self, ctx: &mut Context<Self>) {
        if self.closed_with.is_some() {
            return;
        }
        let now = now_ms();
        if let Some((exp, warned)) = self.token_deadline {
            if now >= exp {
                conn_log!(
                    info,
                    self,
                    "WebSocket {:016x} closed: token expired; {}",
                    self.id,
                    self.peer
                );
                return self.close(ctx, CloseCode::Policy, "token expired");
            }
            let notice = self.app.config.token_expiry_notice.as_millis() as i64;
            if !warned && now >= exp.saturating_sub(notice) {
                self.token_deadline = Some((exp, true));
                let expiring = ServerMessage::TokenExpiring {
                    expires_at: iso(exp),
                };
                self.send(ctx, &expiring, None);
            }
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT.as_millis() as i64;
            let silent = self.last_heard.elapsed();
            if silent > PEER_TIMEOUT {
                conn_log!(
                    info,
                    self,
                    "WebSocket {:016x} peer went silent; {}",
                    self.id,
                    self.peer
                );
                self.writer.abort();
                return ctx.stop();
            }
            if silent >= PING_WHEN_SILENT
                && self.outbox.push(Outbound::Ping) == Err(QueueError::Full)
            {
                return self.close(ctx, CloseCode::Policy, "slow consumer");
            }
        }
        if ctx.state().alive() {
            self.arm_watch(ctx);
        }
    }

    fn on_text(&mut self, ctx: &mut Context<Self>, text: &str) {
        match self.limiter.check(Instant::now()) {
            Verdict::Allowed => {}
            Verdict::Dropped => return self.send_error(ctx, &AppError::RateLimited, None),
            Verdict::Flooding => {
                conn_log!(
                    warn,
                    self,
                    "WebSocket {:016x} closed for flooding; {}",
                    self.id,
                    self.peer
                );
                return self.close(ctx, CloseCode::Policy, "too many messages");
            }
        }
        let incoming = parse(text);
        self.app
            .metrics
            .ws_messages_received
            .with_label_values(&[incoming.kind])
            .inc();
        let request_id = incoming.request_id;
        match incoming.message {
            Ok(message) => self.command(ctx, message, request_id),
            Err(e) => self.send_error(ctx, &AppError::from(e), request_id.as_ref()),
        }
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let connect = Connect {
            id: self.id,
            outbox: self.outbox.clone(),
            control: ctx.address().recipient(),
            replay_more: ctx.address().recipient(),
            last_ping: self.last_ping.clone(),
        };
        self.tell(ctx, connect);
        let connected = ServerMessage::Connected {
            connection_id: format!("{:016x}", self.id),
            server_time: now_iso(),
        };
        self.send(ctx, &connected, None);
        match self.upgrade_auth.take() {
            Some(outcome) => self.authenticate(ctx, outcome, None),
            None => {
                ctx.run_later(self.app.config.auth_timeout, |act, ctx| {
                    if act.user.is_none() {
                        conn_log!(
                            warn,
                            act,
                            "WebSocket {:016x} closed: no authentication in time; {}",
                            act.id,
                            act.peer
                        );
                        act.close(ctx, CloseCode::Policy, "authentication timeout");
                    }
                });
            }
        }
        if self.watch.is_none() {
            self.arm_watch(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(stats) = self.stats.take() {
            stats.abort();
        }
        // One message per connection lifetime, so bypassing the mailbox bound cannot pile up.
        self.app.router.do_send(Disconnect { id: self.id });
        let code = self
            .closed_with
            .map_or_else(|| "none".to_string(), |c| (c as u16).to_string());
        self.app.metrics.ws_closes.with_label_values(&[&code]).inc();
        conn_log!(
            info,
            self,
            "WebSocket {:016x} closed user={:?} {}",
            self.id,
            self.user.map(|u| u.user_id),
            self.peer
        );
    }
}

impl StreamHandler<Inbound> for WsSession {
    fn handle(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        if self.closed_with.is_some() {
            return self.discard(ctx, &item);
        }
        match item {
            Inbound::Text(text) => self.on_text(ctx, &text),
            Inbound::Binary => self.close(
                ctx,
                CloseCode::Unsupported,
                "binary frames are not supported",
            ),
            Inbound::Ping(payload) => {
                if self.outbox.push(Outbound::Pong(payload)) == Err(QueueError::Full) {
                    self.close(ctx, CloseCode::Policy, "slow consumer");
                }
            }
            Inbound::Pong => {}
            Inbound::Close => self.close(ctx, CloseCode::Normal, ""),
            Inbound::TooBig => self.close(ctx, CloseCode::Size, "message too big"),
            Inbound::Invalid(e) => {
                conn_log!(
                    info,
                    self,
                    "WebSocket {:016x} protocol error: {e}; {}",
                    self.id,
                    self.peer
                );
                self.close(ctx, CloseCode::Protocol, "protocol error");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl WsSession {
    /// What a closing connection still reads: the peer's close ends it, anything else is
    /// dropped unread, up to `CLOSE_DISCARD_BYTES`.
    fn discard(&mut self, ctx: &mut Context<Self>, item: &Inbound) {
        let size = match item {
            Inbound::Close => return ctx.stop(),
            Inbound::Text(text) => text.len(),
            Inbound::Ping(payload) => payload.len(),
            _ => 0,
        };
        // A frame's header, at least.
        self.discarded = self.discarded.saturating_add(size as u32 + 2);
        if self.discarded > CLOSE_DISCARD_BYTES {
            ctx.stop();
        }
    }
}

/// Reads the open offers again for a replay that left some out.
impl Handler<ReplayMore> for WsSession {
    type Result = ();

    fn handle(&mut self, _: ReplayMore, ctx: &mut Context<Self>) {
        let permit = self
            .user
            .and_then(|user| policy::permit::<ReceiveOffers>(user).ok());
        if let Some(permit) = permit {
            self.replay_open_offers(ctx, permit);
        }
    }
}

/// Closes the connection on the router's word (shutdown, slow consumer).
impl Handler<CloseConnection> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: CloseConnection, ctx: &mut Context<Self>) {
        self.close(ctx, msg.code, msg.reason);
    }
}
