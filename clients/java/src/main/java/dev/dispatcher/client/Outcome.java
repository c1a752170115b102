package dev.dispatcher.client;

/** How a decision ended, as {@link Offer#accept()} and {@link Offer#reject(String)} complete. */
public enum Outcome {
  ACCEPTED,
  REJECTED,
  /** The deadline passed first; a decision not sent by then never is. */
  EXPIRED,
  /** Another master won the order. */
  TAKEN,
  /** The server had already decided the offer otherwise. */
  NOT_PENDING
}
