package dev.dispatcher.client;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

/**
 * Run in a JVM of its own whose wall clock libfaketime moved: connects as a master, then for every
 * line on stdin prints its wall clock and the first offer's {@code remainingMillis()}.
 */
public final class CountdownProbe {
  private CountdownProbe() {}

  public static void main(String[] args) throws Exception {
    MasterClient client = MasterClient.builder(args[0]).token(args[1]).build();
    client.connect();
    while (client.state() != MasterClient.State.CONNECTED) Thread.sleep(10);
    // The first string concatenation of a JVM links its call site, which takes a fifth of a
    // second: done now, it does not sit between reading the countdown and printing it.
    line(0, 0);
    // As an app on shift is, connected a while before its first offer: past the second ping.
    Thread.sleep(1_500);
    System.out.println("connected");
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line; (line = in.readLine()) != null; ) {
      while (client.offers().isEmpty()) Thread.sleep(5);
      Offer offer = client.offers().values().iterator().next();
      System.out.println(line(System.currentTimeMillis(), offer.remainingMillis()));
    }
    client.close();
  }

  private static String line(long wallClock, long remaining) {
    return wallClock + " " + remaining;
  }
}
