/**
 * Mirror presence checks as admission needs them: fast, cheap for the registry, and never
 * wrong about absence. `PresenceChecker` puts a cache, single-flight and a circuit breaker in
 * front of `RegistryClient` (docs/adr/0009-presence-cache-and-breaker.md):
 *
 * - Present answers are kept for `positiveTtlMs`, absent ones for the shorter `negativeTtlMs`
 *   (a mirror that syncs the image soon is believed soon); unknown answers are never kept.
 * - A present answer past its TTL is still served, for `staleMs` more, while one refresh runs in
 *   the background (stale-while-revalidate): a warm image costs no wait. A refresh that answers
 *   unknown leaves it serving; one that answers absent replaces it.
 * - Concurrent checks of one key share one request (single-flight).
 * - The breaker (`breaker.ts`) is asked before any request; cached answers are served whatever
 *   its state.
 *
 * The cache key is the host, repository, reference, credentials source and the insecure flag:
 * an answer earned with one Secret is never served to a check that names another. Entries are
 * bounded (`maxEntries`, least recently used dropped): repositories and tags come from pods, so
 * a pod author could otherwise grow the cache without end; 10,000 entries of a few hundred
 * bytes each stay within a few MB.
 */
import { LRUCache } from "lru-cache";
import { errorMessage } from "../errors.ts";
import type { Metrics, RegistryCheckOutcome } from "../telemetry/metrics.ts";
import { type BreakerState, CircuitBreaker } from "./breaker.ts";
import { type Presence, RegistryClient } from "./client.ts";
import { type Keyring, NO_CREDENTIALS } from "./credentials.ts";

export interface CheckTarget {
  /** The registry as the image names it: "docker.io", "127.0.0.1:5000". */
  readonly host: string;
  /** "library/nginx". */
  readonly repository: string;
  /** A tag or "sha256:...". */
  readonly reference: string;
  /** The credentials source (a Secret's name) for the keyring; undefined: the default. */
  readonly credentials?: string;
  /** Plain HTTP. */
  readonly insecure?: boolean;
}

export type CheckResult = Presence & { readonly cached: boolean };

export interface PresenceCheckerOptions {
  /** Default: `new RegistryClient({ timeoutMs })`. `stop()` closes it, given or not. */
  client?: RegistryClient;
  /** Default: no credentials (anonymous checks). */
  keyring?: Keyring;
  /** How long a present answer is fresh; default 5 min. */
  positiveTtlMs?: number;
  /** How long an absent answer is kept; default 30 s. */
  negativeTtlMs?: number;
  /** How long past its TTL a present answer may still be served while one refresh runs; default 1 h. */
  staleMs?: number;
  /** Cache entries kept, least recently used dropped; default 10,000. */
  maxEntries?: number;
  /** Breaker: unknown answers in a row that open it (default 5), and its cool-down (default 30 s). */
  failures?: number;
  coolDownMs?: number;
  /** Bound on each request of the default client; default 2 s. */
  timeoutMs?: number;
  metrics?: Metrics;
  now?: () => number;
}

/** Registry hosts whose last error is kept, least recently failed dropped (hosts come from pods). */
export const MAX_ERROR_HOSTS = 1_000;

type Definite = Exclude<Presence, { state: "unknown" }>;

interface Entry {
  readonly presence: Definite;
  /** Until then it is served as is. */
  readonly freshUntil: number;
  /** Until then a present answer is served stale while it is refreshed; after, it is a miss. */
  readonly servableUntil: number;
}

export class PresenceChecker {
  /** As a manager runnable. */
  readonly name = "presence-checks";
  private readonly client: RegistryClient;
  private readonly keyring: Keyring;
  private readonly positiveTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly staleMs: number;
  private readonly metrics: Metrics | undefined;
  private readonly now: () => number;
  private readonly cache: LRUCache<string, Entry>;
  private readonly breaker: CircuitBreaker;
  /** The request running for a key: every check of that key waits for it. */
  private readonly inFlight = new Map<string, Promise<Presence>>();
  private readonly errors = new Map<string, { readonly message: string; readonly at: number }>();
  private stopped = false;

