/* The barcode feeder: validation reasons, trimming, skipping, line numbers, and hostile
 * input (long lines, NUL bytes, CRLF, no final newline) from files and pipes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quire/engine/feeder.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct reason_case {
        const char *s;
        size_t n; /* 0: strlen */
        const char *why;
};

static void test_barcode_invalid_reasons(void **state)
{
        static const char b64[] =
            "0123456789012345678901234567890123456789012345678901234567890123";
        static const char b65[] =
            "01234567890123456789012345678901234567890123456789012345678901234";
        static const struct reason_case cases[] = {
            {"32101067213021", 0, NULL},
            {"a.b-c_D9", 0, NULL},
            {b64, 0, NULL},
            {b65, 0, "longer than 64 bytes"},
            {"a/b", 0, "contains '/'"},
            {"a\\b", 0, "contains '\\'"},
            {"../etc/passwd", 0, "contains '/'"},
            {"..", 0, "starts with '.'"},
            {".hidden", 0, "starts with '.'"},
            {"a..b", 0, "contains '..'"},
            {"a b", 0, "contains ' '"},
            {"a;rm", 0, "contains ';'"},
            {"$(x)", 0, "contains '$'"},
            {"a\x07z", 0, "control byte 0x07"},
            {"a\x1b", 0, "control byte 0x1b"},
            {"a\x7f", 0, "control byte 0x7f"},
            {"a\0b", 3, "control byte 0x00"},
            {"a\tb", 0, "control byte 0x09"},
            {"caf\xc3\xa9", 0, "non-ASCII character"},
            {"\xf0\x9f\x93\x9a", 0, "non-ASCII character"},
            {"a\xff", 0, "invalid UTF-8"},
            {"\xc0\xaf", 0, "invalid UTF-8"},         /* overlong '/' */
            {"\xed\xa0\x80", 0, "invalid UTF-8"},     /* surrogate */
            {"\xf4\x90\x80\x80", 0, "invalid UTF-8"}, /* past U+10FFFF */
            {"ab\xe2\x82", 0, "invalid UTF-8"},       /* truncated */
            {"", 0, "empty"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                const struct reason_case *c = &cases[i];
                size_t n = c->n ? c->n : strlen(c->s);
                const char *why = feeder_barcode_invalid(c->s, n);
                if (!c->why) {
                        if (why)
                                fail_msg("case %zu \"%s\": unexpected \"%s\"", i, c->s, why);
                } else {
                        if (!why || strcmp(why, c->why))
                                fail_msg("case %zu: want \"%s\", got \"%s\"", i, c->why,
                                         why ? why : "(accepted)");
                }
        }
}

/* ---- reading ---- */

struct got {
        enum feeder_result res;
        uint64_t line;
        char text[BARCODE_MAX + 1]; /* barcode, or the reason */
};

#define MAX_GOT 64

static size_t read_all(struct feeder *f, struct got *g)
{
        size_t n = 0;
        for (;;) {
                char bc[BARCODE_MAX + 1];
                uint64_t line = 0;
                const char *why = NULL;
                enum feeder_result r = feeder_next(f, bc, &line, &why);
                if (r == FEED_AGAIN) {
                        /* As the run's main loop does: wait until readable, read once. */
                        struct pollfd pfd = {.fd = feeder_fd(f), .events = POLLIN};
                        assert_int_equal(poll(&pfd, 1, 10000), 1);
                        int err = feeder_fill(f);
                        assert_true(err == 0 || err == -EAGAIN);
                        continue;
                }
                if (r == FEED_EOF)
                        return n;
                assert_true(n < MAX_GOT);
                g[n].res = r;
                g[n].line = line;
                snprintf(g[n].text, sizeof g[n].text, "%s", r == FEED_BARCODE ? bc : why);
                n++;
        }
}

static char *temp_file(const void *data, size_t len)
{
        const char *dir = getenv("TMPDIR");
        char *path;
        assert_true(asprintf(&path, "%s/quire-feeder-XXXXXX", dir ? dir : "/tmp") > 0);
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        const char *p = data;
        while (len) {
                ssize_t w = write(fd, p, len);
                assert_true(w > 0);
                p += w;
                len -= (size_t)w;
        }
        close(fd);
        return path;
}

static size_t read_file_all(const void *data, size_t len, struct got *g, int64_t *count)
{
        char *path = temp_file(data, len);
        struct feeder *f;
        assert_int_equal(feeder_open(&f, path), 0);
        *count = feeder_count(f);
        size_t n = read_all(f, g);
        assert_int_equal(feeder_count(f), *count); /* counting keeps the feeder's place */
        feeder_close(f);
        unlink(path);
        free(path);
        return n;
}

static void expect(const struct got *g, enum feeder_result res, uint64_t line, const char *text)
{
        if (g->res != res || g->line != line || strcmp(g->text, text))
                fail_msg("want %d line %llu \"%s\", got %d line %llu \"%s\"", res,
                         (unsigned long long)line, text, g->res, (unsigned long long)g->line,
                         g->text);
}

static const char mixed[] = "# header comment\n"
                            "32101067213021\n"
                            "\n"
                            "   \t  \n"
                            "  padded_1 \t\n"
                            "   # indented comment\n"
                            "../../etc/passwd\n"
                            "a\x07"
                            "b\n"
                            "bad\xff\n"
                            "caf\xc3\xa9\n"
                            "0123456789012345678901234567890123456789012345678901234567890123X\n"
                            ".dot\n"
                            "x..y\n"
                            "in side\n"
                            "nul\0byte\n"
                            "last-no-newline";

static void check_mixed(const struct got *g, size_t n)
{
        assert_int_equal(n, 12);
        expect(&g[0], FEED_BARCODE, 2, "32101067213021");
        expect(&g[1], FEED_BARCODE, 5, "padded_1");
        expect(&g[2], FEED_INVALID, 7, "contains '/'");
        expect(&g[3], FEED_INVALID, 8, "control byte 0x07");
        expect(&g[4], FEED_INVALID, 9, "invalid UTF-8");
        expect(&g[5], FEED_INVALID, 10, "non-ASCII character");
        expect(&g[6], FEED_INVALID, 11, "longer than 64 bytes");
        expect(&g[7], FEED_INVALID, 12, "starts with '.'");
        expect(&g[8], FEED_INVALID, 13, "contains '..'");
        expect(&g[9], FEED_INVALID, 14, "contains ' '");
        expect(&g[10], FEED_INVALID, 15, "control byte 0x00");
        expect(&g[11], FEED_BARCODE, 16, "last-no-newline");
}

static void test_file_mixed(void **state)
{
        struct got g[MAX_GOT];
        int64_t count;
        /* The array's own NUL is not part of the file. */
        size_t n = read_file_all(mixed, sizeof mixed - 1, g, &count);
        check_mixed(g, n);
        assert_int_equal(count, 12);
}

static void test_crlf(void **state)
{
        static const char crlf[] = "A1\r\n\r\n  B2 \r\n#c\r\nC3\r\r\nD\r4\r\nE5\r";
        struct got g[MAX_GOT];
        int64_t count;
        size_t n = read_file_all(crlf, sizeof crlf - 1, g, &count);
        assert_int_equal(n, 5);
        expect(&g[0], FEED_BARCODE, 1, "A1");
        expect(&g[1], FEED_BARCODE, 3, "B2");
        expect(&g[2], FEED_BARCODE, 5, "C3");
        expect(&g[3], FEED_INVALID, 6, "control byte 0x0d");
        expect(&g[4], FEED_BARCODE, 7, "E5");
        assert_int_equal(count, 5);
}

static void test_empty_and_blank_files(void **state)
{
        struct got g[MAX_GOT];
        int64_t count;
        assert_int_equal(read_file_all("", 0, g, &count), 0);
        assert_int_equal(count, 0);
        static const char blanks[] = "\n\n# x\n \t\n\r\n";
        assert_int_equal(read_file_all(blanks, sizeof blanks - 1, g, &count), 0);
        assert_int_equal(count, 0);
}

/* A 1 MB line, a 1 MB comment and 1 MB of blanks between good lines: the long line is
 * reported once with its line number, the others skipped, and nothing around them lost. */
static void test_huge_lines(void **state)
{
        size_t big = 1 << 20;
        size_t cap = 3 * big + 8192;
        char *data = malloc(cap);
        assert_non_null(data);
        size_t len = 0;
        len += (size_t)sprintf(data + len, "first\n");
        memset(data + len, 'A', big);
        len += big;
        data[len++] = '\n';
        len += (size_t)sprintf(data + len, "second\n  #");
        memset(data + len, 'c', big);
        len += big;
        data[len++] = '\n';
        memset(data + len, ' ', big);
        len += big;
        len += (size_t)sprintf(data + len, "\nthird\n");
        /* a long line ending the file without a newline */
        memset(data + len, 'Z', 5000);
        len += 5000;

        struct got g[MAX_GOT];
        int64_t count;
        size_t n = read_file_all(data, len, g, &count);
        assert_int_equal(n, 5);
        expect(&g[0], FEED_BARCODE, 1, "first");
        expect(&g[1], FEED_INVALID, 2, "longer than 64 bytes");
        expect(&g[2], FEED_BARCODE, 3, "second");
        expect(&g[3], FEED_BARCODE, 6, "third");
        expect(&g[4], FEED_INVALID, 7, "longer than 64 bytes");
        assert_int_equal(count, 5);
        free(data);
}

/* Lines whose length sits right at the buffer size, around the refill boundary. */
static void test_lines_across_buffer_boundary(void **state)
{
        for (size_t pad = 4080; pad < 4110; pad++) {
                char *data = malloc(pad + 64);
                assert_non_null(data);
                memset(data, ' ', pad);
                size_t len = pad;
                len += (size_t)sprintf(data + len, "ok1\nok2\n");
                struct got g[MAX_GOT];
                int64_t count;
                size_t n = read_file_all(data, len, g, &count);
                /* a blank-padded barcode is still that barcode, however the buffer cut it,
                 * unless the line overflows the buffer: then it is "too long" */
                assert_int_equal(n, 2);
                if (g[0].res == FEED_BARCODE)
                        expect(&g[0], FEED_BARCODE, 1, "ok1");
                else
                        expect(&g[0], FEED_INVALID, 1, "longer than 64 bytes");
                expect(&g[1], FEED_BARCODE, 2, "ok2");
                free(data);
        }
}

struct writer {
        int fd;
        const char *data;
        size_t len, chunk;
};

/* Trickles the data in small writes so lines arrive split across reads. */
static void *pipe_writer(void *p)
{
        struct writer *w = p;
        for (size_t off = 0; off < w->len;) {
                size_t n = w->len - off < w->chunk ? w->len - off : w->chunk;
                ssize_t r = write(w->fd, w->data + off, n);
                if (r <= 0)
                        break;
                off += (size_t)r;
        }
        close(w->fd);
        return NULL;
}

static void test_pipe_dev_fd(void **state)
{
        int p[2];
        assert_int_equal(pipe(p), 0);
        struct writer w = {p[1], mixed, sizeof mixed - 1, 3};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, pipe_writer, &w), 0);
        char path[32];
        snprintf(path, sizeof path, "/dev/fd/%d", p[0]);
        struct feeder *f;
        assert_int_equal(feeder_open(&f, path), 0);
        assert_int_equal(feeder_count(f), -1);
        struct got g[MAX_GOT];
        size_t n = read_all(f, g);
        feeder_close(f);
        pthread_join(t, NULL);
        close(p[0]);
        check_mixed(g, n);
}

