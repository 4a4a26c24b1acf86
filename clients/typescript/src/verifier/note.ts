// C2SP signed-note (c2sp.org/signed-note) with Ed25519 log keys (type 0x01)
// and tlog-cosignature/v1 witness keys (type 0x04, c2sp.org/tlog-cosignature),
// written from the specifications. node:crypto does the Ed25519 arithmetic.
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { concatBytes, decodeBase64, encodeBase64 } from "./encoding.js";
import { VerificationError } from "./merkle.js";

export const KEY_TYPE_ED25519 = 0x01;
export const KEY_TYPE_COSIGNATURE_V1 = 0x04;

const SIG_PREFIX = "\u2014 "; // em dash and a space
const MAX_SIGNATURES = 100;
const ED25519_SIG_SIZE = 64;
const TIMESTAMP_SIZE = 8;
// PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410), so node:crypto can load it.
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** A key name: non-empty UTF-8 without whitespace or '+'. */
export function isValidKeyName(name: string): boolean {
  // \s and U+0085 together cover Go's unicode.IsSpace, which signed-note implementations use.
  return name.length > 0 && !/[\s\u0085+]/u.test(name) && name.isWellFormed();
}

/** Key id: the first 4 bytes of SHA-256(name || 0x0A || type || public key), as a big-endian uint32. */
export function keyId(name: string, type: number, publicKey: Uint8Array): number {
  const h = createHash("sha256")
    .update(Buffer.from(name, "utf8"))
    .update(Uint8Array.of(0x0a, type))
    .update(publicKey)
    .digest();
  return h.readUInt32BE(0);
}

function keyIdHex(id: number): string {
  return id.toString(16).padStart(8, "0");
}

function ed25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") }, format: "jwk" });
}

/** The message a type-0x04 witness signs: `cosignature/v1\ntime <t>\n` then the note text. */
export function cosignatureMessage(text: string, timestamp: bigint): Uint8Array {
  return Buffer.from(`cosignature/v1\ntime ${timestamp}\n${text}`, "utf8");
}

/** A verifier key parsed from `<name>+<hex key id>+<base64(type || public key)>`. */
export class VerifierKey {
  readonly #key: KeyObject;

  private constructor(
    readonly name: string,
    readonly id: number,
    readonly type: number,
    readonly publicKey: Uint8Array,
  ) {
    this.#key = ed25519PublicKey(publicKey);
  }

  static parse(text: string): VerifierKey {
    // Split at the first two '+' only: base64 may contain '+'.
    const first = text.indexOf("+");
    const second = first < 0 ? -1 : text.indexOf("+", first + 1);
    if (second < 0) throw new VerificationError("verifier key is not name+id+key");
    const name = text.slice(0, first);
    const idHex = text.slice(first + 1, second);
    const keyB64 = text.slice(second + 1);
    if (!isValidKeyName(name)) throw new VerificationError("verifier key has an invalid name");
    if (!/^[0-9a-f]{8}$/.test(idHex)) throw new VerificationError("verifier key id is not 8 lowercase hex digits");
    const key = decodeBase64(keyB64, "verifier key");
    if (key.length !== 33) throw new VerificationError("verifier key is not a type byte and a 32-byte Ed25519 key");
    const type = key[0]!;
    if (type !== KEY_TYPE_ED25519 && type !== KEY_TYPE_COSIGNATURE_V1) {
      throw new VerificationError(`verifier key type 0x${type.toString(16).padStart(2, "0")} is not supported`);
    }
    const publicKey = key.slice(1);
    const id = Number.parseInt(idHex, 16);
    if (keyId(name, type, publicKey) !== id) throw new VerificationError("verifier key id does not match the key");
    return new VerifierKey(name, id, type, publicKey);
  }

  /** The key as verifier-key text. */
  toString(): string {
    return `${this.name}+${keyIdHex(this.id)}+${encodeBase64(concatBytes(Uint8Array.of(this.type), this.publicKey))}`;
  }

