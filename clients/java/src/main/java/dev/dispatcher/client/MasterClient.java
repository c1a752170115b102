package dev.dispatcher.client;

import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import okhttp3.Call;
import okhttp3.Callback;
import okhttp3.HttpUrl;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;
import okhttp3.ResponseBody;

/**
 * Keeps a master online: connects, subscribes to offers, and holds them as {@link Offer} objects
 * with a deadline; reconnects, refreshes the token, and polls over HTTP when the socket cannot get
 * through. docs/CLIENTS.md describes the behaviour step by step.
 *
 * <p>All of the client's work happens on one thread of its own; the {@link Listener} is called
 * on the {@code Executor} the app passes to {@link Builder#callbackExecutor} (the main thread on
 * Android), and so are the futures of decisions completed.
 */
public final class MasterClient {
  public enum State {
    /** Not started, or stopped trying: replaced by another connection, or the token refused. */
    DISCONNECTED,
    /** Connecting, or waiting to reconnect. */
    CONNECTING,
    CONNECTED,
    /** Ended for good by {@link #close()}. */
    CLOSED
  }

  private static final Logger LOG = Logger.getLogger(MasterClient.class.getName());
  /** After this many failed connection attempts in a row, poll (with a poll URL). */
  private static final int POLL_AFTER_FAILURES = 3;
  /** An offer the server said nothing more of is dropped this long after its deadline. */
  private static final long END_GRACE_MILLIS = 2_000;
  private static final Pattern DECISION = Pattern.compile("^decision-(\\d+)$");

  private final Builder options;
  private final Listener listener;
  private final Executor callbacks;
  private final ScheduledExecutorService loop;
  private final ExecutorService tokenThread;
  private final OkHttpClient http;
  private final boolean ownsHttp;
  private final Connection connection;
  private final Map<Long, Offer> offers = new ConcurrentHashMap<>();
  // The rest is touched on the loop only.
  private final Set<String> topics = new LinkedHashSet<>();
  private final Map<Long, PendingDecision> decisions = new HashMap<>();
  private final Map<Long, ScheduledFuture<?>> endTimers = new HashMap<>();
  /** Offers acknowledged on the current socket: the server sends each again until it is. */
  private final Set<Long> acknowledged = new HashSet<>();
  private ScheduledFuture<?> pollTimer;

  private MasterClient(Builder options) {
    this.options = options;
    this.listener = options.listener;
    this.callbacks = options.callbackExecutor != null ? options.callbackExecutor : daemon("dispatcher-callbacks");
    this.loop = Executors.newSingleThreadScheduledExecutor(threads("dispatcher-client"));
    this.tokenThread = Executors.newSingleThreadExecutor(threads("dispatcher-token"));
    this.ownsHttp = options.http == null;
    this.http = ownsHttp ? new OkHttpClient() : options.http;
    this.connection =
        new Connection(
            options.url,
            http,
            loop,
            tokenThread,
            options.tokens,
            options.token,
            options.minReconnectDelayMillis,
            options.maxReconnectDelayMillis,
            options.pingIntervalMillis,
            new Connection.Hooks() {
              @Override
              public void state(State state) {
                tell(l -> l.onState(state));
              }

              @Override
              public void ready() {
                MasterClient.this.ready();
              }

              @Override
              public void message(String type, JsonObject frame, long receivedNanos) {
                receive(type, frame, receivedNanos);
              }

              @Override
              public void error(DispatcherException error) {
                tell(l -> l.onError(error));
              }

              @Override
              public void failed(int inARow) {
                acknowledged.clear();
                if (inARow >= POLL_AFTER_FAILURES) startPolling();
              }
            });
  }

  public static Builder builder(String url) {
    return new Builder(url);
  }

  public State state() {
    return connection.state;
  }

  /** The open offers, by id: a live, read-only view. */
  public Map<Long, Offer> offers() {
    return Collections.unmodifiableMap(offers);
  }

  /** Starts: connects, and keeps connecting until {@link #close()}. */
  public void connect() {
    if (connection.state == State.CLOSED) {
      throw new IllegalStateException("this client was closed; build another");
    }
    onLoop(connection::connect);
  }

