/* sp_memtable_table.c -- the native memtable's data structure: chunks (the
 * retained buffers entries point into, and the arena), the hash index from
 * key to entry, and the parsing of commit payloads into both.
 *
 * sp_memtable.c describes the layout and why it is so; its Python type
 * validates arguments and calls in here.  Every function runs with the GIL
 * held and runs no Python code, but for mt_seed_key_hash (module init) and
 * mt_sweep: releasing buffers and references may run finalizers, so a write
 * sweeps last, once the table is consistent (mt_finish_write).
 */

#include "sp_memtable.h"

#include <stdint.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "sp_core.h"

static uint64_t hash_seed;

/* --- key hashing --------------------------------------------------------- */

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* wyhash-style multiply-mix, seeded per process (os.urandom) against
 * chosen-key collisions. */
static uint32_t key_hash(const uint8_t *p, size_t n)
{
    uint64_t h = hash_seed ^ ((uint64_t)n * UINT64_C(0x9E3779B97F4A7C15));
    while (n > 8) {
        h = mix(h ^ rd64(p), UINT64_C(0xA0761D6478BD642F));
        p += 8;
        n -= 8;
    }
    uint64_t t = 0;
    memcpy(&t, p, n);
    h = mix(h ^ t, UINT64_C(0xE7037ED1A0B428DB));
    h = mix(h, UINT64_C(0x8EBC6AF09C88C6E3));
    return (uint32_t)(h ^ (h >> 32));
}

int mt_seed_key_hash(void)
{
    PyObject *os = PyImport_ImportModule("os");
    if (!os)
        return -1;
    PyObject *seed = PyObject_CallMethod(os, "urandom", "i", 8);
    Py_DECREF(os);
    if (!seed)
        return -1;
    memcpy(&hash_seed, PyBytes_AS_STRING(seed), 8);
    Py_DECREF(seed);
    return 0;
}

/* --- chunks -------------------------------------------------------------- */

/* A new chunk, pinned (live = 1) until the caller's mt_finish_write.
 * Steals nothing: on failure the caller still owns owner/view/memory. */
uint32_t mt_chunk_new(Table *t, const uint8_t *base, size_t size, PyObject *owner,
                      Py_buffer *view)
{
    uint32_t c = t->free_head;
    if (c != NONE32) {
        t->free_head = t->chunks[c].next;
    } else {
        if (t->nchunks == t->chunks_cap) {
            if (t->chunks_cap >= NONE32 / 2) {
                PyErr_NoMemory();
                return NONE32;
            }
            uint32_t cap = t->chunks_cap ? t->chunks_cap * 2 : 16;
            Chunk *ch = PyMem_Realloc(t->chunks, (size_t)cap * sizeof(Chunk));
            if (!ch) {
                PyErr_NoMemory();
                return NONE32;
            }
            t->chunks = ch;
            t->chunks_cap = cap;
        }
        c = t->nchunks++;
    }
    Chunk *ch = &t->chunks[c];
    ch->base = base;
    ch->owner = owner;
    ch->view = view;
    ch->size = size;
    ch->live = 1;
    ch->next = NONE32;
    t->chunk_bytes += size;
    return c;
}

static inline void chunk_unref(Table *t, uint32_t c)
{
    Chunk *ch = &t->chunks[c];
    if (--ch->live == 0) {
        ch->next = t->dying_head;
        t->dying_head = c;
    }
}

/* Release every chunk whose last entry went.  Runs only when the table is
 * consistent: releasing a buffer or a reference may run Python code. */
void mt_sweep(Table *t)
{
    while (t->dying_head != NONE32) {
        uint32_t c = t->dying_head;
        Chunk *ch = &t->chunks[c];
        t->dying_head = ch->next;
        PyObject *owner = ch->owner;
        Py_buffer *view = ch->view;
        void *mem = (owner || view) ? NULL : (void *)ch->base;
        t->chunk_bytes -= ch->size;
        ch->base = NULL;
        ch->owner = NULL;
        ch->view = NULL;
        ch->size = 0;
        ch->next = t->free_head;
        t->free_head = c;
        PyMem_Free(mem);
        if (view) {
            PyBuffer_Release(view);
            PyMem_Free(view);
        }
        Py_XDECREF(owner);
    }
}

