package dev.dispatcher.client;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;
import okhttp3.WebSocket;
import okhttp3.WebSocketListener;

/**
 * One logical connection that stays up: it authenticates, pings, takes a silent socket for dead,
 * reconnects with jittered backoff, refreshes the token, and stops for good only when told to,
 * when another client of the same user replaced it, or when a fresh token is refused too. All of
 * its state is touched on the client's loop thread only.
 */
final class Connection {
  interface Hooks {
    void state(MasterClient.State state);

    /** Authenticated: subscribe, and send what waited. */
    void ready();

    /** A frame for the client, read from the socket at {@code receivedNanos} (System.nanoTime()). */
    void message(String type, JsonObject frame, long receivedNanos);

    void error(DispatcherException error);

    /** An attempt ended before authentication; {@code inARow} counts them since the last success. */
    void failed(int inARow);
  }

  /** A connection up this long resets the backoff. */
  private static final long STABLE_NANOS = TimeUnit.SECONDS.toNanos(10);
  /** Nothing heard for the ping interval and this long: the socket is dead. */
  private static final long SILENCE_GRACE_MILLIS = 10_000;

  private static final String REPLACED = "replaced by a newer connection";
  private static final List<String> TOKEN_REASONS =
      Arrays.asList("authentication failed", "token expired");

  private final String url;
  private final OkHttpClient http;
  private final ScheduledExecutorService loop;
  private final ExecutorService tokenThread;
  private final TokenProvider tokens;
  private final Backoff backoff;
  private final long pingIntervalMillis;
  private final Hooks hooks;

  volatile MasterClient.State state = MasterClient.State.DISCONNECTED;
  /**
   * Half the shortest of this socket's last few ping round trips: how old a frame's "time left"
   * is when it arrives. The shortest, because a round trip only ever grows by what delays it
   * (a cold JVM's first frames, a busy radio).
   */
  volatile long oneWayNanos;

  private WebSocket socket;
  private boolean authenticated;
  private String token;
  private boolean refreshing;
  private boolean freshTokenTried;
  private boolean tokenRefused;
  private int failuresInARow;
  private long connectedAtNanos;
  private long lastHeardNanos;
  private long sinceLastPingMillis;
  private ScheduledFuture<?> retryTimer;
  private ScheduledFuture<?> livenessTimer;
  private final Map<String, Long> pingsSent = new HashMap<>();
  private final ArrayDeque<Long> roundTrips = new ArrayDeque<>();
  private int nextPing;
  private int pingsOnThisSocket;

  Connection(
      String url,
      OkHttpClient http,
      ScheduledExecutorService loop,
      ExecutorService tokenThread,
      TokenProvider tokens,
      String fixedToken,
      long minReconnectDelayMillis,
      long maxReconnectDelayMillis,
      long pingIntervalMillis,
      Hooks hooks) {
    this.url = url;
    this.http = http;
    this.loop = loop;
    this.tokenThread = tokenThread;
    this.tokens = tokens;
    this.token = fixedToken;
    this.backoff = new Backoff(minReconnectDelayMillis, maxReconnectDelayMillis);
    this.pingIntervalMillis = pingIntervalMillis;
    this.hooks = hooks;
  }

  void connect() {
    if (state != MasterClient.State.DISCONNECTED) return;
    freshTokenTried = false;
    open();
  }

  void close() {
    if (state == MasterClient.State.CLOSED) return;
    drop(true, "closed by the app");
    setState(MasterClient.State.CLOSED);
  }

  /** The network changed (Wi-Fi to mobile, say): the socket may be half dead; reconnect now. */
  void networkChanged() {
    if (state == MasterClient.State.CLOSED || state == MasterClient.State.DISCONNECTED) return;
    backoff.reset();
    drop(false, "network changed");
    open();
  }

  /** Sends on an authenticated socket; answers whether it went. */
  boolean send(Object message) {
    if (!authenticated || socket == null) return false;
    return socket.send(Wire.GSON.toJson(message));
  }

  boolean isReady() {
    return authenticated;
  }

  /** The token to use, fetched on the token thread when there is none; completes on the loop. */
  CompletableFuture<String> currentToken() {
    if (token != null) return CompletableFuture.completedFuture(token);
    return fetchToken()
        .thenApplyAsync(
            fresh -> {
              token = fresh;
              return fresh;
            },
            loop);
  }

