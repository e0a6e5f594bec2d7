/**
 * Rules from files (`imageshift serve --rules PATH`), hot-reloaded.
 *
 * The path is watched (a ConfigMap volume swaps a symlink, so the folder is watched) with a
 * poll as a fallback. A bad edit loses nothing:
 * - a file that cannot be read or has a YAML syntax error keeps the whole last good set;
 * - an object that became invalid keeps its last good version (logged), while the valid
 *   objects of the same edit take effect.
 */
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { errorMessage, formatIssue, type Location, RuleSourceError } from "../../errors.ts";
import { Listeners } from "../../platform/listeners.ts";
import { PathWatcher } from "../../platform/path-watcher.ts";
import { componentLogger, type Logger } from "../../telemetry/logger.ts";
import { budgetProblem } from "./budget.ts";
import type { CompiledObject } from "./compile.ts";
import {
  type CompiledRules,
  compileDocuments,
  parseRuleFiles,
  type RuleDocument,
  readRuleFiles,
} from "./load.ts";
import { RuleSet } from "./ruleset.ts";
import type { RuleSource } from "./source.ts";

export interface FileRuleSourceOptions {
  path: string;
  logger: Logger;
  pollMs?: number;
}

function digest(parts: readonly string[]): string {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest("base64");
}

const identity = (object: { kind: string; name: string }) => `${object.kind}/${object.name}`;

export class FileRuleSource implements RuleSource {
  private readonly path: string;
  private readonly logger: Logger;
  private readonly pollMs: number;
  private readonly listeners = new Listeners<CompiledRules>();
  private active: CompiledRules | undefined;
  private watcher: PathWatcher | undefined;
  private reloading: Promise<boolean> | undefined;
  /** Digests (not texts: 10,000 rules are about 0.7 MB) of the files and of their documents. */
  private textSignature = "";
  private signature = "";
  /** Why the last reload was refused as a whole (over budget), for the start error. */
  private refusal: string | undefined;

  constructor(options: FileRuleSourceOptions) {
    this.path = options.path;
    this.logger = componentLogger(options.logger, "rules");
    this.pollMs = options.pollMs ?? 5_000;
  }

  async start(): Promise<void> {
    const info = await stat(this.path).catch((error: unknown) => {
      throw new RuleSourceError(`cannot read rules at ${JSON.stringify(this.path)}: ${errorMessage(error)}`);
    });
    await this.reload();
    if (!this.active) {
      const why = this.refusal ? `: ${this.refusal}` : "";
      throw new RuleSourceError(`no usable rules in ${JSON.stringify(this.path)}${why}`);
    }
    this.watcher = new PathWatcher({
      folders: [info.isDirectory() ? this.path : dirname(this.path)],
      pollMs: this.pollMs,
      onChange: () => void this.reload(),
      onWatchError: (folder, error) =>
        this.logger.warn({ folder, err: error }, "cannot watch the rules; polling only"),
    });
    this.watcher.start();
  }

  current(): CompiledRules | undefined {
    return this.active;
  }

  onChange(listener: (rules: CompiledRules) => void): void {
    this.listeners.add(listener);
  }

  async stop(): Promise<void> {
    this.watcher?.stop();
    await this.reloading;
  }

  /** Reloads now; true when a new rule set was swapped in. One reload at a time. */
  async reload(): Promise<boolean> {
    while (this.reloading) await this.reloading;
    this.reloading = this.load().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async load(): Promise<boolean> {
    let files: Awaited<ReturnType<typeof readRuleFiles>>;
    try {
      files = await readRuleFiles(this.path);
    } catch (error) {
      this.logger.error(
        { path: this.path, err: error },
        "rules not reloaded; keeping the last good rule set",
      );
      return false;
    }
    // Unchanged files (every poll, mostly) are not even parsed: parsing 10,000 rules every
    // few seconds made megabytes of garbage, and collector pauses with it.
    const textSignature = digest(files.map(({ file, text }) => `${file}\0${text.length}\0${text}`));
    if (this.active && textSignature === this.textSignature) return false;
    this.textSignature = textSignature;
    const read = parseRuleFiles(files);
    // Edits that change no document (comments, formatting) swap nothing in.
    const signature = digest([JSON.stringify([read.documents, read.issues])]);
    if (this.active && signature === this.signature) return false;
    this.signature = signature;
    // Files with YAML syntax errors: none of their documents could be read, so their
    // objects keep their last good versions.
    const unreadable = new Set(
      read.issues.filter((issue) => issue.severity === "error").map((issue) => issue.location.source),
    );
    const compiled = compileDocuments(read.documents, read.issues);
    const next = compiled.overBudget ? compiled : this.keepLastGood(read.documents, compiled, unreadable);
    const refusal = next.overBudget ?? budgetProblem(next.objects.flatMap((object) => [...object.rules]));
    if (refusal) {
      this.refusal = refusal;
      this.logger.error(
        { path: this.path, err: refusal },
        "rules not reloaded; keeping the last good rule set",
      );
      return false;
    }
    for (const issue of next.issues)
      this.logger[issue.severity === "error" ? "error" : "warn"](
        { issue: formatIssue(issue) },
        "rule problem",
      );
    this.active = next;
    this.logger.info(
      { path: this.path, objects: next.objects.length, rules: next.ruleSet.size },
      "rules loaded",
    );
    this.listeners.emit(next);
    return true;
  }

  /** Documents with errors fall back to their object's last good version, when there is one. */
  private keepLastGood(
    documents: readonly RuleDocument[],
    next: CompiledRules,
    unreadable: ReadonlySet<string>,
  ): CompiledRules {
    if (!this.active) return next;
    const broken = new Set(
      next.issues.filter((issue) => issue.severity === "error").map((issue) => where(issue.location)),
    );
    if (broken.size === 0) return next;
    const previous = new Map(this.active.objects.map((object) => [identity(object), object]));
    const compiled = new Map(next.objects.map((object) => [where(object.location), object]));
    const objects: CompiledObject[] = [];
    const seen = new Set<string>();
    for (const document of documents) {
      const old = previous.get(identityOf(document.value));
      const fresh = compiled.get(where(document.location));
      const chosen = broken.has(where(document.location)) && old ? old : fresh;
      if (!chosen || seen.has(identity(chosen))) continue;
      if (chosen === old)
        this.logger.warn({ object: identity(old) }, "object has errors; keeping its last good version");
      seen.add(identity(chosen));
      objects.push(chosen);
    }
    for (const old of this.active.objects) {
      if (!unreadable.has(old.location.source) || seen.has(identity(old))) continue;
      this.logger.warn(
        { object: identity(old), file: old.location.source },
        "file has YAML errors; keeping the object's last good version",
      );
      seen.add(identity(old));
      objects.push(old);
    }
    return {
      ruleSet: new RuleSet(objects.flatMap((object) => [...object.rules])),
      objects,
      issues: next.issues,
    };
  }
}

const where = (location: Location) => `${location.source}#${location.document ?? 0}`;

/** `Kind/name` of a raw document, as far as it can be read. */
function identityOf(value: unknown): string {
  const doc = value as { kind?: unknown; metadata?: { name?: unknown } } | null;
  return `${String(doc?.kind)}/${String(doc?.metadata?.name)}`;
}
