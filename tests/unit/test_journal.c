/* The journal: line format (durations in the 7th column), what counts as delivered across
 * reopen, old 6-column journals, torn last lines, concurrent appenders writing whole
 * lines, and a million-line load (timed and sized, printed, not asserted on time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quire/engine/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct fixture {
        char dir[256];
        char path[300];
};

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof *fx);
        const char *tmp = getenv("TMPDIR");
        snprintf(fx->dir, sizeof fx->dir, "%s/quire-journal-XXXXXX", tmp ? tmp : "/tmp");
        if (!mkdtemp(fx->dir))
                return -1;
        snprintf(fx->path, sizeof fx->path, "%s/quire.journal", fx->dir);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;
        unlink(fx->path);
        rmdir(fx->dir);
        free(fx);
        return 0;
}

static char *slurp(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        buf[n] = 0;
        fclose(f);
        *len = (size_t)n;
        return buf;
}

static void spit(const char *path, const char *data, size_t len)
{
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        fclose(f);
}

static void append(struct journal *j, const char *bc, const char *outcome, const char *detail)
{
        struct journal_rec r = {.barcode = bc, .outcome = outcome, .bytes = 1234, .detail = detail};
        assert_int_equal(journal_append(j, &r), 0);
}

/* Splits one line into its 7 fields; false when the shape is wrong. */
static bool split7(char *line, char *f[7])
{
        for (int i = 0; i < 7; i++) {
                f[i] = line;
                char *tab = strchr(line, '\t');
                if (i < 6) {
                        if (!tab)
                                return false;
                        *tab = 0;
                        line = tab + 1;
                } else if (tab) {
                        return false;
                }
        }
        return true;
}

static void test_append_reopen_delivered(void **state)
{
        struct fixture *fx = *state;
        struct journal *j;
        assert_int_equal(journal_open(&j, fx->path), 0);
        assert_int_equal(journal_delivered_count(j), 0);
        append(j, "A1", "ok", NULL);
        append(j, "B2", "failed", "HTTP 404");
        append(j, "C3", "ok", "");
        append(j, "D4", "skipped", "already delivered");
        append(j, "A1", "failed", "rerun failed"); /* does not undo A1's delivery */
        append(j, "C3", "ok", NULL);
        /* an "ok" counts at once, for a barcode listed twice in one run */
        assert_true(journal_delivered(j, "A1"));
        assert_true(journal_delivered(j, "C3"));
        assert_false(journal_delivered(j, "B2"));
        assert_int_equal(journal_delivered_count(j), 2);
        journal_sync_due(j, 0);
        journal_close(j);

        assert_int_equal(journal_open(&j, fx->path), 0);
        assert_true(journal_delivered(j, "A1"));
        assert_true(journal_delivered(j, "C3"));
        assert_false(journal_delivered(j, "B2"));
        assert_false(journal_delivered(j, "D4"));
        assert_false(journal_delivered(j, "A"));
        assert_false(journal_delivered(j, "A12"));
        assert_int_equal(journal_delivered_count(j), 2);
        journal_close(j);

        size_t len;
        char *text = slurp(fx->path, &len);
        assert_true(len > 0 && text[len - 1] == '\n');
        int lines = 0;
        for (char *save, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char *f[7];
                assert_true(split7(l, f));
                /* 2026-11-29T02:40:00Z */
                assert_int_equal(strlen(f[0]), 20);
                assert_true(f[0][4] == '-' && f[0][10] == 'T' && f[0][19] == 'Z');
                assert_string_equal(f[3], "1234");
                assert_string_equal(f[4], "-");
                if (lines == 1)
                        assert_string_equal(f[5], "HTTP 404");
                if (lines == 0 || lines == 2)
                        assert_string_equal(f[5], "-");
                assert_string_equal(f[6], "-"); /* not timed */
                lines++;
        }
        assert_int_equal(lines, 6);
        free(text);
}

