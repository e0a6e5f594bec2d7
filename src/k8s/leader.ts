/**
 * Lease-based leader election (`coordination.k8s.io/v1`), so that of several replicas
 * exactly one writes status. The same algorithm as client-go's: the holder renews the
 * Lease every `retryPeriod`; another replica takes it over only once it has not been
 * renewed for `leaseDuration`; a holder that cannot renew within `renewDeadline` steps
 * down on its own. Every write carries the resourceVersion it read, so two replicas can
 * never both take an expired Lease.
 *
 * On shutdown the replica stops leading at once and gives the Lease up, so another takes
 * over without waiting for it to expire; but an API server that does not answer never holds
 * up the shutdown: the release is abandoned after `RELEASE_TIMEOUT_MS`, and the Lease then
 * expires on its own after its duration.
 */
import { isConflict, isNotFound } from "../errors.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";
import { type KubeClient, resourcePath } from "./client.ts";
import { type Lease, microTime } from "./objects.ts";

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  logger: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

/**
 * How long `stop()` waits for the API server to take the Lease back: long enough for a
 * healthy one (milliseconds), short against the pod's termination grace period. Past it,
 * the Lease expires on its own after `leaseDuration` (15 s).
 */
export const RELEASE_TIMEOUT_MS = 2_000;

export class LeaderElector {
  private readonly options: LeaderElectionOptions;
  private readonly client: KubeClient;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private timer: NodeJS.Timeout | undefined;
  private lastRenew = 0;
  private stopped = false;
  private ticking: Promise<void> | undefined;
  /** Aborts the attempt in flight when stopping: its answer no longer matters. */
  private campaign = new AbortController();
  /** The Lease record last seen and when (on our clock) it last changed; see tryAcquireOrRenew. */
  private observed = { record: "", at: 0 };
  leading = false;

  constructor(options: LeaderElectionOptions) {
    this.options = { ...options, logger: componentLogger(options.logger, "leader-election") };
    this.client = options.client;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
  }

  start(): void {
    this.stopped = false;
    this.campaign = new AbortController();
    this.ticking = this.tick();
  }

  /**
   * Stops leading at once, abandons any attempt in flight, and gives the Lease up if this
   * replica holds it, so another replica takes over at once; within `RELEASE_TIMEOUT_MS`
   * whatever the API server does.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.leading) this.setLeading(false);
    this.campaign.abort();
    await this.ticking;
    const signal = AbortSignal.timeout(RELEASE_TIMEOUT_MS);
    try {
      // Read again: an attempt abandoned above may still have taken the Lease.
      const lease = await this.read(signal);
      if (lease?.spec && lease.spec.holderIdentity === this.options.identity) {
        // An expired Lease with no holder: anyone may take it at once.
        const { holderIdentity: _released, ...spec } = lease.spec;
        await this.client.replace(
          this.path(this.options.name),
          { ...lease, spec: { ...spec, renewTime: microTime(new Date(0)) } },
          signal,
        );
      }
    } catch (error) {
      const err = signal.aborted
        ? `no answer within ${RELEASE_TIMEOUT_MS} ms; the Lease expires on its own after ${this.leaseDurationMs} ms`
        : error;
      this.options.logger.warn({ err }, "could not release the leader Lease");
    }
  }

  private async tick(): Promise<void> {
    try {
      const acquired = await this.tryAcquireOrRenew();
      if (this.stopped) return; // stop() releases what this attempt may have taken
      if (acquired) this.lastRenew = Date.now();
      if (acquired && !this.leading) this.setLeading(true);
      if (!acquired && this.leading) this.setLeading(false);
    } catch (error) {
      if (this.stopped) return; // abandoned by stop()
      this.options.logger.warn({ err: error }, "leader election: Lease not read or written");
      if (this.leading && Date.now() - this.lastRenew > this.renewDeadlineMs) this.setLeading(false);
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick();
    }, this.retryPeriodMs);
    this.timer.unref();
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.options.logger.info(
      { identity: this.options.identity, lease: `${this.options.namespace}/${this.options.name}` },
      leading ? "became the leader" : "stopped leading",
    );
    if (leading) this.options.onStartedLeading();
    else this.options.onStoppedLeading();
  }

  private path(name?: string): string {
    const { namespace } = this.options;
    return resourcePath({
      group: "coordination.k8s.io",
      version: "v1",
      plural: "leases",
      namespace,
      ...(name ? { name } : {}),
    });
  }

  private async read(signal: AbortSignal): Promise<Lease | undefined> {
    try {
      return await this.client.get<Lease>(this.path(this.options.name), undefined, signal);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { name, namespace, identity } = this.options;
    const now = new Date();
    const { signal } = this.campaign;
    const lease = await this.read(signal);
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      renewTime: microTime(now),
    };
    if (!lease) {
      try {
        await this.client.create<Lease>(
          this.path(),
          {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name, namespace },
            spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
          },
          signal,
        );
        return true;
      } catch (error) {
        if (isConflict(error)) return false; // another replica created it first
        throw error;
      }
    }
    const held = lease.spec ?? {};
    const mine = held.holderIdentity === identity;
    // Expiry is judged on this replica's clock, from when the record was last seen to
    // change (as client-go does), never from the holder's renewTime: clocks differ.
    const record = `${held.holderIdentity}|${String(held.renewTime)}|${held.leaseTransitions}`;
    if (record !== this.observed.record) this.observed = { record, at: now.getTime() };
    const duration = (held.leaseDurationSeconds ?? 0) * 1000;
    if (!mine && held.holderIdentity && this.observed.at + duration > now.getTime()) return false;
    const renewed: Lease = {
      ...lease,
      spec: {
        ...held,
        ...spec,
        acquireTime: mine && held.acquireTime ? held.acquireTime : microTime(now),
        ...(mine ? {} : { leaseTransitions: (held.leaseTransitions ?? 0) + 1 }),
      },
    };
    try {
      await this.client.replace(this.path(name), renewed, signal);
      return true;
    } catch (error) {
      if (isConflict(error)) return false; // someone else wrote it since we read it
      throw error;
    }
  }
}
