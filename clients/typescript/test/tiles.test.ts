// The tile reader over real HTTP: a node:http server serves the tiles of the
// vectors' 1,000-entry tree (entry i is `entry i`), and the root recomputed
// from them must be the root signed in c2sp/notes.json.
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  encodeBase64,
  encodeEntryBundle,
  entriesPath,
  leafHash,
  rootFromLeafHashes,
  TILE_WIDTH,
  TileFetcher,
  tilePath,
  VerificationError,
} from "../src/verifier/index.js";
import { testdataDir } from "./env.js";

const SIZE = 1000;
const TOKEN = "auditor-token";

describe("tiles over HTTP", () => {
  const notes = JSON.parse(readFileSync(join(testdataDir(), "c2sp", "notes.json"), "utf8")) as {
    want_valid: boolean;
    want?: { root_b64: string; size: number };
  }[];
  const signedRoot = notes.find((n) => n.want_valid)!.want!.root_b64;
  const entries = Array.from({ length: SIZE }, (_, i) => new Uint8Array(Buffer.from(`entry ${i}`)));
  const leaves = entries.map(leafHash);
  const files = new Map<string, Uint8Array>();
  let corrupt: string | undefined;
  let oversize: string | undefined;
  let server: Server;
  let baseUrl = "";

  before(async () => {
    // Level 0: leaf hashes; level 1: roots of 256-leaf subtrees.
    for (let n = 0; n * TILE_WIDTH < SIZE; n++) {
      const chunk = leaves.slice(n * TILE_WIDTH, (n + 1) * TILE_WIDTH);
      files.set(tilePath(0, n, SIZE), Buffer.concat(chunk));
      files.set(entriesPath(n, SIZE), encodeEntryBundle(entries.slice(n * TILE_WIDTH, (n + 1) * TILE_WIDTH)));
    }
    const level1 = [];
    for (let k = 0; (k + 1) * TILE_WIDTH <= SIZE; k++) level1.push(rootFromLeafHashes(leaves.slice(k * 256, k * 256 + 256)));
    files.set(tilePath(1, 0, SIZE), Buffer.concat(level1));
    server = createServer((req, res) => {
      const path = (req.url ?? "").slice(1);
      if (path.startsWith("tile/entries/") && req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401).end();
        return;
      }
      const body = files.get(path);
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      let out = Buffer.from(body);
      if (path === corrupt) out[out.length - 1]! ^= 1;
      if (path === oversize) out = Buffer.concat([out, out]);
      res.writeHead(200).end(out);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test("the tile paths of a 1000-entry tree", () => {
    assert.deepEqual([...files.keys()].filter((p) => !p.includes("entries")).sort(), [
      "tile/0/000",
      "tile/0/001",
      "tile/0/002",
      "tile/0/003.p/232",
      "tile/1/000.p/3",
    ]);
  });

  test("the root recomputed from hash tiles and entry bundles is the signed root", async () => {
    const tiles = new TileFetcher({ baseUrl, token: TOKEN });
    assert.equal(encodeBase64(await tiles.recomputeRoot(SIZE, { entries: true })), signedRoot);
  });

  test("a corrupted tile or bundle is rejected", async () => {
    const tiles = new TileFetcher({ baseUrl, token: TOKEN });
    try {
      for (const path of ["tile/1/000.p/3", entriesPath(3, SIZE)]) {
        corrupt = path;
        await assert.rejects(tiles.recomputeRoot(SIZE, { entries: true }), VerificationError, path);
      }
      // A leaf tile under a level-1 hash disagrees with it.
      corrupt = "tile/0/002";
      await assert.rejects(tiles.recomputeRoot(SIZE), VerificationError);
      // The partial leaf tile has no hash above it: the root comes out different.
      corrupt = "tile/0/003.p/232";
      assert.notEqual(encodeBase64(await tiles.recomputeRoot(SIZE)), signedRoot);
    } finally {
      corrupt = undefined;
    }
  });

  test("a tile larger than a full tile is refused before it is read whole", async () => {
    oversize = "tile/0/000";
    try {
      await assert.rejects(new TileFetcher({ baseUrl }).hashTile(0, 0, SIZE), /more than 8192 bytes/);
    } finally {
      oversize = undefined;
    }
  });

  test("a token is never sent over plaintext off loopback", () => {
    assert.throws(() => new TileFetcher({ baseUrl: "http://quis.example", token: TOKEN }), /plaintext/);
    new TileFetcher({ baseUrl: "http://quis.example" });
    new TileFetcher({ baseUrl: "https://quis.example", token: TOKEN });
  });

  test("entry bundles need the token", async () => {
    await assert.rejects(new TileFetcher({ baseUrl }).entryBundle(0, SIZE), /HTTP 401/);
  });
});
