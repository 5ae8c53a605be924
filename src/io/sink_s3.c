/* Destination: an S3-compatible bucket (AWS, MinIO, R2, s3rver), `--dest s3://BUCKET[/PREFIX]`.
 *
 * A book becomes the object PREFIX/{barcode}.tar.gz, whole or not at all: up to --part-size
 * it goes in one PUT; larger, by a multipart upload whose parts (a few per book at once)
 * stream from the staging file through the worker's loop, and which is aborted on any
 * failure, so no partial object ever appears. Requests are signed by libcurl's SigV4.
 *
 * Integrity: the plaintext's SHA-256 (and each part's) was computed inline while the book
 * was decrypted. The same digest serves twice: as x-amz-content-sha256, so the signature
 * covers the very bytes and S3 refuses a body that does not hash to it, and as
 * x-amz-checksum-sha256, stored with the object.
 *
 * Ownership: quire assumes it is the only writer of its prefix. At start it aborts every
 * unfinished multipart upload under PREFIX/ whose key looks like one of its own
 * (PREFIX/NAME.tar.gz): those are uploads a killed run left. Run two quire processes on
 * the same prefix and one will abort the other's uploads.
 *
 * libcurl 7.88's SigV4 signs the query string as sent and computes no payload hash for
 * streamed bodies, so every URL carries its query sorted with "name=value" pairs, and every
 * request carries its own x-amz-content-sha256. */
#include "quire/engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "quire/base/util.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

#define S3_PARALLEL      4            /* parts of one book in flight at once */
#define S3_BUF_SIZE      (256 * 1024) /* one staging read; two per transfer */
#define S3_RESP_MAX      4096         /* answer body kept: error codes, upload ids */
#define S3_LIST_MAX      (256 * 1024) /* one page of ListMultipartUploads (start only) */
#define S3_ETAG_MAX      128
#define S3_URL_MAX       4096
#define S3_EMPTY_SHA     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_CTYPE         "Content-Type: application/gzip"
#define S3_SYNC_TIMEOUT  30L /* seconds, for the checks at start */
#define S3_ABORT_TIMEOUT 30L /* AbortMultipartUpload after a failure */
#define S3_QUIT_TIMEOUT  5L  /* AbortMultipartUpload on a second Ctrl-C */

struct s3 {
        char *bucket, *prefix; /* prefix without leading or trailing '/'; may be "" */
        char *obj_base;        /* URL an encoded key is appended to, after a '/' */
        char *bucket_url;      /* URL of bucket-level requests (a query follows) */
        char *sigv4;           /* "aws:amz:REGION:s3" */
        char *userpwd;         /* key:secret, for libcurl only: never printed */
        char *token_hdr;       /* "x-amz-security-token: ..." or NULL */
        const struct run_config *cfg;
        pthread_mutex_t lock;
        struct s3_book *books; /* every book slot's state, freed at close */
};

struct s3_req;

/* One staging read in flight or ready to be sent. */
struct s3_rbuf {
        struct loop_op op;
        struct s3_req *req;
        uint8_t *data;
        uint64_t file_off;
        size_t want, fill, pos;
        bool ready;
};

/* One HTTP request and, for PUT and UploadPart, its body streamed from the staging file
 * by two alternating buffers: curl sends one while the loop reads the next. */
struct s3_req {
        struct xfer x;
        struct s3_book *sb;
        struct curl_slist *hdrs;
        bool hdr_oom;
        char errbuf[CURL_ERROR_SIZE];
        long status;
        char etag[S3_ETAG_MAX];      /* ETag of the answer (a part's) */
        char meta_etag[S3_ETAG_MAX]; /* x-amz-meta-encrypted-etag of a HEAD answer */
        bool has_meta_etag;
        char *resp;
        size_t resp_len, resp_cap;
        /* body */
        uint64_t off, len;  /* range of the staging file */
        uint64_t next, fed; /* next offset to read, bytes handed to curl (both relative) */
        struct s3_rbuf buf[2];
        unsigned cur, reads_pending;
        int read_error;
        bool paused, active, rewinding;
        uint64_t rewind_to;
        unsigned part; /* 1-based part number; 0 for a single PUT */
};

enum s3_phase { S3_IDLE, S3_HEAD, S3_PUT, S3_CREATE, S3_PARTS, S3_COMPLETE, S3_ABORTING };

/* A book slot's S3 state, allocated on its first use and reused for every book after. */
struct s3_book {
        struct book *b;
        struct s3 *s3;
        struct s3_book *next;
        enum s3_phase phase;
        int fd; /* the staging file, read-only */
        char key[1024];
        char url[S3_URL_MAX]; /* the object's URL, without query */
        char meta_acquired[21];
        char upload_id[1024];
        struct s3_req ctl; /* HEAD, CreateMultipartUpload, Complete..., Abort... */
        struct s3_req parts[S3_PARALLEL];
        unsigned nparts, next_part, parts_done;
        char (*etags)[S3_ETAG_MAX];
        unsigned etags_cap;
        char *xml;
        size_t xml_cap;
        /* the first failure; what book_delivered() hears once the upload is aborted */
        bool failing, fail_transient;
        char detail[512];
};

/* ---- small helpers ----------------------------------------------------------------- */

/* RFC 3986 percent-encoding, as SigV4's canonical form has it: unreserved bytes stay,
 * '/' too when keep_slash (object keys). */
static int uri_encode(const char *in, bool keep_slash, char *out, size_t outlen)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
                bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                             (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
                             *p == '~' || (keep_slash && *p == '/');
                if (n + (plain ? 1 : 3) >= outlen)
                        return -ENAMETOOLONG;
                if (plain) {
                        out[n++] = (char)*p;
                } else {
                        out[n++] = '%';
                        out[n++] = hex[*p >> 4];
                        out[n++] = hex[*p & 15];
                }
        }
        out[n] = 0;
        return 0;
}

/* The text of the first <tag>...</tag> at or after from, XML entities resolved; NULL when
 * absent. *end (if given) points after the closing tag. */
