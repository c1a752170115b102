// Generated from the server's protocol types (docs/protocol.schema.json) by
// tests/api/protocol_files.rs. Do not edit: run
// `UPDATE_PROTOCOL_FILES=1 cargo nextest run protocol_files` instead.

export interface AuthMessage {
  type: "auth";
  token: string;
  requestId?: string | number;
}

export interface PingMessage {
  type: "ping";
  requestId?: string | number;
}

export interface SubscribeAssignmentsMessage {
  type: "subscribe_assignments";
  /**
   * The app acknowledges each offer with `ack_assignment`; unacknowledged offers are sent
   * again, and a connection that acknowledges none is closed as dead.
   */
  acks?: boolean;
  requestId?: string | number;
}

export interface UnsubscribeAssignmentsMessage {
  type: "unsubscribe_assignments";
  requestId?: string | number;
}

export interface AckAssignmentMessage {
  type: "ack_assignment";
  assignmentId: number;
  requestId?: string | number;
}

export interface AcceptAssignmentMessage {
  type: "accept_assignment";
  assignmentId: number;
  requestId?: string | number;
}

export interface RejectAssignmentMessage {
  type: "reject_assignment";
  assignmentId: number;
  reason?: string | null;
  requestId?: string | number;
}

export interface SubscribeEventsMessage {
  type: "subscribe_events";
  requestId?: string | number;
}

/**
 * Admins: the admin stats, as a `stats` message once a second.
 */
export interface SubscribeStatsMessage {
  type: "subscribe_stats";
  requestId?: string | number;
}

export interface RefreshTokenMessage {
  type: "refresh_token";
  token: string;
  requestId?: string | number;
}

/**
 * Topics filter pushes (`POST /api/v1/push` with a `topic`).
 */
export interface SubscribeMessage {
  type: "subscribe";
  topics?: string[] | null;
  requestId?: string | number;
}

export interface UnsubscribeMessage {
  type: "unsubscribe";
  topics?: string[] | null;
  requestId?: string | number;
}

export type ClientMessage =
  | AuthMessage
  | PingMessage
  | SubscribeAssignmentsMessage
  | UnsubscribeAssignmentsMessage
  | AckAssignmentMessage
  | AcceptAssignmentMessage
  | RejectAssignmentMessage
  | SubscribeEventsMessage
  | SubscribeStatsMessage
  | RefreshTokenMessage
  | SubscribeMessage
  | UnsubscribeMessage;
export type ClientMessageType = ClientMessage["type"];
export type ClientMessageOf<T extends ClientMessageType> = Extract<ClientMessage, { type: T }>;
/** Every `type` of a ClientMessage. */
export const ClientMessageTypes: readonly ClientMessageType[] = [
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
  "unsubscribe",
];

export interface ConnectedMessage {
  type: "connected";
  connectionId: string;
  serverTime: string;
  requestId?: string | number;
}

export interface AuthSuccessMessage {
  type: "auth_success";
  userId: UserId;
  role: Role;
  masterId?: MasterId | null;
  requestId?: string | number;
}

export interface AuthErrorMessage {
  type: "auth_error";
  message: string;
  requestId?: string | number;
}

export interface PongMessage {
  type: "pong";
  serverTime: string;
  requestId?: string | number;
}

export interface SubscribedAssignmentsMessage {
  type: "subscribed_assignments";
  requestId?: string | number;
}

export interface UnsubscribedAssignmentsMessage {
  type: "unsubscribed_assignments";
  reason?: string | null;
  requestId?: string | number;
}

export interface SubscribedEventsMessage {
  type: "subscribed_events";
  requestId?: string | number;
}

/**
 * An offer, with the server's clock and the time left when the frame was built, so that an
 * app with a skewed clock still counts down right.
 */
export interface NewAssignmentMessage {
  type: "new_assignment";
  assignment: OfferView;
  serverTime: string;
  expiresInMs: number;
  requestId?: string | number;
}

export interface AssignmentAcceptedMessage {
  type: "assignment_accepted";
  assignmentId: number;
  orderId: number;
  order: OrderView;
  requestId?: string | number;
}

export interface AssignmentRejectedMessage {
  type: "assignment_rejected";
  assignmentId: number;
  orderId: number;
  requestId?: string | number;
}

export interface AssignmentExpiredMessage {
  type: "assignment_expired";
  assignmentId: number;
  orderId: number;
  requestId?: string | number;
}

export interface AssignmentCancelledMessage {
  type: "assignment_cancelled";
  assignmentId: number;
  orderId: number;
  requestId?: string | number;
}

