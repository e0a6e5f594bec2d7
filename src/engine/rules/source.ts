/**
 * Where the active rule set comes from: one interface, two implementations (rule files
 * for standalone mode, cluster objects for the operator). The webhook only ever asks for
 * the current rule set, which a source swaps atomically as a whole.
 */
import type { CompiledRules } from "./load.ts";

export interface RuleSource {
  /** Loads the first rule set (or begins syncing); rejects only when it cannot start at all. */
  start(): Promise<void>;
  /** The active rules; undefined until the first full load. */
  current(): CompiledRules | undefined;
  /** Called after each swap. */
  onChange(listener: (rules: CompiledRules) => void): void;
  stop(): Promise<void>;
}
