/**
 * Where the active rule set comes from: the one source shape (`platform/source.ts`), two
 * implementations (rule files for standalone mode, cluster objects for the operator). The
 * webhook only ever asks for the current rule set, which a source swaps atomically as a whole.
 */
import type { Source } from "../../platform/source.ts";
import type { CompiledRules } from "./load.ts";

export type RuleSource = Source<CompiledRules>;
