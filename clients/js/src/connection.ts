import { Backoff, monotonicMs } from "./backoff.js";
import type { ClientMessage, ServerMessage, PushMessage } from "./protocol.js";

export type ConnectionState = "disconnected" | "connecting" | "connected" | "closed";

/** The part of a WebSocket this library uses: the browser's, Node's `ws`, or any alike. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** Node's `ws`: drops the socket without the closing handshake. */
  terminate?(): void;
}

/**
 * A WebSocket constructor. Given one (Node's `ws` package), the client sends the token in an
 * `Authorization` header; with the browser's own it sends the `auth` message. Never `?token=`:
 * query strings end up in proxy logs.
 */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
  options?: { headers?: Record<string, string> },
) => WebSocketLike;

export interface ConnectionOptions {
  /** The WebSocket URL, such as `wss://dispatch.example.com/ws`. */
  url: string;
  /** Called for a token before the first connection, on `token_expiring`, and once after a refusal. */
  getToken?: () => Promise<string>;
  /** A fixed token, when the app has no way to get a fresh one. */
  token?: string;
  WebSocket?: WebSocketConstructor;
  pingIntervalMs?: number;
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
}

/** Why the client stopped trying, or what went wrong: the `error` event's value. */
export class DispatcherError extends Error {
  constructor(
    /** `replaced`, `token_refused`, `bad_options`, or the server's error `code`. */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "DispatcherError";
  }
}

export type AnyServerMessage = ServerMessage | PushMessage;

export interface ConnectionHooks {
  state(state: ConnectionState): void;
  /** Authenticated: subscribe, and send what waited. */
  ready(): void;
  message(message: AnyServerMessage): void;
  error(error: DispatcherError): void;
  /** An attempt ended before authentication; `inARow` counts them since the last success. */
  failed(inARow: number): void;
}

const OPEN = 1;
/** A connection up this long resets the backoff. */
const STABLE_MS = 10_000;
/** Nothing heard for the ping interval and this long: the socket is dead. */
const SILENCE_GRACE_MS = 10_000;
const REPLACED = "replaced by a newer connection";
const TOKEN_REASONS = ["authentication failed", "token expired"];

/**
 * One logical connection that stays up: it authenticates, pings, takes a silent socket for dead,
 * reconnects with jittered backoff, refreshes the token, and stops for good only when told to,
 * when another client of the same user replaced it, or when a fresh token is refused too.
 */
export class Connection {
  state: ConnectionState = "disconnected";
  private socket?: WebSocketLike;
  private authenticated = false;
  private readonly backoff: Backoff;
  private readonly pingIntervalMs: number;
  private token?: string;
  private refreshing = false;
  private freshTokenTried = false;
  private tokenRefused = false;
  private failuresInARow = 0;
  private connectedAt = 0;
  private lastHeard = 0;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private pingTimer?: ReturnType<typeof setInterval>;
  private pingsSent = new Map<string, number>();
  private nextPing = 0;
  private sinceLastPing = 0;
  /**
   * Half the shortest of this socket's last 5 ping round trips: how old a frame's "time left" is
   * when it arrives. The shortest, because a round trip only grows by what delays it.
   */
  oneWayMs = 0;
  private roundTrips: number[] = [];
  private pingsOnThisSocket = 0;

  constructor(
    private readonly options: ConnectionOptions,
    private readonly hooks: ConnectionHooks,
  ) {
    this.pingIntervalMs = options.pingIntervalMs ?? 25_000;
    this.backoff = new Backoff(
      options.minReconnectDelayMs ?? 500,
      options.maxReconnectDelayMs ?? 20_000,
    );
    this.token = options.token;
    if (!options.token && !options.getToken) {
      throw new DispatcherError("bad_options", "give token or getToken");
    }
  }

  connect(): void {
    if (this.state === "closed") throw new DispatcherError("bad_options", "this client was closed");
    if (this.state !== "disconnected") return;
    this.freshTokenTried = false;
    void this.open();
  }

  close(): void {
    if (this.state === "closed") return;
    this.drop(1000, "closed by the app");
    this.setState("closed");
  }

  /** The network changed (Wi-Fi to mobile, say): the socket may be half dead; reconnect now. */
  networkChanged(): void {
    if (this.state === "closed" || this.state === "disconnected") return;
    this.backoff.reset();
    this.drop(4000, "network changed");
    void this.open();
  }

