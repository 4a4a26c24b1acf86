"""Roots recomputed from hash tiles and entry bundles served by a real local HTTP server."""

import http.server
import threading

import pytest

from quis_client.tlog import TileClient, TileError, TileHashReader, leaf_hash, root_from_leaf_hashes
from quis_client.tlog.tiles import TILE_WIDTH, encode_entry_bundle, entries_path, tile_path, tile_width

TOKEN = "auditor-token"


class TileServer:
    """Serves the tiles of a tree of `size` entries (`entry i`), as the tlog-tiles spec lays them out."""

    def __init__(self, size):
        self.size = size
        self.entries = [f"entry {i}".encode() for i in range(size)]
        levels = [[leaf_hash(e) for e in self.entries]]
        while len(levels[-1]) >= TILE_WIDTH:
            below = levels[-1]
            full = len(below) // TILE_WIDTH * TILE_WIDTH
            levels.append([root_from_leaf_hashes(below[i : i + TILE_WIDTH]) for i in range(0, full, TILE_WIDTH)])
        self.files = {}
        for level, hashes in enumerate(levels):
            for index in range((len(hashes) + TILE_WIDTH - 1) // TILE_WIDTH):
                width = tile_width(size, level, index)
                self.files[tile_path(level, index, width)] = b"".join(hashes[index * TILE_WIDTH :][:width])
        for index in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
            width = tile_width(size, 0, index)
            self.files[entries_path(index, width)] = encode_entry_bundle(self.entries[index * TILE_WIDTH :][:width])
        self.fetched = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.lstrip("/")
                server.fetched.append(path)
                body = server.files.get(path)
                if path.startswith("tile/entries/") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send_response(401)
                    body = b"a verified bearer token is required\n"
                elif body is None:
                    self.send_response(404)
                    body = b"not found\n"
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    s = TileServer(70_000)  # three tile levels: 70,000 > 256 * 256
    yield s
    s.close()


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 1000, 65_536, 70_000])
def test_root_from_tiles(server, size):
    want = root_from_leaf_hashes([leaf_hash(e) for e in server.entries[:size]])
    # The server lays out tiles for 70,000 entries; a reader for a smaller tree asks for partial
    # tiles that a 70,000 server does not have, so serve a tree of exactly this size.
    s = server if size == server.size else TileServer(size)
    try:
        assert TileHashReader(TileClient(s.url), size).root() == want
    finally:
        if s is not server:
            s.close()


def test_reader_fetches_each_tile_once(server):
    server.fetched.clear()
    reader = TileHashReader(TileClient(server.url), server.size)
    reader.root()
    reader.root()
    assert len(server.fetched) == len(set(server.fetched)) and len(server.fetched) <= 8


def test_tampered_tile_changes_the_root(server):
    path = tile_path(0, 273, 112)  # the last, partial level-0 tile of 70,000 leaves: read for the root
    original = server.files[path]
    server.files[path] = bytes([original[0] ^ 1]) + original[1:]
    try:
        root = TileHashReader(TileClient(server.url), server.size).root()
    finally:
        server.files[path] = original
    assert root != root_from_leaf_hashes([leaf_hash(e) for e in server.entries])


def test_entry_bundles_need_a_token():
    from quis_client.tlog import root_from_entry_bundles

    s = TileServer(600)
    try:
        with pytest.raises(TileError, match="401"):
            root_from_entry_bundles(TileClient(s.url), 600)
        root, entries = root_from_entry_bundles(TileClient(s.url, token=lambda: TOKEN), 600)
        assert entries == s.entries
        assert root == TileHashReader(TileClient(s.url), 600).root()
    finally:
        s.close()


def test_short_tile_rejected(server):
    path = tile_path(0, 273, 112)  # the last, partial level-0 tile of 70,000 leaves: read for the root
    original = server.files[path]
    server.files[path] = original[:-1]
    try:
        with pytest.raises(TileError):
            TileHashReader(TileClient(server.url), server.size).root()
    finally:
        server.files[path] = original


def test_token_never_sent_in_plaintext_off_loopback():
    with pytest.raises(TileError, match="plaintext"):
        TileClient("http://tiles.example.org", token=TOKEN).entries(0, 1)
