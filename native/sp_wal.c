/* sp_wal.c -- group commit without the GIL.  See sp_wal.h and
 * docs/design.md ("Group commit in C") for why this loop is native.
 *
 * The protocol is the Python writer's (src/safepoint/wal_group.py, _flush_locked,
 * _gather, _lead_flush), line for line:
 *   - appends encode their record into `pend` under the lock;
 *   - the first committer to find no flush in progress leads: for a durable
 *     flush it first waits briefly for committers about to queue (gather),
 *     then swaps `pend` for the empty `spare`, releases the lock, writes the
 *     batch with pwrite, fdatasyncs, retakes the lock, publishes the new
 *     written/synced LSNs and wakes everyone;
 *   - a failed pwrite or fdatasync fails the log for good (never retried:
 *     after a failed fdatasync the kernel may have dropped the dirty pages).
 */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sp_core.h"
#include "sp_wal.h"

#define INITIAL_CAPACITY (64u * 1024u)
/* A buffer grown past this for one big record is given back after use. */
#define KEEP_CAPACITY (4u * 1024u * 1024u)
#define MAX_GATHER_NS 2000000.0 /* 2 ms, as wal_group.py */
#define MAX_RETURNING 32

struct sp_wal {
    pthread_mutex_t mu;
    pthread_cond_t done;   /* a flush finished or leadership is free */
    pthread_cond_t gather; /* an append or a flush exit, while gathering */
    pthread_cond_t needed; /* a yielder's wait: an append, or a flush ended */
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
     * threads back from a durable flush that have not appended since, with
     * when each came back (past RETURN_NS they no longer count; past
     * MAX_RETURNING threads the oldest is forgotten), and whether a yielder
     * waits. */
    double flush_began_ns;
    struct {
        pthread_t thread;
        double at_ns;
    } returned[MAX_RETURNING];
    int n_returned;
    int yielding;
    unsigned long events; /* bumped (atomically) where `needed` is signalled */
};

/* A committer back from its flush needs the GIL within this long, or it is
 * not committing again soon (it stopped, or it does other work). */
#define RETURN_NS 1000000.0
/* A yielder spins this long before it sleeps: waking a sleeping thread on a
 * virtual machine's idle CPU costs tens of microseconds, about what a
 * committer's whole turn with the GIL takes. */
#define SPIN_NS 200000.0

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

sp_wal *sp_wal_new(uint32_t seed, int fd, uint64_t offset, uint64_t next_lsn)
{
    sp_wal *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    pthread_condattr_t attr;
    int ok_attr = pthread_condattr_init(&attr) == 0;
    if (!ok_attr || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_mutex_init(&w->mu, NULL) != 0) {
        if (ok_attr)
            pthread_condattr_destroy(&attr);
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->done, &attr) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_condattr_destroy(&attr);
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->needed, &attr) != 0) {
        pthread_cond_destroy(&w->done);
        pthread_mutex_destroy(&w->mu);
        pthread_condattr_destroy(&attr);
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->gather, &attr) != 0) {
        pthread_cond_destroy(&w->needed);
        pthread_cond_destroy(&w->done);
        pthread_mutex_destroy(&w->mu);
        pthread_condattr_destroy(&attr);
        free(w);
        return NULL;
    }
    pthread_condattr_destroy(&attr);
    w->pend = malloc(INITIAL_CAPACITY);
    w->spare = malloc(INITIAL_CAPACITY);
    if (w->pend == NULL || w->spare == NULL) {
        sp_wal_free(w);
        return NULL;
    }
    w->pend_cap = w->spare_cap = INITIAL_CAPACITY;
    w->seed = seed;
    w->fd = fd;
    w->offset = offset;
    w->next_lsn = next_lsn;
    w->written_lsn = w->synced_lsn = next_lsn - 1;
    w->max_gather_ns = MAX_GATHER_NS;
    return w;
}

void sp_wal_free(sp_wal *w)
{
    if (w == NULL)
        return;
    pthread_cond_destroy(&w->gather);
    pthread_cond_destroy(&w->needed);
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->mu);
    free(w->pend);
    free(w->spare);
    free(w);
}