  constructor(options: PresenceCheckerOptions = {}) {
    this.client = options.client ?? new RegistryClient({ timeoutMs: options.timeoutMs ?? 2_000 });
    this.keyring = options.keyring ?? NO_CREDENTIALS;
    this.positiveTtlMs = options.positiveTtlMs ?? 300_000;
    this.negativeTtlMs = options.negativeTtlMs ?? 30_000;
    this.staleMs = options.staleMs ?? 3_600_000;
    this.metrics = options.metrics;
    this.now = options.now ?? Date.now;
    this.cache = new LRUCache({ max: options.maxEntries ?? 10_000 });
    this.breaker = new CircuitBreaker({
      ...(options.failures === undefined ? {} : { failures: options.failures }),
      ...(options.coolDownMs === undefined ? {} : { coolDownMs: options.coolDownMs }),
      now: this.now,
    });
    const metrics = options.metrics;
    if (metrics) {
      this.client.onRequest((host) =>
        metrics.registryRequests.inc({ registry: metrics.registryLabel(host) }),
      );
      metrics.openBreakers = () => this.breaker.openHosts();
    }
  }

  /** Present, absent or unknown, and whether the answer came from the cache; never rejects. */
  async check(target: CheckTarget): Promise<CheckResult> {
    if (this.stopped) return { state: "unknown", reason: "presence checks are stopped", cached: false };
    // NUL cannot appear in a host, repository, reference or Secret name: an unambiguous key.
    const key = `${target.host}\0${target.repository}\0${target.reference}\0${target.credentials ?? ""}\0${target.insecure === true ? 1 : 0}`;
    const entry = this.cache.get(key);
    const now = this.now();
    if (entry !== undefined && now < entry.servableUntil) {
      const fresh = now < entry.freshUntil;
      this.metrics?.registryCacheLookup(fresh ? "hit" : "stale");
      this.count(target.host, "cached");
      // Served at once; the one refresh (single-flight) updates the entry for later checks.
      if (!fresh) void this.fetch(key, target);
      return { ...entry.presence, cached: true };
    }
    if (entry !== undefined) this.cache.delete(key);
    this.metrics?.registryCacheLookup("miss");
    const presence = await this.fetch(key, target);
    this.count(target.host, presence.state);
    return { ...presence, cached: false };
  }

  /**
   * The last unknown answer's reason per registry host, for status conditions; a host's entry
   * goes on its next definite answer. At most `MAX_ERROR_HOSTS` hosts.
   */
  lastErrors(): ReadonlyMap<string, { readonly message: string; readonly at: number }> {
    return this.errors;
  }

  breakerState(host: string): BreakerState {
    return this.breaker.state(host);
  }

  async start(): Promise<void> {}

  /** Closes the client's keep-alive connections and waits for the requests they ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.client.close();
    await Promise.all(this.inFlight.values());
  }

  /** The running request for `key`, or a new one when the breaker lets it go; never rejects. */
  private fetch(key: string, target: CheckTarget): Promise<Presence> {
    const running = this.inFlight.get(key);
    if (running !== undefined) return running;
    const permit = this.breaker.allow(target.host);
    if (!permit.allowed) return Promise.resolve({ state: "unknown", reason: permit.reason });
    const request = this.request(target).then((presence) => {
      this.record(key, target, presence);
      return presence;
    });
    this.inFlight.set(key, request);
    void request.finally(() => this.inFlight.delete(key));
    return request;
  }

  private async request(target: CheckTarget): Promise<Presence> {
    const started = performance.now();
    let presence: Presence;
    try {
      const credentials = this.keyring.credentials(target.credentials, target.host);
      presence = await this.client.checkManifest(
        {
          host: target.host,
          repository: target.repository,
          reference: target.reference,
          insecure: target.insecure === true,
        },
        credentials,
      );
    } catch (error) {
      // The client never throws; a keyring should not, but a check must answer all the same.
      presence = { state: "unknown", reason: errorMessage(error) };
    }
    const metrics = this.metrics;
    metrics?.registryCheckDuration.observe(
      { registry: metrics.registryLabel(target.host) },
      (performance.now() - started) / 1000,
    );
    return presence;
  }

  /** Caches a definite answer and closes the breaker; counts an unknown one against it. */
  private record(key: string, target: CheckTarget, presence: Presence): void {
    const now = this.now();
    if (presence.state === "unknown") {
      this.breaker.failure(target.host, presence.retryAfterMs);
      this.errors.delete(target.host);
      if (this.errors.size >= MAX_ERROR_HOSTS) this.errors.delete(this.errors.keys().next().value as string);
      this.errors.set(target.host, { message: presence.reason, at: now });
      return;
    }
    this.breaker.success(target.host);
    this.errors.delete(target.host);
    const present = presence.state === "present";
    const freshUntil = now + (present ? this.positiveTtlMs : this.negativeTtlMs);
    this.cache.set(key, {
      presence,
      freshUntil,
      servableUntil: present ? freshUntil + this.staleMs : freshUntil,
    });
  }

  private count(host: string, outcome: RegistryCheckOutcome): void {
    this.metrics?.registryCheck(host, outcome);
  }
}
