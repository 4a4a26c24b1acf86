"""c2sp.org/tlog-tiles: tile paths, entry bundles, fetching over HTTP, and roots from tiles.

A hash tile at level L holds up to 256 consecutive hashes of tree level 8*L; a node at
tree level 8*L + r is the Merkle root of 2**r consecutive hashes of one level-L tile,
which is how any full subtree, and so any tree root, is recomputed from tiles.
"""

from __future__ import annotations

import ipaddress
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import TileError
from .merkle import HASH_SIZE, leaf_hash, node_hash, root_from_leaf_hashes

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


def index_path(n: int) -> str:
    """N in 3-digit groups, every group but the last prefixed with `x` (1234067 -> x001/x234/067)."""
    if n < 0:
        raise ValueError("tile index must not be negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n > 0:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def _width_suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} is not 1 to {TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """`tile/<L>/<N>[.p/<W>]`."""
    return f"tile/{level}/{index_path(index)}{_width_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """`tile/entries/<N>[.p/<W>]`."""
    return f"tile/entries/{index_path(index)}{_width_suffix(width)}"


def tile_width(tree_size: int, level: int, index: int) -> int:
    """How many hashes the level-`level` tile `index` holds in a tree of `tree_size` leaves (0 if none)."""
    available = tree_size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, available - index * TILE_WIDTH))


def parse_entry_bundle(data: bytes) -> list[bytes]:
    """Entries each prefixed by a big-endian uint16 length."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise TileError("entry bundle ends inside a length prefix")
        n = int.from_bytes(data[i : i + 2], "big")
        if i + 2 + n > len(data):
            raise TileError("entry bundle ends inside an entry")
        out.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    return out


def encode_entry_bundle(entries: list[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > 0xFFFF:
            raise ValueError("an entry in a bundle is at most 65535 bytes")
        out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def split_hashes(data: bytes, width: int) -> list[bytes]:
    if len(data) != width * HASH_SIZE:
        raise TileError(f"tile holds {len(data)} bytes, expected {width} hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def _perfect_subtrees(size: int) -> Iterator[tuple[int, int]]:
    """(level, index) of the full subtrees that make up a tree of `size` leaves, left to right."""
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            yield level, start >> level
            start += 1 << level


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class TileClient:
    """Fetches `/checkpoint` and tiles from a tlog-tiles base URL (e.g. `http://127.0.0.1:8080`).

    Hash tiles and the checkpoint are public; entry bundles need a bearer token with the
    auditor role. `token` may be a string or a callable that returns a fresh one.
    """

    base_url: str
    token: str | Callable[[], str] | None = None
    timeout: float = 10.0
    ca_file: str | None = None

    def _get(self, path: str, auth: bool = False) -> bytes:
        url = self.base_url.rstrip("/") + "/" + path.lstrip("/")
        req = urllib.request.Request(url)
        if auth and self.token is not None:
            host = urllib.parse.urlsplit(url).hostname or ""
            if url.startswith("http:") and not _is_loopback(host):
                raise TileError(f"refusing to send a bearer token in plaintext to {host}: use https")
            token = self.token() if callable(self.token) else self.token
            req.add_header("Authorization", f"Bearer {token}")
        context = ssl.create_default_context(cafile=self.ca_file) if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            raise TileError(f"GET {path}: HTTP {e.code}: {e.read(200).decode(errors='replace').strip()}") from None
        except urllib.error.URLError as e:
            raise TileError(f"GET {path}: {e.reason}") from None

    def checkpoint(self) -> str:
        return self._get("checkpoint").decode("utf-8")

    def tile(self, level: int, index: int, width: int = TILE_WIDTH) -> list[bytes]:
        return split_hashes(self._get(tile_path(level, index, width)), width)

    def entries(self, index: int, width: int = TILE_WIDTH) -> list[bytes]:
        bundle = parse_entry_bundle(self._get(entries_path(index, width), auth=True))
        if len(bundle) != width:
            raise TileError(f"entry bundle {index} holds {len(bundle)} entries, expected {width}")
        return bundle


class TileHashReader:
    """Reads tree nodes for one tree size from hash tiles, fetching each tile once."""

    def __init__(self, client: TileClient, tree_size: int):
        self.client = client
        self.tree_size = tree_size
        self._tiles: dict[tuple[int, int], list[bytes]] = {}

    def _tile(self, level: int, index: int) -> list[bytes]:
        key = (level, index)
        if key not in self._tiles:
            width = tile_width(self.tree_size, level, index)
            if width == 0:
                raise TileError(f"tile {level}/{index} lies beyond tree size {self.tree_size}")
            self._tiles[key] = self.client.tile(level, index, width)
        return self._tiles[key]

    def node(self, level: int, index: int) -> bytes:
        """The hash of the full subtree of 2**level leaves starting at leaf index << level."""
        tile_level, r = divmod(level, TILE_HEIGHT)
        first = index << r
        tile = self._tile(tile_level, first // TILE_WIDTH)
        offset = first % TILE_WIDTH
        hashes = tile[offset : offset + (1 << r)]
        if len(hashes) != 1 << r:
            raise TileError(f"tile {tile_level}/{first // TILE_WIDTH} is too short for node {level}/{index}")
        return root_from_leaf_hashes(hashes)

    def root(self) -> bytes:
        """The tree's root hash, recomputed from tiles."""
        if self.tree_size == 0:
            return root_from_leaf_hashes([])
        nodes = [self.node(level, index) for level, index in _perfect_subtrees(self.tree_size)]
        root = nodes[-1]
        for left in reversed(nodes[:-1]):
            root = node_hash(left, root)
        return root

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return [self.node(0, i) for i in range(start, end)]


def root_from_entry_bundles(client: TileClient, tree_size: int) -> tuple[bytes, list[bytes]]:
    """Fetches every entry of the tree from entry bundles, hashes them and returns (root, entries)."""
    entries: list[bytes] = []
    for index in range((tree_size + TILE_WIDTH - 1) // TILE_WIDTH):
        entries.extend(client.entries(index, tile_width(tree_size, 0, index)))
    return root_from_leaf_hashes([leaf_hash(e) for e in entries]), entries
