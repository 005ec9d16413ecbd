/* sp_wal_yield.c -- sp_wal_yield: does a committer need the GIL that a
 * long job (a checkpoint's fold) holds?  See sp_wal.h for the contract and
 * docs/design.md ("Checkpoint") for why the fold asks.
 *
 * Split out of sp_wal.c, which keeps the group-commit loop; the engine's
 * struct is in sp_wal_internal.h.  sp_wal_flush records here which threads
 * came back from a durable flush (sp_wal_note_returned) and forgets them at
 * their next flush (sp_wal_forget_returned); lead, sp_wal_flush, sp_wal_fail
 * and sp_wal_abandon wake a waiting yielder (needed_changed).
 */

#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sp_wal.h"
#include "sp_wal_internal.h"

/* A committer back from its flush needs the GIL within this long, or it is
 * not committing again soon (it stopped, or it does other work). */
#define RETURN_NS 1000000.0
/* A yielder spins this long before it sleeps: waking a sleeping thread on a
 * virtual machine's idle CPU costs tens of microseconds, about what a
 * committer's whole turn with the GIL takes. */
#define SPIN_NS 200000.0

/* The calling thread is back from a durable flush.  Lock held. */
void sp_wal_note_returned(sp_wal *w, pthread_t self, double now)
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
int sp_wal_forget_returned(sp_wal *w, pthread_t self)
{
    for (int i = 0; i < w->n_returned; i++) {
        if (pthread_equal(w->returned[i].thread, self)) {
            w->returned[i] = w->returned[--w->n_returned];
            return 1;
        }
    }
    return 0;
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
    /* Woken by a flush's end and not yet back (they return, or sleep again). */
    if (w->waking > 0 && now - w->woke_at_ns < RETURN_NS) {
        if (until != NULL && w->woke_at_ns + RETURN_NS < *until)
            *until = w->woke_at_ns + RETURN_NS;
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
    sp_wal_hold_spinning(w, t0);
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
