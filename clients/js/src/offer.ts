import { monotonicMs } from "./backoff.js";
import type { OfferView } from "./protocol.js";

/** How a decision ended, as `accept()` and `reject()` resolve. */
export type Outcome = "accepted" | "rejected" | "expired" | "taken" | "not_pending";

/** Why an offer left `client.offers`. */
export type EndReason = "expired" | "cancelled" | "accepted" | "rejected";

/** What an offer needs of its client: sending a decision, once. */
export interface DecisionSender {
  decide(offer: Offer, decision: Decision): Promise<Outcome>;
}

export type Decision = { type: "accept" } | { type: "reject"; reason?: string };

/**
 * An open offer, with its deadline. `remainingMs()` counts down on a monotonic clock from the
 * time left that the server put in the frame, less half the last ping's round trip: the phone's
 * own wall clock, which may be minutes off, is never read.
 */
export class Offer {
  readonly id: number;
  readonly orderId: number;
  address: string;
  deviceType: string;
  problem: string;
  /** The deadline on the server's clock. */
  expiresAt: Date;
  private deadlineMono: number;
  /** Set once a decision is asked for: every later call answers the same promise. */
  decision?: Promise<Outcome>;

  constructor(
    view: OfferView,
    expiresInMs: number,
    oneWayMs: number,
    private readonly sender: DecisionSender,
  ) {
    this.id = view.id;
    this.orderId = view.orderId;
    this.address = view.address;
    this.deviceType = view.deviceType;
    this.problem = view.problem;
    this.expiresAt = new Date(view.expiresAt);
    this.deadlineMono = monotonicMs() + expiresInMs - oneWayMs;
  }

  /** A redelivery or replay of the same offer: the newest time left wins. */
  refresh(view: OfferView, expiresInMs: number, oneWayMs: number): void {
    this.address = view.address;
    this.deviceType = view.deviceType;
    this.problem = view.problem;
    this.expiresAt = new Date(view.expiresAt);
    this.deadlineMono = monotonicMs() + expiresInMs - oneWayMs;
  }

  /** Milliseconds left to decide; 0 once the deadline passed. */
  remainingMs(): number {
    return Math.max(0, Math.round(this.deadlineMono - monotonicMs()));
  }

  accept(): Promise<Outcome> {
    return (this.decision ??= this.sender.decide(this, { type: "accept" }));
  }

  reject(reason?: string): Promise<Outcome> {
    return (this.decision ??= this.sender.decide(this, { type: "reject", reason }));
  }
}
