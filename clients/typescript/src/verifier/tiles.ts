// C2SP tlog-tiles (c2sp.org/tlog-tiles): tile paths, entry bundles, and
// fetching hash tiles over HTTP to recompute a checkpoint's root.
import { isIP } from "node:net";
import { HASH_SIZE, leafHash, rootFromLeafHashes, VerificationError, equalBytes } from "./merkle.js";

export const TILE_WIDTH = 256;
/** A checkpoint with many cosignatures is still a few kilobytes; anything near this is hostile. */
const MAX_CHECKPOINT_BYTES = 64 * 1024;
/** 256 entries of at most 65,535 bytes, each with its 2-byte length. */
const MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + 0xffff);

/** N in 3-digit groups, all but the last prefixed with `x`: 1234067 -> x001/x234/067. */
export function tileIndexPath(index: bigint | number): string {
  let n = BigInt(index);
  if (n < 0n) throw new VerificationError("negative tile index");
  const groups: string[] = [];
  do {
    groups.unshift((n % 1000n).toString().padStart(3, "0"));
    n /= 1000n;
  } while (n > 0n);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join("/");
}

/**
 * The path of the hash tile at level and index for a tree of treeSize:
 * `tile/<L>/<N>` for a full tile, `tile/<L>/<N>.p/<W>` for a partial one.
 */
export function tilePath(level: number, index: bigint | number, treeSize: bigint | number): string {
  const width = tileWidth(level, index, treeSize);
  const base = `tile/${level}/${tileIndexPath(index)}`;
  return width === TILE_WIDTH ? base : `${base}.p/${width}`;
}

/** `tile/entries/<N>[.p/<W>]` for the entry bundle of leaves 256N.. in a tree of treeSize. */
export function entriesPath(index: bigint | number, treeSize: bigint | number): string {
  const width = tileWidth(0, index, treeSize);
  const base = `tile/entries/${tileIndexPath(index)}`;
  return width === TILE_WIDTH ? base : `${base}.p/${width}`;
}

/** How many hashes the tile holds in a tree of treeSize (1..256); throws when it holds none. */
export function tileWidth(level: number, index: bigint | number, treeSize: bigint | number): number {
  if (!Number.isInteger(level) || level < 0 || level > 63) throw new VerificationError("tile level out of range");
  // Nodes at tile level L are subtrees of 256^L leaves.
  const nodes = BigInt(treeSize) >> BigInt(8 * level);
  const start = BigInt(index) * BigInt(TILE_WIDTH);
  if (nodes <= start) throw new VerificationError("tile is beyond the tree");
  const w = nodes - start;
  return w >= BigInt(TILE_WIDTH) ? TILE_WIDTH : Number(w);
}

/** Splits an entry bundle: each entry is prefixed by its big-endian uint16 length. */
export function parseEntryBundle(bundle: Uint8Array): Uint8Array[] {
  const entries: Uint8Array[] = [];
  let off = 0;
  while (off < bundle.length) {
    if (off + 2 > bundle.length) throw new VerificationError("entry bundle truncated in a length");
    const len = (bundle[off]! << 8) | bundle[off + 1]!;
    off += 2;
    if (off + len > bundle.length) throw new VerificationError("entry bundle truncated in an entry");
    entries.push(bundle.slice(off, off + len));
    off += len;
  }
  return entries;
}

/** Builds an entry bundle from entries (each at most 65535 bytes). */
export function encodeEntryBundle(entries: Uint8Array[]): Uint8Array {
  const out: number[] = [];
  for (const e of entries) {
    if (e.length > 0xffff) throw new VerificationError("entry longer than 65535 bytes");
    out.push(e.length >> 8, e.length & 0xff, ...e);
  }
  return Uint8Array.from(out);
}

export interface TileFetcherOptions {
  /** Base URL of the log's tiles, e.g. http://127.0.0.1:8443 (paths `/checkpoint`, `/tile/...` are appended). */
  baseUrl: string;
  /** Bearer token, needed for entry bundles (hash tiles and the checkpoint are public). */
  token?: string;
  fetch?: typeof fetch;
}

