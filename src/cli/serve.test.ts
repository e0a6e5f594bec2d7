import assert from "node:assert/strict";
import { test } from "node:test";
import { UsageError } from "../errors.ts";
import { silentLogger } from "../telemetry/logger.ts";
import { buildApp, parseServeConfig } from "./serve.ts";

test("parseServeConfig: flags to a checked configuration, with nothing started", () => {
  assert.equal(parseServeConfig(["--help"]), undefined);
  const config = parseServeConfig(["--rules", "examples/", "--port", "9443", "--shutdown-timeout", "3"]);
  assert.equal(config?.rules, "examples/");
  assert.equal(config?.webhookPort, 9443);
  assert.equal(config?.graceMs, 3000);
  assert.equal(config?.shutdownDelayMs, 0, "no delay unless asked (the chart asks for 5 s)");
  assert.equal(parseServeConfig(["--rules", "r", "--shutdown-delay", "5"])?.shutdownDelayMs, 5000);
  assert.match(config?.selfSignedDir ?? "", /imageshift[/\\]9443$/);
  assert.equal(config?.selfManaged, undefined);
  assert.throws(() => parseServeConfig(["--port", "x"]), UsageError);
  assert.throws(
    () => parseServeConfig(["--tls-secret", "s", "--rules", "r"]),
    /--tls-secret is for cluster mode/,
  );
  const cluster = parseServeConfig(["--tls-secret", "s", "--leader-election-namespace", "ns"]);
  assert.equal(cluster?.rules, undefined);
  assert.equal(cluster?.namespace, "ns");
  assert.equal(cluster?.selfManaged?.caValidityMs, 3650 * 86_400_000);
});

test("buildApp: a standalone configuration builds sources and runs nothing", async () => {
  const config = parseServeConfig(["--rules", "examples/", "--port", "0", "--metrics-port", "0"]);
  assert.ok(config);
  const options = await buildApp(config, silentLogger);
  assert.equal(options.rules.current(), undefined, "not started");
  assert.deepEqual(
    options.runnables?.map((runnable) => runnable.name),
    ["registry-checks"],
    "only the registry checker, which holds nothing until asked",
  );
  assert.equal(options.verification?.deadlineMs, 2_000);
  await Promise.all(options.runnables?.map((runnable) => runnable.stop()) ?? []);
  assert.equal(options.port, 0);
  assert.equal(options.shutdownDelayMs, 0);
});

test("parseServeConfig refuses each bad flag with a message naming it", () => {
  const refused: [string[], RegExp][] = [
    [["--log-level", "loud"], /--log-level must be one of .*, got "loud"/],
    [["--tls-cert-file", "c.pem"], /--tls-cert-file and --tls-key-file go together/],
    [["--shutdown-timeout", "soon"], /--shutdown-timeout must be a number of seconds, got "soon"/],
    [["--shutdown-delay", "later"], /--shutdown-delay must be 0 to 60 seconds, got "later"/],
    [["--shutdown-delay", "61"], /--shutdown-delay must be 0 to 60 seconds, got "61"/],
    [["--shutdown-delay=-1"], /--shutdown-delay must be 0 to 60 seconds, got "-1"/],
    [["--tls-secret", "s", "--ca-validity", "ten years"], /--ca-validity must be a duration such as 90d/],
    [["--namespace-label", ""], /--namespace-label must be a label key/],
  ];
  for (const [argv, message] of refused) assert.throws(() => parseServeConfig(argv), message);
});
