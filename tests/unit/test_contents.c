/* The contents reader on archives made here by libarchive's writer: the page escaping
 * against what Python's text-mode UTF-8 reader and json.dumps make (the expected lines
 * were produced by CPython 3.11 with errors="replace", ensure_ascii=False), page order,
 * gaps and duplicates, checksum.md5 read before the members, input that is no tar.gz,
 * feeds that come back short through a tiny ring, and stopping a reader mid-book. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quire/contents/contents.h"

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

struct member {
        const char *name;
        const char *data;
        size_t len;
};

/* A tar.gz of the members, in a malloc'd buffer. */
static uint8_t *make_targz(const struct member *m, size_t n, size_t *len)
{
        size_t cap = 1 << 20;
        uint8_t *buf = malloc(cap);
        struct archive *a = archive_write_new();
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        assert_int_equal(archive_write_set_format_gnutar(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, m[i].name);
                archive_entry_set_filetype(e, AE_IFREG);
                archive_entry_set_perm(e, 0644);
                archive_entry_set_size(e, (la_int64_t)m[i].len);
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                assert_int_equal(archive_write_data(a, m[i].data, m[i].len), (la_ssize_t)m[i].len);
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        return buf;
}

static void on_ready(void *arg)
{
        sem_post(arg);
}

struct run {
        int ocr, marc;
        struct contents *c;
        sem_t ready;
        unsigned short_feeds;
};

/* Feeds p in pieces of `piece` bytes through a ring of ring bytes, waits for the result. */
static const struct contents_result *run(struct run *r, const uint8_t *p, size_t n, size_t piece,
                                         size_t ring, bool verify)
{
        r->ocr = memfd_create("ocr", 0);
        r->marc = memfd_create("marc", 0);
        sem_init(&r->ready, 0, 0);
        struct contents_cfg cfg = {.ocr_fd = r->ocr,
                                   .marc_fd = r->marc,
                                   .verify = verify,
                                   .ring_bytes = ring,
                                   .ready = on_ready,
                                   .arg = &r->ready};
        assert_int_equal(contents_new(&r->c, &cfg), 0);
        for (size_t off = 0; off < n;) {
                size_t want = n - off < piece ? n - off : piece;
                size_t k = contents_feed(r->c, p + off, want);
                off += k;
                if (k < want) {
                        r->short_feeds++;
                        sem_wait(&r->ready);
                }
        }
        contents_finish(r->c);
        contents_wait(r->c);
        assert_true(contents_done(r->c));
        return contents_result(r->c);
}

static void done(struct run *r)
{
        contents_free(r->c);
        close(r->ocr);
        close(r->marc);
        sem_destroy(&r->ready);
}

/* The OCR output, decompressed, NUL-terminated; *len its length. */
static char *ocr_text(int fd, size_t *len)
{
        lseek(fd, 0, SEEK_SET);
        gzFile g = gzdopen(dup(fd), "rb");
        assert_non_null(g);
        size_t cap = 1 << 20, n = 0;
        char *out = malloc(cap + 1);
        int k;
        while ((k = gzread(g, out + n, (unsigned)(cap - n))) > 0)
                n += (size_t)k;
        assert_int_equal(gzclose(g), Z_OK);
        out[n] = 0;
        *len = n;
        return out;
}

static const struct {
        const char *in;
        size_t len;
        const char *want;
} escapes[] = {
    {"\x63\x61\x66\xe9\x20\x6f\x6b", 7, "\x22\x63\x61\x66\xef\xbf\xbd\x20\x6f\x6b\x22\x0a"},
    {"\xe2\x82", 2, "\x22\xef\xbf\xbd\x22\x0a"},
    {"\xf0\x9f\x98\x80", 4, "\x22\xf0\x9f\x98\x80\x22\x0a"},
    {"\xed\xa0\x80\x78", 4, "\x22\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x78\x22\x0a"},
    {"\xf4\x90\x80\x80", 4, "\x22\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x22\x0a"},
    {"\xc0\xaf", 2, "\x22\xef\xbf\xbd\xef\xbf\xbd\x22\x0a"},
    {"\xe0\x80\xaf", 3, "\x22\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x22\x0a"},
    {"\x61\x0d\x0a\x62\x0d\x63\x0d\x0d\x0a\x64", 10,
     "\x22\x61\x5c\x6e\x62\x5c\x6e\x63\x5c\x6e\x5c\x6e\x64\x22\x0a"},
    {"\x00\x1b\x7f\x22\x5c\x09\x08\x0c", 8,
     "\x22\x5c\x75\x30\x30\x30\x30\x5c\x75\x30\x30\x31\x62\x7f\x5c\x22\x5c\x5c\x5c\x74\x5c\x62\x5c"
     "\x66\x22\x0a"},
    {"\xe2\x82\xac\xe2\x82", 5, "\x22\xe2\x82\xac\xef\xbf\xbd\x22\x0a"},
    {"\xf0\x9f\x98", 3, "\x22\xef\xbf\xbd\x22\x0a"},
    {"\xc3", 1, "\x22\xef\xbf\xbd\x22\x0a"},
    {"\x78\x0d", 2, "\x22\x78\x5c\x6e\x22\x0a"},
    {"\xe4\xb8\xad\xe6\x96\x87\xd9\x85\xcc\x81", 10,
     "\x22\xe4\xb8\xad\xe6\x96\x87\xd9\x85\xcc\x81\x22\x0a"},
    {"\x80\xbf\xfe\xff", 4, "\x22\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x22\x0a"},
    {"", 0, "\x22\x22\x0a"},
};

static void test_page_escaping(void **state)
{
        for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++) {
                struct member m = {"00000001.txt", escapes[i].in, escapes[i].len};
                size_t n;
                uint8_t *gz = make_targz(&m, 1, &n);
                struct run r = {0};
                /* Whole, and in 3-byte pieces through a 64-byte ring. */
                for (int pass = 0; pass < 2; pass++) {
                        const struct contents_result *res =
                            pass ? run(&r, gz, n, 3, 64, false) : run(&r, gz, n, n, 0, false);
                        assert_int_equal(res->archive, CONTENTS_OK);
                        assert_true(res->ocr_written);
                        assert_int_equal(res->pages, 1);
                        size_t len;
                        char *got = ocr_text(r.ocr, &len);
                        assert_int_equal(len, strlen(escapes[i].want));
                        assert_memory_equal(got, escapes[i].want, len);
                        free(got);
                        done(&r);
                        r = (struct run){0};
                }
                free(gz);
        }
}

