// A master app on the JVM, as the Android app uses the library:
//   clients/java/build.sh && java -cp clients/java/build/dispatcher-client.jar:/usr/share/java/okhttp.jar:\
//     /usr/share/java/okio.jar:/usr/share/java/gson.jar examples/JavaMaster.java
// DISPATCHER_URL (ws://127.0.0.1:8080/ws) and MASTER_TOKEN name the server and the master.
// It accepts offers from "Lenina" and leaves the rest to expire.
import dev.dispatcher.client.*;
import java.util.concurrent.CountDownLatch;

public class JavaMaster {
  public static void main(String[] args) throws InterruptedException {
    String url = System.getenv().getOrDefault("DISPATCHER_URL", "ws://127.0.0.1:8080/ws");
    MasterClient client = MasterClient.builder(url)
        .tokenProvider(() -> System.getenv("MASTER_TOKEN")) // a real app asks its backend here
        .pollUrl(url.replaceFirst("^ws", "http").replaceFirst("/ws$", "/api/v1/masters/me/assignments"))
        .listener(new Listener() {
          @Override public void onState(MasterClient.State state) { System.out.println("[" + state + "]"); }
          @Override public void onError(DispatcherException error) { System.out.println("error " + error.code() + ": " + error.getMessage()); }
          @Override public void onOffer(Offer offer) {
            System.out.printf("offer %d: %s, %s, %s; %d s left%n", offer.id(), offer.address(),
                offer.deviceType(), offer.problem(), Math.round(offer.remainingMillis() / 1000.0));
            if (offer.address().startsWith("Lenina")) {
              offer.accept().thenAccept(outcome -> System.out.println("offer " + offer.id() + ": " + outcome));
            }
          }
          @Override public void onOfferEnded(Offer offer, EndReason reason) { System.out.println("offer " + offer.id() + " ended: " + reason); }
          @Override public void onOrderStatus(Protocol.OrderStatusUpdateMessage update) { System.out.println("order " + update.orderId + " is " + update.status); }
          @Override public void onPush(Push push) { System.out.println("push " + push.message()); }
        })
        .build();
    client.connect();
    CountDownLatch stop = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> { client.close(); stop.countDown(); }));
    stop.await();
  }
}
