/**
 * Watches files for changes the way Kubernetes volumes change them: a ConfigMap or Secret
 * volume swaps a `..data` symlink, so the folders are watched, not the files; events come in
 * bursts while files are replaced, so they are debounced; and a watcher can miss events (or
 * not start at all), so a poll runs too. `onChange` is called at most once per burst and once
 * per poll; the caller decides whether anything really changed.
 */
import { type FSWatcher, watch } from "node:fs";

export interface PathWatcherOptions {
  folders: readonly string[];
  pollMs: number;
  /** Quiet time after the last event before `onChange` (default 100 ms). */
  debounceMs?: number;
  onChange: () => void;
  /** A folder that cannot be watched: polling only for it. */
  onWatchError: (folder: string, error: unknown) => void;
}

export class PathWatcher {
  private readonly options: PathWatcherOptions;
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(options: PathWatcherOptions) {
    this.options = options;
  }

  start(): void {
    for (const folder of new Set(this.options.folders)) {
      try {
        this.watchers.push(watch(folder, () => this.scheduled()));
      } catch (error) {
        this.options.onWatchError(folder, error);
      }
    }
    this.timer = setInterval(this.options.onChange, this.options.pollMs);
    this.timer.unref();
  }

  stop(): void {
    for (const watcher of this.watchers) watcher.close();
    this.watchers = [];
    clearInterval(this.timer);
    clearTimeout(this.debounce);
  }

  private scheduled(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(this.options.onChange, this.options.debounceMs ?? 100);
  }
}