static void test_order_gaps_duplicates(void **state)
{
        struct member m[] = {
            {"00000003.txt", "three", 5},     {"00000001.txt", "one", 3},
            {"sub/00000003.txt", "again", 5}, {"00000000.txt", "zero", 4},
            {"notes.txt", "not a page", 10},  {"01000000.txt", "past 999999", 11},
        };
        size_t n;
        uint8_t *gz = make_targz(m, 6, &n);
        struct run r = {0};
        const struct contents_result *res = run(&r, gz, n, 1000, 0, false);
        assert_int_equal(res->archive, CONTENTS_OK);
        assert_int_equal(res->pages, 4);
        size_t len;
        char *got = ocr_text(r.ocr, &len);
        assert_string_equal(got, "\"one\"\n\"\"\n\"three\"\n\"again\"\n");
        free(got);
        done(&r);
        free(gz);
}

static void md5_line(const char *name, const char *data, char *out)
{
        uint8_t md[16];
        unsigned len;
        EVP_Digest(data, strlen(data), md, &len, EVP_md5(), NULL);
        for (int i = 0; i < 16; i++)
                sprintf(out + 2 * i, "%02x", md[i]);
        sprintf(out + 32, "  %s\n", name);
}

static void test_checksum_first_and_mismatch(void **state)
{
        char list[512];
        md5_line("00000001.txt", "page", list);
        md5_line("00000001.jp2", "image", list + strlen(list));
        md5_line("00000001.html", "<p>page</p>", list + strlen(list));
        struct member good[] = {{"checksum.md5", list, strlen(list)},
                                {"00000001.html", "<p>page</p>", 11},
                                {"00000001.jp2", "image", 5},
                                {"00000001.txt", "page", 4}};
        size_t n;
        uint8_t *gz = make_targz(good, 4, &n);
        struct run r = {0};
        const struct contents_result *res = run(&r, gz, n, n, 0, true);
        assert_int_equal(res->check, CHECK_OK);
        assert_int_equal(res->members, 4);
        done(&r);
        free(gz);

        good[2].data = "imagE";
        gz = make_targz(good, 4, &n);
        r = (struct run){0};
        res = run(&r, gz, n, n, 0, true);
        assert_int_equal(res->check, CHECK_MISMATCH);
        assert_string_equal(res->member, "00000001.jp2");
        char detail[512];
        contents_format_detail(res, detail, sizeof detail);
        assert_non_null(strstr(detail, "checksum=mismatch member=00000001.jp2 "));
        done(&r);
        free(gz);
}

