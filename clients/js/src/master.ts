import { monotonicMs } from "./backoff.js";
import {
  Connection,
  DispatcherError,
  type AnyServerMessage,
  type ConnectionOptions,
  type ConnectionState,
} from "./connection.js";
import { Emitter } from "./events.js";
import { Offer, type Decision, type DecisionSender, type EndReason, type Outcome } from "./offer.js";
import {
  ServerMessageTypes,
  type OfferView,
  type OpenOffers,
  type OrderStatusUpdateMessage,
  type PushMessage,
  type ServerMessage,
} from "./protocol.js";

export interface MasterClientOptions extends ConnectionOptions {
  /** Acknowledge each offer (`subscribe_assignments` with `acks`), so the server can tell a dead phone. */
  acks?: boolean;
  /** The master's open offers over HTTP (`GET /api/v1/masters/me/assignments`), polled while the socket cannot connect. */
  pollUrl?: string;
  pollIntervalMs?: number;
}

export interface MasterClientEvents {
  [name: string]: unknown;
  state: ConnectionState;
  offer: Offer;
  offerEnded: { offer: Offer; reason: EndReason };
  orderStatus: OrderStatusUpdateMessage;
  push: PushMessage;
  error: DispatcherError;
}

/** After this many failed connection attempts in a row, poll (with `pollUrl`). */
const POLL_AFTER_FAILURES = 3;
/** An offer the server said nothing more of is dropped this long after its deadline. */
const END_GRACE_MS = 2_000;

interface PendingDecision {
  offer: Offer;
  decision: Decision;
  resolve(outcome: Outcome): void;
  reject(error: Error): void;
  sent: boolean;
  deadline: ReturnType<typeof setTimeout>;
}

/**
 * Keeps a master online: connects, subscribes to offers, and holds them as {@link Offer} objects
 * with a deadline; reconnects, refreshes the token, and polls over HTTP when the socket cannot get
 * through. See docs/CLIENTS.md for the behaviour, step by step.
 */
export class MasterClient implements DecisionSender {
  /** The open offers, by id. */
  readonly offers = new Map<number, Offer>();
  private readonly events = new Emitter<MasterClientEvents>();
  private readonly connection: Connection;
  private readonly topics = new Set<string>();
  private readonly decisions = new Map<number, PendingDecision>();
  private readonly endTimers = new Map<number, ReturnType<typeof setTimeout>>();
  /** Offers acknowledged on the current socket: the server sends each again until it is. */
  private acknowledged = new Set<number>();
  private pollTimer?: ReturnType<typeof setInterval>;
  private readonly onOnline = () => this.networkChanged();

  constructor(private readonly options: MasterClientOptions) {
    this.connection = new Connection(options, {
      state: (state) => this.events.emit("state", state),
      ready: () => this.ready(),
      message: (message) => this.receive(message),
      error: (error) => this.events.emit("error", error),
      failed: (inARow) => {
        this.acknowledged = new Set();
        if (inARow >= POLL_AFTER_FAILURES) this.startPolling();
      },
    });
  }

  get state(): ConnectionState {
    return this.connection.state;
  }

  on<K extends keyof MasterClientEvents>(name: K, handler: (value: MasterClientEvents[K]) => void): () => void {
    return this.events.on(name, handler);
  }

  connect(): void {
    globalThis.addEventListener?.("online", this.onOnline);
    this.connection.connect();
  }

  /** Ends for good: no reconnect, no polling; decisions not yet sent resolve `expired` at their deadline. */
  close(): void {
    globalThis.removeEventListener?.("online", this.onOnline);
    this.stopPolling();
    this.connection.close();
    for (const timer of this.endTimers.values()) clearTimeout(timer);
    this.endTimers.clear();
  }

  networkChanged(): void {
    this.acknowledged = new Set();
    this.connection.networkChanged();
  }

  /** Pushes on these topics reach this client, across reconnects. */
  subscribe(topics: string[]): void {
    topics.forEach((topic) => this.topics.add(topic));
    this.connection.send({ type: "subscribe", topics });
  }