  /** Sends on an authenticated socket; answers whether it went. */
  send(message: ClientMessage): boolean {
    if (!this.authenticated || !this.socket || this.socket.readyState !== OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  get isReady(): boolean {
    return this.authenticated;
  }

  async currentToken(): Promise<string> {
    this.token ??= await this.options.getToken!();
    return this.token;
  }

  private setState(state: ConnectionState): void {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this.hooks.state(state);
  }

  private async open(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.setState("connecting");
    let token: string;
    try {
      token = await this.currentToken();
    } catch (error) {
      this.hooks.error(new DispatcherError("token_refused", `getToken failed: ${error}`));
      return this.retry();
    }
    if (this.state !== "connecting" || this.socket) return;
    const WebSocketClass = this.options.WebSocket ?? (globalThis.WebSocket as unknown as WebSocketConstructor);
    if (!WebSocketClass) {
      this.hooks.error(new DispatcherError("bad_options", "no WebSocket: pass one (the ws package) as WebSocket"));
      return this.setState("disconnected");
    }
    const byHeader = this.options.WebSocket !== undefined;
    let socket: WebSocketLike;
    try {
      socket = byHeader
        ? new WebSocketClass(this.options.url, [], { headers: { Authorization: `Bearer ${token}` } })
        : new WebSocketClass(this.options.url);
    } catch (error) {
      this.hooks.error(new DispatcherError("bad_options", `cannot open ${this.options.url}: ${error}`));
      return this.setState("disconnected");
    }
    this.socket = socket;
    this.tokenRefused = false;
    this.lastHeard = monotonicMs();
    socket.onopen = () => {
      if (!byHeader) socket.send(JSON.stringify({ type: "auth", token }));
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      this.lastHeard = monotonicMs();
      let message: AnyServerMessage;
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      this.receive(message);
    };
    socket.onerror = (event) => {
      // Node's ws reports a refused upgrade as "Unexpected server response: 401".
      const text = String((event as { message?: string })?.message ?? "");
      if (/response: 401/.test(text)) this.tokenRefused = true;
    };
    socket.onclose = (event) => {
      if (socket === this.socket) this.closed(event.code, event.reason);
    };
    this.startLiveness();
  }

  private receive(message: AnyServerMessage): void {
    switch (message.type) {
      case "auth_success":
        this.authenticated = true;
        this.failuresInARow = 0;
        this.freshTokenTried = false;
        this.connectedAt = monotonicMs();
        this.roundTrips = [];
        this.pingsOnThisSocket = 0;
        this.setState("connected");
        this.ping();
        this.hooks.ready();
        return;
      case "auth_error":
        this.tokenRefused = true;
        return;
      case "pong": {
        const sent = this.pingsSent.get(String(message.requestId));
        if (sent !== undefined) {
          this.pingsSent.clear();
          this.roundTrips = [...this.roundTrips.slice(-4), this.lastHeard - sent];
          this.oneWayMs = Math.min(...this.roundTrips) / 2;
        }
        return;
      }
      case "token_expiring":
        void this.refreshToken();
        return;
      case "connected":
      case "token_refreshed":
        return;
      default:
        this.hooks.message(message);
    }
  }

  /** On `token_expiring`: one `getToken` and one `refresh_token` per notice, never two at once. */
  private async refreshToken(): Promise<void> {
    if (this.refreshing || !this.options.getToken) return;
    this.refreshing = true;
    try {
      this.token = await this.options.getToken();
      this.send({ type: "refresh_token", token: this.token });
    } catch (error) {
      this.hooks.error(new DispatcherError("token_refused", `getToken failed: ${error}`));
    } finally {
      this.refreshing = false;
    }
  }

  private ping(): void {
    this.pingsOnThisSocket++;
    this.sinceLastPing = 0;
    const id = `ping-${++this.nextPing}`;
    this.pingsSent.set(id, monotonicMs());
    this.send({ type: "ping", requestId: id });
  }

  private startLiveness(): void {
    clearInterval(this.pingTimer);
    const tick = Math.min(this.pingIntervalMs, 1_000);
    this.sinceLastPing = 0;
    this.pingTimer = setInterval(() => {
      if (monotonicMs() - this.lastHeard > this.pingIntervalMs + SILENCE_GRACE_MS) {
        // Silent too long: a half-dead socket. Drop it without waiting for a close handshake.
        this.drop(4000, "silent");
        this.closed(1006, "silent");
        return;
      }
      this.sinceLastPing += tick;
      // A second ping a second after the first measures the round trip once warm.
      const early = this.pingsOnThisSocket === 1 && this.sinceLastPing >= 1_000;
      if (this.authenticated && (early || this.sinceLastPing >= this.pingIntervalMs)) this.ping();
    }, tick);
  }

  /** Forgets the socket, closing it as best it can. */
  private drop(code: number, reason: string): void {
    clearInterval(this.pingTimer);
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    this.socket = undefined;
    this.authenticated = false;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    socket.onerror = () => {};
    try {
      if (socket.terminate) socket.terminate();
      else socket.close(code, reason);
    } catch {
      // Already closed.
    }
  }

  private closed(code: number, reason: string): void {
    const wasAuthenticated = this.authenticated;
    const tokenRefused =
      this.tokenRefused || (code === 1008 && TOKEN_REASONS.includes(reason));
    this.drop(1000, "");
    if (this.state === "closed") return;
    if (wasAuthenticated && monotonicMs() - this.connectedAt >= STABLE_MS) this.backoff.reset();
    if (!wasAuthenticated) this.hooks.failed(++this.failuresInARow);
    if (code === 1008 && reason === REPLACED) {
      this.setState("disconnected");
      this.hooks.error(
        new DispatcherError("replaced", "another connection of this user replaced this one; not reconnecting"),
      );
      return;
    }
    if (tokenRefused) {
      if (!this.options.getToken || this.freshTokenTried) {
        this.setState("disconnected");
        this.hooks.error(new DispatcherError("token_refused", `the server refused the token (${reason || code})`));
        return;
      }
      this.freshTokenTried = true;
      this.token = undefined;
      this.setState("connecting");
      void this.open();
      return;
    }
    this.retry();
  }

  private retry(): void {
    if (this.state === "closed") return;
    this.setState("connecting");
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.open(), this.backoff.next());
  }
}
