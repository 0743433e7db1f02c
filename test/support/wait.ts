/**
 * Poll `check` until it returns something other than `undefined` or `false`,
 * and resolve with that; after `timeoutMs` reject with an error naming `what`.
 * An error thrown by `check` ends the wait with that error.
 *
 * @example
 * await waitFor("the job to end", async () => (await node.job(id))?.state !== "running", 20_000);
 * const pid = await waitFor("the sandbox's process", async () => (await hostProcesses("sleep\u0000316"))[0]);
 */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  everyMs = 10,
): Promise<Exclude<T, undefined | false>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v as Exclude<T, undefined | false>;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}
