/* The S3 sink's parts that need no server: destinations and keys, URLs and queries as
 * SigV4 signs them, every XML answer (S3's keep-alive whitespace, errors after a 200,
 * pagination, hostile documents), metadata as header lines, the size bounds, and a start
 * that stalls until the user interrupts it. tests/e2e/test_s3_sink.sh drives the rest
 * against a real server (tests/unit/test_s3_sink.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/io/s3/s3_int.h"
#include "quire/io/sinks.h"
#include "quire/io/sources.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- destinations, keys, URLs ------------------------------------------------------- */

static int parse(const char *dest, char **bucket, char **prefix, char *msg)
{
        return s3_dest_parse(dest, bucket, prefix, msg, 512);
}

static void test_dest_prefix_trimmed(void **state)
{
        char *b, *p, msg[512];
        assert_int_equal(parse("s3://raw//books/2024/", &b, &p, msg), 0);
        assert_string_equal(b, "raw");
        assert_string_equal(p, "books/2024");
        free(b);
        free(p);
        assert_int_equal(parse("s3://raw", &b, &p, msg), 0);
        assert_string_equal(p, "");
        free(b);
        free(p);
        /* Dots inside a segment are a name, not a segment. */
        assert_int_equal(parse("s3://raw/a..b/.c/d.", &b, &p, msg), 0);
        assert_string_equal(p, "a..b/.c/d.");
        free(b);
        free(p);
}

/* Issue 14.10: libcurl resolves these, so the keys would land outside the prefix typed. */
static void test_dest_dot_segments_refused(void **state)
{
        static const char *const bad[] = {"s3://raw/a/../b", "s3://raw/../b", "s3://raw/a/./b",
                                          "s3://raw/a/..",   "s3://raw/./",   NULL};
        for (unsigned i = 0; bad[i]; i++) {
                char *b = (char *)1, *p = (char *)1, msg[512] = "";
                assert_int_equal(parse(bad[i], &b, &p, msg), -EINVAL);
                assert_null(b);
                assert_null(p);
                assert_non_null(strstr(msg, bad[i]));
                assert_non_null(strstr(msg, "\"..\" segment"));
        }
}

static void test_dest_bucket_rules(void **state)
{
        static const char *const bad[] = {
            "s3://",      "s3://ab",     "s3://Upper",  "s3://under_score",
            "s3://-lead", "s3://trail.", "gs://bucket", NULL};
        for (unsigned i = 0; bad[i]; i++) {
                char *b, *p, msg[512] = "";
                assert_int_equal(parse(bad[i], &b, &p, msg), -EINVAL);
                assert_non_null(strstr(msg, "--dest"));
        }
        char *b, *p, msg[512];
        assert_int_equal(parse("s3://raw/a\001b", &b, &p, msg), -EINVAL);
        assert_non_null(strstr(msg, "control character"));
}

static void test_escape_path(void **state)
{
        char *e = s3_escape_path("books/a b+c/\xc3\xbc~x_y.tar.gz");
        assert_string_equal(e, "books/a%20b%2Bc/%C3%BC~x_y.tar.gz");
        free(e);
        e = s3_escape_path("a//b");
        assert_string_equal(e, "a//b");
        free(e);
        e = s3_escape_path("");
        assert_string_equal(e, "");
        free(e);
}

static void test_query_sorted_and_encoded(void **state)
{
        char url[256];
        const char *q1[] = {"partNumber", "7", "uploadId", "a/b=c&d+e f", NULL};
        assert_int_equal(s3_url_query(url, sizeof url, "http://h/b/k", q1), 0);
        assert_string_equal(url, "http://h/b/k?partNumber=7&uploadId=a%2Fb%3Dc%26d%2Be%20f");
        /* "uploads" with its '=': libcurl 7.88 signs the query as written. */
        const char *q2[] = {"uploads", "", NULL};
        assert_int_equal(s3_url_query(url, sizeof url, "http://h/b/k", q2), 0);
        assert_string_equal(url, "http://h/b/k?uploads=");
        char small[16];
        assert_int_equal(s3_url_query(small, sizeof small, "http://h/b/k", q1), -ENAMETOOLONG);
}

