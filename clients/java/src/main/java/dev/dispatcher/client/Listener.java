package dev.dispatcher.client;

/**
 * What a {@link MasterClient} tells the app, on the {@code Executor} the app gave it. A method
 * that throws is logged and does not break the client.
 */
public interface Listener {
  default void onState(MasterClient.State state) {}

  /** A new offer; a redelivered or replayed one updates the same object and is not told again. */
  default void onOffer(Offer offer) {}

  default void onOfferEnded(Offer offer, EndReason reason) {}

  default void onOrderStatus(Protocol.OrderStatusUpdateMessage update) {}

  default void onPush(Push push) {}

  default void onError(DispatcherException error) {}
}
