/* Archives already stored in S3 as books' source (quire extract s3://BUCKET[/PREFIX]): one
 * GET per book on the worker's multi handle, signed and answered like the sink's requests
 * (req.c: SigV4 by libcurl, header lines, S3's error document), the body handed to the
 * book as it arrives.
 *
 * A transfer that breaks is resumed the way the HTTP source does it, with S3's own
 * precondition: Range plus If-Match on the first answer's ETag (S3 does not document
 * If-Range), so that a 412 says the object changed and the book starts over. */
#include "s3_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quire/base/util.h"
#include "quire/engine/loop.h"
#include "quire/engine/worker.h"
#include "quire/io/sources.h"

#define GET_BUFFER (256 * 1024)

struct s3_slot {
        struct s3_source *src;
        struct worker *w;
        const struct source_events *ev;
        void *owner;
        struct s3_req q;
        char key[S3_KEY_MAX + 1];
        char url[S3_URL_MAX];
        char if_match[SOURCE_ETAG_MAX + 16];
        uint64_t want_off; /* resuming: the body from here on */
        uint64_t off;      /* body bytes taken by the owner */
        bool body_started, bad_range, paused;
        bool in_data; /* inside the owner's data(): libcurl's write callback */
        int stop_rc;
        struct loop_op resume_op; /* resumes from the loop when resume() comes from data() */
        struct loop_op later_op;  /* reports a failure to start, from the loop */
        struct source_result later_res;
        char later_detail[512];
};

static struct s3_slot *slot_of(struct source_slot *ss)
{
        return (struct s3_slot *)ss;
}

/* ---- the answer ---------------------------------------------------------------------- */

/* The body's first bytes: which part of the object they are, and whether the book has
 * room for the whole of it. 0, or the code that stops the transfer. */
static int body_start(struct s3_slot *sl)
{
        const struct http_head *h = &sl->q.head;
        sl->body_started = true;
        sl->off = h->status == 206 ? sl->want_off : 0;
        if (h->status == 206 && h->range_start != (int64_t)sl->want_off) {
                sl->bad_range = true;
                return -ERANGE;
        }
        int64_t total = h->status == 206 ? h->range_total : h->content_length;
        if (total >= 0 && sl->ev->length)
                return sl->ev->length(sl->owner, (uint64_t)total);
        return 0;
}

/* libcurl's body callback: the object's bytes go to the book; an error answer's body is
 * S3's XML document, kept for the verdict. */
static size_t on_object(char *p, size_t size, size_t nmemb, void *ud)
{
        struct s3_slot *sl = ud;
        size_t len = size * nmemb;
        long st = sl->q.head.status;
        if (st != 200 && !(st == 206 && sl->want_off)) {
                (void)s3_xml_feed(&sl->q.xml, p, len); /* past 1 MiB: judged by status */
                return len;
        }
        if (!sl->body_started) {
                int rc = body_start(sl);
                if (rc < 0) {
                        sl->stop_rc = rc;
                        return 0;
                }
        }
        sl->in_data = true;
        int rc = sl->ev->data(sl->owner, sl->off, (const uint8_t *)p, len);
        sl->in_data = false;
        if (rc == SOURCE_PAUSE) {
                /* libcurl keeps these bytes and hands them over again once resumed. */
                sl->paused = true;
                return CURL_WRITEFUNC_PAUSE;
        }
        if (rc < 0) {
                sl->stop_rc = rc;
                return 0;
        }
        sl->off += len;
        return len;
}

