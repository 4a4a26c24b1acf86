// C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the body of a signed note
// naming the log (origin), its size and its RFC 6962 root hash.
import { decodeBase64 } from "./encoding.js";
import { HASH_SIZE, VerificationError } from "./merkle.js";
import { KEY_TYPE_COSIGNATURE_V1, KEY_TYPE_ED25519, openNote, VerifierKey } from "./note.js";

export interface Checkpoint {
  origin: string;
  size: bigint;
  root: Uint8Array;
  /** Optional extension lines after the root, without their newlines. */
  extensions: string[];
  /** The exact note text (what was signed). */
  body: string;
}

export interface VerifiedCheckpoint extends Checkpoint {
  /** Names of the log keys whose signatures verified. */
  logSigners: string[];
  /** Witness name -> cosigned time (seconds), for each verified cosignature. */
  cosigners: Map<string, bigint>;
}

const MAX_U64 = (1n << 64n) - 1n;

/** Parses a checkpoint body (the note text, every line ending in a newline). */
export function parseCheckpoint(body: string): Checkpoint {
  if (!body.endsWith("\n")) throw new VerificationError("checkpoint does not end with a newline");
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3) throw new VerificationError("checkpoint has fewer than three lines");
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin === "") throw new VerificationError("checkpoint origin is empty");
  if (!/^(0|[1-9][0-9]{0,19})$/.test(sizeText) || BigInt(sizeText) > MAX_U64) {
    throw new VerificationError("checkpoint size is not a decimal uint64");
  }
  const root = decodeBase64(rootText, "checkpoint root");
  if (root.length !== HASH_SIZE) throw new VerificationError("checkpoint root is not 32 bytes");
  if (extensions.some((l) => l === "")) throw new VerificationError("checkpoint has an empty extension line");
  return { origin, size: BigInt(sizeText), root, extensions, body };
}

export interface CheckpointVerifyOptions {
  /** The log's verifier keys (type 0x01); one valid signature by any of them is required. */
  logKeys: (VerifierKey | string)[];
  /** Witness verifier keys (type 0x04). */
  witnessKeys?: (VerifierKey | string)[];
  /** Distinct witnesses that must have cosigned; default 0. */
  witnessQuorum?: number;
  /** The origin expected; by default the name of the log key. */
  origin?: string;
}

function keysOf(keys: (VerifierKey | string)[] | undefined, type: number, what: string): VerifierKey[] {
  return (keys ?? []).map((k) => {
    const key = typeof k === "string" ? VerifierKey.parse(k) : k;
    if (key.type !== type) throw new VerificationError(`${key.name} is not a ${what} key`);
    return key;
  });
}

/**
 * Verifies a signed checkpoint: well-formed note, at least one valid log
 * signature, every signature by a known key valid, the origin expected and
 * the witness quorum met. Signatures by unknown keys are ignored.
 */
export function verifyCheckpoint(note: string, options: CheckpointVerifyOptions): VerifiedCheckpoint {
  const logKeys = keysOf(options.logKeys, KEY_TYPE_ED25519, "log");
  const witnessKeys = keysOf(options.witnessKeys, KEY_TYPE_COSIGNATURE_V1, "witness");
  if (logKeys.length === 0) throw new VerificationError("no log key given");
  const opened = openNote(note, [...logKeys, ...witnessKeys]);
  const logSigners = opened.verified.filter((s) => s.type === KEY_TYPE_ED25519).map((s) => s.name);
  if (logSigners.length === 0) throw new VerificationError("no known log key signed the checkpoint");
  const checkpoint = parseCheckpoint(opened.text);
  const origins = new Set(options.origin !== undefined ? [options.origin] : logKeys.map((k) => k.name));
  if (!origins.has(checkpoint.origin)) {
    throw new VerificationError(`checkpoint origin ${JSON.stringify(checkpoint.origin)} is not the log's`);
  }
  const cosigners = new Map<string, bigint>();
  for (const s of opened.verified) {
    if (s.type === KEY_TYPE_COSIGNATURE_V1 && s.timestamp !== undefined) cosigners.set(s.name, s.timestamp);
  }
  const quorum = options.witnessQuorum ?? 0;
  if (cosigners.size < quorum) {
    throw new VerificationError(`checkpoint has ${cosigners.size} witness cosignatures, need ${quorum}`);
  }
  return { ...checkpoint, logSigners, cosigners };
}
