// Generated from the server's protocol types (docs/protocol.schema.json) by
// tests/api/protocol_files.rs. Do not edit: run
// `UPDATE_PROTOCOL_FILES=1 cargo nextest run protocol_files` instead.
package dev.dispatcher.client;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/** The wire messages and the shapes they carry, as the server defines them. */
@SuppressWarnings("unused")
public final class Protocol {
  private Protocol() {}

  public static class AuthMessage {
    public static final String TYPE = "auth";
    public String type = TYPE;
    public String token;
    public JsonElement requestId;
  }

  public static class PingMessage {
    public static final String TYPE = "ping";
    public String type = TYPE;
    public JsonElement requestId;
  }

  public static class SubscribeAssignmentsMessage {
    public static final String TYPE = "subscribe_assignments";
    public String type = TYPE;
    /**
     * The app acknowledges each offer with `ack_assignment`; unacknowledged offers are sent
     * again, and a connection that acknowledges none is closed as dead.
     */
    public Boolean acks;
    public JsonElement requestId;
  }

  public static class UnsubscribeAssignmentsMessage {
    public static final String TYPE = "unsubscribe_assignments";
    public String type = TYPE;
    public JsonElement requestId;
  }

  public static class AckAssignmentMessage {
    public static final String TYPE = "ack_assignment";
    public String type = TYPE;
    public long assignmentId;
    public JsonElement requestId;
  }

  public static class AcceptAssignmentMessage {
    public static final String TYPE = "accept_assignment";
    public String type = TYPE;
    public long assignmentId;
    public JsonElement requestId;
  }

  public static class RejectAssignmentMessage {
    public static final String TYPE = "reject_assignment";
    public String type = TYPE;
    public long assignmentId;
    public String reason;
    public JsonElement requestId;
  }

  public static class SubscribeEventsMessage {
    public static final String TYPE = "subscribe_events";
    public String type = TYPE;
    public JsonElement requestId;
  }

  /**
   * Admins: the admin stats, as a `stats` message once a second.
   */
  public static class SubscribeStatsMessage {
    public static final String TYPE = "subscribe_stats";
    public String type = TYPE;
    public JsonElement requestId;
  }

  public static class RefreshTokenMessage {
    public static final String TYPE = "refresh_token";
    public String type = TYPE;
    public String token;
    public JsonElement requestId;
  }

  /**
   * Topics filter pushes (`POST /api/v1/push` with a `topic`).
   */
  public static class SubscribeMessage {
    public static final String TYPE = "subscribe";
    public String type = TYPE;
    public List<String> topics;
    public JsonElement requestId;
  }

  public static class UnsubscribeMessage {
    public static final String TYPE = "unsubscribe";
    public String type = TYPE;
    public List<String> topics;
    public JsonElement requestId;
  }

  /** Every `type` of a ClientMessage. */
  public static final List<String> CLIENT_MESSAGE_TYPES =
      Collections.unmodifiableList(
          Arrays.asList(
              "auth",
              "ping",
              "subscribe_assignments",
              "unsubscribe_assignments",
              "ack_assignment",
              "accept_assignment",
              "reject_assignment",
              "subscribe_events",
              "subscribe_stats",
              "refresh_token",
              "subscribe",
              "unsubscribe"));

  public static class ConnectedMessage {
    public static final String TYPE = "connected";
    public String type = TYPE;
    public String connectionId;
    public String serverTime;
    public JsonElement requestId;
  }

  public static class AuthSuccessMessage {
    public static final String TYPE = "auth_success";
    public String type = TYPE;
    public long userId;
    public String role;
    public Long masterId;
    public JsonElement requestId;
  }

  public static class AuthErrorMessage {
    public static final String TYPE = "auth_error";
    public String type = TYPE;
    public String message;
    public JsonElement requestId;
  }

  public static class PongMessage {
    public static final String TYPE = "pong";
    public String type = TYPE;
    public String serverTime;
    public JsonElement requestId;
  }

