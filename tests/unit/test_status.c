/* Status lines: durations, the text line users read, JSON machines parse (checked by
 * python3's json module), the live view's lines, snapshots of the counters, slot busy
 * time and sliding-window rates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quire/engine/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_format_duration(void **state)
{
        static const struct {
                double s;
                const char *want;
        } cases[] = {
            {0, "0s"},
            {5, "5s"},
            {59.4, "59s"},
            {66, "1m 6s"},
            {3599, "59m 59s"},
            {3600, "1h 0m"},
            {3720, "1h 2m"},
            {118440, "32h 54m"},
            {-3, "0s"},
            {NAN, "0s"},
            {INFINITY, "277777777h 46m"},
        };
        char buf[32];
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                status_format_duration(buf, sizeof buf, cases[i].s);
                assert_string_equal(buf, cases[i].want);
        }
}

static struct status_snap example(void)
{
        struct status_snap s = {0};
        s.ok = 19;
        s.failed = 1;
        s.total = 36048;
        s.elapsed_s = 66;
        s.books_per_s = 36028.0 / 118440.0; /* an ETA of exactly 32h 54m */
        s.bytes_per_s = 12.5e6;
        s.downloading = 1;
        s.download_limit = 5;
        s.upload_limit = 10;
        s.waiting = 3;
        s.queued = 100;
        return s;
}

static void test_text_line(void **state)
{
        struct status_snap s = example();
        char buf[512];
        size_t n = status_format_text(buf, sizeof buf, &s);
        assert_string_equal(buf, "20/36,048 (0.1%) - 0.3 books/s - 12.5 MB/s - elapsed: 1m 6s "
                                 "(ETA: 32h 54m) [downloads: 1/5, uploads: 0/10, finishing: 0, "
                                 "waiting to download: 3, queued: 100, ok: 19, skipped: 0, "
                                 "failed: 1]");
        assert_int_equal(n, strlen(buf));
}

static void test_text_unknown_total_and_big_numbers(void **state)
{
        struct status_snap s = example();
        s.total = -1;
        s.ok = 1234567;
        s.skipped = 1000;
        s.retrying = 2;
        char buf[512];
        status_format_text(buf, sizeof buf, &s);
        assert_string_equal(buf, "1,235,568 done - 0.3 books/s - 12.5 MB/s - elapsed: 1m 6s "
                                 "[downloads: 1/5, uploads: 0/10, finishing: 0, "
                                 "waiting to download: 3, queued: 100, retrying: 2, "
                                 "ok: 1234567, skipped: 1000, failed: 1]");
        assert_null(strchr(buf, '%'));
        assert_null(strstr(buf, "ETA"));
}

static void test_text_eta_edges(void **state)
{
        struct status_snap s = example();
        char buf[512];
        s.books_per_s = 0;
        status_format_text(buf, sizeof buf, &s);
        assert_non_null(strstr(buf, "0.0 books/s"));
        assert_non_null(strstr(buf, "(ETA: unknown)"));
        s.books_per_s = 0.04;
        status_format_text(buf, sizeof buf, &s);
        assert_non_null(strstr(buf, " 0.04 books/s"));
        /* finished: no ETA, 100% */
        s.total = 20;
        status_format_text(buf, sizeof buf, &s);
        assert_true(!strncmp(buf, "20/20 (100.0%) - ", 17));
        assert_null(strstr(buf, "ETA"));
        /* an empty list */
        s = (struct status_snap){.total = 0};
        status_format_text(buf, sizeof buf, &s);
        assert_true(!strncmp(buf, "0/0 (100.0%) - ", 15));
}

static void test_text_truncates(void **state)
{
        struct status_snap s = example();
        char full[512], small[16];
        size_t n = status_format_text(full, sizeof full, &s);
        memset(small, 'X', sizeof small);
        size_t m = status_format_text(small, sizeof small, &s);
        assert_int_equal(m, sizeof small - 1);
        assert_int_equal(small[m], 0);
        assert_memory_equal(small, full, m);
        assert_true(n > m);
        /* a zero-size buffer is left alone */
        assert_int_equal(status_format_text(small, 0, &s), 0);
}

/* Parses the JSON with python3 and prints selected fields in a canonical form. */
static void python_check(const char *json, const char *expr, const char *want)
{
        if (system("python3 -c pass >/dev/null 2>&1") != 0)
                skip();
        char path[] = "/tmp/quire-status-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
        close(fd);
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); "
                 "print(%s)' < %s 2>&1",
                 expr, path);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char out[1024] = "";
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = 0;
        int rc = pclose(p);
        unlink(path);
        if (n && out[n - 1] == '\n')
                out[n - 1] = 0;
        if (rc != 0 || strcmp(out, want))
                fail_msg("json %s\n  %s -> \"%s\" (rc %d), want \"%s\"", json, expr, out, rc, want);
}

