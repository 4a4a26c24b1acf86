"""Proofs built by a reference implementation of RFC 6962 section 2.1.1 and 2.1.2 (PATH and
PROOF, written here from the RFC's recursive definitions) verify, and any tampering fails."""

import pytest

from quis_client.tlog import (
    ProofError,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(70)]


def _k(n):
    return 1 << ((n - 1).bit_length() - 1)


def path(m, leaves):
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, leaves[:k]) + [root_from_leaf_hashes(leaves[k:])]
    return path(m - k, leaves[k:]) + [root_from_leaf_hashes(leaves[:k])]


def subproof(m, leaves, b):
    n = len(leaves)
    if m == n:
        return [] if b else [root_from_leaf_hashes(leaves)]
    k = _k(n)
    if m <= k:
        return subproof(m, leaves[:k], b) + [root_from_leaf_hashes(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [root_from_leaf_hashes(leaves[:k])]


def _flip(h):
    return bytes([h[0] ^ 1]) + h[1:]


@pytest.mark.parametrize("n", range(1, 40))
def test_inclusion_all_indices(n):
    leaves = LEAVES[:n]
    root = root_from_leaf_hashes(leaves)
    for m in range(n):
        proof = path(m, leaves)
        verify_inclusion(m, n, leaves[m], proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(m, n, _flip(leaves[m]), proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(m, n, leaves[m], proof, _flip(root))
        for i in range(len(proof)):
            with pytest.raises(ProofError):
                verify_inclusion(m, n, leaves[m], proof[:i] + [_flip(proof[i])] + proof[i + 1 :], root)
        with pytest.raises(ProofError):
            verify_inclusion(m, n, leaves[m], proof + [root], root)
        if n > 1:
            with pytest.raises(ProofError):
                verify_inclusion(m, n, leaves[m], proof[:-1], root)
            with pytest.raises(ProofError):
                verify_inclusion((m + 1) % n, n, leaves[m], proof, root)


@pytest.mark.parametrize("n", range(2, 40))
def test_consistency_all_prefixes(n):
    root2 = root_from_leaf_hashes(LEAVES[:n])
    for m in range(1, n):
        root1 = root_from_leaf_hashes(LEAVES[:m])
        proof = subproof(m, LEAVES[:n], True)
        verify_consistency(m, n, proof, root1, root2)
        with pytest.raises(ProofError):
            verify_consistency(m, n, proof, _flip(root1), root2)
        with pytest.raises(ProofError):
            verify_consistency(m, n, proof, root1, _flip(root2))
        for i in range(len(proof)):
            with pytest.raises(ProofError):
                verify_consistency(m, n, proof[:i] + [_flip(proof[i])] + proof[i + 1 :], root1, root2)
        if m > 1:
            with pytest.raises(ProofError):
                verify_consistency(m, n, proof[1:], root1, root2)


def test_node_hash_is_rfc6962():
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert root_from_leaf_hashes([a, b]) == node_hash(a, b)
    assert root_from_leaf_hashes([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