  public static class SubscribedAssignmentsMessage {
    public static final String TYPE = "subscribed_assignments";
    public String type = TYPE;
    public JsonElement requestId;
  }

  public static class UnsubscribedAssignmentsMessage {
    public static final String TYPE = "unsubscribed_assignments";
    public String type = TYPE;
    public String reason;
    public JsonElement requestId;
  }

  public static class SubscribedEventsMessage {
    public static final String TYPE = "subscribed_events";
    public String type = TYPE;
    public JsonElement requestId;
  }

  /**
   * An offer, with the server's clock and the time left when the frame was built, so that an
   * app with a skewed clock still counts down right.
   */
  public static class NewAssignmentMessage {
    public static final String TYPE = "new_assignment";
    public String type = TYPE;
    public OfferView assignment;
    public String serverTime;
    public long expiresInMs;
    public JsonElement requestId;
  }

  public static class AssignmentAcceptedMessage {
    public static final String TYPE = "assignment_accepted";
    public String type = TYPE;
    public long assignmentId;
    public long orderId;
    public OrderView order;
    public JsonElement requestId;
  }

  public static class AssignmentRejectedMessage {
    public static final String TYPE = "assignment_rejected";
    public String type = TYPE;
    public long assignmentId;
    public long orderId;
    public JsonElement requestId;
  }

  public static class AssignmentExpiredMessage {
    public static final String TYPE = "assignment_expired";
    public String type = TYPE;
    public long assignmentId;
    public long orderId;
    public JsonElement requestId;
  }

  public static class AssignmentCancelledMessage {
    public static final String TYPE = "assignment_cancelled";
    public String type = TYPE;
    public long assignmentId;
    public long orderId;
    public JsonElement requestId;
  }

  public static class OrderStatusUpdateMessage {
    public static final String TYPE = "order_status_update";
    public String type = TYPE;
    public long orderId;
    public String status;
    public String updatedAt;
    public JsonElement requestId;
  }

  public static class AssignmentEventMessage {
    public static final String TYPE = "assignment_event";
    public String type = TYPE;
    public String event;
    public long assignmentId;
    public long orderId;
    public long masterId;
    public String at;
    /**
     * When the offer was made, on decisions: `at` minus this is the time to decide.
     */
    public String offeredAt;
    /**
     * The offer's deadline, on `undelivered`.
     */
    public String expiresAt;
    public JsonElement requestId;
  }

  /**
   * A cascade of offers ended: `assigned` (with the master), `exhausted` or `cancelled`.
   */
  public static class DispatchEventMessage {
    public static final String TYPE = "dispatch_event";
    public String type = TYPE;
    public String event;
    public long dispatchId;
    public long orderId;
    public Long masterId;
    public String at;
    public JsonElement requestId;
  }

  /**
   * The connection's token runs out at `expires_at`; a `refresh_token` keeps it open.
   */
  public static class TokenExpiringMessage {
    public static final String TYPE = "token_expiring";
    public String type = TYPE;
    public String expiresAt;
    public JsonElement requestId;
  }

  public static class TokenRefreshedMessage {
    public static final String TYPE = "token_refreshed";
    public String type = TYPE;
    public String expiresAt;
    public JsonElement requestId;
  }

  public static class SubscribedMessage {
    public static final String TYPE = "subscribed";
    public String type = TYPE;
    public List<String> topics;
    public JsonElement requestId;
  }

  public static class UnsubscribedMessage {
    public static final String TYPE = "unsubscribed";
    public String type = TYPE;
    public List<String> topics;
    public JsonElement requestId;
  }

  /**
   * The body of every error answer, over HTTP and inside WebSocket `error` messages.
   */
  public static class ErrorMessage {
    public static final String TYPE = "error";
    public String type = TYPE;
    /**
     * `unauthorized`, `forbidden`, `bad_request`, `unknown_type`, `not_found`,
     * `assignment_not_pending`, `conflict`, `rate_limited`, `payload_too_large`, `over_capacity`,
     * `unavailable` or `internal`.
     */
    public String code;
    public String message;
    public JsonElement requestId;
  }

