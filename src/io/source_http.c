/* Books over HTTP(S): one libcurl easy handle per book slot on its worker's multi handle.
 *
 * Redirects are followed here, not by libcurl, so that each hop is checked: never from
 * https to http, never with the credentials to another scheme, host or port, at most
 * HTTP_MAX_REDIRECTS hops. A 401 (or GRIN's redirect to its login page) asks the auth
 * module for a fresh token and is retried like a transient failure. */
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quire/base/util.h"
#include "quire/engine/loop.h"
#include "quire/engine/worker.h"
#include "quire/io/auth.h"
#include "quire/io/http.h"
#include "quire/io/sources.h"

#define HTTP_MAX_REDIRECTS 5
#define HTTP_URL_MAX       4096
#define HTTP_BUFFER        (256 * 1024)
/* data() refused the body because the answer is an HTML page, not an archive. */
#define STOP_HTML 1

struct http_source {
        struct source base;
        const char *tmpl, *ca_file;
        unsigned stall_s;
        uint64_t min_rate;
        uint64_t rate_window_ns, deadline_ns;
        struct auth *auth;
        bool own_auth;
        void (*missing)(void *ctx, const char *barcode, struct source_missing *m);
        void *missing_ctx;
};

struct http_slot {
        struct http_source *src;
        struct worker *w;
        const struct source_events *ev;
        void *owner;
        struct xfer x;
        struct http_head head;
        char errbuf[CURL_ERROR_SIZE];
        char url[HTTP_URL_MAX]; /* of the request in flight (after redirects) */
        unsigned redirects;
        bool credentials; /* this request carries them */
        bool head_only, html, active;
        /* resuming: the body from want_off on, if the object still has this ETag */
        uint64_t want_off;
        char if_range[SOURCE_ETAG_MAX + 8];
        bool body_started, bad_range;
        struct curl_slist *hdrs;
        unsigned auth_gen;
        uint64_t off; /* body bytes taken by the owner */
        bool paused;  /* the owner said SOURCE_PAUSE */
        bool in_data; /* inside the owner's data(): libcurl's write callback */
        enum { FLOW_OK, FLOW_STALLED, FLOW_SLOW, FLOW_LATE } flow;
        uint64_t started_ns, last_byte_ns;
        uint64_t window_ns, window_bytes; /* start of the --min-rate window */
        int stop_rc;
        struct loop_op resume_op; /* resumes from the loop when resume() comes from data() */
        struct loop_op later_op;  /* reports a failure or starts a redirect's hop */
        struct source_result later_res;
        char later_detail[512];
};

static struct http_slot *slot_of(struct source_slot *ss)
{
        return (struct http_slot *)ss;
}

/* ---- answers ------------------------------------------------------------------------- */

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
        struct http_slot *h = ud;
        size_t len = size * nitems, n;
        long before = h->head.status;
        http_head_line(&h->head, line, len);
        if (h->head.status != before)
                h->html = false; /* a new answer (after a 100 Continue or a redirect) */
        const char *v = http_header_value(line, len, "Content-Type", &n);
        if (v && n >= 9 && !strncasecmp(v, "text/html", 9))
                h->html = true;
        return len;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
        struct http_slot *h = ud;
        size_t len = size * nmemb;
        h->last_byte_ns = util_now_ns();
        long st = h->head.status;
        if (st != 200 && !(st == 206 && h->want_off))
                return len; /* an error page or a redirect's body: read and dropped */
        if (!h->body_started) {
                /* A 206 continues where the last attempt broke; a 200 is the whole body
                 * again (no ranges, or the object changed): offsets say which. */
                h->body_started = true;
                h->off = st == 206 ? h->want_off : 0;
                if (st == 206 && h->head.range_start != (int64_t)h->want_off) {
                        h->bad_range = true;
                        return 0;
                }
                int64_t total = st == 206 ? h->head.range_total : h->head.content_length;
                int rc = total >= 0 && h->ev->length ? h->ev->length(h->owner, (uint64_t)total) : 0;
                if (rc < 0) {
                        h->stop_rc = rc;
                        return 0;
                }
        }
        if (h->html) {
                h->stop_rc = STOP_HTML;
                return 0;
        }
        h->in_data = true;
        int rc = h->ev->data(h->owner, h->off, (const uint8_t *)p, len);
        h->in_data = false;
        if (rc == SOURCE_PAUSE) {
                /* libcurl keeps these bytes, stops reading the socket, and hands them over
                 * again from their start once resumed. */
                h->paused = true;
                return CURL_WRITEFUNC_PAUSE;
        }
        if (rc < 0) {
                h->stop_rc = rc;
                return 0;
        }
        h->off += len;
        return len;
}