static void test_json_valid(void **state)
{
        struct status_snap s = example();
        s.bytes_in = 5000000000ull;
        s.bytes_out = 123;
        s.busy_download_s = 30;
        s.download_span_s = 10;
        char buf[1024];
        size_t n = status_format_json(buf, sizeof buf, "status", &s);
        assert_int_equal(n, strlen(buf));
        assert_null(strchr(buf, '\n'));
        python_check(buf,
                     "d[\"event\"], d[\"done\"], d[\"ok\"], d[\"failed\"], d[\"skipped\"], "
                     "d[\"total\"], d[\"elapsed_s\"], d[\"bytes_per_s\"], d[\"bytes_in\"], "
                     "d[\"bytes_out\"]",
                     "status 20 19 1 0 36048 66.0 12500000 5000000000 123");
        python_check(buf, "sorted(d[\"stages\"].items())",
                     "[('download_limit', 5), ('downloading', 1), ('finishing', 0), "
                     "('queued', 100), ('retrying', 0), ('upload_limit', 10), ('uploading', 0), "
                     "('waiting', 3)]");
        /* 30 busy slot-seconds over 5 slots x 10 s */
        python_check(buf, "d[\"busy\"][\"download_busy_fraction\"], d[\"busy\"][\"download_s\"]",
                     "0.6 30.0");
        python_check(buf, "round(d[\"books_per_s\"], 3)", "0.304");
}

static void test_json_unknown_total_and_odd_values(void **state)
{
        struct status_snap s = {0};
        s.total = -1;
        s.books_per_s = NAN;
        s.bytes_per_s = INFINITY;
        s.elapsed_s = -0.0;
        char buf[1024];
        status_format_json(buf, sizeof buf, "sum\"mary\n", &s);
        python_check(buf, "d[\"event\"] == \"sum\\\"mary\\n\", d[\"total\"], d[\"books_per_s\"]",
                     "True None 0.0");
}

static void test_stats_snap(void **state)
{
        struct stats st;
        memset(&st, 0, sizeof st);
        status_stats_init(&st);
        atomic_store(&st.ok, 7);
        atomic_store(&st.failed, 2);
        atomic_store(&st.skipped, 1);
        atomic_store(&st.bytes_in, 1000);
        atomic_store(&st.bytes_out, 900);
        atomic_store(&st.waiting, 4);
        atomic_store(&st.downloading, 5);
        atomic_store(&st.finishing, 6);
        atomic_store(&st.uploading, 3);
        atomic_store(&st.retrying, 1);
        slot_time_open(&st.download_time, 1000000000ull);
        slot_time_close(&st.download_time, 1000000000ull, 3500000000ull);
        slot_time_open(&st.upload_time, 7000000000ull);
        slot_time_close(&st.upload_time, 7000000000ull, 7500000000ull);
        atomic_store(&st.s2k_ns, 42000000ull);
        struct status_snap s;
        memset(&s, 0xff, sizeof s);
        status_stats_snap(&st, &s);
        assert_int_equal(s.ok, 7);
        assert_int_equal(s.failed, 2);
        assert_int_equal(s.skipped, 1);
        assert_int_equal(s.bytes_in, 1000);
        assert_int_equal(s.bytes_out, 900);
        assert_int_equal(s.waiting, 4);
        assert_int_equal(s.downloading, 5);
        assert_int_equal(s.finishing, 6);
        assert_int_equal(s.uploading, 3);
        assert_int_equal(s.retrying, 1);
        assert_true(s.busy_download_s == 2.5 && s.busy_upload_s == 0.5);
        assert_true(s.s2k_s == 0.042);
        assert_null(s.last_failure);
        /* no download finished yet: no span; the caller's fields start cleared */
        assert_true(s.download_span_s == 0);
        assert_int_equal(s.total, -1);
        assert_int_equal(s.queued, 0);
        assert_int_equal(s.download_limit, 0);
        assert_true(s.books_per_s == 0 && s.elapsed_s == 0);

        atomic_store(&st.first_download_ns, 1000000000ull);
        atomic_store(&st.last_download_end_ns, 4000000000ull);
        status_stats_snap(&st, &s);
        assert_true(s.download_span_s == 3.0);
}

/* Busy time counts the open intervals up to now, so it grows while a slot is held, never
 * jumps when it is released, and survives start times whose sum wraps. */