  /**
   * Admins, after `subscribe_stats`: the admin stats, once a second.
   */
  public static class StatsMessage extends WebsocketStats {
    public static final String TYPE = "stats";
    public String type = TYPE;
    public JsonElement requestId;
  }

  /** Every `type` of a ServerMessage. */
  public static final List<String> SERVER_MESSAGE_TYPES =
      Collections.unmodifiableList(
          Arrays.asList(
              "connected",
              "auth_success",
              "auth_error",
              "pong",
              "subscribed_assignments",
              "unsubscribed_assignments",
              "subscribed_events",
              "new_assignment",
              "assignment_accepted",
              "assignment_rejected",
              "assignment_expired",
              "assignment_cancelled",
              "order_status_update",
              "assignment_event",
              "dispatch_event",
              "token_expiring",
              "token_refreshed",
              "subscribed",
              "unsubscribed",
              "error",
              "stats"));

  public static final class Role {
    private Role() {}

    public static final String MASTER = "master";
    public static final String CLIENT = "client";
    public static final String ADMIN = "admin";
    public static final String SERVICE = "service";
  }

  /**
   * What a master sees of an offer before accepting it: never the client's name or phone.
   */
  public static class OfferView {
    public long id;
    public long orderId;
    public String address;
    public String deviceType;
    public String problem;
    public String createdAt;
    public String expiresAt;
  }

  public static class OrderView {
    public long id;
    public long clientUserId;
    public String address;
    public String deviceType;
    public String problem;
    public String clientName;
    public String clientPhone;
    public String status;
    public Long masterId;
    public String createdAt;
    public String updatedAt;
  }

  /**
   * Where an order stands.
   */
  public static final class OrderStatus {
    private OrderStatus() {}

    public static final String NEW = "new";
    public static final String ASSIGNED = "assigned";
    public static final String IN_PROGRESS = "in_progress";
    public static final String COMPLETED = "completed";
    public static final String CANCELLED = "cancelled";
  }

  /**
   * What happened to an offer, as `assignment_event` names it.
   */
  public static final class AssignmentEventKind {
    private AssignmentEventKind() {}

    public static final String DELIVERED = "delivered";
    public static final String ACCEPTED = "accepted";
    public static final String REJECTED = "rejected";
    public static final String EXPIRED = "expired";
    public static final String CANCELLED = "cancelled";
    public static final String UNDELIVERED = "undelivered";
  }

  /**
   * Where a cascade of offers stands: running until one accept, exhaustion or a cancel ends it.
   */
  public static final class DispatchStatus {
    private DispatchStatus() {}

    public static final String RUNNING = "running";
    public static final String ASSIGNED = "assigned";
    public static final String EXHAUSTED = "exhausted";
    public static final String CANCELLED = "cancelled";
  }

  public static class SubscriptionRow {
    public long userId;
    public long masterId;
    public boolean subscribed;
    public boolean onShift;
    public String lastPing;
    public boolean isActive;
    public String node;
  }

  public static class NodeRow {
    public String id;
    public long connections;
    public String lastSeen;
  }

  public static class OfferFigures {
    public long windowSecs;
    /**
     * Offers ever made (the highest offer id): its rise per second is the offer rate.
     */
    public long createdTotal;
    public long created;
    public long delivered;
    public long accepted;
    public long rejected;
    public long expired;
    public long cancelled;
    /**
     * Creation to the first acknowledgement.
     */
    public Percentiles timeToDeliverMs;
    /**
     * Creation to the accept.
     */
    public Percentiles timeToAcceptMs;
  }

  /**
   * Nearest-rank percentiles; null when there is nothing to rank.
   */
  public static class Percentiles {
    public Long p50;
    public Long p90;
    public Long p99;
  }