/* --- the hash index ------------------------------------------------------ */

static Slot *find_slot(const Table *t, const uint8_t *k, size_t n, uint32_t h)
{
    size_t i = h & t->mask;
    for (;;) {
        Slot *s = &t->slots[i];
        if (s->idx1 == 0)
            return s;
        if (s->hash == h) {
            const Entry *e = &t->entries[s->idx1 - 1];
            if (klen_of(e) == n && memcmp(key_of(t, e), k, n) == 0)
                return s;
        }
        i = (i + 1) & t->mask;
    }
}

/* A large index is probed at random: with 4 KiB pages nearly every probe
 * of a table of tens of MB misses the TLB, and growing it first-touches
 * every page.  In a mapping of its own, 2 MiB-aligned, with huge pages
 * asked for (MADV_HUGEPAGE: honoured where transparent huge pages are
 * "always" or "madvise", ignored elsewhere), both shrink by 512x. */
#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_SLOTS_BYTES ((size_t)4 << 20)

Slot *mt_slots_alloc(size_t cap, void **map, size_t *map_len)
{
    size_t bytes = cap * sizeof(Slot);
    *map = NULL;
    *map_len = 0;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= HUGE_SLOTS_BYTES) {
        size_t len = bytes + HUGE_PAGE;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            uintptr_t at = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
            (void)madvise((void *)at, bytes, MADV_HUGEPAGE); /* advice: may be refused */
            *map = p;
            *map_len = len;
            return (Slot *)at; /* anonymous memory reads as zeros */
        }
    }
#endif
    Slot *slots = PyMem_Calloc(cap, sizeof(Slot));
    if (!slots)
        PyErr_NoMemory();
    return slots;
}

void mt_slots_free(Slot *slots, void *map, size_t map_len)
{
    if (map != NULL)
        munmap(map, map_len);
    else
        PyMem_Free(slots);
}

static int grow_slots(Table *t)
{
    size_t cap = (t->mask + 1) * 2;
    void *map;
    size_t map_len;
    Slot *slots = mt_slots_alloc(cap, &map, &map_len);
    if (!slots)
        return -1;
    size_t mask = cap - 1;
    for (size_t i = 0; i <= t->mask; i++) {
        Slot s = t->slots[i];
        if (s.idx1) {
            size_t j = s.hash & mask;
            while (slots[j].idx1)
                j = (j + 1) & mask;
            slots[j] = s;
        }
    }
    mt_slots_free(t->slots, t->slots_map, t->slots_map_len);
    t->slots = slots;
    t->slots_map = map;
    t->slots_map_len = map_len;
    t->mask = mask;
    return 0;
}

/* Room for one more entry (array and index, load <= 3/4). */
static int reserve_one(Table *t)
{
    if (t->count >= MAX_ENTRIES) {
        PyErr_SetString(PyExc_OverflowError, "memtable is full (2^32 - 2 keys)");
        return -1;
    }
    if (t->count == t->cap) {
        uint64_t cap = t->cap ? (uint64_t)t->cap + t->cap / 2 : 16;
        if (cap > MAX_ENTRIES)
            cap = MAX_ENTRIES;
        Entry *e = PyMem_Realloc(t->entries, (size_t)cap * sizeof(Entry));
        if (!e) {
            PyErr_NoMemory();
            return -1;
        }
        t->entries = e;
        t->cap = (uint32_t)cap;
    }
    if (((size_t)t->count + 1) * 4 > (t->mask + 1) * 3)
        return grow_slots(t);
    return 0;
}

/* Point key (at chunk c, offset off) at the value that follows it.  Fails
 * only for want of memory, with the table consistent. */
