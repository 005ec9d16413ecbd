/* sp_get.c -- safepoint._sp_get: Store.get as a C method.
 *
 * A get that finds its key in the memtable spends most of its time in the
 * Python frame of Store.get (~250-350 ns of ~400), and a base-image get a
 * fifth of its time.  StoreGet is that method transcribed: it does the same
 * steps in the same order, and hands every case it does not handle itself
 * (a closed store, a key that is not bytes of a valid length, a codec other
 * than bytes, keyword arguments) to the Python method, which stays as the
 * oracle (Store._get_py, run by SAFEPOINT_BACKEND=python;
 * tests/test_get_native.py holds the two to the same answers and errors).
 *
 * It is a method descriptor (Py_TPFLAGS_METHOD_DESCRIPTOR) set on the class,
 * like a function: ``db.get(k)`` calls it with the store as first argument
 * and no bound object is made.  Holding no store, it adds no reference
 * cycle: a dropped store is freed (and its files closed) as before.
 *
 * The layers are read as Store.get reads them: ``_mem``, then ``_frozen``,
 * then ``_base``.  The memtable lookups do not release the GIL, so no
 * checkpoint swap can fall between reading ``_mem`` and ``_frozen`` here (in
 * Python one can, and checkpoint.py's swap order makes that safe too).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>

/* Interned attribute names, made once at import. */
static PyObject *s_closed, *s_mem, *s_frozen, *s_base, *s_codec, *s_get, *s_doc, *s_wrapped;

typedef struct {
    PyObject_HEAD
    PyObject *fallback;    /* Store._get_py: the oracle and every other case */
    PyObject *missing;     /* store._MISSING: the memtables' "not here" */
    PyObject *bytes_codec; /* values.BytesCodec: the codec whose values are the raw bytes */
    Py_ssize_t max_key;    /* format.MAX_KEY_SIZE */
    vectorcallfunc vectorcall;
} StoreGet;

/* store.__dict__[name], borrowed; NULL with no error if absent. */
static PyObject *field(PyObject *dict, PyObject *name)
{
    return PyDict_GetItemWithError(dict, name);
}

/* mem.get(key, missing): a new reference, or NULL with an error. */
static PyObject *layer_get(PyObject *layer, PyObject *key, PyObject *missing)
{
    PyObject *args[3] = {layer, key, missing};
    return PyObject_VectorcallMethod(s_get, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* layer_get, skipped for an empty memtable: after a checkpoint every get
 * of the base image would otherwise hash its key and probe an empty table
 * (a method call, ~5% of a base-image get).  len() is the table's C slot;
 * the GIL is held from here to the lookup, so nothing can arrive between. */
static PyObject *layer_get_unless_empty(PyObject *layer, PyObject *key, PyObject *missing)
{
    Py_ssize_t n = PyObject_Size(layer);
    if (n < 0)
        return NULL;
    if (n == 0) {
        Py_INCREF(missing);
        return missing;
    }
    return layer_get(layer, key, missing);
}

/* The raw value of key (a new reference: bytes, None for absent), the
 * missing sentinel (borrowed, not increfed) when the fast path declines,
 * or NULL with an error set. */
static PyObject *lookup(StoreGet *g, PyObject *store, PyObject *key)
{
    PyObject *dict = PyObject_GenericGetDict(store, NULL);
    if (dict == NULL)
        return NULL;
    PyObject *result = g->missing;
    PyObject *closed = field(dict, s_closed);
    PyObject *codec = closed == NULL ? NULL : field(dict, s_codec);
    PyObject *mem = codec == NULL ? NULL : field(dict, s_mem);
    if (mem == NULL || closed != Py_False || Py_TYPE(codec) != (PyTypeObject *)g->bytes_codec)
        goto done; /* an error, or a case for the oracle */
    Py_INCREF(mem);
    PyObject *raw = layer_get_unless_empty(mem, key, g->missing);
    Py_DECREF(mem);
    if (raw != g->missing) {
        result = raw;
        goto done;
    }
    Py_DECREF(raw);
    PyObject *frozen = field(dict, s_frozen);
    if (frozen == NULL && PyErr_Occurred()) {
        result = NULL;
        goto done;
    }
    if (frozen != NULL && frozen != Py_None) {
        Py_INCREF(frozen);
        raw = layer_get(frozen, key, g->missing);
        Py_DECREF(frozen);
        if (raw != g->missing) {
            result = raw;
            goto done;
        }
        Py_DECREF(raw);
    }
    PyObject *base = field(dict, s_base);
    if (base == NULL) {
        result = PyErr_Occurred() ? NULL : g->missing;
        goto done;
    }
    Py_INCREF(base);
    PyObject *args[2] = {base, key};
    result = PyObject_VectorcallMethod(s_get, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(base);
done:
    if (result == g->missing && PyErr_Occurred())
        result = NULL;
    Py_DECREF(dict);
    return result;
}

static PyObject *storeget_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames)
{
    StoreGet *g = (StoreGet *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 2 || nargs > 3 || kwnames != NULL)
        return PyObject_Vectorcall(g->fallback, args, nargsf, kwnames);
    PyObject *store = args[0], *key = args[1];
    if (!PyBytes_CheckExact(key) || PyBytes_GET_SIZE(key) == 0 ||
        PyBytes_GET_SIZE(key) > g->max_key)
        return PyObject_Vectorcall(g->fallback, args, nargsf, NULL);
    PyObject *raw = lookup(g, store, key);
    if (raw == NULL)
        return NULL;
    if (raw == g->missing) /* declined: nothing was read, the oracle does it all */
        return PyObject_Vectorcall(g->fallback, args, nargsf, NULL);
    if (raw == Py_None) {
        Py_DECREF(raw);
        PyObject *dflt = nargs == 3 ? args[2] : Py_None;
        Py_INCREF(dflt);
        return dflt;
    }
    return raw;
}

static PyObject *storeget_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None) { /* Store.get: the descriptor itself */
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static PyObject *storeget_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *fallback, *missing, *bytes_codec;
    Py_ssize_t max_key;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "StoreGet takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOOn:StoreGet", &fallback, &missing, &bytes_codec, &max_key))
        return NULL;
    if (!PyCallable_Check(fallback) || !PyType_Check(bytes_codec) || max_key <= 0) {
        PyErr_SetString(PyExc_TypeError,
                        "StoreGet(fallback, missing, bytes_codec, max_key): a callable, any "
                        "object, a type and a positive size");
        return NULL;
    }
    StoreGet *g = (StoreGet *)type->tp_alloc(type, 0);
    if (g == NULL)
        return NULL;
    g->vectorcall = storeget_vectorcall;
    Py_INCREF(fallback);
    g->fallback = fallback;
    Py_INCREF(missing);
    g->missing = missing;
    Py_INCREF(bytes_codec);
    g->bytes_codec = bytes_codec;
    g->max_key = max_key;
    return (PyObject *)g;
}

