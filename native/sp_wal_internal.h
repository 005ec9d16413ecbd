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
/* sp_wal_set_spin's default: spinning for a longer fdatasync buys little. */
#define SP_WAL_SPIN_MAX_SYNC_NS 1000000.0

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
    int waiting;           /* committers waiting for a flush (asleep or spinning) */
    int waking;            /* of those, woken by the last durable flush, not yet up */
    double woke_at_ns;     /* when that flush ended */
    int yielding;
    unsigned long events; /* bumped (atomically) where `needed` is signalled */
    /* The syncer (sp_wal_sync.c): a thread of the engine's that writes and
     * fdatasyncs durable flushes, so that one committer can wait for its
     * record spinning on a warm CPU instead of asleep in fdatasync.
     * synced_lsn, error, closed, want_lsn and syncer_stop are also read
     * outside the lock by spinners: they are stored atomically. */
    pthread_cond_t work;   /* a committer wants a flush, or the syncer must stop */
    pthread_t syncer;
    int syncer_state;      /* SYNCER_NONE, _RUNNING, _FAILED or _STOPPED */
    unsigned syncer_fork_gen; /* sp_wal_fork_gen when it started */
    int syncer_sleeping;
    int syncer_stop;
    int spinning;          /* a committer spin-waits for its flush */
    uint64_t want_lsn;     /* the highest LSN a committer waits to see synced */
    uint64_t syncer_flushes, spin_waits;
    double spin_max_sync_ns; /* sp_wal_set_spin */
    double want_at_ns;     /* when a request found the syncer with nothing to do */
    double lag_ns;         /* moving average of the hand-offs' delays */
    uint64_t backoff_until_ns; /* no spinning before this (a loaded machine) */
    uint64_t backoffs;
};

enum { SYNCER_NONE, SYNCER_RUNNING, SYNCER_FAILED, SYNCER_STOPPED };

static inline double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A spin-wait's pause: lets the sibling hyperthread run, saves power. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
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

/* In sp_wal.c, for the syncer; lock held, w->flushing set by the caller. */
void sp_wal_gather(sp_wal *w);
void sp_wal_lead(sp_wal *w, int durable);
/* A committer's wait for a flush, asleep on `done` (sp_wal_wait_done) or
 * spinning between sp_wal_begin_wait and sp_wal_end_wait: counted for
 * sp_wal_yield, which must not take a woken committer's GIL turn. */
void sp_wal_begin_wait(sp_wal *w);
void sp_wal_end_wait(sp_wal *w);
void sp_wal_wait_done(sp_wal *w);

/* In sp_wal_sync.c; lock held.  sp_wal_syncer_ready: should this durable
 * flush be left to the syncer (started here if need be)?  sp_wal_await:
 * record that lsn is wanted, then wait once (spin or sleep) for a flush;
 * the caller re-checks.  sp_wal_syncer_stop: stop and join it (lock NOT
 * held; sp_wal_free only). */
int sp_wal_syncer_ready(sp_wal *w);
void sp_wal_await(sp_wal *w, uint64_t lsn);
void sp_wal_syncer_stop(sp_wal *w);
/* A long job shares the CPUs with committers (sp_wal_yield was called):
 * no spinning for a while.  Lock held. */
void sp_wal_hold_spinning(sp_wal *w, double now);

#endif