/* libcurl's own low-speed check averages over about 5 s, so a burst before a stall
 * hides it that long: this callback, called at least once a second while the transfer
 * lives, measures the silence itself, the rate over each --min-rate window (a source
 * that trickles a byte a second never stalls, yet would hold its download slot for
 * ever), and the attempt's deadline. A transfer paused by its owner is neither stalled
 * nor slow. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        struct http_slot *h = ud;
        const struct http_source *src = h->src;
        uint64_t now = util_now_ns(), got = dlnow > 0 ? (uint64_t)dlnow : 0;
        if (src->deadline_ns && now - h->started_ns > src->deadline_ns) {
                h->flow = FLOW_LATE;
                return 1;
        }
        if (h->paused) {
                h->last_byte_ns = h->window_ns = now;
                h->window_bytes = got;
                return 0;
        }
        if (now - h->last_byte_ns >= (uint64_t)src->stall_s * 1000000000u) {
                h->flow = FLOW_STALLED;
                return 1;
        }
        if (src->min_rate && now - h->window_ns >= src->rate_window_ns) {
                double secs = (double)(now - h->window_ns) / 1e9;
                if ((double)(got - h->window_bytes) < (double)src->min_rate * secs) {
                        h->flow = FLOW_SLOW;
                        return 1;
                }
                h->window_ns = now;
                h->window_bytes = got;
        }
        return 0;
}

/* ---- one request ------------------------------------------------------------------- */

static void fail_later(struct http_slot *h, enum source_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int request_start(struct http_slot *h)
{
        CURL *e = h->x.easy;
        struct http_baseline base = {.ca_file = h->src->ca_file, .errbuf = h->errbuf};
        if (http_easy_reset(e, &base) < 0)
                return -ENOMEM;
        http_head_init(&h->head);
        h->html = h->paused = h->body_started = h->bad_range = false;
        h->flow = FLOW_OK;
        h->stop_rc = 0;
        h->off = 0;
        h->started_ns = h->last_byte_ns = h->window_ns = util_now_ns();
        h->window_bytes = 0;
        curl_easy_setopt(e, CURLOPT_URL, h->url);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)HTTP_BUFFER);
        /* HTTP/2 shares one connection between books: a reset then breaks every stream on
         * it, and libcurl 7.88 crashed under that with connections shared (W4,
         * kernel-notes.md). One connection a download, reused, is the fastest here. */
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, h);
        /* libcurl's own check stays as a backstop; it also keeps a one-second timer. */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)h->src->stall_s);
        if (h->head_only)
                curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        curl_slist_free_all(h->hdrs);
        h->hdrs = NULL;
        if (h->src->auth && h->credentials)
                h->hdrs = auth_headers(h->src->auth, &h->auth_gen);
        if (h->want_off) {
                char range[32];
                snprintf(range, sizeof range, "%llu-", (unsigned long long)h->want_off);
                curl_easy_setopt(e, CURLOPT_RANGE, range);
                struct curl_slist *l = curl_slist_append(h->hdrs, h->if_range);
                if (!l)
                        return -ENOMEM;
                h->hdrs = l;
        }
        if (h->hdrs)
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->hdrs);
        int err = worker_add_xfer(h->w, &h->x);
        h->active = err == 0;
        return err;
}

static void on_later(struct loop_op *op, int res)
{
        struct http_slot *h = container_of(op, struct http_slot, later_op);
        if (h->later_res.status == SOURCE_OK) { /* the next hop of a redirect */
                int err = request_start(h);
                if (err) {
                        fail_later(h, SOURCE_TRANSIENT, "source: cannot start a request: %s",
                                   strerror(-err));
                }
                return;
        }
        h->later_res.detail = h->later_detail;
        h->ev->done(h->owner, &h->later_res);
}

