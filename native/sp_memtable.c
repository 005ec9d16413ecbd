/* sp_memtable.c -- safepoint._sp_memtable.NativeMemtable, the native memtable.
 *
 * The API and its contract are those of safepoint.memtable.Memtable (the
 * Python oracle); docs/design.md "The memtable" says why this exists.
 *
 * Files.  This one is the Python type: argument checks, the write methods,
 * freeze/thaw, point reads, module init.  sp_memtable_table.c holds the data
 * structure (chunks, the arena, the hash index, payload parsing),
 * sp_memtable_order.c the sorted order, sp_memtable_iter.c the ordered
 * reads; sp_memtable.h declares what they share.
 *
 * Layout.  Keys and values are never copied into per-entry objects: every
 * entry points into a retained buffer, a *chunk*: the bytes payload of
 * apply_commit (a reference), the buffer of apply_records (a Py_buffer on a
 * bytes object or recovery's mmap), or one PyMem block of keys and values
 * per put/update call.  A small commit's payload (db.put's) is copied into
 * an *arena* chunk instead, 64 KiB shared by many commits: a bytes object and
 * a chunk per 100-byte put would cost more than the put itself (2.18 bytes
 * held per payload byte, against 1.3 in the arena).  In every op the value follows the key, so an entry
 * is (chunk, offset of its key, key length, value length).  An overwrite
 * points the entry at the new op; each chunk counts its live entries and is
 * released when that reaches 0, so rewriting one key forever holds one chunk.
 *
 * The entries array is in insertion order and never shrinks (a delete is a
 * tombstone), so, as in the oracle, the sorted order covers a prefix of it
 * and an ordered read sorts only the entries past that prefix, then merges.
 * A sorted array (Order) is refcounted: iterators hold one, and it is never
 * changed in place.
 *
 * Concurrency: every method holds the GIL and never releases it, with one
 * exception: an ordered read of a *frozen* table (freeze(), a checkpoint's)
 * sorts without the GIL, reading arrays that no write may change while it
 * is frozen (sp_memtable_order.c, mt_ordered, says why that is safe;
 * thaw() waits for such sorts to end).  Writers
 * parse and validate everything, and allocate Python objects, before they
 * change anything, so no Python code (which could switch threads or re-enter)
 * runs while the table is half-updated; buffers a write frees are released
 * only once the table is consistent again (mt_sweep()).  Readers re-fetch raw
 * pointers after each allocation of a GC-tracked object (which may run
 * finalizers, hence other threads' writes).
 */

#include "sp_memtable.h"

#include <structmember.h>
#include <time.h>

#include "sp_core.h"

static PyTypeObject TableType;

/* --- argument checks ----------------------------------------------------- */

static int check_key(PyObject *key)
{
    if (!PyBytes_Check(key)) {
        PyErr_Format(PyExc_TypeError, "key must be bytes, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(key);
    if (n < 1 || n > SP_MAX_KEY_SIZE) {
        PyErr_Format(PyExc_ValueError, "key must be 1..%d bytes, got %zd", SP_MAX_KEY_SIZE, n);
        return -1;
    }
    return 0;
}

static int check_value(PyObject *value)
{
    if (value == Py_None)
        return 0;
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "value must be bytes or None, not %.100s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    if ((uint64_t)PyBytes_GET_SIZE(value) >= TOMB) {
        PyErr_SetString(PyExc_ValueError, "value is larger than 4 GiB");
        return -1;
    }
    return 0;
}

/* --- the type: writes ---------------------------------------------------- */

/* Checked on entry to every write and again after any Python code it runs
 * (which could freeze the table), before it changes anything. */
static int refuse_frozen(const Table *t)
{
    if (t->frozen) {
        PyErr_SetString(PyExc_RuntimeError, "memtable is frozen");
        return -1;
    }
    return 0;
}

static PyObject *Table_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "NativeMemtable() takes no arguments");
        return NULL;
    }
    Table *t = (Table *)type->tp_alloc(type, 0);
    if (!t)
        return NULL;
    t->slots = PyMem_Calloc(16, sizeof(Slot));
    if (!t->slots) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    t->mask = 15;
    t->free_head = t->dying_head = t->arena = NONE32;
    return (PyObject *)t;
}

