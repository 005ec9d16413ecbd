/* sp_fast.c -- safepoint._sp_fast: the base image's get path in one C call.
 *
 * A base-image get is a B-tree lookup in LMDB (~0.9 us through py-lmdb)
 * wrapped in Python bookkeeping that used to cost as much again: the resize
 * gate, the thread's cached read transaction (_ReadSlot), the entry's CRC
 * check.  This module does that bookkeeping in one C call.  It
 * is a transcription, not a redesign: src/safepoint/base.py keeps the
 * pure-Python code (BaseImage._get_cached, check_entry_py) as the oracle,
 * SAFEPOINT_BACKEND=python runs it, tests/test_fast_native.py holds the two
 * to the same answers and the same errors, and every case this file does not
 * handle itself (a stale or missing transaction, a resize under way, a key
 * that is not bytes, an entry that fails its check) is handed to the oracle.
 *
 * The concurrency contract is base.py's (see _ReadSlot and docs/design.md,
 * "The base image"); this file performs the same steps in the same order.
 * Under the GIL a C function runs without interruption except inside the
 * calls that may release it or run Python code: here only txn.get, and the
 * oracle and hooks named below.  So each step that is one bytecode-level call
 * in the Python path (list append, list pop) is at least as atomic here.
 *
 * The CRC32C is sp_crc32c from sp_core.c (pure computation, compiled into
 * this module as well).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#include "sp_core.h"

#define ENTRY_CRC_SIZE 4 /* stored entry: crc32c(key ++ value), LE, then value */

/* The exception being raised, taken out (NULL if none), and put back:
 * PyErr_GetRaisedException and PyErr_SetRaisedException, which Python 3.12
 * added (and deprecated PyErr_Fetch and PyErr_Restore for). */
#if PY_VERSION_HEX >= 0x030C0000
#define take_exception PyErr_GetRaisedException
#define restore_exception PyErr_SetRaisedException
#else
static PyObject *take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

static void restore_exception(PyObject *exc)
{
    if (exc == NULL)
        return;
    PyObject *type = (PyObject *)Py_TYPE(exc);
    Py_INCREF(type);
    PyErr_Restore(type, exc, PyException_GetTraceback(exc));
}
#endif

/* Interned attribute and method names, made once at import. */
static PyObject *s_slot, *s_get_first, *s_generation, *s_resizing, *s_image_generation, *s_get,
    *s_get_cached, *s_get_failed, *s_retire_slot, *s_wake;

static uint32_t load_u32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The value of the stored entry for key (a new bytes object), or NULL with
 * no exception set when the entry is too short or its CRC does not match
 * (NULL with an exception set only when allocating the result fails). */
static PyObject *entry_value(const uint8_t *key, size_t key_len, const uint8_t *stored,
                             size_t stored_len, int *bad)
{
    *bad = 0;
    if (stored_len < ENTRY_CRC_SIZE) {
        *bad = 1;
        return NULL;
    }
    const uint8_t *value = stored + ENTRY_CRC_SIZE;
    size_t value_len = stored_len - ENTRY_CRC_SIZE;
    uint32_t crc = sp_crc32c(sp_crc32c(0, key, key_len), value, value_len);
    if (crc != load_u32_le(stored)) {
        *bad = 1;
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)value_len);
}

PyDoc_STRVAR(check_entry_doc,
             "check_entry(key, stored, /) -> bytes | None\n"
             "\n"
             "The value of a stored base-image entry (its 4-byte CRC32C of key ++ value,\n"
             "little-endian, then the value), or None if the entry is shorter than its\n"
             "CRC or the CRC does not match.  key and stored are any bytes-like objects,\n"
             "borrowed for the duration of the call.");