static void verdict(struct s3_slot *sl, CURLcode rc, struct source_result *res, char *detail,
                    size_t dlen)
{
        const struct http_head *h = &sl->q.head;
        long st = h->status;
        *res = (struct source_result){.status = SOURCE_FAILED,
                                      .http_status = st,
                                      .retry_after_s = h->retry_after_s,
                                      .length = h->content_length};
        snprintf(res->etag, sizeof res->etag, "%s", h->etag);
        res->etag_weak = h->etag_weak;
        const char *name = sl->key;
        char why[400];
        bool transient;
        if (rc == CURLE_WRITE_ERROR && sl->bad_range) {
                res->status = SOURCE_TRANSIENT;
                res->range_refused = true;
                snprintf(detail, dlen, "source: %.400s: HTTP 206 for another range than asked",
                         name);
        } else if (rc == CURLE_WRITE_ERROR && sl->stop_rc) {
                res->status = SOURCE_STOPPED;
                snprintf(detail, dlen, "source: stopped");
        } else if (rc != CURLE_OK) {
                res->status = SOURCE_TRANSIENT;
                /* The low-speed bound (no byte for 60 s) is what times a GET out. */
                res->cause = rc == CURLE_OPERATION_TIMEDOUT ? "stall" : http_failure_cause(rc);
                snprintf(detail, dlen, "source: %.400s: %s", name,
                         sl->q.errbuf[0] ? sl->q.errbuf : curl_easy_strerror(rc));
        } else if (h->too_long) {
                snprintf(detail, dlen, "source: %.400s: an answer header line longer than %d bytes",
                         name, HTTP_LINE_MAX);
        } else if (sl->want_off && http_range_ends_short(h, sl->off)) {
                /* The book would take a cut archive for whole: the rest is asked for
                 * again, from here. */
                res->status = SOURCE_TRANSIENT;
                snprintf(detail, dlen, "source: %.400s: HTTP 206 ended at byte %llu of %lld", name,
                         (unsigned long long)sl->off, (long long)h->range_total);
        } else if (st == 200 || (st == 206 && sl->want_off)) {
                res->status = SOURCE_OK;
        } else if ((st == 412 || st == 416) && sl->want_off) {
                /* The object changed since the first attempt (If-Match), or is shorter. */
                res->status = SOURCE_TRANSIENT;
                res->range_refused = true;
                snprintf(detail, dlen, "source: %.400s: HTTP %ld: the rest from %llu refused", name,
                         st, (unsigned long long)sl->want_off);
        } else if (st >= 200 && st < 300) {
                /* A success that is not the object's body (a 203, a 204, a 206 to a GET
                 * without Range): s3_req_verdict takes every 2xx for success and says
                 * nothing, so it is named here. A server or proxy in the way may do
                 * better on the next attempt. */
                res->status = SOURCE_TRANSIENT;
                snprintf(detail, dlen, "source: s3://%s/%.400s: HTTP %ld, not the object (200)%s",
                         sl->src->s3.bucket, name, st, sl->want_off ? " or its rest (206)" : "");
        } else {
                (void)s3_req_verdict(&sl->q, rc, why, sizeof why, &transient);
                res->status = st == 404   ? SOURCE_NOT_FOUND
                              : transient ? SOURCE_TRANSIENT
                                          : SOURCE_FAILED;
                if (st == 401 || st == 403) {
                        res->status = SOURCE_UNAUTHORIZED;
                        res->run_level = true;
                }
                snprintf(detail, dlen, "source: s3://%s/%.400s: %s", sl->src->s3.bucket, name, why);
        }
}

static void on_done(struct s3_req *q, CURLcode rc)
{
        struct s3_slot *sl = q->owner;
        struct source_result res;
        char detail[1200];
        verdict(sl, rc, &res, detail, sizeof detail);
        res.detail = detail;
        sl->ev->done(sl->owner, &res);
}

/* ---- the request --------------------------------------------------------------------- */

static void on_later(struct loop_op *op, int res)
{
        struct s3_slot *sl = container_of(op, struct s3_slot, later_op);
        sl->later_res.detail = sl->later_detail;
        sl->ev->done(sl->owner, &sl->later_res);
}

static void fail_later(struct s3_slot *sl, enum source_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_later(struct s3_slot *sl, enum source_status st, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sl->later_detail, sizeof sl->later_detail, fmt, ap);
        va_end(ap);
        sl->later_res = (struct source_result){.status = st, .length = -1};
        loop_timer(worker_loop(sl->w), &sl->later_op, 0);
}

/* The object's key and URL: PREFIX/FILE, FILE being BARCODE.tar.gz unless the list named
 * it. 0 or -ENAMETOOLONG / -ENOMEM. */
