/* sp_core.c -- safepoint's native core: CRC32C, record encoding, scanning.
 *
 * The contract is native/sp_core.h; the grammar and the order of the
 * validation rules are docs/format.md.  Everything here is pure computation
 * on caller-owned buffers: no I/O, no allocation, no mutable state.  The only
 * run-time decision (SSE4.2 or not) reads the CPU feature word that libgcc
 * fills in before any code of ours runs.
 *
 * Every length that comes from the buffer is compared with what is left in
 * the buffer before it is added to an offset, so no sum below can wrap, and
 * every multi-byte field is decoded byte by byte (little-endian on any host,
 * no unaligned access).
 *
 * The generated CRC32C tables are in sp_crc32c_tables.h.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sp_core.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SP_HAVE_SSE42 1
#include <nmmintrin.h>
#else
#define SP_HAVE_SSE42 0
#endif

/* Generated, in sp_crc32c_tables.h: sp_crc32c_table, where T[0] is the
 * byte-at-a-time table of the reflected Castagnoli polynomial, T[k][i] =
 * crc of byte i followed by k zero bytes, which lets slicing-by-8 fold eight
 * bytes per step; and, with SSE4.2, sp_crc32c_shift_table (sp_crc32c_shift
 * below). */
#include "sp_crc32c_tables.h"

static uint32_t load_u16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t load_u64(const uint8_t *p)
{
    return (uint64_t)load_u32(p) | (uint64_t)load_u32(p + 4) << 32;
}

static void store_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void store_u64(uint8_t *p, uint64_t v)
{
    store_u32(p, (uint32_t)v);
    store_u32(p + 4, (uint32_t)(v >> 32));
}

/* ---- CRC32C -------------------------------------------------------------- */

/* The running value is kept inverted inside both paths, so that the public
 * crc is the conventional (pre- and post-inverted) CRC and
 * crc32c(crc32c(0, a), b) == crc32c(0, a ++ b), as the crc32c package does. */

uint32_t sp_crc32c_portable(uint32_t crc, const uint8_t *buf, size_t len)
{
    const uint32_t (*t)[256] = sp_crc32c_table;
    uint32_t c = ~crc;

    while (len >= 8) {
        uint32_t lo = c ^ load_u32(buf);
        uint32_t hi = load_u32(buf + 4);
        c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^
            t[4][lo >> 24] ^ t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^
            t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
        buf += 8;
        len -= 8;
    }
    while (len > 0) {
        c = t[0][(c ^ *buf) & 0xff] ^ (c >> 8);
        buf++;
        len--;
    }
    return ~c;
}

#if SP_HAVE_SSE42
/* The crc32 instruction has a latency of 3 cycles and a throughput of one
 * per cycle, so one dependent chain runs at a third of the unit's speed.
 * Buffers of at least 3 * SP_CRC_BLOCK bytes are cut into three blocks whose
 * CRCs run side by side; the chains are joined with sp_crc32c_shift, which
 * advances a CRC register over SP_CRC_BLOCK zero bytes (CRC is linear:
 * crc(a ++ b) = shift(crc(a)) ^ crc_from_zero(b)).  The shift is a constant
 * table, so no carry-less multiply is needed. */
#define SP_CRC_BLOCK 4096 /* the block the shift table was generated for */