static void endpoint_ok(const char *ep, const char *want_obj, const char *want_bucket)
{
        char *o, *b, msg[512];
        assert_int_equal(s3_endpoint_urls(ep, "books", "eu-west-3", &o, &b, msg, sizeof msg), 0);
        assert_string_equal(o, want_obj);
        assert_string_equal(b, want_bucket);
        free(o);
        free(b);
}

static void test_endpoints(void **state)
{
        endpoint_ok(NULL, "https://books.s3.eu-west-3.amazonaws.com",
                    "https://books.s3.eu-west-3.amazonaws.com/");
        endpoint_ok("127.0.0.1:9000", "https://127.0.0.1:9000/books",
                    "https://127.0.0.1:9000/books");
        endpoint_ok("http://minio:9000/", "http://minio:9000/books", "http://minio:9000/books");
        endpoint_ok("https://acct.r2.example/base/", "https://acct.r2.example/base/books",
                    "https://acct.r2.example/base/books");
        static const char *const bad[] = {"ftp://h",     "http://u:p@h", "http://h/?x=1",
                                          "http://h/#f", "http://",      NULL};
        for (unsigned i = 0; bad[i]; i++) {
                char *o, *b, msg[512] = "";
                assert_int_equal(
                    s3_endpoint_urls(bad[i], "books", "us-east-1", &o, &b, msg, sizeof msg),
                    -EINVAL);
                assert_non_null(strstr(msg, "--s3-endpoint"));
        }
        char *o, *b, msg[512];
        assert_int_equal(s3_endpoint_urls(NULL, "books", "us east", &o, &b, msg, sizeof msg),
                         -EINVAL);
        assert_non_null(strstr(msg, "AWS_REGION"));
}

static void test_keys_ours(void **state)
{
        assert_true(s3_key_ours("books", "books/X.tar.gz"));
        assert_false(s3_key_ours("books", "books/sub/X.tar.gz"));
        assert_false(s3_key_ours("books", "books/notours.bin"));
        assert_false(s3_key_ours("books", "booksX/Y.tar.gz"));
        assert_false(s3_key_ours("books", "books/.tar.gz"));
        assert_true(s3_key_ours("", "X.tar.gz"));
        assert_false(s3_key_ours("", "a/X.tar.gz"));
        assert_true(s3_key_ours("books", "books/X_ocr.jsonl.gz"));
        assert_true(s3_key_ours("books", "books/X_marc.json"));
        assert_false(s3_key_ours("books", "books/X.jsonl.gz"));
}

/* ---- XML answers ------------------------------------------------------------------------ */

/* Feeds doc in chunks of `chunk` bytes, as libcurl would hand them over. */
static int feed(struct s3_xml *x, const char *doc, size_t len, size_t chunk)
{
        for (size_t off = 0; off < len; off += chunk) {
                int err = s3_xml_feed(x, doc + off, len - off < chunk ? len - off : chunk);
                if (err)
                        return err;
        }
        return s3_xml_end(x);
}

static int feed_str(struct s3_xml *x, const char *doc, size_t chunk)
{
        return feed(x, doc, strlen(doc), chunk);
}

/* Issue 9: a CompleteMultipartUpload answered 200, then keep-alive whitespace (here more
 * than the 4 KiB today's code kept), then the <Error>. */