  unsubscribe(topics: string[]): void {
    topics.forEach((topic) => this.topics.delete(topic));
    this.connection.send({ type: "unsubscribe", topics });
  }

  /** Used by {@link Offer}: sends a decision once, when a socket is up and the offer still open. */
  decide(offer: Offer, decision: Decision): Promise<Outcome> {
    if (offer.remainingMs() <= 0) return Promise.resolve("expired");
    return new Promise<Outcome>((resolve, reject) => {
      const pending: PendingDecision = {
        offer,
        decision,
        resolve,
        reject,
        sent: false,
        // Not sent by the deadline: it never will be.
        deadline: setTimeout(() => {
          if (!pending.sent) this.settle(offer.id, "expired");
        }, offer.remainingMs()),
      };
      this.decisions.set(offer.id, pending);
      this.sendDecision(pending);
    });
  }

  private sendDecision(pending: PendingDecision): void {
    if (pending.sent || pending.offer.remainingMs() <= 0) return;
    const { offer, decision } = pending;
    const requestId = `decision-${offer.id}`;
    pending.sent =
      decision.type === "accept"
        ? this.connection.send({ type: "accept_assignment", assignmentId: offer.id, requestId })
        : this.connection.send({
            type: "reject_assignment",
            assignmentId: offer.id,
            requestId,
            ...(decision.reason === undefined ? {} : { reason: decision.reason }),
          });
  }

  private settle(id: number, outcome: Outcome): void {
    const pending = this.decisions.get(id);
    if (!pending) return;
    this.decisions.delete(id);
    clearTimeout(pending.deadline);
    pending.resolve(outcome);
  }

  private ready(): void {
    this.stopPolling();
    this.acknowledged = new Set();
    this.connection.send({ type: "subscribe_assignments", acks: this.options.acks ?? true });
    if (this.topics.size > 0) this.connection.send({ type: "subscribe", topics: [...this.topics] });
    for (const pending of this.decisions.values()) {
      if (pending.sent) void this.recoverDecision(pending);
      else this.sendDecision(pending);
    }
  }

  /**
   * A decision sent on a socket that died before the answer came: the stored assignment tells
   * whether it was taken; one still pending never reached the server, so it is sent now.
   */
  private async recoverDecision(pending: PendingDecision): Promise<void> {
    const id = pending.offer.id;
    try {
      const response = await fetch(`${httpBase(this.options.url)}/api/v1/assignments/${id}`, {
        headers: { Authorization: `Bearer ${await this.connection.currentToken()}` },
      });
      if (!response.ok) return;
      const { status } = (await response.json()) as { status: string };
      if (this.decisions.get(id) !== pending) return;
      if (status === "pending") {
        pending.sent = false;
        this.sendDecision(pending);
        return;
      }
      const outcome: Outcome =
        status === "cancelled" ? "taken" : (status as Outcome);
      const reason: EndReason = status === "cancelled" ? "cancelled" : (status as EndReason);
      this.settle(id, outcome);
      this.end(id, reason);
    } catch {
      // The server's frames, or the deadline, settle it.
    }
  }

  private receive(received: AnyServerMessage): void {
    if (!isProtocolType(received.type)) {
      this.events.emit("push", received as PushMessage);
      return;
    }
    const message = received as ServerMessage;
    switch (message.type) {
      case "new_assignment":
        return this.offered(message.assignment, message.expiresInMs);
      case "assignment_accepted":
        this.settle(message.assignmentId, "accepted");
        return this.end(message.assignmentId, "accepted");
      case "assignment_rejected":
        this.settle(message.assignmentId, "rejected");
        return this.end(message.assignmentId, "rejected");
      case "assignment_expired":
        this.settle(message.assignmentId, "expired");
        return this.end(message.assignmentId, "expired");
      case "assignment_cancelled":
        this.settle(message.assignmentId, "taken");
        return this.end(message.assignmentId, "cancelled");
      case "order_status_update":
        return this.events.emit("orderStatus", message);
      case "error":
        return this.refused(message.requestId, message.code, message.message);
      default:
        return;
    }
  }

