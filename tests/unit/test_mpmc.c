/* The MPMC queue: FIFO, full and empty in one thread; then producers and consumers
 * hammering it (also under TSan: `make tsan`), checking that every item comes out exactly
 * once, intact, and in each producer's order as seen by any one consumer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quire/engine/mpmc.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static void test_new_rejects_zero(void **state)
{
        errno = 0;
        assert_null(mpmc_new(0, 8));
        assert_int_equal(errno, EINVAL);
        assert_null(mpmc_new(8, 0));
}

static void test_capacity_rounds_to_pow2(void **state)
{
        static const size_t in[] = {1, 2, 3, 5, 8, 100, 1000, 1024, 1025};
        static const size_t want[] = {2, 2, 4, 8, 8, 128, 1024, 1024, 2048};
        for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
                struct mpmc *q = mpmc_new(in[i], 4);
                assert_non_null(q);
                assert_int_equal(mpmc_capacity(q), want[i]);
                mpmc_free(q);
        }
}

static void test_fifo_full_empty(void **state)
{
        struct mpmc *q = mpmc_new(5, sizeof(uint64_t));
        assert_non_null(q);
        uint64_t v = 0;
        assert_false(mpmc_try_pop(q, &v));
        assert_int_equal(mpmc_size(q), 0);
        /* Many laps, so sequence numbers wrap the ring repeatedly. */
        uint64_t next_in = 0, next_out = 0;
        for (int lap = 0; lap < 1000; lap++) {
                while (mpmc_try_push(q, &next_in))
                        next_in++;
                assert_int_equal(mpmc_size(q), 8);
                assert_int_equal(next_in - next_out, 8);
                /* Drain a varying part so head and tail take every offset. */
                int take = 1 + lap % 8;
                for (int i = 0; i < take; i++) {
                        assert_true(mpmc_try_pop(q, &v));
                        assert_int_equal(v, next_out);
                        next_out++;
                }
                assert_int_equal(mpmc_size(q), (size_t)(8 - take));
        }
        while (mpmc_try_pop(q, &v))
                assert_int_equal(v, next_out++);
        assert_int_equal(next_out, next_in);
        assert_int_equal(mpmc_size(q), 0);
        mpmc_free(q);
}

/* Elements bigger than a cache line must be copied whole. */
static void test_large_elements(void **state)
{
        struct big {
                unsigned char b[200];
        } in, out;
        struct mpmc *q = mpmc_new(4, sizeof in);
        assert_non_null(q);
        for (int i = 0; i < 4; i++) {
                memset(in.b, 'a' + i, sizeof in.b);
                assert_true(mpmc_try_push(q, &in));
        }
        assert_false(mpmc_try_push(q, &in));
        for (int i = 0; i < 4; i++) {
                assert_true(mpmc_try_pop(q, &out));
                memset(in.b, 'a' + i, sizeof in.b);
                assert_memory_equal(in.b, out.b, sizeof in.b);
        }
        mpmc_free(q);
}

/* ---- stress ---- */

struct item {
        uint32_t producer, seq;
        uint64_t check; /* catches a torn or mixed copy */
};

static uint64_t item_check(uint32_t p, uint32_t s)
{
        uint64_t x = ((uint64_t)p << 32 | s) * 0x9e3779b97f4a7c15ull;
        return x ^ (x >> 29);
}

#define MAX_THREADS 16

struct stress {
        struct mpmc *q;
        int producers, consumers;
        uint32_t per_producer;
        pthread_barrier_t start;
        atomic_bool producers_done;
        atomic_uchar *seen; /* [producer * per_producer + seq] */
        atomic_ulong popped, bad_check, out_of_order, bad_id;
};

struct worker_arg {
        struct stress *s;
        uint32_t id;
};

static void *producer(void *p)
{
        struct worker_arg *a = p;
        struct stress *s = a->s;
        pthread_barrier_wait(&s->start);
        for (uint32_t i = 0; i < s->per_producer; i++) {
                struct item it = {a->id, i, item_check(a->id, i)};
                while (!mpmc_try_push(s->q, &it))
                        sched_yield();
        }
        return NULL;
}

static void consume_one(struct stress *s, const struct item *it, int64_t *last)
{
        if (it->check != item_check(it->producer, it->seq)) {
                atomic_fetch_add(&s->bad_check, 1);
                return;
        }
        if (it->producer >= (uint32_t)s->producers || it->seq >= s->per_producer) {
                atomic_fetch_add(&s->bad_id, 1);
                return;
        }
        /* One producer's items leave the queue in its push order, so any single consumer
         * sees them strictly increasing. */
        if ((int64_t)it->seq <= last[it->producer])
                atomic_fetch_add(&s->out_of_order, 1);
        last[it->producer] = it->seq;
        atomic_fetch_add_explicit(&s->seen[(size_t)it->producer * s->per_producer + it->seq], 1,
                                  memory_order_relaxed);
}

