import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { silentLogger } from "../telemetry/logger.ts";
import { Manager, type Runnable } from "./manager.ts";

/** A runnable that records its starts and stops in `events`. */
function recorded(
  name: string,
  events: string[],
  options: { fail?: boolean; notReady?: () => string | undefined } = {},
): Runnable {
  return {
    name,
    start: async () => {
      events.push(`start ${name}`);
      if (options.fail) throw new Error(`${name} cannot start`);
    },
    stop: async () => {
      events.push(`stop ${name}`);
    },
    ...(options.notReady ? { notReady: options.notReady } : {}),
  };
}

describe("Manager", () => {
  test("starts runnables in order and stops them in reverse, once", async () => {
    const events: string[] = [];
    const manager = new Manager(silentLogger);
    for (const name of ["probes", "rules", "leader-election", "webhook"]) manager.add(recorded(name, events));
    await manager.start();
    assert.equal(manager.notReady(), undefined);
    await Promise.all([manager.stop(), manager.stop()]);
    assert.deepEqual(events, [
      "start probes",
      "start rules",
      "start leader-election",
      "start webhook",
      "stop webhook",
      "stop leader-election",
      "stop rules",
      "stop probes",
    ]);
  });

  test("a failed start stops what had started, in reverse (a busy port releases the Lease)", async () => {
    const events: string[] = [];
    const manager = new Manager(silentLogger)
      .add(recorded("probes", events))
      .add(recorded("leader-election", events))
      .add(recorded("webhook", events, { fail: true }))
      .add(recorded("never", events));
    await assert.rejects(manager.start(), /webhook cannot start/);
    assert.deepEqual(events, [
      "start probes",
      "start leader-election",
      "start webhook",
      "stop leader-election",
      "stop probes",
    ]);
    assert.equal(manager.notReady(), "shutting down");
  });

  test("readiness combines the runnables': not started, not ready, then stopping", async () => {
    const events: string[] = [];
    let rulesLoaded = false;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const manager = new Manager(silentLogger)
      .add(
        recorded("rules", events, { notReady: () => (rulesLoaded ? undefined : "no rule set loaded yet") }),
      )
      .add({ name: "certificates", start: () => gate, stop: async () => {} });
    assert.equal(manager.notReady(), "no rule set loaded yet");
    const started = manager.start();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(manager.notReady(), "no rule set loaded yet");
    rulesLoaded = true;
    assert.equal(manager.notReady(), "certificates not started yet");
    release();
    await started;
    assert.equal(manager.notReady(), undefined);
    const stopping = manager.stop();
    assert.equal(manager.notReady(), "shutting down", "not ready the moment stopping begins");
    await stopping;
  });

  test("a stop during a start stops that runnable too, and starts no more", async () => {
    const events: string[] = [];
    const manager = new Manager(silentLogger);
    manager.add({
      name: "slow",
      start: async () => {
        events.push("start slow");
        void manager.stop();
      },
      stop: async () => {
        events.push("stop slow");
      },
    });
    manager.add(recorded("later", events));
    await manager.start();
    assert.deepEqual(events, ["start slow", "stop slow"]);
  });
});
