/* sp_memtable_order.c -- the native memtable's key order, built on demand.
 *
 * Entries past the sorted prefix are sorted, then merged into a new Order
 * (an Order is never changed in place: iterators may hold it).
 *
 * The sort is an MSD radix sort on 8-byte windows: the keys of a range share
 * their first `depth` bytes; the common prefix of the range is skipped, the
 * next 8 bytes (big-endian, zero padded) become a uint64 sorted by an LSD
 * radix pass over its bytes that vary, and each run of equal windows is
 * sorted again 8 bytes deeper.  Keys that end inside an equal window are
 * prefixes of the others and differ only in length.  So keys of one shape
 * with a long shared prefix (b"key%013d") cost one radix sort of integers,
 * and memcmp runs only on small ranges.
 */

#include "sp_memtable.h"

typedef struct {
    uint64_t k;        /* 8 bytes at the current depth, big-endian */
    const uint8_t *p;  /* the key */
    uint32_t len;
    uint32_t idx;      /* entry index */
} Pair;

#define SMALL 16

static inline int cmp_from(const Pair *a, const Pair *b, size_t depth)
{
    size_t m = a->len < b->len ? a->len : b->len;
    if (m > depth) {
        int c = memcmp(a->p + depth, b->p + depth, m - depth);
        if (c)
            return c;
    }
    return (a->len > b->len) - (a->len < b->len);
}

static void insertion_sort(Pair *a, size_t n, size_t depth)
{
    for (size_t i = 1; i < n; i++) {
        Pair x = a[i];
        size_t j = i;
        while (j > 0 && cmp_from(&a[j - 1], &x, depth) > 0) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

static void radix_sort(Pair *a, Pair *tmp, size_t n)
{
    size_t cnt[8][256];
    memset(cnt, 0, sizeof(cnt));
    for (size_t i = 0; i < n; i++) {
        uint64_t k = a[i].k;
        for (int b = 0; b < 8; b++)
            cnt[b][(k >> (8 * b)) & 255]++;
    }
    Pair *src = a, *dst = tmp;
    for (int b = 0; b < 8; b++) {
        size_t *c = cnt[b];
        size_t first = (src[0].k >> (8 * b)) & 255;
        if (c[first] == n)
            continue; /* every key has this byte */
        size_t sum = 0;
        for (int v = 0; v < 256; v++) {
            size_t x = c[v];
            c[v] = sum;
            sum += x;
        }
        for (size_t i = 0; i < n; i++)
            dst[c[(src[i].k >> (8 * b)) & 255]++] = src[i];
        Pair *s = src;
        src = dst;
        dst = s;
    }
    if (src != a)
        memcpy(a, src, n * sizeof(Pair));
}

static inline uint64_t window(const Pair *x, size_t depth)
{
    if (x->len >= depth + 8) {
        uint64_t v;
        memcpy(&v, x->p + depth, 8);
        return __builtin_bswap64(v);
    }
    uint64_t k = 0;
    for (size_t j = depth; j < x->len; j++)
        k |= (uint64_t)x->p[j] << (56 - 8 * (j - depth));
    return k;
}

/* Sort a[0..n), whose keys all share their first `depth` bytes. */
static void sort_range(Pair *a, Pair *tmp, size_t n, size_t depth)
{
    if (n <= SMALL) {
        insertion_sort(a, n, depth);
        return;
    }
    /* Skip the range's common prefix. */
    size_t lcp = a[0].len - depth;
    for (size_t i = 1; i < n && lcp; i++) {
        size_t lim = a[i].len - depth < lcp ? a[i].len - depth : lcp;
        size_t j = 0;
        while (j < lim && a[0].p[depth + j] == a[i].p[depth + j])
            j++;
        lcp = j;
    }
    depth += lcp;
    for (size_t i = 0; i < n; i++)
        a[i].k = window(&a[i], depth);
    radix_sort(a, tmp, n);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && a[j].k == a[i].k)
            j++;
        if (j - i > 1) {
            /* Keys ending inside the window come first, shortest first. */
            size_t ended = i;
            for (size_t x = i; x < j; x++) {
                if (a[x].len <= depth + 8) {
                    Pair s = a[x];
                    a[x] = a[ended];
                    a[ended++] = s;
                }
            }
            insertion_sort(a + i, ended - i, depth);
            sort_range(a + ended, tmp + ended, j - ended, depth + 8);
        }
        i = j;
    }
}

static void key_at(const Table *t, uint32_t idx, const uint8_t **p, size_t *n)
{
    const Entry *e = &t->entries[idx];
    *p = key_of(t, e);
    *n = klen_of(e);
}

