//! One actor per WebSocket connection: reads frames, answers directly, and registers with the Dispatcher
//! for pushes. Its outbound frames go through a bounded queue drained by a writer task.

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
    domain::AssignmentId,
    domain::time::{iso, now_iso, now_ms},
    domain::{AuthUser, Role},
    protocol::shapes::OrderView,
    protocol::{ClientMessage, CloseCode, ServerMessage, parse, topics_of},
    router::outbox::{Outbound, Outbox, QueueError},
    router::{
        Dispatcher, MAX_TOPICS,
        messages::{
            Acknowledged, Authenticated, CloseConnection, ConnId, Connect, Disconnect, PingClock,
            ReplayOffers, SubscribeAssignments, SubscribeEvents, SubscribeTopics,
            UnsubscribeAssignments, UnsubscribeTopics,
        },
    },
    service::error::AppError,
    wire::auth::{AuthError, Verified},
    wire::connection_limits::Admitted,
    wire::state::AppState,
};

/// How often the server checks that a peer is still there.
const HEARTBEAT: Duration = Duration::from_secs(60);
/// A peer silent this long gets a WebSocket ping; apps that ping every 45 s never need one.
const PING_WHEN_SILENT: Duration = Duration::from_secs(60);
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
    id: ConnId,
    app: web::Data<AppState>,
    outbox: Outbox,
    writer: tokio::task::JoinHandle<()>,
    peer: Peer,
    /// Its place under the connection limits, given back when the session ends.
    admitted: Admitted,
    user: Option<AuthUser>,
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
    last_ping: PingClock,
    /// The close code the server sent, for the metrics.
    closed_with: Option<CloseCode>,
    /// The task that queues `stats` frames, after `subscribe_stats`.
    stats: Option<tokio::task::JoinHandle<()>>,
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
        let writer = writer::spawn(write, queued);
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
                stats: None,
            }
        });
    }

    fn send(
        &mut self,
        ctx: &mut Context<Self>,
        message: &ServerMessage,
        request_id: Option<&Value>,
    ) {
        match self.outbox.text(message.encode(request_id)) {
            Ok(()) => self
                .app
                .metrics
                .ws_messages_sent
                .with_label_values(&[message.kind()])
                .inc(),
            Err(QueueError::Full) => self.close(ctx, CloseCode::Policy, "slow consumer"),
            Err(QueueError::Closed) => ctx.stop(),
        }
    }

    fn send_error(
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
        self.send(ctx, &ServerMessage::error(error), request_id);
    }

    /// Sends a close frame (or, when the queue is stuck, drops the socket) and stops the actor.
    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        self.closed_with.get_or_insert(code);
        if self.outbox.close(code, reason) == Err(QueueError::Full) {
            self.writer.abort();
        }
        ctx.stop();
    }

    /// Hands a message to the Dispatcher and waits for it to be taken before reading further frames.
    fn tell<M>(&self, ctx: &mut Context<Self>, message: M)
    where
        M: Message<Result = ()> + Send + 'static,
        Dispatcher: actix::Handler<M>,
    {
        let sent = self.app.dispatcher.send(message);
        ctx.wait(sent.into_actor(self).map(|result, _, ctx| {
            if result.is_err() {
                ctx.stop();
            }
        }));
    }

    fn authenticate(
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
    fn watch_token(&mut self, ctx: &mut Context<Self>, expires_at_ms: i64) {
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

    /// A new token for the same identity moves the deadline; any other leaves it as it was.
    fn refresh(
        &mut self,
        ctx: &mut Context<Self>,
        user: AuthUser,
        token: &str,
        request_id: Option<&Value>,
    ) {
        match self.app.jwt.verify(token) {
            Ok(verified) if verified.user == user => {
                self.watch_token(ctx, verified.expires_at_ms);
                let reply = ServerMessage::TokenRefreshed {
                    expires_at: iso(verified.expires_at_ms),
                };
                self.send(ctx, &reply, request_id);
            }
            Ok(_) => {
                let e = AppError::Forbidden(
                    "the new token must name the same user, role and master".into(),
                );
                self.send_error(ctx, &e, request_id);
            }
            Err(e) => self.send_error(ctx, &AppError::from(e), request_id),
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
            Ok(message) => self.on_message(ctx, message, request_id),
            Err(e) => self.send_error(ctx, &e, request_id.as_ref()),
        }
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<Self>,
        message: ClientMessage,
        request_id: Option<Value>,
    ) {
        let rid = request_id.as_ref();
        let (user, message) = match (self.user, message) {
            (_, ClientMessage::Ping) => {
                self.last_ping.touch();
                return self.send(
                    ctx,
                    &ServerMessage::Pong {
                        server_time: now_iso(),
                    },
                    rid,
                );
            }
            (None, ClientMessage::Auth { token }) => {
                let outcome = self.app.jwt.verify(&token);
                return self.authenticate(ctx, outcome, rid);
            }
            (Some(_), ClientMessage::Auth { .. }) => {
                let e = AppError::BadRequest("this connection is already authenticated".into());
                return self.send_error(ctx, &e, rid);
            }
            (None, _) => {
                let e = AppError::Unauthorized("authenticate first with an auth message".into());
                return self.send_error(ctx, &e, rid);
            }
            (Some(user), message) => (user, message),
        };
        match message {
            ClientMessage::SubscribeAssignments { acks } => {
                self.subscribe(ctx, user, acks, request_id)
            }
            ClientMessage::AckAssignment { assignment_id } => {
                let Some(user) = self.require_master(ctx, user, rid) else {
                    return;
                };
                self.tell(
                    ctx,
                    Acknowledged {
                        id: self.id,
                        assignment_id: AssignmentId(assignment_id),
                    },
                );
                let app = self.app.clone();
                let work = async move { app.service.acknowledge(user, assignment_id).await };
                ctx.spawn(work.into_actor(self).map(move |done, act, ctx| {
                    // An acknowledgement has no reply; only a failure is answered.
                    if let Err(e) = done {
                        act.send_error(ctx, &e, request_id.as_ref());
                    }
                }));
            }
            ClientMessage::UnsubscribeAssignments => {
                self.tell(ctx, UnsubscribeAssignments { id: self.id });
                self.send(
                    ctx,
                    &ServerMessage::UnsubscribedAssignments { reason: None },
                    rid,
                );
            }
            ClientMessage::SubscribeStats => {
                if user.role != Role::Admin {
                    let e = AppError::Forbidden("only admins subscribe to stats".into());
                    return self.send_error(ctx, &e, rid);
                }
                if self.stats.is_none() {
                    self.stats = Some(self.stream_stats());
                }
            }
            ClientMessage::SubscribeEvents => {
                if !user.role.is_staff() {
                    let e =
                        AppError::Forbidden("only service and admin connections get events".into());
                    return self.send_error(ctx, &e, rid);
                }
                self.tell(ctx, SubscribeEvents { id: self.id });
                self.send(ctx, &ServerMessage::SubscribedEvents, rid);
            }
            ClientMessage::AcceptAssignment { assignment_id } => {
                let Some(user) = self.require_master(ctx, user, rid) else {
                    return;
                };
                let app = self.app.clone();
                let work = async move {
                    let accepted = app.service.accept(user, assignment_id).await?;
                    Ok(ServerMessage::AssignmentAccepted {
                        assignment_id,
                        order_id: accepted.order.id,
                        order: OrderView::from(&accepted.order),
                    })
                };
                self.reply_when_done(ctx, work, request_id);
            }
            ClientMessage::RejectAssignment {
                assignment_id,
                reason,
            } => {
                let Some(user) = self.require_master(ctx, user, rid) else {
                    return;
                };
                let app = self.app.clone();
                let work = async move {
                    let rejected = app.service.reject(user, assignment_id, reason).await?;
                    Ok(ServerMessage::AssignmentRejected {
                        assignment_id,
                        order_id: rejected.order_id,
                    })
                };
                self.reply_when_done(ctx, work, request_id);
            }
            ClientMessage::RefreshToken { token } => self.refresh(ctx, user, &token, rid),
            ClientMessage::Subscribe { topics } => self.subscribe_topics(ctx, topics, request_id),
            ClientMessage::Unsubscribe { topics } => match topics_of(topics) {
                Ok(topics) => {
                    self.tell(
                        ctx,
                        UnsubscribeTopics {
                            id: self.id,
                            topics: topics.clone(),
                        },
                    );
                    self.send(ctx, &ServerMessage::Unsubscribed { topics }, rid);
                }
                Err(e) => self.send_error(ctx, &AppError::BadRequest(e), rid),
            },
            ClientMessage::Ping | ClientMessage::Auth { .. } => unreachable!("handled above"),
        }
    }

    /// Runs database work off the actor and answers with its outcome, echoing `request_id`.
    fn reply_when_done(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl Future<Output = Result<ServerMessage, AppError>> + 'static,
        request_id: Option<Value>,
    ) {
        ctx.spawn(work.into_actor(self).map(move |reply, act, ctx| {
            let request_id = request_id.as_ref();
            match reply {
                Ok(message) => act.send(ctx, &message, request_id),
                Err(e) => act.send_error(ctx, &e, request_id),
            }
        }));
    }

    /// Queues each new `stats` frame; a frame the connection has no room for is skipped, and
    /// the next one is newer.
    fn stream_stats(&self) -> tokio::task::JoinHandle<()> {
        let mut frames = self.app.stats_feed.listen();
        let outbox = self.outbox.clone();
        let metrics = self.app.metrics.clone();
        actix_web::rt::spawn(async move {
            while frames.changed().await.is_ok() {
                let frame = frames.borrow_and_update().clone();
                let Some(frame) = frame else { continue };
                match outbox.text(frame) {
                    Ok(()) => metrics.ws_messages_sent.with_label_values(&["stats"]).inc(),
                    Err(QueueError::Full) => continue,
                    Err(QueueError::Closed) => break,
                }
            }
        })
    }

    fn require_master(
        &mut self,
        ctx: &mut Context<Self>,
        user: AuthUser,
        request_id: Option<&Value>,
    ) -> Option<AuthUser> {
        if user.master().is_some() {
            return Some(user);
        }
        let e = AppError::Forbidden("only masters act on assignments".into());
        self.send_error(ctx, &e, request_id);
        None
    }

    /// Adds push topics, up to `MAX_TOPICS` per connection.
    fn subscribe_topics(
        &mut self,
        ctx: &mut Context<Self>,
        topics: Option<Vec<String>>,
        request_id: Option<Value>,
    ) {
        let topics = match topics_of(topics) {
            Ok(topics) => topics,
            Err(e) => return self.send_error(ctx, &AppError::BadRequest(e), request_id.as_ref()),
        };
        let asked = self.app.dispatcher.send(SubscribeTopics {
            id: self.id,
            topics: topics.clone(),
        });
        ctx.wait(asked.into_actor(self).map(move |answer, act, ctx| {
            let request_id = request_id.as_ref();
            match answer {
                Ok(Ok(())) => act.send(ctx, &ServerMessage::Subscribed { topics }, request_id),
                Ok(Err(_)) => {
                    let e = AppError::BadRequest(format!(
                        "a connection may subscribe to at most {MAX_TOPICS} topics"
                    ));
                    act.send_error(ctx, &e, request_id);
                }
                Err(_) => ctx.stop(),
            }
        }));
    }

    /// Subscribes, then replays the master's open offers so a reconnecting app misses nothing.
    fn subscribe(
        &mut self,
        ctx: &mut Context<Self>,
        user: AuthUser,
        acks: bool,
        request_id: Option<Value>,
    ) {
        let Some(master_id) = self
            .require_master(ctx, user, request_id.as_ref())
            .and_then(|u| u.master())
        else {
            return;
        };
        self.tell(ctx, SubscribeAssignments { id: self.id, acks });
        self.send(
            ctx,
            &ServerMessage::SubscribedAssignments,
            request_id.as_ref(),
        );
        let app = self.app.clone();
        let work = async move { app.service.pending_offers(master_id).await };
        ctx.spawn(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(offers) => act.tell(ctx, ReplayOffers { id: act.id, offers }),
                    Err(e) => act.send_error(ctx, &e, None),
                }),
        );
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let connect = Connect {
            id: self.id,
            outbox: self.outbox.clone(),
            control: ctx.address().recipient(),
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
        self.app.dispatcher.do_send(Disconnect { id: self.id });
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

/// Closes the connection on the Dispatcher's word (shutdown, slow consumer).
impl Handler<CloseConnection> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: CloseConnection, ctx: &mut Context<Self>) {
        self.close(ctx, msg.code, msg.reason);
    }
}
