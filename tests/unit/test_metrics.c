/* The Prometheus exposition: exact text for a snapshot, label escaping, a buffer too small,
 * the text parsed by Debian's python3-prometheus-client, and the atomic writer never seen
 * half-written by a reader racing it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "contains.h"

#include "quire/engine/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Debian's python, where apt's python3-prometheus-client lives (not a pyenv's). */
#define DEBIAN_PYTHON "/usr/bin/python3"

static const struct metrics_count outcomes[] = {
    {"ok", 19}, {"failed", 2}, {"skipped", 5}, {"conversion-failed", 1}};
static const struct metrics_count retries[] = {{"5xx", 7}, {"429", 3}, {"reset", 1}, {"stall", 0}};
static const struct metrics_count stages[] = {{"queued", 100},    {"waiting", 3},
                                              {"downloading", 5}, {"finishing", 1},
                                              {"uploading", 2},   {"retrying", 0}};

static struct metrics_snap sample(void)
{
        return (struct metrics_snap){
            .version = "1.2-test",
            .start_time_s = 1795000000.25,
            .draining = true,
            .outcomes = outcomes,
            .noutcomes = 4,
            .retries = retries,
            .nretries = 4,
            .stages = stages,
            .nstages = 6,
            .fetched_bytes = 123456789012ull,
            .delivered_bytes = 120000000000ull,
            .resumed_bytes = 4096,
            .download_busy_s = 3600.5,
            .upload_busy_s = 12.25,
            .s2k_s = 0.042,
            .download_slots = 5,
            .upload_slots = 10,
            .books_listed = 36048,
        };
}

static void test_format_lines(void **state)
{
        struct metrics_snap s = sample();
        char buf[METRICS_TEXT_MAX];
        size_t len = 0;
        assert_int_equal(metrics_format(&s, buf, sizeof buf, &len), 0);
        assert_int_equal(len, strlen(buf));
        static const char *const want[] = {
            "# HELP quire_books_total Books finished, by outcome.\n"
            "# TYPE quire_books_total counter\n"
            "quire_books_total{outcome=\"ok\"} 19\n",
            "quire_books_total{outcome=\"conversion-failed\"} 1\n",
            "# TYPE quire_retries_total counter\nquire_retries_total{cause=\"5xx\"} 7\n",
            "quire_fetched_bytes_total 123456789012\n",
            "quire_delivered_bytes_total 120000000000\n",
            "# TYPE quire_resumed_bytes_total counter\nquire_resumed_bytes_total 4096\n",
            "# TYPE quire_download_busy_seconds_total counter\n"
            "quire_download_busy_seconds_total 3600.500\n",
            "quire_s2k_seconds_total 0.042\n",
            "# TYPE quire_books gauge\nquire_books{stage=\"queued\"} 100\n",
            "quire_download_slots 5\n",
            "quire_upload_slots 10\n",
            "quire_books_listed 36048\n",
            "quire_start_time_seconds 1795000000.250\n",
            "quire_draining 1\n",
            "quire_build_info{version=\"1.2-test\"} 1\n",
        };
        assert_contains_all(buf, want);
        assert_int_equal(buf[len - 1], '\n');
        /* Every family has its HELP and TYPE. */
        int helps = 0, types = 0;
        for (const char *p = buf; (p = strstr(p, "# HELP ")); p++)
                helps++;
        for (const char *p = buf; (p = strstr(p, "# TYPE ")); p++)
                types++;
        assert_int_equal(helps, 15);
        assert_int_equal(types, 15);
}

static void test_unknown_total_left_out(void **state)
{
        struct metrics_snap s = sample();
        s.books_listed = -1;
        s.draining = false;
        char buf[METRICS_TEXT_MAX];
        size_t len;
        assert_int_equal(metrics_format(&s, buf, sizeof buf, &len), 0);
        assert_null(strstr(buf, "quire_books_listed"));
        assert_non_null(strstr(buf, "quire_draining 0\n"));
}