static void Table_dealloc(Table *t)
{
    for (uint32_t c = 0; c < t->nchunks; c++) {
        if (t->chunks[c].live) {
            t->chunks[c].live = 0;
            t->chunks[c].next = t->dying_head;
            t->dying_head = c;
        }
    }
    mt_sweep(t);
    mt_order_decref(t->order);
    PyMem_Free(t->entries);
    mt_slots_free(t->slots, t->slots_map, t->slots_map_len);
    PyMem_Free(t->chunks);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* One owned chunk holding the keys and values of n (key, value) pairs,
 * all checked already. */
static PyObject *put_pairs(Table *t, PyObject *const *kv, Py_ssize_t n, Py_ssize_t stride)
{
    if (refuse_frozen(t) < 0)
        return NULL;
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = kv[i * stride], *v = kv[i * stride + 1];
        total += (size_t)PyBytes_GET_SIZE(k) + (v == Py_None ? 0 : (size_t)PyBytes_GET_SIZE(v));
        if (total > (size_t)PY_SSIZE_T_MAX)
            return PyErr_NoMemory();
    }
    if (n == 0)
        Py_RETURN_NONE;
    uint8_t *mem = PyMem_Malloc(total);
    if (!mem)
        return PyErr_NoMemory();
    uint32_t c = mt_chunk_new(t, mem, total, NULL, NULL);
    if (c == NONE32) {
        PyMem_Free(mem);
        return NULL;
    }
    size_t pos = 0;
    int rc = 0;
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
        PyObject *k = kv[i * stride], *v = kv[i * stride + 1];
        size_t kl = (size_t)PyBytes_GET_SIZE(k);
        memcpy(mem + pos, PyBytes_AS_STRING(k), kl);
        uint32_t vl = TOMB;
        if (v != Py_None) {
            vl = (uint32_t)PyBytes_GET_SIZE(v);
            memcpy(mem + pos + kl, PyBytes_AS_STRING(v), vl);
        }
        rc = mt_table_set(t, c, pos, kl, vl);
        pos += kl + (vl == TOMB ? 0 : vl);
    }
    mt_finish_write(t, c);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Table_put(Table *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "put() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (refuse_frozen(t) < 0)
        return NULL;
    if (check_key(args[0]) < 0 || check_value(args[1]) < 0)
        return NULL;
    return put_pairs(t, args, 1, 2);
}

static PyObject *Table_update(Table *t, PyObject *mapping)
{
    if (refuse_frozen(t) < 0)
        return NULL;
    /* Every Python step (items(), iteration) happens before any change. */
    PyObject *items = PyDict_Check(mapping) ? PyDict_Items(mapping) : PyMapping_Items(mapping);
    if (!items)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject **kv = PyMem_Malloc(sizeof(PyObject *) * (size_t)(n ? 2 * n : 1));
    if (!kv) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    PyObject *res = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "mapping items must be (key, value) pairs");
            goto done;
        }
        kv[2 * i] = PyTuple_GET_ITEM(item, 0);
        kv[2 * i + 1] = PyTuple_GET_ITEM(item, 1);
        if (check_key(kv[2 * i]) < 0 || check_value(kv[2 * i + 1]) < 0)
            goto done;
    }
    res = put_pairs(t, kv, n, 2);
done:
    PyMem_Free(kv);
    Py_DECREF(items);
    return res;
}