  private CompletableFuture<String> fetchToken() {
    if (tokens == null) {
      CompletableFuture<String> none = new CompletableFuture<>();
      none.completeExceptionally(new DispatcherException("token_refused", "no token provider"));
      return none;
    }
    return CompletableFuture.supplyAsync(
        () -> {
          try {
            return tokens.token();
          } catch (Exception failed) {
            throw new DispatcherException("token_refused", "the token provider failed: " + failed);
          }
        },
        tokenThread);
  }

  private void setState(MasterClient.State next) {
    if (state == next || state == MasterClient.State.CLOSED) return;
    state = next;
    hooks.state(next);
  }

  private void open() {
    cancel(retryTimer);
    setState(MasterClient.State.CONNECTING);
    currentToken()
        .whenCompleteAsync(
            (fresh, failed) -> {
              if (failed != null) {
                hooks.error(new DispatcherException("token_refused", cause(failed).getMessage()));
                retry();
              } else if (state == MasterClient.State.CONNECTING && socket == null) {
                openSocket(fresh);
              }
            },
            loop);
  }

  private void openSocket(String bearer) {
    Request request;
    try {
      request = new Request.Builder().url(url).header("Authorization", "Bearer " + bearer).build();
    } catch (IllegalArgumentException bad) {
      hooks.error(new DispatcherException("bad_options", "cannot open " + url + ": " + bad.getMessage()));
      setState(MasterClient.State.DISCONNECTED);
      return;
    }
    tokenRefused = false;
    lastHeardNanos = System.nanoTime();
    socket = http.newWebSocket(request, new Events());
    startLiveness();
  }

  /** OkHttp's callbacks, moved onto the loop and ignored once their socket was dropped. */
  private final class Events extends WebSocketListener {
    @Override
    public void onMessage(WebSocket from, String text) {
      // A frame's "time left" counts from here, not from when the loop gets to it.
      long receivedNanos = System.nanoTime();
      onLoop(
          () -> {
            if (from != socket) return;
            lastHeardNanos = receivedNanos;
            JsonObject frame = Wire.frame(text);
            if (frame != null) receive(frame.get("type").getAsString(), frame, receivedNanos);
          });
    }

    @Override
    public void onClosing(WebSocket from, int code, String reason) {
      from.close(1000, null);
      onLoop(
          () -> {
            if (from == socket) closed(code, reason);
          });
    }

    @Override
    public void onClosed(WebSocket from, int code, String reason) {
      onLoop(
          () -> {
            if (from == socket) closed(code, reason);
          });
    }

    @Override
    public void onFailure(WebSocket from, Throwable failure, Response response) {
      // A refused upgrade: 401 is the token's fault.
      boolean unauthorized = response != null && response.code() == 401;
      onLoop(
          () -> {
            if (from != socket) return;
            if (unauthorized) tokenRefused = true;
            closed(1006, String.valueOf(failure.getMessage()));
          });
    }
  }

  private void onLoop(Runnable task) {
    try {
      loop.execute(task);
    } catch (java.util.concurrent.RejectedExecutionException closed) {
      // The client was closed.
    }
  }

  private void receive(String type, JsonObject frame, long receivedNanos) {
    switch (type) {
      case Protocol.AuthSuccessMessage.TYPE:
        authenticated = true;
        failuresInARow = 0;
        freshTokenTried = false;
        connectedAtNanos = System.nanoTime();
        roundTrips.clear();
        pingsOnThisSocket = 0;
        setState(MasterClient.State.CONNECTED);
        ping();
        hooks.ready();
        return;
      case Protocol.AuthErrorMessage.TYPE:
        tokenRefused = true;
        return;
      case Protocol.PongMessage.TYPE:
        JsonElement requestId = frame.get("requestId");
        Long sent = requestId == null ? null : pingsSent.get(requestId.getAsString());
        if (sent != null) {
          pingsSent.clear();
          if (roundTrips.size() == 5) roundTrips.removeFirst();
          roundTrips.addLast(receivedNanos - sent);
          oneWayNanos = Collections.min(roundTrips) / 2;
        }
        return;
      case Protocol.TokenExpiringMessage.TYPE:
        refreshToken();
        return;
      case Protocol.ConnectedMessage.TYPE:
      case Protocol.TokenRefreshedMessage.TYPE:
        return;
      default:
        hooks.message(type, frame, receivedNanos);
    }
  }