static void fail_later(struct http_slot *h, enum source_status st, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(h->later_detail, sizeof h->later_detail, fmt, ap);
        va_end(ap);
        h->later_res = (struct source_result){.status = st, .length = -1};
        loop_timer(worker_loop(h->w), &h->later_op, 0);
}

/* GRIN's way of saying "log in again": a redirect to Google's sign-in page. */
static bool is_login_redirect(const char *to)
{
        return strstr(to, "//accounts.google.com/") && strstr(to, "ServiceLogin");
}

static void redirect(struct http_slot *h, struct source_result *res, char *detail, size_t dlen)
{
        char *to = NULL;
        curl_easy_getinfo(h->x.easy, CURLINFO_REDIRECT_URL, &to);
        bool keep;
        const char *why;
        res->status = SOURCE_FAILED;
        if (!to) {
                snprintf(detail, dlen, "source: HTTP %ld without a Location", h->head.status);
        } else if (++h->redirects > HTTP_MAX_REDIRECTS) {
                snprintf(detail, dlen,
                         "source: more than %d redirects (a loop?), the last to %.300s",
                         HTTP_MAX_REDIRECTS, to);
        } else if (http_redirect_check(h->url, to, &keep, &why) < 0) {
                snprintf(detail, dlen, "source: redirect to %.300s refused: %s", to, why);
                res->run_level = true;
        } else if (strlen(to) >= sizeof h->url) {
                snprintf(detail, dlen, "source: redirect to a URL longer than %d bytes",
                         HTTP_URL_MAX);
        } else {
                /* Credentials went to the host they were meant for only. */
                h->credentials = h->credentials && keep;
                memcpy(h->url, to, strlen(to) + 1);
                h->later_res.status = SOURCE_OK;
                loop_timer(worker_loop(h->w), &h->later_op, 0);
                res->status = SOURCE_OK; /* not done yet */
        }
}

static void unauthorized(struct http_slot *h, struct source_result *res, char *detail, size_t dlen,
                         const char *what)
{
        res->run_level = true;
        res->cause = "401";
        if (h->src->auth && h->credentials && auth_unauthorized(h->src->auth, h->auth_gen)) {
                /* The token may have expired early: the refresher gets a new one; retry. */
                res->status = SOURCE_TRANSIENT;
                snprintf(detail, dlen, "source: %s; the token is being refreshed", what);
                return;
        }
        res->status = SOURCE_UNAUTHORIZED;
        snprintf(detail, dlen, "source: %s: the credentials were refused", what);
}

