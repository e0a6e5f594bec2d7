/**
 * Rules from the cluster (`imageshift serve` without `--rules`): `Imageshift` objects,
 * optionally `RegistryRewriteRule` objects, and Namespaces (for namespace selectors), all
 * through watches, never an API call per admission.
 *
 * Every add, update or delete rebuilds the rule set and swaps it in atomically, so a change
 * applied with kubectl rewrites the next pod. Objects are compiled once per generation, so
 * status updates and relists do not recompile anything. The source is ready after the first
 * full sync of every watch; while the API server is away, the last rule set keeps serving.
 *
 * A bad edit loses nothing, as in standalone mode: a generation that is unusable as a whole
 * (an object-level error such as `spec.default: "not a registry!"`, which the validating
 * webhook refuses but cannot stop while it is down) keeps serving the object's last usable
 * generation, and its status says so. A bad rule drops only itself: the rest of its generation
 * is used. Last usable generations live in memory, per object (uid): a replica started after
 * the bad edit never saw one, and serves nothing of that object.
 */

import { COMPAT_GROUP, COMPAT_KIND, IMAGESHIFT_GROUP, IMAGESHIFT_KIND } from "../api/schema.ts";
import { budgetProblem, declaredRules } from "../engine/rules/budget.ts";
import { type CompiledObject, type CompileResult, compileObject } from "../engine/rules/compile.ts";
import { RULES_MAX } from "../engine/rules/limits.ts";
import type { CompiledRules } from "../engine/rules/load.ts";
import { RuleSet } from "../engine/rules/ruleset.ts";
import type { Labels } from "../engine/rules/selector.ts";
import type { RuleSource } from "../engine/rules/source.ts";
import { formatIssue } from "../errors.ts";
import { type KubeClient, resourcePath } from "../k8s/client.ts";
import { WatchedKind } from "../k8s/informer.ts";
import type { KubeObject, Namespace } from "../k8s/objects.ts";
import { Listeners } from "../platform/listeners.ts";
import { componentLogger, type Logger } from "../telemetry/logger.ts";

export interface RuleObjectKind {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
}

export const IMAGESHIFT_RESOURCE: RuleObjectKind = {
  group: IMAGESHIFT_GROUP,
  version: "v1",
  plural: "imageshifts",
  kind: IMAGESHIFT_KIND,
};
export const COMPAT_RESOURCE: RuleObjectKind = {
  group: COMPAT_GROUP,
  version: "v1alpha1",
  plural: "registryrewriterules",
  kind: COMPAT_KIND,
};

/** A rule object as stored in the cluster, with what ImageShift made of it. */
export interface ClusterObject {
  readonly resource: RuleObjectKind;
  readonly object: KubeObject & { spec?: unknown; status?: unknown };
  readonly result: CompileResult;
  /**
   * Set when this generation is unusable as a whole (`result.object` undefined): the earlier
   * generation of the same object whose rules are served instead.
   */
  readonly lastGood?: CompiledObject;
  /** Set when the whole rule set is over budget and refused (`engine/rules/budget.ts`): why. */
  readonly overBudget?: string;
}

export interface ClusterRuleSourceOptions {
  client: KubeClient;
  logger: Logger;
  /** Also watch the Mutating Registry Webhook's `RegistryRewriteRule` kind (default true). */
  watchCompat?: boolean;
}

export class ClusterRuleSource implements RuleSource {
  private readonly logger: Logger;
  private readonly kinds: { resource: RuleObjectKind; watch: WatchedKind<KubeObject> }[];
  private readonly namespaces: WatchedKind<Namespace>;
  private readonly listeners = new Listeners<CompiledRules>();
  private readonly refusedListeners = new Listeners<void>();
  private readonly compiled = new Map<string, ClusterObject>();
  /** Per object (`kind/uid`), the compile of its latest usable generation. */
  private readonly lastGood = new Map<string, CompiledObject>();
  private active: CompiledRules | undefined;
  private activeKey = "";
  private objects: ClusterObject[] = [];
  private scheduled = false;

  constructor(options: ClusterRuleSourceOptions) {
    this.logger = componentLogger(options.logger, "rules");
    const resources =
      options.watchCompat === false ? [IMAGESHIFT_RESOURCE] : [IMAGESHIFT_RESOURCE, COMPAT_RESOURCE];
    const onChange = () => this.scheduleRebuild();
    this.kinds = resources.map((resource) => ({
      resource,
      watch: new WatchedKind<KubeObject>({
        client: options.client,
        path: resourcePath(resource),
        logger: this.logger,
        onChange,
      }),
    }));
    this.namespaces = new WatchedKind<Namespace>({
      client: options.client,
      path: resourcePath({ version: "v1", plural: "namespaces" }),
      // Only names and labels are read: a cluster may have thousands of namespaces.
      transform: ({ metadata }) => ({
        metadata: {
          name: metadata?.name,
          labels: metadata?.labels,
          resourceVersion: metadata?.resourceVersion,
        },
      }),
      logger: this.logger,
      // Labels are read at admission time: a change needs no rebuild, only the first sync
      // (the source is ready once every watch has synced).
      onChange: () => {
        if (!this.active) this.scheduleRebuild();
      },
    });
  }

