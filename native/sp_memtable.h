/* sp_memtable.h -- the native memtable's data layout and internal API, shared
 * by sp_memtable.c (the Python type), sp_memtable_table.c (chunks, the hash
 * index, payload parsing), sp_memtable_order.c (the sorted order) and
 * sp_memtable_iter.c (the ordered reads).  See sp_memtable.c for the design. */
#ifndef SP_MEMTABLE_H
#define SP_MEMTABLE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TOMB UINT32_MAX /* value length of a tombstone */
#define NONE32 UINT32_MAX
#define OFF_BITS 48
#define OFF_MASK ((UINT64_C(1) << OFF_BITS) - 1)
#define MAX_ENTRIES (UINT32_MAX - 1)

typedef struct {
    uint64_t offk;  /* key offset in its chunk (low 48 bits) | key_len << 48 */
    uint32_t chunk;
    uint32_t vlen;  /* TOMB for a delete */
} Entry;

typedef struct {
    const uint8_t *base;
    PyObject *owner;  /* a bytes payload (apply_commit), or NULL */
    Py_buffer *view;  /* apply_records' buffer, or NULL; neither: PyMem block */
    size_t size;      /* bytes this chunk keeps alive */
    uint32_t live;    /* entries pointing here (+1 while being filled) */
    uint32_t next;    /* free list / dying list link */
} Chunk;

/* Allocated with PyMem_RawMalloc (it may be built without the GIL) and
 * freed by mt_order_decref with PyMem_RawFree; refs changes only under the
 * GIL. */
typedef struct {
    Py_ssize_t refs;
    uint32_t n;
    uint32_t idx[];
} Order;

typedef struct {
    uint32_t idx1; /* entry index + 1; 0: empty */
    uint32_t hash;
} Slot;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    uint32_t count, cap;
    Slot *slots;
    size_t mask;  /* slots: mask + 1 */
    void *slots_map;     /* the mapping slots live in (mt_slots_alloc), or NULL */
    size_t slots_map_len;
    Chunk *chunks;
    uint32_t nchunks, chunks_cap, free_head, dying_head;
    size_t chunk_bytes;
    uint32_t arena;    /* the chunk small commits are copied into, or NONE32 */
    size_t arena_used; /* bytes of it filled */
    Order *order;
    unsigned long long last_lsn;
    int frozen;      /* writes refused (freeze()/thaw()) */
    uint32_t sorters; /* threads building an Order without the GIL; only
                       * changed and read under the GIL */
} Table;

static inline uint32_t rd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline size_t klen_of(const Entry *e) { return (size_t)(e->offk >> OFF_BITS); }

static inline const uint8_t *key_of(const Table *t, const Entry *e)
{
    return t->chunks[e->chunk].base + (e->offk & OFF_MASK);
}

static inline int cmp_keys(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return (an > bn) - (an < bn);
}

static inline PyObject *value_of(const Table *t, const Entry *e)
{
    if (e->vlen == TOMB)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)key_of(t, e) + klen_of(e), e->vlen);
}

/* sp_memtable_table.c: the data structure.  Every call needs the GIL. */

#define ARENA_MAX_PAYLOAD ((size_t)256) /* larger payloads are kept by reference */

/* Seed the key hash from os.urandom; once, at module init.  -1 with an
 * exception. */
int mt_seed_key_hash(void);
/* A new chunk over base[0..size) (size: the bytes it keeps alive), pinned
 * until mt_finish_write; NONE32 with MemoryError.  On failure the caller
 * still owns owner/view/memory; once it succeeds, mt_sweep releases them
 * (for owner, one reference the caller gives it). */
uint32_t mt_chunk_new(Table *t, const uint8_t *base, size_t size, PyObject *owner,
                      Py_buffer *view);
/* Release every chunk whose last entry went (may run Python code). */
/* A zeroed index of cap slots: a large one in its own mapping (*map,
 * *map_len) with transparent huge pages asked for (see
 * sp_memtable_table.c), a small one from PyMem (*map NULL).  NULL (and a
 * MemoryError) if out of memory.  mt_slots_free gives it back. */
Slot *mt_slots_alloc(size_t cap, void **map, size_t *map_len);
void mt_slots_free(Slot *slots, void *map, size_t map_len);
void mt_sweep(Table *t);
/* Point the key at chunk c + off (klen bytes, its value right after; vlen
 * TOMB for a delete).  -1 with MemoryError/OverflowError, table consistent. */
int mt_table_set(Table *t, uint32_t c, uint64_t off, size_t klen, uint32_t vlen);
/* The entry of key (a checked bytes key), or NULL. */
const Entry *mt_lookup_entry(const Table *t, PyObject *key);
/* 0 if p[0..len) is exactly one well-formed payload, else -1 with a
 * ValueError naming offsets from `where`. */
int mt_check_payload(const uint8_t *p, size_t len, size_t where);
/* 0 if p[start..stop) is whole records (headers and payloads), each
 * checked as mt_check_payload; else -1 with a ValueError. */
int mt_check_records(const uint8_t *p, size_t start, size_t stop);
/* Apply the checked payload at off in chunk c.  -1 as mt_table_set. */
int mt_apply_payload(Table *t, uint32_t c, size_t off);
/* Room for len <= ARENA_MAX_PAYLOAD bytes: the arena chunk, pinned, with the
 * offset in *off; NONE32 with MemoryError. */
uint32_t mt_arena_alloc(Table *t, size_t len, size_t *off);
/* Drop the pin on chunk c (if not NONE32) and release what died. */
void mt_finish_write(Table *t, uint32_t c);

/* sp_memtable_order.c: the sorted order. */

/* The sorted order of every entry (borrowed from t; NULL + MemoryError).
 * Called with the GIL, by a caller holding a reference to t; on a frozen
 * table it releases the GIL while it sorts (sp_memtable_order.c). */
Order *mt_ordered(Table *t);
void mt_order_decref(Order *o);
/* First position in o whose key is >= k[0..n). */
uint32_t mt_lower_bound(const Table *t, const Order *o, const uint8_t *k, size_t n);


/* sp_memtable_iter.c: the ordered reads. */
extern PyTypeObject mt_ItemsIterType, mt_FoldIterType;
PyObject *mt_items(Table *t, PyObject *args, PyObject *kwds);
PyObject *mt_snapshot(Table *t, PyObject *args, PyObject *kwds);
PyObject *mt_fold_batches(Table *t, PyObject *step);

#endif
