/* quire bench queue: throughput of the MPMC queue with P producers and C consumers moving
 * elements the size of quire run's queue item through a queue of the run's default
 * size. Full and empty are met with sched_yield, as a worker with nothing else to do. */
#include "cmds.h"
#include "quire/engine/mpmc.h"
#include "quire/base/util.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A barcode and its line number, as the feeder hands them on. */
struct bench_item {
        char barcode[65];
        unsigned long long line;
};

struct bench {
        struct mpmc *q;
        unsigned long long per_producer;
        pthread_barrier_t start;
        atomic_bool producers_done;
        atomic_ullong popped;
};

static void *bench_producer(void *p)
{
        struct bench *b = p;
        struct bench_item it;
        memset(&it, 0, sizeof it);
        memcpy(it.barcode, "32101067213021", 15);
        pthread_barrier_wait(&b->start);
        for (unsigned long long i = 0; i < b->per_producer; i++) {
                it.line = i;
                while (!mpmc_try_push(b->q, &it))
                        sched_yield();
        }
        return NULL;
}

static void *bench_consumer(void *p)
{
        struct bench *b = p;
        struct bench_item it;
        unsigned long long n = 0;
        pthread_barrier_wait(&b->start);
        for (;;) {
                if (mpmc_try_pop(b->q, &it)) {
                        n++;
                        continue;
                }
                /* Only after every push is done does an empty queue mean the end. */
                if (atomic_load_explicit(&b->producers_done, memory_order_acquire)) {
                        if (!mpmc_try_pop(b->q, &it))
                                break;
                        n++;
                        continue;
                }
                sched_yield();
        }
        atomic_fetch_add(&b->popped, n);
        return NULL;
}

static int bench_one(int producers, int consumers, unsigned long long items, size_t capacity)
{
        struct bench b = {.per_producer = items / (unsigned long long)producers};
        unsigned long long total = b.per_producer * (unsigned long long)producers;
        b.q = mpmc_new(capacity, sizeof(struct bench_item));
        pthread_t *t = calloc((size_t)(producers + consumers), sizeof *t);
        if (!b.q || !t) {
                mpmc_free(b.q);
                free(t);
                fputs("quire bench queue: out of memory\n", stderr);
                return 1;
        }
        /* +1: the clock starts when every thread is ready */
        pthread_barrier_init(&b.start, NULL, (unsigned)(producers + consumers + 1));
        for (int i = 0; i < consumers; i++)
                pthread_create(&t[i], NULL, bench_consumer, &b);
        for (int i = 0; i < producers; i++)
                pthread_create(&t[consumers + i], NULL, bench_producer, &b);
        pthread_barrier_wait(&b.start);
        uint64_t t0 = util_now_ns();
        for (int i = 0; i < producers; i++)
                pthread_join(t[consumers + i], NULL);
        atomic_store_explicit(&b.producers_done, true, memory_order_release);
        for (int i = 0; i < consumers; i++)
                pthread_join(t[i], NULL);
        double s = (double)(util_now_ns() - t0) / 1e9;
        unsigned long long popped = atomic_load(&b.popped);
        printf("queue: %2d producers %2d consumers, %llu items of %zu bytes, capacity %zu: "
               "%.2f M items/s (%.3f s)%s\n",
               producers, consumers, total, sizeof(struct bench_item), mpmc_capacity(b.q),
               (double)total / s / 1e6, s, popped == total ? "" : " LOST ITEMS");
        pthread_barrier_destroy(&b.start);
        mpmc_free(b.q);
        free(t);
        return popped == total ? 0 : 1;
}

enum { BQ_PRODUCERS = 256, BQ_CONSUMERS, BQ_ITEMS, BQ_CAPACITY };

static const struct opt bench_queue_opts[] = {
    OPT("producers", BQ_PRODUCERS, "N", NULL,
        "Producer threads (with neither this nor --consumers: 1/1, 1/4, 4/1, 4/4 and 8/8)."),
    OPT("consumers", BQ_CONSUMERS, "N", NULL, "Consumer threads."),
    OPT("items", BQ_ITEMS, "N", "4000000", "Items moved through the queue."),
    OPT("capacity", BQ_CAPACITY, "N", "100", "Queue capacity (quire run's --queue-size)."),
    {0},
};

struct bench_args {
        uint64_t producers, consumers, items, capacity;
};

static int set_option(void *ctx, int key, const char *arg)
{
        const struct cmd_spec *c = &bench_queue_spec;
        struct bench_args *a = ctx;
        switch (key) {
        case BQ_PRODUCERS:
                return opts_count(c, key, arg, 1, 256, &a->producers);
        case BQ_CONSUMERS:
                return opts_count(c, key, arg, 1, 256, &a->consumers);
        case BQ_ITEMS:
                return opts_count(c, key, arg, 1, 1ull << 40, &a->items);
        case BQ_CAPACITY:
                return opts_count(c, key, arg, 1, 1ull << 24, &a->capacity);
        }
        return 0;
}

const struct cmd_spec bench_queue_spec = {
    .name = "bench queue",
    .summary = "throughput of the MPMC queue",
    .description = "Moves items the size of quire run's queue item through the bounded MPMC "
                   "queue with P producers and C consumers, meeting full and empty with "
                   "sched_yield. A benchmark: nothing is asserted.",
    .opts = bench_queue_opts,
    .main = bench_queue,
};

int bench_queue(int argc, char **argv)
{
        struct bench_args a = {.items = 4000000, .capacity = 100};
        int next = opts_parse(&bench_queue_spec, argc, argv, set_option, &a);
        if (next < 0)
                return opts_exit_status(next);
        uint64_t producers = a.producers, consumers = a.consumers, items = a.items,
                 capacity = a.capacity;
        if (producers || consumers)
                return bench_one(producers ? (int)producers : 1, consumers ? (int)consumers : 1,
                                 items, capacity);
        static const int combos[][2] = {{1, 1}, {1, 4}, {4, 1}, {4, 4}, {8, 8}};
        int rc = 0;
        for (size_t i = 0; i < sizeof combos / sizeof combos[0]; i++)
                rc |= bench_one(combos[i][0], combos[i][1], items, capacity);
        return rc;
}
