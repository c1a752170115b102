package dev.dispatcher.client;

/**
 * Gives a fresh token: before the first connection, on {@code token_expiring}, and once after the
 * server refused one. It is called on a thread of the client's own, never the app's, so it may
 * block on the network.
 */
public interface TokenProvider {
  String token() throws Exception;
}