  /** Ends for good: no reconnect, no polling; decisions not yet sent complete EXPIRED at their deadline. */
  public void close() {
    onLoop(
        () -> {
          stopPolling();
          connection.close();
          for (ScheduledFuture<?> timer : endTimers.values()) timer.cancel(false);
          endTimers.clear();
          // Scheduled deadlines still run; nothing new is taken.
          loop.shutdown();
          tokenThread.shutdown();
          if (ownsHttp) {
            // So that a JVM whose last client closed can exit (OkHttp's threads are not daemons).
            http.dispatcher().executorService().shutdown();
            http.connectionPool().evictAll();
          }
        });
  }

  /** The network changed (on Android, a ConnectivityManager callback): reconnect now. */
  public void networkChanged() {
    onLoop(
        () -> {
          acknowledged.clear();
          connection.networkChanged();
        });
  }

  /** Pushes on these topics reach this client, across reconnects. */
  public void subscribe(Collection<String> names) {
    ArrayList<String> copy = new ArrayList<>(names);
    Protocol.SubscribeMessage subscribe = new Protocol.SubscribeMessage();
    subscribe.topics = copy;
    onLoop(() -> {
      topics.addAll(copy);
      connection.send(subscribe);
    });
  }

  public void unsubscribe(Collection<String> names) {
    ArrayList<String> copy = new ArrayList<>(names);
    Protocol.UnsubscribeMessage unsubscribe = new Protocol.UnsubscribeMessage();
    unsubscribe.topics = copy;
    onLoop(() -> {
      topics.removeAll(copy);
      connection.send(unsubscribe);
    });
  }

  private static final class PendingDecision {
    final Offer offer;
    final boolean accept;
    final String reason;
    final CompletableFuture<Outcome> future;
    boolean sent;
    ScheduledFuture<?> deadline;

    PendingDecision(Offer offer, boolean accept, String reason, CompletableFuture<Outcome> future) {
      this.offer = offer;
      this.accept = accept;
      this.reason = reason;
      this.future = future;
    }
  }

  /** Used by {@link Offer}: sends a decision once, when a socket is up and the offer still open. */
  CompletableFuture<Outcome> decide(Offer offer, boolean accept, String reason) {
    CompletableFuture<Outcome> future = new CompletableFuture<>();
    if (offer.remainingMillis() <= 0) {
      complete(future, Outcome.EXPIRED);
      return future;
    }
    PendingDecision pending = new PendingDecision(offer, accept, reason, future);
    boolean taken =
        onLoop(
            () -> {
              // Not sent by the deadline: it never will be.
              pending.deadline =
                  loop.schedule(
                      () -> {
                        if (!pending.sent) settle(offer.id(), Outcome.EXPIRED);
                      },
                      offer.remainingMillis(),
                      TimeUnit.MILLISECONDS);
              decisions.put(offer.id(), pending);
              sendDecision(pending);
            });
    if (!taken) {
      callbacks.execute(
          () -> future.completeExceptionally(new DispatcherException("closed", "this client was closed")));
    }
    return future;
  }

  private void sendDecision(PendingDecision pending) {
    if (pending.sent || pending.offer.remainingMillis() <= 0) return;
    long id = pending.offer.id();
    JsonPrimitive requestId = new JsonPrimitive("decision-" + id);
    if (pending.accept) {
      Protocol.AcceptAssignmentMessage accept = new Protocol.AcceptAssignmentMessage();
      accept.assignmentId = id;
      accept.requestId = requestId;
      pending.sent = connection.send(accept);
    } else {
      Protocol.RejectAssignmentMessage reject = new Protocol.RejectAssignmentMessage();
      reject.assignmentId = id;
      reject.reason = pending.reason;
      reject.requestId = requestId;
      pending.sent = connection.send(reject);
    }
  }

  private void settle(long id, Outcome outcome) {
    PendingDecision pending = decisions.remove(id);
    if (pending == null) return;
    pending.deadline.cancel(false);
    complete(pending.future, outcome);
  }

  private void ready() {
    stopPolling();
    acknowledged.clear();
    Protocol.SubscribeAssignmentsMessage subscribe = new Protocol.SubscribeAssignmentsMessage();
    subscribe.acks = options.acks;
    connection.send(subscribe);
    if (!topics.isEmpty()) {
      Protocol.SubscribeMessage topicsAgain = new Protocol.SubscribeMessage();
      topicsAgain.topics = new ArrayList<>(topics);
      connection.send(topicsAgain);
    }
    for (PendingDecision pending : new ArrayList<>(decisions.values())) {
      if (pending.sent) recoverDecision(pending);
      else sendDecision(pending);
    }
  }

