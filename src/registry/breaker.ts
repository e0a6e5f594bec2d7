/**
 * A circuit breaker per registry host. When a registry is down or rate-limits us, every
 * admission that checks it would wait for its timeout; after `failures` unknown answers in a
 * row the circuit opens, and for a cool-down checks against that host answer unknown at once,
 * without a request. After the cool-down one trial request goes (half-open): a definite answer
 * (present or absent) closes the circuit, another failure opens it again.
 *
 * The cool-down is `coolDownMs`, or the registry's own `Retry-After` when that is longer (at
 * most `MAX_RETRY_AFTER_MS`: a registry cannot silence its checks for hours). Only hosts with
 * failures are tracked, at most `maxHosts` (hosts come from pods' images in Digest mode): the
 * least recently seen is forgotten, which closes its circuit.
 */
import { LRUCache } from "lru-cache";
import { MAX_RETRY_AFTER_MS } from "./client.ts";

export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerOptions {
  /** Unknown answers in a row that open the circuit; default 5. */
  failures?: number;
  /** How long it stays open; default 30 s. */
  coolDownMs?: number;
  /** Hosts tracked at once; default 1,000. */
  maxHosts?: number;
  now?: () => number;
}

/** Whether a request may go now, and why not. */
export type Permit = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

interface Circuit {
  /** Unknown answers in a row. */
  failures: number;
  /** Until when it refuses; 0 while closed. */
  openUntil: number;
  /** When the half-open trial was let through, while it has not answered. */
  trialSince: number | undefined;
}

const ALLOWED: Permit = { allowed: true };

export class CircuitBreaker {
  private readonly failures: number;
  private readonly coolDownMs: number;
  private readonly now: () => number;
  private readonly circuits: LRUCache<string, Circuit>;

  constructor(options: BreakerOptions = {}) {
    this.failures = Math.max(1, options.failures ?? 5);
    this.coolDownMs = options.coolDownMs ?? 30_000;
    this.now = options.now ?? Date.now;
    this.circuits = new LRUCache({ max: options.maxHosts ?? 1_000 });
  }

  /** Whether a request to `host` may go: always while closed, once (the trial) when half-open. */
  allow(host: string): Permit {
    const circuit = this.circuits.get(host);
    if (circuit === undefined || circuit.openUntil === 0) return ALLOWED;
    const now = this.now();
    const after = `after ${circuit.failures} failures`;
    if (now < circuit.openUntil)
      return {
        allowed: false,
        reason: `circuit open for ${host} ${after}; retrying after ${new Date(circuit.openUntil).toISOString()}`,
      };
    // A trial that never answered (it always does, within its timeout) does not block forever.
    if (circuit.trialSince !== undefined && now < circuit.trialSince + this.coolDownMs)
      return {
        allowed: false,
        reason: `circuit half-open for ${host} ${after}; a trial request is in flight`,
      };
    circuit.trialSince = now;
    return ALLOWED;
  }

  /** A definite answer (present or absent) from `host`: its circuit closes. */
  success(host: string): void {
    this.circuits.delete(host);
  }

  /** An unknown answer from `host`, with the registry's `Retry-After` when it sent one. */
  failure(host: string, retryAfterMs?: number): void {
    const now = this.now();
    const circuit = this.circuits.get(host) ?? { failures: 0, openUntil: 0, trialSince: undefined };
    // Open: the answer to a request sent before it opened changes nothing.
    if (now < circuit.openUntil) return;
    circuit.failures++;
    circuit.trialSince = undefined;
    const halfOpen = circuit.openUntil !== 0;
    if (halfOpen || circuit.failures >= this.failures)
      circuit.openUntil = now + Math.max(this.coolDownMs, Math.min(retryAfterMs ?? 0, MAX_RETRY_AFTER_MS));
    this.circuits.set(host, circuit);
  }

  state(host: string): BreakerState {
    const circuit = this.circuits.peek(host);
    if (circuit === undefined || circuit.openUntil === 0) return "closed";
    return this.now() < circuit.openUntil ? "open" : "half-open";
  }

  /** The hosts whose circuit is open now (half-open ones are not). */
  openHosts(): string[] {
    const now = this.now();
    const hosts: string[] = [];
    for (const [host, circuit] of this.circuits.entries()) if (now < circuit.openUntil) hosts.push(host);
    return hosts;
  }
}