static int storeget_traverse(PyObject *self, visitproc visit, void *arg)
{
    StoreGet *g = (StoreGet *)self;
    Py_VISIT(g->fallback);
    Py_VISIT(g->missing);
    Py_VISIT(g->bytes_codec);
    return 0;
}

static int storeget_clear(PyObject *self)
{
    StoreGet *g = (StoreGet *)self;
    Py_CLEAR(g->fallback);
    Py_CLEAR(g->missing);
    Py_CLEAR(g->bytes_codec);
    return 0;
}

static void storeget_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    storeget_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* __doc__ and __wrapped__ are the oracle's: help() and inspect.signature
 * show Store.get as written in store.py. */
static PyObject *storeget_doc(PyObject *self, void *closure)
{
    (void)closure;
    return PyObject_GetAttr(((StoreGet *)self)->fallback, s_doc);
}

static PyObject *storeget_wrapped(PyObject *self, void *closure)
{
    (void)closure;
    PyObject *f = ((StoreGet *)self)->fallback;
    Py_INCREF(f);
    return f;
}

static PyGetSetDef storeget_getset[] = {
    {"__doc__", storeget_doc, NULL, NULL, NULL},
    {"__wrapped__", storeget_wrapped, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StoreGetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "safepoint._sp_get.StoreGet",
    .tp_basicsize = sizeof(StoreGet),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = storeget_new,
    .tp_traverse = storeget_traverse,
    .tp_clear = storeget_clear,
    .tp_dealloc = storeget_dealloc,
    .tp_descr_get = storeget_descr_get,
    .tp_getset = storeget_getset,
    .tp_vectorcall_offset = offsetof(StoreGet, vectorcall),
    .tp_call = PyVectorcall_Call,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "safepoint._sp_get",
    .m_doc = "Store.get in C; store.py holds the pure-Python oracle (Store._get_py).",
    .m_size = -1,
};

static int intern(PyObject **slot, const char *name)
{
    *slot = PyUnicode_InternFromString(name);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__sp_get(void)
{
    if (intern(&s_closed, "_closed") < 0 || intern(&s_mem, "_mem") < 0 ||
        intern(&s_frozen, "_frozen") < 0 || intern(&s_base, "_base") < 0 ||
        intern(&s_codec, "_codec") < 0 || intern(&s_get, "get") < 0 ||
        intern(&s_doc, "__doc__") < 0 || intern(&s_wrapped, "__wrapped__") < 0)
        return NULL;
    if (PyType_Ready(&StoreGetType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&StoreGetType);
    if (PyModule_AddObject(module, "StoreGet", (PyObject *)&StoreGetType) < 0) {
        Py_DECREF(&StoreGetType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
