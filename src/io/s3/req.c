/* One S3 request: every handle starts from io/http.h's baseline, then SigV4 by libcurl
 * with an explicit x-amz-content-sha256 (libcurl 7.88 computes none for streamed bodies),
 * header lines read by http_head_line, the body of the answer parsed as XML as it
 * arrives, and, for PUT and UploadPart, a body streamed from the staging file through
 * the worker's loop by two alternating buffers. */
#include "s3_int.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quire/base/util.h"

int s3_req_init(struct s3_req *q, const struct s3 *s3)
{
        q->s3 = s3;
        q->fd = -1;
        for (unsigned i = 0; i < 2; i++)
                q->buf[i].req = q;
        q->x.easy = curl_easy_init();
        return q->x.easy ? 0 : -ENOMEM;
}

void s3_req_free(struct s3_req *q)
{
        if (q->x.easy)
                curl_easy_cleanup(q->x.easy);
        q->x.easy = NULL;
        curl_slist_free_all(q->hdrs);
        q->hdrs = NULL;
        s3_xml_reset(&q->xml);
        for (unsigned i = 0; i < 2; i++) {
                free(q->buf[i].data);
                q->buf[i].data = NULL;
        }
}

static void on_rbuf_read(struct loop_op *op, int res);

int s3_req_buffers(struct s3_req *q)
{
        for (unsigned i = 0; i < 2; i++) {
                struct s3_rbuf *rb = &q->buf[i];
                rb->op.fn = on_rbuf_read;
                if (!rb->data && !(rb->data = malloc(S3_BUF_SIZE)))
                        return -ENOMEM;
        }
        return 0;
}

bool s3_req_busy(const struct s3_req *q)
{
        return q->active || q->reads_pending;
}

/* ---- the answer ---------------------------------------------------------------------- */

/* The stored source ETag of a HEAD: the Python pipeline's encrypted_etag (which quire
 * writes too) or, from objects of older quire runs, encrypted-etag. */
static void take_meta_etag(struct s3_req *q, const char *line, size_t len)
{
        static const char *const names[] = {"x-amz-meta-encrypted-etag",
                                            "x-amz-meta-encrypted_etag"};
        for (int rank = 2; rank >= 1; rank--) {
                size_t n;
                const char *v = http_header_value(line, len, names[rank - 1], &n);
                if (v && rank > q->meta_rank) {
                        http_etag_normalize(v, n, q->meta_etag, sizeof q->meta_etag);
                        q->meta_rank = rank;
                }
        }
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
        struct s3_req *q = ud;
        size_t len = size * nitems;
        /* A new status line starts a new answer (after a 100 Continue). */
        if (len > 5 && !strncmp(line, "HTTP/", 5))
                q->meta_rank = 0;
        http_head_line(&q->head, line, len);
        take_meta_etag(q, line, len);
        return len;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
        struct s3_req *q = ud;
        size_t len = size * nmemb;
        int err = s3_xml_feed(&q->xml, p, len);
        if (err) {
                q->xml_err = err;
                return 0; /* nothing past this can change the verdict */
        }
        return len;
}

void s3_req_settle(struct s3_req *q)
{
        q->active = false;
        (void)s3_xml_end(&q->xml); /* an answer without a document is judged by its status */
}

static void on_xfer_done(struct xfer *x, CURLcode rc)
{
        struct s3_req *q = container_of(x, struct s3_req, x);
        s3_req_settle(q);
        q->done(q, rc);
}

/* ---- the request --------------------------------------------------------------------- */

int s3_req_setup(struct s3_req *q, const char *method, const char *url, const char *payload_sha)
{
        const struct s3 *s3 = q->s3;
        CURL *e = q->x.easy;
        assert(!s3_req_busy(q));
        http_head_init(&q->head);
        q->meta_rank = 0;
        q->meta_etag[0] = 0;
        s3_xml_reset(&q->xml);
        q->xml_err = 0;
        q->read_error = 0;
        q->fd = -1;
        q->len = 0;
        curl_slist_free_all(q->hdrs);
        q->hdrs = NULL;
        q->hdr_oom = false;
        struct http_baseline base = {.ca_file = s3->ca_file, .errbuf = q->errbuf};
        int err = http_easy_reset(e, &base);
        if (err)
                return err;
        bool bad = curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s3->sigv4) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_USERPWD, s3->userpwd) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, q) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, q) != CURLE_OK;
        /* A stall: not a byte either way for --stall-timeout seconds. */
        bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s3->stall_s) != CURLE_OK;
        if (!strcmp(method, "HEAD"))
                bad |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK;
        else if (!strcmp(method, "DELETE"))
                bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE") != CURLE_OK;
        if (bad)
                return -ENOMEM;
        s3_req_header(q, "x-amz-content-sha256: %s", payload_sha);
        if (s3->token_hdr)
                s3_req_header(q, "%s", s3->token_hdr);
        return 0;
}

