/* quire report's aggregation: reason normalisation, a journal with every outcome (known,
 * future and malformed lines, extra columns, durations), torn and overlong lines from a
 * file, the JSON read back by jansson, and the bounds on groups and outcomes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "contains.h"

#include "../../src/cli/report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void norm_is(const char *detail, const char *barcode, const char *want)
{
        char out[REPORT_KEY_MAX];
        report_normalize(detail, strlen(detail), barcode, out, sizeof out);
        if (strcmp(out, want))
                fail_msg("normalise '%s': got '%s', wanted '%s'", detail, out, want);
}

static void test_normalize(void **state)
{
        norm_is("source: HTTP 503 (after 5 retries)", "B1", "source: HTTP 503");
        norm_is("source: HTTP 503 (after 1 retry)", "B1", "source: HTTP 503");
        norm_is("source: HTTP 503", "B1", "source: HTTP 503");
        norm_is("not available from the source (HTTP 404)", "B1",
                "not available from the source (HTTP 404)");
        norm_is("source: stalled: no byte for 60 s (after 5 retries)", "B1",
                "source: stalled: no byte for N s");
        norm_is("size mismatch: got 1234 bytes, expected 99999", "B1",
                "size mismatch: got N bytes, expected N");
        norm_is("s3 PUT books/32101067213021.tar.gz: HTTP 500 InternalError", "32101067213021",
                "s3 PUT books/BARCODE.tar.gz: HTTP 500 InternalError");
        norm_is("unchanged at the source (ETag 9f86d081884c7d65)", "B1",
                "unchanged at the source (ETag HEX)");
        norm_is("part size 64MiB", "B1", "part size NMiB");
        norm_is("  many   spaces\there  ", "B1", "many spaces here");
        norm_is("sha256 and s3 keep their digits", "B1", "sha256 and s3 keep their digits");
        norm_is("integrity: MDC mismatch", NULL, "integrity: MDC mismatch");
        norm_is("", "B1", "");
        /* Two variants of one failure, one key. */
        char a[REPORT_KEY_MAX], b[REPORT_KEY_MAX];
        const char *x = "source: Recv failure: Connection reset by peer (after 5 retries)";
        const char *y = "source: Recv failure: Connection reset by peer (after 2 retries)";
        report_normalize(x, strlen(x), "A", a, sizeof a);
        report_normalize(y, strlen(y), "B", b, sizeof b);
        assert_string_equal(a, b);
        /* Cut at the key's size, still NUL-terminated. */
        char longd[1000];
        memset(longd, 'x', sizeof longd - 1);
        longd[sizeof longd - 1] = 0;
        report_normalize(longd, strlen(longd), "B1", a, sizeof a);
        assert_int_equal(strlen(a), REPORT_KEY_MAX - 1);
}

static void feed(struct report *r, const char *line)
{
        report_line(r, line, strlen(line));
}

/* The report as JSON, parsed. */
static json_t *as_json(const struct report *r)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        assert_int_equal(report_print_json(r, "test.journal", f), 0);
        assert_int_equal(fclose(f), 0);
        json_error_t err;
        json_t *j = json_loads(text, 0, &err);
        if (!j)
                fail_msg("report JSON does not parse: %s: %s", err.text, text);
        free(text);
        return j;
}

static char *as_text(const struct report *r)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        report_print_text(r, "test.journal", f);
        assert_int_equal(fclose(f), 0);
        return text;
}

static json_int_t jint(json_t *j, const char *path)
{
        char buf[128];
        snprintf(buf, sizeof buf, "%s", path);
        json_t *v = j;
        for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
                v = json_object_get(v, k);
        if (!json_is_integer(v))
                fail_msg("%s is not an integer", path);
        return json_integer_value(v);
}

#define T0 "2026-11-29T03:00:00Z"

