/**
 * Builds the registry checker behind verification (docs/mirrors.md) from the checked flags,
 * for `serve` and `rewrite --verify` alike: the client (timeout, extra CA), the cache and
 * breaker settings, and the credentials sources (a Docker config file; in cluster mode,
 * Secrets named by rule objects, which take precedence for the Secret they name).
 */
import { readFile } from "node:fs/promises";
import type { Verification } from "../admission/verify.ts";
import { errorMessage } from "../errors.ts";
import type { Runnable } from "../manager/manager.ts";
import { RegistryClient } from "../registry/client.ts";
import { type Keyring, NO_CREDENTIALS, parseDockerConfig, StaticKeyring } from "../registry/credentials.ts";
import { PresenceChecker } from "../registry/presence.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import type { VerificationConfig } from "./serve.ts";
import { usageError } from "./usage.ts";

/** Cluster mode's Secrets: credentials, and why a named Secret serves none. */
export interface SecretsKeyring extends Keyring {
  describeMissing?(source: string | undefined): string | undefined;
}

/** A Docker config.json is a few KiB; refuse what cannot be one before parsing it. */
const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

export interface Checks {
  readonly checker: PresenceChecker;
  readonly verification: Verification;
  /** For the manager: stopped after the webhook has drained. */
  readonly runnable: Runnable;
}

async function readSmall(path: string, flag: string, command: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw usageError(`${flag} ${JSON.stringify(path)}: ${errorMessage(error)}`, command);
  }
  if (text.length > MAX_CONFIG_FILE_BYTES)
    throw usageError(`${flag} ${JSON.stringify(path)}: more than ${MAX_CONFIG_FILE_BYTES} bytes`, command);
  return text;
}

/** The keyring of `--registry-config`, or none. */
export async function fileKeyring(config: VerificationConfig, command: string): Promise<Keyring> {
  if (!config.configFile) return NO_CREDENTIALS;
  const text = await readSmall(config.configFile, "--registry-config", command);
  try {
    return new StaticKeyring(parseDockerConfig(text, config.configFile));
  } catch (error) {
    throw usageError(`--registry-config: ${errorMessage(error)}`, command);
  }
}

/**
 * The checker. `secrets` (cluster mode) answers for the Secret a rule object names; checks
 * that name none use the config file's credentials, if any.
 */
export async function createChecks(
  config: VerificationConfig,
  command: string,
  options: { metrics?: Metrics; secrets?: () => SecretsKeyring } = {},
): Promise<Checks> {
  const file = await fileKeyring(config, command);
  const ca = config.caFile ? await readSmall(config.caFile, "--registry-ca", command) : undefined;
  const { secrets } = options;
  const keyring: Keyring = {
    credentials: (source, host) => {
      if (source === undefined || !secrets) return file.credentials(source, host);
      const found = secrets().credentials(source, host);
      // A Secret that is missing or unusable makes the check unknown, saying why, rather
      // than anonymous: the object asked for credentials (the checker turns this into unknown).
      const missing = found ? undefined : secrets().describeMissing?.(source);
      if (missing) throw new Error(missing);
      return found;
    },
  };
  const checker = new PresenceChecker({
    client: new RegistryClient({ timeoutMs: config.requestTimeoutMs, ...(ca ? { ca } : {}) }),
    keyring,
    positiveTtlMs: config.positiveTtlMs,
    negativeTtlMs: config.negativeTtlMs,
    staleMs: config.staleMs,
    failures: config.breakerFailures,
    coolDownMs: config.breakerCoolDownMs,
    timeoutMs: config.requestTimeoutMs,
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  return {
    checker,
    verification: { checker, deadlineMs: config.deadlineMs },
    runnable: { name: "registry-checks", start: () => checker.start(), stop: () => checker.stop() },
  };
}