  /**
   * A decision sent on a socket that died before the answer came: the stored assignment tells
   * whether it was taken; one still pending never reached the server, so it is sent now.
   */
  private void recoverDecision(PendingDecision pending) {
    long id = pending.offer.id();
    HttpUrl stored = Wire.httpBase(options.url).resolve("api/v1/assignments/" + id);
    get(
        stored,
        (body, receivedNanos) -> {
          if (decisions.get(id) != pending) return;
          String status = body.get("status").getAsString();
          switch (status) {
            case Protocol.AssignmentStatus.PENDING:
              pending.sent = false;
              sendDecision(pending);
              return;
            case Protocol.AssignmentStatus.CANCELLED:
              settle(id, Outcome.TAKEN);
              end(id, EndReason.CANCELLED);
              return;
            case Protocol.AssignmentStatus.ACCEPTED:
              settle(id, Outcome.ACCEPTED);
              end(id, EndReason.ACCEPTED);
              return;
            case Protocol.AssignmentStatus.REJECTED:
              settle(id, Outcome.REJECTED);
              end(id, EndReason.REJECTED);
              return;
            default:
              settle(id, Outcome.EXPIRED);
              end(id, EndReason.EXPIRED);
          }
        });
  }

  private void receive(String type, JsonObject frame, long receivedNanos) {
    if (!Protocol.SERVER_MESSAGE_TYPES.contains(type)) {
      Push push = new Push(type, frame);
      tell(l -> l.onPush(push));
      return;
    }
    switch (type) {
      case Protocol.NewAssignmentMessage.TYPE:
        Protocol.NewAssignmentMessage offered = Wire.GSON.fromJson(frame, Protocol.NewAssignmentMessage.class);
        offered(offered.assignment, offered.expiresInMs, receivedNanos - connection.oneWayNanos);
        return;
      case Protocol.AssignmentAcceptedMessage.TYPE:
        decided(frame, Outcome.ACCEPTED, EndReason.ACCEPTED);
        return;
      case Protocol.AssignmentRejectedMessage.TYPE:
        decided(frame, Outcome.REJECTED, EndReason.REJECTED);
        return;
      case Protocol.AssignmentExpiredMessage.TYPE:
        decided(frame, Outcome.EXPIRED, EndReason.EXPIRED);
        return;
      case Protocol.AssignmentCancelledMessage.TYPE:
        decided(frame, Outcome.TAKEN, EndReason.CANCELLED);
        return;
      case Protocol.OrderStatusUpdateMessage.TYPE:
        Protocol.OrderStatusUpdateMessage update =
            Wire.GSON.fromJson(frame, Protocol.OrderStatusUpdateMessage.class);
        tell(l -> l.onOrderStatus(update));
        return;
      case Protocol.ErrorMessage.TYPE:
        Protocol.ErrorMessage error = Wire.GSON.fromJson(frame, Protocol.ErrorMessage.class);
        refused(error);
        return;
      default:
    }
  }

  private void decided(JsonObject frame, Outcome outcome, EndReason reason) {
    long id = frame.get("assignmentId").getAsLong();
    settle(id, outcome);
    end(id, reason);
  }

  private void refused(Protocol.ErrorMessage error) {
    Matcher decision =
        DECISION.matcher(error.requestId != null && error.requestId.isJsonPrimitive() ? error.requestId.getAsString() : "");
    PendingDecision pending = decision.matches() ? decisions.get(Long.parseLong(decision.group(1))) : null;
    if (pending == null) {
      DispatcherException refused = new DispatcherException(error.code, error.message);
      tell(l -> l.onError(refused));
      return;
    }
    long id = pending.offer.id();
    if ("assignment_not_pending".equals(error.code)) {
      settle(id, Outcome.NOT_PENDING);
      end(id, pending.offer.remainingMillis() > 0 ? EndReason.CANCELLED : EndReason.EXPIRED);
    } else if ("unavailable".equals(error.code) || "rate_limited".equals(error.code)) {
      // The server could not take it now: it was not decided, so it may go again.
      pending.sent = false;
      loop.schedule(() -> sendDecision(pending), 1, TimeUnit.SECONDS);
    } else {
      decisions.remove(id);
      pending.deadline.cancel(false);
      DispatcherException refused = new DispatcherException(error.code, error.message);
      callbacks.execute(() -> pending.future.completeExceptionally(refused));
    }
  }

