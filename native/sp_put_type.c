/* sp_put_type.c -- safepoint._sp_put: the StorePut type and the module.
 *
 * StorePut is a method descriptor (Py_TPFLAGS_METHOD_DESCRIPTOR) set on the
 * class, like a function: ``db.put(k, v)`` calls its vectorcall (sp_put.c)
 * with the store as first argument and no bound object is made.  It holds
 * the oracle, the types it checks and the engine's two functions, never a
 * store, so it adds no reference cycle.
 */

#include "sp_put.h"

#include <stddef.h>

/* The names sp_put.h declares, interned by intern_all at import. */
PyObject *s_codec, *s_txn_owner, *s_closed, *s_readonly, *s_failed, *s_wal, *s_mem,
    *s_write_lock, *s_mem_lock, *s_lock, *s_native, *s_handle, *s_address, *s_end, *s_alloc,
    *s_next_lsn, *s_bytes_appended, *s_gathering, *s_prepare_requested, *s_last_lsn,
    *s_mem_last_lsn, *s_sync_mode, *s_always, *s_checkpoint_bytes, *s_ckpt_bytes_mark, *s_checkpointer,
    *s_acquire, *s_release, *s_apply_commit, *s_check_append, *s_native_refused,
    *s_append_failed, *s_request, *s_finish, *s_doc, *s_wrapped;

static PyObject *storeput_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None) /* Store.put: the descriptor itself */
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static PyObject *storeput_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *fallback, *store_type, *bytes_codec, *wal_type, *engine_type, *mem_type;
    PyObject *append_address, *flush_address;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "StorePut takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO!O!O!O!O!O!O!:StorePut", &fallback, &PyType_Type,
                          &store_type, &PyType_Type, &bytes_codec, &PyType_Type, &wal_type,
                          &PyType_Type, &engine_type, &PyType_Type, &mem_type, &PyLong_Type,
                          &append_address, &PyLong_Type, &flush_address))
        return NULL;
    void *append = PyLong_AsVoidPtr(append_address);
    void *flush = append == NULL ? NULL : PyLong_AsVoidPtr(flush_address);
    if (flush == NULL || !PyCallable_Check(fallback)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError,
                            "StorePut(fallback, Store, BytesCodec, WalWriter, NativeGroupCommit, "
                            "NativeMemtable, sp_wal_append, sp_wal_flush): a callable, five "
                            "types and the two functions' addresses");
        return NULL;
    }
    StorePut *p = (StorePut *)type->tp_alloc(type, 0);
    if (p == NULL)
        return NULL;
    p->vectorcall = storeput_vectorcall;
    p->fallback = Py_NewRef(fallback);
    p->store_type = Py_NewRef(store_type);
    p->bytes_codec = Py_NewRef(bytes_codec);
    p->wal_type = Py_NewRef(wal_type);
    p->engine_type = Py_NewRef(engine_type);
    p->mem_type = Py_NewRef(mem_type);
    /* Addresses of functions of the cffi module, which is never unloaded
     * (an integer to function pointer conversion, as POSIX's dlsym needs). */
    p->append = (append_fn)(uintptr_t)append;
    p->flush = (flush_fn)(uintptr_t)flush;
    return (PyObject *)p;
}

static int storeput_traverse(PyObject *self, visitproc visit, void *arg)
{
    StorePut *p = (StorePut *)self;
    Py_VISIT(p->fallback);
    Py_VISIT(p->store_type);
    Py_VISIT(p->bytes_codec);
    Py_VISIT(p->wal_type);
    Py_VISIT(p->engine_type);
    Py_VISIT(p->mem_type);
    return 0;
}

static int storeput_clear(PyObject *self)
{
    StorePut *p = (StorePut *)self;
    Py_CLEAR(p->fallback);
    Py_CLEAR(p->store_type);
    Py_CLEAR(p->bytes_codec);
    Py_CLEAR(p->wal_type);
    Py_CLEAR(p->engine_type);
    Py_CLEAR(p->mem_type);
    return 0;
}

static void storeput_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    storeput_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* __doc__ and __wrapped__ are the oracle's: help() and inspect.signature
 * show Store.put as written in store.py. */
static PyObject *storeput_doc(PyObject *self, void *closure)
{
    (void)closure;
    return PyObject_GetAttr(((StorePut *)self)->fallback, s_doc);
}

static PyObject *storeput_wrapped(PyObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef(((StorePut *)self)->fallback);
}

static PyGetSetDef storeput_getset[] = {
    {"__doc__", storeput_doc, NULL, NULL, NULL},
    {"__wrapped__", storeput_wrapped, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StorePutType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "safepoint._sp_put.StorePut",
    .tp_basicsize = sizeof(StorePut),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = storeput_new,
    .tp_traverse = storeput_traverse,
    .tp_clear = storeput_clear,
    .tp_dealloc = storeput_dealloc,
    .tp_descr_get = storeput_descr_get,
    .tp_getset = storeput_getset,
    .tp_vectorcall_offset = offsetof(StorePut, vectorcall),
    .tp_call = PyVectorcall_Call,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "safepoint._sp_put",
    .m_doc = "Store.put in C; store.py holds the pure-Python oracle (Store._put_py).",
    .m_size = -1,
};

static int intern_all(void)
{
    static const struct {
        PyObject **slot;
        const char *name;
    } names[] = {
        {&s_codec, "_codec"}, {&s_txn_owner, "_txn_owner"}, {&s_closed, "_closed"},
        {&s_readonly, "readonly"}, {&s_failed, "_failed"}, {&s_wal, "_wal"}, {&s_mem, "_mem"},
        {&s_write_lock, "_write_lock"}, {&s_mem_lock, "_mem_lock"}, {&s_lock, "_lock"},
        {&s_native, "_native"}, {&s_handle, "handle"}, {&s_address, "address"},
        {&s_end, "_end"}, {&s_alloc, "_alloc"}, {&s_next_lsn, "_next_lsn"},
        {&s_bytes_appended, "bytes_appended"}, {&s_gathering, "_gathering"},
        {&s_prepare_requested, "_prepare_requested"}, {&s_last_lsn, "_last_lsn"},
        {&s_mem_last_lsn, "last_lsn"},
        {&s_sync_mode, "sync_mode"}, {&s_always, "always"},
        {&s_checkpoint_bytes, "_checkpoint_bytes"}, {&s_ckpt_bytes_mark, "_ckpt_bytes_mark"},
        {&s_checkpointer, "_checkpointer"}, {&s_acquire, "acquire"}, {&s_release, "release"},
        {&s_apply_commit, "apply_commit"}, {&s_check_append, "check_append"},
        {&s_native_refused, "_native_refused"}, {&s_append_failed, "_append_failed"},
        {&s_request, "request"}, {&s_finish, "_finish"}, {&s_doc, "__doc__"},
        {&s_wrapped, "__wrapped__"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].name);
        if (*names[i].slot == NULL)
            return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__sp_put(void)
{
    if (intern_all() < 0 || PyType_Ready(&StorePutType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&StorePutType);
    if (PyModule_AddObject(module, "StorePut", (PyObject *)&StorePutType) < 0) {
        Py_DECREF(&StorePutType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
