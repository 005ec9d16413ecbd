/* sp_put.c -- safepoint._sp_put: Store.put as a C method.
 *
 * A durable db.put spent 5-8 us of CPU in nine Python frames (put, _commit,
 * _begin_write, _append_locked, WalWriter.append, the memtable's apply,
 * _end_write, _finish, WalWriter.flush); eight committing threads queue for
 * that time under the GIL.  StorePut is those frames transcribed for their
 * common case, step for step and in the same order: the same locks taken
 * and released, the same attributes set, the same engine calls
 * (sp_wal_append with the GIL, sp_wal_flush without it), the same
 * checkpoint trigger.  Store._put_py, the Python method, stays as the
 * oracle (SAFEPOINT_BACKEND=python runs it; tests/test_put_native.py holds
 * the two to the same records, state and errors).
 *
 * Every case it does not handle goes to the oracle before any side effect:
 * arguments other than (bytes key of 1..511 bytes, bytes value), a subclass
 * of Store, another codec, a closed, readonly or failed store, a thread
 * inside its own transaction, a log without the native engine, a closed or
 * failed log, and, found under the log's lock (released first, so the oracle
 * takes it again), a record that does not fit the segment (rollover,
 * extension), one that crosses the half-way mark that starts preparing the
 * next segment, or a Python leader gathering.  Failures after a side effect
 * end in the Python code the oracle runs: NativeGroupCommit.check_append
 * and WalWriter._native_refused for the engine's statuses,
 * Store._append_failed for anything raised between logging and applying.
 *
 * The engine's functions come as addresses from the cffi module
 * (_sp_core), and the engine itself as NativeGroupCommit.address; the call
 * holds NativeGroupCommit.handle, whose collection frees the engine, while
 * it uses that address.  sp_put_type.c holds the type and the module.
 */

#include "sp_put.h"

#include <pythread.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

/* One put's objects, each a new reference (NULL until taken). */
typedef struct {
    PyObject *sd;      /* the store's __dict__ */
    PyObject *wal, *wd; /* store._wal and its __dict__ */
    PyObject *native;  /* wal._native */
    PyObject *handle;  /* native.handle: keeps the engine alive */
    sp_wal *engine;
    PyObject *me;      /* threading.get_ident() */
    PyObject *write_lock, *wal_lock;
    PyObject *payload;
    PyObject *lsn;     /* the record's LSN, once logged */
} Put;

static void put_clear(Put *c)
{
    Py_CLEAR(c->sd);
    Py_CLEAR(c->wal);
    Py_CLEAR(c->wd);
    Py_CLEAR(c->native);
    Py_CLEAR(c->handle);
    Py_CLEAR(c->me);
    Py_CLEAR(c->write_lock);
    Py_CLEAR(c->wal_lock);
    Py_CLEAR(c->payload);
    Py_CLEAR(c->lsn);
}

/* dict[name], borrowed; NULL, with an error only if the lookup failed. */
static PyObject *field(PyObject *dict, PyObject *name)
{
    return PyDict_GetItemWithError(dict, name);
}

/* dict[name] as a new reference; NULL with no error set if absent. */
static PyObject *field_ref(PyObject *dict, PyObject *name)
{
    PyObject *v = PyDict_GetItemWithError(dict, name);
    Py_XINCREF(v);
    return v;
}

/* dict[name] in *out if it is an int in [0, 2**62): 1; 0 if not (the
 * oracle's case); -1 with an error. */
static int field_u62(PyObject *dict, PyObject *name, long long *out)
{
    PyObject *v = field(dict, name);
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    return overflow == 0 && *out >= 0 && *out < (1LL << 62);
}

static int set_field(PyObject *dict, PyObject *name, PyObject *value)
{
    return PyDict_SetItem(dict, name, value);
}

