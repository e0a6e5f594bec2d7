/**
 * One shape for everything ImageShift serves from and that can change under it: rule sets
 * (files, cluster objects) and serving certificates (files, self-signed, a Secret). A source
 * loads its first value in `start`, hands out the latest with `current`, tells listeners of
 * each new one, and releases what it holds in `stop`.
 */
export interface Source<T> {
  /** Loads the first value (or waits for it); rejects only when there can be none. */
  start(): Promise<void>;
  /** The latest value; undefined until the first one. */
  current(): T | undefined;
  /** Called with each new value after the first. */
  onChange(listener: (value: T) => void): void;
  stop(): Promise<void>;
}