static void *consumer(void *p)
{
        struct worker_arg *a = p;
        struct stress *s = a->s;
        int64_t last[MAX_THREADS];
        for (int i = 0; i < MAX_THREADS; i++)
                last[i] = -1;
        unsigned long n = 0;
        struct item it;
        pthread_barrier_wait(&s->start);
        for (;;) {
                if (mpmc_try_pop(s->q, &it)) {
                        consume_one(s, &it, last);
                        n++;
                        continue;
                }
                /* Every push happened before producers_done was set (joined, then a
                 * release store), so an empty queue after seeing it is really empty. */
                if (atomic_load_explicit(&s->producers_done, memory_order_acquire)) {
                        if (mpmc_try_pop(s->q, &it)) {
                                consume_one(s, &it, last);
                                n++;
                                continue;
                        }
                        break;
                }
                sched_yield();
        }
        atomic_fetch_add(&s->popped, n);
        return NULL;
}

static uint32_t items_per_producer(int producers)
{
        const char *env = getenv("QUIRE_MPMC_ITEMS");
        unsigned long total = env ? strtoul(env, NULL, 10) : 0;
        if (!total) {
#ifdef UNDER_TSAN
                total = 2000000;
#else
                total = 4000000;
#endif
        }
        return (uint32_t)(total / (unsigned long)producers);
}

static void run_stress(int producers, int consumers, size_t capacity)
{
        struct stress s = {.producers = producers, .consumers = consumers};
        s.per_producer = items_per_producer(producers);
        size_t total = (size_t)producers * s.per_producer;
        s.q = mpmc_new(capacity, sizeof(struct item));
        assert_non_null(s.q);
        s.seen = calloc(total, sizeof *s.seen);
        assert_non_null(s.seen);
        assert_int_equal(pthread_barrier_init(&s.start, NULL, (unsigned)(producers + consumers)),
                         0);

        pthread_t pt[MAX_THREADS], ct[MAX_THREADS];
        struct worker_arg pa[MAX_THREADS], ca[MAX_THREADS];
        for (int i = 0; i < consumers; i++) {
                ca[i] = (struct worker_arg){&s, (uint32_t)i};
                assert_int_equal(pthread_create(&ct[i], NULL, consumer, &ca[i]), 0);
        }
        for (int i = 0; i < producers; i++) {
                pa[i] = (struct worker_arg){&s, (uint32_t)i};
                assert_int_equal(pthread_create(&pt[i], NULL, producer, &pa[i]), 0);
        }
        for (int i = 0; i < producers; i++)
                pthread_join(pt[i], NULL);
        atomic_store_explicit(&s.producers_done, true, memory_order_release);
        for (int i = 0; i < consumers; i++)
                pthread_join(ct[i], NULL);

        assert_int_equal(atomic_load(&s.bad_check), 0);
        assert_int_equal(atomic_load(&s.bad_id), 0);
        assert_int_equal(atomic_load(&s.out_of_order), 0);
        assert_int_equal(atomic_load(&s.popped), total);
        size_t lost = 0, twice = 0;
        for (size_t i = 0; i < total; i++) {
                unsigned char c = atomic_load_explicit(&s.seen[i], memory_order_relaxed);
                lost += c == 0;
                twice += c > 1;
        }
        assert_int_equal(lost, 0);
        assert_int_equal(twice, 0);
        assert_int_equal(mpmc_size(s.q), 0);

        pthread_barrier_destroy(&s.start);
        free(s.seen);
        mpmc_free(s.q);
}

static void test_stress_4p4c(void **state)
{
        run_stress(4, 4, 1024);
}

/* A tiny ring: producers and consumers keep meeting at full and empty. */
static void test_stress_4p4c_tiny(void **state)
{
        run_stress(4, 4, 4);
}

static void test_stress_1p4c(void **state)
{
        run_stress(1, 4, 100);
}

static void test_stress_4p1c(void **state)
{
        run_stress(4, 1, 100);
}

int main(void)
{
        /* A broken queue tends to hang rather than crash (a producer or consumer spinning on
         * a cell that never turns): a watchdog turns that into a failure. */
        alarm(300);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_new_rejects_zero), cmocka_unit_test(test_capacity_rounds_to_pow2),
            cmocka_unit_test(test_fifo_full_empty),  cmocka_unit_test(test_large_elements),
            cmocka_unit_test(test_stress_4p4c),      cmocka_unit_test(test_stress_4p4c_tiny),
            cmocka_unit_test(test_stress_1p4c),      cmocka_unit_test(test_stress_4p1c),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