static void test_not_targz_takes_the_rest(void **state)
{
        size_t n = 300000;
        uint8_t *junk = malloc(n);
        for (size_t i = 0; i < n; i++)
                junk[i] = (uint8_t)(i * 2654435761u >> 13);
        struct run r = {0};
        const struct contents_result *res = run(&r, junk, n, 4096, 8192, true);
        assert_int_equal(res->archive, CONTENTS_NOT_TARGZ);
        assert_false(res->ocr_written);
        assert_false(res->marc_written);
        assert_non_null(res->ocr_skipped);
        done(&r);
        free(junk);
}

static void test_short_feeds_resume(void **state)
{
        static char big[200000];
        memset(big, 'a', sizeof big);
        struct member m = {"00000001.txt", big, sizeof big};
        size_t n;
        uint8_t *gz = make_targz(&m, 1, &n);
        /* The archive is a few times the 128-byte ring: feeds come back short. */
        struct run r = {0};
        const struct contents_result *res = run(&r, gz, n, 65536, 128, false);
        assert_int_equal(res->archive, CONTENTS_OK);
        assert_true(r.short_feeds > 0);
        size_t len;
        char *got = ocr_text(r.ocr, &len);
        assert_int_equal(len, sizeof big + 3);
        free(got);
        done(&r);
        free(gz);
}

static void test_stop_mid_book(void **state)
{
        struct member m = {"00000001.txt", "text", 4};
        size_t n;
        uint8_t *gz = make_targz(&m, 1, &n);
        struct contents *c;
        struct contents_cfg cfg = {.ocr_fd = -1, .marc_fd = -1, .verify = true};
        assert_int_equal(contents_new(&c, &cfg), 0);
        assert_int_equal(contents_feed(c, gz, n / 2), n / 2);
        assert_false(contents_done(c));
        contents_free(c); /* must return without the rest of the input */
        free(gz);
}

/* What the tap sees: every byte of each output, in order. */
struct tap {
        int ocr, marc;
        EVP_MD_CTX *ocr_md, *marc_md;
        size_t ocr_bytes, marc_bytes;
};

static void on_wrote(void *arg, int fd, const void *p, size_t n)
{
        struct tap *t = arg;
        assert_true(fd == t->ocr || fd == t->marc);
        EVP_DigestUpdate(fd == t->ocr ? t->ocr_md : t->marc_md, p, n);
        *(fd == t->ocr ? &t->ocr_bytes : &t->marc_bytes) += n;
}

/* The file's SHA-256 read back, against the tap's. */
static void same_digest(int fd, EVP_MD_CTX *md, size_t bytes)
{
        uint8_t want[32], got[32], buf[4096];
        EVP_MD_CTX *back = EVP_MD_CTX_new();
        EVP_DigestInit_ex(back, EVP_sha256(), NULL);
        size_t total = 0;
        ssize_t k;
        while ((k = pread(fd, buf, sizeof buf, (off_t)total)) > 0) {
                EVP_DigestUpdate(back, buf, (size_t)k);
                total += (size_t)k;
        }
        assert_int_equal(total, bytes);
        EVP_DigestFinal_ex(back, want, NULL);
        EVP_DigestFinal_ex(md, got, NULL);
        assert_memory_equal(got, want, 32);
        EVP_MD_CTX_free(back);
}

static const char mets[] =
    "<?xml version=\"1.0\"?><mets:mets xmlns:mets=\"http://www.loc.gov/METS/\"><mets:dmdSec>"
    "<mets:mdWrap><mets:xmlData><marc:record xmlns:marc=\"http://www.loc.gov/MARC21/slim\">"
    "<marc:controlfield tag=\"001\">42</marc:controlfield></marc:record></mets:xmlData>"
    "</mets:mdWrap></mets:dmdSec></mets:mets>";

