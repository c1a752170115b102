package dev.dispatcher.client;

import static dev.dispatcher.client.Server.masterToken;
import static dev.dispatcher.client.Server.until;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** MasterClient against the real dispatcher binary. */
class MasterClientTest {
  private final List<AutoCloseable> opened = new ArrayList<>();

  @AfterEach
  void stop() throws Exception {
    Collections.reverse(opened);
    for (AutoCloseable each : opened) each.close();
  }

  private Server server(String... vars) throws Exception {
    Map<String, String> env = new HashMap<>();
    for (int i = 0; i < vars.length; i += 2) env.put(vars[i], vars[i + 1]);
    Server server = new Server(env).start();
    opened.add(server);
    return server;
  }

  /** What a client told its app. */
  static final class Seen implements Listener {
    final List<MasterClient.State> states = new CopyOnWriteArrayList<>();
    /** System.nanoTime() of each CONNECTED. */
    final List<Long> connectedAt = new CopyOnWriteArrayList<>();
    final List<Offer> offers = new CopyOnWriteArrayList<>();
    final List<EndReason> ended = new CopyOnWriteArrayList<>();
    final List<String> errors = new CopyOnWriteArrayList<>();
    final AtomicInteger tokens = new AtomicInteger();

    @Override
    public void onState(MasterClient.State state) {
      states.add(state);
      if (state == MasterClient.State.CONNECTED) connectedAt.add(System.nanoTime());
    }

    @Override
    public void onOffer(Offer offer) {
      offers.add(offer);
    }

    @Override
    public void onOfferEnded(Offer offer, EndReason reason) {
      ended.add(reason);
    }

    @Override
    public void onError(DispatcherException error) {
      errors.add(error.code());
    }
  }

  private final Map<MasterClient, Seen> seen = new ConcurrentHashMap<>();

  /** A master's client; its first token lives {@code firstTtl} seconds, fresh ones an hour. */
  private MasterClient master(Server server, long id, long firstTtl, MasterClient.Builder extra) {
    Seen told = new Seen();
    MasterClient client = (extra != null ? extra : MasterClient.builder(server.ws()))
        .tokenProvider(() -> masterToken(id, told.tokens.incrementAndGet() == 1 ? firstTtl : 3600))
        .listener(told)
        .minReconnectDelayMillis(100)
        .maxReconnectDelayMillis(2_000)
        .build();
    seen.put(client, told);
    opened.add(client::close);
    return client;
  }

  private MasterClient master(Server server, long id) {
    return master(server, id, 3600, null);
  }

  private static void connected(MasterClient client) throws InterruptedException {
    client.connect();
    until(() -> client.state() == MasterClient.State.CONNECTED, 10_000, "connected");
    Thread.sleep(100); // subscribe_assignments is answered
  }

  private Offer firstOffer(MasterClient client) throws InterruptedException {
    Seen told = seen.get(client);
    until(() -> !told.offers.isEmpty(), 5_000, "an offer");
    return told.offers.get(0);
  }

  @Test
  void reconnectsWithJitteredDelaysAfterSigkillAndGetsItsOpenOffersAgainOnce() throws Exception {
    Server server = server();
    server.putOrder(10);
    List<MasterClient> clients = new ArrayList<>();
    for (long id : new long[] {3, 4, 5, 6, 8, 9, 12, 13}) clients.add(master(server, id));
    for (MasterClient client : clients) connected(client);
    JsonObject made = server.offer(10, 3, 60);
    Offer offer = firstOffer(clients.get(0));
    assertEquals(made.get("id").getAsLong(), offer.id());
    assertEquals("Lenina 10", offer.address());

    for (MasterClient client : clients) seen.get(client).connectedAt.clear();
    server.kill();
    Thread.sleep(300);
    server.start();
    until(
        () -> clients.stream().allMatch(c -> !seen.get(c).connectedAt.isEmpty()), 15_000, "all back");
    Thread.sleep(500);
    // The replayed offer updated the same object and told nothing new.
    assertEquals(1, seen.get(clients.get(0)).offers.size());
    assertSame(offer, clients.get(0).offers().get(offer.id()));
    assertTrue(offer.remainingMillis() > 50_000 && offer.remainingMillis() <= 60_000, "" + offer.remainingMillis());
    List<Long> back = new ArrayList<>();
    for (MasterClient client : clients) back.add(seen.get(client).connectedAt.get(0));
    long spreadMillis = TimeUnit.NANOSECONDS.toMillis(Collections.max(back) - Collections.min(back));
    assertTrue(spreadMillis > 50, "reconnect times spread by only " + spreadMillis + " ms");
  }

