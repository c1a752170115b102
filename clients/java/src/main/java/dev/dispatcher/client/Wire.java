package dev.dispatcher.client;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.time.OffsetDateTime;
import java.util.Date;
import okhttp3.HttpUrl;

/** JSON and the few conversions the wire needs. */
final class Wire {
  static final Gson GSON = new Gson();

  private Wire() {}

  /** An RFC 3339 time as the server writes it. */
  static Date date(String rfc3339) {
    return Date.from(OffsetDateTime.parse(rfc3339).toInstant());
  }

  /** A frame's object, or null for anything that is not a JSON object with a {@code type}. */
  static JsonObject frame(String text) {
    JsonObject frame = object(text);
    JsonElement type = frame == null ? null : frame.get("type");
    return type != null && type.isJsonPrimitive() ? frame : null;
  }

  /** A JSON object, or null for anything else. */
  static JsonObject object(String text) {
    try {
      JsonElement parsed = JsonParser.parseString(text);
      return parsed.isJsonObject() ? parsed.getAsJsonObject() : null;
    } catch (RuntimeException notJson) {
      return null;
    }
  }

  /** {@code wss://host/ws} → {@code https://host/}: where the same server's HTTP API is. */
  static HttpUrl httpBase(String url) {
    String http = url.replaceFirst("(?i)^ws(s?):", "http$1:");
    return HttpUrl.get(http).newBuilder().encodedPath("/").query(null).build();
  }
}
