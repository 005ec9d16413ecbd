/* sp_memtable_iter.c -- the native memtable's ordered reads: items(),
 * snapshot() and fold_batches().
 *
 * A read takes the Order of every entry (mt_ordered) and holds a reference
 * to it, so the keys it covers are fixed when it is called; values are read
 * from the entries as it advances.  Allocating a tuple or list may run the
 * garbage collector, whose finalizers may run Python code (and so another
 * thread's write): no raw pointer into the table is kept across one, nor
 * across mt_ordered, which sorts a frozen table without the GIL.
 */

#include "sp_memtable.h"

#include "sp_core.h"

typedef struct {
    PyObject_HEAD
    Table *t;
    Order *o;
    uint32_t pos, end;
    uint32_t step; /* fold only */
} Iter;

static void Iter_dealloc(Iter *it)
{
    mt_order_decref(it->o);
    Py_XDECREF(it->t);
    PyObject_Free(it);
}

static int check_bound(PyObject *b, const char *name)
{
    if (b == Py_None || PyBytes_Check(b))
        return 0;
    PyErr_Format(PyExc_TypeError, "%s must be bytes or None, not %.100s", name,
                 Py_TYPE(b)->tp_name);
    return -1;
}

static uint32_t bound(Table *t, Order *o, PyObject *b, uint32_t dflt)
{
    if (b == Py_None)
        return dflt;
    return mt_lower_bound(t, o, (const uint8_t *)PyBytes_AS_STRING(b),
                          (size_t)PyBytes_GET_SIZE(b));
}

/* The order and [lo, hi) of items(start, stop); a new reference to o. */
static int range_of(Table *t, PyObject *args, PyObject *kwds, const char *fmt, Order **o,
                    uint32_t *lo, uint32_t *hi)
{
    static char *kwlist[] = {"start", "stop", NULL};
    PyObject *start = Py_None, *stop = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, fmt, kwlist, &start, &stop))
        return -1;
    if (check_bound(start, "start") < 0 || check_bound(stop, "stop") < 0)
        return -1;
    Order *ord = mt_ordered(t);
    if (!ord)
        return -1;
    *lo = bound(t, ord, start, 0);
    *hi = bound(t, ord, stop, ord->n);
    if (*hi < *lo)
        *hi = *lo;
    ord->refs++;
    *o = ord;
    return 0;
}

/* (key, value) of entry idx, a new tuple. */
static PyObject *item_at(Table *t, uint32_t idx)
{
    const Entry *e = &t->entries[idx];
    PyObject *k = PyBytes_FromStringAndSize((const char *)key_of(t, e), (Py_ssize_t)klen_of(e));
    if (!k)
        return NULL;
    PyObject *v = value_of(t, &t->entries[idx]);
    if (!v) {
        Py_DECREF(k);
        return NULL;
    }
    PyObject *tup = PyTuple_New(2);
    if (!tup) {
        Py_DECREF(k);
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(tup, 0, k);
    PyTuple_SET_ITEM(tup, 1, v);
    return tup;
}

static PyObject *ItemsIter_next(Iter *it)
{
    if (it->pos >= it->end)
        return NULL;
    return item_at(it->t, it->o->idx[it->pos++]);
}

static Iter *iter_new(PyTypeObject *type, Table *t, Order *o, uint32_t pos, uint32_t end)
{
    Iter *it = PyObject_New(Iter, type);
    if (!it) {
        mt_order_decref(o);
        return NULL;
    }
    Py_INCREF(t);
    it->t = t;
    it->o = o;
    it->pos = pos;
    it->end = end;
    it->step = 0;
    return it;
}

PyObject *mt_items(Table *t, PyObject *args, PyObject *kwds)
{
    Order *o;
    uint32_t lo, hi;
    if (range_of(t, args, kwds, "|OO:items", &o, &lo, &hi) < 0)
        return NULL;
    return (PyObject *)iter_new(&mt_ItemsIterType, t, o, lo, hi);
}

PyObject *mt_snapshot(Table *t, PyObject *args, PyObject *kwds)
{
    Order *o;
    uint32_t lo, hi;
    if (range_of(t, args, kwds, "|OO:snapshot", &o, &lo, &hi) < 0)
        return NULL;
    PyObject *list = PyList_New((Py_ssize_t)(hi - lo));
    for (uint32_t i = lo; list && i < hi; i++) {
        PyObject *item = item_at(t, o->idx[i]);
        if (!item)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)(i - lo), item);
    }
    mt_order_decref(o);
    return list;
}

/* --- fold_batches -------------------------------------------------------- */

/* list[i] = item if the list was sized for it, else append (a write during
 * a fold breaks its contract, but must not break memory). */
