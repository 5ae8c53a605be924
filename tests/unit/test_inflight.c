/* The set of barcodes queued or in flight (src/engine/run.c): against a plain array as
 * the model, through many adds and removes in a small table, so probe runs collide and
 * wrap around the end and every removal shifts entries back. A wrong shift would lose an
 * entry (a repeat then runs beside its first copy) or keep a ghost (a book never runs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "../../src/engine/run_int.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE_MAX 24 /* the set's bound: queue + book slots */
#define NAMES    64 /* distinct barcodes drawn from */

struct model {
        bool live[NAMES];
        uint64_t line[NAMES];
        unsigned count;
};

static void name_of(unsigned i, char *out, size_t len)
{
        snprintf(out, len, "3210%08u", i * 7919u);
}

/* Every name is in the set exactly when the model says so, with its first line. */
static void check_all(struct inflight *in, const struct model *m)
{
        for (unsigned i = 0; i < NAMES; i++) {
                char bc[32];
                name_of(i, bc, sizeof bc);
                uint64_t first = 0;
                bool added = run_inflight_add(in, bc, 999999, &first);
                if (m->live[i]) {
                        assert_false(added);
                        assert_int_equal(first, m->line[i]);
                } else {
                        assert_true(added);
                        run_inflight_remove(in, bc);
                }
        }
}

static void test_model(void **state)
{
        struct inflight in = {0};
        assert_int_equal(run_inflight_init(&in, LIVE_MAX), 0);
        struct model m = {0};
        srandom(12345);
        for (uint64_t step = 1; step <= 200000; step++) {
                unsigned i = (unsigned)random() % NAMES;
                char bc[32];
                name_of(i, bc, sizeof bc);
                if (m.live[i]) {
                        run_inflight_remove(&in, bc);
                        m.live[i] = false;
                        m.count--;
                } else if (m.count < LIVE_MAX) {
                        uint64_t first = 0;
                        assert_true(run_inflight_add(&in, bc, step, &first));
                        m.live[i] = true;
                        m.line[i] = step;
                        m.count++;
                }
                if (step % 997 == 0)
                        check_all(&in, &m);
        }
        check_all(&in, &m);
        run_inflight_free(&in);
}

/* A full table of removals leaves it empty: nothing found, everything addable again. */
static void test_drain(void **state)
{
        struct inflight in = {0};
        assert_int_equal(run_inflight_init(&in, LIVE_MAX), 0);
        for (int round = 0; round < 1000; round++) {
                for (unsigned i = 0; i < LIVE_MAX; i++) {
                        char bc[32];
                        uint64_t first;
                        name_of(i + (unsigned)round, bc, sizeof bc);
                        assert_true(run_inflight_add(&in, bc, i, &first));
                }
                for (unsigned i = 0; i < LIVE_MAX; i++) {
                        char bc[32];
                        name_of(i + (unsigned)round, bc, sizeof bc);
                        run_inflight_remove(&in, bc);
                }
        }
        struct model empty = {0};
        check_all(&in, &empty);
        for (unsigned s = 0; s < in.cap; s++)
                assert_false(in.slots[s].used);
        run_inflight_free(&in);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_model),
            cmocka_unit_test(test_drain),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
