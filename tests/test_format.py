"""The on-disk format pinned down: docs/format.md's worked example byte for
byte, the constants shared with the C header, and CRC32C known answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safepoint import _records_native, _records_py, format
from safepoint._records_common import encode_payload

HEADER_PATH = Path(__file__).resolve().parents[1] / "native" / "sp_core.h"

# docs/format.md, "Worked example".  These bytes are the format: if this test
# has to change, FORMAT_VERSION changes with it.
EXAMPLE_STORE_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
EXAMPLE_SEED = 0x48DFE982
EXAMPLE_TIME_NS = 1700000000000000000
EXAMPLE_PAYLOAD = bytes.fromhex("01000000 01 0100 01000000 6b 76")
EXAMPLE_CRC = 0x5D572757
EXAMPLE_RECORD = bytes.fromhex(
    "5727575d"  # crc
    "0d000000"  # length 13
    "0100000000000000"  # lsn 1
    "00002a36fe9c9717"  # time_ns
    "0000000000000000"  # durable_lsn
    "01000000 01 0100 01000000 6b 76"  # one put k=v
)


@pytest.fixture(scope="module", params=[_records_native, _records_py], ids=lambda m: m.BACKEND)
def codec(request):
    return request.param


def test_worked_example_payload_is_the_documented_bytes():
    assert encode_payload([(format.OP_PUT, b"k", b"v")]) == EXAMPLE_PAYLOAD


def test_worked_example_store_seed(codec):
    assert codec.store_seed(EXAMPLE_STORE_ID) == EXAMPLE_SEED


def test_worked_example_record_is_the_documented_bytes(codec):
    record = codec.encode_record(EXAMPLE_SEED, 1, EXAMPLE_TIME_NS, EXAMPLE_PAYLOAD)
    assert record.hex() == EXAMPLE_RECORD.hex()
    assert int.from_bytes(record[:4], "little") == EXAMPLE_CRC


def test_worked_example_crc_covers_everything_after_itself(codec):
    assert codec.crc32c(EXAMPLE_RECORD[4:], EXAMPLE_SEED) == EXAMPLE_CRC


def test_worked_example_scans_as_one_record(codec):
    res = codec.scan(EXAMPLE_RECORD, EXAMPLE_SEED, 1)
    assert res.records == [(0, 45, 1, EXAMPLE_TIME_NS, 1, 0)]
    assert (res.status, res.offset, res.next_lsn) == (format.SP_END, 45, 2)


def test_record_header_layout_matches_its_size():
    assert format.RECORD_HEADER.size == format.RECORD_HEADER_SIZE
    assert format.OP_HEADER.size == format.OP_HEADER_SIZE
    assert format.OP_COUNT.size == format.MIN_PAYLOAD_SIZE
    assert format.SEGMENT_HEADER.size == format.SEGMENT_HEADER_SIZE


def _header_defines() -> dict[str, int]:
    text = HEADER_PATH.read_text(encoding="utf-8")
    return {
        name: int(value, 0)
        for name, value in re.findall(r"^#define\s+(SP_\w+)\s+(\S+)\s*$", text, re.MULTILINE)
    }


def test_c_header_defines_equal_format_py():
    defines = _header_defines()
    assert len(defines) >= 16
    for name, value in defines.items():
        # Status codes keep their SP_ name in format.py; sizes and kinds drop it.
        python_name = name if hasattr(format, name) else name.removeprefix("SP_")
        assert getattr(format, python_name) == value, name


def test_every_status_code_of_format_py_is_in_the_c_header():
    defines = _header_defines()
    statuses = {n: v for n, v in vars(format).items() if re.fullmatch(r"SP_[A-Z_]+", n)}
    assert statuses == {n: v for n, v in defines.items() if n in statuses}
    assert set(statuses.values()) == set(format.STATUS_NAMES)


def test_compiled_extension_has_the_header_values():
    for name, value in _header_defines().items():
        assert getattr(_records_native.lib, name) == value, name


# --- CRC32C known answers -------------------------------------------------------


def test_crc32c_known_answer(codec):
    assert codec.crc32c(b"123456789") == 0xE3069283


def test_crc32c_of_nothing_is_zero(codec):
    assert codec.crc32c(b"") == 0
    assert codec.crc32c(b"", 0x12345678) == 0x12345678


def test_crc32c_continues_from_a_seed(codec):
    assert codec.crc32c(b"56789", codec.crc32c(b"1234")) == 0xE3069283


def test_crc32c_of_32_zero_bytes_is_the_iscsi_vector(codec):
    # RFC 3720, appendix B.4
    assert codec.crc32c(bytes(32)) == 0x8A9136AA
    assert codec.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert codec.crc32c(bytes(range(32))) == 0x46DD794E


def test_portable_crc32c_known_answer():
    assert _records_native._crc32c_portable(b"123456789") == 0xE3069283
    assert _records_native._crc32c_portable(bytes(32)) == 0x8A9136AA