static uint32_t sp_crc32c_shift(uint32_t c)
{
    const uint32_t (*t)[256] = sp_crc32c_shift_table;
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^
           t[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint64_t
crc32c_sse42_word(uint64_t c, const uint8_t *p)
{
    uint64_t word;
    memcpy(&word, p, sizeof word); /* unaligned, and x86 is little-endian */
    return _mm_crc32_u64(c, word);
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_sse42(uint32_t crc, const uint8_t *buf, size_t len)
{
    uint64_t c = (uint32_t)~crc;

    while (len >= 3 * SP_CRC_BLOCK) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < SP_CRC_BLOCK; i += 8) {
            c = crc32c_sse42_word(c, buf + i);
            c1 = crc32c_sse42_word(c1, buf + SP_CRC_BLOCK + i);
            c2 = crc32c_sse42_word(c2, buf + 2 * SP_CRC_BLOCK + i);
        }
        c = sp_crc32c_shift((uint32_t)c) ^ (uint32_t)c1;
        c = sp_crc32c_shift((uint32_t)c) ^ (uint32_t)c2;
        buf += 3 * SP_CRC_BLOCK;
        len -= 3 * SP_CRC_BLOCK;
    }
    while (len >= 8) {
        c = crc32c_sse42_word(c, buf);
        buf += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len > 0) {
        c32 = _mm_crc32_u8(c32, *buf);
        buf++;
        len--;
    }
    return ~c32;
}
#endif

int sp_crc32c_hardware(void)
{
#if SP_HAVE_SSE42
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    return 0;
#endif
}

uint32_t sp_crc32c(uint32_t crc, const uint8_t *buf, size_t len)
{
#if SP_HAVE_SSE42
    if (sp_crc32c_hardware())
        return crc32c_sse42(crc, buf, len);
#endif
    return sp_crc32c_portable(crc, buf, len);
}

/* ---- payload ------------------------------------------------------------- */

int sp_payload_check(const uint8_t *payload, size_t len, uint32_t *op_count)
{
    if (len < SP_MIN_PAYLOAD_SIZE)
        return SP_BAD_PAYLOAD;
    uint32_t count = load_u32(payload);
    size_t pos = 4;

    /* Each op takes at least SP_OP_HEADER_SIZE bytes, so a damaged count
     * runs out of bytes after at most len / 7 rounds. */
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < SP_OP_HEADER_SIZE)
            return SP_BAD_PAYLOAD;
        const uint8_t *op = payload + pos;
        uint32_t kind = op[0];
        uint32_t key_len = load_u16(op + 1);
        uint32_t value_len = load_u32(op + 3);
        pos += SP_OP_HEADER_SIZE;

        if (kind == SP_OP_DELETE) {
            if (value_len != 0)
                return SP_BAD_PAYLOAD;
        } else if (kind != SP_OP_PUT) {
            return SP_BAD_PAYLOAD;
        }
        if (key_len > SP_MAX_KEY_SIZE || key_len > len - pos)
            return SP_BAD_PAYLOAD;
        pos += key_len;
        if (value_len > len - pos)
            return SP_BAD_PAYLOAD;
        pos += value_len;
    }
    if (pos != len)
        return SP_BAD_PAYLOAD;
    *op_count = count;
    return SP_OK;
}

/* ---- encode -------------------------------------------------------------- */

int sp_record_encode(uint8_t *out, size_t cap, uint32_t seed, uint64_t lsn,
                     uint64_t time_ns, uint64_t durable_lsn,
                     const uint8_t *payload, size_t payload_len,
                     size_t *written)
{
    uint32_t op_count;

    *written = 0;
    if (payload_len < SP_MIN_PAYLOAD_SIZE || payload_len > SP_MAX_PAYLOAD_SIZE)
        return SP_BAD_LENGTH;
    size_t total = SP_RECORD_HEADER_SIZE + payload_len; /* <= 1 GiB + 32 */
    if (cap < total) {
        *written = total;
        return SP_NO_SPACE;
    }
    if (sp_payload_check(payload, payload_len, &op_count) != SP_OK)
        return SP_BAD_PAYLOAD;

    /* memmove: a caller may have built the payload in place after the header. */
    memmove(out + SP_RECORD_HEADER_SIZE, payload, payload_len);
    store_u32(out + 4, (uint32_t)payload_len);
    store_u64(out + 8, lsn);
    store_u64(out + 16, time_ns);
    store_u64(out + 24, durable_lsn);
    store_u32(out, sp_crc32c(seed, out + 4, total - 4));
    *written = total;
    return SP_OK;
}

/* ---- scan ---------------------------------------------------------------- */

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

static int record_crc_ok(const uint8_t *rec, uint32_t length, uint32_t seed)
{
    size_t covered = (size_t)SP_RECORD_HEADER_SIZE - 4 + length;
    return sp_crc32c(seed, rec + 4, covered) == load_u32(rec);
}