static void test_slot_time(void **state)
{
        struct slot_time t;
        slot_time_init(&t);
        assert_int_equal(slot_time_busy_ns(&t, 5), 0);
        slot_time_open(&t, 100);
        slot_time_open(&t, 150);
        assert_int_equal(slot_time_busy_ns(&t, 200), 100 + 50);
        assert_int_equal(slot_time_busy_ns(&t, 300), 200 + 150);
        slot_time_close(&t, 100, 300); /* released at the moment just read: the same sum */
        assert_int_equal(slot_time_busy_ns(&t, 300), 350);
        assert_int_equal(slot_time_busy_ns(&t, 400), 350 + 100);
        slot_time_close(&t, 150, 400);
        assert_int_equal(slot_time_busy_ns(&t, 10000), 450);
        /* monotonic clocks of a long-lived machine: start times near 2^63, many open */
        uint64_t base = (1ull << 63) + 12345;
        for (int i = 0; i < 4; i++)
                slot_time_open(&t, base + (uint64_t)i);
        assert_int_equal(slot_time_busy_ns(&t, base + 10), 450 + 10 + 9 + 8 + 7);
        for (int i = 0; i < 4; i++)
                slot_time_close(&t, base + (uint64_t)i, base + 10);
        assert_int_equal(slot_time_busy_ns(&t, base + 99), 450 + 34);
}

static char *live_line(char *text, unsigned i)
{
        static char line[STATUS_LIVE_MAX];
        const char *p = text;
        for (; i && p; i--)
                if ((p = strchr(p, '\n')))
                        p++;
        assert_non_null(p);
        size_t n = strcspn(p, "\n");
        memcpy(line, p, n);
        line[n] = 0;
        return line;
}

/* The contents counts: only when a book was read inside, in every format. */
static void test_contents_counts(void **state)
{
        struct status_snap s = example();
        char buf[1024], live[STATUS_LIVE_MAX];
        status_format_text(buf, sizeof buf, &s);
        assert_null(strstr(buf, "contents"));
        s.contents_read = 17;
        s.checksum_problems = 2;
        s.contents_unreadable = 1;
        status_format_text(buf, sizeof buf, &s);
        assert_non_null(strstr(buf, ", contents read: 17, checksum problems: 2, unreadable: 1]"));
        status_format_live(live, &s, 300, false);
        assert_non_null(
            strstr(live_line(live, 2), "(contents: read 17, checksum problems 2, unreadable 1)"));
        status_format_json(buf, sizeof buf, "status", &s);
        python_check(buf, "sorted(d[\"contents\"].items())",
                     "[('checksum_problems', 2), ('read', 17), ('unreadable', 1)]");
}

static void test_live_view(void **state)
{
        struct status_snap s = example();
        s.uploading = 2;
        s.retrying = 1;
        s.last_failure = "TEST9999: not available from the source (HTTP 404)";
        char buf[STATUS_LIVE_MAX];
        assert_int_equal(status_format_live(buf, &s, 200, false), STATUS_LIVE_LINES);
        assert_string_equal(live_line(buf, 0), "Books:    20/36,048 (0.1%) - 0.3 books/s - 12.5 "
                                               "MB/s - ETA 32h 54m - elapsed 1m 6s");
        assert_string_equal(live_line(buf, 1),
                            "Slots:    downloads 1/5, uploads 2/10 - finishing 0, "
                            "waiting 3, retrying 1, queued 100");
        assert_string_equal(live_line(buf, 2), "Outcomes: ok 19, skipped 0, failed 1 - last "
                                               "failure: TEST9999: not available from the "
                                               "source (HTTP 404)");
        assert_true(buf[strlen(buf) - 1] != '\n');
        /* no color: nothing but printable text and the two line breaks */
        for (const char *p = buf; *p; p++)
                assert_true(*p == '\n' || (*p >= 0x20 && *p < 0x7f));
}

/* Each line is cut to one less than the terminal's width, escapes not counted; a
 * failure's text from a server never brings its own control characters or UTF-8. */
