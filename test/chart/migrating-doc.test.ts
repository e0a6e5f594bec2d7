/**
 * docs/migrating-from-mrw.md names chart values, a flag, files and metric names that users type
 * or put in dashboards; this keeps each of them real, and the page linked from where an MRW user
 * starts (README.md, docs/install.md).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { SERVE_HELP } from "../../src/cli/serve.ts";
import { Metrics } from "../../src/telemetry/metrics.ts";
import { MrwMetrics } from "../../src/webhook/mrw-metrics.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const read = (relative: string) => readFileSync(join(ROOT, relative), "utf8");
const PAGE = "docs/migrating-from-mrw.md";

describe(PAGE, () => {
  const text = read(PAGE);

  it("is linked from README.md's documentation list and from docs/install.md", () => {
    assert.match(read("README.md"), /^- \[docs\/migrating-from-mrw\.md\]\(docs\/migrating-from-mrw\.md\)/m);
    assert.match(read("docs/install.md"), /\]\(migrating-from-mrw\.md\)/);
  });

  it("lists exactly the MRW metric names ImageShift registers", async () => {
    const metrics = new Metrics();
    new MrwMetrics(metrics);
    const registered = (await metrics.registry.getMetricsAsJSON())
      .map((metric) => metric.name)
      .filter((name) => name.startsWith("registry_rewriter_"))
      .sort();
    const documented = [...new Set(text.match(/registry_rewriter_[a-z_]+/g))].sort();
    assert.deepEqual(documented, registered);
    assert.equal(registered.length, 5);
  });

  it("names chart values that exist, with the defaults it gives, and the serve flag", () => {
    const values = parse(read("charts/imageshift/values.yaml")) as {
      allNamespaces: unknown;
      metrics: { mrwCompat: unknown };
      compatKind: { enabled: unknown };
    };
    assert.equal(values.allNamespaces, false);
    assert.equal(values.metrics.mrwCompat, false);
    assert.equal(values.compatKind.enabled, true);
    for (const name of ["allNamespaces", "metrics.mrwCompat", "compatKind.enabled=false"])
      assert.ok(text.includes(name), name);
    assert.match(text, /imageshift serve --mrw-metrics/);
    assert.match(SERVE_HELP, /^ {2}--mrw-metrics /m);
  });

  it("names files that exist", () => {
    const named = [...new Set(text.match(/\b(?:charts|dist|test|docs)\/[\w./-]+\.(?:ya?ml|ts|md)\b/g))];
    assert.ok(named.length >= 4, named.join(", "));
    for (const file of named) assert.ok(existsSync(join(ROOT, file)), file);
  });
});