int sp_scan(const uint8_t *buf, size_t len, uint32_t seed, uint64_t expect_lsn,
            sp_record *out, size_t out_cap, sp_scan_result *res)
{
    size_t off = 0;
    size_t count = 0;
    int status;

    for (;;) {
        size_t left = len - off;

        /* Rule 1: the end of the written log. */
        if (left < SP_RECORD_HEADER_SIZE) {
            status = SP_END;
            break;
        }
        const uint8_t *rec = buf + off;
        if (all_zero(rec, SP_RECORD_HEADER_SIZE)) {
            status = SP_ZERO;
            break;
        }
        if (count == out_cap) {
            status = SP_OK;
            break;
        }
        uint32_t length = load_u32(rec + 4);
        uint64_t lsn = load_u64(rec + 8);
        uint32_t op_count;

        /* Rule 2, before the length is used to index anything. */
        if (length < SP_MIN_PAYLOAD_SIZE || length > SP_MAX_PAYLOAD_SIZE) {
            status = SP_BAD_LENGTH;
            break;
        }
        /* Rule 3: left >= the header size here, so this cannot wrap. */
        if (length > left - SP_RECORD_HEADER_SIZE) {
            status = SP_TRUNCATED;
            break;
        }
        if (!record_crc_ok(rec, length, seed)) { /* rule 4 */
            status = SP_BAD_CRC;
            break;
        }
        if (lsn != expect_lsn) { /* rule 5 */
            status = SP_BAD_LSN;
            break;
        }
        if (sp_payload_check(rec + SP_RECORD_HEADER_SIZE, length, &op_count) !=
            SP_OK) { /* rule 6 */
            status = SP_BAD_PAYLOAD;
            break;
        }

        out[count].offset = off;
        out[count].lsn = lsn;
        out[count].time_ns = load_u64(rec + 16);
        out[count].durable_lsn = load_u64(rec + 24);
        out[count].length = (uint32_t)(SP_RECORD_HEADER_SIZE + length);
        out[count].op_count = op_count;
        count++;
        off += SP_RECORD_HEADER_SIZE + (size_t)length;
        expect_lsn++;
    }

    res->status = status;
    res->offset = off;
    res->next_lsn = expect_lsn;
    res->count = count;
    return status;
}

/* ---- resynchronisation --------------------------------------------------- */

/* A window of 2^32 LSNs above min_lsn: a record further ahead than that
 * cannot belong to this log (it would take centuries to write), so random
 * bytes whose "lsn" lands there are skipped without computing a CRC. */
#define SP_LSN_WINDOW ((uint64_t)1 << 32)

int sp_find_valid(const uint8_t *buf, size_t len, uint32_t seed,
                  uint64_t min_lsn, uint64_t *offset, uint64_t *lsn)
{
    if (len < SP_RECORD_HEADER_SIZE)
        return SP_END;
    size_t last = len - SP_RECORD_HEADER_SIZE;

    for (size_t off = 0; off <= last; off++) {
        const uint8_t *rec = buf + off;
        uint32_t length = load_u32(rec + 4);
        uint64_t rec_lsn;
        uint32_t op_count;

        /* Cheap prefilter first: at almost every offset of damaged or
         * foreign bytes one of these fails, and no CRC is computed. */
        if (length < SP_MIN_PAYLOAD_SIZE || length > SP_MAX_PAYLOAD_SIZE ||
            length > last - off)
            continue;
        rec_lsn = load_u64(rec + 8);
        if (rec_lsn < min_lsn || rec_lsn - min_lsn >= SP_LSN_WINDOW)
            continue;
        if (!record_crc_ok(rec, length, seed))
            continue;
        if (sp_payload_check(rec + SP_RECORD_HEADER_SIZE, length, &op_count) !=
            SP_OK)
            continue;
        *offset = off;
        *lsn = rec_lsn;
        return SP_OK;
    }
    return SP_END;
}
