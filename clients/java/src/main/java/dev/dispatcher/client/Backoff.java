package dev.dispatcher.client;

import java.util.concurrent.ThreadLocalRandom;

/**
 * Reconnect delays with full jitter: {@code min(max, min + random(0, min(max, min * 2^attempt)))},
 * so that a server restart is not met by every phone at the same instant.
 */
final class Backoff {
  private final long minMillis;
  private final long maxMillis;
  private int attempt;

  Backoff(long minMillis, long maxMillis) {
    this.minMillis = minMillis;
    this.maxMillis = maxMillis;
  }

  long nextMillis() {
    double spread = Math.min(maxMillis, minMillis * Math.pow(2, attempt));
    attempt = Math.min(attempt + 1, 30);
    return Math.min(maxMillis, minMillis + (long) (ThreadLocalRandom.current().nextDouble() * spread));
  }

  void reset() {
    attempt = 0;
  }
}