/** Reads `/checkpoint` and tiles over HTTP. */
export class TileFetcher {
  readonly #base: string;
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: TileFetcherOptions) {
    const url = new URL(options.baseUrl);
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const loopback = host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
    if (options.token && url.protocol !== "https:" && !loopback) {
      // A bearer token must not cross a network in the clear.
      throw new TypeError(`refusing to send a token over plaintext HTTP to ${url.hostname}`);
    }
    this.#base = options.baseUrl.replace(/\/+$/, "");
    this.#token = options.token;
    this.#fetch = options.fetch ?? fetch;
  }

  /** GET base/path; refuses a non-2xx status and a body over maxBytes (read no further). */
  async #get(path: string, withToken: boolean, maxBytes: number): Promise<Uint8Array> {
    const headers: Record<string, string> = {};
    if (withToken && this.#token) headers["authorization"] = `Bearer ${this.#token}`;
    const res = await this.#fetch(`${this.#base}/${path}`, { headers, redirect: "error" });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`GET /${path}: HTTP ${res.status}`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    const reader = res.body?.getReader();
    for (let r = await reader?.read(); r && !r.done; r = await reader!.read()) {
      total += r.value.length;
      if (total > maxBytes) {
        await reader!.cancel();
        throw new VerificationError(`GET /${path}: more than ${maxBytes} bytes`);
      }
      chunks.push(r.value);
    }
    return new Uint8Array(Buffer.concat(chunks));
  }

  /** The signed checkpoint note as served; verify it with verifyCheckpoint. */
  async checkpoint(): Promise<string> {
    const bytes = await this.#get("checkpoint", false, MAX_CHECKPOINT_BYTES);
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  }

  /** The hashes of a hash tile, checked to be exactly as many as the tree of treeSize holds. */
  async hashTile(level: number, index: bigint | number, treeSize: bigint | number): Promise<Uint8Array[]> {
    const width = tileWidth(level, index, treeSize);
    const data = await this.#get(tilePath(level, index, treeSize), false, TILE_WIDTH * HASH_SIZE);
    if (data.length !== width * HASH_SIZE) {
      throw new VerificationError(`tile ${level}/${index} has ${data.length} bytes, want ${width * HASH_SIZE}`);
    }
    const hashes: Uint8Array[] = [];
    for (let i = 0; i < width; i++) hashes.push(data.slice(i * HASH_SIZE, (i + 1) * HASH_SIZE));
    return hashes;
  }

  /** The entries of an entry bundle (needs a token with the auditor or investigator role). */
  async entryBundle(index: bigint | number, treeSize: bigint | number): Promise<Uint8Array[]> {
    const width = tileWidth(0, index, treeSize);
    const entries = parseEntryBundle(await this.#get(entriesPath(index, treeSize), true, MAX_BUNDLE_BYTES));
    if (entries.length !== width) throw new VerificationError(`entry bundle ${index} has ${entries.length} entries, want ${width}`);
    return entries;
  }

  /** Every leaf hash of the tree of treeSize, from the level-0 hash tiles. */
  async leafHashes(treeSize: bigint | number): Promise<Uint8Array[]> {
    const size = BigInt(treeSize);
    const leaves: Uint8Array[] = [];
    for (let n = 0n; n * BigInt(TILE_WIDTH) < size; n++) leaves.push(...(await this.hashTile(0, n, size)));
    return leaves;
  }

  /**
   * Recomputes the root of the tree of treeSize from the level-0 hash tiles,
   * and checks every hash of the upper-level tiles against the subtree it
   * stands for; with entries, also checks every leaf hash against the entry
   * bundles (which needs a token).
   */
  async recomputeRoot(treeSize: bigint | number, options: { entries?: boolean } = {}): Promise<Uint8Array> {
    const size = BigInt(treeSize);
    const leaves = await this.leafHashes(size);
    for (let level = 1; size >> BigInt(8 * level) > 0n; level++) {
      const span = TILE_WIDTH ** level;
      for (let n = 0n; n * BigInt(TILE_WIDTH) < size >> BigInt(8 * level); n++) {
        const hashes = await this.hashTile(level, n, size);
        hashes.forEach((h, k) => {
          const first = (Number(n) * TILE_WIDTH + k) * span;
          if (!equalBytes(h, rootFromLeafHashes(leaves.slice(first, first + span)))) {
            throw new VerificationError(`tile ${level}/${n} hash ${k} does not match the leaves below it`);
          }
        });
      }
    }
    if (options.entries) {
      for (let n = 0n; n * BigInt(TILE_WIDTH) < size; n++) {
        const bundle = await this.entryBundle(n, size);
        bundle.forEach((entry, i) => {
          const at = Number(n) * TILE_WIDTH + i;
          if (!equalBytes(leafHash(entry), leaves[at]!)) throw new VerificationError(`entry ${at} does not match its tile hash`);
        });
      }
    }
    return rootFromLeafHashes(leaves);
  }
}