static void every_outcome(struct report *r)
{
        feed(r, T0 "\tB0001\tok\t1000\tabcd\t-");
        feed(r, "2026-11-29T03:00:10Z\tB0002\tok\t2000\tabcd\t-");
        feed(r, "2026-11-29T03:00:10Z\tB0003\tskipped\t0\t-\tunchanged at the source (ETag "
                "0123abcd4567)");
        feed(r,
             "2026-11-29T03:00:20Z\tB0004\tfailed\t0\t-\tnot available from the source (HTTP 404)");
        feed(r,
             "2026-11-29T03:00:20Z\tB0005\tfailed\t0\t-\tnot available from the source (HTTP 404)");
        feed(r,
             "2026-11-29T03:00:21Z\tB0006\tfailed\t0\t-\tnot available from the source (HTTP 404)");
        feed(r, "2026-11-29T03:00:30Z\tB0007\tfailed\t0\t-\tsource: HTTP 503 (after 5 retries)");
        feed(r, "2026-11-29T03:00:31Z\tB0008\tfailed\t0\t-\tsource: HTTP 503 (after 3 retries)");
        feed(r, "2026-11-29T03:00:40Z\tB0009\trequested\t0\t-\t-");
        feed(r, "2026-11-29T03:00:41Z\tB0010\tin-process\t0\t-\t-");
        feed(r, "2026-11-29T03:00:42Z\tB0011\tconversion-failed\t0\t-\tGRIN: conversion failed");
        feed(r, "2026-11-29T03:00:43Z\tB0012\tduplicate\t0\t-\t-");
        feed(r, "2026-11-29T03:00:44Z\tB0013\tsomething-new\t7\t-\t-\textra\tcolumns");
        /* durations in the 7th column, more columns after */
        feed(r, "2026-11-29T03:00:50Z\tB0014\tok\t3000\tabcd\t-\t12.5");
        feed(r, "2026-11-29T03:00:50Z\tB0015\tok\t4000\tabcd\t-\t99.25\tmore");
        feed(r, "2026-11-29T03:00:51Z\tB0016\tfailed\t0\t-\tsource: stalled\t1.0");
        /* a line from before: the active time does not grow */
        feed(r, "2026-11-29T03:00:20Z\tB0016b\tok\t0\tabcd\t-");
        /* a pause of two hours: left out of the active time */
        feed(r, "2026-11-29T05:01:00Z\tB0017\tok\t5000\tabcd\t-\tnot-a-number");
        /* malformed: too few fields, bad time, bad outcome, bad bytes, empty barcode */
        feed(r, "garbage");
        feed(r, "yesterday\tB0018\tok\t1\t-\t-");
        feed(r, T0 "\tB0019\tOK!\t1\t-\t-");
        feed(r, T0 "\tB0020\tok\tmany\t-\t-");
        feed(r, T0 "\t\tok\t1\t-\t-");
}

static void test_every_outcome(void **state)
{
        struct report *r;
        assert_int_equal(report_new(&r, 2, 600), 0);
        every_outcome(r);
        json_t *j = as_json(r);
        assert_int_equal(jint(j, "lines"), 23);
        assert_int_equal(jint(j, "malformed"), 5);
        assert_int_equal(jint(j, "first_malformed_line"), 19);
        assert_int_equal(jint(j, "outcomes.ok"), 6);
        assert_int_equal(jint(j, "outcomes.failed"), 6);
        assert_int_equal(jint(j, "outcomes.skipped"), 1);
        assert_int_equal(jint(j, "outcomes.requested"), 1);
        assert_int_equal(jint(j, "outcomes.in-process"), 1);
        assert_int_equal(jint(j, "outcomes.conversion-failed"), 1);
        assert_int_equal(jint(j, "outcomes.duplicate"), 1);
        assert_int_equal(jint(j, "outcomes.something-new"), 1);
        assert_int_equal(jint(j, "bytes.delivered"), 15000);
        assert_int_equal(jint(j, "bytes.all"), 15007);
        assert_int_equal(jint(j, "failures"), 7);
        assert_int_equal(jint(j, "time.pauses"), 1);
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "time"), "first")),
                            T0);
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "time"), "last")),
                            "2026-11-29T05:01:00Z");
        /* active: 03:00:00 to 03:00:51 = 51 s; 16 finished books (not requested, in-process) */
        json_t *active = json_object_get(json_object_get(j, "time"), "active_s");
        assert_true(json_real_value(active) == 51.0);
        json_t *bph = json_object_get(json_object_get(j, "per_hour"), "books");
        assert_true(json_real_value(bph) == (double)(int64_t)(16 * 3600.0 / 51 * 10 + 0.5) / 10);

        json_t *groups = json_object_get(j, "by_reason");
        assert_int_equal(json_array_size(groups), 4);
        json_t *g0 = json_array_get(groups, 0);
        assert_string_equal(json_string_value(json_object_get(g0, "reason")),
                            "not available from the source (HTTP 404)");
        assert_int_equal(json_integer_value(json_object_get(g0, "count")), 3);
        json_t *ex = json_object_get(g0, "examples");
        assert_int_equal(json_array_size(ex), 2);
        assert_string_equal(json_string_value(json_array_get(ex, 0)), "B0004");
        assert_string_equal(json_string_value(json_array_get(ex, 1)), "B0005");
        json_t *g1 = json_array_get(groups, 1);
        assert_string_equal(json_string_value(json_object_get(g1, "reason")), "source: HTTP 503");
        assert_int_equal(json_integer_value(json_object_get(g1, "count")), 2);
        assert_string_equal(json_string_value(json_object_get(g1, "sample")),
                            "source: HTTP 503 (after 5 retries)");
        /* conversion-failed is a failure of its own kind */
        int conv = 0;
        for (size_t i = 0; i < json_array_size(groups); i++)
                conv += !strcmp(
                    json_string_value(json_object_get(json_array_get(groups, i), "outcome")),
                    "conversion-failed");
        assert_int_equal(conv, 1);

        assert_int_equal(jint(j, "timed"), 3);
        json_t *slow = json_object_get(j, "slowest");
        assert_int_equal(json_array_size(slow), 2); /* --top 2 */
        assert_string_equal(json_string_value(json_object_get(json_array_get(slow, 0), "barcode")),
                            "B0015");
        assert_string_equal(json_string_value(json_object_get(json_array_get(slow, 1), "barcode")),
                            "B0014");
        json_decref(j);

        char *text = as_text(r);
        static const char *const want[] = {
            "journal test.journal: 23 lines (5 not in the journal's format, the first at line 19)",
            "outcomes: ok 6, skipped 1, failed 6, requested 1, in-process 1, conversion-failed 1, "
            "duplicate 1, something-new 1\n",
            "bytes delivered: 15.0 kB (15,000 bytes)\n",
            "time: 2026-11-29T03:00:00Z to 2026-11-29T05:01:00Z (2h 1m; active 51s, 1 pause over "
            "10m 0s left out)\n",
            "failures by reason (7):\n",
            "           3  not available from the source (HTTP 404)  e.g. B0004, B0005\n",
            "           2  source: HTTP 503  e.g. B0007, B0008\n",
            "           1  conversion-failed: GRIN: conversion failed  e.g. B0011\n",
            "durations: 3 books, mean 37.6 s; slowest:\n",
            "        99.2 s  B0015  ok\n",
        };
        assert_contains_all(text, want);
        free(text);
        report_free(r);
}

