// Test configuration from the environment scripts/clients-test.sh exports.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** $QUIS_TESTDATA, or the repository's copy of the shared vectors. */
export function testdataDir(): string {
  const dir = process.env["QUIS_TESTDATA"] || resolve(here, "../../../crates/tlog/tests/vectors");
  if (!existsSync(join(dir, "rfc6962")) || !existsSync(join(dir, "c2sp"))) {
    throw new Error(`no rfc6962 and c2sp vectors under ${dir}`);
  }
  return dir;
}

/** A required variable of the live suite. */
export function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}
