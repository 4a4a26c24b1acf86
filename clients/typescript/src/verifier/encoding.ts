// Strict encodings: the formats are signed, so only canonical text is accepted.
import { VerificationError } from "./merkle.js";

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64 with padding; anything non-canonical (whitespace, missing padding, stray bits) is refused. */
export function decodeBase64(text: string, what: string): Uint8Array {
  if (!BASE64.test(text)) throw new VerificationError(`${what} is not canonical base64`);
  const bytes = Buffer.from(text, "base64");
  if (bytes.toString("base64") !== text) throw new VerificationError(`${what} is not canonical base64`);
  return new Uint8Array(bytes);
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

export function fromHex(text: string, what: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/.test(text)) throw new VerificationError(`${what} is not lowercase hex`);
  return new Uint8Array(Buffer.from(text, "hex"));
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
