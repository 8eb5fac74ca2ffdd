"""Counting a gzip file's content as it is decompressed, chunk by chunk and member after member (as ``gzip -d`` reads
it): the only honest size. The ISIZE trailer is the last member's size modulo 4 GiB, so it can say anything."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

GZIP_MAGIC = b"\x1f\x8b"


def _member() -> zlib._Decompress:
    return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)


class GzipCounter:
    """Feed the compressed bytes in order; get the content back in pieces of at most ``piece`` bytes (so a bomb never
    expands in memory), its running size in ``total`` and the compressed bytes used for it in ``consumed``.
    ``zlib.error`` for corrupt data."""

    def __init__(self, piece: int = 1 << 20) -> None:
        self.piece = piece
        self.total = 0
        self.consumed = 0
        self.ended = False  # the last member ended and no further member follows
        self._inflate = _member()
        self._pending = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        data = self._pending + data
        self._pending = b""
        while data and not self.ended:
            if self._inflate.eof:  # between members: another one, or the end of the content
                if len(data) < len(GZIP_MAGIC) and GZIP_MAGIC.startswith(data):
                    self._pending = data
                    return
                if not data.startswith(GZIP_MAGIC):
                    self.ended = True  # trailing padding or garbage: the content ends here
                    return
                self._inflate = _member()
            out = self._inflate.decompress(data, self.piece)
            before = len(data)
            data = self._inflate.unused_data if self._inflate.eof else self._inflate.unconsumed_tail
            self.consumed += before - len(data)
            self.total += len(out)
            if out:
                yield out