  @Test
  void aTokenAboutToExpireIsRefreshedOnceOnTheSameSocket() throws Exception {
    Server server = server("TOKEN_EXPIRY_NOTICE_SECS", "2");
    MasterClient client = master(server, 3, 4, null);
    connected(client);
    Seen told = seen.get(client);
    told.states.clear();
    Thread.sleep(6_000); // past the first token's exp: the server would have closed with 1008
    assertEquals(2, told.tokens.get(), "the first token, then one refresh");
    assertEquals(Collections.emptyList(), told.states, "the socket stayed up");
    assertEquals(MasterClient.State.CONNECTED, client.state());
  }

  @Test
  void aDecisionMadeWhileTheServerIsDownIsSentAfterTheReconnectIfInTimeElseExpiresUnsent() throws Exception {
    Server server = server();
    server.putOrder(10);
    server.putOrder(11);
    MasterClient client = master(server, 3);
    connected(client);
    long inTime = server.offer(10, 3, 60).get("id").getAsLong();
    long late = server.offer(11, 3, 2).get("id").getAsLong();
    until(() -> client.offers().size() == 2, 5_000, "both offers");
    server.kill();
    CompletableFuture<Outcome> accepted = client.offers().get(inTime).accept();
    CompletableFuture<Outcome> tooLate = client.offers().get(late).accept();
    assertEquals(Outcome.EXPIRED, tooLate.get(5, TimeUnit.SECONDS));
    server.start();
    assertEquals(Outcome.ACCEPTED, accepted.get(10, TimeUnit.SECONDS));
    Server.Answer stored = server.call("GET", "/api/v1/assignments/" + late, null);
    assertEquals("expired", stored.body.get("status").getAsString(), "never sent, so never accepted");
  }

  @Test
  void aDecisionRacingAnotherMastersHasOneWinnerAndTheOtherHearsTakenOrNotPending() throws Exception {
    Server server = server();
    server.putOrder(10);
    MasterClient client = master(server, 3);
    connected(client);
    server.offer(10, 3, 60);
    long rival = server.offer(10, 4, 60).get("id").getAsLong();
    Offer offer = firstOffer(client);
    String rivalToken = masterToken(4, 3600);
    CompletableFuture<Outcome> mine = offer.accept();
    Server.Answer theirs = server.call("POST", "/api/v1/assignments/" + rival + "/accept", null, rivalToken);
    Outcome outcome = mine.get(10, TimeUnit.SECONDS);
    if (outcome == Outcome.ACCEPTED) {
      assertEquals(409, theirs.status);
    } else {
      assertEquals(200, theirs.status);
      assertTrue(outcome == Outcome.TAKEN || outcome == Outcome.NOT_PENDING, outcome.toString());
    }
    assertSame(mine, offer.accept(), "one decision, one answer");
    assertEquals(outcome, offer.reject("too far").get(1, TimeUnit.SECONDS));
  }