  /** An offer whose {@code expiresInMillis} counts from {@code sinceNanos} (System.nanoTime()). */
  private void offered(Protocol.OfferView view, long expiresInMillis, long sinceNanos) {
    Offer offer = offers.get(view.id);
    if (offer != null) {
      offer.refresh(view, expiresInMillis, sinceNanos);
    } else {
      Offer fresh = new Offer(view, expiresInMillis, sinceNanos, this);
      offers.put(view.id, fresh);
      offer = fresh;
      tell(l -> l.onOffer(fresh));
    }
    scheduleEnd(offer);
    if (options.acks && !acknowledged.contains(view.id)) {
      Protocol.AckAssignmentMessage ack = new Protocol.AckAssignmentMessage();
      ack.assignmentId = view.id;
      if (connection.send(ack)) acknowledged.add(view.id);
    }
  }

  /** If the server is not heard of again about it, the offer ends at its deadline here too. */
  private void scheduleEnd(Offer offer) {
    ScheduledFuture<?> previous = endTimers.get(offer.id());
    if (previous != null) previous.cancel(false);
    endTimers.put(
        offer.id(),
        loop.schedule(
            () -> {
              settle(offer.id(), Outcome.EXPIRED);
              end(offer.id(), EndReason.EXPIRED);
            },
            offer.remainingMillis() + END_GRACE_MILLIS,
            TimeUnit.MILLISECONDS));
  }

  private void end(long id, EndReason reason) {
    ScheduledFuture<?> timer = endTimers.remove(id);
    if (timer != null) timer.cancel(false);
    acknowledged.remove(id);
    Offer offer = offers.remove(id);
    if (offer != null) tell(l -> l.onOfferEnded(offer, reason));
  }

  private void startPolling() {
    if (options.pollUrl == null || pollTimer != null || connection.state == State.CLOSED) return;
    pollTimer =
        loop.scheduleAtFixedRate(this::poll, 0, options.pollIntervalMillis, TimeUnit.MILLISECONDS);
  }

  private void stopPolling() {
    if (pollTimer != null) pollTimer.cancel(false);
    pollTimer = null;
  }

  /** One round of the polling fallback: the open offers become the same {@link Offer} objects. */
  private void poll() {
    long sent = System.nanoTime();
    get(
        HttpUrl.get(options.pollUrl),
        (body, receivedNanos) -> {
          if (pollTimer == null || connection.isReady()) return;
          Protocol.OpenOffers open = Wire.GSON.fromJson(body, Protocol.OpenOffers.class);
          // serverTime was read about halfway between the request and the answer.
          long serverNowNanos = sent + (receivedNanos - sent) / 2;
          long serverNow = Wire.date(open.serverTime).getTime();
          Set<Long> listed = new HashSet<>();
          for (Protocol.OfferView view : open.assignments) {
            listed.add(view.id);
            offered(view, Wire.date(view.expiresAt).getTime() - serverNow, serverNowNanos);
          }
          for (Offer offer : new ArrayList<>(offers.values())) {
            if (!listed.contains(offer.id())) {
              end(offer.id(), offer.remainingMillis() > 0 ? EndReason.CANCELLED : EndReason.EXPIRED);
            }
          }
        });
  }

  /**
   * GETs a JSON object with the current token; a 2xx answer is handed to {@code then} on the loop,
   * with the System.nanoTime() it arrived at.
   */
  private void get(HttpUrl url, BiConsumer<JsonObject, Long> then) {
    connection
        .currentToken()
        .thenAccept(
            bearer ->
                http.newCall(new Request.Builder().url(url).header("Authorization", "Bearer " + bearer).build())
                    .enqueue(
                        new Callback() {
                          @Override
                          public void onFailure(Call call, IOException failed) {
                            // The server's frames, or the deadline, settle it.
                            LOG.log(Level.FINE, "GET " + url.encodedPath() + " failed", failed);
                          }

                          @Override
                          public void onResponse(Call call, Response response) throws IOException {
                            long receivedNanos = System.nanoTime();
                            try (ResponseBody body = response.body()) {
                              if (!response.isSuccessful() || body == null) return;
                              JsonObject parsed = Wire.object(body.string());
                              if (parsed != null) onLoop(() -> then.accept(parsed, receivedNanos));
                            }
                          }
                        }));
  }

