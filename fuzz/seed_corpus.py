"""Write the hand-made seed inputs of fuzz/corpus/<target>/ (deterministic).

    python fuzz/seed_corpus.py          # rewrites fuzz/corpus/*/seed-*

Inputs a campaign found worth keeping (``regression-*``, ``found-*``) are
separate files and are not touched.  The input layouts are those of the
targets in fuzz/targets.py.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

from safepoint import _records_py as reference
from safepoint._records_common import encode_payload
from safepoint.format import MAX_KEY_SIZE, OP_DELETE, OP_PUT
from safepoint.snapshot_files import encode_checked_json

CORPUS = Path(__file__).resolve().parent / "corpus"
EXAMPLE_STORE_ID = bytes.fromhex("00112233445566778899aabbccddeeff")  # docs/format.md


def recipe(rng: random.Random, records: int, damage: int) -> bytes:
    """A build_log recipe: ``records`` records, then ``damage`` instructions."""
    out = bytearray([records])
    for _ in range(records):
        ops = rng.randint(0, 3)
        out.append(ops)
        for _ in range(ops):
            key_len, value_len = rng.randint(0, 23), rng.randint(0, 79)
            out += bytes([key_len, value_len])
            out += rng.randbytes(key_len + 1 + value_len)
    for _ in range(damage):
        out += bytes([rng.randint(0, 3)]) + rng.randbytes(2)
    return bytes(out)


def scan_seeds(rng: random.Random) -> dict[str, bytes]:
    seed = reference.store_seed(EXAMPLE_STORE_ID)
    payload = encode_payload([(OP_PUT, b"k", b"v")])
    example = reference.encode_record(seed, 1, 1_700_000_000_000_000_000, payload)
    log = b"".join(
        reference.encode_record(
            seed, lsn, lsn, encode_payload([(OP_PUT, b"k%d" % lsn, b"x" * lsn)])
        )
        for lsn in range(1, 6)
    )
    head = struct.pack("<IQBB", seed, 1, 0, 0)
    return {
        "worked-example": head + example,
        "five-records": head + log,
        "five-records-zero-tail": head + log + bytes(200),
        "truncated": head + log[:-7],
        "bit-flipped": head + log[:70] + bytes([log[70] ^ 4]) + log[71:],
        "zeros": head + bytes(300),
        "recipe-clean": struct.pack("<IQBB", seed, 5, 1, 0) + recipe(rng, 4, 0),
        "recipe-damaged": struct.pack("<IQBB", seed, 5, 1, 0) + recipe(rng, 5, 3),
        "recipe-offset": struct.pack("<IQBB", seed, 9, 3, 17) + recipe(rng, 3, 1),
    }


def payload_seeds() -> dict[str, bytes]:
    return {
        "empty": b"",
        "no-ops": encode_payload([]),
        "one-put": encode_payload([(OP_PUT, b"key", b"value")]),
        "put-and-delete": encode_payload([(OP_PUT, b"a", b""), (OP_DELETE, b"b", None)]),
        "longest-key": encode_payload([(OP_PUT, b"k" * MAX_KEY_SIZE, b"v")]),
        "bad-kind": struct.pack("<IBHI", 1, 9, 1, 0) + b"k",
        "trailing-byte": encode_payload([(OP_PUT, b"k", b"v")]) + b"\0",
        "count-too-high": struct.pack("<I", 3) + encode_payload([(OP_PUT, b"k", b"v")])[4:],
    }


def recovery_seeds(rng: random.Random) -> dict[str, bytes]:
    # First byte: recovery mode (% 3), bit 2 = build a valid log from a
    # recipe, bit 3 = add the preallocated zero tail.
    return {
        "empty-log-zero-tail": bytes([8]),
        "clean-log": bytes([4 | 8]) + recipe(rng, 5, 0),
        "torn-tail": bytes([4 | 8]) + recipe(rng, 5, 1),
        "damaged-strict": bytes([1 | 4 | 8]) + recipe(rng, 6, 2),
        "damaged-point-in-time": bytes([2 | 4 | 8]) + recipe(rng, 6, 3),
        "garbage": bytes([0]) + rng.randbytes(300),
        "garbage-then-zeros": bytes([8]) + rng.randbytes(100),
    }


def manifest_seeds() -> dict[str, bytes]:
    body = {
        "format": 1,
        "name": "epoch-5",
        "seq": 1,
        "lsn": 42,
        "store_id": EXAMPLE_STORE_ID.hex(),
        "step": 5,
        "created": 1700000000.5,
        "metrics": {"val_loss": 0.31},
        "metadata": {"note": "seed"},
        "files": {"data.mdb": {"size": 64, "crc32c": 0}},
    }
    good = encode_checked_json(body)
    return {
        "valid": bytes([0]) + good,
        "valid-recrc": bytes([1]) + good,
        "bad-crc": bytes([0]) + good.replace(b"42", b"43"),
        "not-json": bytes([0]) + b"{not json",
        "no-files": bytes([1]) + json.dumps(dict(body, files={})).encode(),
        # The findings fixed with tests/regressions/test_damaged_manifest_*:
        "regression-deep-nesting": bytes([0]) + b"[" * 50_000,
        "regression-infinite-lsn": bytes([1]) + json.dumps(dict(body, lsn=float("inf"))).encode(),
        "regression-huge-created": bytes([1]) + json.dumps(dict(body, created=10**400)).encode(),
        "regression-entry-not-object": bytes([1])
        + json.dumps(dict(body, files={"data.mdb": "x"})).encode(),
        "regression-dot-dot": bytes([1])
        + json.dumps(dict(body, files={"..": {"size": 0, "crc32c": 0}})).encode(),
    }


def wal_engine_seeds(rng: random.Random) -> dict[str, bytes]:
    """Scripts for targets.wal_engine: (op, size byte, bytes) steps."""
    put = bytes([0, 2]) + rng.randbytes(16)  # a valid put of 16 bytes
    junk = bytes([1, 1]) + rng.randbytes(8)  # 8 fuzzed bytes as a payload
    flush, durable, sync = bytes([2, 0]), bytes([6, 0]), bytes([3, 0])
    return {
        "puts-and-flushes": (put + flush) * 5 + put + durable + sync,
        "rollover": (bytes([0, 100]) + rng.randbytes(800) + durable) * 8,
        "malformed-payload": put + junk + put + durable,
        "queued-then-synced": put * 10 + sync,
    }


def memtable_seeds() -> dict[str, bytes]:
    """Scripts for targets.memtable (fuzz/memtable_target.py): op byte % 10,
    then the op's keys (pool index < 0xC0), values and lengths."""
    put, put_big = bytes([0, 1, 7]) + b"1234567", bytes([0, 6, 23]) + b"v" * 23
    delete, get, fold = bytes([0, 2, 5]), bytes([5, 1]), bytes([9, 3])
    commit = bytes([2, 3, 0, 1, 3, 2, 5, 4, 4]) + b"abcd"
    good = encode_payload([(OP_PUT, b"k", b"v"), (OP_DELETE, b"a", None)])
    span = bytes([4, 2, 1, 1, 2]) + bytes([1, 3, 0, 2]) + b"xy" + bytes([1, len(good)]) + good
    return {
        "writes-and-reads": put + delete + commit + get + bytes([6, 0, 2]) + fold,
        "iterator-across-writes": put + bytes([7, 0]) + put_big + bytes([8, 0, 8, 0]) + fold,
        "fuzzed-payload-valid": bytes([3, len(good)]) + good + fold,
        "fuzzed-payload-bad": bytes([3, 5]) + b"\x01\x00\x00\x00\x09" + fold,
        "record-span": span + get + fold,
        "record-span-bad": bytes([4, 1, 1, 1, 2, 1, 6]) + b"\x02\x00\x00\x00\x01\x00" + fold,
    }


def main() -> None:
    rng = random.Random(20261127)
    seeds = {
        "scan": scan_seeds(rng),
        "payload": payload_seeds(),
        "recovery": recovery_seeds(rng),
        "manifest": manifest_seeds(),
        "wal_engine": wal_engine_seeds(rng),
        "memtable": memtable_seeds(),
    }
    for target, inputs in seeds.items():
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*"):
            old.unlink()
        for name, data in inputs.items():
            prefix = "" if name.startswith("regression-") else "seed-"
            (d / f"{prefix}{name}").write_bytes(data)


if __name__ == "__main__":
    main()