static const char *xml_text(const char *from, const char *tag, char *out, size_t outlen,
                            const char **end)
{
        char open[64], close_[64];
        snprintf(open, sizeof open, "<%s>", tag);
        snprintf(close_, sizeof close_, "</%s>", tag);
        const char *p = strstr(from, open);
        const char *q = p ? strstr(p, close_) : NULL;
        if (!q)
                return NULL;
        p += strlen(open);
        static const struct {
                const char *ent;
                char c;
        } ents[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        size_t n = 0;
        while (p < q && n + 1 < outlen) {
                char c = *p++;
                if (c == '&')
                        for (size_t i = 0; i < sizeof ents / sizeof ents[0]; i++) {
                                size_t l = strlen(ents[i].ent);
                                if (!strncmp(p - 1, ents[i].ent, l)) {
                                        c = ents[i].c;
                                        p += l - 1;
                                        break;
                                }
                        }
                out[n++] = c;
        }
        out[n] = 0;
        if (end)
                *end = q + strlen(close_);
        return out;
}

/* snprintf for URLs: -ENAMETOOLONG rather than a truncated URL. */
static int fmt_url(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fmt_url(char *out, size_t len, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(out, len, fmt, ap);
        va_end(ap);
        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static void b64_digest(const uint8_t d[32], char out[45])
{
        EVP_EncodeBlock((unsigned char *)out, d, 32);
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        return n < 0 ? NULL : s;
}

/* ---- one request: setup, answer, verdict -------------------------------------------- */

static void hdr_raw(struct s3_req *q, const char *line)
{
        struct curl_slist *l = curl_slist_append(q->hdrs, line);
        if (l)
                q->hdrs = l;
        else
                q->hdr_oom = true;
}

static void hdr_add(struct s3_req *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hdr_add(struct s3_req *q, const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        hdr_raw(q, line);
}

/* Status of each answer (a 100 Continue comes first), a part's ETag, and the stored
 * encrypted-etag of a HEAD. */
static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
        struct s3_req *q = ud;
        size_t len = size * nitems;
        char *val = NULL, *end = line + len;
        if (len > 5 && !strncmp(line, "HTTP/", 5)) {
                const char *sp = memchr(line, ' ', len);
                q->status = sp ? strtol(sp + 1, NULL, 10) : 0;
                q->etag[0] = 0;
                q->has_meta_etag = false;
                return len;
        }
        char *dst = NULL;
        if (len > 5 && !strncasecmp(line, "ETag:", 5)) {
                val = line + 5;
                dst = q->etag;
        } else if (len > 26 && !strncasecmp(line, "x-amz-meta-encrypted-etag:", 26)) {
                val = line + 26;
                dst = q->meta_etag;
                q->has_meta_etag = true;
        }
        if (!dst)
                return len;
        while (val < end && (*val == ' ' || *val == '\t'))
                val++;
        while (end > val && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        size_t n = (size_t)(end - val) < S3_ETAG_MAX - 1 ? (size_t)(end - val) : S3_ETAG_MAX - 1;
        memcpy(dst, val, n);
        dst[n] = 0;
        return len;
}

/* Keeps the start of the answer's body (XML): an error's code and message, an upload id.
 * The rest is dropped, never an error: the status decides. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
        struct s3_req *q = ud;
        size_t len = size * nmemb;
        size_t room = q->resp_cap - 1 - q->resp_len;
        size_t n = len < room ? len : room;
        memcpy(q->resp + q->resp_len, p, n);
        q->resp_len += n;
        q->resp[q->resp_len] = 0;
        return len;
}

/* Resets the easy handle for method on url with what every request has: signing, the
 * payload hash, the session token, timeouts, the CA. */
static void req_setup(struct s3 *s3, struct s3_req *q, const char *method, const char *url,
                      const char *payload_sha)
{
        const struct run_config *cfg = s3->cfg;
        CURL *e = q->x.easy;
        curl_easy_reset(e);
        q->status = 0;
        q->errbuf[0] = 0;
        q->etag[0] = 0;
        q->has_meta_etag = false;
        q->resp_len = 0;
        q->resp[0] = 0;
        q->part = 0;
        curl_slist_free_all(q->hdrs);
        q->hdrs = NULL;
        q->hdr_oom = false;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_USERAGENT, "quire/" QUIRE_VERSION);
        curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s3->sigv4);
        curl_easy_setopt(e, CURLOPT_USERPWD, s3->userpwd);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        /* A stall: no byte either way for --stall-timeout seconds. */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                         (long)(cfg->stall_timeout_s ? cfg->stall_timeout_s : 60));
        if (cfg->ca_file) {
                curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
                curl_easy_setopt(e, CURLOPT_CAPATH, "/etc/ssl/certs");
        }
        if (!strcmp(method, "HEAD"))
                curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else if (!strcmp(method, "DELETE"))
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
        hdr_add(q, "x-amz-content-sha256: %s", payload_sha);
        if (s3->token_hdr)
                hdr_raw(q, s3->token_hdr);
}

/* A POST whose small body (possibly empty) is in memory. */
static void req_post(struct s3_req *q, const char *body, size_t len)
{
        curl_easy_setopt(q->x.easy, CURLOPT_POST, 1L);
        curl_easy_setopt(q->x.easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(q->x.easy, CURLOPT_POSTFIELDS, body);
}

/* The verdict on a finished request: 0, or -EIO with why ("HTTP 403 AccessDenied: ...",
 * a network error) and whether a retry may help (network faults, 5xx, SlowDown,
 * timeouts). */
static int req_why(struct s3_req *q, CURLcode rc, char *why, size_t len, bool *transient)
{
        *transient = false;
        if (q->hdr_oom) {
                snprintf(why, len, "out of memory");
                *transient = true;
                return -EIO;
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK && q->read_error) {
                snprintf(why, len, "reading the staging file: %s", strerror(-q->read_error));
                *transient = true;
                return -EIO;
        }
        if (rc != CURLE_OK) {
                snprintf(why, len, "%s", q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
                *transient = true;
                return -EIO;
        }
        /* CompleteMultipartUpload may answer 200 and still fail, in its body. */
        bool body_error = strstr(q->resp, "<Error>") != NULL;
        if (q->status >= 200 && q->status < 300 && !body_error)
                return 0;
        char code[64] = "", msg[256] = "";
        xml_text(q->resp, "Code", code, sizeof code, NULL);
        xml_text(q->resp, "Message", msg, sizeof msg, NULL);
        snprintf(why, len, "HTTP %ld%s%s%s%s", q->status, code[0] ? " " : "", code,
                 msg[0] ? ": " : "", msg);
        *transient = q->status >= 500 || q->status == 429 || q->status == 408 ||
                     !strcmp(code, "SlowDown") || !strcmp(code, "RequestTimeout") ||
                     !strcmp(code, "InternalError") || !strcmp(code, "OperationAborted");
        return -EIO;
}

/* req_why() for a book's request: detail is "s3 OP KEY: why". */
static int req_verdict(struct s3_req *q, CURLcode rc, const char *op, const char *key, char *detail,
                       size_t dlen, bool *transient)
{
        char why[400];
        if (req_why(q, rc, why, sizeof why, transient) == 0)
                return 0;
        snprintf(detail, dlen, "s3 %s %.200s: %.250s", op, key, why);
        return -EIO;
}

/* ---- request bodies from the staging file ------------------------------------------ */

static void rbuf_fill(struct s3_book *sb, struct s3_req *q, struct s3_rbuf *rb)
{
        rb->ready = false;
        rb->fill = rb->pos = 0;
        if (q->next >= q->len)
                return;
        rb->want = q->len - q->next < S3_BUF_SIZE ? (size_t)(q->len - q->next) : S3_BUF_SIZE;
        rb->file_off = q->off + q->next;
        q->next += rb->want;
        q->reads_pending++;
        loop_read(sb->b->w->loop, &rb->op, sb->fd, rb->data, rb->want, rb->file_off);
}

/* Starts reading the body from rel bytes into it. */
static void body_restart(struct s3_book *sb, struct s3_req *q, uint64_t rel)
{
        q->next = q->fed = rel;
        q->cur = 0;
        q->rewinding = false;
        rbuf_fill(sb, q, &q->buf[0]);
        rbuf_fill(sb, q, &q->buf[1]);
}

static void sb_progress(struct s3_book *sb);
static void abort_begin(struct s3_book *sb);

static bool req_busy(const struct s3_req *q)
{
        return q->active || q->reads_pending;
}

static void on_rbuf_read(struct loop_op *op, int res)
{
        struct s3_rbuf *rb = container_of(op, struct s3_rbuf, op);
        struct s3_req *q = rb->req;
        struct s3_book *sb = q->sb;
        q->reads_pending--;
        if (!q->active) {
                /* The transfer ended (failed) while this read was in flight. */
                if (!q->reads_pending)
                        sb_progress(sb);
                return;
        }
        if (res <= 0) {
                /* 0: the staging file is shorter than the book it held. */
                if (!q->read_error)
                        q->read_error = res < 0 ? res : -EIO;
        } else if (!q->rewinding) {
                rb->fill += (size_t)res;
                if (rb->fill < rb->want) {
                        q->reads_pending++;
                        loop_read(sb->b->w->loop, &rb->op, sb->fd, rb->data + rb->fill,
                                  rb->want - rb->fill, rb->file_off + rb->fill);
                        return;
                }
                rb->ready = true;
        }
        if (q->rewinding && !q->reads_pending && !q->read_error)
                body_restart(sb, q, q->rewind_to);
        if (q->paused && (q->read_error || q->buf[q->cur].ready)) {
                q->paused = false;
                curl_easy_pause(q->x.easy, CURLPAUSE_CONT);
        }
}

/* libcurl asks for body bytes: what the current buffer holds, or a pause until the loop
 * has read it (the read's completion resumes the transfer). */
static size_t on_body_read(char *dst, size_t size, size_t nitems, void *ud)
{
        struct s3_req *q = ud;
        size_t room = size * nitems;
        if (q->read_error)
                return CURL_READFUNC_ABORT;
        struct s3_rbuf *rb = &q->buf[q->cur];
        if (q->rewinding || !rb->ready) {
                if (!q->rewinding && q->fed == q->len)
                        return 0;
                q->paused = true;
                return CURL_READFUNC_PAUSE;
        }
        size_t n = rb->fill - rb->pos < room ? rb->fill - rb->pos : room;
        memcpy(dst, rb->data + rb->pos, n);
        rb->pos += n;
        q->fed += n;
        if (rb->pos == rb->fill) {
                q->cur ^= 1;
                rbuf_fill(q->sb, q, rb);
        }
        return n;
}

/* libcurl resends a body on a fresh connection (a reused one was dead): start over from
 * offset once the reads in flight have landed. */
static int on_body_seek(void *ud, curl_off_t offset, int origin)
{
        struct s3_req *q = ud;
        if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > q->len)
                return CURL_SEEKFUNC_CANTSEEK;
        q->rewinding = true;
        q->rewind_to = (uint64_t)offset;
        q->buf[0].ready = q->buf[1].ready = false;
        if (!q->reads_pending)
                body_restart(q->sb, q, q->rewind_to);
        return CURL_SEEKFUNC_OK;
}

static int req_buffers(struct s3_req *q)
{
        for (unsigned i = 0; i < 2; i++) {
                struct s3_rbuf *rb = &q->buf[i];
                if (!rb->data && !(rb->data = malloc(S3_BUF_SIZE)))
                        return -ENOMEM;
        }
        return 0;
}

/* A PUT whose body is bytes [off, off+len) of the staging file. */
static void req_body(struct s3_book *sb, struct s3_req *q, uint64_t off, uint64_t len)
{
        const struct run_config *cfg = sb->s3->cfg;
        CURL *e = q->x.easy;
        q->off = off;
        q->len = len;
        q->read_error = 0;
        q->paused = false;
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_body_read);
        curl_easy_setopt(e, CURLOPT_READDATA, q);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_body_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, q);
        if (cfg->max_upload_rate) {
                /* --max-upload-rate is per book: its parts in flight share it. */
                unsigned par = sb->nparts < S3_PARALLEL ? sb->nparts : S3_PARALLEL;
                curl_off_t rate = (curl_off_t)(cfg->max_upload_rate / par);
                curl_easy_setopt(e, CURLOPT_MAX_SEND_SPEED_LARGE, rate > 0 ? rate : (curl_off_t)1);
        }
        body_restart(sb, q, 0);
}