static PyObject *check_entry(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "check_entry expects 2 arguments (key, stored), got %zd",
                     nargs);
        return NULL;
    }
    Py_buffer key, stored;
    if (PyObject_GetBuffer(args[0], &key, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &stored, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    int bad;
    PyObject *value = entry_value(key.buf, (size_t)key.len, stored.buf, (size_t)stored.len, &bad);
    PyBuffer_Release(&stored);
    PyBuffer_Release(&key);
    if (bad)
        Py_RETURN_NONE;
    return value;
}

/* What a get works with besides the slot: the image, its resize gate, the
 * gate's list of active readers, and the instance dicts of the image and the
 * gate, where their flags are read (NULL: read them by attribute lookup).
 * Reading an instance's __dict__ is what attribute lookup does for these
 * plain attributes (neither class defines a descriptor of the same name),
 * minus the search of the class. */
typedef struct {
    PyObject *image, *gate, *active, *image_dict, *gate_dict;
} read_ctx;

/* obj.name (a new reference), read from dict when given and it holds it. */
static PyObject *plain_attr(PyObject *obj, PyObject *dict, PyObject *name)
{
    if (dict != NULL) {
        PyObject *v = PyDict_GetItemWithError(dict, name);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
        if (PyErr_Occurred())
            return NULL;
    }
    return PyObject_GetAttr(obj, name);
}

/* gate._resizing: 1 if a grower has set it, 0 if not, -1 on error. */
static int gate_resizing(const read_ctx *c)
{
    PyObject *flag = plain_attr(c->gate, c->gate_dict, s_resizing);
    if (flag == NULL)
        return -1;
    int set = PyObject_IsTrue(flag);
    Py_DECREF(flag);
    return set;
}

/* Unregister a reader from the resize gate: active.pop(), then wake a
 * waiting grower if one is resizing.  As base.py's _ResizeGate.leave. */
static int gate_leave(const read_ctx *c)
{
    Py_ssize_t n = PyList_GET_SIZE(c->active);
    if (n > 0 && PyList_SetSlice(c->active, n - 1, n, NULL) < 0)
        return -1;
    int waiting = gate_resizing(c);
    if (waiting <= 0)
        return waiting;
    PyObject *r = PyObject_CallMethodNoArgs(c->gate, s_wake);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* 1 if the slot's generation (mine) equals image._generation, 0 if not, -1
 * on error: 1 means the slot's transaction began after the latest commit's
 * bump. */
static int is_fresh(const read_ctx *c, PyObject *mine)
{
    PyObject *now = plain_attr(c->image, c->image_dict, s_image_generation);
    if (now == NULL)
        return -1;
    int fresh = PyObject_RichCompareBool(mine, now, Py_EQ);
    Py_DECREF(now);
    return fresh;
}

/* txn.get(key) raised: give the exception and the transaction (already
 * taken from the slot) to image._get_failed, which aborts the transaction
 * and may turn the error into ClosedError; then leave the gate.  Always
 * ends with the exception to raise set. */
static void get_failed(const read_ctx *c, PyObject *txn)
{
    PyObject *exc = take_exception();
    PyObject *r = PyObject_CallMethodObjArgs(c->image, s_get_failed, txn, exc, NULL);
    PyObject *hook_exc = r == NULL ? take_exception() : NULL; /* replaces get's */
    Py_XDECREF(r);
    if (gate_leave(c) < 0) {
        /* As a raise in the Python path's finally: it replaces the others. */
        Py_XDECREF(hook_exc);
        Py_XDECREF(exc);
        return;
    }
    if (hook_exc != NULL) {
        Py_XDECREF(exc);
        restore_exception(hook_exc);
    } else {
        restore_exception(exc);
    }
}

/* The read through the slot's cached transaction, entered with the gate
 * held (active registered).  Returns the stored entry (new reference, or
 * None) and leaves the gate; NULL with an exception on error (gate left);
 * or NULL with no exception when the oracle must do this get (gate left,
 * nothing changed). */
static PyObject *read_cached(const read_ctx *c, PyObject *slot, PyObject *key)
{
    PyObject *stored = NULL, *mine = NULL;
    int waiting = gate_resizing(c);
    if (waiting < 0)
        goto fail_leave;
    int fresh = 0;
    if (!waiting && PyList_GET_SIZE(slot) == 1) {
        /* Read once: only this thread's own renewal changes it. */
        mine = PyObject_GetAttr(slot, s_generation);
        if (mine == NULL)
            goto fail_leave;
        fresh = is_fresh(c, mine);
        if (fresh < 0)
            goto fail_leave;
    }
    if (!fresh) {
        /* A grower is waiting (the oracle waits for it in gate.enter()), or
         * the transaction is in use, retired or stale (the oracle renews
         * it): nothing taken, so hand over. */
        Py_XDECREF(mine);
        gate_leave(c); /* NULL either way; an error if it failed */
        return NULL;
    }
    /* slot.pop(): from here the transaction is this get's alone; a retiring
     * thread finds the slot empty and leaves it to us (as in base.py). */
    PyObject *txn = PyList_GET_ITEM(slot, 0);
    Py_INCREF(txn);
    if (PyList_SetSlice(slot, 0, 1, NULL) < 0) {
        Py_DECREF(txn);
        goto fail_leave;
    }
    /* The only call that releases the GIL: a checkpoint may commit now and
     * bump the generation; it finds the slot empty and does not abort txn. */
    PyObject *callargs[3] = {NULL, txn, key}; /* [0]: scratch for the offset flag */
    stored =
        PyObject_VectorcallMethod(s_get, callargs + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (stored == NULL) {
        Py_DECREF(mine);
        get_failed(c, txn);
        Py_DECREF(txn);
        return NULL;
    }
    int put_back = PyList_Append(slot, txn);
    Py_DECREF(txn);
    if (put_back < 0)
        goto fail_leave; /* MemoryError; txn's last reference aborts it */
    /* A checkpoint committed while txn.get ran and may have found the slot
     * empty: do not keep its snapshot pinned (base.py's _retire_slot). */
    fresh = is_fresh(c, mine);
    if (fresh < 0)
        goto fail_leave;
    if (!fresh) {
        PyObject *r = PyObject_CallMethodOneArg(c->image, s_retire_slot, slot);
        if (r == NULL)
            goto fail_leave;
        Py_DECREF(r);
    }
    Py_DECREF(mine);
    if (gate_leave(c) < 0) {
        Py_DECREF(stored);
        return NULL;
    }
    return stored;

fail_leave : {
    Py_XDECREF(stored);
    Py_XDECREF(mine);
    PyObject *exc = take_exception();
    if (gate_leave(c) < 0) {
        Py_XDECREF(exc);
        return NULL;
    }
    restore_exception(exc);
    return NULL;
}
}

/* image.get(key) through slot: the stored entry read through the cached
 * transaction and checked, or the oracle's answer (image._get_cached). */
static PyObject *get_through_slot(const read_ctx *c, PyObject *slot, PyObject *key)
{
    if (!PyBytes_CheckExact(key) || !PyList_Check(slot) || !PyList_CheckExact(c->active))
        return PyObject_CallMethodObjArgs(c->image, s_get_cached, slot, key, NULL);
    /* Register with the resize gate before looking at its flag (as
     * _ResizeGate.enter): a grower that sets the flag later waits for us. */
    if (PyList_Append(c->active, Py_None) < 0)
        return NULL;
    PyObject *stored = read_cached(c, slot, key);
    if (stored == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return PyObject_CallMethodObjArgs(c->image, s_get_cached, slot, key, NULL);
    }
    if (stored == Py_None)
        return stored;
    if (PyBytes_CheckExact(stored)) {
        int bad;
        PyObject *value = entry_value((const uint8_t *)PyBytes_AS_STRING(key),
                                      (size_t)PyBytes_GET_SIZE(key),
                                      (const uint8_t *)PyBytes_AS_STRING(stored),
                                      (size_t)PyBytes_GET_SIZE(stored), &bad);
        if (!bad) {
            Py_DECREF(stored);
            return value;
        }
    }
    /* Damaged (or not bytes): the oracle reads it again and raises the
     * CorruptionError that names the problem. */
    Py_DECREF(stored);
    return PyObject_CallMethodObjArgs(c->image, s_get_cached, slot, key, NULL);
}

/* ---- Reader: BaseImage.get as a C callable ---------------------------------
 *
 * base.py sets a writable BaseImage's ``get`` to Reader(image, image._local),
 * so that Store.get calls C directly, with no Python frame in between.  It
 * does what BaseImage.get does: the thread's slot from the thread-local, or
 * _get_first for a thread's first get, then _get_cached's steps. */

typedef struct {
    PyObject_HEAD
    read_ctx c;      /* the image, its gate and their dicts, fixed for the image's life */
    PyObject *local; /* image._local, the threading.local holding each thread's slot */
    vectorcallfunc vectorcall;
} Reader;

static PyObject *reader_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    Reader *r = (Reader *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_Format(PyExc_TypeError, "get expects 1 positional argument (key), got %zd", nargs);
        return NULL;
    }
    PyObject *key = args[0];
    PyObject *slot = PyObject_GetAttr(r->local, s_slot);
    if (slot == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear(); /* this thread's first get: the image makes its slot */
        return PyObject_CallMethodOneArg(r->c.image, s_get_first, key);
    }
    PyObject *value = get_through_slot(&r->c, slot, key);
    Py_DECREF(slot);
    return value;
}

/* obj.__dict__ if it is a plain dict, else NULL (and no error): then the
 * flags are read by attribute lookup. */
static PyObject *instance_dict(PyObject *obj)
{
    PyObject *dict = PyObject_GetAttrString(obj, "__dict__");
    if (dict == NULL || !PyDict_CheckExact(dict)) {
        PyErr_Clear();
        Py_XDECREF(dict);
        return NULL;
    }
    return dict;
}

static PyObject *reader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *image, *local;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "Reader takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Reader", 2, 2, &image, &local))
        return NULL;
    Reader *r = (Reader *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    r->vectorcall = reader_vectorcall;
    Py_INCREF(image);
    r->c.image = image;
    Py_INCREF(local);
    r->local = local;
    /* image._gate and gate._active are set once, in their __init__. */
    r->c.gate = PyObject_GetAttrString(image, "_gate");
    if (r->c.gate == NULL)
        goto fail;
    r->c.active = PyObject_GetAttrString(r->c.gate, "_active");
    if (r->c.active == NULL)
        goto fail;
    r->c.image_dict = instance_dict(image);
    r->c.gate_dict = instance_dict(r->c.gate);
    return (PyObject *)r;
fail:
    Py_DECREF(r);
    return NULL;
}