  /** On {@code token_expiring}: one fetch and one {@code refresh_token} per notice, never two at once. */
  private void refreshToken() {
    if (refreshing || tokens == null) return;
    refreshing = true;
    fetchToken()
        .whenCompleteAsync(
            (fresh, failed) -> {
              refreshing = false;
              if (failed != null) {
                hooks.error(new DispatcherException("token_refused", cause(failed).getMessage()));
                return;
              }
              token = fresh;
              Protocol.RefreshTokenMessage refresh = new Protocol.RefreshTokenMessage();
              refresh.token = fresh;
              send(refresh);
            },
            loop);
  }

  private void ping() {
    pingsOnThisSocket++;
    sinceLastPingMillis = 0;
    String id = "ping-" + ++nextPing;
    pingsSent.put(id, System.nanoTime());
    Protocol.PingMessage ping = new Protocol.PingMessage();
    ping.requestId = new JsonPrimitive(id);
    send(ping);
  }

  private void startLiveness() {
    cancel(livenessTimer);
    long tick = Math.min(pingIntervalMillis, 1_000);
    sinceLastPingMillis = 0;
    livenessTimer =
        loop.scheduleAtFixedRate(
            () -> {
              long silentMillis = (System.nanoTime() - lastHeardNanos) / 1_000_000;
              if (silentMillis > pingIntervalMillis + SILENCE_GRACE_MILLIS) {
                // Silent too long: a half-dead socket, dropped without waiting for a close handshake.
                closed(1006, "silent");
                return;
              }
              sinceLastPingMillis += tick;
              // A second ping a second after the first measures the round trip once warm.
              boolean early = pingsOnThisSocket == 1 && sinceLastPingMillis >= 1_000;
              if (authenticated && (early || sinceLastPingMillis >= pingIntervalMillis)) {
                ping();
              }
            },
            tick,
            tick,
            TimeUnit.MILLISECONDS);
  }

  /** Forgets the socket, closing it as best it can: with the closing handshake, or at once. */
  private void drop(boolean gracefully, String reason) {
    cancel(livenessTimer);
    cancel(retryTimer);
    WebSocket dropped = socket;
    socket = null;
    authenticated = false;
    if (dropped == null) return;
    if (gracefully) dropped.close(1000, reason);
    else dropped.cancel();
  }

  private void closed(int code, String reason) {
    boolean wasAuthenticated = authenticated;
    boolean refused = tokenRefused || (code == 1008 && TOKEN_REASONS.contains(reason));
    drop(false, "");
    if (state == MasterClient.State.CLOSED) return;
    if (wasAuthenticated && System.nanoTime() - connectedAtNanos >= STABLE_NANOS) backoff.reset();
    if (!wasAuthenticated) hooks.failed(++failuresInARow);
    if (code == 1008 && REPLACED.equals(reason)) {
      setState(MasterClient.State.DISCONNECTED);
      hooks.error(
          new DispatcherException(
              "replaced", "another connection of this user replaced this one; not reconnecting"));
      return;
    }
    if (refused) {
      if (tokens == null || freshTokenTried) {
        setState(MasterClient.State.DISCONNECTED);
        hooks.error(
            new DispatcherException(
                "token_refused",
                "the server refused the token (" + (reason.isEmpty() ? code : reason) + ")"));
        return;
      }
      freshTokenTried = true;
      token = null;
      open();
      return;
    }
    retry();
  }

  private void retry() {
    if (state == MasterClient.State.CLOSED) return;
    setState(MasterClient.State.CONNECTING);
    cancel(retryTimer);
    retryTimer = loop.schedule(this::open, backoff.nextMillis(), TimeUnit.MILLISECONDS);
  }

  private static void cancel(ScheduledFuture<?> timer) {
    if (timer != null) timer.cancel(false);
  }

  static Throwable cause(Throwable failed) {
    while (failed instanceof java.util.concurrent.CompletionException && failed.getCause() != null) {
      failed = failed.getCause();
    }
    return failed;
  }
}