static void req_start(struct s3_book *sb, struct s3_req *q)
{
        curl_easy_setopt(q->x.easy, CURLOPT_HTTPHEADER, q->hdrs);
        /* A header lost to a failed allocation: the request must not go out unsigned or
         * unchecked; an empty URL makes it fail through the multi, where req_why() names it. */
        if (q->hdr_oom)
                curl_easy_setopt(q->x.easy, CURLOPT_URL, "");
        q->active = true;
        worker_add_xfer(sb->b->w, &q->x);
}

/* ---- a book's delivery -------------------------------------------------------------- */

static void add_meta(struct s3_book *sb, struct s3_req *q)
{
        struct book *b = sb->b;
        hdr_add(q, S3_CTYPE);
        hdr_add(q, "x-amz-meta-barcode: %s", b->item.barcode);
        /* An empty header would be dropped by libcurl yet signed: leave it out instead. */
        if (b->etag[0])
                hdr_add(q, "x-amz-meta-encrypted-etag: %s", b->etag);
        hdr_add(q, "x-amz-meta-plaintext-sha256: %s", b->sha256_hex);
        hdr_add(q, "x-amz-meta-acquired: %s", sb->meta_acquired);
}

static void sb_finish(struct s3_book *sb, int rc, bool transient, const char *detail)
{
        sb->phase = S3_IDLE;
        if (sb->fd >= 0) {
                loop_flush(sb->b->w->loop);
                close(sb->fd);
                sb->fd = -1;
        }
        book_delivered(sb->b, rc, transient, detail);
}

