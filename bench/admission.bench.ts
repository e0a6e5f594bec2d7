/**
 * Admission in process (`npm run bench:admission`): `handleMutate` on a 3-image pod with the
 * example rules, as the server runs it but without HTTP or TLS, with its info logs written
 * synchronously to /dev/null (as pino writes to stdout) and with logging off. Reports the mean
 * per review of five batches of 50,000. Figures go to docs/performance.md with date and
 * machine; compare the two modes of one run, not absolutes.
 */
import { openSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { handleMutate } from "../src/admission/mutate.ts";
import type { AdmissionRequest } from "../src/admission/review.ts";
import { podCreateReview } from "../src/admission/testing.ts";
import { loadRules } from "../src/engine/rules/load.ts";
import { createLogger, type LogLevel } from "../src/telemetry/logger.ts";
import { Metrics } from "../src/telemetry/metrics.ts";
import { machineLine } from "./harness.ts";

const BATCH = 50_000;
const BATCHES = 5;

const rules = await loadRules(join(import.meta.dirname, "..", "examples"));
const { request } = podCreateReview({
  app: "nginx:1.25",
  exporter: "quay.io/prometheus/node-exporter:v1.8.0",
  static: "gcr.io/distroless/static:nonroot",
}) as { request: AdmissionRequest };

async function batches(level: LogLevel): Promise<number[]> {
  const logger = createLogger(level, pino.destination({ dest: openSync("/dev/null", "w"), sync: true }));
  const metrics = new Metrics();
  const deps = {
    rules: () => rules.ruleSet,
    namespaceLabels: () => undefined,
    failClosed: false,
    metrics,
    logger,
  };
  const means: number[] = [];
  for (let batch = 0; batch < BATCHES; batch++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < BATCH; i++) {
      const { outcome } = await handleMutate(request, deps);
      if (outcome !== "patched") throw new Error(`expected a patched pod, got ${outcome}`);
    }
    means.push(Number(process.hrtime.bigint() - started) / BATCH / 1000);
  }
  metrics.stop();
  return means;
}

const range = (values: number[]) => `${Math.min(...values).toFixed(1)}-${Math.max(...values).toFixed(1)}`;
console.log(machineLine("Admission in process"));
console.log("| logs | µs per 3-image review, mean of each batch of 50,000 |");
console.log("|---|---|");
for (const level of ["info", "silent", "info", "silent"] as const)
  console.log(`| ${level === "info" ? "info, to /dev/null" : "off"} | ${range(await batches(level))} |`);
