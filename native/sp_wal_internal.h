/* sp_wal_internal.h -- what the group-commit engine's two files share: the
 * engine's struct and the helpers both use.
 *
 * sp_wal.c is the group-commit loop (append, gather, lead, flush, switch,
 * fail, abandon); sp_wal_yield.c is sp_wal_yield and the record it reads of
 * the threads back from a durable flush, which sp_wal_flush keeps.
 *
 * Internal: not part of the cffi cdef (native/build.py reads sp_core.h and
 * sp_wal.h only, and cffi could not parse this).  Include it after sp_wal.h.
 */

#ifndef SP_WAL_INTERNAL_H
#define SP_WAL_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MAX_RETURNING 32

struct sp_wal {
    pthread_mutex_t mu;
    pthread_cond_t done;   /* a flush finished or leadership is free */
    pthread_cond_t gather; /* an append or a flush exit, while gathering */
    pthread_cond_t needed; /* a yielder's wait: a committer back in a flush, a flush ended */
    uint32_t seed;
    int fd;
    uint64_t offset;       /* file offset of pend[0] */
    uint8_t *pend;         /* encoded records not yet taken by a leader */
    size_t pend_len, pend_cap;
    uint64_t pend_count, pend_last_lsn;
    uint8_t *spare;        /* empty; the leader's next batch buffer */
    size_t spare_cap;
    uint64_t next_lsn;
    uint64_t written_lsn, synced_lsn;
    uint64_t fsyncs;
    double sync_ns;        /* moving average of one fdatasync */
    int dirty;             /* written to fd but not synced */
    int flushing;
    int in_flush;          /* threads inside sp_wal_flush, leader included */
    int gathering;
    int error, error_op;
    int closed;
    double max_gather_ns;  /* cap on a leader's wait for committers */
    uint64_t gathers;
    double gather_wait_ns;
    /* For sp_wal_yield: when the flush in flight began (0: none), the
     * threads back from a durable flush that have not entered one since, with
     * when each came back (past RETURN_NS, in sp_wal_yield.c, they no longer
     * count; past MAX_RETURNING threads the oldest is forgotten), and
     * whether a yielder waits. */
    double flush_began_ns;
    struct {
        pthread_t thread;
        double at_ns;
    } returned[MAX_RETURNING];
    int n_returned;
    int yielding;
    unsigned long events; /* bumped (atomically) where `needed` is signalled */
};

static inline double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Wake a yielder, spinning or asleep.  Lock held. */
static inline void needed_changed(sp_wal *w)
{
    __atomic_add_fetch(&w->events, 1, __ATOMIC_RELEASE);
    if (w->yielding)
        pthread_cond_broadcast(&w->needed);
}

/* In sp_wal_yield.c; called by sp_wal_flush, lock held. */
void sp_wal_note_returned(sp_wal *w, pthread_t self, double now);
int sp_wal_forget_returned(sp_wal *w, pthread_t self);

#endif