  /**
   * Checks a signature (the bytes after the key id) over the note text. For a
   * cosignature key returns the signed timestamp; throws on a bad signature.
   */
  verify(text: string, sig: Uint8Array): { timestamp?: bigint } {
    if (this.type === KEY_TYPE_ED25519) {
      if (sig.length !== ED25519_SIG_SIZE || !verify(null, Buffer.from(text, "utf8"), this.#key, sig)) {
        throw new VerificationError(`signature by ${this.name} does not verify`);
      }
      return {};
    }
    if (sig.length !== TIMESTAMP_SIZE + ED25519_SIG_SIZE) {
      throw new VerificationError(`cosignature by ${this.name} has the wrong length`);
    }
    const timestamp = Buffer.from(sig.subarray(0, TIMESTAMP_SIZE)).readBigUInt64BE(0);
    if (!verify(null, cosignatureMessage(text, timestamp), this.#key, sig.subarray(TIMESTAMP_SIZE))) {
      throw new VerificationError(`cosignature by ${this.name} does not verify`);
    }
    return { timestamp };
  }
}

/** A signing key made from a 32-byte Ed25519 seed; cosigners sign with a timestamp. */
export class NoteSigner {
  readonly #key: KeyObject;
  readonly verifierKey: VerifierKey;

  constructor(
    readonly name: string,
    seed: Uint8Array,
    readonly type: number = KEY_TYPE_ED25519,
  ) {
    if (seed.length !== 32) throw new VerificationError("an Ed25519 seed is 32 bytes");
    this.#key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" });
    const x = createPublicKey(this.#key).export({ format: "jwk" }).x!;
    const publicKey = new Uint8Array(Buffer.from(x, "base64url"));
    this.verifierKey = VerifierKey.parse(
      `${name}+${keyIdHex(keyId(name, type, publicKey))}+${encodeBase64(concatBytes(Uint8Array.of(type), publicKey))}`,
    );
  }

  /** The signature line for text (without the leading em dash). */
  signatureLine(text: string, timestamp?: bigint): string {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(this.verifierKey.id);
    let body: Uint8Array;
    if (this.type === KEY_TYPE_COSIGNATURE_V1) {
      if (timestamp === undefined) throw new VerificationError("a cosignature needs a timestamp");
      const ts = Buffer.alloc(8);
      ts.writeBigUInt64BE(timestamp);
      body = concatBytes(ts, sign(null, cosignatureMessage(text, timestamp), this.#key));
    } else {
      body = sign(null, Buffer.from(text, "utf8"), this.#key);
    }
    return `${this.name} ${encodeBase64(concatBytes(id, body))}`;
  }
}

/** Signs text (which must end in a newline) with each signer, in order. */
export function signNote(text: string, signers: { signer: NoteSigner; timestamp?: bigint }[]): string {
  if (!text.endsWith("\n")) throw new VerificationError("note text must end with a newline");
  return `${text}\n${signers.map(({ signer, timestamp }) => `${SIG_PREFIX}${signer.signatureLine(text, timestamp)}\n`).join("")}`;
}

export interface NoteSignature {
  name: string;
  keyId: number;
  /** The key type of a verified signature. */
  type?: number;
  /** The cosigned time (seconds since the epoch) of a verified cosignature. */
  timestamp?: bigint;
}

export interface OpenedNote {
  text: string;
  /** Signatures by known keys, each verified. */
  verified: NoteSignature[];
  /** Signature lines by keys not given, ignored. */
  unverified: NoteSignature[];
}

/**
 * Parses a signed note and checks every signature made by one of keys: a
 * known key's signature that fails rejects the note; unknown signers are
 * returned as unverified. Throws VerificationError when malformed or when no
 * known key signed.
 */
export function openNote(note: string, keys: VerifierKey[]): OpenedNote {
  // No ASCII control characters but newline, and well-formed UTF-8 (a JS
  // string from bytes decodes bad UTF-8 to U+FFFD, refused below by the caller
  // that decodes; here unpaired surrogates are refused).
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note) || !note.isWellFormed()) {
    throw new VerificationError("malformed note: control characters");
  }
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new VerificationError("malformed note: no blank line before the signatures");
  const text = note.slice(0, split + 1);
  let sigs = note.slice(split + 2);
  if (sigs.length === 0 || !sigs.endsWith("\n")) throw new VerificationError("malformed note: no signatures");
  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seenVerified = new Set<string>();
  const seenUnverified = new Set<string>();
  let count = 0;
  while (sigs.length > 0) {
    const nl = sigs.indexOf("\n");
    let line = sigs.slice(0, nl);
    sigs = sigs.slice(nl + 1);
    if (!line.startsWith(SIG_PREFIX)) throw new VerificationError("malformed note: signature line without em dash");
    line = line.slice(SIG_PREFIX.length);
    const space = line.indexOf(" ");
    if (space < 0) throw new VerificationError("malformed note: signature line without a signature");
    const name = line.slice(0, space);
    const b64 = line.slice(space + 1);
    if (!isValidKeyName(name) || b64 === "") throw new VerificationError("malformed note: bad signature line");
    const raw = decodeBase64(b64, "signature");
    if (raw.length < 5) throw new VerificationError("malformed note: signature too short");
    if (++count > MAX_SIGNATURES) throw new VerificationError("malformed note: too many signatures");
    const id = Buffer.from(raw.subarray(0, 4)).readUInt32BE(0);
    const key = keys.find((k) => k.name === name && k.id === id);
    if (!key) {
      if (!seenUnverified.has(line)) unverified.push({ name, keyId: id });
      seenUnverified.add(line);
      continue;
    }
    const tag = `${name}+${id}`;
    if (seenVerified.has(tag)) continue;
    seenVerified.add(tag);
    const { timestamp } = key.verify(text, raw.subarray(4));
    verified.push({ name, keyId: id, type: key.type, ...(timestamp !== undefined ? { timestamp } : {}) });
  }
  if (verified.length === 0) throw new VerificationError("no known key signed the note");
  return { text, verified, unverified };
}