static int put_item(PyObject *list, Py_ssize_t *i, PyObject *item)
{
    if (*i < PyList_GET_SIZE(list)) {
        PyList_SET_ITEM(list, (*i)++, item);
        return 0;
    }
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    (*i)++;
    return rc;
}

static int trim(PyObject *list, Py_ssize_t n)
{
    Py_ssize_t size = PyList_GET_SIZE(list);
    return n < size ? PyList_SetSlice(list, n, size, NULL) : 0;
}

/* base.entry_value(key, value): crc32c(key + value) as <I, then value. */
static PyObject *stored_entry(Table *t, uint32_t idx)
{
    const Entry *e = &t->entries[idx];
    PyObject *s = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)e->vlen + 4);
    if (!s)
        return NULL;
    e = &t->entries[idx];
    const uint8_t *k = key_of(t, e);
    size_t kl = klen_of(e);
    uint32_t crc = sp_crc32c(sp_crc32c(0, k, kl), k + kl, e->vlen);
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(s);
    out[0] = (uint8_t)crc;
    out[1] = (uint8_t)(crc >> 8);
    out[2] = (uint8_t)(crc >> 16);
    out[3] = (uint8_t)(crc >> 24);
    memcpy(out + 4, k + kl, e->vlen);
    return s;
}

static PyObject *FoldIter_next(Iter *it)
{
    if (it->pos >= it->end)
        return NULL;
    Table *t = it->t;
    const uint32_t *idx = it->o->idx;
    uint32_t lo = it->pos;
    uint32_t hi = it->end - lo > it->step ? lo + it->step : it->end;
    it->pos = hi;
    Py_ssize_t nd = 0;
    for (uint32_t i = lo; i < hi; i++)
        nd += t->entries[idx[i]].vlen == TOMB;
    PyObject *puts = PyList_New((Py_ssize_t)(hi - lo) - nd);
    PyObject *dels = puts ? PyList_New(nd) : NULL;
    Py_ssize_t ip = 0, id = 0;
    if (!dels)
        goto fail;
    for (uint32_t i = lo; i < hi; i++) {
        const Entry *e = &t->entries[idx[i]];
        PyObject *k = PyBytes_FromStringAndSize((const char *)key_of(t, e),
                                                (Py_ssize_t)klen_of(e));
        if (!k)
            goto fail;
        if (t->entries[idx[i]].vlen == TOMB) {
            if (put_item(dels, &id, k) < 0)
                goto fail;
            continue;
        }
        PyObject *s = stored_entry(t, idx[i]);
        PyObject *pair = s ? PyTuple_New(2) : NULL;
        if (!pair) {
            Py_DECREF(k);
            Py_XDECREF(s);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, k);
        PyTuple_SET_ITEM(pair, 1, s);
        if (put_item(puts, &ip, pair) < 0)
            goto fail;
    }
    if (trim(puts, ip) < 0 || trim(dels, id) < 0)
        goto fail;
    PyObject *res = PyTuple_New(2);
    if (!res)
        goto fail;
    PyTuple_SET_ITEM(res, 0, puts);
    PyTuple_SET_ITEM(res, 1, dels);
    return res;
fail:
    /* Unfilled slots are NULL: trim them so the lists can be freed. */
    if (puts && trim(puts, ip) < 0)
        PyErr_Clear();
    if (dels && trim(dels, id) < 0)
        PyErr_Clear();
    Py_XDECREF(puts);
    Py_XDECREF(dels);
    return NULL;
}

PyObject *mt_fold_batches(Table *t, PyObject *arg)
{
    Py_ssize_t step = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (step == -1 && PyErr_Occurred())
        return NULL;
    if (step < 1) {
        PyErr_Format(PyExc_ValueError, "step must be at least 1, got %zd", step);
        return NULL;
    }
    Order *o = mt_ordered(t);
    if (!o)
        return NULL;
    o->refs++;
    Iter *it = iter_new(&mt_FoldIterType, t, o, 0, o->n);
    if (it)
        it->step = step > (Py_ssize_t)UINT32_MAX ? UINT32_MAX : (uint32_t)step;
    return (PyObject *)it;
}

PyTypeObject mt_ItemsIterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "safepoint._sp_memtable.ItemsIterator",
    .tp_basicsize = sizeof(Iter),
    .tp_dealloc = (destructor)Iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)ItemsIter_next,
};

PyTypeObject mt_FoldIterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "safepoint._sp_memtable.FoldIterator",
    .tp_basicsize = sizeof(Iter),
    .tp_dealloc = (destructor)Iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)FoldIter_next,
};
