/**
 * A list-and-watch cache of one resource kind that never gives up.
 *
 * The loop client-go's reflector runs: list (every page), then watch from the list's
 * resourceVersion, re-watching from the last version seen when the server ends a watch, and
 * relisting when that version is too old (`410 Gone`). Any other failure (API server
 * restarting, connection refused, a 500) is retried with backoff, while the last known
 * objects stay in the cache, so a webhook keeps serving its last good rule set while the API
 * server is away.
 *
 * The backoff is what makes a change arrive soon after an outage ends:
 * - it starts again from its shortest wait once a watch proves healthy (it delivered an event
 *   or a bookmark, or stayed open a second), so an earlier long outage never slows the
 *   recovery from a later blip;
 * - an API server that cannot be reached (connection refused or reset) or says it is
 *   unavailable (502, 503, 504) is retried at least every second, however long it is away:
 *   such an attempt costs it nothing, and its return is seen within a second;
 * - errors it answers otherwise (403, 404, 429, 500) double the wait up to `maxBackoffMs`: the
 *   server is up, may be overloaded, and a configuration problem is not fixed in a second.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { isGone, isUnavailable, KubeApiError, kubeErrorMessage } from "../errors.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { KubeClient } from "./client.ts";
import type { KubeObject, WatchEvent } from "./objects.ts";

export interface WatchedKindOptions<T extends KubeObject> {
  client: KubeClient;
  /** Collection path, e.g. `/apis/imageshift.dev/v1/imageshifts`. */
  path: string;
  /** Watch only matching objects, e.g. `metadata.name=imageshift-tls`. */
  fieldSelector?: string;
  logger: Logger;
  /** Called after any add, update or delete, and after each (re)list. */
  onChange: () => void;
  /**
   * What to keep of each object. By default everything but `metadata.managedFields`, which
   * nothing here reads and which can outweigh the rest of a small object.
   */
  transform?: (object: T) => T;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** The watch's resourceVersion is no longer in the server's history: list again. */
class Expired extends Error {}

/** Server-side watch length, spread (as client-go does) so replicas do not reconnect in step. */
function watchTimeoutSeconds(): number {
  return 300 + Math.floor(Math.random() * 300);
}

/**
 * A watch open this long, or one that delivered an event, is healthy: it resets the backoff.
 * One that ends sooner without an event counts as a failure (no hot loop).
 */
const SHORTEST_HEALTHY_WATCH_MS = 1_000;

/** Longest wait before retrying an API server that is unreachable or unavailable (see above). */
const UNAVAILABLE_RETRY_MS = 1_000;

/** Network errors that mean the API server cannot be reached: down, restarting, partitioned. */
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENOTFOUND",
]);

/** True for a server that cannot be reached or says it is unavailable for now. */
function unavailable(error: unknown): boolean {
  if (error instanceof KubeApiError) return isUnavailable(error);
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && UNREACHABLE_CODES.has(code);
}

function withoutManagedFields<T extends KubeObject>(object: T): T {
  if (!object.metadata?.managedFields) return object;
  const { managedFields: _dropped, ...metadata } = object.metadata;
  return { ...object, metadata };
}

function keyOf(object: KubeObject): string {
  return `${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? ""}`;
}

export class WatchedKind<T extends KubeObject> {
  private readonly options: WatchedKindOptions<T>;
  private readonly store = new Map<string, T>();
  private snapshot: readonly T[] | undefined;
  private abort = new AbortController();
  private running: Promise<void> | undefined;
  private backoffMs: number;
  /** Failures since the last successful list, and the last one's message (repeats log at debug). */
  private failures = 0;
  private lastFailure = "";
  /** True once the first list has completed. */
  synced = false;

  private readonly keep: (object: T) => T;

  constructor(options: WatchedKindOptions<T>) {
    this.options = options;
    this.backoffMs = options.minBackoffMs ?? 500;
    this.keep = options.transform ?? withoutManagedFields;
  }

  list(): readonly T[] {
    this.snapshot ??= [...this.store.values()];
    return this.snapshot;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.store.get(`${namespace ?? ""}/${name}`);
  }

