/* sp_core.h -- the whole C API of safepoint's native core.
 *
 * This file is read verbatim as the cffi cdef (native/build.py strips the
 * preprocessor lines), so it holds only declarations cffi understands.
 *
 * Pure computation: no I/O, no globals that change after start-up, no
 * allocation.  Every buffer is owned by the caller and only borrowed for the
 * duration of the call.  Functions return an int status (SP_OK = 0 on
 * success) unless they compute a plain value.  The record format is
 * docs/format.md; the numbers below must equal src/safepoint/format.py
 * (tests/test_format.py checks).
 */

#define SP_OK 0
#define SP_END 1
#define SP_ZERO 2
#define SP_TRUNCATED 3
#define SP_BAD_LENGTH 4
#define SP_BAD_CRC 5
#define SP_BAD_LSN 6
#define SP_BAD_PAYLOAD 7
#define SP_NO_SPACE 8

#define SP_RECORD_HEADER_SIZE 32
#define SP_OP_HEADER_SIZE 7
#define SP_MIN_PAYLOAD_SIZE 4
#define SP_MAX_PAYLOAD_SIZE 1073741824
#define SP_MAX_KEY_SIZE 511
#define SP_OP_PUT 1
#define SP_OP_DELETE 2

/* One valid record found by sp_scan. */
typedef struct {
    uint64_t offset;    /* first byte of the record in the scanned buffer */
    uint64_t lsn;
    uint64_t time_ns;
    uint64_t durable_lsn; /* highest LSN on disk when this record was written */
    uint32_t length;    /* whole record: header + payload */
    uint32_t op_count;
} sp_record;

/* How a scan ended. */
typedef struct {
    int status;         /* SP_OK: out[] filled, call again from offset */
    uint64_t offset;    /* first byte not consumed (where the scan stopped) */
    uint64_t next_lsn;  /* LSN expected at offset */
    uint64_t count;     /* records written to out[] */
} sp_scan_result;

/* CRC32C (Castagnoli) continuing from crc: sp_crc32c(sp_crc32c(0, a), b) is
 * the CRC of a ++ b.  Uses SSE4.2 when the CPU has it (checked at run time). */
uint32_t sp_crc32c(uint32_t crc, const uint8_t *buf, size_t len);
/* The table-driven path alone, so tests can compare it with the hardware. */
uint32_t sp_crc32c_portable(uint32_t crc, const uint8_t *buf, size_t len);
/* 1 if sp_crc32c uses the SSE4.2 instruction on this CPU, else 0. */
int sp_crc32c_hardware(void);

/* Check that payload parses exactly as op_count u32 followed by that many
 * ops; on SP_OK stores the op count.  SP_BAD_PAYLOAD otherwise. */
int sp_payload_check(const uint8_t *payload, size_t len, uint32_t *op_count);

/* Encode one record (one transaction) into out[0..cap): header, the payload
 * copied verbatim (it may already sit at out + SP_RECORD_HEADER_SIZE), CRC
 * over everything after the CRC seeded with seed.  SP_BAD_LENGTH if
 * payload_len is out of range, SP_NO_SPACE if cap is too small (*written =
 * the size needed), SP_BAD_PAYLOAD if it does not parse.  On SP_OK *written =
 * record length; on any other status nothing was written to out. */
int sp_record_encode(uint8_t *out, size_t cap, uint32_t seed, uint64_t lsn,
                     uint64_t time_ns, uint64_t durable_lsn,
                     const uint8_t *payload, size_t payload_len,
                     size_t *written);

/* Validate records in buf[0..len) starting at offset 0, the first expected
 * to carry expect_lsn.  Writes up to out_cap records to out and fills *res.
 * Ends with SP_OK (out full), SP_END or SP_ZERO (clean end), or the first
 * problem found (SP_TRUNCATED .. SP_BAD_PAYLOAD) at res->offset.  The rules
 * and their order are those of docs/format.md.  Returns res->status. */
int sp_scan(const uint8_t *buf, size_t len, uint32_t seed, uint64_t expect_lsn,
            sp_record *out, size_t out_cap, sp_scan_result *res);

/* Resynchronise after damage: find the smallest offset in buf[0..len) where a
 * whole, CRC-valid record with a parseable payload and min_lsn <= lsn <
 * min_lsn + 2^32 begins (the window lets most offsets be rejected without a
 * CRC; no log is 2^32 records ahead of where it was damaged).  SP_OK with
 * *offset and *lsn set if found, SP_END if there is none. */
int sp_find_valid(const uint8_t *buf, size_t len, uint32_t seed,
                  uint64_t min_lsn, uint64_t *offset, uint64_t *lsn);