static PyObject *Table_apply_commit(Table *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "apply_commit() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (refuse_frozen(t) < 0)
        return NULL;
    PyObject *payload = args[1];
    if (!PyBytes_Check(payload)) {
        PyErr_Format(PyExc_TypeError, "payload must be bytes, not %.100s",
                     Py_TYPE(payload)->tp_name);
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(payload);
    size_t len = (size_t)PyBytes_GET_SIZE(payload);
    if (mt_check_payload(p, len, 0) < 0)
        return NULL;
    if (rd_le32(p) == 0)
        Py_RETURN_NONE;
    uint32_t c;
    size_t off = 0;
    if (len <= ARENA_MAX_PAYLOAD) {
        c = mt_arena_alloc(t, len, &off);
        if (c == NONE32)
            return NULL;
        memcpy((uint8_t *)t->chunks[c].base + off, p, len);
    } else {
        c = mt_chunk_new(t, p, len + sizeof(PyBytesObject), payload, NULL);
        if (c == NONE32)
            return NULL;
        Py_INCREF(payload);
    }
    int rc = mt_apply_payload(t, c, off);
    mt_finish_write(t, c);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Table_apply_records(Table *t, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start, stop;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "apply_records() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (refuse_frozen(t) < 0)
        return NULL;
    Py_buffer *view = PyMem_Malloc(sizeof(Py_buffer));
    if (!view)
        return PyErr_NoMemory();
    if (PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0) {
        PyMem_Free(view);
        return NULL;
    }
    /* Index conversion may run Python code (__index__): before any change. */
    start = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (start == -1 && PyErr_Occurred())
        goto fail;
    stop = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (stop == -1 && PyErr_Occurred())
        goto fail;
    if (start < 0 || start > stop || stop > view->len) {
        PyErr_Format(PyExc_ValueError, "need 0 <= start <= stop <= %zd, got start %zd stop %zd",
                     view->len, start, stop);
        goto fail;
    }
    if (refuse_frozen(t) < 0)
        goto fail;
    if ((uint64_t)view->len > OFF_MASK) {
        PyErr_SetString(PyExc_ValueError, "buffer is larger than 2^48 bytes");
        goto fail;
    }
    const uint8_t *p = view->buf;
    if (mt_check_records(p, (size_t)start, (size_t)stop) < 0)
        goto fail;
    if (start == stop)
        goto empty;
    /* A bytes object is held in memory whole; a mapping (recovery's mmap of a
     * segment) costs only the pages of the records read from it: count the
     * span, not a preallocated segment's zero tail. */
    size_t held = PyBytes_Check(args[0]) ? (size_t)view->len : (size_t)(stop - start);
    uint32_t c = mt_chunk_new(t, p, held, NULL, view);
    if (c == NONE32)
        goto fail;
    int rc = 0;
    for (size_t pos = (size_t)start; pos < (size_t)stop && rc == 0;) {
        size_t length = rd_le32(p + pos + 4);
        rc = mt_apply_payload(t, c, pos + SP_RECORD_HEADER_SIZE);
        pos += SP_RECORD_HEADER_SIZE + length;
    }
    mt_finish_write(t, c);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
empty:
    PyBuffer_Release(view);
    PyMem_Free(view);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(view);
    PyMem_Free(view);
    return NULL;
}

/* --- freeze and thaw ------------------------------------------------------ */

static PyObject *Table_freeze(Table *t, PyObject *Py_UNUSED(ignored))
{
    t->frozen = 1;
    Py_RETURN_NONE;
}

/* Writes resume only once no thread is sorting without the GIL (it reads the
 * arrays a write changes).  Waiting, rather than refusing, because the
 * checkpoint thaws on its failure path to put newer entries back, and must
 * not lose them to a user's iterator that happened to be sorting.  The wait
 * polls with the GIL released: a sorter needs the GIL to finish, and no
 * lock is held.  No new sorter starts once one has installed its Order
 * (mt_ordered), so the wait is about one sort long. */
static PyObject *Table_thaw(Table *t, PyObject *Py_UNUSED(ignored))
{
    while (t->sorters) {
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts = {0, 200 * 1000}; /* 0.2 ms */
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
    }
    t->frozen = 0;
    Py_RETURN_NONE;
}

static PyObject *Table_frozen(Table *t, void *closure)
{
    (void)closure;
    return PyBool_FromLong(t->frozen);
}

/* --- the type: point reads ----------------------------------------------- */

static PyObject *Table_get(Table *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (check_key(args[0]) < 0)
        return NULL;
    const Entry *e = mt_lookup_entry(t, args[0]);
    if (e)
        return value_of(t, e);
    PyObject *dflt = nargs == 2 ? args[1] : Py_None;
    Py_INCREF(dflt);
    return dflt;
}

static PyObject *Table_lookup(Table *t, PyObject *key)
{
    if (check_key(key) < 0)
        return NULL;
    const Entry *e = mt_lookup_entry(t, key);
    if (!e)
        return PyTuple_Pack(2, Py_False, Py_None);
    PyObject *v = value_of(t, e);
    if (!v)
        return NULL;
    PyObject *res = PyTuple_Pack(2, Py_True, v);
    Py_DECREF(v);
    return res;
}

static Py_ssize_t Table_len(Table *t) { return (Py_ssize_t)t->count; }

static PyObject *Table_payload_bytes(Table *t, void *closure)
{
    (void)closure;
    size_t n = t->chunk_bytes + (size_t)t->cap * sizeof(Entry) + (t->mask + 1) * sizeof(Slot) +
               (size_t)t->chunks_cap * sizeof(Chunk);
    if (t->order)
        n += sizeof(Order) + (size_t)t->order->n * sizeof(uint32_t);
    return PyLong_FromSize_t(n);
}

static PyMethodDef Table_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Table_get, METH_FASTCALL,
     "get(key, default=None): the value (a new bytes), None for a delete, or default."},
    {"lookup", (PyCFunction)Table_lookup, METH_O,
     "lookup(key) -> (found, value): found is False if the memtable says nothing."},
    {"put", (PyCFunction)(void (*)(void))Table_put, METH_FASTCALL,
     "put(key, value): set key to value (None records a delete)."},
    {"update", (PyCFunction)Table_update, METH_O,
     "update(mapping): set every key of mapping to its value, in its order."},
    {"apply_commit", (PyCFunction)(void (*)(void))Table_apply_commit, METH_FASTCALL,
     "apply_commit(writes, payload): apply one committed transaction's payload (kept by "
     "reference)."},
    {"apply_records", (PyCFunction)(void (*)(void))Table_apply_records, METH_FASTCALL,
     "apply_records(buf, start, stop): apply every op of the whole records in "
     "buf[start:stop] (a buffer reference is kept)."},
    {"freeze", (PyCFunction)Table_freeze, METH_NOARGS,
     "freeze(): refuse every write (RuntimeError) until thaw(); ordered reads then sort "
     "without the GIL."},
    {"thaw", (PyCFunction)Table_thaw, METH_NOARGS,
     "thaw(): allow writes again, once no thread is sorting the table without the GIL."},
    {"items", (PyCFunction)(void (*)(void))mt_items, METH_VARARGS | METH_KEYWORDS,
     "items(start=None, stop=None): (key, value) with start <= key < stop, ascending."},
    {"snapshot", (PyCFunction)(void (*)(void))mt_snapshot, METH_VARARGS | METH_KEYWORDS,
     "snapshot(start=None, stop=None): list(items(start, stop))."},
    {"fold_batches", (PyCFunction)mt_fold_batches, METH_O,
     "fold_batches(step): (puts, deletes) batches of at most step keys, in key order."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Table_members[] = {
    {"last_lsn", T_ULONGLONG, offsetof(Table, last_lsn), 0, "LSN of the last applied commit."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Table_getset[] = {
    {"payload_bytes", (getter)Table_payload_bytes, NULL,
     "Bytes held: retained buffers, entries, hash index, sorted order.", NULL},
    {"frozen", (getter)Table_frozen, NULL, "True between freeze() and thaw().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Table_as_sequence = {
    .sq_length = (lenfunc)Table_len,
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "safepoint._sp_memtable.NativeMemtable",
    .tp_basicsize = sizeof(Table),
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_as_sequence = &Table_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The memtable, native: keys and values kept in retained buffers "
              "(see safepoint.memtable.Memtable for the contract).",
    .tp_methods = Table_methods,
    .tp_members = Table_members,
    .tp_getset = Table_getset,
    .tp_new = Table_new,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "safepoint._sp_memtable",
    .m_doc = "The native memtable (native/sp_memtable.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__sp_memtable(void)
{
    if (mt_seed_key_hash() < 0)
        return NULL;
    if (PyType_Ready(&TableType) < 0 || PyType_Ready(&mt_ItemsIterType) < 0 ||
        PyType_Ready(&mt_FoldIterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    Py_INCREF(&TableType);
    if (PyModule_AddObject(m, "NativeMemtable", (PyObject *)&TableType) < 0) {
        Py_DECREF(&TableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

