package dev.dispatcher.client;

import java.util.Date;
import java.util.concurrent.CompletableFuture;

/**
 * An open offer, with its deadline. {@link #remainingMillis()} counts down on {@link
 * System#nanoTime()} from the time left that the server put in the frame, less half the last
 * ping's round trip: the phone's wall clock, which may be minutes off, is never read.
 */
public final class Offer {
  private final long id;
  private final long orderId;
  private final MasterClient client;
  private volatile String address;
  private volatile String deviceType;
  private volatile String problem;
  private volatile Date expiresAt;
  private volatile long deadlineNanos;
  /** Set once a decision is asked for: every later call answers the same future. */
  private CompletableFuture<Outcome> decision;

  /**
   * @param expiresInMillis the time left when the server built the frame
   * @param sinceNanos when the frame arrived, less half a round trip: when the server built it
   */
  Offer(Protocol.OfferView view, long expiresInMillis, long sinceNanos, MasterClient client) {
    this.id = view.id;
    this.orderId = view.orderId;
    this.client = client;
    refresh(view, expiresInMillis, sinceNanos);
  }

  /** A redelivery or replay of the same offer: the newest time left wins. */
  void refresh(Protocol.OfferView view, long expiresInMillis, long sinceNanos) {
    address = view.address;
    deviceType = view.deviceType;
    problem = view.problem;
    expiresAt = Wire.date(view.expiresAt);
    deadlineNanos = sinceNanos + expiresInMillis * 1_000_000L;
  }

  public long id() {
    return id;
  }

  public long orderId() {
    return orderId;
  }

  public String address() {
    return address;
  }

  public String deviceType() {
    return deviceType;
  }

  public String problem() {
    return problem;
  }

  /** The deadline on the server's clock. */
  public Date expiresAt() {
    return new Date(expiresAt.getTime());
  }

  /** Milliseconds left to decide; 0 once the deadline passed. */
  public long remainingMillis() {
    return Math.max(0, Math.round((deadlineNanos - System.nanoTime()) / 1e6));
  }

  /** Accepts, at most once: if the socket is down it waits for the next one, never past the deadline. */
  public synchronized CompletableFuture<Outcome> accept() {
    if (decision == null) decision = client.decide(this, true, null);
    return decision;
  }

  /** Rejects ({@code reason} may be null), with the same guarantees as {@link #accept()}. */
  public synchronized CompletableFuture<Outcome> reject(String reason) {
    if (decision == null) decision = client.decide(this, false, reason);
    return decision;
  }

  @Override
  public String toString() {
    return "Offer " + id + " (order " + orderId + ", " + address + ", " + remainingMillis() + " ms left)";
  }
}