  async start(): Promise<void> {
    // Not awaited to the end: watches sync in the background and retry on their own;
    // `current()` stays undefined (not ready) until every one of them has synced.
    for (const watch of [...this.kinds.map((kind) => kind.watch), this.namespaces]) void watch.start();
  }

  current(): CompiledRules | undefined {
    return this.active;
  }

  /** Every rule object with its compile result, for status reporting. */
  clusterObjects(): readonly ClusterObject[] {
    return this.objects;
  }

  onChange(listener: (rules: CompiledRules) => void): void {
    this.listeners.add(listener);
  }

  namespaceLabels(namespace: string): Labels | undefined {
    return this.namespaces.get(namespace)?.metadata?.labels;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.kinds.map((kind) => kind.watch.stop()), this.namespaces.stop()]);
  }

  get synced(): boolean {
    return this.namespaces.synced && this.kinds.every((kind) => kind.watch.synced);
  }

  /** Bursts of events (a relist, `kubectl apply -f dir`) give one rebuild. */
  private scheduleRebuild(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.rebuild();
    });
  }

  /** Rebuilds and swaps the rule set; exported behaviour is through `current()` and listeners. */
  rebuild(): void {
    if (!this.synced) return;
    // Counted before anything new is compiled: a set far over budget costs no memory.
    let declared = 0;
    for (const { watch } of this.kinds) for (const object of watch.list()) declared += declaredRules(object);
    if (declared > RULES_MAX) {
      this.refuse(`the rule set has ${declared} rules, more than ${RULES_MAX}`);
      return;
    }
    const seen = new Set<string>();
    const identities = new Set<string>();
    const objects: ClusterObject[] = [];
    for (const { resource, watch } of this.kinds) {
      for (const object of watch.list()) {
        const identity = `${resource.kind}/${object.metadata?.uid}`;
        const key = `${identity}/${object.metadata?.generation}`;
        seen.add(key);
        identities.add(identity);
        let entry = this.compiled.get(key);
        if (!entry) {
          const name = object.metadata?.name ?? "";
          entry = { resource, object, result: compileObject(object, { source: `${resource.kind}/${name}` }) };
          this.compiled.set(key, entry);
          for (const issue of entry.result.issues)
            this.logger[issue.severity === "error" ? "error" : "warn"](
              { issue: formatIssue(issue) },
              "rule problem",
            );
        } else if (entry.object !== object) {
          // Same generation (a status or metadata update): keep the compile, track the latest object.
          entry = { ...entry, object };
          this.compiled.set(key, entry);
        }
        entry = this.withLastGood(identity, key, entry);
        objects.push(entry);
      }
    }
    for (const key of this.compiled.keys()) if (!seen.has(key)) this.compiled.delete(key);
    // A deleted object's last usable generation goes with it.
    for (const identity of this.lastGood.keys())
      if (!identities.has(identity)) this.lastGood.delete(identity);
    this.objects = objects;
    const activeKey = [...seen].sort().join("\n");
    if (this.active && activeKey === this.activeKey) return;
    this.activeKey = activeKey;
    const usable: CompiledObject[] = objects.flatMap((entry) => entry.result.object ?? entry.lastGood ?? []);
    const rules = usable.flatMap((object) => [...object.rules]);
    const problem = budgetProblem(rules);
    if (problem) {
      this.refuse(problem);
      return;
    }
    this.active = {
      ruleSet: new RuleSet(rules),
      objects: usable,
      issues: objects.flatMap((entry) => [...entry.result.issues]),
    };
    this.logger.info(
      { objects: usable.length, rules: this.active.ruleSet.size },
      "rules loaded from the cluster",
    );
    this.listeners.emit(this.active);
  }

  /**
   * The whole set is over budget: the last good set keeps serving (none, before the first),
   * and every object's status says why.
   */
  private refuse(problem: string): void {
    this.activeKey = "";
    this.objects = this.objects.map((entry) => ({ ...entry, overBudget: problem }));
    this.logger.error({ err: problem }, "rule set over budget; keeping the last good rule set");
    this.refusedListeners.emit();
  }

  /** Called when a rule set is refused as over budget (the status writer reports it). */
  onRefused(listener: () => void): void {
    this.refusedListeners.add(listener);
  }

  /**
   * Records a usable generation as the object's last good one, or links an unusable one to
   * the last good generation served in its place (once per generation, logged).
   */
  private withLastGood(identity: string, key: string, entry: ClusterObject): ClusterObject {
    if (entry.result.object) {
      this.lastGood.set(identity, entry.result.object);
      return entry;
    }
    const kept = this.lastGood.get(identity);
    if (!kept || entry.lastGood === kept) return entry;
    const linked = { ...entry, lastGood: kept };
    this.compiled.set(key, linked);
    this.logger.warn(
      {
        object: `${entry.resource.kind}/${kept.name}`,
        generation: entry.object.metadata?.generation,
        serving: kept.generation,
        rules: kept.rules.length,
      },
      "object has errors; serving its last usable generation",
    );
    return linked;
  }
}
