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