static void test_fields_sanitized(void **state)
{
        struct fixture *fx = *state;
        struct journal *j;
        assert_int_equal(journal_open(&j, fx->path), 0);
        char sha[65];
        memset(sha, 'a', 64);
        sha[64] = 0;
        struct journal_rec r = {.barcode = "X1",
                                .outcome = "failed",
                                .sha256_hex = sha,
                                .detail = "line one\nline\ttwo\r\n"};
        assert_int_equal(journal_append(j, &r), 0);
        char *big = malloc(20000);
        assert_non_null(big);
        memset(big, 'd', 19999);
        big[19999] = 0;
        r.detail = big;
        r.barcode = "X2";
        assert_int_equal(journal_append(j, &r), 0);
        free(big);
        struct journal_rec bad = {.barcode = "bad\tcode", .outcome = "ok"};
        assert_int_equal(journal_append(j, &bad), -EINVAL);
        bad.barcode = "";
        assert_int_equal(journal_append(j, &bad), -EINVAL);
        journal_close(j);

        size_t len;
        char *text = slurp(fx->path, &len);
        char *nl = strchr(text, '\n');
        assert_non_null(nl);
        *nl = 0;
        char *f[7];
        assert_true(split7(text, f));
        assert_string_equal(f[1], "X1");
        assert_string_equal(f[4], sha);
        assert_string_equal(f[5], "line one line two  ");
        char *second = nl + 1;
        nl = strchr(second, '\n');
        assert_non_null(nl);
        assert_true(nl - second < 4096); /* cut, but still one whole line */
        assert_int_equal(nl + 1 - text, (long)len);
        *nl = 0;
        assert_true(split7(second, f)); /* the cut took the detail's end, not a column */
        assert_string_equal(f[6], "-");
        free(text);
}

/* The 7th column: seconds to the millisecond, rounded; "-" for a book never timed; kept
 * whole after a detail long enough to be cut. */
static void test_durations(void **state)
{
        struct fixture *fx = *state;
        struct journal *j;
        assert_int_equal(journal_open(&j, fx->path), 0);
        static const struct {
                uint64_t ns;
                const char *want;
        } cases[] = {
            {1, "0.000"},
            {499999, "0.000"},
            {500000, "0.001"},
            {12345678901, "12.346"},
            {3600000000000, "3600.000"},
            {0, "-"},
        };
        char *big = malloc(8000);
        assert_non_null(big);
        memset(big, 'd', 7999);
        big[7999] = 0;
        size_t n = sizeof cases / sizeof cases[0];
        for (size_t i = 0; i < n; i++) {
                struct journal_rec r = {.barcode = "T1",
                                        .outcome = "ok",
                                        .bytes = 1,
                                        .detail = i == 3 ? big : NULL,
                                        .duration_ns = cases[i].ns};
                assert_int_equal(journal_append(j, &r), 0);
        }
        free(big);
        journal_close(j);

        size_t len;
        char *text = slurp(fx->path, &len);
        size_t i = 0;
        for (char *save, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char *f[7];
                assert_true(i < n);
                assert_true(strlen(l) < 4096);
                assert_true(split7(l, f));
                assert_string_equal(f[6], cases[i].want);
                i++;
        }
        assert_int_equal(i, n);
        free(text);
}

/* Opens the journal at path: it says every barcode of yes was delivered, and no other
 * (none of no). Both lists end with NULL. */
static void expect_delivered(const char *path, const char *const *yes, const char *const *no)
{
        struct journal *j;
        assert_int_equal(journal_open(&j, path), 0);
        uint64_t n = 0;
        for (; yes[n]; n++)
                if (!journal_delivered(j, yes[n]))
                        fail_msg("%s not delivered", yes[n]);
        for (; *no; no++)
                if (journal_delivered(j, *no))
                        fail_msg("%s delivered", *no);
        assert_int_equal(journal_delivered_count(j), n);
        journal_close(j);
}

/* Journals from before the 7th column, and lines with more columns than we write, load
 * the same; a line with the 7th column is found delivered after reopening. */
static void test_old_and_wider_lines(void **state)
{
        struct fixture *fx = *state;
        static const char text[] = "2026-01-01T00:00:00Z\tOLD1\tok\t1\t-\t-\n"
                                   "2026-01-01T00:00:00Z\tNEW1\tok\t1\t-\t-\t1.250\n"
                                   "2026-01-01T00:00:00Z\tMORE1\tok\t1\t-\t-\t2.5\tx\ty\n"
                                   "2026-01-01T00:00:00Z\tFAIL1\tfailed\t0\t-\tHTTP 404\t0.010\n";
        spit(fx->path, text, sizeof text - 1);
        static const char *const yes[] = {"OLD1", "NEW1", "MORE1", NULL}, *const no[] = {"FAIL1",
                                                                                         NULL};
        expect_delivered(fx->path, yes, no);
}

