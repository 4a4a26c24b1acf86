// LedgerService, with the proofs it serves checked by the independent verifier.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CallOptions, Client } from "@connectrpc/connect";
import type {
  AppendEventsResponse,
  EventDetailSchema,
  EventSchema,
  GetCheckpointResponse,
  GetConsistencyProofResponse,
  GetEventDetailResponse,
  GetEventDetailsResponse,
  GetInclusionProofResponse,
  LedgerService,
  StoredEntry,
} from "./gen/quis/ledger/v1/ledger_pb.js";
import { items } from "./paginate.js";
import {
  leafHash,
  verifyCheckpoint,
  verifyConsistency,
  verifyInclusion,
  VerificationError,
  type Checkpoint,
  type CheckpointVerifyOptions,
  type VerifiedCheckpoint,
} from "./verifier/index.js";

export class LedgerClient {
  constructor(readonly raw: Client<typeof LedgerService>) {}

  /** Appends events (service principals only) and returns their indices once durable. */
  append(
    events: MessageInitShape<typeof EventSchema>[],
    details: MessageInitShape<typeof EventDetailSchema>[] = [],
    options?: CallOptions,
  ): Promise<AppendEventsResponse> {
    return this.raw.appendEvents({ events, details }, options);
  }

  /** The latest signed checkpoint, unverified: see verifiedCheckpoint. */
  checkpoint(options?: CallOptions): Promise<GetCheckpointResponse> {
    return this.raw.getCheckpoint({}, options);
  }

  /** Entries [start, end) as stored and hashed, over all pages. */
  entries(start: bigint, end: bigint, pageSize = 0, options?: CallOptions): AsyncGenerator<StoredEntry, void, undefined> {
    return items(
      (req) => this.raw.getEntries(req, options),
      { startIndex: start, endIndex: end, pageSize, pageToken: "" },
      (p) => p.entries,
    );
  }

  /** The inclusion proof of index in the tree of treeSize (0: the latest checkpoint's size). */
  inclusionProof(index: bigint, treeSize = 0n, options?: CallOptions): Promise<GetInclusionProofResponse> {
    return this.raw.getInclusionProof({ index, treeSize }, options);
  }

  /** The consistency proof from fromSize to toSize (0: the latest checkpoint's size). */
  consistencyProof(fromSize: bigint, toSize = 0n, options?: CallOptions): Promise<GetConsistencyProofResponse> {
    return this.raw.getConsistencyProof({ fromSize, toSize }, options);
  }

  /** The value behind commitment `digest` of entry `entryIndex` (auditors and investigators; the read is logged). */
  eventDetail(entryIndex: bigint, digest: Uint8Array, options?: CallOptions): Promise<GetEventDetailResponse> {
    return this.raw.getEventDetail({ entryIndex, digest }, options);
  }

  /** The values behind up to 1000 [entryIndex, digest] commitments at once; erased ones are left out. */
  eventDetails(commitments: [bigint, Uint8Array][], options?: CallOptions): Promise<GetEventDetailsResponse> {
    const entryIndexes = commitments.map(([index]) => index);
    const digests = commitments.map(([, digest]) => digest);
    return this.raw.getEventDetails({ entryIndexes, digests }, options);
  }

  /**
   * Entries from startIndex on, then new ones as they are sequenced. Runs
   * without a deadline unless options set one; stop it with options.signal.
   */
  async *tail(startIndex: bigint, options: CallOptions = {}): AsyncGenerator<StoredEntry, void, undefined> {
    for await (const res of this.raw.tailEvents({ startIndex }, { timeoutMs: 0, ...options })) {
      if (res.entry) yield res.entry;
    }
  }

  /** The latest checkpoint, its signatures checked against trust (and its size against the response). */
  async verifiedCheckpoint(trust: CheckpointVerifyOptions, options?: CallOptions): Promise<VerifiedCheckpoint> {
    const res = await this.checkpoint(options);
    const cp = verifyCheckpoint(res.checkpoint, trust);
    if (cp.size !== res.treeSize) throw new VerificationError("tree_size differs from the signed checkpoint's");
    return cp;
  }

  /**
   * Proves that entry (its exact stored bytes) is in the tree of checkpoint,
   * which the caller has verified.
   */
  async proveInclusion(entry: StoredEntry, checkpoint: Checkpoint, options?: CallOptions): Promise<void> {
    const proof = await this.inclusionProof(entry.index, checkpoint.size, options);
    if (proof.index !== entry.index || proof.treeSize !== checkpoint.size) {
      throw new VerificationError("the proof is not for the index and size asked");
    }
    verifyInclusion(leafHash(entry.data), entry.index, checkpoint.size, proof.hashes, checkpoint.root);
  }

  /** Proves that older (verified) is a prefix of newer (verified). */
  async proveConsistency(older: Checkpoint, newer: Checkpoint, options?: CallOptions): Promise<void> {
    if (older.origin !== newer.origin) throw new VerificationError("checkpoints of different logs");
    const proof = await this.consistencyProof(older.size, newer.size, options);
    if (proof.fromSize !== older.size || proof.toSize !== newer.size) {
      throw new VerificationError("the proof is not for the sizes asked");
    }
    verifyConsistency(older.size, newer.size, proof.hashes, older.root, newer.root);
  }
}