/* contents_feed_all through a ring far smaller than the input, with the tap and the sync:
 * the outputs are whole and the tap saw exactly their bytes. */
static void test_feed_all_and_tap(void **state)
{
        static char big[300000];
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (char)('a' + i % 26);
        struct member m[] = {{"00000001.txt", big, sizeof big}, {"T_B.xml", mets, sizeof mets - 1}};
        size_t n;
        uint8_t *gz = make_targz(m, 2, &n);
        struct tap t = {.ocr = memfd_create("ocr", 0),
                        .marc = memfd_create("marc", 0),
                        .ocr_md = EVP_MD_CTX_new(),
                        .marc_md = EVP_MD_CTX_new()};
        EVP_DigestInit_ex(t.ocr_md, EVP_sha256(), NULL);
        EVP_DigestInit_ex(t.marc_md, EVP_sha256(), NULL);
        struct contents_cfg cfg = {.ocr_fd = t.ocr,
                                   .marc_fd = t.marc,
                                   .ring_bytes = 256,
                                   .wrote = on_wrote,
                                   .arg = &t,
                                   .sync = true};
        struct contents *c;
        assert_int_equal(contents_new(&c, &cfg), 0);
        contents_feed_all(c, gz, n);
        contents_finish(c);
        contents_wait(c);
        const struct contents_result *res = contents_result(c);
        assert_int_equal(res->archive, CONTENTS_OK);
        assert_true(res->ocr_written && res->marc_written);
        assert_true(t.ocr_bytes > 0 && t.marc_bytes > 0);
        same_digest(t.ocr, t.ocr_md, t.ocr_bytes);
        same_digest(t.marc, t.marc_md, t.marc_bytes);
        size_t len;
        char *got = ocr_text(t.ocr, &len);
        assert_int_equal(len, sizeof big + 3);
        free(got);
        contents_free(c);
        EVP_MD_CTX_free(t.ocr_md);
        EVP_MD_CTX_free(t.marc_md);
        close(t.ocr);
        close(t.marc);
        free(gz);
}

/* Once the verdict is settled (not a tar.gz), a blocking feed takes the rest at once. */
static void test_feed_all_after_settled(void **state)
{
        size_t n = 200000;
        uint8_t *junk = malloc(n);
        for (size_t i = 0; i < n; i++)
                junk[i] = (uint8_t)(i * 2654435761u >> 11);
        struct contents_cfg cfg = {.ocr_fd = -1, .marc_fd = -1, .verify = true, .ring_bytes = 512};
        struct contents *c;
        assert_int_equal(contents_new(&c, &cfg), 0);
        contents_feed_all(c, junk, n);
        contents_finish(c);
        contents_wait(c);
        assert_int_equal(contents_result(c)->archive, CONTENTS_NOT_TARGZ);
        contents_free(c);
        free(junk);
}

static void test_detail_escapes_names(void **state)
{
        struct contents_result r = {.archive = CONTENTS_OK, .check = CHECK_UNLISTED};
        snprintf(r.member, sizeof r.member, "a b%%=\t\xc3\xa9.txt");
        char buf[256];
        contents_format_detail(&r, buf, sizeof buf);
        assert_non_null(strstr(buf, "checksum=unlisted member=a%20b%25%3D%09%C3%A9.txt "));
        assert_null(strchr(buf, '\t'));
        /* A small buffer cuts, never overflows. */
        char tiny[16];
        assert_int_equal(contents_format_detail(&r, tiny, sizeof tiny), 15);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_page_escaping),
            cmocka_unit_test(test_order_gaps_duplicates),
            cmocka_unit_test(test_checksum_first_and_mismatch),
            cmocka_unit_test(test_not_targz_takes_the_rest),
            cmocka_unit_test(test_short_feeds_resume),
            cmocka_unit_test(test_stop_mid_book),
            cmocka_unit_test(test_detail_escapes_names),
            cmocka_unit_test(test_feed_all_and_tap),
            cmocka_unit_test(test_feed_all_after_settled),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
