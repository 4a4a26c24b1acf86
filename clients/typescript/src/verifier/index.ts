// The independent ledger verifier: nothing here trusts Quis or shares its code.
export * from "./merkle.js";
export * from "./encoding.js";
export * from "./note.js";
export * from "./checkpoint.js";
export * from "./tiles.js";
