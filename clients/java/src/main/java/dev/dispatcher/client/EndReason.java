package dev.dispatcher.client;

/** Why an offer left {@link MasterClient#offers()}. */
public enum EndReason {
  EXPIRED,
  CANCELLED,
  ACCEPTED,
  REJECTED
}