static int reader_traverse(PyObject *self, visitproc visit, void *arg)
{
    Reader *r = (Reader *)self;
    Py_VISIT(r->c.image); /* the image holds its Reader: a cycle the GC breaks */
    Py_VISIT(r->c.image_dict);
    Py_VISIT(r->c.gate);
    Py_VISIT(r->c.gate_dict);
    Py_VISIT(r->c.active);
    Py_VISIT(r->local);
    return 0;
}

static int reader_clear(PyObject *self)
{
    Reader *r = (Reader *)self;
    Py_CLEAR(r->c.image);
    Py_CLEAR(r->c.image_dict);
    Py_CLEAR(r->c.gate);
    Py_CLEAR(r->c.gate_dict);
    Py_CLEAR(r->c.active);
    Py_CLEAR(r->local);
    return 0;
}

static void reader_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    reader_clear(self);
    Py_TYPE(self)->tp_free(self);
}

PyDoc_STRVAR(reader_doc, "Reader(image, local, /): image.get(key) for a writable BaseImage,\n"
                         "through this thread's slot in local (see BaseImage.get).");

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "safepoint._sp_fast.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = reader_doc,
    .tp_new = reader_new,
    .tp_traverse = reader_traverse,
    .tp_clear = reader_clear,
    .tp_dealloc = reader_dealloc,
    .tp_vectorcall_offset = offsetof(Reader, vectorcall),
    .tp_call = PyVectorcall_Call,
};

static PyMethodDef methods[] = {
    {"check_entry", (PyCFunction)(void (*)(void))check_entry, METH_FASTCALL, check_entry_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "safepoint._sp_fast",
    .m_doc = "The base image's get path in C; base.py holds the pure-Python oracle.",
    .m_size = -1,
    .m_methods = methods,
};

static int intern(PyObject **slot, const char *name)
{
    *slot = PyUnicode_InternFromString(name);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__sp_fast(void)
{
    if (intern(&s_slot, "slot") < 0 || intern(&s_get_first, "_get_first") < 0 ||
        intern(&s_generation, "generation") < 0 || intern(&s_resizing, "_resizing") < 0 ||
        intern(&s_image_generation, "_generation") < 0 || intern(&s_get, "get") < 0 ||
        intern(&s_get_cached, "_get_cached") < 0 || intern(&s_get_failed, "_get_failed") < 0 ||
        intern(&s_retire_slot, "_retire_slot") < 0 || intern(&s_wake, "wake") < 0)
        return NULL;
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(module, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
