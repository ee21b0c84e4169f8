/* pool.c - the thread pool: one persistent set of workers that runs any job, and the
 * barrier its shares meet at.
 *
 * A job is fn(arg, share, nshares) on every thread, the caller taking share 0. A program's
 * forward call is one job: every thread walks the steps, each doing its share of a step,
 * and they meet at a barrier where a step needs what another thread wrote (codegen/lower.c
 * decides where). Each output is summed exactly as with one thread, so the results are
 * bit-identical whatever N is. Between jobs a worker spins briefly on the job counter (decode
 * issues a job every few milliseconds) and then sleeps on a condition variable; at a
 * barrier it spins, yielding the CPU after a while (more threads than cores).
 * Every hand-off is a sequentially consistent C11 atomic or the mutex: the bump of `job`
 * publishes fn and arg, the decrement of `pending` a worker's share, the barrier's count and
 * flip every write before it; so ThreadSanitizer (ninja tsan, tests/run.sh) sees no race and
 * needs no suppression.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rt_internal.h"
#include "kernels.h"
#include "kiln_rt.h"

#define POOL_SPIN 20000          /* polls of the job counter before sleeping (~1 ms) */
#define BARRIER_SPIN 8000        /* polls at a barrier before yielding between polls (~0.3 ms):
                                    a step of the other threads takes microseconds to a few
                                    milliseconds, and a yield costs a system call */

/* What a spinning thread does between polls: tells the core it spins (x86 pause). */
static inline void spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

struct krt_pool {
    int n;                       /* threads, the caller included */
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint_fast64_t job;    /* bumped for each job; workers wait for a change */
    atomic_int pending;          /* workers still busy with the current job */
    atomic_int stop;
    atomic_int bar_count;        /* shares arrived at the barrier */
    atomic_int bar_phase;        /* flipped by the last one to arrive */
    /* the current job, written before the bump of `job` that publishes it */
    krt_job_fn fn;
    void *arg;
};

typedef struct worker_arg {
    krt_pool *p;
    int k;                       /* this worker's share, 1..n-1 */
} worker_arg;

static void *worker_main(void *arg)
{
    worker_arg *a = arg;
    krt_pool *p = a->p;
    uint_fast64_t seen = 0;
    for (;;) {
        uint_fast64_t job;
        int spins = 0;
        while ((job = atomic_load(&p->job)) == seen && !atomic_load(&p->stop)) {
            if (++spins < POOL_SPIN) {
                spin_pause();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->job) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            break;
        seen = job;
        p->fn(p->arg, a->k, p->n);
        atomic_fetch_sub(&p->pending, 1);
    }
    free(a);
    return NULL;
}

krt_pool *krt_pool_new(int threads)
{
    if (threads < 2)
        return NULL;
    krt_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = threads;
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->job, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->bar_count, 0);
    atomic_init(&p->bar_phase, 0);
    for (int k = 1; p->workers && k < threads; k++) {
        worker_arg *a = malloc(sizeof *a);
        if (a)
            *a = (worker_arg){p, k};
        if (!a || pthread_create(&p->workers[k], NULL, worker_main, a) != 0) {
            free(a);
            p->n = k;            /* run with the workers that did start */
            break;
        }
    }
    if (!p->workers || p->n < 2) {
        krt_pool_free(p);
        return NULL;
    }
    return p;
}

void krt_pool_free(krt_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int k = 1; k < p->n; k++)
        pthread_join(p->workers[k], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->workers);
    free(p);
}

void krt_pool_run(krt_pool *p, krt_job_fn fn, void *arg)
{
    if (!p) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->job, 1);  /* publishes the job fields written above */
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    for (int spins = 0; atomic_load(&p->pending) > 0; spins++) {
        spin_pause();              /* the other shares take about as long as this one */
        if (spins > BARRIER_SPIN)
            sched_yield();
    }
}

void krt_pool_barrier(krt_pool *p)
{
    if (!p)
        return;
    int phase = atomic_load(&p->bar_phase);
    if (atomic_fetch_add(&p->bar_count, 1) == p->n - 1) {
        atomic_store(&p->bar_count, 0);      /* before the flip: the next barrier starts at 0 */
        atomic_store(&p->bar_phase, !phase);
        return;
    }
    for (int spins = 0; atomic_load(&p->bar_phase) == phase; spins++) {
        spin_pause();
        if (spins > BARRIER_SPIN)
            sched_yield();
    }
}

int krt_pool_size(const krt_pool *p)
{
    return p ? p->n : 1;
}

int krt_share_rows(int64_t r0, int64_t r1, int sh, int nsh, int64_t *lo, int64_t *hi)
{
    int64_t n = r1 > r0 ? r1 - r0 : 0;
    if (nsh > 1 && n >= (int64_t)KRT_ROWS_PER_SHARE * nsh) {
        *lo = r0 + n * sh / nsh;
        *hi = r0 + n * (sh + 1) / nsh;
        return 1;
    }
    *lo = r0;
    *hi = sh == 0 ? r0 + n : r0;
    return 0;
}

void krt_step_sync(krt_ctx *c, int *prev, int split)
{
    if (*prev || split)
        krt_pool_barrier(c->pool);
    *prev = split;
}
