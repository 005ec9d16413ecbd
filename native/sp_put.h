/* sp_put.h -- what sp_put.c (Store.put transcribed) and sp_put_type.c (the
 * StorePut type and the module) share. */
#ifndef SP_PUT_H
#define SP_PUT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "sp_core.h"
#include "sp_wal.h"

/* Shared by this module's two files only: Python loads an extension with
 * RTLD_LOCAL, and hidden names keep it so whatever loads it. */
#pragma GCC visibility push(hidden)

typedef int (*append_fn)(sp_wal *, uint64_t, uint64_t, const uint8_t *, size_t);
typedef int (*flush_fn)(sp_wal *, uint64_t, int);
/* The addresses we are handed must be these functions' (unevaluated: no
 * reference to the symbols, which live in another module). */
_Static_assert(_Generic(&sp_wal_append, append_fn: 1, default: 0), "sp_wal_append's type");
_Static_assert(_Generic(&sp_wal_flush, flush_fn: 1, default: 0), "sp_wal_flush's type");

/* Interned attribute and method names, made once at import (sp_put_type.c). */
extern PyObject *s_codec, *s_txn_owner, *s_closed, *s_readonly, *s_failed, *s_wal, *s_mem,
    *s_write_lock, *s_mem_lock, *s_lock, *s_native, *s_handle, *s_address, *s_end, *s_alloc,
    *s_next_lsn, *s_bytes_appended, *s_gathering, *s_prepare_requested, *s_last_lsn,
    *s_mem_last_lsn, *s_sync_mode, *s_always, *s_checkpoint_bytes, *s_ckpt_bytes_mark, *s_checkpointer,
    *s_acquire, *s_release, *s_apply_commit, *s_check_append, *s_native_refused,
    *s_append_failed, *s_request, *s_finish, *s_doc, *s_wrapped;

typedef struct {
    PyObject_HEAD
    PyObject *fallback;        /* Store._put_py: the oracle and every other case */
    PyObject *store_type;      /* Store: a subclass may override a step */
    PyObject *bytes_codec;     /* values.BytesCodec */
    PyObject *wal_type;        /* wal.WalWriter */
    PyObject *engine_type;     /* wal_native.NativeGroupCommit */
    PyObject *mem_type;        /* _sp_memtable.NativeMemtable */
    append_fn append;          /* sp_wal_append */
    flush_fn flush;            /* sp_wal_flush */
    vectorcallfunc vectorcall;
} StorePut;

/* StorePut's vectorcall: db.put(key, value). */
PyObject *storeput_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames);

#pragma GCC visibility pop

#endif
