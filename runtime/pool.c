/* pool.c - the thread pool: one persistent set of workers that runs any job, and the
 * row-split matrix products built on it.
 *
 * A job is fn(arg, share, nshares) on every thread, the caller taking share 0. Linear splits
 * output rows, and each row is summed exactly as with one thread, so the results are
 * bit-identical whatever N is. Between jobs a worker spins briefly on the job counter (decode
 * issues jobs every few microseconds) and then sleeps on a condition variable.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rt_internal.h"
#include "kernels.h"

#define POOL_SPIN 20000          /* polls of the job counter before sleeping */

struct krt_pool {
    int n;                       /* threads, the caller included */
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint_fast64_t job;    /* bumped for each job; workers wait for a change */
    atomic_int pending;          /* workers still busy with the current job */
    atomic_int stop;
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
            if (++spins < POOL_SPIN)
                continue;
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
    while (atomic_load(&p->pending) > 0)
        ;                          /* the other shares take as long as this one */
}

typedef struct linear_job {
    krt_linear_fn fn;          /* one of the two: without or with an epilogue */
    krt_linear_res_fn res_fn;
    float *y;
    const float *x;
    const void *w;
    int64_t rows, ld, out, in;
    const float *r;
    int64_t ldr;
} linear_job;

static void linear_share(void *arg, int share, int nshares)
{
    const linear_job *j = arg;
    int64_t i0 = j->out * share / nshares, i1 = j->out * (share + 1) / nshares;
    if (i1 <= i0)
        return;
    if (j->res_fn)
        j->res_fn(j->y, j->x, j->rows, j->w, j->ld, j->out, j->in, i0, i1, j->r, j->ldr);
    else
        j->fn(j->y, j->x, j->rows, j->w, j->ld, j->out, j->in, i0, i1);
}

static void linear_run(krt_pool *p, const linear_job *j)
{
    /* which products are worth splitting is the lowering's decision (codegen/lower.c) */
    if (!p || j->out < p->n)
        linear_share((void *)j, 0, 1);
    else
        krt_pool_run(p, linear_share, (void *)j);
}

void krt_linear_mt(krt_pool *p, krt_linear_fn fn, float *y, const float *x, int64_t rows,
                   const void *w, int64_t ld, int64_t out, int64_t in)
{
    linear_job j = {.fn = fn, .y = y, .x = x, .w = w, .rows = rows, .ld = ld, .out = out, .in = in};
    linear_run(p, &j);
}

void krt_linear_res_mt(krt_pool *p, krt_linear_res_fn fn, float *y, const float *x,
                       int64_t rows, const void *w, int64_t ld, int64_t out, int64_t in,
                       const float *r, int64_t ldr)
{
    linear_job j = {.res_fn = fn, .y = y, .x = x, .w = w, .rows = rows, .ld = ld, .out = out,
                    .in = in, .r = r, .ldr = ldr};
    linear_run(p, &j);
}