export interface OrderStatusUpdateMessage {
  type: "order_status_update";
  orderId: number;
  status: OrderStatus;
  updatedAt: string;
  requestId?: string | number;
}

export interface AssignmentEventMessage {
  type: "assignment_event";
  event: AssignmentEventKind;
  assignmentId: number;
  orderId: number;
  masterId: number;
  at: string;
  /**
   * When the offer was made, on decisions: `at` minus this is the time to decide.
   */
  offeredAt?: string | null;
  /**
   * The offer's deadline, on `undelivered`.
   */
  expiresAt?: string | null;
  requestId?: string | number;
}

/**
 * A cascade of offers ended: `assigned` (with the master), `exhausted` or `cancelled`.
 */
export interface DispatchEventMessage {
  type: "dispatch_event";
  event: DispatchStatus;
  dispatchId: number;
  orderId: number;
  masterId?: number | null;
  at: string;
  requestId?: string | number;
}

/**
 * The connection's token runs out at `expires_at`; a `refresh_token` keeps it open.
 */
export interface TokenExpiringMessage {
  type: "token_expiring";
  expiresAt: string;
  requestId?: string | number;
}

export interface TokenRefreshedMessage {
  type: "token_refreshed";
  expiresAt: string;
  requestId?: string | number;
}

export interface SubscribedMessage {
  type: "subscribed";
  topics: string[];
  requestId?: string | number;
}

export interface UnsubscribedMessage {
  type: "unsubscribed";
  topics: string[];
  requestId?: string | number;
}

/**
 * The body of every error answer, over HTTP and inside WebSocket `error` messages.
 */
export interface ErrorMessage {
  type: "error";
  /**
   * `unauthorized`, `forbidden`, `bad_request`, `unknown_type`, `not_found`,
   * `assignment_not_pending`, `conflict`, `rate_limited`, `payload_too_large`, `over_capacity`,
   * `unavailable` or `internal`.
   */
  code: string;
  message: string;
  requestId?: string | number;
}

/**
 * Admins, after `subscribe_stats`: the admin stats, once a second.
 */
export interface StatsMessage extends WebsocketStats {
  type: "stats";
  requestId?: string | number;
}

/**
 * A push: its `type` and the payload's fields, at the top level.
 */
export interface PushMessage {
  type: string;
  [field: string]: unknown;
}

export type ServerMessage =
  | ConnectedMessage
  | AuthSuccessMessage
  | AuthErrorMessage
  | PongMessage
  | SubscribedAssignmentsMessage
  | UnsubscribedAssignmentsMessage
  | SubscribedEventsMessage
  | NewAssignmentMessage
  | AssignmentAcceptedMessage
  | AssignmentRejectedMessage
  | AssignmentExpiredMessage
  | AssignmentCancelledMessage
  | OrderStatusUpdateMessage
  | AssignmentEventMessage
  | DispatchEventMessage
  | TokenExpiringMessage
  | TokenRefreshedMessage
  | SubscribedMessage
  | UnsubscribedMessage
  | ErrorMessage
  | StatsMessage;
export type ServerMessageType = ServerMessage["type"];
export type ServerMessageOf<T extends ServerMessageType> = Extract<ServerMessage, { type: T }>;
/** Every `type` of a ServerMessage. */
export const ServerMessageTypes: readonly ServerMessageType[] = [
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
  "stats",
];

/**
 * A user of the platform, as his token's `sub` names him.
 */
export type UserId = number;

export type Role = "master" | "client" | "admin" | "service";

/**
 * A master (technician), as his token's `master_id` names him.
 */
export type MasterId = number;

/**
 * What a master sees of an offer before accepting it: never the client's name or phone.
 */
export interface OfferView {
  id: number;
  orderId: number;
  address: string;
  deviceType: string;
  problem: string;
  createdAt: string;
  expiresAt: string;
}

export interface OrderView {
  id: number;
  clientUserId: number;
  address: string;
  deviceType: string;
  problem: string;
  clientName?: string | null;
  clientPhone?: string | null;
  status: OrderStatus;
  masterId?: number | null;
  createdAt: string;
  updatedAt: string;
}

/**
 * Where an order stands.
 */
export type OrderStatus = "new" | "assigned" | "in_progress" | "completed" | "cancelled";

/**
 * What happened to an offer, as `assignment_event` names it.
 */
export type AssignmentEventKind = "delivered" | "accepted" | "rejected" | "expired" | "cancelled" | "undelivered";

/**
 * Where a cascade of offers stands: running until one accept, exhaustion or a cancel ends it.
 */
export type DispatchStatus = "running" | "assigned" | "exhausted" | "cancelled";