static void test_live_view_width_color_hostile(void **state)
{
        struct status_snap s = example();
        s.total = -1;
        s.last_failure = "X1: \033[2J\r\x07"
                         "evil\xc3\xa9";
        char buf[STATUS_LIVE_MAX];
        status_format_live(buf, &s, 40, false);
        for (unsigned i = 0; i < STATUS_LIVE_LINES; i++)
                assert_int_equal(strlen(live_line(buf, i)), 39);
        assert_string_equal(live_line(buf, 0), "Books:    20 done - 0.3 books/s - 12.5 ");
        status_format_live(buf, &s, 400, false);
        assert_non_null(strstr(live_line(buf, 2), "last failure: X1: ?[2J??evil??"));
        assert_null(strstr(buf, "ETA"));
        /* color: red failures, the escapes outside the width */
        status_format_live(buf, &s, 400, true);
        assert_non_null(strstr(buf, "\033[31mfailed 1\033[0m"));
        assert_non_null(strstr(buf, "\033[31mX1: ?[2J??evil??\033[0m"));
        status_format_live(buf, &s, 30, true);
        const char *third = live_line(buf, 2);
        size_t visible = 0;
        for (const char *p = third; *p; p++) {
                if (*p == '\033') {
                        p = strchr(p, 'm');
                        assert_non_null(p);
                        continue;
                }
                visible++;
        }
        assert_int_equal(visible, 29);
        /* a terminal too narrow to say anything still gets whole, short lines */
        status_format_live(buf, &s, 1, true);
        assert_int_equal(strlen(live_line(buf, 0)), 1);
        s.failed = 0;
        s.last_failure = NULL;
        status_format_live(buf, &s, 400, true);
        assert_null(strstr(buf, "\033"));
}

static void sample(struct status_window *w, struct status_snap *s, double t, uint64_t done)
{
        memset(s, 0, sizeof *s);
        s->elapsed_s = t;
        s->ok = done;
        s->bytes_in = done * 1000;
        status_window_update(w, s);
}

static void test_window_rates(void **state)
{
        struct status_window w;
        struct status_snap s;
        status_window_init(&w, 60);
        /* younger than the window: rate since the start */
        sample(&w, &s, 10, 10);
        assert_true(fabs(s.books_per_s - 1.0) < 1e-9);
        assert_true(fabs(s.bytes_per_s - 1000.0) < 1e-6);
        sample(&w, &s, 20, 30);
        assert_true(fabs(s.books_per_s - 1.5) < 1e-9);
        /* from the newest sample at least 60 s old (t=20) */
        sample(&w, &s, 100, 130);
        assert_true(fabs(s.books_per_s - 100.0 / 80.0) < 1e-9);
}

/* A steady rate reads the same whatever the spacing of the lines; after the books stop,
 * the rate falls to zero once the window has passed. */
static void test_window_steady_then_stop(void **state)
{
        struct status_window w;
        struct status_snap s;
        status_window_init(&w, 60);
        double t = 0;
        /* spacings from 10 ms to 7 s: dense lines must not shrink the window */
        for (int i = 0; i < 3000; i++) {
                t += i % 2 ? 0.01 : (i % 7) + 0.5;
                sample(&w, &s, t, (uint64_t)(t * 100));
                /* done is truncated to whole books: one book over the window's length, which
                 * is at least 60 s once the run is that old */
                double tol = t < 60 ? 1 / 0.5 : 1 / 60.0 + 1e-9;
                if (fabs(s.books_per_s - 100.0) > tol)
                        fail_msg("t=%.2f rate %.3f", t, s.books_per_s);
        }
        uint64_t final = (uint64_t)(t * 100);
        double stop = t;
        for (double u = stop + 0.5; u < stop + 59; u += 0.5) {
                sample(&w, &s, u, final);
                assert_true(s.books_per_s > 0);
        }
        sample(&w, &s, stop + 62, final);
        assert_true(s.books_per_s == 0);
        assert_true(s.bytes_per_s == 0);
}

static void test_window_same_instant(void **state)
{
        struct status_window w;
        struct status_snap s;
        status_window_init(&w, 60);
        sample(&w, &s, 0, 0);
        assert_true(s.books_per_s == 0);
        assert_false(isnan(s.books_per_s));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_format_duration),
            cmocka_unit_test(test_text_line),
            cmocka_unit_test(test_text_unknown_total_and_big_numbers),
            cmocka_unit_test(test_text_eta_edges),
            cmocka_unit_test(test_text_truncates),
            cmocka_unit_test(test_json_valid),
            cmocka_unit_test(test_json_unknown_total_and_odd_values),
            cmocka_unit_test(test_contents_counts),
            cmocka_unit_test(test_stats_snap),
            cmocka_unit_test(test_slot_time),
            cmocka_unit_test(test_live_view),
            cmocka_unit_test(test_live_view_width_color_hostile),
            cmocka_unit_test(test_window_rates),
            cmocka_unit_test(test_window_steady_then_stop),
            cmocka_unit_test(test_window_same_instant),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
