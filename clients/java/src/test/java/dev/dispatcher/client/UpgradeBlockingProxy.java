package dev.dispatcher.client;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A TCP proxy in front of the real server that answers WebSocket upgrades with 503 while
 * {@code blocked}, as a captive portal or a misconfigured proxy would. Everything else passes,
 * one request per connection, so that a pooled connection cannot carry an upgrade past it.
 */
final class UpgradeBlockingProxy implements AutoCloseable {
  volatile boolean blocked = true;
  final AtomicInteger refused = new AtomicInteger();
  final AtomicInteger polls = new AtomicInteger();
  private final ServerSocket listener;
  private final int target;

  UpgradeBlockingProxy(int target) throws IOException {
    this.target = target;
    this.listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    Thread accepting = new Thread(this::accept, "proxy");
    accepting.setDaemon(true);
    accepting.start();
  }

  int port() {
    return listener.getLocalPort();
  }

  private void accept() {
    while (!listener.isClosed()) {
      try {
        Socket client = listener.accept();
        Thread serving = new Thread(() -> serve(client), "proxy-connection");
        serving.setDaemon(true);
        serving.start();
      } catch (IOException closed) {
        return;
      }
    }
  }

  private void serve(Socket client) {
    try (Socket downstream = client) {
      String head = readHead(downstream.getInputStream());
      if (head == null) return;
      String lower = head.toLowerCase(Locale.ROOT);
      boolean upgrade = lower.contains("\r\nupgrade: websocket");
      if (upgrade && blocked) {
        refused.incrementAndGet();
        downstream.getOutputStream().write(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .getBytes(StandardCharsets.US_ASCII));
        return;
      }
      if (lower.contains("/masters/me/assignments")) polls.incrementAndGet();
      if (!upgrade) head = head.replaceFirst("\r\n", "\r\nConnection: close\r\n");
      try (Socket upstream = new Socket(InetAddress.getLoopbackAddress(), target)) {
        upstream.getOutputStream().write(head.getBytes(StandardCharsets.ISO_8859_1));
        Thread back = new Thread(() -> pipe(upstream, downstream), "proxy-back");
        back.setDaemon(true);
        back.start();
        pipe(downstream, upstream);
        back.join();
      }
    } catch (IOException | InterruptedException gone) {
      // One side went away.
    }
  }

  /** The request line and headers, up to and including the blank line. */
  private static String readHead(InputStream in) throws IOException {
    ByteArrayOutputStream head = new ByteArrayOutputStream();
    int matched = 0;
    byte[] end = {'\r', '\n', '\r', '\n'};
    for (int next; (next = in.read()) >= 0; ) {
      head.write(next);
      matched = next == end[matched] ? matched + 1 : (next == '\r' ? 1 : 0);
      if (matched == 4) return head.toString("ISO-8859-1");
    }
    return null;
  }

  private static void pipe(Socket from, Socket to) {
    byte[] chunk = new byte[8192];
    try {
      InputStream in = from.getInputStream();
      OutputStream out = to.getOutputStream();
      for (int read; (read = in.read(chunk)) > 0; ) out.write(chunk, 0, read);
      to.shutdownOutput();
    } catch (IOException gone) {
      // Closed.
    }
  }

  @Override
  public void close() throws IOException {
    listener.close();
  }
}