  private refused(requestId: unknown, code: string, text: string): void {
    const match = /^decision-(\d+)$/.exec(String(requestId ?? ""));
    const pending = match ? this.decisions.get(Number(match[1])) : undefined;
    if (!pending) {
      this.events.emit("error", new DispatcherError(code, text));
      return;
    }
    const id = pending.offer.id;
    if (code === "assignment_not_pending") {
      this.settle(id, "not_pending");
      this.end(id, pending.offer.remainingMs() > 0 ? "cancelled" : "expired");
    } else if (code === "unavailable" || code === "rate_limited") {
      // The server could not take it now: it was not decided, so it may go again.
      pending.sent = false;
      setTimeout(() => this.sendDecision(pending), 1_000);
    } else {
      this.decisions.delete(id);
      clearTimeout(pending.deadline);
      pending.reject(new DispatcherError(code, text));
    }
  }

  private offered(view: OfferView, expiresInMs: number): void {
    const oneWay = this.connection.oneWayMs;
    let offer = this.offers.get(view.id);
    if (offer) {
      offer.refresh(view, expiresInMs, oneWay);
    } else {
      offer = new Offer(view, expiresInMs, oneWay, this);
      this.offers.set(view.id, offer);
      this.events.emit("offer", offer);
    }
    this.scheduleEnd(offer);
    if ((this.options.acks ?? true) && !this.acknowledged.has(view.id)) {
      if (this.connection.send({ type: "ack_assignment", assignmentId: view.id })) {
        this.acknowledged.add(view.id);
      }
    }
  }

  /** If the server is not heard of again about it, the offer ends at its deadline here too. */
  private scheduleEnd(offer: Offer): void {
    clearTimeout(this.endTimers.get(offer.id));
    this.endTimers.set(
      offer.id,
      setTimeout(() => {
        this.settle(offer.id, "expired");
        this.end(offer.id, "expired");
      }, offer.remainingMs() + END_GRACE_MS),
    );
  }

  private end(id: number, reason: EndReason): void {
    const offer = this.offers.get(id);
    clearTimeout(this.endTimers.get(id));
    this.endTimers.delete(id);
    this.acknowledged.delete(id);
    if (!offer) return;
    this.offers.delete(id);
    this.events.emit("offerEnded", { offer, reason });
  }

  private startPolling(): void {
    if (!this.options.pollUrl || this.pollTimer || this.state === "closed") return;
    void this.poll();
    this.pollTimer = setInterval(() => void this.poll(), this.options.pollIntervalMs ?? 60_000);
  }

  private stopPolling(): void {
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  /** One round of the polling fallback: the open offers become the same {@link Offer} objects. */
  private async poll(): Promise<void> {
    const sent = monotonicMs();
    let open: OpenOffers;
    try {
      const response = await fetch(this.options.pollUrl!, {
        headers: { Authorization: `Bearer ${await this.connection.currentToken()}` },
      });
      if (!response.ok) return;
      open = (await response.json()) as OpenOffers;
    } catch {
      return;
    }
    if (!this.pollTimer || this.connection.isReady) return;
    const oneWay = (monotonicMs() - sent) / 2;
    const serverNow = Date.parse(open.serverTime);
    const listed = new Set<number>();
    for (const view of open.assignments) {
      listed.add(view.id);
      const left = Date.parse(view.expiresAt) - serverNow - oneWay;
      this.offered(view, left);
    }
    for (const [id, offer] of this.offers) {
      if (!listed.has(id)) this.end(id, offer.remainingMs() > 0 ? "cancelled" : "expired");
    }
  }
}

const PROTOCOL_TYPES = new Set<string>(ServerMessageTypes);

function isProtocolType(type: string): boolean {
  return PROTOCOL_TYPES.has(type);
}

/** `wss://host/path/ws` → `https://host`: where the HTTP API of the same server is. */
export function httpBase(url: string): string {
  const parsed = new URL(url);
  parsed.protocol = parsed.protocol === "wss:" ? "https:" : "http:";
  return parsed.origin;
}
