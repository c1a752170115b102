package dev.dispatcher.client;

import com.google.gson.JsonObject;
import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;

/** The real dispatcher binary, on a free port with its own SQLite file. */
final class Server implements AutoCloseable {
  static final String BINARY =
      System.getenv().getOrDefault("DISPATCHER_BIN", new File("../../target/debug/dispatcher").getAbsolutePath());
  static final String SECRET = "client-library-tests-secret-0123456789abcdef";
  static final OkHttpClient HTTP = new OkHttpClient();
  private static final MediaType JSON = MediaType.get("application/json");

  final Path dir;
  final Map<String, String> vars;
  int port;
  private Process process;

  Server(Map<String, String> vars) throws IOException {
    this.vars = vars;
    this.dir = Files.createTempDirectory("dispatcher-java-");
  }

  static int freePort() throws IOException {
    try (ServerSocket socket = new ServerSocket(0)) {
      return socket.getLocalPort();
    }
  }

  static String token(String role, long sub, Long masterId, long ttl) throws Exception {
    ProcessBuilder command = new ProcessBuilder(
        BINARY, "token", "--role", role, "--sub", String.valueOf(sub), "--ttl", String.valueOf(ttl));
    if (masterId != null) {
      command.command().add("--master-id");
      command.command().add(String.valueOf(masterId));
    }
    command.environment().put("JWT_SECRET", SECRET);
    Process made = command.redirectErrorStream(false).start();
    String out = new String(readAll(made), StandardCharsets.UTF_8).trim();
    if (made.waitFor() != 0) throw new IllegalStateException("dispatcher token failed");
    return out;
  }

  private static byte[] readAll(Process process) throws IOException {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    byte[] chunk = new byte[4096];
    for (int read; (read = process.getInputStream().read(chunk)) > 0; ) out.write(chunk, 0, read);
    return out.toByteArray();
  }

  static String masterToken(long id, long ttl) throws Exception {
    return token("master", 1000 + id, id, ttl);
  }

  static String serviceToken() throws Exception {
    return token("service", 2, null, 3600);
  }

  Server start() throws Exception {
    if (port == 0) port = freePort();
    ProcessBuilder command = new ProcessBuilder(BINARY);
    Map<String, String> env = command.environment();
    env.put("RUST_LOG", "warn");
    env.put("BIND_ADDR", "127.0.0.1:" + port);
    env.put("DATABASE_URL", dir.resolve("dispatcher.db").toString());
    env.put("JWT_SECRET", SECRET);
    env.putAll(vars);
    process = command.redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    until(
        () -> {
          try (Response health = HTTP.newCall(new Request.Builder().url(http() + "/health").build()).execute()) {
            return health.isSuccessful();
          } catch (IOException notYet) {
            return false;
          }
        },
        15_000,
        "dispatcher listening");
    return this;
  }

  String http() {
    return "http://127.0.0.1:" + port;
  }

  String ws() {
    return "ws://127.0.0.1:" + port + "/ws";
  }

  /** SIGKILL: no goodbye to anyone. */
  void kill() throws InterruptedException {
    process.destroyForcibly();
    process.waitFor();
  }

  @Override
  public void close() throws Exception {
    if (process != null && process.isAlive()) kill();
    try (Stream<Path> files = Files.walk(dir)) {
      files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
    }
  }

  static final class Answer {
    final int status;
    final JsonObject body;

    Answer(int status, JsonObject body) {
      this.status = status;
      this.body = body;
    }
  }

  Answer call(String method, String path, Object body, String bearer) throws Exception {
    RequestBody payload = body == null ? (method.equals("GET") ? null : RequestBody.create(JSON, "")) : RequestBody.create(JSON, Wire.GSON.toJson(body));
    Request request = new Request.Builder()
        .url(http() + path)
        .header("Authorization", "Bearer " + bearer)
        .method(method, payload)
        .build();
    try (Response response = HTTP.newCall(request).execute()) {
      return new Answer(response.code(), Wire.object(response.body().string()));
    }
  }

  Answer call(String method, String path, Object body) throws Exception {
    return call(method, path, body, serviceToken());
  }

  void putOrder(long id) throws Exception {
    JsonObject order = new JsonObject();
    order.addProperty("clientUserId", 7);
    order.addProperty("address", "Lenina " + id);
    order.addProperty("deviceType", "washing machine");
    order.addProperty("problem", "does not drain");
    Answer answer = call("PUT", "/api/v1/orders/" + id, order);
    if (answer.status >= 300) throw new IllegalStateException("order: " + answer.status + " " + answer.body);
  }

  /** Offers the order to the master; the stored assignment. */
  JsonObject offer(long orderId, long masterId, long ttlSeconds) throws Exception {
    JsonObject offer = new JsonObject();
    offer.addProperty("orderId", orderId);
    offer.addProperty("masterId", masterId);
    offer.addProperty("ttlSeconds", ttlSeconds);
    Answer answer = call("POST", "/api/v1/assignments", offer);
    if (answer.status != 201) throw new IllegalStateException("offer: " + answer.status + " " + answer.body);
    return answer.body.getAsJsonObject("assignment");
  }

  static void until(BooleanSupplier condition, long withinMillis, String what) throws InterruptedException {
    long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(withinMillis);
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > end) throw new AssertionError(what + " not met within " + withinMillis + " ms");
      Thread.sleep(25);
    }
  }
}