static void test_complete_error_after_whitespace(void **state)
{
        static const char tail[] = "<Error><Code>InternalError</Code><Message>We encountered an "
                                   "internal error. Please try again.</Message></Error>";
        size_t n = 8192;
        char *doc = malloc(n + sizeof tail + 64);
        int h = sprintf(doc, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        memset(doc + h, ' ', n);
        memcpy(doc + h + n, tail, sizeof tail);
        struct s3_xml x = {0};
        assert_int_equal(feed_str(&x, doc, 100), 0);
        assert_string_equal(s3_xml_root(&x), "Error");
        char code[64];
        assert_int_equal(s3_xml_child(&x, "Code", code, sizeof code), 0);
        assert_string_equal(code, "InternalError");
        s3_xml_reset(&x);
        /* The whitespace may also come before the declaration. */
        memset(doc, ' ', n);
        int t = sprintf(doc + n, "<?xml version=\"1.0\"?>%s", tail);
        assert_int_equal(feed(&x, doc, n + (size_t)t, 1000), 0);
        assert_string_equal(s3_xml_root(&x), "Error");
        s3_xml_reset(&x);
        free(doc);
}

static void test_complete_result(void **state)
{
        struct s3_xml x = {0};
        assert_int_equal(
            feed_str(&x,
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n     \n"
                     "<CompleteMultipartUploadResult "
                     "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>l</Location>"
                     "<Bucket>b</Bucket><Key>k</Key><ETag>\"e-3\"</ETag>"
                     "</CompleteMultipartUploadResult>",
                     7),
            0);
        assert_string_equal(s3_xml_root(&x), "CompleteMultipartUploadResult");
        s3_xml_reset(&x);
}

/* A 200 that says nothing, a cut answer, or something else: never a success. */
static void test_answers_not_documents(void **state)
{
        struct s3_xml x = {0};
        assert_int_equal(feed_str(&x, "", 1), -ENODATA);
        assert_string_equal(s3_xml_root(&x), "");
        s3_xml_reset(&x);
        assert_int_equal(feed_str(&x, " \r\n\t  ", 2), -ENODATA);
        s3_xml_reset(&x);
        assert_int_equal(
            feed_str(&x, "<?xml version=\"1.0\"?><CompleteMultipartUploadResult><Bu", 5), -EBADMSG);
        assert_string_equal(s3_xml_root(&x), "");
        s3_xml_reset(&x);
        assert_int_equal(feed_str(&x, "<html><body>Bad gateway</p></body></html>", 9), -EBADMSG);
        s3_xml_reset(&x);
        /* A DTD could declare entities (billion laughs, external files): refused. */
        assert_int_equal(feed_str(&x,
                                  "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaa\">]>"
                                  "<InitiateMultipartUploadResult><UploadId>&a;</UploadId>"
                                  "</InitiateMultipartUploadResult>",
                                  64),
                         -EBADMSG);
        s3_xml_reset(&x);
}

static void test_xml_bounded(void **state)
{
        struct s3_xml x = {0};
        char *doc = malloc(S3_XML_MAX + 64);
        memcpy(doc, "<Error><Message>", 16);
        memset(doc + 16, 'a', S3_XML_MAX);
        assert_int_equal(feed(&x, doc, S3_XML_MAX + 16, 65536), -EMSGSIZE);
        s3_xml_reset(&x);
        free(doc);
}

static void test_initiate_upload_id(void **state)
{
        struct s3_xml x = {0};
        assert_int_equal(feed_str(&x,
                                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                                  "<InitiateMultipartUploadResult "
                                  "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                                  "<Bucket>b</Bucket><Key>k</Key><UploadId>VXBs&amp;b2Fk</UploadId>"
                                  "</InitiateMultipartUploadResult>",
                                  13),
                         0);
        assert_string_equal(s3_xml_root(&x), "InitiateMultipartUploadResult");
        char id[64];
        assert_int_equal(s3_xml_child(&x, "UploadId", id, sizeof id), 0);
        assert_string_equal(id, "VXBs&b2Fk");
        assert_int_equal(s3_xml_child(&x, "Nope", id, sizeof id), -ENOENT);
        s3_xml_reset(&x);
}

struct seen {
        unsigned n;
        char keys[8][64], ids[8][64];
};

static int collect(void *ctx, const char *key, const char *id)
{
        struct seen *s = ctx;
        snprintf(s->keys[s->n], sizeof s->keys[0], "%s", key);
        snprintf(s->ids[s->n], sizeof s->ids[0], "%s", id);
        s->n++;
        return 0;
}

static void test_list_uploads_url_encoded(void **state)
{
        struct s3_xml x = {0};
        assert_int_equal(
            feed_str(
                &x,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                "<Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>"
                "<NextKeyMarker>books%2FC+D.tar.gz</NextKeyMarker>"
                "<NextUploadIdMarker>id-2</NextUploadIdMarker><EncodingType>url</EncodingType>"
                "<MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>"
                "<Upload><Key>books%2FA+B.tar.gz</Key><UploadId>id-1</UploadId>"
                "<Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass>"
                "</Upload>"
                "<Upload><Key>books%2FC%2BD.tar.gz</Key><UploadId>id-2</UploadId></Upload>"
                "<Upload><Key>no-id.tar.gz</Key></Upload>"
                "</ListMultipartUploadsResult>",
                31),
            0);
        assert_string_equal(s3_xml_root(&x), "ListMultipartUploadsResult");
        struct seen s = {0};
        assert_int_equal(s3_xml_uploads(&x, collect, &s), 0);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.keys[0], "books/A B.tar.gz");
        assert_string_equal(s.ids[0], "id-1");
        assert_string_equal(s.keys[1], "books/C+D.tar.gz");
        char t[16], k[64], u[64];
        assert_int_equal(s3_xml_child(&x, "IsTruncated", t, sizeof t), 0);
        assert_string_equal(t, "true");
        assert_int_equal(s3_xml_next_key_marker(&x, k, sizeof k), 0);
        assert_string_equal(k, "books/C D.tar.gz");
        assert_int_equal(s3_xml_child(&x, "NextUploadIdMarker", u, sizeof u), 0);
        assert_string_equal(u, "id-2");
        s3_xml_reset(&x);
}