/* Records the first failure of this delivery; later ones are its consequences. */
static void sb_fail(struct s3_book *sb, bool transient, const char *detail)
{
        if (sb->failing)
                return;
        sb->failing = true;
        sb->fail_transient = transient;
        snprintf(sb->detail, sizeof sb->detail, "%s", detail);
}

static void on_put_done(struct xfer *x, CURLcode rc)
{
        struct s3_req *q = container_of(x, struct s3_req, x);
        struct s3_book *sb = q->sb;
        char detail[512];
        bool transient;
        q->active = false;
        if (req_verdict(q, rc, "PUT", sb->key, detail, sizeof detail, &transient) < 0)
                sb_fail(sb, transient, detail);
        if (!q->reads_pending)
                sb_progress(sb);
}

static void put_begin(struct s3_book *sb)
{
        struct book *b = sb->b;
        struct s3_req *q = &sb->parts[0];
        char b64[45];
        sb->phase = S3_PUT;
        req_setup(sb->s3, q, "PUT", sb->url, b->sha256_hex);
        b64_digest(b->sha256_raw, b64);
        hdr_add(q, "x-amz-checksum-sha256: %s", b64);
        add_meta(sb, q);
        q->x.done = on_put_done;
        req_body(sb, q, 0, b->staged);
        req_start(sb, q);
}

static void on_part_done(struct xfer *x, CURLcode rc)
{
        struct s3_req *q = container_of(x, struct s3_req, x);
        struct s3_book *sb = q->sb;
        char detail[512], op[32];
        bool transient;
        q->active = false;
        snprintf(op, sizeof op, "UploadPart %u", q->part);
        if (req_verdict(q, rc, op, sb->key, detail, sizeof detail, &transient) < 0) {
                /* The parts in flight are let finish (no new one starts): S3 may keep a
                 * part whose upload was still running when the abort arrived. */
                sb_fail(sb, transient, detail);
        } else if (!q->etag[0]) {
                snprintf(detail, sizeof detail, "s3 %s %.200s: no ETag in the answer", op, sb->key);
                sb_fail(sb, false, detail);
        } else {
                memcpy(sb->etags[q->part - 1], q->etag, S3_ETAG_MAX);
                sb->parts_done++;
        }
        sb_progress(sb);
}

static void part_begin(struct s3_book *sb, struct s3_req *q, unsigned part)
{
        struct book *b = sb->b;
        uint64_t size = sb->s3->cfg->part_size, off = (uint64_t)(part - 1) * size;
        uint64_t len = b->staged - off < size ? b->staged - off : size;
        char url[S3_URL_MAX + 1200], hex[65], b64[45], id[1024 * 3];
        if (uri_encode(sb->upload_id, false, id, sizeof id) < 0) {
                sb_fail(sb, false, "s3: upload id too long");
                return;
        }
        if (fmt_url(url, sizeof url, "%s?partNumber=%u&uploadId=%s", sb->url, part, id) < 0) {
                sb_fail(sb, false, "s3: URL too long");
                return;
        }
        hex_encode(b->part_sha256[part - 1], 32, hex);
        req_setup(sb->s3, q, "PUT", url, hex);
        q->part = part;
        b64_digest(b->part_sha256[part - 1], b64);
        hdr_add(q, "x-amz-checksum-sha256: %s", b64);
        q->x.done = on_part_done;
        req_body(sb, q, off, len);
        req_start(sb, q);
}

static void on_create_done(struct xfer *x, CURLcode rc)
{
        struct s3_req *q = container_of(x, struct s3_req, x);
        struct s3_book *sb = q->sb;
        char detail[512];
        bool transient;
        q->active = false;
        if (req_verdict(q, rc, "CreateMultipartUpload", sb->key, detail, sizeof detail,
                        &transient) < 0) {
                sb_finish(sb, -EIO, transient, detail);
                return;
        }
        if (!xml_text(q->resp, "UploadId", sb->upload_id, sizeof sb->upload_id, NULL) ||
            !sb->upload_id[0]) {
                snprintf(detail, sizeof detail, "s3 CreateMultipartUpload %.200s: no UploadId",
                         sb->key);
                sb_finish(sb, -EIO, true, detail);
                return;
        }
        sb->phase = S3_PARTS;
        sb->next_part = 1;
        sb->parts_done = 0;
        sb_progress(sb);
}

static void create_begin(struct s3_book *sb)
{
        char url[S3_URL_MAX + 16];
        struct s3_req *q = &sb->ctl;
        sb->phase = S3_CREATE;
        sb->upload_id[0] = 0;
        snprintf(url, sizeof url, "%s?uploads=", sb->url);
        req_setup(sb->s3, q, "POST", url, S3_EMPTY_SHA);
        /* The parts carry SHA-256 checksums; S3 wants the algorithm named here first. */
        hdr_add(q, "x-amz-checksum-algorithm: SHA256");
        add_meta(sb, q);
        req_post(q, "", 0);
        q->x.done = on_create_done;
        req_start(sb, q);
}

static void on_complete_done(struct xfer *x, CURLcode rc)
{
        struct s3_req *q = container_of(x, struct s3_req, x);
        struct s3_book *sb = q->sb;
        char detail[512];
        bool transient;
        q->active = false;
        if (req_verdict(q, rc, "CompleteMultipartUpload", sb->key, detail, sizeof detail,
                        &transient) < 0) {
                sb_fail(sb, transient, detail);
                sb_progress(sb); /* aborts the upload */
                return;
        }
        sb->upload_id[0] = 0;
        sb_finish(sb, 0, false, NULL);
}