void s3_req_header(struct s3_req *q, const char *fmt, ...)
{
        char line[S3_META_MAX + 128];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        struct curl_slist *l =
            n >= 0 && (size_t)n < sizeof line ? curl_slist_append(q->hdrs, line) : NULL;
        if (l)
                q->hdrs = l;
        else
                q->hdr_oom = true; /* s3_req_start refuses to send it half-dressed */
}

void s3_req_meta(struct s3_req *q, const struct delivery_meta *meta, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                if (meta[i].value[0])
                        s3_req_header(q, "x-amz-meta-%s: %s", meta[i].name, meta[i].value);
}

int s3_req_post(struct s3_req *q, const char *body, size_t len)
{
        CURL *e = q->x.easy;
        bool bad = curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, body) != CURLE_OK;
        return bad ? -ENOMEM : 0;
}

int s3_req_start(struct s3_req *q, struct worker *w)
{
        if (q->hdr_oom || curl_easy_setopt(q->x.easy, CURLOPT_HTTPHEADER, q->hdrs) != CURLE_OK)
                return -ENOMEM;
        q->x.done = on_xfer_done;
        int err = worker_add_xfer(w, &q->x);
        q->active = err == 0;
        return err;
}

void s3_req_drop(struct s3_req *q, struct worker *w)
{
        if (q->active)
                worker_remove_xfer(w, &q->x);
        q->active = false;
        q->paused = false;
}

/* ---- bodies from the staging file ----------------------------------------------------- */

static void rbuf_fill(struct s3_req *q, struct s3_rbuf *rb)
{
        rb->ready = false;
        rb->fill = rb->pos = 0;
        if (q->next >= q->len)
                return;
        rb->want = q->len - q->next < S3_BUF_SIZE ? (size_t)(q->len - q->next) : S3_BUF_SIZE;
        rb->file_off = q->off + q->next;
        q->next += rb->want;
        q->reads_pending++;
        loop_read(q->loop, &rb->op, q->fd, rb->data, rb->want, rb->file_off);
}

/* Starts reading the body from rel bytes into it. */
static void body_restart(struct s3_req *q, uint64_t rel)
{
        q->next = q->fed = rel;
        q->cur = 0;
        q->rewinding = false;
        rbuf_fill(q, &q->buf[0]);
        rbuf_fill(q, &q->buf[1]);
}

static void on_rbuf_read(struct loop_op *op, int res)
{
        struct s3_rbuf *rb = container_of(op, struct s3_rbuf, op);
        struct s3_req *q = rb->req;
        q->reads_pending--;
        if (!q->active) {
                /* The transfer ended (failed, or was dropped) while this read was out. */
                if (!q->reads_pending && q->idle)
                        q->idle(q);
                return;
        }
        if (res <= 0) {
                /* 0: the staging file is shorter than the object it held. */
                if (!q->read_error)
                        q->read_error = res < 0 ? res : -EIO;
        } else if (!q->rewinding) {
                rb->fill += (size_t)res;
                if (rb->fill < rb->want) {
                        q->reads_pending++;
                        loop_read(q->loop, &rb->op, q->fd, rb->data + rb->fill, rb->want - rb->fill,
                                  rb->file_off + rb->fill);
                        return;
                }
                rb->ready = true;
        }
        if (q->rewinding && !q->reads_pending && !q->read_error)
                body_restart(q, q->rewind_to);
        if (q->paused && (q->read_error || q->buf[q->cur].ready)) {
                q->paused = false;
                /* Resuming calls on_body_read at once; a failure shows in the transfer. */
                (void)curl_easy_pause(q->x.easy, CURLPAUSE_CONT);
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
                rbuf_fill(q, rb);
        }
        return n;
}

/* libcurl sends a body again on a fresh connection (a reused one was dead): start over
 * from offset once the reads in flight have landed. */
static int on_body_seek(void *ud, curl_off_t offset, int origin)
{
        struct s3_req *q = ud;
        if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > q->len)
                return CURL_SEEKFUNC_CANTSEEK;
        q->rewinding = true;
        q->rewind_to = (uint64_t)offset;
        q->buf[0].ready = q->buf[1].ready = false;
        if (!q->reads_pending)
                body_restart(q, q->rewind_to);
        return CURL_SEEKFUNC_OK;
}

