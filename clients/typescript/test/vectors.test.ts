// Every vector in $QUIS_TESTDATA (rfc6962 and c2sp): valid ones accepted,
// invalid ones rejected, valid notes reproduced byte for byte from the seeds.
import { strict as assert } from "node:assert";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import {
  decodeBase64,
  encodeBase64,
  encodeEntryBundle,
  fromHex,
  keyId,
  KEY_TYPE_COSIGNATURE_V1,
  leafHash,
  NoteSigner,
  openNote,
  parseEntryBundle,
  rootFromLeafHashes,
  tileIndexPath,
  tilePath,
  toHex,
  verifyCheckpoint,
  verifyConsistency,
  verifyInclusion,
  VerifierKey,
  VerificationError,
} from "../src/verifier/index.js";
import { testdataDir } from "./env.js";

const root = testdataDir();

function jsonFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((name) => {
      const p = join(dir, name);
      return statSync(p).isDirectory() ? jsonFiles(p) : name.endsWith(".json") ? [p] : [];
    })
    .sort();
}

// The RFC 6962 vectors are Go JSON: []byte as base64, nil as null.
const b = (s: string | null): Uint8Array => (s === null ? new Uint8Array() : new Uint8Array(Buffer.from(s, "base64")));
const proofOf = (p: (string | null)[] | null): Uint8Array[] => (p ?? []).map(b);

describe("rfc6962 inclusion vectors", () => {
  const files = jsonFiles(join(root, "rfc6962", "inclusion"));
  test("there are inclusion vectors", () => assert.ok(files.length > 50, `${files.length} files`));
  for (const f of files) {
    const v = JSON.parse(readFileSync(f, "utf8"));
    test(relative(root, f), () => {
      const run = () => verifyInclusion(b(v.leafHash), v.leafIdx, v.treeSize, proofOf(v.proof), b(v.root));
      if (v.wantErr) assert.throws(run, VerificationError);
      else run();
    });
  }
});

describe("rfc6962 consistency vectors", () => {
  const files = jsonFiles(join(root, "rfc6962", "consistency"));
  test("there are consistency vectors", () => assert.ok(files.length > 50, `${files.length} files`));
  for (const f of files) {
    const v = JSON.parse(readFileSync(f, "utf8"));
    test(relative(root, f), () => {
      const run = () => verifyConsistency(v.size1, v.size2, proofOf(v.proof), b(v.root1), b(v.root2));
      if (v.wantErr) assert.throws(run, VerificationError);
      else run();
    });
  }
});

interface KeyVector {
  name: string;
  type: number;
  seed_hex: string;
  public_hex: string;
  key_id_hex: string;
  vkey: string;
}

describe("c2sp keys", () => {
  const { keys, spec_example_vkey } = JSON.parse(readFileSync(join(root, "c2sp", "keys.json"), "utf8")) as {
    keys: KeyVector[];
    spec_example_vkey: string;
  };
  for (const k of keys) {
    test(`${k.name} ${k.key_id_hex}`, () => {
      const signer = new NoteSigner(k.name, fromHex(k.seed_hex, "seed"), k.type);
      assert.equal(toHex(signer.verifierKey.publicKey), k.public_hex);
      assert.equal(keyId(k.name, k.type, fromHex(k.public_hex, "key")).toString(16).padStart(8, "0"), k.key_id_hex);
      assert.equal(signer.verifierKey.toString(), k.vkey);
      const parsed = VerifierKey.parse(k.vkey);
      assert.equal(parsed.type, k.type);
      assert.equal(parsed.toString(), k.vkey);
    });
  }
  test("signed-note specification example key", () => {
    const key = VerifierKey.parse(spec_example_vkey);
    assert.equal(key.name, "example.com/foo");
    assert.equal(key.id, 0x530d903a);
  });
  test("malformed verifier keys are refused", () => {
    const good = keys[0]!.vkey;
    const [name, id, key] = good.split("+") as [string, string, string];
    for (const bad of [
      `${name}+${id}`,
      `${name}+${id}+${key}+`,
      `+${id}+${key}`,
      `${name} x+${id}+${key}`,
      `${name}+${id.toUpperCase()}+${key}`,
      `${name}+00000000+${key}`,
      `${name}+${id}+${key.slice(0, -1)}`,
      `${name}x+${id}+${key}`,
      `${name}+${id}+${encodeBase64(Uint8Array.of(2, ...decodeBase64(key, "k").slice(1)))}`,
    ]) {
      assert.throws(() => VerifierKey.parse(bad), VerificationError, bad);
    }
  });
});

interface NoteVector {
  desc: string;
  note: string;
  log_vkeys: string[];
  witness_vkeys: string[];
  want_valid: boolean;
  why_invalid?: string;
  want?: { origin: string; size: number; root_b64: string; cosigners: Record<string, number> };
}