static int object_url(struct s3_slot *sl, const struct source_request *req)
{
        const struct s3 *s3 = &sl->src->s3;
        int n = req->file ? snprintf(sl->key, sizeof sl->key, "%s%s%s", s3->prefix,
                                     s3->prefix[0] ? "/" : "", req->file)
                          : snprintf(sl->key, sizeof sl->key, "%s%s%s.tar.gz", s3->prefix,
                                     s3->prefix[0] ? "/" : "", req->barcode);
        if (n < 0 || (size_t)n >= sizeof sl->key)
                return -ENAMETOOLONG;
        char *esc = s3_escape_path(sl->key);
        if (!esc)
                return -ENOMEM;
        n = snprintf(sl->url, sizeof sl->url, "%s/%s", s3->obj_base, esc);
        free(esc);
        return n < 0 || (size_t)n >= sizeof sl->url ? -ENAMETOOLONG : 0;
}

static int request_start(struct s3_slot *sl, bool head)
{
        struct s3_req *q = &sl->q;
        int err = s3_req_setup(q, head ? "HEAD" : "GET", sl->url, S3_EMPTY_SHA);
        if (err)
                return err;
        CURL *e = q->x.easy;
        bool bad = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_object) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, sl) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)GET_BUFFER) != CURLE_OK;
        /* One connection a download, reused: as the HTTP source (W4, kernel-notes.md). */
        bad |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK;
        if (sl->want_off) {
                char range[32];
                snprintf(range, sizeof range, "%llu-", (unsigned long long)sl->want_off);
                bad |= curl_easy_setopt(e, CURLOPT_RANGE, range) != CURLE_OK;
                s3_req_header(q, "%s", sl->if_match);
        }
        if (bad)
                return -ENOMEM;
        sl->body_started = sl->bad_range = sl->paused = false;
        sl->stop_rc = 0;
        sl->off = 0;
        return s3_req_start(q, sl->w);
}

/* ---- ops ------------------------------------------------------------------------------- */

static void s3src_begin(struct source_slot *ss, const struct source_request *req)
{
        struct s3_slot *sl = slot_of(ss);
        sl->want_off = req->head || !req->if_range ? 0 : req->offset;
        snprintf(sl->if_match, sizeof sl->if_match, "If-Match: \"%s\"",
                 req->if_range ? req->if_range : "");
        int err = object_url(sl, req);
        if (err) {
                fail_later(sl, SOURCE_FAILED, "source: s3://%s/%s: %s", sl->src->s3.bucket,
                           sl->src->s3.prefix, err == -ENOMEM ? "out of memory" : "key too long");
                return;
        }
        err = request_start(sl, req->head);
        if (err)
                fail_later(sl, SOURCE_TRANSIENT, "source: cannot start a request: %s",
                           strerror(-err));
}

static void unpause(struct s3_slot *sl)
{
        if (sl->q.active && sl->paused) {
                sl->paused = false;
                curl_easy_pause(sl->q.x.easy, CURLPAUSE_CONT);
        }
}

static void on_resume(struct loop_op *op, int res)
{
        unpause(container_of(op, struct s3_slot, resume_op));
}

/* As the HTTP source's: at once from the owner's loop callbacks (libcurl hands over what
 * it holds before this returns), through the loop from inside data(). */
static void s3src_resume(struct source_slot *ss)
{
        struct s3_slot *sl = slot_of(ss);
        if (!sl->in_data) {
                loop_cancel(worker_loop(sl->w), &sl->resume_op);
                unpause(sl);
        } else if (!sl->resume_op.timer_armed) {
                loop_timer(worker_loop(sl->w), &sl->resume_op, 0);
        }
}

static void s3src_abort(struct source_slot *ss)
{
        struct s3_slot *sl = slot_of(ss);
        struct loop *l = worker_loop(sl->w);
        loop_cancel(l, &sl->resume_op);
        loop_cancel(l, &sl->later_op);
        s3_req_drop(&sl->q, sl->w);
        sl->paused = false;
}

