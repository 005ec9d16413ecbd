/* sp_wal_sync.c -- the syncer: a thread of the engine's own that writes and
 * fdatasyncs durable flushes, so that a committer can wait for its record
 * spinning instead of asleep.  docs/design.md ("The syncer") has the
 * measurements behind it.
 *
 * Why: a committer that sleeps in fdatasync leaves its CPU idle, and on a
 * virtual machine an idle CPU comes back with cold caches.  Its next commit's
 * Python code then costs ~30 us of CPU instead of ~10, which is what kept one
 * writer's durable commits at 0.8-0.9x the raw pwrite+fdatasync loop.  With
 * the syncer in the fdatasync, the committer spins on a warm CPU and sees its
 * LSN synced within nanoseconds; the syncer spins briefly between flushes
 * for the next request, since waking a sleeping thread costs about as much.
 *
 * Used only where it pays (sp_wal_syncer_ready): for a durable flush, once
 * fdatasync is known to take at most 1 ms (sp_wal_set_spin) -- on a slow disk the
 * cold-cache cost is noise beside the fdatasync and spinning would only burn
 * CPU.  Otherwise, and in a child after fork (which has no syncer thread),
 * and if the thread cannot be created, committers lead their own flushes as
 * before.  At most one committer spins; the others sleep on `done`, as they
 * would behind a committer leading.
 *
 * The protocol is unchanged: the syncer runs the same sp_wal_gather and
 * sp_wal_lead a leading committer runs, under the same `flushing` flag, so
 * records, bytes, ordering and failure semantics are those of sp_wal.c.
 */

#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>

#include "sp_wal.h"
#include "sp_wal_internal.h"

/* A committer spins up to twice the average fdatasync, plus this. */
#define SPIN_SLACK_NS 50000.0
/* The syncer spins this long after a flush for the next request: one
 * writer's turn between two commits takes ~10-30 us. */
#define IDLE_SPIN_NS 100000.0
/* A hand-off (request to the syncer's start, flush's end to the spinner's
 * return) takes a microsecond or two on an idle machine.  When they average
 * more, the spinners and the syncer are queued behind other work for the
 * CPUs -- spinning then costs ~1.5 ms a commit instead of saving 10 us
 * (measured with two busy loops on this 2-CPU machine) -- so committers go
 * back to leading their own flushes, asleep, for BACKOFF_NS. */
#define LAG_MAX_NS 50000.0
#define LAG_CAP_NS 200000.0
#define BACKOFF_NS 1000000000.0
/* While a checkpoint's fold runs (it calls sp_wal_yield between steps of
 * ~100 us), its thread holds a CPU: a spinner and the syncer would share
 * the other one with the committer's own Python turn.  Committers lead
 * their own flushes until this long after the fold's last call. */
#define HOLD_NS 10000000.0

static unsigned fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void after_fork_in_child(void)
{
    __atomic_add_fetch(&fork_gen, 1, __ATOMIC_RELAXED);
}

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

/* One turn of a spin-wait.  Every few microseconds it gives the CPU to any
 * thread queued on it: on a loaded machine the thread a spinner waits for
 * (the syncer, or the committer) may be queued behind the spinner itself,
 * and would otherwise wait out the spinner's whole time slice (measured:
 * ~5 ms commits while a compiler ran on the other core). */
static inline void spin_turn(unsigned *n)
{
    cpu_relax();
    if ((++*n & 127) == 0)
        sched_yield();
}

/* Take the lock after a spin: a spinner that sees its event races the
 * thread that made it, which still holds the lock for a moment, and a plain
 * pthread_mutex_lock would put it to sleep -- the wake-up this file exists
 * to avoid. */
static void lock_hot(sp_wal *w)
{
    unsigned n = 0;
    for (int i = 0; i < 4000; i++) {
        if (pthread_mutex_trylock(&w->mu) == 0)
            return;
        spin_turn(&n);
    }
    pthread_mutex_lock(&w->mu);
}

/* One hand-off's delay.  Lock held. */
static void note_lag(sp_wal *w, double lag, double now)
{
    /* One slow hand-off is not a busy machine: a virtual CPU preempted by
     * its host stalls one for 1-4 ms now and then (measured here).  Each
     * counts at most LAG_CAP_NS, so it takes three slow ones in a row. */
    w->lag_ns = 0.9 * w->lag_ns + 0.1 * (lag < LAG_CAP_NS ? lag : LAG_CAP_NS);
    if (w->lag_ns > LAG_MAX_NS) {
        w->lag_ns = 0.0;
        w->backoffs++;
        __atomic_store_n(&w->backoff_until_ns, (uint64_t)(now + BACKOFF_NS), __ATOMIC_RELAXED);
    }
}

void sp_wal_hold_spinning(sp_wal *w, double now)
{
    uint64_t until = (uint64_t)(now + HOLD_NS);
    if (until > w->backoff_until_ns)
        __atomic_store_n(&w->backoff_until_ns, until, __ATOMIC_RELAXED);
}

static int backing_off(sp_wal *w, double now)
{
    return now < (double)__atomic_load_n(&w->backoff_until_ns, __ATOMIC_RELAXED);
}

static int wanted(const sp_wal *w)
{
    /* Something to write or sync: a want past the log's end is never met. */
    return w->want_lsn > w->synced_lsn && (w->pend_count > 0 || w->dirty);
}