  /** Starts the loop; resolves once the first list has succeeded or failed. */
  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.abort = new AbortController();
    const { promise: firstList, resolve } = Promise.withResolvers<void>();
    this.running = this.run(resolve).finally(resolve);
    return firstList;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
    this.running = undefined;
  }

  private async run(listed: () => void): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        let resourceVersion = await this.relist(signal);
        listed();
        while (!signal.aborted) resourceVersion = await this.watchFrom(resourceVersion, signal);
      } catch (error) {
        if (signal.aborted) return;
        listed();
        if (error instanceof Expired) continue;
        await this.backoff(error, signal);
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<string | undefined> {
    const { client, path, fieldSelector } = this.options;
    const { items, resourceVersion } = await client.list<T>(path, { fieldSelector }, signal);
    this.store.clear();
    for (const item of items) this.store.set(keyOf(item), this.keep(item));
    this.snapshot = undefined;
    if (!this.synced) this.options.logger.info({ path, objects: items.length }, "watch synced");
    if (this.failures > 0) this.options.logger.info({ path, failures: this.failures }, "watch resumed");
    this.failures = 0;
    this.lastFailure = "";
    this.synced = true;
    this.options.onChange();
    return resourceVersion;
  }

  /** One watch; returns the last resourceVersion seen, to watch on from. */
  private async watchFrom(
    resourceVersion: string | undefined,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    const { client, path, fieldSelector } = this.options;
    const started = Date.now();
    let events = 0;
    let latest = resourceVersion;
    const healthy = () => events > 0 || Date.now() - started >= SHORTEST_HEALTHY_WATCH_MS;
    try {
      await client.watch<T>(
        path,
        { resourceVersion, allowWatchBookmarks: true, fieldSelector, timeoutSeconds: watchTimeoutSeconds() },
        (event) => {
          latest = this.apply(event) ?? latest;
          events++;
        },
        signal,
      );
    } catch (error) {
      // A watch that was healthy and then broke (the API server went away): retry from scratch.
      if (healthy()) this.recovered();
      if (isGone(error)) throw new Expired();
      throw error;
    }
    if (!healthy() && !signal.aborted) throw new Error(`watch ${path} ended at once`);
    this.recovered();
    return latest;
  }

  /** A healthy watch: the next failure waits the shortest time again. */
  private recovered(): void {
    this.backoffMs = this.options.minBackoffMs ?? 500;
  }

  /** Applies one event to the cache; returns the resourceVersion it carries. */
  private apply(event: WatchEvent<T>): string | undefined {
    const { type, object } = event;
    if (type === "ERROR") {
      const status = object as { code?: number; message?: string };
      if (isGone(status)) throw new Expired();
      throw new Error(`watch ${this.options.path}: ${status.message ?? JSON.stringify(object)}`);
    }
    if (type === "ADDED" || type === "MODIFIED") this.store.set(keyOf(object), this.keep(object));
    else if (type === "DELETED") this.store.delete(keyOf(object));
    if (type !== "BOOKMARK") {
      this.snapshot = undefined;
      this.options.onChange();
    }
    return object.metadata?.resourceVersion;
  }

  private async backoff(error: unknown, signal: AbortSignal): Promise<void> {
    const max = this.options.maxBackoffMs ?? 30_000;
    const bound = unavailable(error) ? Math.min(UNAVAILABLE_RETRY_MS, max) : max;
    const delay = Math.min(this.backoffMs, bound);
    this.backoffMs = Math.min(delay * 2, bound);
    const message = kubeErrorMessage(error);
    // The first failure of an outage, and each new kind of failure, at warn; repeats at debug.
    const level = message === this.lastFailure ? "debug" : "warn";
    this.failures++;
    this.lastFailure = message;
    this.options.logger[level](
      { path: this.options.path, err: error, retryInMs: delay },
      "watch failed; keeping the last known objects and retrying",
    );
    await sleep(delay, undefined, { signal }).catch(() => {});
  }
}