static void test_no_durations(void **state)
{
        struct report *r;
        assert_int_equal(report_new(&r, 10, 600), 0);
        feed(r, T0 "\tB0001\tok\t1\t-\t-");
        json_t *j = as_json(r);
        assert_true(json_is_null(json_object_get(j, "slowest")));
        /* one line: no time passed, so no rate */
        assert_true(json_is_null(json_object_get(json_object_get(j, "per_hour"), "books")));
        json_decref(j);
        char *text = as_text(r);
        assert_non_null(strstr(text, "slowest books: unknown (no line has a duration"));
        assert_non_null(strstr(text, "rate: unknown"));
        free(text);
        report_free(r);
}

/* More distinct reasons than the table holds: the rest are counted, not lost. */
static void test_reason_bound(void **state)
{
        struct report *r;
        assert_int_equal(report_new(&r, 0, 600), 0);
        char line[256];
        for (int i = 0; i < REPORT_MAX_REASONS + 50; i++) {
                snprintf(line, sizeof line, T0 "\tB%d\tfailed\t0\t-\treason-%c%c%c", i,
                         'a' + i % 26, 'a' + i / 26 % 26, 'a' + i / 676);
                feed(r, line);
        }
        for (int i = 0; i < REPORT_MAX_OUTCOMES + 3; i++) {
                snprintf(line, sizeof line, T0 "\tC%d\tkind-%c%c\t0\t-\t-", i, 'a' + i % 26,
                         'a' + i / 26);
                feed(r, line);
        }
        json_t *j = as_json(r);
        assert_int_equal(jint(j, "failures"), REPORT_MAX_REASONS + 50);
        assert_int_equal(json_array_size(json_object_get(j, "by_reason")), REPORT_MAX_REASONS);
        assert_int_equal(jint(j, "other_reason_failures"), 50);
        /* "failed" took one outcome slot: 31 kinds fit, 4 go to "other" */
        assert_int_equal(jint(j, "outcomes.other"), 4);
        json_decref(j);
        report_free(r);
}

/* From a file: a torn last line and a line far longer than a journal writes. */
static void test_read_fd(void **state)
{
        char path[] = "/tmp/quire-report-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        unlink(path);
        FILE *f = fdopen(dup(fd), "w");
        fprintf(f, T0 "\tB0001\tok\t10\t-\t-\n");
        for (int i = 0; i < 20000; i++)
                fputc('x', f);
        fputc('\n', f);
        fprintf(f, T0 "\tB0002\tfailed\t0\t-\tx\n");
        fprintf(f, T0 "\tB0003\tok\t1"); /* torn */
        assert_int_equal(fclose(f), 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        struct report *r;
        assert_int_equal(report_new(&r, 10, 600), 0);
        assert_int_equal(report_read_fd(r, fd), 0);
        close(fd);
        json_t *j = as_json(r);
        assert_int_equal(jint(j, "lines"), 3);
        assert_int_equal(jint(j, "malformed"), 1);
        assert_int_equal(jint(j, "first_malformed_line"), 2);
        assert_true(json_is_true(json_object_get(j, "torn_last_line")));
        assert_int_equal(jint(j, "outcomes.ok"), 1);
        assert_int_equal(jint(j, "outcomes.failed"), 1);
        json_decref(j);
        report_free(r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_normalize),    cmocka_unit_test(test_every_outcome),
            cmocka_unit_test(test_no_durations), cmocka_unit_test(test_reason_bound),
            cmocka_unit_test(test_read_fd),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
