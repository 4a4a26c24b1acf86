"""Why a note, checkpoint or proof was rejected."""


class VerificationError(Exception):
    """Base class: the input does not verify. Never treat a caught one as success."""


class MalformedNote(VerificationError):
    """The signed note does not follow c2sp.org/signed-note."""


class MalformedKey(VerificationError):
    """A verifier key is not `<name>+<hex key id>+<base64(type || key)>` with a matching id."""


class MalformedCheckpoint(VerificationError):
    """The note text is not a c2sp.org/tlog-checkpoint body (or names another origin)."""


class BadSignature(VerificationError):
    """A signature line from a known key does not verify (log signature)."""


class BadCosignature(BadSignature):
    """A cosignature line from a known witness key does not verify."""


class NoKnownSignature(VerificationError):
    """No known log key signed the note."""


class QuorumNotMet(VerificationError):
    """Fewer known witnesses cosigned the checkpoint than the quorum requires."""


class ProofError(VerificationError):
    """An inclusion or consistency proof does not verify."""


class TileError(VerificationError):
    """A tile or entry bundle is malformed, missing, or disagrees with the checkpoint."""
