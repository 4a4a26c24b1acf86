// RFC 6962 / RFC 9162 Merkle tree hashing and proof verification, written from
// the RFC (section 2.1) and the algorithm of transparency-dev/merkle's
// proof.Verify*, independently of the Quis server code.
import { createHash } from "node:crypto";

export const HASH_SIZE = 32;

export class VerificationError extends Error {
  override name = "VerificationError";
}

function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** SHA-256(0x00 || entry): the hash of a leaf over the exact stored entry bytes. */
export function leafHash(entry: Uint8Array): Uint8Array {
  return sha256(Uint8Array.of(0), entry);
}

/** SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(Uint8Array.of(1), left, right);
}

/** The root of the empty tree: SHA-256 of nothing. */
export function emptyRoot(): Uint8Array {
  return sha256();
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function checkHash(h: Uint8Array, what: string): void {
  if (h.length !== HASH_SIZE) throw new VerificationError(`${what} is ${h.length} bytes, want ${HASH_SIZE}`);
}

function toU64(v: bigint | number, what: string): bigint {
  const b = BigInt(v);
  if (b < 0n || b >= 1n << 64n) throw new VerificationError(`${what} out of range`);
  return b;
}

function bitLength(x: bigint): number {
  let n = 0;
  while (x > 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

function onesCount(x: bigint): number {
  let n = 0;
  while (x > 0n) {
    n += Number(x & 1n);
    x >>= 1n;
  }
  return n;
}

function trailingZeros(x: bigint): number {
  let n = 0;
  while ((x & 1n) === 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

/** Splits an inclusion proof into the inner part (below the split) and the right border. */
function decompose(index: bigint, size: bigint): { inner: number; border: number } {
  const inner = bitLength(index ^ (size - 1n));
  const border = onesCount(index >> BigInt(inner));
  return { inner, border };
}

function chainInner(seed: Uint8Array, proof: Uint8Array[], index: bigint): Uint8Array {
  proof.forEach((h, i) => {
    seed = ((index >> BigInt(i)) & 1n) === 0n ? nodeHash(seed, h) : nodeHash(h, seed);
  });
  return seed;
}

function chainInnerRight(seed: Uint8Array, proof: Uint8Array[], index: bigint): Uint8Array {
  proof.forEach((h, i) => {
    if (((index >> BigInt(i)) & 1n) === 1n) seed = nodeHash(h, seed);
  });
  return seed;
}

function chainBorderRight(seed: Uint8Array, proof: Uint8Array[]): Uint8Array {
  for (const h of proof) seed = nodeHash(h, seed);
  return seed;
}

/** The root that an inclusion proof implies for a leaf hash at index in a tree of size. */
export function rootFromInclusionProof(
  leaf: Uint8Array,
  index: bigint | number,
  size: bigint | number,
  proof: Uint8Array[],
): Uint8Array {
  const i = toU64(index, "index");
  const n = toU64(size, "tree size");
  if (i >= n) throw new VerificationError(`index ${i} is not below tree size ${n}`);
  checkHash(leaf, "leaf hash");
  proof.forEach((h, k) => checkHash(h, `proof hash ${k}`));
  const { inner, border } = decompose(i, n);
  if (proof.length !== inner + border) {
    throw new VerificationError(`inclusion proof has ${proof.length} hashes, want ${inner + border}`);
  }
  return chainBorderRight(chainInner(leaf, proof.slice(0, inner), i), proof.slice(inner));
}

/** Throws VerificationError unless proof shows that leaf is at index in the tree of size with root. */
export function verifyInclusion(
  leaf: Uint8Array,
  index: bigint | number,
  size: bigint | number,
  proof: Uint8Array[],
  root: Uint8Array,
): void {
  checkHash(root, "root");
  const got = rootFromInclusionProof(leaf, index, size, proof);
  if (!equalBytes(got, root)) throw new VerificationError("inclusion proof does not lead to the root");
}

/** Throws VerificationError unless proof shows that the tree (size1, root1) is a prefix of (size2, root2). */
export function verifyConsistency(
  size1: bigint | number,
  size2: bigint | number,
  proof: Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): void {
  const n1 = toU64(size1, "size1");
  const n2 = toU64(size2, "size2");
  if (n2 < n1) throw new VerificationError(`size2 ${n2} is below size1 ${n1}`);
  if (n1 === 0n) throw new VerificationError("consistency with the empty tree proves nothing");
  if (n1 === n2) {
    if (proof.length !== 0) throw new VerificationError("equal sizes need an empty proof");
    if (!equalBytes(root1, root2)) throw new VerificationError("equal sizes with different roots");
    return;
  }
  checkHash(root1, "root1");
  checkHash(root2, "root2");
  proof.forEach((h, k) => checkHash(h, `proof hash ${k}`));
  if (proof.length === 0) throw new VerificationError("empty consistency proof");
  let { inner, border } = decompose(n1 - 1n, n2);
  const shift = trailingZeros(n1);
  inner -= shift;
  // When size1 is a power of two its root is a node of the larger tree and is
  // not repeated in the proof; otherwise the proof starts with that node.
  let seed = proof[0]!;
  let start = 1;
  if (n1 === 1n << BigInt(shift)) {
    seed = root1;
    start = 0;
  }
  if (proof.length !== start + inner + border) {
    throw new VerificationError(`consistency proof has ${proof.length} hashes, want ${start + inner + border}`);
  }
  const rest = proof.slice(start);
  const mask = (n1 - 1n) >> BigInt(shift);
  const innerPart = rest.slice(0, inner);
  const borderPart = rest.slice(inner);
  const hash1 = chainBorderRight(chainInnerRight(seed, innerPart, mask), borderPart);
  if (!equalBytes(hash1, root1)) throw new VerificationError("consistency proof does not lead to root1");
  const hash2 = chainBorderRight(chainInner(seed, innerPart, mask), borderPart);
  if (!equalBytes(hash2, root2)) throw new VerificationError("consistency proof does not lead to root2");
}

/** RFC 6962 Merkle Tree Hash of a list of leaf hashes (MTH over already-hashed leaves). */
export function rootFromLeafHashes(leaves: Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return emptyRoot();
  // Fold complete subtrees left to right, keeping a stack of (height, hash) like
  // a compact range, then merge the remaining stack right to left.
  const stack: { height: number; hash: Uint8Array }[] = [];
  for (const leaf of leaves) {
    checkHash(leaf, "leaf hash");
    let node = { height: 0, hash: leaf };
    while (stack.length > 0 && stack[stack.length - 1]!.height === node.height) {
      const left = stack.pop()!;
      node = { height: node.height + 1, hash: nodeHash(left.hash, node.hash) };
    }
    stack.push(node);
  }
  let hash = stack.pop()!.hash;
  while (stack.length > 0) hash = nodeHash(stack.pop()!.hash, hash);
  return hash;
}
