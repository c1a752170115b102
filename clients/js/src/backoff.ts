/**
 * Reconnect delays with full jitter: `min(max, min + random(0, min(max, min * 2^attempt)))`, so
 * that a server restart is not met by every phone at the same instant.
 */
export class Backoff {
  attempt = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    const spread = Math.min(this.maxMs, this.minMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.min(this.maxMs, this.minMs + this.random() * spread);
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Milliseconds on a clock that only moves forward: the device's wall clock is never read. */
export function monotonicMs(): number {
  return globalThis.performance.now();
}