/* A server that ignores encoding-type sends keys as they are: nothing to undo. */
static void test_list_uploads_plain(void **state)
{
        struct s3_xml x = {0};
        assert_int_equal(feed_str(&x,
                                  "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
                                  "<Upload><Key>books/a+b%41.tar.gz</Key><UploadId>u</UploadId>"
                                  "</Upload></ListMultipartUploadsResult>",
                                  1 << 20),
                         0);
        struct seen s = {0};
        assert_int_equal(s3_xml_uploads(&x, collect, &s), 0);
        assert_int_equal(s.n, 1);
        assert_string_equal(s.keys[0], "books/a+b%41.tar.gz");
        s3_xml_reset(&x);
}

/* ListObjectsV2 (quire extract's listing): keys decoded, sizes read, common prefixes and
 * a Contents without a Key passed over, the continuation token taken as it is. */
struct objects {
        unsigned n;
        char keys[8][64];
        uint64_t sizes[8];
};

static int collect_object(void *ctx, const char *key, uint64_t size)
{
        struct objects *o = ctx;
        snprintf(o->keys[o->n], sizeof o->keys[0], "%s", key);
        o->sizes[o->n++] = size;
        return o->n == 3 ? 7 : 0; /* the third stops the walk */
}

static void test_list_objects(void **state)
{
        struct s3_xml x = {0};
        assert_int_equal(
            feed_str(&x,
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                     "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                     "<Name>b</Name><Prefix>books%2F</Prefix><KeyCount>3</KeyCount>"
                     "<MaxKeys>1000</MaxKeys><Delimiter>%2F</Delimiter>"
                     "<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
                     "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
                     "</NextContinuationToken>"
                     "<Contents><Key>books%2FA+B.tar.gz</Key><Size>1234</Size><ETag>&quot;e&quot;"
                     "</ETag></Contents>"
                     "<CommonPrefixes><Prefix>books%2Fsub%2F</Prefix></CommonPrefixes>"
                     "<Contents><Size>5</Size></Contents>"
                     "<Contents><Key>books%2FC%2BD.tar.gz</Key></Contents>"
                     "<Contents><Key>books%2FE.tar.gz</Key><Size>12x</Size></Contents>"
                     "<Contents><Key>books%2FF.tar.gz</Key><Size>1</Size></Contents>"
                     "</ListBucketResult>",
                     17),
            0);
        assert_string_equal(s3_xml_root(&x), "ListBucketResult");
        struct objects o = {0};
        assert_int_equal(s3_xml_objects(&x, collect_object, &o), 7);
        assert_int_equal(o.n, 3);
        assert_string_equal(o.keys[0], "books/A B.tar.gz");
        assert_int_equal(o.sizes[0], 1234);
        assert_string_equal(o.keys[1], "books/C+D.tar.gz");
        assert_true(o.sizes[1] == UINT64_MAX);
        assert_string_equal(o.keys[2], "books/E.tar.gz");
        assert_true(o.sizes[2] == UINT64_MAX);
        char tok[128];
        assert_int_equal(s3_xml_child(&x, "NextContinuationToken", tok, sizeof tok), 0);
        assert_string_equal(tok, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
        s3_xml_reset(&x);
}

/* A lying listing's sizes: a negative one (strtoull would wrap "-5" to 2^64 - 5), one
 * with a sign or blanks, one past 64 bits: all unreadable, UINT64_MAX. */
static int collect_all(void *ctx, const char *key, uint64_t size)
{
        struct objects *o = ctx;
        o->sizes[o->n++] = size;
        return 0;
}

static void test_list_objects_bad_sizes(void **state)
{
        struct s3_xml x = {0};
        assert_int_equal(feed_str(&x,
                                  "<ListBucketResult>"
                                  "<Contents><Key>a</Key><Size>-5</Size></Contents>"
                                  "<Contents><Key>b</Key><Size>+5</Size></Contents>"
                                  "<Contents><Key>c</Key><Size> 5</Size></Contents>"
                                  "<Contents><Key>d</Key><Size>99999999999999999999999</Size>"
                                  "</Contents>"
                                  "<Contents><Key>e</Key><Size>0</Size></Contents>"
                                  "</ListBucketResult>",
                                  64),
                         0);
        struct objects o = {0};
        assert_int_equal(s3_xml_objects(&x, collect_all, &o), 0);
        assert_int_equal(o.n, 5);
        for (unsigned i = 0; i < 4; i++)
                if (o.sizes[i] != UINT64_MAX)
                        fail_msg("object %u: size %llu, not UINT64_MAX", i,
                                 (unsigned long long)o.sizes[i]);
        assert_int_equal(o.sizes[4], 0);
        s3_xml_reset(&x);
}

static void test_complete_document_escaped(void **state)
{
        char etags[2][HTTP_ETAG_MAX] = {"abc", "x&<y>"};
        uint8_t sha[2][32] = {{0}, {1}};
        struct s3_doc d = {0};
        assert_int_equal(
            s3_doc_complete(&d, 2, (const char(*)[HTTP_ETAG_MAX])etags, (const uint8_t(*)[32])sha),
            0);
        size_t len;
        const char *body = s3_doc_data(&d, &len);
        assert_int_equal(strlen(body), len);
        assert_non_null(strstr(body, "<Part><PartNumber>1</PartNumber><ETag>&quot;abc&quot;</ETag>"
                                     "<ChecksumSHA256>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
                                     "</ChecksumSHA256></Part>"));
        assert_non_null(
            strstr(body, "<PartNumber>2</PartNumber><ETag>&quot;x&amp;&lt;y&gt;&quot;</ETag>"));
        /* And it reads back as one document. */
        struct s3_xml x = {0};
        assert_int_equal(feed(&x, body, len, 17), 0);
        assert_string_equal(s3_xml_root(&x), "CompleteMultipartUpload");
        s3_xml_reset(&x);
        s3_doc_free(&d);
}

/* ---- metadata and sizes -------------------------------------------------------------- */

static int meta1(const char *name, const char *value, char *why)
{
        struct delivery_meta m = {name, value};
        return s3_meta_check(&m, 1, why, 256);
}

static void test_meta_header_safe(void **state)
{
        char why[256] = "";
        assert_int_equal(meta1("encrypted_etag", "\"abc-1\"", why), 0);
        assert_int_equal(meta1("plaintext-sha256", "", why), 0);
        assert_int_equal(meta1("barcode", "X\r\nx-amz-acl: public-read", why), -EINVAL);
        assert_non_null(strstr(why, "0x0d"));
        assert_int_equal(meta1("barcode", "a\nb", why), -EINVAL);
        assert_non_null(strstr(why, "0x0a"));
        assert_int_equal(meta1("original_filename", "caf\xc3\xa9.tar.gz.gpg", why), -EINVAL);
        assert_non_null(strstr(why, "0xc3"));
        assert_int_equal(meta1("barcode", "tab\there", why), -EINVAL);
        assert_int_equal(meta1("barcode", " lead", why), -EINVAL);
        assert_int_equal(meta1("Barcode", "x", why), -EINVAL);
        assert_int_equal(meta1("bar code", "x", why), -EINVAL);
        assert_int_equal(meta1("", "x", why), -EINVAL);
}

static void test_meta_2kb(void **state)
{
        char why[256], big[2048];
        /* name (7) + value: exactly 2048 passes, 2049 does not; an empty value is not sent
         * and does not count. */
        memset(big, 'v', sizeof big);
        big[2048 - 7] = 0;
        struct delivery_meta m[2] = {{"barcode", big}, {"x", ""}};
        assert_int_equal(s3_meta_check(m, 2, why, sizeof why), 0);
        big[2048 - 7] = 'v';
        big[2048 - 6] = 0;
        assert_int_equal(s3_meta_check(m, 2, why, sizeof why), -EINVAL);
        assert_non_null(strstr(why, "2049 bytes"));
        assert_non_null(strstr(why, "2 KB"));
}

static void test_max_size(void **state)
{
        assert_int_equal(s3_max_size(5ull << 20), 10000ull * (5ull << 20));
        assert_int_equal(s3_max_size(64ull << 20), 10000ull * (64ull << 20));
        assert_int_equal(s3_max_size(5ull << 30), 5ull << 40);
        assert_int_equal(s3_max_size(1ull << 30), 5ull << 40);
}

/* ---- sink_s3_open ---------------------------------------------------------------------- */

static void set_credentials(void)
{
        setenv("AWS_ACCESS_KEY_ID", "KEY", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "SECRET", 1);
        unsetenv("AWS_SESSION_TOKEN");
        unsetenv("AWS_REGION");
        unsetenv("AWS_DEFAULT_REGION");
}

/* Issue 14.10: --part-size is bounded by S3's 5 MiB..5 GiB, found before any request (the
 * endpoint is a port nothing listens on; reaching for it would be another message). */
static void test_open_part_size_bounds(void **state)
{
        set_credentials();
        static const uint64_t bad[] = {(5ull << 20) - 1, (5ull << 30) + 1, 1ull << 40};
        for (unsigned i = 0; i < 3; i++) {
                struct sink *s = NULL;
                char msg[512] = "";
                struct sink_config cfg = {.dest = "s3://books/x",
                                          .s3_endpoint = "http://127.0.0.1:1",
                                          .part_size = bad[i]};
                assert_int_equal(sink_s3_open(&s, &cfg, msg, sizeof msg), -EINVAL);
                assert_null(s);
                assert_non_null(strstr(msg, "--part-size"));
                assert_non_null(strstr(msg, "5GiB"));
        }
}

static void test_open_dot_segment(void **state)
{
        set_credentials();
        struct sink *s = NULL;
        char msg[512] = "";
        struct sink_config cfg = {.dest = "s3://raw/a/../b", .s3_endpoint = "http://127.0.0.1:1"};
        assert_int_equal(sink_s3_open(&s, &cfg, msg, sizeof msg), -EINVAL);
        assert_non_null(strstr(msg, "s3://raw/a/../b"));
        assert_null(strstr(msg, "cannot reach"));
}

static void test_open_no_credentials(void **state)
{
        unsetenv("AWS_ACCESS_KEY_ID");
        struct sink *s = NULL;
        char msg[512] = "";
        struct sink_config cfg = {.dest = "s3://books", .s3_endpoint = "http://127.0.0.1:1"};
        assert_int_equal(sink_s3_open(&s, &cfg, msg, sizeof msg), -EINVAL);
        assert_non_null(strstr(msg, "AWS_ACCESS_KEY_ID"));
}

static unsigned asked;
static bool interrupted_soon(void)
{
        return ++asked > 3;
}

/* Issue 9: a start-up request to an endpoint that accepts and never answers (a listener
 * nobody accepts on: the kernel completes the handshake) ends at once with -EINTR when
 * the user asks, not after its timeout. */
static void test_open_interrupted(void **state)
{
        set_credentials();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(fd, 8), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
        char ep[64], msg[512] = "";
        snprintf(ep, sizeof ep, "http://127.0.0.1:%u", ntohs(a.sin_port));
        struct sink *s = NULL;
        struct sink_config cfg = {
            .dest = "s3://books/x", .s3_endpoint = ep, .interrupted = interrupted_soon};
        asked = 0;
        assert_int_equal(sink_s3_open(&s, &cfg, msg, sizeof msg), -EINTR);
        assert_null(s);
        assert_true(asked > 3);
        assert_non_null(strstr(msg, "interrupted"));
        assert_non_null(strstr(msg, "--dest s3://books/x"));
        close(fd);
}

/* The S3 source (quire extract s3://...) checks at open like the sink, and says which
 * source it is. */
static void test_source_open_interrupted(void **state)
{
        set_credentials();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(fd, 8), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
        char ep[64], msg[512] = "";
        snprintf(ep, sizeof ep, "http://127.0.0.1:%u", ntohs(a.sin_port));
        struct source *s = NULL;
        struct source_s3_config cfg = {
            .url = "s3://books/x", .endpoint = ep, .interrupted = interrupted_soon};
        asked = 0;
        assert_int_equal(source_s3_open(&s, &cfg, msg, sizeof msg), -EINTR);
        assert_null(s);
        assert_true(asked > 3);
        assert_string_equal(msg, "source s3://books/x: interrupted");
        close(fd);
}

static void test_source_open_refused(void **state)
{
        struct source *s = NULL;
        char msg[512] = "";
        struct source_s3_config cfg = {.url = "s3://books/a/../b",
                                       .endpoint = "http://127.0.0.1:1"};
        set_credentials();
        assert_int_equal(source_s3_open(&s, &cfg, msg, sizeof msg), -EINVAL);
        assert_non_null(strstr(msg, "source s3://books/a/../b: a \".\" or \"..\" segment"));
        unsetenv("AWS_ACCESS_KEY_ID");
        cfg.url = "s3://books";
        assert_int_equal(source_s3_open(&s, &cfg, msg, sizeof msg), -EINVAL);
        assert_non_null(strstr(msg, "source s3://books: no S3 credentials"));
        assert_null(s);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_dest_prefix_trimmed),
            cmocka_unit_test(test_dest_dot_segments_refused),
            cmocka_unit_test(test_dest_bucket_rules),
            cmocka_unit_test(test_escape_path),
            cmocka_unit_test(test_query_sorted_and_encoded),
            cmocka_unit_test(test_endpoints),
            cmocka_unit_test(test_keys_ours),
            cmocka_unit_test(test_complete_error_after_whitespace),
            cmocka_unit_test(test_complete_result),
            cmocka_unit_test(test_answers_not_documents),
            cmocka_unit_test(test_xml_bounded),
            cmocka_unit_test(test_initiate_upload_id),
            cmocka_unit_test(test_list_uploads_url_encoded),
            cmocka_unit_test(test_list_uploads_plain),
            cmocka_unit_test(test_list_objects),
            cmocka_unit_test(test_list_objects_bad_sizes),
            cmocka_unit_test(test_complete_document_escaped),
            cmocka_unit_test(test_meta_header_safe),
            cmocka_unit_test(test_meta_2kb),
            cmocka_unit_test(test_max_size),
            cmocka_unit_test(test_open_part_size_bounds),
            cmocka_unit_test(test_open_dot_segment),
            cmocka_unit_test(test_open_no_credentials),
            cmocka_unit_test(test_open_interrupted),
            cmocka_unit_test(test_source_open_interrupted),
            cmocka_unit_test(test_source_open_refused),
        };
        int failed = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return failed;
}
