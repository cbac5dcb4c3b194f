"""Byte layouts of the journal: segment header, head block, frame header, checksum.

See ``docs/journal-format.md``; this module and that document change together.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import xxhash

FORMAT_VERSION: Final = 1

SEGMENT_MAGIC: Final = b"HFTJSEG\0"
SEGMENT_HEADER: Final = struct.Struct("<8sHHIIIQQQqII")
SEGMENT_HEADER_SIZE: Final = 64
assert SEGMENT_HEADER.size == SEGMENT_HEADER_SIZE

HEAD_MAGIC: Final = b"HFTJHED\0"
HEAD: Final = struct.Struct("<8sHHIqQQIIIIq")
HEAD_SIZE: Final = 4096
STATE_OPEN: Final = 1
STATE_CLOSED: Final = 2
# offsets of head fields that change while the writer runs
HEAD_STATE_PID: Final = struct.Struct("<HI")  # at 10
HEAD_HEARTBEAT: Final = struct.Struct("<q")  # at 16
HEAD_SEGMENTS: Final = struct.Struct("<QQ")  # at 24: current, oldest

# frame: commit u64 | seq u64 | time i64 | type u16 | flags u16 | payload_len u32 | payload
FRAME_HEADER_SIZE: Final = 32
FRAME_HEADER: Final = struct.Struct("<QQqHHI")  # with the commit word, for readers
FRAME_BODY_HEADER: Final = struct.Struct("<QqHHI")  # without it, for writers (at offset 8)
COMMIT: Final = struct.Struct("<Q")
LENGTH_MASK: Final = 0xFFFF_FFFF

TYPE_FIXED: Final = 1  # payload in the segment's fixed layout (a tick record)
TYPE_BYTES: Final = 2  # free-form payload
TYPE_ROLL: Final = 0xFFFF  # end of segment; payload: u64 index of the next segment
ROLL_PAYLOAD: Final = struct.Struct("<Q")
ROLL_FRAME_SIZE: Final = 40

SEGMENT_SUFFIX: Final = ".seg"
FILE_MODE: Final = 0o640  # journals, heads, locks, snapshot tables: the service's group may read
MIN_SEGMENT_SIZE: Final = 4096

checksum32 = xxhash.xxh3_64_intdigest  # callers mask with LENGTH_MASK


def frame_size(payload_len: int) -> int:
    """Bytes a frame with ``payload_len`` bytes of payload occupies (8-aligned)."""
    return (FRAME_HEADER_SIZE + payload_len + 7) & ~7


def commit_word(frame_len: int, checksum: int) -> int:
    return frame_len | ((checksum & LENGTH_MASK) << 32)


def segment_name(index: int) -> str:
    return f"{index:010d}{SEGMENT_SUFFIX}"


@dataclass(frozen=True)
class Layout:
    """What a journal's frames hold, by id and version: id 0, anything (free-form payloads);
    1, tick records (fixed frames, ``libshm.record``); 2, engine messages (free-form payloads,
    ``contracts.messages``). A layout with a ``payload_size`` has fixed frames of that payload;
    one without takes payloads of any size."""

    layout_id: int = 0
    version: int = 0
    payload_size: int = 0
    payload_format: str = ""
    """``struct`` format of the fixed payload, without byte-order prefix (writer side only)."""


FREE_FORM: Final = Layout()
