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
 *
 * The engine's struct is in sp_wal_internal.h; sp_wal_yield (a checkpoint
 * asking whether a committer needs the GIL) is in sp_wal_yield.c; the
 * syncer, which leads durable flushes on fast disks so that a committer can
 * wait spinning, is in sp_wal_sync.c.
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
#include "sp_wal_internal.h"

#define INITIAL_CAPACITY (64u * 1024u)
/* A buffer grown past this for one big record is given back after use. */
#define KEEP_CAPACITY (4u * 1024u * 1024u)
#define MAX_GATHER_NS 2000000.0 /* 2 ms, as wal_group.py */

sp_wal *sp_wal_new(uint32_t seed, int fd, uint64_t offset, uint64_t next_lsn)
{
    sp_wal *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        goto no_attr;
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_mutex_init(&w->mu, NULL) != 0)
        goto no_mutex;
    if (pthread_cond_init(&w->done, &attr) != 0)
        goto no_done;
    if (pthread_cond_init(&w->needed, &attr) != 0)
        goto no_needed;
    if (pthread_cond_init(&w->work, &attr) != 0)
        goto no_work;
    if (pthread_cond_init(&w->gather, &attr) != 0)
        goto no_gather;
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
    w->spin_max_sync_ns = SP_WAL_SPIN_MAX_SYNC_NS;
    return w;

    /* Undo what was made, in reverse. */
no_gather:
    pthread_cond_destroy(&w->work);
no_work:
    pthread_cond_destroy(&w->needed);
no_needed:
    pthread_cond_destroy(&w->done);
no_done:
    pthread_mutex_destroy(&w->mu);
no_mutex:
    pthread_condattr_destroy(&attr);
no_attr:
    free(w);
    return NULL;
}

void sp_wal_free(sp_wal *w)
{
    if (w == NULL)
        return;
    sp_wal_syncer_stop(w);
    pthread_cond_destroy(&w->gather);
    pthread_cond_destroy(&w->work);
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
void sp_wal_gather(sp_wal *w)
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
void sp_wal_lead(sp_wal *w, int durable)
{
    uint8_t *batch = w->pend;
    size_t batch_len = w->pend_len, batch_cap = w->pend_cap;
    uint64_t upto = w->pend_count ? w->pend_last_lsn : w->written_lsn;
    uint64_t offset = w->offset;
    int fd = w->fd;
    int sync = durable && (batch_len > 0 || w->dirty);
    /* sp_wal_yield's estimate of the end is an fdatasync's: only then. */
    w->flush_began_ns = sync ? now_ns() : 0.0;
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
            w->error_op = op;
            __atomic_store_n(&w->error, err, __ATOMIC_RELEASE);
        }
        return;
    }
    if (upto > w->written_lsn)
        w->written_lsn = upto;
    if (sync) {
        /* Everyone waiting is woken by this flush; until each has looked,
         * sp_wal_yield counts them as committers about to need the GIL. */
        w->waking = w->waiting;
        w->woke_at_ns = now_ns();
        __atomic_store_n(&w->synced_lsn, w->written_lsn, __ATOMIC_RELEASE);
        w->dirty = 0;
        w->fsyncs++;
        w->sync_ns = w->sync_ns > 0.0 ? 0.8 * w->sync_ns + 0.2 * took : took;
    } else if (batch_len > 0) {
        w->dirty = 1;
    }
}

void sp_wal_begin_wait(sp_wal *w)
{
    w->waiting++;
}

void sp_wal_end_wait(sp_wal *w)
{
    w->waiting--;
    if (w->waking > 0 && --w->waking == 0)
        needed_changed(w);
}

void sp_wal_wait_done(sp_wal *w)
{
    sp_wal_begin_wait(w);
    pthread_cond_wait(&w->done, &w->mu);
    sp_wal_end_wait(w);
}

int sp_wal_flush(sp_wal *w, uint64_t lsn, int durable)
{
    int rc;
    pthread_mutex_lock(&w->mu);
    if (sp_wal_forget_returned(w, pthread_self()))
        needed_changed(w);
    __atomic_add_fetch(&w->in_flush, 1, __ATOMIC_RELEASE);
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
        if (durable && sp_wal_syncer_ready(w)) {
            sp_wal_await(w, lsn);
            continue;
        }
        if (w->flushing) {
            sp_wal_wait_done(w);
            continue;
        }
        __atomic_store_n(&w->flushing, 1, __ATOMIC_RELAXED);
        if (durable)
            sp_wal_gather(w);
        sp_wal_lead(w, durable);
        __atomic_store_n(&w->flushing, 0, __ATOMIC_RELAXED);
        pthread_cond_broadcast(&w->done);
        if (w->syncer_sleeping)
            pthread_cond_signal(&w->work);
    }
    __atomic_sub_fetch(&w->in_flush, 1, __ATOMIC_RELEASE);
    if (w->gathering)
        pthread_cond_signal(&w->gather);
    if (rc == SP_OK && durable)
        sp_wal_note_returned(w, pthread_self(), now_ns());
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
        w->error_op = 3;
        __atomic_store_n(&w->error, error != 0 ? error : EIO, __ATOMIC_RELEASE);
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
    __atomic_store_n(&w->closed, 1, __ATOMIC_RELEASE);
    w->pend_len = 0;
    w->pend_count = 0;
    pthread_cond_broadcast(&w->done);
    needed_changed(w);
    pthread_mutex_unlock(&w->mu);
    /* Nothing is left for the syncer: a closed log's thread would only sleep. */
    sp_wal_syncer_stop(w);
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
    st->syncer_flushes = w->syncer_flushes;
    st->spin_waits = w->spin_waits;
    st->spin_backoffs = w->backoffs;
    st->error = w->error;
    st->op = w->error_op;
    pthread_mutex_unlock(&w->mu);
}