/* The CompleteMultipartUpload document: every part's number, ETag and checksum. */
static int complete_xml(struct s3_book *sb, size_t *len)
{
        size_t need = 128 + (size_t)sb->nparts * (S3_ETAG_MAX + 160);
        if (need > sb->xml_cap) {
                char *p = realloc(sb->xml, need);
                if (!p)
                        return -ENOMEM;
                sb->xml = p;
                sb->xml_cap = need;
        }
        size_t n = (size_t)snprintf(sb->xml, need, "<CompleteMultipartUpload>");
        for (unsigned i = 0; i < sb->nparts; i++) {
                char b64[45];
                b64_digest(sb->b->part_sha256[i], b64);
                n += (size_t)snprintf(sb->xml + n, need - n,
                                      "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag>"
                                      "<ChecksumSHA256>%s</ChecksumSHA256></Part>",
                                      i + 1, sb->etags[i], b64);
        }
        n += (size_t)snprintf(sb->xml + n, need - n, "</CompleteMultipartUpload>");
        *len = n;
        return 0;
}

static void complete_begin(struct s3_book *sb)
{
        struct s3_req *q = &sb->ctl;
        char url[S3_URL_MAX + 1200], id[1024 * 3], hex[65];
        uint8_t sha[32];
        size_t len;
        if (complete_xml(sb, &len) < 0 || uri_encode(sb->upload_id, false, id, sizeof id) < 0) {
                sb_fail(sb, true, "s3: out of memory");
                sb_progress(sb);
                return;
        }
        sb->phase = S3_COMPLETE;
        if (fmt_url(url, sizeof url, "%s?uploadId=%s", sb->url, id) < 0) {
                sb_fail(sb, false, "s3: URL too long");
                abort_begin(sb);
                return;
        }
        EVP_Digest(sb->xml, len, sha, NULL, EVP_sha256(), NULL);
        hex_encode(sha, sizeof sha, hex);
        req_setup(sb->s3, q, "POST", url, hex);
        hdr_add(q, "Content-Type: application/xml");
        req_post(q, sb->xml, len);
        q->x.done = on_complete_done;
        req_start(sb, q);
}

/* Builds the abort of the book's upload on q; false when there is none. */
static bool abort_setup(struct s3_book *sb, struct s3_req *q)
{
        char url[S3_URL_MAX + 1200], id[1024 * 3];
        if (!sb->upload_id[0] || uri_encode(sb->upload_id, false, id, sizeof id) < 0 ||
            fmt_url(url, sizeof url, "%s?uploadId=%s", sb->url, id) < 0)
                return false;
        req_setup(sb->s3, q, "DELETE", url, S3_EMPTY_SHA);
        curl_easy_setopt(q->x.easy, CURLOPT_HTTPHEADER, q->hdrs);
        return true;
}

static void warn_abort(struct s3_book *sb, struct s3_req *q, CURLcode rc)
{
        char detail[512];
        bool transient;
        /* 404 NoSuchUpload: it is gone already, which is what we wanted. */
        if (rc == CURLE_OK && q->status == 404)
                return;
        if (req_verdict(q, rc, "AbortMultipartUpload", sb->key, detail, sizeof detail, &transient) <
            0)
                qlog("%s; the next run's start aborts it", detail);
}

static void on_abort_done(struct xfer *x, CURLcode rc)
{
        struct s3_req *q = container_of(x, struct s3_req, x);
        struct s3_book *sb = q->sb;
        q->active = false;
        warn_abort(sb, q, rc);
        sb->upload_id[0] = 0;
        sb_finish(sb, -EIO, sb->fail_transient, sb->detail);
}

/* A failed multipart upload is aborted before the book hears of the failure, so a retry
 * never races the abort of its predecessor. */
static void abort_begin(struct s3_book *sb)
{
        struct s3_req *q = &sb->ctl;
        sb->phase = S3_ABORTING;
        if (!abort_setup(sb, q)) {
                sb_finish(sb, -EIO, sb->fail_transient, sb->detail);
                return;
        }
        curl_easy_setopt(q->x.easy, CURLOPT_TIMEOUT, S3_ABORT_TIMEOUT);
        q->x.done = on_abort_done;
        req_start(sb, q);
}

/* Starts parts while there are free transfers and parts to send; completes or aborts
 * the upload once every transfer has settled. */
static void parts_pump(struct s3_book *sb)
{
        bool busy = false;
        for (unsigned i = 0; i < S3_PARALLEL; i++) {
                struct s3_req *q = &sb->parts[i];
                if (!req_busy(q) && !sb->failing && sb->next_part <= sb->nparts) {
                        if (req_buffers(q) < 0)
                                sb_fail(sb, true, "s3: out of memory");
                        else
                                part_begin(sb, q, sb->next_part++);
                }
                busy |= req_busy(q);
        }
        if (busy)
                return;
        if (sb->failing)
                abort_begin(sb);
        else if (sb->parts_done == sb->nparts)
                complete_begin(sb);
}

/* Moves the delivery on after any completion (transfer or staging read). */
static void sb_progress(struct s3_book *sb)
{
        switch (sb->phase) {
        case S3_PUT:
                if (req_busy(&sb->parts[0]))
                        return;
                if (sb->failing)
                        sb_finish(sb, -EIO, sb->fail_transient, sb->detail);
                else
                        sb_finish(sb, 0, false, NULL);
                break;
        case S3_PARTS:
                parts_pump(sb);
                break;
        case S3_COMPLETE:
                if (sb->failing)
                        abort_begin(sb);
                break;
        default:
                break;
        }
}

/* ---- per-slot state ------------------------------------------------------------------ */

static int req_init(struct s3_book *sb, struct s3_req *q, size_t resp_cap)
{
        q->sb = sb;
        q->x.easy = curl_easy_init();
        q->resp = malloc(resp_cap);
        q->resp_cap = resp_cap;
        for (unsigned i = 0; i < 2; i++) {
                q->buf[i].req = q;
                q->buf[i].op.fn = on_rbuf_read;
        }
        return q->x.easy && q->resp ? 0 : -ENOMEM;
}

static void req_free(struct s3_req *q)
{
        if (q->x.easy)
                curl_easy_cleanup(q->x.easy);
        curl_slist_free_all(q->hdrs);
        free(q->resp);
        free(q->buf[0].data);
        free(q->buf[1].data);
}