uint32_t mt_lower_bound(const Table *t, const Order *o, const uint8_t *k, size_t n)
{
    uint32_t lo = 0, hi = o->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const uint8_t *p;
        size_t pn;
        key_at(t, o->idx[mid], &p, &pn);
        if (cmp_keys(p, pn, k, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static uint32_t bound_in(const Table *t, const uint32_t *idx, uint32_t lo, uint32_t hi,
                         const Pair *x)
{
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const uint8_t *p;
        size_t pn;
        key_at(t, idx[mid], &p, &pn);
        if (cmp_keys(p, pn, x->p, x->len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* out = old (n0, sorted) merged with nw (m, sorted); keys are distinct. */
static void merge(const Table *t, const uint32_t *old, uint32_t n0, const Pair *nw, uint32_t m,
                  uint32_t *out)
{
    uint32_t i = 0, k = 0;
    if ((uint64_t)m * 32 < n0) {
        /* Few new keys: find each one's place by bisection, copy blocks. */
        for (uint32_t j = 0; j < m; j++) {
            uint32_t pos = bound_in(t, old, i, n0, &nw[j]);
            memcpy(out + k, old + i, (size_t)(pos - i) * sizeof(uint32_t));
            k += pos - i;
            i = pos;
            out[k++] = nw[j].idx;
        }
    } else {
        uint32_t j = 0;
        while (i < n0 && j < m) {
            const uint8_t *p;
            size_t pn;
            key_at(t, old[i], &p, &pn);
            if (cmp_keys(p, pn, nw[j].p, nw[j].len) < 0)
                out[k++] = old[i++];
            else
                out[k++] = nw[j++].idx;
        }
        while (j < m)
            out[k++] = nw[j++].idx;
    }
    if (i < n0) /* old is NULL when n0 is 0: memcpy must not see it */
        memcpy(out + k, old + i, (size_t)(n0 - i) * sizeof(uint32_t));
}

void mt_order_decref(Order *o)
{
    if (o && --o->refs == 0)
        PyMem_RawFree(o);
}

/* The Order of entries [0, count) of t: old (the sorted prefix [0, old->n),
 * or NULL) merged with the rest, sorted; NULL for want of memory (no
 * exception set).  Touches no Python object and allocates only with the Raw
 * allocator (pymalloc needs the GIL; Raw is thread-safe and tracemalloc
 * still sees it), so it may run without the GIL. */
static Order *build(const Table *t, const Order *old, uint32_t count)
{
    uint32_t n0 = old ? old->n : 0;
    uint32_t m = count - n0;
    Order *o = PyMem_RawMalloc(sizeof(Order) + (size_t)count * sizeof(uint32_t));
    Pair *a = PyMem_RawMalloc((size_t)m * sizeof(Pair) + 1);
    Pair *tmp = PyMem_RawMalloc((size_t)m * sizeof(Pair) + 1);
    if (!o || !a || !tmp) {
        PyMem_RawFree(o);
        PyMem_RawFree(a);
        PyMem_RawFree(tmp);
        return NULL;
    }
    for (uint32_t i = 0; i < m; i++) {
        const Entry *e = &t->entries[n0 + i];
        a[i].p = key_of(t, e);
        a[i].len = (uint32_t)klen_of(e);
        a[i].idx = n0 + i;
    }
    sort_range(a, tmp, m, 0);
    o->refs = 1;
    o->n = count;
    merge(t, old ? old->idx : NULL, n0, a, m, o->idx);
    PyMem_RawFree(a);
    PyMem_RawFree(tmp);
    return o;
}

/* Fewer new entries than this are sorted holding the GIL even when frozen:
 * handing the GIL over and waiting to get it back (up to the interpreter's
 * 5 ms switch interval if another thread took it) costs more than the
 * sort. */
#define NOGIL_MIN 4096

/* Sorting a frozen table without the GIL.  A checkpoint folds the frozen
 * memtable while writers commit into the new one; sorting 300k entries takes
 * ~30 ms, which must not stall them (SPEC 3.6: writers wait only for the
 * swap).  Why it is safe:
 *
 * - Frozen means every write (put, update, apply_commit, apply_records) is
 *   refused, and only writes change entries, chunks or slots, or release a
 *   chunk's buffer; so the arrays build() reads stay put.  Other threads
 *   may meanwhile get/lookup/iterate, which only read them, or build an
 *   Order of their own (below).
 * - thaw() waits, with the GIL released, until `sorters` is 0 before it
 *   lets writes in (sp_memtable.c).  The count changes only under the GIL,
 *   in the same GIL hold as the frozen check, so no sort can start between
 *   thaw's last look and its clearing the flag.  The wait ends: while frozen
 *   the table does not grow, so once any sorter installs its Order every
 *   later mt_ordered returns it without sorting.
 * - The sorted prefix `old` is pinned (refs++ under the GIL) before the GIL
 *   goes and unpinned after it is back: another thread may meanwhile install
 *   a newer Order and drop the table's reference to `old`.
 * - Two threads may sort the same table at once (a checkpoint's fold and a
 *   user's items()): each builds its own Order; back under the GIL, the
 *   first to look installs its Order and a later one finding the table's
 *   Order complete frees its own and returns that one.  No lock is taken,
 *   so nothing can deadlock against the GIL.
 * - Orders are allocated and freed with the Raw allocator, whichever path
 *   built them, so an Order built here may be freed by any decref.
 * - t stays alive: the caller holds a reference (a method's self, or an
 *   iterator's table). */
Order *mt_ordered(Table *t)
{
    Order *old = t->order;
    uint32_t count = t->count;
    if (old && old->n == count)
        return old;
    Order *o;
    if (!t->frozen || count - (old ? old->n : 0) < NOGIL_MIN) {
        /* Writers may run between our calls but not during this one. */
        o = build(t, old, count);
        if (!o) {
            PyErr_NoMemory();
            return NULL;
        }
    } else {
        if (old)
            old->refs++;
        t->sorters++;
        Py_BEGIN_ALLOW_THREADS
        o = build(t, old, count);
        Py_END_ALLOW_THREADS
        t->sorters--;
        mt_order_decref(old);
        if (!o) {
            PyErr_NoMemory();
            return NULL;
        }
        if (t->order && t->order->n >= count) {
            /* Another thread installed its Order while we sorted. */
            mt_order_decref(o);
            return t->order;
        }
    }
    mt_order_decref(t->order);
    t->order = o;
    return o;
}
