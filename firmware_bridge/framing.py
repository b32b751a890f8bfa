"""Byte framing: COBS with a 0x00 delimiter and CRC-16/CCITT-FALSE, and a stream splitter.

COBS removes every zero byte from a frame, so 0x00 can mark frame ends: a receiver that joins
mid-stream or sees garbage drops at most one frame and is back in sync at the next 0x00.
"""

from __future__ import annotations

import binascii

from firmware_bridge.errors import FrameError

# Why a frame was rejected; the C codec's hq_status codes 1..8 in the same order.
REASONS = ("cobs", "short", "crc", "version", "type", "length", "range", "overflow")
DELIMITER = b"\x00"
MAX_BLOCK = 254  # data bytes per COBS block


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor (check 0x29B1).

    ``binascii.crc_hqx`` is exactly this CRC with the initial value passed in, and runs in C.
    """
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data`` (no delimiter added), in the canonical form (Cheshire and Baker; the
    Wikipedia examples): a block of 254 non-zero bytes has code 0xFF and no implied zero, and
    data that ends with such a block gets no empty block after it."""
    out = bytearray()
    pieces = bytes(data).split(b"\x00")
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        full = len(piece) // MAX_BLOCK * MAX_BLOCK
        for start in range(0, full, MAX_BLOCK):
            out.append(0xFF)
            out += piece[start : start + MAX_BLOCK]
        if full < len(piece) or not full or index < last:
            out.append(len(piece) - full + 1)
            out += piece[full:]
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raises :class:`FrameError` ("cobs") on a malformed block."""
    out = bytearray()
    i, end = 0, len(data)
    while i < end:
        code = data[i]
        stop = i + code
        if code == 0 or stop > end:
            raise FrameError("cobs", f"block code {code} at byte {i} of {end}")
        block = data[i + 1 : stop]
        if 0 in block:
            raise FrameError("cobs", "zero byte inside a block")
        out += block
        if code != 0xFF and stop < end:
            out.append(0)
        i = stop
    return bytes(out)


class Deframer:
    """Splits a byte stream at 0x00 delimiters into encoded frames, whatever the read boundaries.

    It starts out of sync, discarding bytes up to the first 0x00 (a port opened or a board booted
    mid-frame sees the tail of a frame first); senders put a 0x00 before their first frame. A run
    longer than ``max_frame`` without a delimiter is garbage (or a lost delimiter): it is discarded,
    reported once as an "overflow", and the splitter resyncs at the next 0x00. Empty frames
    (consecutive delimiters) are skipped.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.reset()

    def reset(self) -> None:
        """Forget partial data and wait for the next 0x00 (after flushing a port, say)."""
        self._pending = bytearray()
        self._discarding = True

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """Return the complete frames in ``data`` and how many oversized runs were discarded."""
        frames: list[bytes] = []
        overflows = 0
        *complete, rest = bytes(data).split(DELIMITER)
        for chunk in complete:
            if not self._discarding and len(self._pending) + len(chunk) > self.max_frame:
                overflows += 1
            elif not self._discarding and (self._pending or chunk):
                frames.append(bytes(self._pending + chunk))
            self._pending.clear()
            self._discarding = False
        if not self._discarding:
            self._pending += rest
            if len(self._pending) > self.max_frame:
                overflows += 1
                self._discarding = True
                self._pending.clear()
        return frames, overflows