static int s3src_slot_new(struct source *s, struct worker *w, const struct source_events *ev,
                          void *owner, struct source_slot **out)
{
        struct s3_source *src = (struct s3_source *)s;
        struct s3_slot *sl = calloc(1, sizeof *sl);
        if (!sl)
                return -ENOMEM;
        sl->src = src;
        sl->w = w;
        sl->ev = ev;
        sl->owner = owner;
        sl->resume_op.fn = on_resume;
        sl->later_op.fn = on_later;
        *out = (struct source_slot *)sl;
        int err = s3_req_init(&sl->q, &src->s3);
        sl->q.owner = sl;
        sl->q.done = on_done;
        return err;
}

static void s3src_slot_free(struct source_slot *ss)
{
        struct s3_slot *sl = slot_of(ss);
        s3_req_free(&sl->q);
        free(sl);
}

static void s3src_close(struct source *s)
{
        struct s3_source *src = (struct s3_source *)s;
        s3_clear(&src->s3);
        free(src->url);
        free(src);
}

static const struct source_ops s3src_ops = {
    .slot_new = s3src_slot_new,
    .slot_free = s3src_slot_free,
    .begin = s3src_begin,
    .resume = s3src_resume,
    .abort = s3src_abort,
    .close = s3src_close,
};

/* ---- opening ------------------------------------------------------------------------- */

/* The bucket is there, these credentials may list it, the endpoint answers: one listing of
 * at most one key under the prefix, its failure named by S3's own error code. The same
 * request as the sink's check (ListObjects, version 1): it needs no continuation token,
 * which s3rver cannot make on an OpenSSL 3 without its legacy provider. */
static int check_bucket(struct s3_source *src, bool (*interrupted)(void), char *msg, size_t msglen)
{
        struct s3 *s3 = &src->s3;
        char pfx[S3_PREFIX_MAX + 2], url[S3_URL_MAX], what[S3_PREFIX_MAX + 128];
        snprintf(pfx, sizeof pfx, "%s%s", s3->prefix, s3->prefix[0] ? "/" : "");
        snprintf(what, sizeof what, "source %s", src->url);
        const char *query[] = {"max-keys", "1", "prefix", pfx, NULL};
        int err = s3_url_query(url, sizeof url, s3->bucket_url, query);
        if (err) {
                snprintf(msg, msglen, "%s: %s", what, strerror(-err));
                return err;
        }
        struct s3_sync y = {.msg = msg, .msglen = msglen};
        struct s3_req q = {0};
        s3->interrupted = interrupted;
        err = s3_req_init(&q, s3);
        if (!err && !(y.multi = curl_multi_init()))
                err = -ENOMEM;
        if (err)
                snprintf(msg, msglen, "out of memory");
        else
                err = s3_sync_request(&y, &q, "GET", url, 10000L, what);
        if (!err && strcmp(s3_xml_root(&q.xml), "ListBucketResult")) {
                snprintf(msg, msglen, "%s: the answer to a listing is no ListBucketResult", what);
                err = -EPROTO;
        }
        s3_req_free(&q);
        if (y.multi)
                curl_multi_cleanup(y.multi);
        return err;
}

int source_s3_open(struct source **out, const struct source_s3_config *cfg, char *msg,
                   size_t msglen)
{
        struct s3_source *src = calloc(1, sizeof *src);
        if (!src) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        src->base = (struct source){.ops = &s3src_ops, .kind = "s3"};
        struct s3 *s3 = &src->s3;
        s3->stall_s = cfg->stall_timeout_s ? (long)cfg->stall_timeout_s : 60L;
        src->url = strdup(cfg->url);
        s3->dest = strdup(cfg->url);
        s3->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
        int err = !src->url || !s3->dest || (cfg->ca_file && !s3->ca_file) ? -ENOMEM : 0;
        if (err)
                snprintf(msg, msglen, "out of memory");
        if (!err)
                err = s3_dest_parse(cfg->url, &s3->bucket, &s3->prefix, msg, msglen);
        if (!err)
                err = s3_configure(s3, cfg->endpoint, msg, msglen);
        if (!err) {
                s3_xml_init();
                err = check_bucket(src, cfg->interrupted, msg, msglen);
        }
        s3->interrupted = NULL; /* the workers' transfers are stopped by the run */
        if (err) {
                s3_name_option(msg, msglen, "source");
                s3src_close(&src->base);
                return err;
        }
        *out = &src->base;
        return 0;
}
