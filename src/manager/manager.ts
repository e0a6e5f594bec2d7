/**
 * Start and stop in one place, the way controller-runtime's manager does it: every
 * long-lived part of ImageShift is a runnable, started in the order it was added and
 * stopped in reverse, on a signal or when a later one fails to start. Readiness is the
 * runnables' readiness combined, and it turns false the moment stopping begins.
 *
 * Leader-only work (status, self-managed certificates) runs inside the leader-election
 * runnable (`operator/operator.ts`): the manager needs no notion of leadership beyond that.
 */
import type { Logger } from "../telemetry/logger.ts";

export interface Runnable {
  /** For logs: `probes`, `rules`, `leader-election`, `certificates`, `webhook`. */
  readonly name: string;
  /** Resolves once the runnable serves; rejects when it cannot start at all. */
  start(): Promise<void>;
  /** Releases everything it holds; never rejects. */
  stop(): Promise<void>;
  /** Why it is not ready yet, or undefined when it is (absent: ready once started). */
  notReady?(): string | undefined;
}

export class Manager {
  private readonly logger: Logger;
  private readonly runnables: Runnable[] = [];
  private readonly started: Runnable[] = [];
  private stopping: Promise<void> | undefined;

  constructor(logger: Logger) {
    this.logger = logger;
  }

  add(runnable: Runnable): this {
    this.runnables.push(runnable);
    return this;
  }

  /** Starts every runnable in order; on a failure, stops those started, in reverse, and rethrows. */
  async start(): Promise<void> {
    for (const runnable of this.runnables) {
      if (this.stopping) return;
      try {
        await runnable.start();
      } catch (error) {
        this.logger.debug({ runnable: runnable.name }, "runnable failed to start; stopping the others");
        await this.stop();
        throw error;
      }
      if (this.stopping) {
        // Stopped while it was starting: the stop pass has gone by, so it is stopped here.
        await runnable.stop();
        return;
      }
      this.started.push(runnable);
    }
  }

  /** Why the process is not ready: stopping, a runnable not started, or one not ready yet. */
  notReady(): string | undefined {
    if (this.stopping) return "shutting down";
    for (const runnable of this.runnables) {
      if (!this.started.includes(runnable))
        return runnable.notReady?.() ?? `${runnable.name} not started yet`;
      const reason = runnable.notReady?.();
      if (reason) return reason;
    }
    return undefined;
  }

  /** Stops the started runnables in reverse order, once; later calls wait for the first. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const runnable of [...this.started].reverse()) {
        this.logger.debug({ runnable: runnable.name }, "stopping");
        await runnable.stop();
      }
      this.started.length = 0;
    })();
    return this.stopping;
  }
}
