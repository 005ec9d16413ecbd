"""Every on-disk constant of safepoint, with its derivation.

docs/format.md is the grammar; this module is its single source of numbers.
native/sp_core.h repeats the ones the C scanner needs, and
tests/test_format.py checks that the two agree.
"""

from __future__ import annotations

import struct

FORMAT_VERSION = 1
KNOWN_VERSIONS = (1,)

# --- WAL segment header -----------------------------------------------------
SEGMENT_MAGIC = b"SPWAL\r\n\x1a"  # CR LF SUB: text-mode transfers mangle it
SEGMENT_HEADER = struct.Struct("<8sII16sQ")  # magic, version, crc, store id, lsn
SEGMENT_HEADER_SIZE = 8 + 4 + 4 + 16 + 8  # = 40
STORE_ID_SIZE = 16
SEGMENT_NAME_DIGITS = 20  # u64 max has 20 digits: name order is LSN order
SEGMENT_SUFFIX = ".wal"
PREPARED_SEGMENT_NAME = "prepared.tmp"

# --- record -----------------------------------------------------------------
RECORD_HEADER = struct.Struct("<IIQQQ")  # crc, length, lsn, time_ns, durable_lsn
RECORD_HEADER_SIZE = 4 + 4 + 8 + 8 + 8  # = 32
RECORD_CRC_START = 4  # the CRC covers everything after itself
OP_COUNT = struct.Struct("<I")
OP_HEADER = struct.Struct("<BHI")  # kind, key_len, value_len
OP_HEADER_SIZE = 1 + 2 + 4  # = 7
MIN_PAYLOAD_SIZE = 4  # an op count; also what keeps a zero header invalid
MAX_PAYLOAD_SIZE = 1 << 30  # 1 GiB: a length above this is damage, not data
OP_PUT = 1
OP_DELETE = 2
MAX_KEY_SIZE = 511  # LMDB's compiled-in MDB_MAXKEYSIZE; checked at put

# --- scan status codes (identical in native/sp_core.h) ----------------------
SP_OK = 0  # the output array filled up: call again from the returned offset
SP_END = 1  # fewer than a header's bytes left: end of the buffer
SP_ZERO = 2  # an all-zero header: the preallocated, never-written tail
SP_TRUNCATED = 3  # header or payload runs past the end of the buffer
SP_BAD_LENGTH = 4  # length outside [MIN_PAYLOAD_SIZE, MAX_PAYLOAD_SIZE]
SP_BAD_CRC = 5
SP_BAD_LSN = 6  # CRC valid but not the next LSN
SP_BAD_PAYLOAD = 7  # CRC valid but the ops do not parse
SP_NO_SPACE = 8  # encode: the output buffer is too small

STATUS_NAMES = {
    SP_OK: "ok",
    SP_END: "end of buffer",
    SP_ZERO: "zero-filled tail",
    SP_TRUNCATED: "truncated record",
    SP_BAD_LENGTH: "bad record length",
    SP_BAD_CRC: "checksum mismatch",
    SP_BAD_LSN: "unexpected lsn",
    SP_BAD_PAYLOAD: "malformed payload",
    SP_NO_SPACE: "output buffer too small",
}
CLEAN_ENDS = frozenset((SP_END, SP_ZERO))


def segment_name(first_lsn: int) -> str:
    """File name of the segment whose first record has ``first_lsn``."""
    return f"{first_lsn:0{SEGMENT_NAME_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """First LSN encoded in a segment file name, or None if not a segment."""
    stem, dot, ext = name.partition(".")
    if "." + ext != SEGMENT_SUFFIX or len(stem) != SEGMENT_NAME_DIGITS or not stem.isdigit():
        return None
    return int(stem)


# --- base image (LMDB) --------------------------------------------------------
LMDB_LIB_VERSION = 0  # py-lmdb's selector for the bundled LMDB 0.9 engine
LMDB_ENGINE = "0.9"  # 0.9 and 1.0 files are incompatible: we write 0.9 only
BASE_ENTRY_CRC = struct.Struct("<I")  # value = crc32c(key ++ value) ++ value
BASE_META_PREFIX = b"\x00safepoint/"  # reserved in the meta sub-database
