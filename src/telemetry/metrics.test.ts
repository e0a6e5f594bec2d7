/**
 * `Metrics` (src/telemetry/metrics.ts): Node's default metrics through prom-client, with their
 * monitors stoppable, the gauges for certificate expiry, requests in flight and leadership, and
 * the registry cache hit ratio and breaker gauges.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { localhostCertificate } from "../certs/testing.ts";
import { Metrics } from "./metrics.ts";

/** The value of an unlabelled sample, or undefined when absent. */
async function sample(metrics: Metrics, name: string): Promise<number | undefined> {
  const line = (await metrics.registry.metrics()).split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe("Metrics", () => {
  test("Node's default metrics, under prom-client's names: CPU, memory, fds, heap, event-loop lag, GC, version", async () => {
    const metrics = new Metrics();
    try {
      await sleep(20);
      const text = await metrics.registry.metrics();
      for (const name of [
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "nodejs_heap_size_used_bytes",
        "nodejs_heap_size_total_bytes",
        "nodejs_eventloop_lag_seconds",
        "nodejs_eventloop_lag_p99_seconds",
        "nodejs_gc_duration_seconds",
        "nodejs_version_info",
      ])
        assert.match(text, new RegExp(`^# TYPE ${name} `, "m"), name);
      assert.ok(((await sample(metrics, "process_resident_memory_bytes")) ?? 0) > 10e6);
    } finally {
      metrics.stop();
    }
  });

  test("stop() ends the event-loop delay monitor and the GC observer, once; each registry has its own", () => {
    const one = new Metrics();
    const two = new Metrics();
    assert.deepEqual(one.stop(), [true, true], "both were running");
    assert.deepEqual(one.stop(), [false, false], "already stopped");
    assert.deepEqual(two.stop(), [true, true], "another Metrics' monitors were left alone");
  });

  test("a Metrics after another stopped: perf_hooks is as it was, and scraping still works", async () => {
    const { monitorEventLoopDelay, PerformanceObserver } = await import("node:perf_hooks");
    new Metrics().stop();
    const perf = await import("node:perf_hooks");
    assert.equal(perf.default.monitorEventLoopDelay, monitorEventLoopDelay);
    assert.equal(perf.default.PerformanceObserver, PerformanceObserver);
    const later = new Metrics();
    later.stop();
    assert.match(await later.registry.metrics(), /^nodejs_eventloop_lag_seconds /m);
  });

  test("servingCertificate: the leaf's notAfter as Unix seconds; a chain's first; anything else ignored", async () => {
    const metrics = new Metrics();
    metrics.stop();
    assert.equal(await sample(metrics, "imageshift_certificate_expiry_timestamp_seconds"), 0);
    const { pair, caPem } = await localhostCertificate("metrics test CA");
    const notAfter = Date.parse(new (await import("node:crypto")).X509Certificate(pair.cert).validTo) / 1000;
    metrics.servingCertificate(pair.cert);
    assert.equal(await sample(metrics, "imageshift_certificate_expiry_timestamp_seconds"), notAfter);
    assert.ok(notAfter > Date.now() / 1000 && notAfter < Date.now() / 1000 + 2 * 86_400);
    metrics.certificateExpiry.set(0);
    metrics.servingCertificate([Buffer.from(pair.cert), caPem]);
    assert.equal(await sample(metrics, "imageshift_certificate_expiry_timestamp_seconds"), notAfter);
    for (const junk of [undefined, "not a certificate", 42, []]) metrics.servingCertificate(junk);
    assert.equal(await sample(metrics, "imageshift_certificate_expiry_timestamp_seconds"), notAfter);
  });

  test("the leader gauge, requests in flight and client requests start at nothing", async () => {
    const metrics = new Metrics();
    metrics.stop();
    assert.equal(await sample(metrics, "imageshift_leader"), 0);
    let leading = true;
    metrics.isLeader = () => leading;
    assert.equal(await sample(metrics, "imageshift_leader"), 1, "read at scrape time");
    leading = false;
    assert.equal(await sample(metrics, "imageshift_leader"), 0);
    assert.equal(await sample(metrics, "imageshift_admission_requests_in_flight"), 0);
    metrics.kubeRequests.inc({ verb: "get", code: "200" });
    assert.match(
      await metrics.registry.metrics(),
      /^imageshift_kube_client_requests_total\{verb="get",code="200"\} 1$/m,
    );
  });

  test("registry cache hit ratio: 0 before any lookup, then (hit + stale) / all", async () => {
    const metrics = new Metrics();
    metrics.stop();
    assert.equal(await sample(metrics, "imageshift_registry_cache_hit_ratio"), 0);
    metrics.registryCacheLookup("miss");
    assert.equal(await sample(metrics, "imageshift_registry_cache_hit_ratio"), 0);
    metrics.registryCacheLookup("hit");
    metrics.registryCacheLookup("stale");
    metrics.registryCacheLookup("hit");
    assert.equal(await sample(metrics, "imageshift_registry_cache_hit_ratio"), 0.75);
    assert.match(
      await metrics.registry.metrics(),
      /^imageshift_registry_cache_lookups_total\{result="hit"\} 2$/m,
    );
  });

  test("the breaker gauge reads the open registries at scrape time; one that closed reads 0", async () => {
    const metrics = new Metrics();
    metrics.stop();
    const gauge = async () =>
      (await metrics.registry.metrics())
        .split("\n")
        .filter((l) => l.startsWith("imageshift_registry_breaker_open{"));
    assert.deepEqual(await gauge(), []);
    let open = ["a.io", "b.io"];
    metrics.openBreakers = () => open;
    assert.deepEqual(await gauge(), [
      'imageshift_registry_breaker_open{registry="a.io"} 1',
      'imageshift_registry_breaker_open{registry="b.io"} 1',
    ]);
    open = ["b.io"];
    assert.deepEqual(await gauge(), [
      'imageshift_registry_breaker_open{registry="a.io"} 0',
      'imageshift_registry_breaker_open{registry="b.io"} 1',
    ]);
  });

  test("docs/webhook.md's metrics table has a row for every imageshift_ metric", async () => {
    const metrics = new Metrics();
    metrics.stop();
    const docs = readFileSync(join(import.meta.dirname, "..", "..", "docs", "webhook.md"), "utf8");
    const names = (await metrics.registry.getMetricsAsJSON())
      .map((m) => m.name)
      .filter((n) => n.startsWith("imageshift_"));
    assert.ok(names.includes("imageshift_registry_breaker_open"));
    assert.deepEqual(
      names.filter((name) => !docs.includes(`| \`${name}\``)),
      [],
    );
  });
});