static void *syncer_main(void *arg)
{
    sp_wal *w = arg;
    int spun = 0;
    pthread_mutex_lock(&w->mu);
    w->syncer_sleeping = 0;
    while (!w->syncer_stop) {
        if (w->error == 0 && !w->closed && !w->flushing && wanted(w)) {
            __atomic_store_n(&w->flushing, 1, __ATOMIC_RELAXED);
            if (w->want_at_ns > 0.0) {
                double now = now_ns();
                note_lag(w, now - w->want_at_ns, now);
                w->want_at_ns = 0.0;
            }
            sp_wal_gather(w);
            sp_wal_lead(w, 1);
            w->syncer_flushes++;
            __atomic_store_n(&w->flushing, 0, __ATOMIC_RELAXED);
            pthread_cond_broadcast(&w->done);
            spun = 0;
            continue;
        }
        if (!spun && w->error == 0 && !w->closed) {
            /* Wait for the next request awake, then asleep; a flush that a
             * committer leads meanwhile (the syncer was asleep when it came)
             * is the start of a run of commits, so it keeps the wait awake. */
            spun = 1;
            uint64_t synced = w->synced_lsn;
            double until = now_ns() + IDLE_SPIN_NS;
            pthread_mutex_unlock(&w->mu);
            unsigned n = 0;
            while (__atomic_load_n(&w->want_lsn, __ATOMIC_ACQUIRE) <= synced &&
                   !__atomic_load_n(&w->syncer_stop, __ATOMIC_ACQUIRE)) {
                spin_turn(&n);
                if ((n & 31) == 0) {
                    double now = now_ns();
                    if (__atomic_load_n(&w->flushing, __ATOMIC_RELAXED) &&
                        !backing_off(w, now))
                        until = now + IDLE_SPIN_NS;
                    else if (now > until)
                        break;
                }
            }
            lock_hot(w);
            continue;
        }
        w->syncer_sleeping = 1;
        pthread_cond_wait(&w->work, &w->mu);
        w->syncer_sleeping = 0;
        spun = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Start the syncer with every signal blocked: signals are the interpreter's
 * main thread's business.  Lock held. */
static void start_syncer(sp_wal *w)
{
    pthread_once(&fork_once, register_fork_handler);
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    int ok = pthread_attr_init(&attr) == 0;
    if (ok) {
        pthread_attr_setstacksize(&attr, 64 * 1024);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        ok = pthread_create(&w->syncer, &attr, syncer_main, w) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    w->syncer_state = ok ? SYNCER_RUNNING : SYNCER_FAILED;
    w->syncer_sleeping = ok; /* until it runs: committers lead meanwhile */
    w->syncer_fork_gen = __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
}

int sp_wal_syncer_ready(sp_wal *w)
{
    if (w->sync_ns <= 0.0 || w->sync_ns > w->spin_max_sync_ns || w->syncer_stop)
        return 0;
    if (w->syncer_state == SYNCER_NONE)
        start_syncer(w);
    if (w->syncer_state != SYNCER_RUNNING ||
        w->syncer_fork_gen != __atomic_load_n(&fork_gen, __ATOMIC_RELAXED))
        return 0;
    if (w->backoff_until_ns > 0 && backing_off(w, now_ns()))
        return 0;
    if (w->syncer_sleeping) {
        /* Waking it would cost this commit the wake-up: lead this flush
         * ourselves, and have the syncer awake for the next. */
        pthread_cond_signal(&w->work);
        return 0;
    }
    return 1;
}

void sp_wal_await(sp_wal *w, uint64_t lsn)
{
    /* The syncer is awake (sp_wal_syncer_ready): it sees this at once. */
    if (lsn > w->want_lsn) {
        if (w->want_lsn <= w->synced_lsn && !w->flushing)
            w->want_at_ns = now_ns(); /* the syncer should start at once */
        __atomic_store_n(&w->want_lsn, lsn, __ATOMIC_RELEASE);
    }
    if (!w->spinning && w->in_flush == 1) {
        w->spinning = 1;
        sp_wal_begin_wait(w);
        double until = now_ns() + 2.0 * w->sync_ns + SPIN_SLACK_NS;
        pthread_mutex_unlock(&w->mu);
        unsigned n = 0;
        while (__atomic_load_n(&w->synced_lsn, __ATOMIC_ACQUIRE) < lsn &&
               !__atomic_load_n(&w->error, __ATOMIC_ACQUIRE) &&
               !__atomic_load_n(&w->closed, __ATOMIC_ACQUIRE) &&
               __atomic_load_n(&w->in_flush, __ATOMIC_ACQUIRE) == 1) {
            spin_turn(&n);
            if ((n & 31) == 0 && now_ns() > until)
                break;
        }
        lock_hot(w);
        sp_wal_end_wait(w);
        w->spinning = 0;
        if (w->synced_lsn >= lsn) {
            double now = now_ns();
            note_lag(w, now - w->woke_at_ns, now);
            w->spin_waits++;
            return;
        }
        if (w->error != 0 || w->closed)
            return;
    }
    /* Re-checked under the lock by the caller; the syncer broadcasts `done`
     * under the lock after it publishes, so this cannot miss it. */
    sp_wal_wait_done(w);
}

void sp_wal_set_spin(sp_wal *w, double max_sync_ns)
{
    pthread_mutex_lock(&w->mu);
    w->spin_max_sync_ns = max_sync_ns > 0.0 ? max_sync_ns : 0.0;
    pthread_mutex_unlock(&w->mu);
}

void sp_wal_syncer_stop(sp_wal *w)
{
    pthread_mutex_lock(&w->mu);
    int running = w->syncer_state == SYNCER_RUNNING &&
                  w->syncer_fork_gen == __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
    if (w->syncer_state == SYNCER_RUNNING)
        w->syncer_state = SYNCER_STOPPED; /* joined once, here */
    __atomic_store_n(&w->syncer_stop, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    if (running)
        pthread_join(w->syncer, NULL);
}