static int table_set_hashed(Table *t, uint32_t c, uint64_t off, size_t klen, uint32_t vlen,
                            uint32_t h)
{
    const uint8_t *k = t->chunks[c].base + off;
    Slot *s = find_slot(t, k, klen, h);
    uint64_t offk = off | ((uint64_t)klen << OFF_BITS);
    if (s->idx1) {
        Entry *e = &t->entries[s->idx1 - 1];
        uint32_t old = e->chunk;
        e->offk = offk;
        e->chunk = c;
        e->vlen = vlen;
        t->chunks[c].live++;
        chunk_unref(t, old);
        return 0;
    }
    if (((size_t)t->count + 1) * 4 > (t->mask + 1) * 3 || t->count == t->cap) {
        if (reserve_one(t) < 0)
            return -1;
        s = find_slot(t, k, klen, h);
    }
    uint32_t i = t->count++;
    t->entries[i].offk = offk;
    t->entries[i].chunk = c;
    t->entries[i].vlen = vlen;
    t->chunks[c].live++;
    s->idx1 = i + 1;
    s->hash = h;
    return 0;
}

int mt_table_set(Table *t, uint32_t c, uint64_t off, size_t klen, uint32_t vlen)
{
    return table_set_hashed(t, c, off, klen, vlen, key_hash(t->chunks[c].base + off, klen));
}

const Entry *mt_lookup_entry(const Table *t, PyObject *key)
{
    const uint8_t *k = (const uint8_t *)PyBytes_AS_STRING(key);
    size_t n = (size_t)PyBytes_GET_SIZE(key);
    Slot *s = find_slot(t, k, n, key_hash(k, n));
    return s->idx1 ? &t->entries[s->idx1 - 1] : NULL;
}

/* --- payloads ------------------------------------------------------------ */

/* Check that p[0..len) is exactly one payload (docs/format.md) whose keys
 * are 1..511 bytes; `where` is its offset in the caller's buffer, for the
 * message. */
int mt_check_payload(const uint8_t *p, size_t len, size_t where)
{
    if (len < 4) {
        PyErr_Format(PyExc_ValueError, "payload at offset %zu: %zu bytes, no op count", where,
                     len);
        return -1;
    }
    uint32_t count = rd_le32(p);
    size_t pos = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < SP_OP_HEADER_SIZE) {
            PyErr_Format(PyExc_ValueError,
                         "payload at offset %zu: op %u of %u at offset %zu: header runs past "
                         "the payload",
                         where, i, count, where + pos);
            return -1;
        }
        unsigned kind = p[pos];
        size_t klen = (size_t)p[pos + 1] | (size_t)p[pos + 2] << 8;
        size_t vlen = rd_le32(p + pos + 3);
        const char *why = NULL;
        if (kind != SP_OP_PUT && kind != SP_OP_DELETE)
            why = "unknown op kind";
        else if (kind == SP_OP_DELETE && vlen)
            why = "a delete with a value";
        else if (klen < 1 || klen > SP_MAX_KEY_SIZE)
            why = "key length not in 1..511";
        else if (klen + vlen > len - pos - SP_OP_HEADER_SIZE)
            why = "key or value runs past the payload";
        if (why) {
            PyErr_Format(PyExc_ValueError, "payload at offset %zu: op %u at offset %zu: %s",
                         where, i, where + pos, why);
            return -1;
        }
        pos += SP_OP_HEADER_SIZE + klen + vlen;
    }
    if (pos != len) {
        PyErr_Format(PyExc_ValueError,
                     "payload at offset %zu: %zu bytes left over at offset %zu after %u ops",
                     where, len - pos, where + pos, count);
        return -1;
    }
    return 0;
}

