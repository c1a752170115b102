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
    for (long id : new long[] {3, 4, 5, 6, 8}) clients.add(master(server, id));
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
}