  public static class WebsocketStats {
    public long totalConnected;
    /**
     * Over every node: `master`, `client`, `service`, `admin`, `unauthenticated`.
     */
    public Map<String, Long> connectionsByRole;
    public long totalSubscribed;
    public long activeSubscriptions;
    public long onShiftSubscriptions;
    /**
     * Sorted by `masterId`: the page `?limit=` and `?after=` asked for.
     */
    public List<SubscriptionRow> subscriptions;
    /**
     * Present, and true, when rows were left out after the page: ask again with `?after=`
     * the last row's `masterId`.
     */
    public boolean truncated;
    public List<NodeRow> nodes;
    public OfferFigures offers;
  }

  /**
   * The body of every error answer, over HTTP and inside WebSocket `error` messages.
   */
  public static class ErrorBody {
    /**
     * `unauthorized`, `forbidden`, `bad_request`, `unknown_type`, `not_found`,
     * `assignment_not_pending`, `conflict`, `rate_limited`, `payload_too_large`, `over_capacity`,
     * `unavailable` or `internal`.
     */
    public String code;
    public String message;
  }

  public static class AssignmentView {
    public long id;
    public long orderId;
    public long masterId;
    public String status;
    public String createdAt;
    public String expiresAt;
    public String decidedAt;
    public String rejectReason;
    /**
     * When the master's app first acknowledged the offer (`ack_assignment`).
     */
    public String deliveredAt;
  }

  /**
   * Where an offer stands: pending until exactly one decision ends it.
   */
  public static final class AssignmentStatus {
    private AssignmentStatus() {}

    public static final String PENDING = "pending";
    public static final String ACCEPTED = "accepted";
    public static final String REJECTED = "rejected";
    public static final String EXPIRED = "expired";
    public static final String CANCELLED = "cancelled";
  }

  /**
   * `POST /api/v1/assignments`: the offer, and how many of the answering node's connections it reached.
   */
  public static class AssignmentCreated {
    public AssignmentView assignment;
    public long delivered;
  }

  /**
   * `POST /api/v1/assignments/batch`: for each offer, in the order given, what
   * `POST /api/v1/assignments` would have answered for it alone.
   */
  public static class BatchAnswer {
    public List<JsonElement> results;
  }

  public static class DispatchView {
    public long id;
    public long orderId;
    public String status;
    public String mode;
    public List<CandidateView> candidates;
    /**
     * The candidates with an outstanding offer.
     */
    public List<Long> current;
    public long batchSize;
    public long ttlSeconds;
    public boolean skipOffline;
    /**
     * Who accepted, once it is `assigned`.
     */
    public Long masterId;
    public String createdAt;
    public String updatedAt;
  }

  /**
   * How a dispatch offers: one batch after another, or to every candidate at once.
   */
  public static final class DispatchMode {
    private DispatchMode() {}

    public static final String SEQUENTIAL = "sequential";
    public static final String BROADCAST = "broadcast";
  }

  public static class CandidateView {
    public long masterId;
    public String outcome;
    /**
     * The offer made to this candidate, once there is one.
     */
    public Long assignmentId;
  }

  /**
   * What became of one candidate of a dispatch.
   */
  public static final class CandidateOutcome {
    private CandidateOutcome() {}

    public static final String PENDING = "pending";
    public static final String OFFERED = "offered";
    public static final String ACCEPTED = "accepted";
    public static final String REJECTED = "rejected";
    public static final String EXPIRED = "expired";
    public static final String SKIPPED = "skipped";
    public static final String CANCELLED = "cancelled";
  }

  /**
   * A dispatch, as its routes answer it.
   */
  public static class DispatchAnswer {
    public DispatchView dispatch;
  }

  public static class MasterView {
    public long id;
    public boolean onShift;
    public String updatedAt;
  }

  /**
   * The polling fallback: a master's open offers, as `new_assignment` shows them, with the
   * server's clock, so that an app counts down each offer's time left without trusting its own.
   */
  public static class OpenOffers {
    public String serverTime;
    public List<OfferView> assignments;
  }
}
