package dev.dispatcher.client;

/** Why the client stopped trying, or what went wrong: what {@link Listener#onError} is given. */
public final class DispatcherException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final String code;

  public DispatcherException(String code, String message) {
    super(message);
    this.code = code;
  }

  /** {@code replaced}, {@code token_refused}, {@code closed}, or the server's error {@code code}. */
  public String code() {
    return code;
  }
}