export interface SubscriptionRow {
  userId: UserId;
  masterId: MasterId;
  subscribed: boolean;
  onShift: boolean;
  lastPing?: string | null;
  isActive: boolean;
  node: string;
}

export interface NodeRow {
  id: string;
  connections: number;
  lastSeen: string;
}

export interface OfferFigures {
  windowSecs: number;
  /**
   * Offers ever made (the highest offer id): its rise per second is the offer rate.
   */
  createdTotal: number;
  created: number;
  delivered: number;
  accepted: number;
  rejected: number;
  expired: number;
  cancelled: number;
  /**
   * Creation to the first acknowledgement.
   */
  timeToDeliverMs: Percentiles;
  /**
   * Creation to the accept.
   */
  timeToAcceptMs: Percentiles;
}

/**
 * Nearest-rank percentiles; null when there is nothing to rank.
 */
export interface Percentiles {
  p50?: number | null;
  p90?: number | null;
  p99?: number | null;
}

export interface WebsocketStats {
  totalConnected: number;
  /**
   * Over every node: `master`, `client`, `service`, `admin`, `unauthenticated`.
   */
  connectionsByRole: Record<string, number>;
  totalSubscribed: number;
  activeSubscriptions: number;
  onShiftSubscriptions: number;
  /**
   * Sorted by `masterId`: the page `?limit=` and `?after=` asked for.
   */
  subscriptions: SubscriptionRow[];
  /**
   * Present, and true, when rows were left out after the page: ask again with `?after=`
   * the last row's `masterId`.
   */
  truncated: boolean;
  nodes: NodeRow[];
  offers: OfferFigures;
}

/**
 * The body of every error answer, over HTTP and inside WebSocket `error` messages.
 */
export interface ErrorBody {
  /**
   * `unauthorized`, `forbidden`, `bad_request`, `unknown_type`, `not_found`,
   * `assignment_not_pending`, `conflict`, `rate_limited`, `payload_too_large`, `over_capacity`,
   * `unavailable` or `internal`.
   */
  code: string;
  message: string;
}

export interface AssignmentView {
  id: number;
  orderId: number;
  masterId: number;
  status: AssignmentStatus;
  createdAt: string;
  expiresAt: string;
  decidedAt?: string | null;
  rejectReason?: string | null;
  /**
   * When the master's app first acknowledged the offer (`ack_assignment`).
   */
  deliveredAt?: string | null;
}

/**
 * Where an offer stands: pending until exactly one decision ends it.
 */
export type AssignmentStatus = "pending" | "accepted" | "rejected" | "expired" | "cancelled";

/**
 * `POST /api/v1/assignments`: the offer, and how many of the answering node's connections it reached.
 */
export interface AssignmentCreated {
  assignment: AssignmentView;
  delivered: number;
}

/**
 * `POST /api/v1/assignments/batch`: for each offer, in the order given, what
 * `POST /api/v1/assignments` would have answered for it alone.
 */
export interface BatchAnswer {
  results: BatchResult[];
}

/**
 * One offer's answer in a batch: the status it would have had, and that answer's body.
 */
export type BatchResult = {
  /**
   * 201.
   */
  status: number;
  assignment: AssignmentView;
  delivered: number;
} | {
  status: number;
  code: string;
  message: string;
};

export interface DispatchView {
  id: number;
  orderId: number;
  status: DispatchStatus;
  mode: DispatchMode;
  candidates: CandidateView[];
  /**
   * The candidates with an outstanding offer.
   */
  current: number[];
  batchSize: number;
  ttlSeconds: number;
  skipOffline: boolean;
  /**
   * Who accepted, once it is `assigned`.
   */
  masterId?: number | null;
  createdAt: string;
  updatedAt: string;
}

/**
 * How a dispatch offers: one batch after another, or to every candidate at once.
 */
export type DispatchMode = "sequential" | "broadcast";

export interface CandidateView {
  masterId: number;
  outcome: CandidateOutcome;
  /**
   * The offer made to this candidate, once there is one.
   */
  assignmentId?: number | null;
}

/**
 * What became of one candidate of a dispatch.
 */
export type CandidateOutcome = "pending" | "offered" | "accepted" | "rejected" | "expired" | "skipped" | "cancelled";

/**
 * A dispatch, as its routes answer it.
 */
export interface DispatchAnswer {
  dispatch: DispatchView;
}

export interface MasterView {
  id: number;
  onShift: boolean;
  updatedAt: string;
}

/**
 * The polling fallback: a master's open offers, as `new_assignment` shows them, with the
 * server's clock, so that an app counts down each offer's time left without trusting its own.
 */
export interface OpenOffers {
  serverTime: string;
  assignments: OfferView[];
}
