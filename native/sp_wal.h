/* sp_wal.h -- the native group-commit engine of the write-ahead log.
 *
 * Read verbatim as part of the cffi cdef (after sp_core.h), like sp_core.h.
 *
 * Unlike sp_core, this part does I/O and blocks: it is the one loop that
 * profiling showed must run without the GIL (docs/design.md, "Group commit
 * in C").  It owns its memory (sp_wal_new .. sp_wal_free) and does exactly
 * two kinds of system call on a descriptor it is lent: pwrite and fdatasync.
 * Segment files, rollover, preallocation and every other file operation stay
 * in Python (src/safepoint/wal.py through fs.py).  The protocol is that of
 * the Python loop in wal_group.py, which stays as its oracle: same records,
 * same bytes, same leader/follower rules, same failure semantics.
 *
 * Thread-safe: every function may be called from any thread, except that
 * sp_wal_free must be the last call, made by one thread.
 */

/* Statuses beyond sp_core's: FAILED, an earlier pwrite or fdatasync failed;
 * CLOSED, sp_wal_abandon was called; NO_MEMORY, the pending buffer could not
 * grow; BUSY, sp_wal_switch found records not yet on disk. */
#define SP_WAL_FAILED 20
#define SP_WAL_CLOSED 21
#define SP_WAL_NO_MEMORY 22
#define SP_WAL_BUSY 23

typedef struct sp_wal sp_wal;

/* What a caller may want to know, read under the engine's lock. */
typedef struct {
    uint64_t written_lsn;  /* every record <= this was handed to the kernel */
    uint64_t synced_lsn;   /* every record <= this is on disk */
    uint64_t offset;       /* where the next batch will be written */
    uint64_t pending;      /* records appended, not yet taken by a leader */
    uint64_t fsyncs;       /* fdatasync calls made */
    uint64_t gathers;      /* leaders that waited for committers to queue */
    double gather_wait_ns; /* total time leaders spent gathering */
    double sync_ns;        /* moving average of one fdatasync */
    uint64_t syncer_flushes; /* flushes the syncer thread led (sp_wal_sync.c) */
    uint64_t spin_waits;   /* committers' waits that ended while they spun */
    uint64_t spin_backoffs; /* times slow hand-offs turned spinning off a while */
    int error;             /* the errno that failed the log, or 0 */
    int op;                /* 1: a pwrite failed, 2: an fdatasync, 3: sp_wal_fail */
} sp_wal_state;

/* A new engine writing to fd from offset; the next record appended must be
 * next_lsn and records <= next_lsn - 1 count as written and synced.  NULL if
 * out of memory or a pthread object could not be made. */
sp_wal *sp_wal_new(uint32_t seed, int fd, uint64_t offset, uint64_t next_lsn);

/* Free the engine.  No thread may be inside any other sp_wal_* call. */
void sp_wal_free(sp_wal *w);

/* Encode one record (LSN lsn, which must be the next) into the pending
 * buffer.  Nothing is written yet.  SP_OK, or SP_BAD_LSN, SP_BAD_LENGTH,
 * SP_BAD_PAYLOAD, SP_WAL_NO_MEMORY (nothing appended; the log stays usable),
 * SP_WAL_FAILED, SP_WAL_CLOSED. */
int sp_wal_append(sp_wal *w, uint64_t lsn, uint64_t time_ns,
                  const uint8_t *payload, size_t len);

/* Return once record lsn is written (durable == 0) or on disk (durable != 0),
 * leading a write + fdatasync shared with every committer queued at the same
 * time if no other thread is.  SP_OK, SP_WAL_FAILED (this or an earlier
 * call's I/O failed: see sp_wal_state), SP_WAL_CLOSED. */
int sp_wal_flush(sp_wal *w, uint64_t lsn, int durable);

/* Lend the engine a new file (the next segment): waits for a flush in
 * flight; SP_WAL_BUSY if records are pending or written but not synced
 * (flush durably first).  After SP_OK the old descriptor is never used again
 * and the caller may close it. */
int sp_wal_switch(sp_wal *w, int fd, uint64_t offset);

/* Fail the log from outside (an fsync of the directory failed, say): every
 * later append and flush returns SP_WAL_FAILED.  The first error stays. */
void sp_wal_fail(sp_wal *w, int error);

/* Drop pending records, as a killed process would, and refuse further work
 * (SP_WAL_CLOSED).  Waits for a flush in flight to finish. */
void sp_wal_abandon(sp_wal *w);

/* Cap a leader's wait for committers about to queue (default 2 ms; the
 * wait is also at most half a recent fdatasync); 0 turns gathering off. */
void sp_wal_set_gather(sp_wal *w, double max_ns);

/* Leave durable flushes to the engine's syncer thread, with one committer
 * spin-waiting, only while an fdatasync takes at most max_sync_ns on
 * average (default 1 ms; 0: never).  See sp_wal_sync.c. */
void sp_wal_set_spin(sp_wal *w, double max_sync_ns);

/* Fill *st under the lock. */
void sp_wal_get_state(sp_wal *w, sp_wal_state *st);

/* For a long job that holds the GIL between short steps (a checkpoint's
 * fold): wait, at most max_ns, while another thread needs the GIL now or
 * soon: a flush is in flight and due to end within step_ns (by its
 * fdatasync's moving average), or a thread came back from a durable flush
 * less than 1 ms ago and has not called sp_wal_flush again (its next
 * commit's flush, where it releases the GIL).  The calling thread's own
 * flushes do not count.  Spins for up to 200 us before it sleeps (a
 * wake-up on an idle virtual CPU costs about a committer's turn).  Called
 * without the GIL (cffi drops it), so the committer runs while the job
 * waits.  Returns the nanoseconds waited (0: nobody needed the GIL). */
double sp_wal_yield(sp_wal *w, double step_ns, double max_ns);
