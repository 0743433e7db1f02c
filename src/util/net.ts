import { createServer } from "node:net";

/**
 * A TCP port on 127.0.0.1 that nobody listens on now (the OS picks it). Another
 * process may still take it before the caller binds it: where that matters,
 * bind port 0 instead and read the port back.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