  @Test
  void remainingMillisFollowsTheServersDeadlineInAJvmWhoseWallClockIsAnHourAhead() throws Exception {
    String faketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    if (!new java.io.File(faketime).exists()) {
      assertTrue(System.getenv("CI") == null, "CI must run the countdown test: apt-get install faketime");
      org.junit.jupiter.api.Assumptions.abort("install faketime to run the countdown test");
    }
    Server server = server();
    server.putOrder(10);
    ProcessBuilder command = new ProcessBuilder(
        System.getProperty("java.home") + "/bin/java",
        "-cp", System.getProperty("client.classpath"),
        CountdownProbe.class.getName(), server.ws(), masterToken(3, 3600));
    command.environment().put("LD_PRELOAD", faketime);
    command.environment().put("FAKETIME", "+3600");
    // Only the wall clock moves, as on a phone set by hand. Without the second setting, libfaketime
    // wakes timed waits late (tens of milliseconds), which would skew the ping round trip.
    command.environment().put("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    command.environment().put("FAKETIME_FORCE_MONOTONIC_FIX", "0");
    Process probe = command.redirectError(ProcessBuilder.Redirect.INHERIT).start();
    opened.add(probe::destroyForcibly);
    java.io.BufferedReader out = new java.io.BufferedReader(
        new java.io.InputStreamReader(probe.getInputStream(), java.nio.charset.StandardCharsets.UTF_8));
    java.io.PrintStream in = new java.io.PrintStream(probe.getOutputStream(), true, "UTF-8");
    assertEquals("connected", out.readLine());
    JsonObject made = server.offer(10, 3, 30);
    long expiresAt = Wire.date(made.get("expiresAt").getAsString()).getTime();
    for (int i = 0; i < 5; i++) {
      in.println();
      String[] answer = out.readLine().split(" ");
      long truth = expiresAt - System.currentTimeMillis();
      long probeClockAhead = Long.parseLong(answer[0]) - System.currentTimeMillis();
      assertTrue(probeClockAhead > 3_500_000, "the probe's clock is " + probeClockAhead + " ms ahead");
      long remaining = Long.parseLong(answer[1]);
      assertTrue(Math.abs(remaining - truth) < 150, remaining + " ms left, truly " + truth);
      Thread.sleep(200);
    }
    in.close();
    assertTrue(probe.waitFor(10, TimeUnit.SECONDS));
  }

  @Test
  void aSecondClientOfTheSameMasterReplacesTheFirstWhichStaysDisconnected() throws Exception {
    Server server = server("MAX_CONNECTIONS_PER_USER", "1");
    MasterClient first = master(server, 3);
    connected(first);
    MasterClient second = master(server, 3);
    connected(second);
    until(() -> first.state() == MasterClient.State.DISCONNECTED, 5_000, "first disconnected");
    Thread.sleep(2_000);
    assertEquals(MasterClient.State.DISCONNECTED, first.state());
    assertEquals(MasterClient.State.CONNECTED, second.state());
    assertEquals(Collections.singletonList("replaced"), seen.get(first).errors);
  }

  @Test
  void pollsAfterThreeFailedAttemptsAndStopsWhenTheSocketIsBack() throws Exception {
    Server server = server();
    UpgradeBlockingProxy proxy = new UpgradeBlockingProxy(server.port);
    opened.add(proxy);
    server.putOrder(10);
    JsonObject made = server.offer(10, 3, 60);
    String through = "127.0.0.1:" + proxy.port();
    MasterClient client = master(server, 3, 3600,
        MasterClient.builder("ws://" + through + "/ws")
            .pollUrl("http://" + through + "/api/v1/masters/me/assignments")
            .pollIntervalMillis(200));
    Seen told = seen.get(client);
    client.connect();
    until(() -> told.offers.size() == 1, 10_000, "the offer, polled");
    assertTrue(proxy.refused.get() >= 3, proxy.refused + " refused upgrades");
    assertEquals(MasterClient.State.CONNECTING, client.state());
    Offer offer = told.offers.get(0);
    assertEquals(made.get("id").getAsLong(), offer.id());
    long truth = Wire.date(made.get("expiresAt").getAsString()).getTime() - System.currentTimeMillis();
    assertTrue(Math.abs(offer.remainingMillis() - truth) < 300, offer.remainingMillis() + " vs " + truth);

    proxy.blocked = false;
    until(() -> client.state() == MasterClient.State.CONNECTED, 10_000, "the socket back");
    Thread.sleep(300);
    int polls = proxy.polls.get();
    Thread.sleep(1_000);
    assertEquals(polls, proxy.polls.get(), "polling stopped");
    assertEquals(1, told.offers.size(), "the replayed offer is the same object");
  }
}
