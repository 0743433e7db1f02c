import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { writeFileSync } from "node:fs";
import { builtinWorkflows } from "../plugins/index.ts";
import { type ClusterNodeOptions, startClusterNode } from "../src/cluster/node.ts";
import { ConfigError } from "../src/errors.ts";
import { silentLogger } from "../src/log.ts";
import { TEST_TIMINGS, waitJob } from "./support/cluster-nodes.ts";
import { waitFor } from "./support/wait.ts";
import { coralSeeds } from "./support/seeds.ts";
import { tempDir } from "./support/files.ts";
import { capturingLogger } from "./support/log.ts";
import { type NatsServer, natsServerMissing, startNatsServer } from "./support/nats-server.ts";

/**
 * How a node connects: NATS credentials from the config, against real
 * nats-servers that require them (user and password, a token, TLS with the
 * cluster's own CA), where refused credentials fail at once with a config
 * error naming the cause; and a node started before JetStream is up, which
 * waits for it.
 */

const missing = natsServerMissing() ?? (spawnSync(["openssl", "version"]).exitCode === 0 ? undefined : "openssl is not installed");
if (missing) console.warn(`cluster-connect: ${missing}; skipped`);
const tmp = tempDir("matrixd-auth-");
afterAll(() => tmp.remove());

/** A node on `servers` with `nats` settings runs a small job to its end. */
async function runsAJob(nats: ClusterNodeOptions["nats"]): Promise<void> {
  const node = await startClusterNode({ name: "auth", nats, workflows: builtinWorkflows, log: silentLogger, timings: TEST_TIMINGS, heartbeatMs: 500 });
  try {
    const { id } = await node.submit({ workflow: "coral-dummy", seeds: coralSeeds(20, "a") });
    const st = await waitJob(node, id, 30_000);
    expect([st.state, st.ok]).toEqual(["done", 20]);
  } finally {
    await node.close();
  }
}

async function refused(nats: ClusterNodeOptions["nats"]): Promise<Error> {
  const err = await startClusterNode({ name: "refused", nats, workflows: builtinWorkflows, log: silentLogger, timings: TEST_TIMINGS }).then(
    async (n) => {
      await n.close();
      throw new Error("a node with bad credentials started");
    },
    (e: Error) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return err;
}

/** A CA and a certificate for 127.0.0.1 signed by it. */
function makeCerts(): { ca: string; cert: string; key: string } {
  const p = (f: string) => tmp.path(f);
  const run = (args: string[]) => {
    const r = spawnSync(["openssl", ...args], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr.toString()}`);
  };
  run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=matrixd test CA"]);
  run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=127.0.0.1"]);
  writeFileSync(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  run(["x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("server.pem"), "-days", "2", "-extfile", p("ext.cnf")]);
  return { ca: p("ca.pem"), cert: p("server.pem"), key: p("server.key") };
}

describe.skipIf(missing !== undefined)("NATS credentials", () => {
  test("cluster - user and password, and a token: the right ones run a job, wrong or missing ones fail at once naming the refusal", async () => {
    const users = await startNatsServer({ args: ["--user", "mx", "--pass", "s3cret"] });
    const tokens = await startNatsServer({ args: ["--auth", "t0ken"] });
    try {
      await runsAJob({ servers: [users.url], user: "mx", pass: "s3cret" });
      await runsAJob({ servers: [tokens.url], token: "t0ken" });
      const wrong = await refused({ servers: [users.url], user: "mx", pass: "nope" });
      expect(wrong.message).toBe(`NATS at ${users.url} refused this node's credentials: Authorization Violation (nats.user/pass, nats.token, nats.creds or nats.tls in the config)`);
      await refused({ servers: [users.url] });
      // A credentials file that is missing or is not one is named at once, before any connection.
      expect((await refused({ servers: [users.url], creds: tmp.path("none.creds") })).message).toContain(`cannot read the NATS credentials file ${tmp.path("none.creds")}`);
      writeFileSync(tmp.path("bad.creds"), "user: mx\n");
      expect((await refused({ servers: [users.url], creds: tmp.path("bad.creds") })).message).toContain("is not a NATS credentials file");
      await refused({ servers: [tokens.url], token: "other" });
    } finally {
      await users.close();
      await tokens.close();
    }
  }, 60_000);

  test("cluster - TLS with the cluster's CA runs a job; without the CA the node fails at once naming the certificate", async () => {
    const certs = makeCerts();
    const srv = await startNatsServer({ args: ["--tls", "--tlscert", certs.cert, "--tlskey", certs.key] });
    try {
      await runsAJob({ servers: [srv.url], tls: { ca: certs.ca } });
      const err = await refused({ servers: [srv.url] });
      expect(err.message).toContain("cannot be reached over TLS as configured: unable to verify the first certificate");
    } finally {
      await srv.close();
    }
  }, 60_000);
});

describe.skipIf(missing !== undefined)("NATS not ready at start", () => {
  test("cluster - a node started while the server has no JetStream waits for it, then runs a job", async () => {
    // First a server without JetStream (a server still starting, or a cluster without a leader yet).
    const bare = await startNatsServer({ jetstream: false });
    let srv: NatsServer | undefined;
    try {
      const capture = capturingLogger("warn");
      let started = false;
      const starting = startClusterNode({ name: "early", nats: { servers: [bare.url] }, workflows: builtinWorkflows, log: capture.log, timings: TEST_TIMINGS, heartbeatMs: 500 }).then((n) => {
        started = true;
        return n;
      });
      const retries = () => capture.lines().filter((l) => /JetStream is not answering/.test(String(l.msg))).length;
      await waitFor("the node to report JetStream not answering, twice", () => retries() >= 2, 20_000);
      expect(started).toBe(false);
      await bare.close();
      // The same address: the node keeps trying the server it was given, so JetStream must come up there.
      srv = await startNatsServer({ port: bare.port });
      const node = await starting;
      try {
        const { id } = await node.submit({ workflow: "coral-dummy", seeds: coralSeeds(10, "e") });
        expect((await waitJob(node, id, 30_000)).ok).toBe(10);
      } finally {
        await node.close();
      }
    } finally {
      await bare.close();
      await srv?.close();
    }
  }, 60_000);
});