static void test_label_escaping(void **state)
{
        struct metrics_count odd[] = {{"a\"b\\c\nd", 1}};
        struct metrics_snap s = sample();
        s.outcomes = odd;
        s.noutcomes = 1;
        char buf[METRICS_TEXT_MAX];
        size_t len;
        assert_int_equal(metrics_format(&s, buf, sizeof buf, &len), 0);
        assert_non_null(strstr(buf, "quire_books_total{outcome=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

static void test_too_small(void **state)
{
        struct metrics_snap s = sample();
        char buf[METRICS_TEXT_MAX];
        size_t len = 0, full;
        assert_int_equal(metrics_format(&s, buf, sizeof buf, &full), 0);
        /* One byte short of text plus NUL, and every size below, fail cleanly. */
        for (size_t cap = 0; cap <= full; cap += cap < 64 ? 1 : 97)
                assert_int_equal(metrics_format(&s, buf, cap, &len), -ENOSPC);
        assert_int_equal(metrics_format(&s, buf, full, &len), -ENOSPC);
        assert_int_equal(metrics_format(&s, buf, full + 1, &len), 0);
        assert_int_equal(len, full);
}

static char dir[256];

static int setup(void **state)
{
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/quire-metrics-XXXXXX", tmp ? tmp : "/tmp");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static void test_write_atomic(void **state)
{
        char path[300], buf[METRICS_TEXT_MAX];
        snprintf(path, sizeof path, "%s/quire.prom", dir);
        struct metrics_snap s = sample();
        size_t len;
        assert_int_equal(metrics_format(&s, buf, sizeof buf, &len), 0);
        assert_int_equal(metrics_write_atomic(path, buf, len), 0);
        assert_int_equal(metrics_write_atomic(path, buf, len), 0); /* replaces */
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, (off_t)len);
        assert_int_equal(st.st_mode & 0777, 0644);
        /* Nothing else is left in the directory. */
        char cmd[400];
        snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
        assert_int_equal(system(cmd), 0);
        /* A directory that does not exist is an error, not a crash. */
        snprintf(path, sizeof path, "%s/missing/quire.prom", dir);
        assert_int_equal(metrics_write_atomic(path, buf, len), -ENOENT);
}

/* A child rewrites the file as fast as it can, alternating two snapshots of different
 * lengths; the parent reads it meanwhile and must only ever see one of them whole. */
static void test_reader_never_sees_half(void **state)
{
        char path[300], a[METRICS_TEXT_MAX], b[METRICS_TEXT_MAX];
        snprintf(path, sizeof path, "%s/race.prom", dir);
        struct metrics_snap s = sample();
        size_t alen, blen;
        assert_int_equal(metrics_format(&s, a, sizeof a, &alen), 0);
        s.outcomes = outcomes + 3;
        s.noutcomes = 1;
        s.books_listed = -1;
        assert_int_equal(metrics_format(&s, b, sizeof b, &blen), 0);
        assert_int_not_equal(alen, blen);
        assert_int_equal(metrics_write_atomic(path, a, alen), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                for (int i = 0; i < 2000; i++)
                        if (metrics_write_atomic(path, i & 1 ? a : b, i & 1 ? alen : blen))
                                _exit(1);
                _exit(0);
        }
        unsigned reads = 0, seen_a = 0, seen_b = 0, bad = 0;
        int status = 0;
        for (;;) {
                pid_t done = waitpid(pid, &status, WNOHANG);
                int fd = open(path, O_RDONLY);
                assert_true(fd >= 0);
                char got[METRICS_TEXT_MAX];
                ssize_t n = read(fd, got, sizeof got);
                close(fd);
                reads++;
                if (n == (ssize_t)alen && !memcmp(got, a, alen))
                        seen_a++;
                else if (n == (ssize_t)blen && !memcmp(got, b, blen))
                        seen_b++;
                else
                        bad++;
                if (done == pid)
                        break;
        }
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        print_message("reader: %u reads, %u of A, %u of B, %u partial\n", reads, seen_a, seen_b,
                      bad);
        assert_int_equal(bad, 0);
}

/* The text as Prometheus's own parser reads it (python3-prometheus-client): the families,
 * their types and every sample's value. */
static void test_python_parser(void **state)
{
        if (access(DEBIAN_PYTHON, X_OK) != 0)
                fail_msg("%s missing (tools/deps.sh installs python3-prometheus-client)",
                         DEBIAN_PYTHON);
        char path[300], buf[METRICS_TEXT_MAX];
        snprintf(path, sizeof path, "%s/parse.prom", dir);
        struct metrics_snap s = sample();
        size_t len;
        assert_int_equal(metrics_format(&s, buf, sizeof buf, &len), 0);
        assert_int_equal(metrics_write_atomic(path, buf, len), 0);
        static const char script[] =
            "import sys\n"
            "from prometheus_client.parser import text_string_to_metric_families as p\n"
            "for f in p(open(sys.argv[1]).read()):\n"
            "    for s in f.samples:\n"
            "        l = ','.join(k + '=' + v for k, v in sorted(s.labels.items()))\n"
            "        print(f.type, s.name, l, repr(float(s.value)))\n";
        char py[300], cmd[1024];
        snprintf(py, sizeof py, "%s/parse.py", dir);
        FILE *pf = fopen(py, "w");
        assert_non_null(pf);
        assert_int_equal(fputs(script, pf) >= 0 && fclose(pf) == 0, 1);
        snprintf(cmd, sizeof cmd, "%s '%s' '%s' 2>&1", DEBIAN_PYTHON, py, path);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        char out[8192];
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        int rc = pclose(f);
        if (rc != 0)
                fail_msg("the parser refused the text (exit %d):\n%s\n%s", rc, out, buf);
        static const char *const want[] = {
            "counter quire_books_total outcome=ok 19.0\n",
            "counter quire_books_total outcome=conversion-failed 1.0\n",
            "counter quire_retries_total cause=429 3.0\n",
            "counter quire_fetched_bytes_total  123456789012.0\n",
            "counter quire_delivered_bytes_total  120000000000.0\n",
            "counter quire_resumed_bytes_total  4096.0\n",
            "counter quire_download_busy_seconds_total  3600.5\n",
            "counter quire_upload_busy_seconds_total  12.25\n",
            "counter quire_s2k_seconds_total  0.042\n",
            "gauge quire_books stage=downloading 5.0\n",
            "gauge quire_download_slots  5.0\n",
            "gauge quire_books_listed  36048.0\n",
            "gauge quire_start_time_seconds  1795000000.25\n",
            "gauge quire_draining  1.0\n",
            "gauge quire_build_info version=1.2-test 1.0\n",
        };
        assert_contains_all(out, want);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_format_lines),   cmocka_unit_test(test_unknown_total_left_out),
            cmocka_unit_test(test_label_escaping), cmocka_unit_test(test_too_small),
            cmocka_unit_test(test_write_atomic),   cmocka_unit_test(test_reader_never_sees_half),
            cmocka_unit_test(test_python_parser),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
