//! What each client message does: one function per message, from the message to the service
//! (or the router) and back to the reply. The session keeps the transport; the policy decides
//! who may act.

use actix::{ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use serde_json::Value;

use super::session::{OpenOffersRead, WsSession};
use crate::{
    domain::{
        AssignmentId, AuthUser,
        input::{RejectReason, Topics},
        time::{iso, now_iso},
    },
    protocol::{ClientMessage, ServerMessage, shapes::OrderView},
    router::{
        messages::{
            Acknowledged, ReplayOffers, SubscribeAssignments, SubscribeEvents, SubscribeTopics,
            UnsubscribeAssignments, UnsubscribeTopics,
        },
        outbox::QueueError,
    },
    service::{
        error::AppError,
        policy::{self, DecideOffers, Permit, ReceiveOffers, UseCase, WatchEvents, WatchStats},
    },
};

type Ctx = Context<WsSession>;

impl WsSession {
    /// Runs one client message. Before authentication only `ping` and `auth` are taken.
    pub(super) fn command(
        &mut self,
        ctx: &mut Ctx,
        message: ClientMessage,
        request_id: Option<Value>,
    ) {
        let rid = request_id.as_ref();
        let user = match (self.user, &message) {
            (_, ClientMessage::Ping) => return self.ping(ctx, rid),
            (None, ClientMessage::Auth { token }) => {
                let outcome = self.app.jwt.verify(token);
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
            (Some(user), _) => user,
        };
        match message {
            ClientMessage::SubscribeAssignments { acks } => {
                self.subscribe_assignments(ctx, user, acks, request_id)
            }
            ClientMessage::UnsubscribeAssignments => self.unsubscribe_assignments(ctx, rid),
            ClientMessage::AckAssignment { assignment_id } => {
                self.ack_assignment(ctx, user, assignment_id, request_id)
            }
            ClientMessage::AcceptAssignment { assignment_id } => {
                self.accept_assignment(ctx, user, assignment_id, request_id)
            }
            ClientMessage::RejectAssignment {
                assignment_id,
                reason,
            } => self.reject_assignment(ctx, user, assignment_id, reason, request_id),
            ClientMessage::SubscribeEvents => self.subscribe_events(ctx, user, rid),
            ClientMessage::SubscribeStats => self.subscribe_stats(ctx, user, rid),
            ClientMessage::RefreshToken { token } => self.refresh_token(ctx, user, &token, rid),
            ClientMessage::Subscribe { topics } => self.subscribe(ctx, topics, request_id),
            ClientMessage::Unsubscribe { topics } => self.unsubscribe(ctx, topics, rid),
            ClientMessage::Ping | ClientMessage::Auth { .. } => unreachable!("handled above"),
        }
    }

    fn ping(&mut self, ctx: &mut Ctx, rid: Option<&Value>) {
        self.last_ping.touch();
        let pong = ServerMessage::Pong {
            server_time: now_iso(),
        };
        self.send(ctx, &pong, rid);
    }

    /// Subscribes, then replays the master's open offers so a reconnecting app misses nothing.
    fn subscribe_assignments(
        &mut self,
        ctx: &mut Ctx,
        user: AuthUser,
        acks: bool,
        request_id: Option<Value>,
    ) {
        let Some(permit) = self.permitted::<ReceiveOffers>(ctx, user, request_id.as_ref()) else {
            return;
        };
        self.tell(ctx, SubscribeAssignments { id: self.id, acks });
        self.send(
            ctx,
            &ServerMessage::SubscribedAssignments,
            request_id.as_ref(),
        );
        self.replay_open_offers(ctx, permit);
    }

    /// Reads the master's open offers for the router to replay. A connection has one read at a
    /// time: asked again meanwhile, it reads once more when that one is done, since offers made
    /// between the two may be missing from the first.
    pub(super) fn replay_open_offers(&mut self, ctx: &mut Ctx, permit: Permit<ReceiveOffers>) {
        if !matches!(self.open_offers_read, OpenOffersRead::Idle) {
            self.open_offers_read = OpenOffersRead::Again(permit);
            return;
        }
        self.open_offers_read = OpenOffersRead::Running;
        let app = self.app.clone();
        let work = async move { app.service.open_offers(permit).await };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            match std::mem::replace(&mut act.open_offers_read, OpenOffersRead::Idle) {
                OpenOffersRead::Again(permit) => act.replay_open_offers(ctx, permit),
                OpenOffersRead::Idle | OpenOffersRead::Discard => {}
                OpenOffersRead::Running => match result {
                    Ok(offers) => act.tell(ctx, ReplayOffers { id: act.id, offers }),
                    Err(e) => act.send_error(ctx, &e, None),
                },
            }
        }));
    }

    fn unsubscribe_assignments(&mut self, ctx: &mut Ctx, rid: Option<&Value>) {
        if !matches!(self.open_offers_read, OpenOffersRead::Idle) {
            // Its answer is of no use now.
            self.open_offers_read = OpenOffersRead::Discard;
        }
        self.tell(ctx, UnsubscribeAssignments { id: self.id });
        let reply = ServerMessage::UnsubscribedAssignments { reason: None };
        self.send(ctx, &reply, rid);
    }

    /// The app's receipt of an offer: no reply, only a failure is answered.
    fn ack_assignment(
        &mut self,
        ctx: &mut Ctx,
        user: AuthUser,
        assignment_id: i64,
        request_id: Option<Value>,
    ) {
        let Some(permit) = self.permitted::<DecideOffers>(ctx, user, request_id.as_ref()) else {
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
        let work = async move { app.service.acknowledge(permit, assignment_id).await };
        ctx.spawn(work.into_actor(self).map(move |done, act, ctx| {
            if let Err(e) = done {
                act.send_error(ctx, &e, request_id.as_ref());
            }
        }));
    }

    /// The winner's `assignment_accepted` is queued before the decision is published, so it
    /// reaches the socket ahead of the `order_status_update` the same decision sends.
    fn accept_assignment(
        &mut self,
        ctx: &mut Ctx,
        user: AuthUser,
        assignment_id: i64,
        request_id: Option<Value>,
    ) {
        let Some(permit) = self.permitted::<DecideOffers>(ctx, user, request_id.as_ref()) else {
            return;
        };
        let (app, outbox) = (self.app.clone(), self.outbox.clone());
        let reply_id = request_id.clone();
        let work = async move {
            let mut queued = Ok(());
            app.service
                .accept(permit, assignment_id, |accepted| {
                    let reply = ServerMessage::AssignmentAccepted {
                        assignment_id,
                        order_id: accepted.order.id.0,
                        order: OrderView::from(&accepted.order),
                    };
                    queued = outbox.text(reply.frame(reply_id.as_ref()));
                })
                .await
                .map(|_| queued)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(queued) => act.on_queued(ctx, queued),
                    Err(e) => act.send_error(ctx, &e, request_id.as_ref()),
                }),
        );
    }

    fn reject_assignment(
        &mut self,
        ctx: &mut Ctx,
        user: AuthUser,
        assignment_id: i64,
        reason: Option<String>,
        request_id: Option<Value>,
    ) {
        let checked = policy::permit::<DecideOffers>(user)
            .and_then(|permit| Ok((permit, RejectReason::parse(reason)?)));
        let (permit, reason) = match checked {
            Ok(checked) => checked,
            Err(e) => return self.send_error(ctx, &e, request_id.as_ref()),
        };
        let app = self.app.clone();
        let work = async move {
            let rejected = app.service.reject(permit, assignment_id, reason).await?;
            Ok(ServerMessage::AssignmentRejected {
                assignment_id,
                order_id: rejected.order_id.0,
            })
        };
        self.reply_when_done(ctx, work, request_id);
    }

    fn subscribe_events(&mut self, ctx: &mut Ctx, user: AuthUser, rid: Option<&Value>) {
        if self.permitted::<WatchEvents>(ctx, user, rid).is_none() {
            return;
        }
        self.tell(ctx, SubscribeEvents { id: self.id });
        self.send(ctx, &ServerMessage::SubscribedEvents, rid);
    }

    /// Queues each new `stats` frame; a frame the connection has no room for is skipped, and
    /// the next one is newer.
    fn subscribe_stats(&mut self, ctx: &mut Ctx, user: AuthUser, rid: Option<&Value>) {
        if self.permitted::<WatchStats>(ctx, user, rid).is_none() {
            return;
        }
        if self.stats.is_some() {
            return;
        }
        let mut frames = self.app.stats.listen();
        let outbox = self.outbox.clone();
        self.stats = Some(actix_web::rt::spawn(async move {
            while frames.changed().await.is_ok() {
                let frame = frames.borrow_and_update().clone();
                let Some(frame) = frame else { continue };
                if outbox.text(frame) == Err(QueueError::Closed) {
                    break;
                }
            }
        }));
    }

    /// A new token for the same identity moves the deadline; any other leaves it as it was.
    fn refresh_token(&mut self, ctx: &mut Ctx, user: AuthUser, token: &str, rid: Option<&Value>) {
        match self.app.jwt.verify(token) {
            Ok(verified) if verified.user == user => {
                self.watch_token(ctx, verified.expires_at_ms);
                let reply = ServerMessage::TokenRefreshed {
                    expires_at: iso(verified.expires_at_ms),
                };
                self.send(ctx, &reply, rid);
            }
            Ok(_) => {
                let e = AppError::Forbidden(
                    "the new token must name the same user, role and master".into(),
                );
                self.send_error(ctx, &e, rid);
            }
            Err(e) => self.send_error(ctx, &AppError::from(e), rid),
        }
    }

    /// Adds push topics, up to `Topics::MAX` per connection.
    fn subscribe(&mut self, ctx: &mut Ctx, topics: Option<Vec<String>>, request_id: Option<Value>) {
        let topics = match Topics::parse(topics) {
            Ok(topics) => topics.into_vec(),
            Err(e) => return self.send_error(ctx, &e.into(), request_id.as_ref()),
        };
        let asked = self.app.router.send(SubscribeTopics {
            id: self.id,
            topics: topics.clone(),
        });
        ctx.wait(asked.into_actor(self).map(move |answer, act, ctx| {
            let request_id = request_id.as_ref();
            match answer {
                Ok(Ok(())) => act.send(ctx, &ServerMessage::Subscribed { topics }, request_id),
                Ok(Err(_)) => {
                    let e = AppError::BadRequest(format!(
                        "a connection may subscribe to at most {} topics",
                        Topics::MAX
                    ));
                    act.send_error(ctx, &e, request_id);
                }
                Err(_) => ctx.stop(),
            }
        }));
    }

    fn unsubscribe(&mut self, ctx: &mut Ctx, topics: Option<Vec<String>>, rid: Option<&Value>) {
        let topics = match Topics::parse(topics) {
            Ok(topics) => topics.into_vec(),
            Err(e) => return self.send_error(ctx, &e.into(), rid),
        };
        self.tell(
            ctx,
            UnsubscribeTopics {
                id: self.id,
                topics: topics.clone(),
            },
        );
        self.send(ctx, &ServerMessage::Unsubscribed { topics }, rid);
    }

    /// The policy's permit for `U`, or its refusal answered.
    fn permitted<U: UseCase>(
        &mut self,
        ctx: &mut Ctx,
        user: AuthUser,
        rid: Option<&Value>,
    ) -> Option<Permit<U>> {
        policy::permit::<U>(user)
            .map_err(|e| self.send_error(ctx, &e, rid))
            .ok()
    }

    /// Runs the service's work off the actor and answers with its outcome, echoing `request_id`.
    fn reply_when_done(
        &mut self,
        ctx: &mut Ctx,
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
}