static void test_torn_last_line(void **state)
{
        struct fixture *fx = *state;
        static const char torn[] = "2026-01-01T00:00:00Z\tA1\tok\t1\t-\t-\n"
                                   "2026-01-01T00:00:00Z\tB2\tok\t1\t-";
        spit(fx->path, torn, sizeof torn - 1);
        struct journal *j;
        assert_int_equal(journal_open(&j, fx->path), 0);
        assert_true(journal_delivered(j, "A1"));
        assert_false(journal_delivered(j, "B2")); /* torn: not proof of delivery */
        append(j, "C3", "ok", NULL);
        journal_close(j);

        size_t len;
        char *text = slurp(fx->path, &len);
        /* the torn fragment is gone and C3 has a line of its own */
        assert_null(strstr(text, "B2"));
        char *second = strchr(text, '\n') + 1;
        char *f[7];
        second[strlen(second) - 1] = 0;
        assert_true(split7(second, f));
        assert_string_equal(f[1], "C3");
        free(text);

        assert_int_equal(journal_open(&j, fx->path), 0);
        assert_true(journal_delivered(j, "A1"));
        assert_true(journal_delivered(j, "C3"));
        assert_int_equal(journal_delivered_count(j), 2);
        journal_close(j);
}

/* Lines that are not ours (too long, too few fields, an empty or huge barcode) are
 * ignored without losing the lines around them. */
static void test_foreign_lines(void **state)
{
        struct fixture *fx = *state;
        size_t big = 200000;
        char *data = malloc(big + 4096);
        assert_non_null(data);
        size_t len = 0;
        len += (size_t)sprintf(data + len, "T\tA1\tok\t1\t-\t-\n");
        memset(data + len, 'x', big);
        len += big;
        len += (size_t)sprintf(data + len, "\tZ9\tok\t1\t-\t-\n"
                                           "T\tB2\tok\n"
                                           "T\t\tok\t1\t-\t-\n"
                                           "\n"
                                           "T\tC3\tok\t1\t-\tdetail\n"
                                           "T\tD4\tokay\t1\t-\t-\n");
        spit(fx->path, data, len);
        free(data);
        static const char *const yes[] = {"A1", "C3", NULL}, *const no[] = {"Z9", "B2", "D4", NULL};
        expect_delivered(fx->path, yes, no);
}

static void test_second_open_refused(void **state)
{
        struct fixture *fx = *state;
        struct journal *a, *b;
        assert_int_equal(journal_open(&a, fx->path), 0);
        assert_int_equal(journal_open(&b, fx->path), -EWOULDBLOCK);
        journal_close(a);
        assert_int_equal(journal_open(&b, fx->path), 0);
        journal_close(b);
}

static void test_open_errors(void **state)
{
        struct journal *j;
        assert_int_equal(journal_open(&j, "/nonexistent/dir/quire.journal"), -ENOENT);
}

#define THREADS    8
#define PER_THREAD 3000
struct appender {
        struct journal *j;
        int id;
        int errors;
};

static void *appender(void *p)
{
        struct appender *a = p;
        char bc[32], detail[600];
        for (int i = 0; i < PER_THREAD; i++) {
                snprintf(bc, sizeof bc, "t%d-%d", a->id, i);
                /* lengths vary so lines straddle page and block boundaries */
                size_t dl = (size_t)(i * 37 % 500) + 1;
                memset(detail, 'a' + a->id, dl);
                detail[dl] = 0;
                struct journal_rec r = {.barcode = bc,
                                        .outcome = i % 3 ? "ok" : "failed",
                                        .bytes = (uint64_t)i,
                                        .detail = detail};
                if (journal_append(a->j, &r) != 0)
                        a->errors++;
        }
        return NULL;
}

