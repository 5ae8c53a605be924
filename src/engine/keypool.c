/* Pool threads deriving S2K keys; finished jobs go back to their owner's done list. */
#include "keypool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "quire/base/util.h"

struct keypool {
        pthread_mutex_t lock;
        pthread_cond_t work;
        struct key_req **ring; /* queued jobs; at most cap, one per book slot */
        unsigned cap, head, count, nthreads;
        bool stop;
        pthread_t *threads;
        const char *pass;
        size_t passlen;
        const atomic_bool *aborting;
};

static struct key_req *take_job(struct keypool *kp)
{
        pthread_mutex_lock(&kp->lock);
        while (!kp->count && !kp->stop)
                pthread_cond_wait(&kp->work, &kp->lock);
        struct key_req *req = NULL;
        if (kp->count) {
                req = kp->ring[kp->head];
                kp->head = (kp->head + 1) % kp->cap;
                kp->count--;
        }
        pthread_mutex_unlock(&kp->lock);
        return req;
}

static void give_back(struct key_req *req)
{
        struct key_done_list *dl = req->done_list;
        struct key_req *head = atomic_load(&dl->head);
        do
                req->next_done = head;
        while (!atomic_compare_exchange_weak(&dl->head, &head, req));
        dl->wake(dl->wake_arg);
}

static void *keypool_main(void *arg)
{
        struct keypool *kp = arg;
        struct key_req *req;
        while ((req = take_job(kp))) {
                /* An aborting run wants its slots back at once, not keys. */
                req->derive_ns = 0;
                if (!atomic_load(kp->aborting)) {
                        uint64_t t0 = util_now_ns();
                        pgp_key_derive(&req->job, kp->pass, kp->passlen);
                        req->derive_ns = util_now_ns() - t0;
                }
                give_back(req);
        }
        return NULL;
}

int keypool_start(struct keypool **out, unsigned nthreads, unsigned cap, const char *pass,
                  size_t passlen, const atomic_bool *aborting)
{
        struct keypool *kp = calloc(1, sizeof *kp);
        if (!kp)
                return -ENOMEM;
        kp->cap = cap;
        kp->pass = pass;
        kp->passlen = passlen;
        kp->aborting = aborting;
        kp->ring = calloc(cap, sizeof *kp->ring);
        kp->threads = calloc(nthreads, sizeof *kp->threads);
        pthread_mutex_init(&kp->lock, NULL);
        pthread_cond_init(&kp->work, NULL);
        *out = kp;
        if (!kp->ring || !kp->threads)
                return -ENOMEM;
        for (; kp->nthreads < nthreads; kp->nthreads++) {
                int err = pthread_create(&kp->threads[kp->nthreads], NULL, keypool_main, kp);
                if (err)
                        return -err;
        }
        return 0;
}

void keypool_submit(struct keypool *kp, struct key_req *req, struct key_done_list *done_list)
{
        req->done_list = done_list;
        pthread_mutex_lock(&kp->lock);
        kp->ring[(kp->head + kp->count) % kp->cap] = req;
        kp->count++;
        pthread_cond_signal(&kp->work);
        pthread_mutex_unlock(&kp->lock);
}

struct key_req *keypool_take_done(struct key_done_list *done_list)
{
        return atomic_exchange(&done_list->head, NULL);
}

void keypool_stop(struct keypool *kp)
{
        if (!kp)
                return;
        pthread_mutex_lock(&kp->lock);
        kp->stop = true;
        pthread_cond_broadcast(&kp->work);
        pthread_mutex_unlock(&kp->lock);
        for (unsigned i = 0; i < kp->nthreads; i++)
                pthread_join(kp->threads[i], NULL);
        free(kp->threads);
        free(kp->ring);
        pthread_mutex_destroy(&kp->lock);
        pthread_cond_destroy(&kp->work);
        free(kp);
}