/* obj.name() or obj.name(arg); a new reference or NULL. */
static PyObject *call_method(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    size_t n = arg == NULL ? 1 : 2;
    return PyObject_VectorcallMethod(name, args, n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* lock.acquire(), blocking (the lock's method releases the GIL while it
 * waits); 0, or -1 with an error (a signal handler's, say). */
static int acquire(PyObject *lock)
{
    PyObject *r = call_method(lock, s_acquire, NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* lock.release(), keeping any error already set: the ``finally`` or
 * ``with`` exit that releases a lock does not replace the exception. */
static void release(PyObject *lock)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = call_method(lock, s_release, NULL);
    if (r == NULL)
        PyErr_WriteUnraisable(lock);
    Py_XDECREF(r);
    PyErr_Restore(type, value, tb);
}

/* Store._begin_write's checks, read without a lock: 1 if this put is ours
 * (c filled), 0 for the oracle, -1 with an error. */
static int prepare(StorePut *p, Put *c, PyObject *store)
{
    c->sd = PyObject_GenericGetDict(store, NULL);
    if (c->sd == NULL)
        return -1;
    PyObject *codec = field(c->sd, s_codec);
    PyObject *closed = codec == NULL ? NULL : field(c->sd, s_closed);
    PyObject *readonly = closed == NULL ? NULL : field(c->sd, s_readonly);
    PyObject *failed = readonly == NULL ? NULL : field(c->sd, s_failed);
    PyObject *owner = failed == NULL ? NULL : field(c->sd, s_txn_owner);
    PyObject *mem = owner == NULL ? NULL : field(c->sd, s_mem);
    if (mem == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if ((PyObject *)Py_TYPE(codec) != p->bytes_codec || closed != Py_False ||
        readonly != Py_False || failed != Py_None || (PyObject *)Py_TYPE(mem) != p->mem_type)
        return 0;
    unsigned long me = PyThread_get_thread_ident();
    if (owner != Py_None) {
        if (!PyLong_CheckExact(owner))
            return 0;
        unsigned long o = PyLong_AsUnsignedLong(owner);
        if (o == (unsigned long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (o == me) /* this thread's transaction: the oracle's RuntimeError */
            return 0;
    }
    c->wal = field_ref(c->sd, s_wal);
    if (c->wal == NULL || (PyObject *)Py_TYPE(c->wal) != p->wal_type)
        return PyErr_Occurred() ? -1 : 0;
    c->wd = PyObject_GenericGetDict(c->wal, NULL);
    if (c->wd == NULL)
        return -1;
    c->native = field_ref(c->wd, s_native);
    if (c->native == NULL || (PyObject *)Py_TYPE(c->native) != p->engine_type)
        return PyErr_Occurred() ? -1 : 0;
    c->handle = PyObject_GetAttr(c->native, s_handle);
    PyObject *address = c->handle == NULL ? NULL : PyObject_GetAttr(c->native, s_address);
    if (address == NULL)
        return -1;
    c->engine = PyLong_CheckExact(address) ? (sp_wal *)PyLong_AsVoidPtr(address) : NULL;
    Py_DECREF(address);
    if (c->engine == NULL)
        return PyErr_Occurred() ? -1 : 0;
    c->me = PyLong_FromUnsignedLong(me);
    c->write_lock = field_ref(c->sd, s_write_lock);
    c->wal_lock = c->write_lock == NULL ? NULL : field_ref(c->wd, s_lock);
    if (c->me == NULL || c->wal_lock == NULL)
        return PyErr_Occurred() ? -1 : 0;
    return 1;
}

/* Store._end_write. */
static void end_write(Put *c)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (set_field(c->sd, s_txn_owner, Py_None) < 0)
        PyErr_WriteUnraisable(c->sd);
    PyErr_Restore(type, value, tb);
    release(c->write_lock);
}

/* The error set now, raised inside _append_locked's try, handed to
 * Store._append_failed (with the LSN if the record was logged), which
 * raises what the oracle raises.  Always NULL. */
static PyObject *append_failed(PyObject *store, Put *c)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL)
        PyException_SetTraceback(value, tb);
    PyObject *args[3] = {store, value, c->lsn == NULL ? Py_None : c->lsn};
    PyObject *r = PyObject_VectorcallMethod(s_append_failed, args,
                                            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (r != NULL) { /* it always raises; if not, its answer is a bug */
        Py_DECREF(r);
        PyErr_SetString(PyExc_SystemError, "Store._append_failed returned");
    }
    return NULL;
}

/* A payload of one put, as records.encode_writes({key: value}) makes it:
 * op count, then kind, key length, value length, key, value. */
static PyObject *encode_put(PyObject *key, PyObject *value)
{
    Py_ssize_t klen = PyBytes_GET_SIZE(key), vlen = PyBytes_GET_SIZE(value);
    PyObject *out = PyBytes_FromStringAndSize(NULL, 4 + SP_OP_HEADER_SIZE + klen + vlen);
    if (out == NULL)
        return NULL;
    uint8_t *b = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t head[4 + SP_OP_HEADER_SIZE] = {
        1, 0, 0, 0, SP_OP_PUT, (uint8_t)klen, (uint8_t)(klen >> 8),
        (uint8_t)vlen, (uint8_t)(vlen >> 8), (uint8_t)(vlen >> 16), (uint8_t)(vlen >> 24),
    };
    memcpy(b, head, sizeof head);
    memcpy(b + sizeof head, PyBytes_AS_STRING(key), (size_t)klen);
    memcpy(b + sizeof head + klen, PyBytes_AS_STRING(value), (size_t)vlen);
    return out;
}

/* time.time_ns(): the clock the Python append stamps records with. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* WalWriter.append with the log's lock held: 1 with c->lsn set (logged),
 * 0 if the oracle must do it (nothing done), -1 with an error. */
static int wal_append(StorePut *p, Put *c)
{
    PyObject *wd = c->wd;
    PyObject *wclosed = field(wd, s_closed), *wfailed = field(wd, s_failed);
    PyObject *gathering = field(wd, s_gathering), *prepared = field(wd, s_prepare_requested);
    if (wclosed != Py_False || wfailed != Py_None || gathering != Py_False ||
        (prepared != Py_True && prepared != Py_False))
        return PyErr_Occurred() ? -1 : 0;
    long long end, alloc, appended, next;
    int ok = field_u62(wd, s_end, &end);
    ok = ok == 1 ? field_u62(wd, s_alloc, &alloc) : ok;
    ok = ok == 1 ? field_u62(wd, s_bytes_appended, &appended) : ok;
    ok = ok == 1 ? field_u62(wd, s_next_lsn, &next) : ok;
    if (ok != 1)
        return ok;
    Py_ssize_t len = PyBytes_GET_SIZE(c->payload);
    long long size = SP_RECORD_HEADER_SIZE + (long long)len;
    /* A rollover, an extension or the prepare trigger: the oracle's. */
    if (end + size > alloc || (prepared == Py_False && (end + size) * 2 > alloc))
        return 0;
    /* Made before the record is queued, so nothing after it can fail. */
    PyObject *lsn = PyLong_FromLongLong(next);
    PyObject *next_lsn = lsn == NULL ? NULL : PyLong_FromLongLong(next + 1);
    PyObject *new_end = next_lsn == NULL ? NULL : PyLong_FromLongLong(end + size);
    PyObject *new_appended = new_end == NULL ? NULL : PyLong_FromLongLong(appended + size);
    int rc = -1;
    if (new_appended == NULL)
        goto done;
    int st = p->append(c->engine, (uint64_t)next, now_ns(),
                       (const uint8_t *)PyBytes_AS_STRING(c->payload), (size_t)len);
    if (st != SP_OK) {
        /* As the oracle: check_append raises for a refused payload, else
         * _native_refused raises the log's error. */
        PyObject *status = PyLong_FromLong(st);
        PyObject *args[4] = {c->native, status, lsn, c->payload};
        PyObject *r = status == NULL ? NULL
                      : PyObject_VectorcallMethod(s_check_append, args,
                                                  4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_XDECREF(status);
        if (r != NULL) {
            int refused = PyObject_IsTrue(r);
            Py_DECREF(r);
            if (refused > 0)
                r = call_method(c->wal, s_native_refused, NULL); /* raises */
            if (refused == 0 || r != NULL) {
                Py_XDECREF(r);
                PyErr_SetString(PyExc_SystemError, "wal: a refused append raised nothing");
            }
        }
        goto done;
    }
    if (set_field(wd, s_next_lsn, next_lsn) < 0 || set_field(wd, s_end, new_end) < 0 ||
        set_field(wd, s_bytes_appended, new_appended) < 0)
        goto done;
    c->lsn = lsn;
    lsn = NULL;
    rc = 1;
done:
    Py_XDECREF(lsn);
    Py_XDECREF(next_lsn);
    Py_XDECREF(new_end);
    Py_XDECREF(new_appended);
    return rc;
}

/* _append_locked's ``with self._mem_lock`` block: 0, or -1 with an error
 * (the mem lock released). */
static int apply(StorePut *p, Put *c, PyObject *key, PyObject *value)
{
    PyObject *mem_lock = field_ref(c->sd, s_mem_lock);
    if (mem_lock == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "_mem_lock");
        return -1;
    }
    if (acquire(mem_lock) < 0) {
        Py_DECREF(mem_lock);
        return -1;
    }
    int rc = -1;
    PyObject *writes = NULL, *r = NULL;
    PyObject *mem = field_ref(c->sd, s_mem);
    if (mem == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "_mem");
        goto done;
    }
    /* The native memtable reads the payload alone; any other one gets the
     * writes the oracle passes. */
    if ((PyObject *)Py_TYPE(mem) == p->mem_type) {
        writes = Py_NewRef(Py_None);
    } else {
        writes = PyDict_New();
        if (writes == NULL || PyDict_SetItem(writes, key, value) < 0)
            goto done;
    }
    PyObject *args[3] = {mem, writes, c->payload};
    r = PyObject_VectorcallMethod(s_apply_commit, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL || PyObject_SetAttr(mem, s_mem_last_lsn, c->lsn) < 0 ||
        set_field(c->sd, s_last_lsn, c->lsn) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(r);
    Py_XDECREF(writes);
    Py_XDECREF(mem);
    release(mem_lock);
    Py_DECREF(mem_lock);
    return rc;
}

/* Store._finish(lsn): wait for durability (WalWriter.flush), then the
 * checkpoint trigger.  None, or NULL with an error. */
static PyObject *finish(StorePut *p, Put *c, PyObject *store)
{
    PyObject *wal = field(c->sd, s_wal);
    PyObject *native = wal == c->wal ? field(c->wd, s_native) : NULL;
    if (native != c->native) {
        /* The log was swapped meanwhile (a restore's reopen): the oracle's
         * _finish reads the new one. */
        if (PyErr_Occurred())
            return NULL;
        PyObject *args[2] = {store, c->lsn};
        return PyObject_VectorcallMethod(s_finish, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    PyObject *mode = field(c->wd, s_sync_mode);
    int durable = mode == NULL ? -1 : PyObject_RichCompareBool(mode, s_always, Py_EQ);
    if (durable < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "sync_mode");
        return NULL;
    }
    uint64_t lsn = (uint64_t)PyLong_AsUnsignedLongLong(c->lsn);
    int st;
    /* sp_wal_flush blocks (it may lead an fdatasync): never with the GIL.
     * c->handle keeps the engine alive meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    st = p->flush(c->engine, lsn, durable);
    Py_END_ALLOW_THREADS
    if (st != SP_OK) {
        if (acquire(c->wal_lock) < 0)
            return NULL;
        PyObject *r = call_method(c->wal, s_native_refused, NULL); /* raises */
        release(c->wal_lock);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    PyObject *limit = field(c->sd, s_checkpoint_bytes);
    if (limit == NULL || limit == Py_None)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    Py_INCREF(limit);
    PyObject *appended = field_ref(c->wd, s_bytes_appended);
    PyObject *mark = appended == NULL ? NULL : field(c->sd, s_ckpt_bytes_mark);
    PyObject *since = mark == NULL ? NULL : PyNumber_Subtract(appended, mark);
    int due = since == NULL ? -1 : PyObject_RichCompareBool(since, limit, Py_GE);
    PyObject *result = NULL;
    if (due > 0) {
        PyObject *ckpt = set_field(c->sd, s_ckpt_bytes_mark, appended) < 0
                             ? NULL : field_ref(c->sd, s_checkpointer);
        result = ckpt == NULL ? NULL : call_method(ckpt, s_request, NULL);
        Py_XDECREF(ckpt);
        Py_XDECREF(result);
        due = result == NULL ? -1 : 0;
    }
    if (due < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_AttributeError, "bytes_appended or _ckpt_bytes_mark");
    Py_XDECREF(since);
    Py_XDECREF(appended);
    Py_DECREF(limit);
    return due < 0 ? NULL : Py_NewRef(Py_None);
}

/* put -> _commit -> _begin_write .. _end_write -> _finish.  NULL with an
 * error, None, or (declined) the missing sentinel: c->payload unset. */
static PyObject *commit(StorePut *p, Put *c, PyObject *store, PyObject *key, PyObject *value)
{
    int ours = prepare(p, c, store);
    if (ours <= 0)
        return ours < 0 ? NULL : Py_NotImplemented;
    /* _begin_write */
    if (acquire(c->write_lock) < 0)
        return NULL;
    if (set_field(c->sd, s_txn_owner, c->me) < 0) {
        end_write(c);
        return NULL;
    }
    PyObject *failed = field(c->sd, s_failed), *closed = field(c->sd, s_closed);
    if (failed != Py_None || closed != Py_False) {
        end_write(c); /* the oracle takes the lock again and raises */
        return PyErr_Occurred() ? NULL : Py_NotImplemented;
    }
    /* _append_locked */
    c->payload = encode_put(key, value);
    if (c->payload == NULL) {
        end_write(c);
        return NULL;
    }
    if (acquire(c->wal_lock) < 0) {
        append_failed(store, c);
        end_write(c);
        return NULL;
    }
    int logged = wal_append(p, c);
    release(c->wal_lock);
    if (logged <= 0) {
        if (logged < 0)
            append_failed(store, c);
        end_write(c);
        return logged < 0 ? NULL : Py_NotImplemented;
    }
    if (apply(p, c, key, value) < 0) {
        append_failed(store, c);
        end_write(c);
        return NULL;
    }
    end_write(c);
    return finish(p, c, store);
}

PyObject *storeput_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames)
{
    StorePut *p = (StorePut *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 3 || kwnames != NULL || (PyObject *)Py_TYPE(args[0]) != p->store_type)
        return PyObject_Vectorcall(p->fallback, args, nargsf, kwnames);
    PyObject *key = args[1], *value = args[2];
    if (!PyBytes_CheckExact(key) || PyBytes_GET_SIZE(key) == 0 ||
        PyBytes_GET_SIZE(key) > SP_MAX_KEY_SIZE || !PyBytes_CheckExact(value) ||
        PyBytes_GET_SIZE(value) > SP_MAX_PAYLOAD_SIZE - 4 - SP_OP_HEADER_SIZE - SP_MAX_KEY_SIZE)
        return PyObject_Vectorcall(p->fallback, args, nargsf, NULL);
    Put c;
    memset(&c, 0, sizeof c);
    PyObject *r = commit(p, &c, args[0], key, value);
    put_clear(&c);
    if (r == Py_NotImplemented) /* declined before any side effect */
        return PyObject_Vectorcall(p->fallback, args, nargsf, NULL);
    return r;
}