static void test_stdin_pipe(void **state)
{
        int p[2];
        assert_int_equal(pipe(p), 0);
        int saved = dup(STDIN_FILENO);
        assert_true(saved >= 0);
        assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
        close(p[0]);
        struct writer w = {p[1], mixed, sizeof mixed - 1, 1};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, pipe_writer, &w), 0);
        struct feeder *f;
        assert_int_equal(feeder_open(&f, "-"), 0);
        assert_int_equal(feeder_count(f), -1);
        assert_int_equal(feeder_fd(f), STDIN_FILENO);
        struct got g[MAX_GOT];
        size_t n = read_all(f, g);
        feeder_close(f);
        pthread_join(t, NULL);
        /* feeder_close leaves stdin open */
        assert_true(fcntl(STDIN_FILENO, F_GETFD) >= 0);
        dup2(saved, STDIN_FILENO);
        close(saved);
        check_mixed(g, n);
}

static void test_open_missing(void **state)
{
        struct feeder *f = NULL;
        assert_int_equal(feeder_open(&f, "/nonexistent/quire/list"), -ENOENT);
        assert_int_equal(feeder_open(&f, "/"), -EISDIR);
}

/* A non-blocking pipe (issue 9 bug 3): EAGAIN is "later", never the end of the list. */
static void test_nonblocking_pipe(void **state)
{
        int p[2];
        assert_int_equal(pipe2(p, O_NONBLOCK), 0);
        struct feeder *f;
        int saved = dup(STDIN_FILENO);
        assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
        assert_int_equal(feeder_open(&f, "-"), 0);
        char bc[BARCODE_MAX + 1];
        uint64_t line;
        const char *why;
        assert_int_equal(feeder_next(f, bc, &line, &why), FEED_AGAIN);
        assert_int_equal(feeder_fill(f), -EAGAIN);
        assert_int_equal(write(p[1], "AB", 2), 2);
        assert_int_equal(feeder_fill(f), 0);
        assert_int_equal(feeder_next(f, bc, &line, &why), FEED_AGAIN); /* no newline yet */
        assert_int_equal(write(p[1], "12\nC", 4), 4);
        assert_int_equal(feeder_fill(f), 0);
        assert_int_equal(feeder_next(f, bc, &line, &why), FEED_BARCODE);
        assert_string_equal(bc, "AB12");
        assert_int_equal(feeder_next(f, bc, &line, &why), FEED_AGAIN);
        close(p[1]);
        assert_int_equal(feeder_fill(f), 0);
        assert_int_equal(feeder_fill(f), 0); /* the end, once seen, stays */
        assert_int_equal(feeder_next(f, bc, &line, &why), FEED_BARCODE);
        assert_string_equal(bc, "C");
        assert_int_equal(feeder_next(f, bc, &line, &why), FEED_EOF);
        feeder_close(f);
        dup2(saved, STDIN_FILENO);
        close(saved);
        close(p[0]);
}

