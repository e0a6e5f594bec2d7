/** Test helpers shared across folders. */

/** `promise`, or a rejection after `ms`: no test can hang on a call that never settles. */
export function within<T>(promise: Promise<T>, ms = 1500, what = "the call"): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * `imageshift serve` flags for a server under test: the webhook and the probes on loopback
 * only, on the given ports (0: a free one, which the server logs).
 */
export function loopbackFlags(port: number = 0, metricsPort: number = 0): string[] {
  return [
    ...["--bind-address", "127.0.0.1", "--port", String(port)],
    ...["--metrics-bind-address", "127.0.0.1", "--metrics-port", String(metricsPort)],
  ];
}
