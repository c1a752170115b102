import { Connection, DispatcherError, type ConnectionOptions } from "./connection.js";
import type {
  AssignmentCreated,
  BatchAnswer,
  AssignmentEventMessage,
  AssignmentView,
  DispatchAnswer,
  DispatchEventMessage,
  DispatchMode,
  ErrorBody,
  MasterView,
  OrderStatus,
  OrderStatusUpdateMessage,
  OrderView,
} from "./protocol.js";

export interface ServiceClientOptions {
  /** The server's HTTP address, such as `https://dispatch.example.com`. */
  baseUrl: string;
  /** A `service` (or `admin`) token. */
  token: string;
  /** For {@link ServiceClient.events}: defaults to `baseUrl` with `ws(s)://` and `/ws`. */
  wsUrl?: string;
  /** Node's `ws` package, for {@link ServiceClient.events} in Node. */
  WebSocket?: ConnectionOptions["WebSocket"];
}

export interface EventStreamOptions {
  pingIntervalMs?: number;
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** Events held for a reader that falls behind; past it the stream ends with an `overflow` error. */
  maxBuffered?: number;
}

export interface OrderInput {
  clientUserId: number;
  address: string;
  deviceType: string;
  problem: string;
  clientName?: string | null;
  clientPhone?: string | null;
}

export interface OfferInput {
  orderId: number;
  masterId: number;
  ttlSeconds?: number;
}

export interface DispatchInput {
  candidates: number[];
  ttlSeconds?: number;
  mode?: DispatchMode;
  batchSize?: number;
  skipOffline?: boolean;
}

export interface PushInput {
  userIds: number[];
  type: string;
  payload?: Record<string, unknown>;
  topic?: string;
}

export type ServiceEvent = AssignmentEventMessage | DispatchEventMessage | OrderStatusUpdateMessage;

/** A non-2xx answer: the HTTP status and the server's error `code` (`conflict`, `not_found`, …). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The assignment service's side: orders, offers, cascades and pushes over HTTP, and the event stream. */
export class ServiceClient {
  private readonly baseUrl: string;

  constructor(private readonly options: ServiceClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
  }

  putOrder(id: number, order: OrderInput): Promise<OrderView> {
    return this.call("PUT", `/api/v1/orders/${id}`, order);
  }

  setOrderStatus(id: number, status: OrderStatus): Promise<OrderView> {
    return this.call("PATCH", `/api/v1/orders/${id}/status`, { status });
  }

  offer(offer: OfferInput): Promise<AssignmentCreated> {
    return this.call("POST", "/api/v1/assignments", offer);
  }

  /**
   * 1 to 100 offers with one commit: each result is what `offer` would have answered for it
   * alone (`status` 201 with the assignment, or the refusal's `status`, `code` and `message`).
   */
  offerMany(offers: OfferInput[]): Promise<BatchAnswer> {
    return this.call("POST", "/api/v1/assignments/batch", { offers });
  }

  getAssignment(id: number): Promise<AssignmentView> {
    return this.call("GET", `/api/v1/assignments/${id}`);
  }

  cancelAssignment(id: number): Promise<AssignmentView> {
    return this.call("POST", `/api/v1/assignments/${id}/cancel`);
  }

  dispatch(orderId: number, dispatch: DispatchInput): Promise<DispatchAnswer> {
    return this.call("POST", `/api/v1/orders/${orderId}/dispatch`, dispatch);
  }

  getDispatch(id: number): Promise<DispatchAnswer> {
    return this.call("GET", `/api/v1/dispatches/${id}`);
  }

  cancelDispatch(id: number): Promise<DispatchAnswer> {
    return this.call("DELETE", `/api/v1/dispatches/${id}`);
  }

  setShift(masterId: number, onShift: boolean): Promise<MasterView> {
    return this.call("PUT", `/api/v1/masters/${masterId}/shift`, { onShift });
  }

  push(push: PushInput): Promise<{ delivered: number }> {
    return this.call("POST", "/api/v1/push", { payload: {}, ...push });
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${this.options.token}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) {
      let error: Partial<ErrorBody> = {};
      try {
        error = JSON.parse(text);
      } catch {
        // Not the server's error shape (a proxy's page, say).
      }
      throw new ApiError(response.status, error.code ?? "http", error.message ?? `${method} ${path}: ${response.status}`);
    }
    return JSON.parse(text) as T;
  }

  /**
   * Every `assignment_event`, `dispatch_event` and `order_status_update` (`subscribe_events`),
   * across reconnects, until the loop stops or `signal` aborts. Events that happen while the
   * socket is down are not replayed: the webhook is the at-least-once path.
   */
  events(options: EventStreamOptions & { signal?: AbortSignal } = {}): AsyncIterable<ServiceEvent> {
    const { wsUrl, token, WebSocket, baseUrl } = { ...this.options, baseUrl: this.baseUrl };
    return {
      [Symbol.asyncIterator]: () => {
        const buffered: ServiceEvent[] = [];
        const max = options.maxBuffered ?? 10_000;
        let failure: DispatcherError | undefined;
        let wake: (() => void) | undefined;
        const notify = () => {
          wake?.();
          wake = undefined;
        };
        const connection: Connection = new Connection(
          {
            url: wsUrl ?? `${baseUrl.replace(/^http/, "ws")}/ws`,
            token,
            WebSocket,
            pingIntervalMs: options.pingIntervalMs,
            minReconnectDelayMs: options.minReconnectDelayMs,
            maxReconnectDelayMs: options.maxReconnectDelayMs,
          },
          {
            state: (state) => {
              if (state === "disconnected" || state === "closed") notify();
            },
            ready: () => connection.send({ type: "subscribe_events" }),
            message: (message) => {
              if (
                message.type !== "assignment_event" &&
                message.type !== "dispatch_event" &&
                message.type !== "order_status_update"
              ) {
                return;
              }
              const event = message as ServiceEvent;
              if (buffered.length >= max) {
                failure = new DispatcherError("overflow", `the reader fell ${max} events behind`);
                connection.close();
              } else {
                buffered.push(event);
              }
              notify();
            },
            error: (error) => {
              if (error.code === "token_refused" || error.code === "replaced") failure = error;
              notify();
            },
            failed: () => {},
          },
        );
        const stop = () => {
          connection.close();
          notify();
        };
        options.signal?.addEventListener("abort", stop);
        connection.connect();
        return {
          async next(): Promise<IteratorResult<ServiceEvent>> {
            for (;;) {
              const event = buffered.shift();
              if (event) return { value: event, done: false };
              if (failure) throw failure;
              if (connection.state === "closed" || connection.state === "disconnected") {
                return { value: undefined, done: true };
              }
              await new Promise<void>((resolve) => (wake = resolve));
            }
          },
          async return(): Promise<IteratorResult<ServiceEvent>> {
            options.signal?.removeEventListener("abort", stop);
            stop();
            return { value: undefined, done: true };
          },
        };
      },
    };
  }
}