/* Check the whole records in p[start..stop). */
int mt_check_records(const uint8_t *p, size_t start, size_t stop)
{
    size_t pos = start;
    while (pos < stop) {
        if (stop - pos < SP_RECORD_HEADER_SIZE) {
            PyErr_Format(PyExc_ValueError,
                         "record at offset %zu: header runs past the span end %zu", pos, stop);
            return -1;
        }
        size_t length = rd_le32(p + pos + 4);
        if (length > stop - pos - SP_RECORD_HEADER_SIZE) {
            PyErr_Format(PyExc_ValueError,
                         "record at offset %zu: payload of %zu bytes runs past the span end %zu",
                         pos, length, stop);
            return -1;
        }
        size_t at = pos + SP_RECORD_HEADER_SIZE;
        if (mt_check_payload(p + at, length, at) < 0)
            return -1;
        pos += SP_RECORD_HEADER_SIZE + length;
    }
    return 0;
}

/* Apply a payload already checked by mt_check_payload, at `off` in chunk c. */
int mt_apply_payload(Table *t, uint32_t c, size_t off)
{
    /* Inserting many keys is memory-bound (each probes a random slot of a
     * large table): hash PREFETCH_AHEAD ops ahead and prefetch their slots,
     * so the cache misses overlap.  A prefetch is only a hint: one made
     * before the slots array grew touches nothing it should not. */
    enum { PREFETCH_AHEAD = 8 };
    uint32_t hashes[PREFETCH_AHEAD];
    const uint8_t *base = t->chunks[c].base;
    uint32_t count = rd_le32(base + off);
    size_t pos = off + 4, ahead_pos = pos;
    uint32_t ahead = 0;
    for (uint32_t i = 0; i < count; i++) {
        for (; ahead < count && ahead < i + PREFETCH_AHEAD; ahead++) {
            const uint8_t *h = base + ahead_pos;
            size_t klen = (size_t)h[1] | (size_t)h[2] << 8;
            uint32_t hash = key_hash(h + SP_OP_HEADER_SIZE, klen);
            hashes[ahead % PREFETCH_AHEAD] = hash;
            __builtin_prefetch(&t->slots[hash & t->mask]);
            ahead_pos += SP_OP_HEADER_SIZE + klen + rd_le32(h + 3);
        }
        const uint8_t *h = base + pos;
        size_t klen = (size_t)h[1] | (size_t)h[2] << 8;
        uint32_t vlen = rd_le32(h + 3);
        pos += SP_OP_HEADER_SIZE;
        if (table_set_hashed(t, c, pos, klen, h[0] == SP_OP_PUT ? vlen : TOMB,
                             hashes[i % PREFETCH_AHEAD]) < 0)
            return -1;
        pos += klen + vlen;
    }
    return 0;
}

#define ARENA_BYTES ((size_t)64 * 1024)

/* Room for len (<= ARENA_MAX_PAYLOAD) bytes in the arena, a new one if the
 * current one is full: its chunk, pinned for the caller's write, and the
 * offset in *off; NONE32 with MemoryError.  The current arena holds a pin of
 * its own, dropped when a new one replaces it, so it can die only then. */
uint32_t mt_arena_alloc(Table *t, size_t len, size_t *off)
{
    if (t->arena == NONE32 || t->arena_used + len > ARENA_BYTES) {
        uint8_t *mem = PyMem_Malloc(ARENA_BYTES);
        if (!mem) {
            PyErr_NoMemory();
            return NONE32;
        }
        uint32_t c = mt_chunk_new(t, mem, ARENA_BYTES, NULL, NULL);
        if (c == NONE32) {
            PyMem_Free(mem);
            return NONE32;
        }
        if (t->arena != NONE32)
            chunk_unref(t, t->arena);
        t->arena = c;
        t->arena_used = 0;
    }
    *off = t->arena_used;
    t->arena_used += len;
    t->chunks[t->arena].live++;
    return t->arena;
}

/* End a write that filled chunk c: drop its pin, release what died. */
void mt_finish_write(Table *t, uint32_t c)
{
    if (c != NONE32)
        chunk_unref(t, c);
    mt_sweep(t);
}