static void sb_free(struct s3_book *sb)
{
        req_free(&sb->ctl);
        for (unsigned i = 0; i < S3_PARALLEL; i++)
                req_free(&sb->parts[i]);
        free(sb->etags);
        free(sb->xml);
        free(sb);
}

/* The slot's state, made on its first use; every slot's is freed by close(). */
static struct s3_book *sb_get(struct book *b)
{
        if (b->sink_data)
                return b->sink_data;
        struct s3 *s3 = b->w->run->sink_state;
        struct s3_book *sb = calloc(1, sizeof *sb);
        if (!sb)
                return NULL;
        sb->b = b;
        sb->s3 = s3;
        sb->fd = -1;
        int err = req_init(sb, &sb->ctl, S3_RESP_MAX);
        for (unsigned i = 0; i < S3_PARALLEL && !err; i++)
                err = req_init(sb, &sb->parts[i], S3_RESP_MAX);
        if (err) {
                sb_free(sb);
                return NULL;
        }
        pthread_mutex_lock(&s3->lock);
        sb->next = s3->books;
        s3->books = sb;
        pthread_mutex_unlock(&s3->lock);
        b->sink_data = sb;
        return sb;
}

/* The object's key and URL for the book in the slot. */
static int sb_target(struct s3_book *sb)
{
        struct s3 *s3 = sb->s3;
        char enc[sizeof sb->key * 3];
        int n = snprintf(sb->key, sizeof sb->key, "%s%s%s.tar.gz", s3->prefix,
                         s3->prefix[0] ? "/" : "", sb->b->item.barcode);
        if (n < 0 || (size_t)n >= sizeof sb->key || uri_encode(sb->key, true, enc, sizeof enc) < 0)
                return -ENAMETOOLONG;
        n = snprintf(sb->url, sizeof sb->url, "%s/%s", s3->obj_base, enc);
        return n < 0 || (size_t)n >= sizeof sb->url ? -ENAMETOOLONG : 0;
}

static int sb_parts_plan(struct s3_book *sb)
{
        struct book *b = sb->b;
        uint64_t size = sb->s3->cfg->part_size;
        uint64_t n = (b->staged + size - 1) / size;
        if (n > 10000 || n != b->nparts)
                return -EINVAL;
        sb->nparts = (unsigned)n;
        if (sb->nparts > sb->etags_cap) {
                void *p = realloc(sb->etags, sb->nparts * sizeof *sb->etags);
                if (!p)
                        return -ENOMEM;
                sb->etags = p;
                sb->etags_cap = sb->nparts;
        }
        return 0;
}