/* A FIFO without its writer yet: opening it must not wait (issue 14 item 6). */
static void test_fifo_open_does_not_block(void **state)
{
        char dir[] = "/tmp/quire-fifo-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[64];
        snprintf(path, sizeof path, "%s/list", dir);
        assert_int_equal(mkfifo(path, 0600), 0);
        struct feeder *f;
        assert_int_equal(feeder_open(&f, path), 0);
        assert_int_equal(feeder_count(f), -1);
        char bc[BARCODE_MAX + 1];
        uint64_t line;
        const char *why;
        assert_int_equal(feeder_next(f, bc, &line, &why), FEED_AGAIN);
        int w = open(path, O_WRONLY | O_NONBLOCK);
        assert_true(w >= 0);
        assert_int_equal(write(w, "X1\n", 3), 3);
        struct pollfd pfd = {.fd = feeder_fd(f), .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 10000), 1);
        assert_int_equal(feeder_fill(f), 0);
        assert_int_equal(feeder_next(f, bc, &line, &why), FEED_BARCODE);
        assert_string_equal(bc, "X1");
        close(w);
        feeder_close(f);
        unlink(path);
        rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_barcode_invalid_reasons),
            cmocka_unit_test(test_file_mixed),
            cmocka_unit_test(test_crlf),
            cmocka_unit_test(test_empty_and_blank_files),
            cmocka_unit_test(test_huge_lines),
            cmocka_unit_test(test_lines_across_buffer_boundary),
            cmocka_unit_test(test_pipe_dev_fd),
            cmocka_unit_test(test_stdin_pipe),
            cmocka_unit_test(test_open_missing),
            cmocka_unit_test(test_nonblocking_pipe),
            cmocka_unit_test(test_fifo_open_does_not_block),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