static void test_concurrent_appends_whole_lines(void **state)
{
        struct fixture *fx = *state;
        struct journal *j;
        assert_int_equal(journal_open(&j, fx->path), 0);
        pthread_t t[THREADS];
        struct appender a[THREADS];
        for (int i = 0; i < THREADS; i++) {
                a[i] = (struct appender){j, i, 0};
                assert_int_equal(pthread_create(&t[i], NULL, appender, &a[i]), 0);
        }
        /* the main thread syncs while they write, as in a run */
        for (int k = 0; k < 100; k++)
                journal_sync_due(j, 0);
        for (int i = 0; i < THREADS; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(a[i].errors, 0);
        }
        journal_close(j);

        size_t len;
        char *text = slurp(fx->path, &len);
        static unsigned char seen[THREADS][PER_THREAD];
        memset(seen, 0, sizeof seen);
        int lines = 0;
        for (char *save, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char *f[7];
                assert_true(split7(l, f));
                int id, i;
                assert_int_equal(sscanf(f[1], "t%d-%d", &id, &i), 2);
                assert_true(id >= 0 && id < THREADS && i >= 0 && i < PER_THREAD);
                /* the detail is the writer's letter throughout: no interleaving */
                size_t dl = strlen(f[5]);
                assert_int_equal(dl, (size_t)(i * 37 % 500) + 1);
                for (size_t k = 0; k < dl; k++)
                        assert_int_equal(f[5][k], 'a' + id);
                seen[id][i]++;
                lines++;
        }
        free(text);
        assert_int_equal(lines, THREADS * PER_THREAD);
        for (int id = 0; id < THREADS; id++)
                for (int i = 0; i < PER_THREAD; i++)
                        assert_int_equal(seen[id][i], 1);

        assert_int_equal(journal_open(&j, fx->path), 0);
        assert_int_equal(journal_delivered_count(j), THREADS * (PER_THREAD - PER_THREAD / 3));
        assert_true(journal_delivered(j, "t3-1"));
        assert_false(journal_delivered(j, "t3-3"));
        journal_close(j);
}

static double mono_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define MILLION 1000000

static void test_million_lines(void **state)
{
        struct fixture *fx = *state;
        FILE *f = fopen(fx->path, "w");
        assert_non_null(f);
        char sha[65];
        memset(sha, 'f', 64);
        sha[64] = 0;
        /* GRIN barcodes are 14 digits; a tenth of the books also have a failed line */
        for (unsigned i = 0; i < MILLION; i++) {
                if (i % 10 == 0)
                        fprintf(f, "2026-11-29T02:40:00Z\t3210%010u\tfailed\t0\t-\tHTTP 503\n", i);
                fprintf(f, "2026-11-29T02:40:00Z\t3210%010u\tok\t8388608\t%s\t-\n", i, sha);
        }
        fclose(f);
        struct stat st;
        stat(fx->path, &st);

        struct rusage ru0, ru1;
        getrusage(RUSAGE_SELF, &ru0);
        double t0 = mono_s();
        struct journal *j;
        assert_int_equal(journal_open(&j, fx->path), 0);
        double dt = mono_s() - t0;
        getrusage(RUSAGE_SELF, &ru1);

        assert_int_equal(journal_delivered_count(j), MILLION);
        assert_true(journal_delivered(j, "32100000000000"));
        assert_true(journal_delivered(j, "32100000999999"));
        assert_false(journal_delivered(j, "32100001000000"));
        size_t mem = journal_mem_bytes(j);
        /* Memory is deterministic, unlike time: the contract is well under 64 MB. */
        assert_true(mem < 48u << 20);
        print_message("journal: %d ok lines (%.1f MB file) loaded in %.3f s; set holds %.1f MiB; "
                      "max RSS grew %.1f MiB\n",
                      MILLION, (double)st.st_size / 1e6, dt, (double)mem / (1 << 20),
                      (double)(ru1.ru_maxrss - ru0.ru_maxrss) / 1024);
        journal_close(j);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        const struct CMUnitTest tests[] = {
            T(test_append_reopen_delivered),
            T(test_fields_sanitized),
            T(test_durations),
            T(test_old_and_wider_lines),
            T(test_torn_last_line),
            T(test_foreign_lines),
            T(test_second_open_refused),
            T(test_open_errors),
            T(test_concurrent_appends_whole_lines),
            T(test_million_lines),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
