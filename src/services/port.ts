import { createServer } from "node:net";

/**
 * Whether a server could listen on `port` of 127.0.0.1 now (nobody holds
 * it, on that address or on all of them).
 *
 * @example
 * ```ts
 * if (!(await portFree(8000))) console.warn("port 8000 is taken");
 * ```
 */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => srv.close(() => resolve(true)));
  });
}
