/**
 * A list-and-watch cache of one resource kind that never gives up.
 *
 * `@kubernetes/client-node`'s informer relists by itself on `410 Gone` and watch timeouts,
 * but on other errors (API server restarting, connection refused, a 500) it reports the
 * error and stops for good. This wrapper restarts it with exponential backoff, and keeps
 * the last known objects meanwhile, so a webhook keeps serving its last good rule set while
 * the API server is away.
 */
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";
import { kubeErrorMessage } from "../errors.ts";
import type { Logger } from "../telemetry/logger.ts";

export interface WatchedKindOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Watch path, e.g. `/apis/imageshift.dev/v1/imageshifts`. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  /** Watch only matching objects, e.g. `metadata.name=imageshift-tls` (list must match too). */
  fieldSelector?: string;
  logger: Logger;
  /** Called after any add, update or delete, and after each (re)list. */
  onChange: () => void;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export class WatchedKind<T extends KubernetesObject> {
  private readonly options: WatchedKindOptions<T>;
  private readonly informer: ListWatch<T>;
  private stopped = false;
  private backoffMs: number;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  /** True once the first list has completed. */
  synced = false;

  constructor(options: WatchedKindOptions<T>) {
    this.options = options;
    this.backoffMs = options.minBackoffMs ?? 500;
    this.informer = new ListWatch<T>(
      options.path,
      new Watch(options.kubeConfig),
      options.list,
      false,
      undefined,
      options.fieldSelector,
    );
    for (const verb of ["add", "update", "delete"] as const) this.informer.on(verb, () => options.onChange());
    this.informer.on("error", (error: unknown) => this.failed(error));
  }

  list(): readonly T[] {
    return this.informer.list();
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  async start(): Promise<void> {
    this.stopped = false;
    // The informer reports a failed list through its error callback and still resolves.
    const failuresBefore = this.failures;
    try {
      await this.informer.start();
    } catch (error) {
      this.failed(error);
      return;
    }
    if (this.stopped || this.failures !== failuresBefore) return;
    this.backoffMs = this.options.minBackoffMs ?? 500;
    if (!this.synced)
      this.options.logger.info({ path: this.options.path, objects: this.list().length }, "watch synced");
    this.synced = true;
    this.options.onChange();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    await this.informer.stop();
  }

  private failed(error: unknown): void {
    this.failures++;
    if (this.stopped) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(delay * 2, this.options.maxBackoffMs ?? 30_000);
    this.options.logger.warn(
      { path: this.options.path, err: kubeErrorMessage(error), retryInMs: delay },
      "watch failed; keeping the last known objects and retrying",
    );
    clearTimeout(this.retry);
    this.retry = setTimeout(() => void this.start(), delay);
    this.retry.unref();
  }
}
