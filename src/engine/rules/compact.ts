/**
 * Compiled rules stay in memory as long as their rule set, so their strings are made compact
 * once, at compile time: flat (a `${a}/${b}` or `"library/" + path` is a tree of V8 "cons"
 * strings, about 100 bytes where the flat text needs 40), and shared (100,000 swap rules to
 * one mirror held 100,000 copies of "mirror.corp"). Measured: about 250 bytes a rule.
 */
import type { ImageReference } from "../image/reference.ts";

/** Flat, shared copies of the strings of one compile. */
export class StringTable {
  private readonly table = new Map<string, string>();

  get(text: string): string {
    let shared = this.table.get(text);
    if (shared === undefined) {
      // `join` of two parts always builds a new flat string, whatever `text` is made of.
      shared = [text, ""].join("");
      this.table.set(shared, shared);
    }
    return shared;
  }

  reference(reference: ImageReference): ImageReference {
    const domain = this.get(reference.domain);
    const path = this.get(reference.path);
    const { tag, digest } = reference;
    if (tag === undefined && digest === undefined) return { domain, path };
    if (digest === undefined) return { domain, path, tag: this.get(tag as string) };
    if (tag === undefined) return { domain, path, digest: this.get(digest) };
    return { domain, path, tag: this.get(tag), digest: this.get(digest) };
  }
}

/** `spec.mappings.swap[12]`, flat. */
export function ruleField(list: string, index: number): string {
  return ["spec.", list, "[", index, "]"].join("");
}