  private boolean onLoop(Runnable task) {
    try {
      loop.execute(
          () -> {
            try {
              task.run();
            } catch (RuntimeException bug) {
              LOG.log(Level.WARNING, "dispatcher client: unexpected failure", bug);
            }
          });
      return true;
    } catch (RejectedExecutionException closed) {
      return false;
    }
  }

  private void tell(Consumer<Listener> call) {
    if (listener == null) return;
    callbacks.execute(
        () -> {
          try {
            call.accept(listener);
          } catch (RuntimeException thrown) {
            LOG.log(Level.WARNING, "a dispatcher client listener threw", thrown);
          }
        });
  }

  private void complete(CompletableFuture<Outcome> future, Outcome outcome) {
    callbacks.execute(() -> future.complete(outcome));
  }

  private static ThreadFactory threads(String name) {
    return task -> {
      Thread thread = new Thread(task, name);
      thread.setDaemon(true);
      return thread;
    };
  }

  private static Executor daemon(String name) {
    return Executors.newSingleThreadExecutor(threads(name));
  }

  /** The options of a {@link MasterClient}. */
  public static final class Builder {
    private final String url;
    private TokenProvider tokens;
    private String token;
    private Listener listener;
    private Executor callbackExecutor;
    private OkHttpClient http;
    private boolean acks = true;
    private long pingIntervalMillis = 25_000;
    private long minReconnectDelayMillis = 500;
    private long maxReconnectDelayMillis = 20_000;
    private String pollUrl;
    private long pollIntervalMillis = 60_000;

    private Builder(String url) {
      this.url = url;
    }

    /** Gives tokens: the first, and fresh ones on {@code token_expiring} and after a refusal. */
    public Builder tokenProvider(TokenProvider tokens) {
      this.tokens = tokens;
      return this;
    }

    /** A fixed token, when the app has no way to get a fresh one. */
    public Builder token(String token) {
      this.token = token;
      return this;
    }

    public Builder listener(Listener listener) {
      this.listener = listener;
      return this;
    }

    /** Where the listener and the decisions' futures run: on Android, the main thread's executor. */
    public Builder callbackExecutor(Executor callbackExecutor) {
      this.callbackExecutor = callbackExecutor;
      return this;
    }

    /** The app's own OkHttpClient, to share its connection pool and settings. */
    public Builder okHttpClient(OkHttpClient http) {
      this.http = http;
      return this;
    }

    /** Acknowledge each offer (the default), so the server can tell a dead phone. */
    public Builder acks(boolean acks) {
      this.acks = acks;
      return this;
    }

    public Builder pingIntervalMillis(long pingIntervalMillis) {
      this.pingIntervalMillis = pingIntervalMillis;
      return this;
    }

    public Builder minReconnectDelayMillis(long minReconnectDelayMillis) {
      this.minReconnectDelayMillis = minReconnectDelayMillis;
      return this;
    }

    public Builder maxReconnectDelayMillis(long maxReconnectDelayMillis) {
      this.maxReconnectDelayMillis = maxReconnectDelayMillis;
      return this;
    }

    /** The master's open offers ({@code GET /api/v1/masters/me/assignments}), polled while the socket cannot connect. */
    public Builder pollUrl(String pollUrl) {
      this.pollUrl = pollUrl;
      return this;
    }

    public Builder pollIntervalMillis(long pollIntervalMillis) {
      this.pollIntervalMillis = pollIntervalMillis;
      return this;
    }

    public MasterClient build() {
      if (tokens == null && token == null) {
        throw new IllegalArgumentException("give tokenProvider or token");
      }
      if (minReconnectDelayMillis <= 0 || maxReconnectDelayMillis < minReconnectDelayMillis || pingIntervalMillis <= 0) {
        throw new IllegalArgumentException("delays must be positive, and the maximum at least the minimum");
      }
      if (pollUrl != null) HttpUrl.get(pollUrl);
      Wire.httpBase(url);
      return new MasterClient(this);
    }
  }
}
