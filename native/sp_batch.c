/* safepoint._sp_batch: a transaction's writes, checked and encoded at C speed.
 *
 * A CPython extension (not cffi) because its work is building Python
 * objects: a bulk load's dict of writes and its WAL payload.  Pure
 * computation; each function has a Python twin it must agree with
 * (safepoint._records_common.encode_writes and encode_payload,
 * Transaction._put_bytes_pairs),
 * and answers None, not an error, for any input it does not handle itself,
 * so the twin decides (and words the error).  No Python code runs while a
 * function walks its input: keys and values are exact bytes, whose hash and
 * comparison are C, so a list or dict cannot change under the walk.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define SP_MAX_KEY_SIZE 511
#define SP_MAX_PAYLOAD_SIZE ((Py_ssize_t)1 << 30)
#define SP_OP_HEADER_SIZE 7 /* kind u8, key_len u16, value_len u32 */
#define SP_OP_PUT 1
#define SP_OP_DELETE 2

static void put_u16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* One op at p (room checked by the caller): a put of bytes value, or a
 * delete if value is None.  Returns the end of the op. */
static uint8_t *put_op(uint8_t *p, PyObject *key, PyObject *value) {
    Py_ssize_t klen = PyBytes_GET_SIZE(key);
    Py_ssize_t vlen = value == Py_None ? 0 : PyBytes_GET_SIZE(value);
    p[0] = value == Py_None ? SP_OP_DELETE : SP_OP_PUT;
    put_u16(p + 1, (uint32_t)klen);
    put_u32(p + 3, (uint32_t)vlen);
    p += SP_OP_HEADER_SIZE;
    memcpy(p, PyBytes_AS_STRING(key), (size_t)klen);
    p += klen;
    if (vlen) {
        memcpy(p, PyBytes_AS_STRING(value), (size_t)vlen);
        p += vlen;
    }
    return p;
}

/* A payload of size bytes whose op count is count; *p: where its first op
 * goes.  NULL (MemoryError) if it cannot be allocated. */
static PyObject *new_payload(Py_ssize_t size, uint32_t count, uint8_t **p) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out != NULL) {
        *p = (uint8_t *)PyBytes_AS_STRING(out);
        put_u32(*p, count);
        *p += 4;
    }
    return out;
}

static int valid_key(PyObject *key) {
    if (!PyBytes_CheckExact(key)) {
        return 0;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(key);
    return n > 0 && n <= SP_MAX_KEY_SIZE;
}

PyDoc_STRVAR(bytes_pairs_doc,
             "bytes_pairs(pairs) -> dict | None\n\n"
             "``dict(pairs)`` if ``pairs`` is a list of 2-tuples of bytes whose keys\n"
             "are 1..511 bytes long; None (nothing built) for anything else.");

static PyObject *bytes_pairs(PyObject *Py_UNUSED(module), PyObject *pairs) {
    if (!PyList_CheckExact(pairs)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyList_GET_SIZE(pairs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(pairs, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2 ||
            !valid_key(PyTuple_GET_ITEM(item, 0)) || !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 1))) {
            Py_RETURN_NONE;
        }
    }
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(pairs, i);
        if (PyDict_SetItem(out, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1)) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

PyDoc_STRVAR(encode_writes_doc,
             "encode_writes(writes) -> bytes | None\n\n"
             "The WAL payload of ``writes`` (a dict of bytes key -> bytes value, or\n"
             "None for a delete), ops in the dict's order: op_count u32, then per op\n"
             "kind u8, key_len u16, value_len u32, key, value.  None if ``writes`` is\n"
             "not such a dict, is empty, has a key outside 1..511 bytes, or would\n"
             "exceed MAX_PAYLOAD_SIZE: the Python encoder then raises the error.");

static PyObject *encode_writes(PyObject *Py_UNUSED(module), PyObject *writes) {
    if (!PyDict_CheckExact(writes) || PyDict_GET_SIZE(writes) == 0) {
        Py_RETURN_NONE;
    }
    Py_ssize_t pos = 0;
    Py_ssize_t size = 4;
    PyObject *key;
    PyObject *value;
    while (PyDict_Next(writes, &pos, &key, &value)) {
        if (!valid_key(key) || (value != Py_None && !PyBytes_CheckExact(value))) {
            Py_RETURN_NONE;
        }
        Py_ssize_t vlen = value == Py_None ? 0 : PyBytes_GET_SIZE(value);
        /* Each term is at most 1 GiB, so the sum cannot overflow before
         * the check stops it. */
        size += SP_OP_HEADER_SIZE + PyBytes_GET_SIZE(key) + vlen;
        if (size > SP_MAX_PAYLOAD_SIZE) {
            Py_RETURN_NONE;
        }
    }
    uint8_t *p;
    PyObject *out = new_payload(size, (uint32_t)PyDict_GET_SIZE(writes), &p);
    if (out == NULL) {
        return NULL;
    }
    pos = 0;
    while (PyDict_Next(writes, &pos, &key, &value)) {
        p = put_op(p, key, value);
    }
    return out;
}

PyDoc_STRVAR(encode_pairs_doc,
             "encode_pairs(pairs) -> bytes | None\n\n"
             "The WAL payload of a put of each (key, value) of ``pairs``, in the list's\n"
             "order, a key that comes twice included twice (replay applies ops in\n"
             "order, so the last value wins, as in ``dict(pairs)``).  None if ``pairs``\n"
             "is not a non-empty list of 2-tuples of bytes with keys of 1..511 bytes,\n"
             "or would exceed MAX_PAYLOAD_SIZE.  Its twin is\n"
             "``encode_payload([(OP_PUT, k, v) for k, v in pairs])``.");

static PyObject *encode_pairs(PyObject *Py_UNUSED(module), PyObject *pairs) {
    if (!PyList_CheckExact(pairs) || PyList_GET_SIZE(pairs) == 0 ||
        PyList_GET_SIZE(pairs) > (Py_ssize_t)UINT32_MAX) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyList_GET_SIZE(pairs);
    Py_ssize_t size = 4;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(pairs, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2 ||
            !valid_key(PyTuple_GET_ITEM(item, 0)) || !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 1))) {
            Py_RETURN_NONE;
        }
        /* Each term is at most 1 GiB, so the sum cannot overflow before
         * the check stops it. */
        size += SP_OP_HEADER_SIZE + PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 0)) +
                PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 1));
        if (size > SP_MAX_PAYLOAD_SIZE) {
            Py_RETURN_NONE;
        }
    }
    uint8_t *p;
    PyObject *out = new_payload(size, (uint32_t)n, &p);
    if (out == NULL) {
        return NULL;
    }
    /* No Python code ran since the checks: the list and its tuples of
     * bytes are as they were. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(pairs, i);
        p = put_op(p, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
    }
    return out;
}

static PyMethodDef methods[] = {
    {"bytes_pairs", bytes_pairs, METH_O, bytes_pairs_doc},
    {"encode_writes", encode_writes, METH_O, encode_writes_doc},
    {"encode_pairs", encode_pairs, METH_O, encode_pairs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "safepoint._sp_batch",
    .m_doc = "A transaction's writes checked and encoded at C speed (Python twins in "
             "safepoint._records_common and safepoint.transaction).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__sp_batch(void) { return PyModule_Create(&module); }