describe("c2sp notes", () => {
  const notes = JSON.parse(readFileSync(join(root, "c2sp", "notes.json"), "utf8")) as NoteVector[];
  const { keys } = JSON.parse(readFileSync(join(root, "c2sp", "keys.json"), "utf8")) as { keys: KeyVector[] };
  const signers = new Map(
    keys.map((k) => {
      const s = new NoteSigner(k.name, fromHex(k.seed_hex, "seed"), k.type);
      return [s.verifierKey.toString(), s];
    }),
  );
  test("there are valid and invalid notes", () => {
    assert.ok(notes.some((n) => n.want_valid) && notes.some((n) => !n.want_valid));
  });
  for (const n of notes) {
    test(`${n.want_valid ? "valid" : "invalid"}: ${n.desc}`, () => {
      const run = () => verifyCheckpoint(n.note, { logKeys: n.log_vkeys, witnessKeys: n.witness_vkeys });
      if (!n.want_valid) {
        assert.throws(run, VerificationError);
        return;
      }
      const cp = run();
      const want = n.want!;
      assert.equal(cp.origin, want.origin);
      assert.equal(cp.size, BigInt(want.size));
      assert.equal(encodeBase64(cp.root), want.root_b64);
      assert.deepEqual(
        Object.fromEntries([...cp.cosigners].map(([k, v]) => [k, Number(v)])),
        want.cosigners,
      );
      // Reproduce the note from the seeds: every signature line by a key in
      // keys.json re-signed must be byte-identical (Ed25519 is deterministic).
      const opened = openNote(n.note, [...signers.values()].map((s) => s.verifierKey));
      assert.equal(opened.unverified.length, 0);
      const lines = n.note.slice(opened.text.length + 1).split("\n").slice(0, -1);
      const resigned = opened.verified.map((s) => {
        const signer = [...signers.values()].find(
          (x) => x.verifierKey.name === s.name && x.verifierKey.id === s.keyId,
        )!;
        return { signer, ...(s.type === KEY_TYPE_COSIGNATURE_V1 ? { timestamp: s.timestamp! } : {}) };
      });
      const rebuilt = opened.text + "\n" + resigned.map((r) => `\u2014 ${r.signer.signatureLine(opened.text, r.timestamp)}\n`).join("");
      assert.equal(rebuilt, opened.text + "\n" + lines.map((l) => `${l}\n`).join(""));
    });
  }
  test("the valid notes' root is the tree of `entry 0` .. `entry 999`", () => {
    const leaves = Array.from({ length: 1000 }, (_, i) => leafHash(Buffer.from(`entry ${i}`)));
    const want = n0(notes).want!.root_b64;
    assert.equal(encodeBase64(rootFromLeafHashes(leaves)), want);
  });
  test("witness quorum is enforced", () => {
    const n = n0(notes);
    verifyCheckpoint(n.note, { logKeys: n.log_vkeys, witnessKeys: n.witness_vkeys, witnessQuorum: 2 });
    assert.throws(
      () => verifyCheckpoint(n.note, { logKeys: n.log_vkeys, witnessKeys: n.witness_vkeys, witnessQuorum: 3 }),
      VerificationError,
    );
    assert.throws(() => verifyCheckpoint(n.note, { logKeys: n.log_vkeys, witnessQuorum: 1 }), VerificationError);
  });
  test("a wrong expected origin is refused", () => {
    const n = n0(notes);
    assert.throws(() => verifyCheckpoint(n.note, { logKeys: n.log_vkeys, origin: "other.example/log" }), VerificationError);
  });
});

function n0(notes: NoteVector[]): NoteVector {
  return notes.find((n) => n.want_valid && Object.keys(n.want!.cosigners).length > 0)!;
}

describe("c2sp tiles", () => {
  const t = JSON.parse(readFileSync(join(root, "c2sp", "tiles.json"), "utf8")) as {
    tile_paths: { index: number; path: string }[];
    partial_examples: { tree_size: number; level: number; tile: number; path: string }[];
    entries_bundle_example: { entries_b64: string[]; bundle_b64: string };
  };
  for (const p of t.tile_paths) test(`tile index ${p.index}`, () => assert.equal(tileIndexPath(p.index), p.path));
  for (const p of t.partial_examples) {
    test(`tile ${p.level}/${p.tile} at size ${p.tree_size}`, () => assert.equal(tilePath(p.level, p.tile, p.tree_size), p.path));
  }
  test("entry bundle", () => {
    const entries = t.entries_bundle_example.entries_b64.map((e) => decodeBase64(e, "entry"));
    const bundle = decodeBase64(t.entries_bundle_example.bundle_b64, "bundle");
    assert.deepEqual(parseEntryBundle(bundle), entries);
    assert.deepEqual(encodeEntryBundle(entries), bundle);
    assert.throws(() => parseEntryBundle(bundle.slice(0, -1)), VerificationError);
  });
});