int s3_req_body(struct s3_req *q, struct loop *loop, int fd, uint64_t off, uint64_t len,
                uint64_t rate)
{
        CURL *e = q->x.easy;
        assert(q->buf[0].data && q->buf[1].data);
        q->loop = loop;
        q->fd = fd;
        q->off = off;
        q->len = len;
        q->paused = false;
        bool bad = curl_easy_setopt(e, CURLOPT_UPLOAD, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_READFUNCTION, on_body_read) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_READDATA, q) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_body_seek) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SEEKDATA, q) != CURLE_OK;
        if (rate)
                bad |=
                    curl_easy_setopt(e, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)rate) != CURLE_OK;
        if (bad)
                return -ENOMEM;
        body_restart(q, 0);
        return 0;
}

/* ---- the verdict ------------------------------------------------------------------- */

bool s3_code_transient(const char *code)
{
        static const char *const codes[] = {"SlowDown",           "RequestTimeout",
                                            "InternalError",      "OperationAborted",
                                            "ServiceUnavailable", NULL};
        for (unsigned i = 0; codes[i]; i++)
                if (!strcmp(code, codes[i]))
                        return true;
        return false;
}

/* Text from a server, fit for one log line: printable ASCII only. */
static void clean_copy(char *out, size_t outlen, const char *in)
{
        size_t n = 0;
        for (; *in && n + 1 < outlen; in++)
                out[n++] = *in >= 0x20 && *in < 0x7f ? *in : '?';
        out[n] = 0;
}

int s3_req_verdict(struct s3_req *q, CURLcode rc, char *why, size_t len, bool *transient)
{
        *transient = true;
        if (rc == CURLE_ABORTED_BY_CALLBACK && q->read_error) {
                snprintf(why, len, "reading the staging file: %s", strerror(-q->read_error));
                return -EIO;
        }
        if (rc == CURLE_WRITE_ERROR && q->xml_err) {
                snprintf(why, len, "%s",
                         q->xml_err == -ENOMEM ? "out of memory" : "an answer larger than 1 MiB");
                return -EIO;
        }
        if (rc != CURLE_OK) {
                snprintf(why, len, "%s", q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
                return -EIO;
        }
        if (q->head.too_long) {
                *transient = false;
                snprintf(why, len, "a header line longer than %d bytes", HTTP_LINE_MAX);
                return -EIO;
        }
        if (q->head.status >= 200 && q->head.status < 300)
                return 0;
        char raw[256], code[64] = "", msg[256] = "";
        if (!strcmp(s3_xml_root(&q->xml), "Error")) {
                if (s3_xml_child(&q->xml, "Code", raw, sizeof raw) == 0)
                        clean_copy(code, sizeof code, raw);
                if (s3_xml_child(&q->xml, "Message", raw, sizeof raw) == 0)
                        clean_copy(msg, sizeof msg, raw);
        }
        snprintf(why, len, "HTTP %ld%s%s%s%s", q->head.status, code[0] ? " " : "", code,
                 msg[0] ? ": " : "", msg);
        long st = q->head.status;
        *transient = st >= 500 || st == 429 || st == 408 || s3_code_transient(code);
        return -EIO;
}

int s3_meta_check(const struct delivery_meta *meta, unsigned n, char *why, size_t len)
{
        size_t total = 0;
        for (unsigned i = 0; i < n; i++) {
                const char *k = meta[i].name, *v = meta[i].value;
                size_t kl = strlen(k), vl = strlen(v);
                /* S3 keeps names lower-case; anything else would come back different. */
                if (!kl || strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789-_") != kl) {
                        snprintf(why, len, "metadata name \"%.64s\": only a-z, 0-9, '-' and '_'",
                                 k);
                        return -EINVAL;
                }
                for (size_t j = 0; j < vl; j++) {
                        unsigned char c = (unsigned char)v[j];
                        /* Refused rather than RFC 2047-encoded: every value quire stores is
                         * ASCII, and an encoded one would not compare equal on reading. */
                        if (c < 0x20 || c > 0x7e) {
                                snprintf(why, len,
                                         "metadata %s: byte 0x%02x at %zu; S3 metadata travels as "
                                         "HTTP header lines, printable ASCII only",
                                         k, c, j);
                                return -EINVAL;
                        }
                }
                if (vl && (v[0] == ' ' || v[vl - 1] == ' ')) {
                        snprintf(why, len, "metadata %s: leading or trailing blanks would be lost",
                                 k);
                        return -EINVAL;
                }
                total += vl ? kl + vl : 0; /* an empty value is not sent */
        }
        if (total > S3_META_MAX) {
                snprintf(why, len, "user metadata of %zu bytes; S3 takes at most %d (2 KB)", total,
                         S3_META_MAX);
                return -EINVAL;
        }
        return 0;
}