static void s3_deliver(struct book *b)
{
        struct s3_book *sb = sb_get(b);
        char detail[600];
        if (!sb || req_buffers(&sb->parts[0]) < 0) {
                book_delivered(b, -ENOMEM, true, "s3: out of memory");
                return;
        }
        sb->failing = false;
        sb->upload_id[0] = 0;
        sb->nparts = 1;
        if (sb_target(sb) < 0) {
                snprintf(detail, sizeof detail, "s3: key for %s too long", b->item.barcode);
                book_delivered(b, -ENAMETOOLONG, false, detail);
                return;
        }
        uint64_t part = sb->s3->cfg->part_size;
        int err = b->staged > part ? sb_parts_plan(sb) : 0;
        if (err) {
                snprintf(detail, sizeof detail, "s3 %.200s: %s", sb->key,
                         err == -ENOMEM ? "out of memory"
                                        : "more than 10000 parts; raise --part-size");
                book_delivered(b, err, err == -ENOMEM, detail);
                return;
        }
        /* The book.c staging fd is write-only: read through a descriptor of our own. */
        sb->fd = open(b->staging_path, O_RDONLY | O_CLOEXEC);
        if (sb->fd < 0) {
                err = -errno;
                snprintf(detail, sizeof detail, "s3 %.200s: staging %.200s: %s", sb->key,
                         b->staging_path, strerror(-err));
                book_delivered(b, err, err == -EMFILE || err == -ENFILE, detail);
                return;
        }
        posix_fadvise(sb->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        utc_iso8601(sb->meta_acquired);
        if (b->staged > part)
                create_begin(sb);
        else
                put_begin(sb);
}

/* ---- lookup (skip-unchanged) -------------------------------------------------------- */

static void on_head_done(struct xfer *x, CURLcode rc)
{
        struct s3_req *q = container_of(x, struct s3_req, x);
        struct s3_book *sb = q->sb;
        char detail[512];
        bool transient;
        q->active = false;
        sb->phase = S3_IDLE;
        if (rc == CURLE_OK && q->status == 404) {
                book_lookup_done(sb->b, 0, NULL, NULL);
                return;
        }
        if (req_verdict(q, rc, "HEAD", sb->key, detail, sizeof detail, &transient) < 0) {
                book_lookup_done(sb->b, -EIO, NULL, detail);
                return;
        }
        /* Held but without our metadata (or with an empty ETag): nothing to compare. */
        book_lookup_done(sb->b, 0, q->has_meta_etag ? q->meta_etag : "", NULL);
}

static void s3_lookup(struct book *b)
{
        struct s3_book *sb = sb_get(b);
        char detail[200];
        if (!sb || sb_target(sb) < 0) {
                snprintf(detail, sizeof detail, "s3 HEAD %s: %s", b->item.barcode,
                         sb ? "key too long" : "out of memory");
                book_lookup_done(b, sb ? -ENAMETOOLONG : -ENOMEM, NULL, detail);
                return;
        }
        struct s3_req *q = &sb->ctl;
        sb->phase = S3_HEAD;
        req_setup(sb->s3, q, "HEAD", sb->url, S3_EMPTY_SHA);
        q->x.done = on_head_done;
        req_start(sb, q);
}

/* ---- abort (second Ctrl-C) --------------------------------------------------------- */

static void req_drop(struct s3_book *sb, struct s3_req *q)
{
        struct loop *l = sb->b->w->loop;
        if (q->active)
                worker_remove_xfer(sb->b->w, &q->x);
        q->active = false;
        /* The kernel may still fill the buffers; they live until close(). */
        for (unsigned i = 0; i < 2; i++)
                if (q->buf[i].op.pending)
                        loop_cancel(l, &q->buf[i].op);
        q->reads_pending = 0;
}

/* Drops the transfers in flight and aborts the upload synchronously, briefly: the run is
 * quitting, and an upload left behind is aborted by the next run's start anyway. */
static void s3_abort(struct book *b)
{
        struct s3_book *sb = b->sink_data;
        if (!sb || sb->phase == S3_IDLE)
                return;
        req_drop(sb, &sb->ctl);
        for (unsigned i = 0; i < S3_PARALLEL; i++)
                req_drop(sb, &sb->parts[i]);
        if (sb->phase != S3_HEAD && abort_setup(sb, &sb->ctl) && !sb->ctl.hdr_oom) {
                curl_easy_setopt(sb->ctl.x.easy, CURLOPT_TIMEOUT, S3_QUIT_TIMEOUT);
                warn_abort(sb, &sb->ctl, curl_easy_perform(sb->ctl.x.easy));
        }
        sb->upload_id[0] = 0;
        sb->phase = S3_IDLE;
        if (sb->fd >= 0) {
                loop_flush(b->w->loop);
                close(sb->fd);
                sb->fd = -1;
        }
}

/* ---- open: configuration, checks, leftovers ---------------------------------------- */

/* A request at start, synchronous; 0 or -EIO with msg "WHAT: why". */
static int sync_request(struct s3 *s3, struct s3_req *q, const char *method, const char *url,
                        const char *what, char *msg, size_t msglen)
{
        bool transient;
        req_setup(s3, q, method, url, S3_EMPTY_SHA);
        if (q->hdr_oom) {
                snprintf(msg, msglen, "%s: out of memory", what);
                return -ENOMEM;
        }
        curl_easy_setopt(q->x.easy, CURLOPT_HTTPHEADER, q->hdrs);
        curl_easy_setopt(q->x.easy, CURLOPT_TIMEOUT, S3_SYNC_TIMEOUT);
        CURLcode rc = curl_easy_perform(q->x.easy);
        if (rc != CURLE_OK) {
                snprintf(msg, msglen, "%s: cannot reach %s: %s", what, url,
                         q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
                return -EHOSTUNREACH;
        }
        char why[400];
        if (req_why(q, rc, why, sizeof why, &transient) == 0)
                return 0;
        snprintf(msg, msglen, "%s: %s", what, why);
        return -EIO;
}

/* Whether key looks like one of ours: PREFIX/NAME.tar.gz, NAME without '/'. */
static bool our_key(const struct s3 *s3, const char *key)
{
        size_t pl = strlen(s3->prefix);
        if (pl && (strncmp(key, s3->prefix, pl) || key[pl] != '/'))
                return false;
        const char *name = key + pl + (pl ? 1 : 0);
        size_t nl = strlen(name);
        return nl > 7 && !strchr(name, '/') && !strcmp(name + nl - 7, ".tar.gz");
}

/* Aborts one upload a killed run left; 0 or -EIO with a warning printed. */
static int abort_leftover(struct s3 *s3, struct s3_req *q, const char *key, const char *id)
{
        char ekey[1024 * 3], eid[1024 * 3], url[S3_URL_MAX + 4096], msg[600];
        if (uri_encode(key, true, ekey, sizeof ekey) < 0 ||
            uri_encode(id, false, eid, sizeof eid) < 0)
                return -EIO;
        snprintf(url, sizeof url, "%s/%s?uploadId=%s", s3->obj_base, ekey, eid);
        int err = sync_request(s3, q, "DELETE", url, "AbortMultipartUpload", msg, sizeof msg);
        if (err && q->status != 404) {
                qlog("%s (%s)", msg, key);
                return err;
        }
        return 0;
}

/* Aborts (through q) the uploads of one page of ListMultipartUploads; sets the markers of
 * the next page, or clears them when this was the last. */
static void abort_page(struct s3 *s3, struct s3_req *q, char *resp, char *kmark, char *umark,
                       size_t mlen, unsigned *aborted)
{
        char key[1024], id[1024], trunc[16] = "";
        const char *p = resp, *end;
        xml_text(resp, "IsTruncated", trunc, sizeof trunc, NULL);
        if (strcmp(trunc, "true") || !xml_text(resp, "NextKeyMarker", kmark, mlen, NULL) ||
            !xml_text(resp, "NextUploadIdMarker", umark, mlen, NULL))
                kmark[0] = umark[0] = 0;
        const char *start;
        while ((start = strstr(p, "<Upload>")) && (end = strstr(start, "</Upload>"))) {
                /* Within this <Upload> element only. */
                char elem[4096];
                size_t n = (size_t)(end - start) < sizeof elem - 1 ? (size_t)(end - start)
                                                                   : sizeof elem - 1;
                memcpy(elem, start, n);
                elem[n] = 0;
                p = end + 9;
                if (!xml_text(elem, "Key", key, sizeof key, NULL) ||
                    !xml_text(elem, "UploadId", id, sizeof id, NULL) || !our_key(s3, key))
                        continue;
                if (abort_leftover(s3, q, key, id) == 0)
                        (*aborted)++;
        }
}

/* Uploads a killed run left unfinished under our prefix would be billed forever and never
 * completed: abort them. A server without the API (s3rver) only earns a notice. */
static void abort_leftovers(struct s3 *s3, struct s3_req *q, struct s3_req *del)
{
        char eprefix[3 * 1024 + 4], kmark[1024] = "", umark[1024] = "", ek[3 * 1024], eu[3 * 1024];
        char url[S3_URL_MAX + 8192], msg[600], pfx[1030];
        unsigned aborted = 0, pages = 0;
        snprintf(pfx, sizeof pfx, "%s%s", s3->prefix, s3->prefix[0] ? "/" : "");
        uri_encode(pfx, false, eprefix, sizeof eprefix);
        do {
                if (uri_encode(kmark, false, ek, sizeof ek) < 0 ||
                    uri_encode(umark, false, eu, sizeof eu) < 0)
                        break;
                /* Parameters sorted by name: libcurl 7.88 signs the query as written. */
                if (kmark[0])
                        snprintf(url, sizeof url,
                                 "%s?key-marker=%s&max-uploads=200&prefix=%s&upload-id-marker=%s&"
                                 "uploads=",
                                 s3->bucket_url, ek, eprefix, eu);
                else
                        snprintf(url, sizeof url,
                                 "%s?max-uploads=200&prefix=%s&uploads=", s3->bucket_url, eprefix);
                if (sync_request(s3, q, "GET", url, "ListMultipartUploads", msg, sizeof msg) < 0) {
                        qlog(
                            "notice: %s; unfinished uploads a killed run left under s3://%s/%s are "
                            "not cleaned up",
                            msg, s3->bucket, pfx);
                        return;
                }
                abort_page(s3, del, q->resp, kmark, umark, sizeof kmark, &aborted);
        } while (kmark[0] && ++pages < 10000);
        if (aborted)
                qlog("aborted %u unfinished multipart upload%s under s3://%s/%s left by an earlier "
                     "run",
                     aborted, aborted == 1 ? "" : "s", s3->bucket, pfx);
}

/* s3://BUCKET[/PREFIX]: bucket and prefix, the prefix without surrounding slashes. */
static int parse_dest(struct s3 *s3, const char *dest, char *msg, size_t msglen)
{
        const char *p = dest + 5, *slash = strchr(p, '/');
        size_t bl = slash ? (size_t)(slash - p) : strlen(p);
        if (bl == 0 || bl > 63) {
                snprintf(msg, msglen, "--dest %s: expected s3://BUCKET[/PREFIX]", dest);
                return -EINVAL;
        }
        s3->bucket = strndup(p, bl);
        const char *pre = slash ? slash : "";
        while (*pre == '/')
                pre++;
        size_t pl = strlen(pre);
        while (pl && pre[pl - 1] == '/')
                pl--;
        if (pl > 900) {
                snprintf(msg, msglen, "--dest %s: prefix too long", dest);
                return -EINVAL;
        }
        s3->prefix = strndup(pre, pl);
        return s3->bucket && s3->prefix ? 0 : -ENOMEM;
}

/* Credentials, region and addressing from the environment and --s3-endpoint. */
static int configure(struct s3 *s3, const struct run_config *cfg, char *msg, size_t msglen)
{
        const char *key = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
        const char *token = getenv("AWS_SESSION_TOKEN");
        if (!key || !*key || !secret || !*secret) {
                snprintf(msg, msglen,
                         "--dest %s: no S3 credentials: set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)",
                         cfg->dest);
                return -EINVAL;
        }
        const char *region = getenv("AWS_REGION");
        if (!region || !*region)
                region = getenv("AWS_DEFAULT_REGION");
        if (!region || !*region)
                region = "us-east-1";
        const char *ep = cfg->s3_endpoint;
        if (!ep || !*ep)
                ep = getenv("AWS_ENDPOINT_URL_S3");
        if (!ep || !*ep)
                ep = getenv("AWS_ENDPOINT_URL");
        s3->sigv4 = dup_printf("aws:amz:%s:s3", region);
        s3->userpwd = dup_printf("%s:%s", key, secret);
        if (token && *token)
                s3->token_hdr = dup_printf("x-amz-security-token: %s", token);
        if (ep && *ep) {
                /* Path-style: what MinIO, R2 and s3rver want. */
                size_t el = strlen(ep);
                while (el && ep[el - 1] == '/')
                        el--;
                s3->obj_base = dup_printf("%s%.*s/%s", strstr(ep, "://") ? "" : "https://", (int)el,
                                          ep, s3->bucket);
                s3->bucket_url = s3->obj_base ? strdup(s3->obj_base) : NULL;
        } else {
                s3->obj_base = dup_printf("https://%s.s3.%s.amazonaws.com", s3->bucket, region);
                s3->bucket_url = s3->obj_base ? dup_printf("%s/", s3->obj_base) : NULL;
        }
        if (!s3->sigv4 || !s3->userpwd || (token && *token && !s3->token_hdr) || !s3->obj_base ||
            !s3->bucket_url) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        return 0;
}

/* The bucket exists and these credentials may use it: one listing of at most one key under
 * the prefix names any problem with S3's own error code. */
static int check_bucket(struct s3 *s3, struct s3_req *q, char *msg, size_t msglen)
{
        char eprefix[3 * 1024 + 4], pfx[1030], url[S3_URL_MAX + 4096], what[1200];
        snprintf(pfx, sizeof pfx, "%s%s", s3->prefix, s3->prefix[0] ? "/" : "");
        uri_encode(pfx, false, eprefix, sizeof eprefix);
        snprintf(url, sizeof url, "%s?max-keys=1&prefix=%s", s3->bucket_url, eprefix);
        snprintf(what, sizeof what, "--dest %s", s3->cfg->dest);
        return sync_request(s3, q, "GET", url, what, msg, msglen);
}

static void s3_close(struct run *r);

static int s3_open(struct run *r, char *msg, size_t msglen)
{
        struct s3 *s3 = calloc(1, sizeof *s3);
        if (!s3) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        pthread_mutex_init(&s3->lock, NULL);
        s3->cfg = &r->cfg;
        r->sink_state = s3;
        int err = parse_dest(s3, r->cfg.dest, msg, msglen);
        if (!err)
                err = configure(s3, &r->cfg, msg, msglen);
        /* Two requests: the aborts must not overwrite the listing they walk. */
        struct s3_req list = {0}, del = {0};
        if (!err) {
                list.x.easy = curl_easy_init();
                list.resp = malloc(S3_LIST_MAX);
                list.resp_cap = S3_LIST_MAX;
                del.x.easy = curl_easy_init();
                del.resp = malloc(S3_RESP_MAX);
                del.resp_cap = S3_RESP_MAX;
                if (!list.x.easy || !list.resp || !del.x.easy || !del.resp) {
                        snprintf(msg, msglen, "out of memory");
                        err = -ENOMEM;
                }
        }
        if (!err)
                err = check_bucket(s3, &list, msg, msglen);
        if (!err)
                abort_leftovers(s3, &list, &del);
        req_free(&list);
        req_free(&del);
        if (err) {
                s3_close(r);
                return err;
        }
        return 0;
}

static void s3_close(struct run *r)
{
        struct s3 *s3 = r->sink_state;
        if (!s3)
                return;
        while (s3->books) {
                struct s3_book *sb = s3->books;
                s3->books = sb->next;
                sb_free(sb);
        }
        free_secret(s3->userpwd);
        free_secret(s3->token_hdr);
        free(s3->sigv4);
        free(s3->bucket);
        free(s3->prefix);
        free(s3->obj_base);
        free(s3->bucket_url);
        pthread_mutex_destroy(&s3->lock);
        free(s3);
        r->sink_state = NULL;
}

const struct sink sink_s3 = {
    .name = "s3",
    .open = s3_open,
    .deliver = s3_deliver,
    .abort = s3_abort,
    .close = s3_close,
    .lookup = s3_lookup,
};