static int usable(const sp_wal *w)
{
    if (w->error != 0)
        return SP_WAL_FAILED;
    if (w->closed)
        return SP_WAL_CLOSED;
    return SP_OK;
}

/* Make room for need more bytes in pend.  Called with the lock held. */
static int reserve(sp_wal *w, size_t need)
{
    if (w->pend_cap - w->pend_len >= need)
        return SP_OK;
    size_t cap = w->pend_cap;
    while (cap - w->pend_len < need) {
        if (cap > SIZE_MAX / 2)
            return SP_WAL_NO_MEMORY;
        cap *= 2;
    }
    uint8_t *p = realloc(w->pend, cap);
    if (p == NULL)
        return SP_WAL_NO_MEMORY;
    w->pend = p;
    w->pend_cap = cap;
    return SP_OK;
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
static void needed_changed(sp_wal *w)
{
    __atomic_add_fetch(&w->events, 1, __ATOMIC_RELEASE);
    if (w->yielding)
        pthread_cond_broadcast(&w->needed);
}

/* The calling thread is back from a durable flush.  Lock held. */
static void note_returned(sp_wal *w, pthread_t self, double now)
{
    int oldest = 0;
    for (int i = 0; i < w->n_returned; i++) {
        if (pthread_equal(w->returned[i].thread, self)) {
            w->returned[i].at_ns = now;
            return;
        }
        if (w->returned[i].at_ns < w->returned[oldest].at_ns)
            oldest = i;
    }
    int i = w->n_returned < MAX_RETURNING ? w->n_returned++ : oldest;
    w->returned[i].thread = self;
    w->returned[i].at_ns = now;
}

/* The calling thread is in a flush again: it is done with the GIL until
 * the flush returns.  Lock held; 1 if it was counted. */
static int forget_returned(sp_wal *w, pthread_t self)
{
    for (int i = 0; i < w->n_returned; i++) {
        if (pthread_equal(w->returned[i].thread, self)) {
            w->returned[i] = w->returned[--w->n_returned];
            return 1;
        }
    }
    return 0;
}

int sp_wal_append(sp_wal *w, uint64_t lsn, uint64_t time_ns,
                  const uint8_t *payload, size_t len)
{
    if (len < SP_MIN_PAYLOAD_SIZE || len > SP_MAX_PAYLOAD_SIZE)
        return SP_BAD_LENGTH;
    uint32_t ops;
    if (sp_payload_check(payload, len, &ops) != SP_OK)
        return SP_BAD_PAYLOAD;
    pthread_mutex_lock(&w->mu);
    int rc = usable(w);
    if (rc == SP_OK && lsn != w->next_lsn)
        rc = SP_BAD_LSN;
    if (rc == SP_OK)
        rc = reserve(w, SP_RECORD_HEADER_SIZE + len);
    if (rc == SP_OK) {
        size_t written = 0;
        /* durable_lsn: what is on disk now is on disk when this is written. */
        rc = sp_record_encode(w->pend + w->pend_len, w->pend_cap - w->pend_len, w->seed,
                              lsn, time_ns, w->synced_lsn, payload, len, &written);
        if (rc == SP_OK) {
            w->pend_len += written;
            w->pend_count++;
            w->pend_last_lsn = lsn;
            w->next_lsn = lsn + 1;
            if (w->gathering)
                pthread_cond_signal(&w->gather);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Wait, briefly, for committers about to queue (wal_group.py's _gather): a leader
 * that went at once would carry only the first of a wave of committers and
 * leave the rest for the next fdatasync.  A lone committer never waits. */
static void gather(sp_wal *w)
{
    if ((uint64_t)w->in_flush <= w->pend_count || w->sync_ns <= 0.0)
        return;
    double wait = w->sync_ns * 0.5;
    if (wait > w->max_gather_ns)
        wait = w->max_gather_ns;
    if (wait <= 0.0)
        return;
    double t0 = now_ns();
    w->gathers++;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    long long ns = (long long)deadline.tv_nsec + (long long)wait;
    deadline.tv_sec += (time_t)(ns / 1000000000LL);
    deadline.tv_nsec = (long)(ns % 1000000000LL);
    w->gathering = 1;
    while ((uint64_t)w->in_flush > w->pend_count && w->error == 0) {
        if (pthread_cond_timedwait(&w->gather, &w->mu, &deadline) == ETIMEDOUT)
            break;
    }
    w->gathering = 0;
    w->gather_wait_ns += now_ns() - t0;
}

static int write_all(int fd, const uint8_t *buf, size_t len, uint64_t offset)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO;
        buf += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

/* Write (and sync) everything pending.  Called with the lock held and
 * w->flushing set; releases the lock around the I/O. */
static void lead(sp_wal *w, int durable)
{
    uint8_t *batch = w->pend;
    size_t batch_len = w->pend_len, batch_cap = w->pend_cap;
    uint64_t upto = w->pend_count ? w->pend_last_lsn : w->written_lsn;
    uint64_t offset = w->offset;
    int fd = w->fd;
    int sync = durable && (batch_len > 0 || w->dirty);
    w->flush_began_ns = now_ns();
    w->pend = w->spare;
    w->pend_cap = w->spare_cap;
    w->pend_len = 0;
    w->pend_count = 0;
    w->spare = NULL;
    w->offset += batch_len;
    pthread_mutex_unlock(&w->mu);

    int err = 0, op = 0;
    double took = 0.0;
    if (batch_len > 0) {
        err = write_all(fd, batch, batch_len, offset);
        op = 1;
    }
    if (err == 0 && sync) {
        double t0 = now_ns();
        if (fdatasync(fd) != 0)
            err = errno;
        took = now_ns() - t0;
        op = 2;
    }
    if (batch_cap > KEEP_CAPACITY) {
        uint8_t *small = malloc(INITIAL_CAPACITY);
        if (small != NULL) {
            free(batch);
            batch = small;
            batch_cap = INITIAL_CAPACITY;
        }
    }

    pthread_mutex_lock(&w->mu);
    w->flush_began_ns = 0.0;
    needed_changed(w);
    w->spare = batch;
    w->spare_cap = batch_cap;
    if (err != 0) {
        if (w->error == 0) {
            w->error = err;
            w->error_op = op;
        }
        return;
    }
    if (upto > w->written_lsn)
        w->written_lsn = upto;
    if (sync) {
        w->synced_lsn = w->written_lsn;
        w->dirty = 0;
        w->fsyncs++;
        w->sync_ns = w->sync_ns > 0.0 ? 0.8 * w->sync_ns + 0.2 * took : took;
    } else if (batch_len > 0) {
        w->dirty = 1;
    }
}

int sp_wal_flush(sp_wal *w, uint64_t lsn, int durable)
{
    int rc;
    pthread_mutex_lock(&w->mu);
    if (forget_returned(w, pthread_self()))
        needed_changed(w);
    w->in_flush++;
    for (;;) {
        if (w->error != 0) {
            rc = SP_WAL_FAILED;
            break;
        }
        uint64_t done = durable ? w->synced_lsn : w->written_lsn;
        if (done >= lsn) {
            rc = SP_OK;
            break;
        }
        if (w->closed) {
            rc = SP_WAL_CLOSED;
            break;
        }
        if (w->flushing) {
            pthread_cond_wait(&w->done, &w->mu);
            continue;
        }
        w->flushing = 1;
        if (durable)
            gather(w);
        lead(w, durable);
        w->flushing = 0;
        pthread_cond_broadcast(&w->done);
    }
    w->in_flush--;
    if (w->gathering)
        pthread_cond_signal(&w->gather);
    if (rc == SP_OK && durable)
        note_returned(w, pthread_self(), now_ns());
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int sp_wal_switch(sp_wal *w, int fd, uint64_t offset)
{
    pthread_mutex_lock(&w->mu);
    while (w->flushing)
        pthread_cond_wait(&w->done, &w->mu);
    int rc = usable(w);
    if (rc == SP_OK && (w->pend_len > 0 || w->dirty))
        rc = SP_WAL_BUSY;
    if (rc == SP_OK) {
        w->fd = fd;
        w->offset = offset;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void sp_wal_fail(sp_wal *w, int error)
{
    pthread_mutex_lock(&w->mu);
    if (w->error == 0) {
        w->error = error != 0 ? error : EIO;
        w->error_op = 3;
    }
    pthread_cond_broadcast(&w->done);
    needed_changed(w);
    pthread_mutex_unlock(&w->mu);
}

void sp_wal_abandon(sp_wal *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->flushing)
        pthread_cond_wait(&w->done, &w->mu);
    w->closed = 1;
    w->pend_len = 0;
    w->pend_count = 0;
    pthread_cond_broadcast(&w->done);
    needed_changed(w);
    pthread_mutex_unlock(&w->mu);
}

void sp_wal_set_gather(sp_wal *w, double max_ns)
{
    pthread_mutex_lock(&w->mu);
    w->max_gather_ns = max_ns > 0.0 ? max_ns : 0.0;
    pthread_mutex_unlock(&w->mu);
}

void sp_wal_get_state(sp_wal *w, sp_wal_state *st)
{
    pthread_mutex_lock(&w->mu);
    st->gathers = w->gathers;
    st->gather_wait_ns = w->gather_wait_ns;
    st->sync_ns = w->sync_ns;
    st->written_lsn = w->written_lsn;
    st->synced_lsn = w->synced_lsn;
    st->offset = w->offset + w->pend_len;
    st->pending = w->pend_count;
    st->fsyncs = w->fsyncs;
    st->error = w->error;
    st->op = w->error_op;
    pthread_mutex_unlock(&w->mu);
}

/* Does a committer need the GIL now or within step_ns?  Lock held.  If so
 * and *until is given, lowers it to when that stops being so by itself. */
static int committer_due(const sp_wal *w, pthread_t self, double now, double step_ns,
                         double *until)
{
    double latest = 0.0;
    for (int i = 0; i < w->n_returned; i++) {
        if (!pthread_equal(w->returned[i].thread, self) && w->returned[i].at_ns > latest)
            latest = w->returned[i].at_ns;
    }
    if (latest > 0.0 && now - latest < RETURN_NS) {
        if (until != NULL && latest + RETURN_NS < *until)
            *until = latest + RETURN_NS;
        return 1;
    }
    /* The flush's end wakes the waiter (lead), whatever the estimate said. */
    return w->flush_began_ns > 0.0 && w->sync_ns > 0.0 &&
           w->flush_began_ns + w->sync_ns - now < step_ns;
}

static struct timespec monotonic_at(double t_ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(t_ns / 1e9);
    ts.tv_nsec = (long)(t_ns - (double)ts.tv_sec * 1e9);
    if (ts.tv_nsec < 0)
        ts.tv_nsec = 0;
    if (ts.tv_nsec > 999999999L)
        ts.tv_nsec = 999999999L;
    return ts;
}

double sp_wal_yield(sp_wal *w, double step_ns, double max_ns)
{
    double t0 = now_ns();
    pthread_t self = pthread_self();
    int waited = 0;
    pthread_mutex_lock(&w->mu);
    w->yielding++;
    for (;;) {
        double until = t0 + max_ns;
        double now = now_ns();
        if (now >= until || w->error != 0 || w->closed ||
            !committer_due(w, self, now, step_ns, &until))
            break;
        waited = 1;
        if (now - t0 < SPIN_NS) {
            unsigned long seen = __atomic_load_n(&w->events, __ATOMIC_ACQUIRE);
            double spin_until = t0 + SPIN_NS < until ? t0 + SPIN_NS : until;
            pthread_mutex_unlock(&w->mu);
            while (__atomic_load_n(&w->events, __ATOMIC_ACQUIRE) == seen && now_ns() < spin_until)
                cpu_relax();
            pthread_mutex_lock(&w->mu);
            continue;
        }
        struct timespec deadline = monotonic_at(until);
        pthread_cond_timedwait(&w->needed, &w->mu, &deadline);
    }
    w->yielding--;
    pthread_mutex_unlock(&w->mu);
    return waited ? now_ns() - t0 : 0.0;
}