/* The verdict on a finished answer; false when a redirect's next hop is under way. */
static bool verdict(struct http_slot *h, CURLcode rc, struct source_result *res, char *detail,
                    size_t dlen)
{
        long st = h->head.status;
        *res = (struct source_result){.status = SOURCE_FAILED,
                                      .http_status = st,
                                      .retry_after_s = h->head.retry_after_s,
                                      .length = h->head.content_length};
        snprintf(res->etag, sizeof res->etag, "%s", h->head.etag);
        res->etag_weak = h->head.etag_weak;
        if (rc == CURLE_WRITE_ERROR && h->bad_range) {
                res->status = SOURCE_TRANSIENT;
                res->range_refused = true;
                snprintf(detail, dlen,
                         "source: HTTP 206 for another range than asked (%lld, not %llu)",
                         (long long)h->head.range_start, (unsigned long long)h->want_off);
        } else if (rc == CURLE_WRITE_ERROR && h->stop_rc == STOP_HTML) {
                res->run_level = true;
                snprintf(detail, dlen,
                         "source: an HTML page where an archive was expected (a login or "
                         "permission page: check the credentials and the library's access)");
        } else if (rc == CURLE_WRITE_ERROR && h->stop_rc < 0) {
                res->status = SOURCE_STOPPED;
                snprintf(detail, dlen, "source: stopped");
        } else if (h->head.too_long) {
                snprintf(detail, dlen, "source: an answer header line longer than %d bytes",
                         HTTP_LINE_MAX);
        } else if (rc == CURLE_ABORTED_BY_CALLBACK && h->flow != FLOW_OK) {
                res->status = SOURCE_TRANSIENT;
                const struct http_source *src = h->src;
                res->cause = h->flow == FLOW_STALLED ? "stall"
                             : h->flow == FLOW_SLOW  ? "slow"
                                                     : "timeout";
                if (h->flow == FLOW_STALLED)
                        snprintf(detail, dlen, "source: stalled: no byte for %u s", src->stall_s);
                else if (h->flow == FLOW_SLOW)
                        snprintf(detail, dlen,
                                 "source: too slow: under %llu bytes/s over %llu s (--min-rate)",
                                 (unsigned long long)src->min_rate,
                                 (unsigned long long)(src->rate_window_ns / 1000000000u));
                else
                        snprintf(detail, dlen, "source: not done after %llu s (--download-timeout)",
                                 (unsigned long long)(src->deadline_ns / 1000000000u));
        } else if (rc == CURLE_OUT_OF_MEMORY && strstr(h->errbuf, "header")) {
                /* libcurl refuses a header over 100 KB: a misbehaving server, not memory. */
                snprintf(detail, dlen, "source: an answer header larger than libcurl accepts (%s)",
                         h->errbuf);
        } else if (rc != CURLE_OK) {
                res->status = SOURCE_TRANSIENT;
                res->cause = http_failure_cause(rc);
                snprintf(detail, dlen, "source: %s",
                         h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
        } else if (h->want_off && http_range_ends_short(&h->head, h->off)) {
                /* The book would take a cut archive for whole: the rest is asked for
                 * again, from here. */
                res->status = SOURCE_TRANSIENT;
                snprintf(detail, dlen, "source: HTTP 206 ended at byte %llu of %lld",
                         (unsigned long long)h->off, (long long)h->head.range_total);
        } else if (st == 200 || (st == 206 && h->want_off)) {
                res->status = SOURCE_OK;
        } else if (st == 416 && h->want_off) {
                res->status = SOURCE_TRANSIENT;
                res->range_refused = true;
                snprintf(detail, dlen, "source: HTTP 416: the range from %llu refused",
                         (unsigned long long)h->want_off);
        } else if (st >= 300 && st < 400 && st != 304) {
                char *to = NULL;
                curl_easy_getinfo(h->x.easy, CURLINFO_REDIRECT_URL, &to);
                if (to && is_login_redirect(to)) {
                        unauthorized(h, res, detail, dlen, "redirected to the sign-in page");
                        return true;
                }
                redirect(h, res, detail, dlen);
                return res->status != SOURCE_OK;
        } else if (st == 404 || st == 410) {
                res->status = SOURCE_NOT_FOUND;
                snprintf(detail, dlen, "not available from the source (HTTP %ld)", st);
        } else if (st == 401) {
                unauthorized(h, res, detail, dlen, "HTTP 401");
        } else if (st == 403) {
                res->status = SOURCE_UNAUTHORIZED;
                res->run_level = true;
                snprintf(detail, dlen, "source: HTTP 403: the account lacks access to this");
        } else {
                res->status =
                    st == 408 || st == 429 || st >= 500 ? SOURCE_TRANSIENT : SOURCE_FAILED;
                snprintf(detail, dlen, "source: HTTP %ld", st);
        }
        return true;
}

static void on_done(struct xfer *x, CURLcode rc)
{
        struct http_slot *h = container_of(x, struct http_slot, x);
        h->active = false;
        struct source_result res;
        char detail[600];
        if (!verdict(h, rc, &res, detail, sizeof detail))
                return;
        res.detail = detail;
        h->ev->done(h->owner, &res);
}

/* ---- ops --------------------------------------------------------------------------- */

static void unpause(struct http_slot *h)
{
        if (h->active && h->paused) {
                h->paused = false;
                curl_easy_pause(h->x.easy, CURLPAUSE_CONT);
        }
}

static void on_resume(struct loop_op *op, int res)
{
        unpause(container_of(op, struct http_slot, resume_op));
}

static void http_begin(struct source_slot *ss, const struct source_request *req)
{
        struct http_slot *h = slot_of(ss);
        h->redirects = 0;
        h->credentials = true;
        h->head_only = req->head;
        h->want_off = req->head || !req->if_range ? 0 : req->offset;
        snprintf(h->if_range, sizeof h->if_range, "If-Range: \"%s\"",
                 req->if_range ? req->if_range : "");
        if (source_expand(h->src->tmpl, req->barcode, req->file, h->url, sizeof h->url) < 0) {
                fail_later(h, SOURCE_FAILED, "source: URL longer than %d bytes", HTTP_URL_MAX);
                return;
        }
        int err = request_start(h);
        if (err)
                fail_later(h, SOURCE_TRANSIENT, "source: cannot start a request: %s",
                           strerror(-err));
}

/* From the owner's loop callbacks (a staging write done, a key derived) libcurl is unpaused
 * at once: it hands over the bytes it holds before this returns, and the socket is read
 * again in the same loop turn, not one turn later. From inside data() (libcurl's write
 * callback) unpausing would recurse into it, so that case goes through the loop. */
static void http_resume(struct source_slot *ss)
{
        struct http_slot *h = slot_of(ss);
        if (!h->in_data) {
                loop_cancel(worker_loop(h->w), &h->resume_op);
                unpause(h);
        } else if (!h->resume_op.timer_armed) {
                loop_timer(worker_loop(h->w), &h->resume_op, 0);
        }
}

static void http_abort(struct source_slot *ss)
{
        struct http_slot *h = slot_of(ss);
        struct loop *l = worker_loop(h->w);
        loop_cancel(l, &h->resume_op);
        loop_cancel(l, &h->later_op);
        if (h->active)
                worker_remove_xfer(h->w, &h->x);
        h->active = h->paused = false;
}

static int http_slot_new(struct source *s, struct worker *w, const struct source_events *ev,
                         void *owner, struct source_slot **out)
{
        struct http_slot *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->src = (struct http_source *)s;
        h->w = w;
        h->ev = ev;
        h->owner = owner;
        h->x.done = on_done;
        h->resume_op.fn = on_resume;
        h->later_op.fn = on_later;
        h->x.easy = curl_easy_init();
        *out = (struct source_slot *)h;
        return h->x.easy ? 0 : -ENOMEM;
}

static void http_slot_free(struct source_slot *ss)
{
        struct http_slot *h = slot_of(ss);
        if (h->x.easy)
                curl_easy_cleanup(h->x.easy);
        curl_slist_free_all(h->hdrs);
        free(h);
}

static void http_missing(struct source *s, const char *barcode, struct source_missing *m)
{
        struct http_source *hs = (struct http_source *)s;
        m->outcome = NULL;
        m->detail[0] = 0;
        if (hs->missing)
                hs->missing(hs->missing_ctx, barcode, m);
}

static void http_close(struct source *s)
{
        struct http_source *hs = (struct http_source *)s;
        if (hs->own_auth)
                auth_close(hs->auth);
        free(hs);
}

static const struct source_ops http_ops = {
    .slot_new = http_slot_new,
    .slot_free = http_slot_free,
    .begin = http_begin,
    .resume = http_resume,
    .abort = http_abort,
    .missing = http_missing,
    .close = http_close,
};

int source_http_open(struct source **out, const struct source_config *cfg, char *msg, size_t msglen)
{
        struct http_source *hs = calloc(1, sizeof *hs);
        if (!hs) {
                snprintf(msg, msglen, "out of memory");
                return -ENOMEM;
        }
        hs->base = (struct source){.ops = &http_ops, .kind = "http"};
        hs->tmpl = cfg->tmpl;
        hs->ca_file = cfg->ca_file;
        hs->stall_s = cfg->stall_timeout_s ? cfg->stall_timeout_s : 60;
        hs->min_rate = cfg->min_rate;
        hs->rate_window_ns =
            (uint64_t)(cfg->min_rate_window_s ? cfg->min_rate_window_s : 60) * 1000000000u;
        hs->deadline_ns = (uint64_t)cfg->download_timeout_s * 1000000000u;
        hs->missing = cfg->missing;
        hs->missing_ctx = cfg->missing_ctx;
        hs->auth = cfg->auth;
        hs->own_auth = !cfg->auth && (cfg->header_file || cfg->oauth_file);
        if (hs->own_auth && auth_open(&hs->auth, cfg->header_file, cfg->oauth_file, cfg->ca_file,
                                      msg, msglen) < 0) {
                auth_close(hs->auth);
                free(hs);
                return -EINVAL;
        }
        *out = &hs->base;
        return 0;
}
