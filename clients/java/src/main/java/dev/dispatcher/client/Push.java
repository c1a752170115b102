package dev.dispatcher.client;

import com.google.gson.JsonObject;

/** A frame pushed on a topic (such as {@code new_message}): its type and its fields. */
public final class Push {
  private final String type;
  private final JsonObject message;

  Push(String type, JsonObject message) {
    this.type = type;
    this.message = message;
  }

  public String type() {
    return type;
  }

  /** The whole frame, {@code type} included. */
  public JsonObject message() {
    return message;
  }
}
