// TLS to the gateway: a second `quis up` with TLS on (its development PKI from
// `quis init`), started from QUIS_BIN for this file only. Runs with the live suite.
import { Code } from "@connectrpc/connect";
import { strict as assert } from "node:assert";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test as nodeTest } from "node:test";
import { QuisClient, QuisError } from "../src/index.js";
import { need } from "./env.js";

const skip = process.env["QUIS_GATEWAY"] ? false : "QUIS_GATEWAY is not set";
const test = (name: string, fn: () => void | Promise<void>) => nodeTest(name, { skip }, fn);

describe("TLS", () => {
  let dir = "";
  let child: ChildProcess | undefined;
  let address = "";
  let token = "";
  let ca: Buffer;

  before(async () => {
    if (skip) return;
    const bin = need("QUIS_BIN");
    dir = mkdtempSync(join(tmpdir(), "quis-ts-tls-"));
    const data = join(dir, "data");
    // quis reads QUIS_* as configuration: pass none of the test's variables.
    const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("QUIS_")));
    execFileSync(bin, ["--data-dir", data, "init"], { env, stdio: "ignore" });
    token = execFileSync(bin, ["--data-dir", data, "token", "--sub", "tess", "--role", "caseworker", "--ttl", "10m"], {
      env,
      encoding: "utf8",
    }).trim();
    ca = readFileSync(join(data, "pki", "ca.crt"));
    child = spawn(bin, ["--data-dir", data, "up", "--port", "0", "--admin-port", "0"], {
      env: { ...env, QUIS_TLS__ENABLED: "true" },
      stdio: ["ignore", "pipe", "ignore"],
    });
    const lines = createInterface({ input: child.stdout! });
    address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("quis up with TLS did not start in 60 s")), 60_000);
      child!.once("exit", (code) => reject(new Error(`quis up with TLS exited with ${code}`)));
      lines.on("line", (line) => {
        const m = /^gateway listening on (\S+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
  });

  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("a call over TLS with the suite's CA succeeds", async () => {
    const quis = new QuisClient({ address: `https://${address}`, token, tls: { ca } });
    const res = await quis.echo.echo({ message: "over tls" });
    assert.equal(res.message, "over tls");
    assert.equal(res.principal, "tess");
  });

  test("a server certificate from an untrusted CA is refused", async () => {
    const quis = new QuisClient({ address: `https://${address}`, token, tls: {} });
    await assert.rejects(quis.echo.echo({ message: "x" }), (e: unknown) => {
      assert.ok(e instanceof QuisError);
      assert.notEqual(e.code, Code.Unimplemented);
      assert.match(e.message, /certificate/i);
      return true;
    });
  });

  test("plaintext to the TLS listener fails", async () => {
    const quis = new QuisClient({ address, token, defaultTimeoutMs: 5_000 });
    await assert.rejects(quis.echo.echo({ message: "x" }), QuisError);
  });
});
